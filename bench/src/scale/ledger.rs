//! The ledgers `scale` measures. N accounts are made the way a ledger grows: blocks of
//! transfers from a few thousand keyed senders to fresh random addresses (an account that
//! never sends needs no key). Made once per size and kept in a cache directory, since a
//! ten-million-account ledger takes minutes to make; measured on clones of it.
//!
//! Beside the ledger: two runs of measured blocks built on its tip (not connected to it),
//! one whose senders have sent before and pay existing accounts, one whose every sender
//! sends for the first time (its key never seen) and pays a new address.

use super::super::*;
use apiary_node::cache::CacheBudget;
use std::path::Path;

/// Bump when what a cached ledger holds changes: older ones are made again.
const FORMAT: u32 = 1;
/// Senders of the fill and of the repeat run.
pub(super) const REGULARS: usize = 2_000;
/// Transfers in a fill block (the ledger grows fast; the measured blocks hold 1,000).
const FILL_TXS: usize = 10_000;
/// Transfers in a measured block.
pub(super) const MEASURED_TXS: usize = 1_000;

/// A ledger of `accounts` accounts in `dir`, and the blocks to measure on it.
pub(super) struct Ledger {
    pub dir: PathBuf,
    pub spec: Arc<ChainSpec>,
    pub accounts: u64,
    /// Transactions on its chain.
    pub txs: u64,
    pub repeat: Vec<Vec<u8>>,
    pub fresh: Vec<Vec<u8>>,
}

impl Ledger {
    pub fn db(&self) -> PathBuf {
        self.dir.join("db")
    }

    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.toml")
    }
}

/// A key derived from a role and an index.
fn key(role: &str, index: usize) -> SigningKey {
    let mut hasher = Sha256::new();
    hasher.update(role.as_bytes());
    hasher.update((index as u64).to_le_bytes());
    SigningKey::from_bytes(&hasher.finalize().into())
}

/// The address the fill's transfer number `index` pays (an account of its own).
pub(super) fn fill_address(index: u64) -> Address {
    let mut hasher = Sha256::new();
    hasher.update(b"apiary-bench fill");
    hasher.update(index.to_le_bytes());
    Address(hasher.finalize().into())
}

/// A transfer of `amount` base units, fee 1,000.
fn transfer(
    spec: &ChainSpec,
    key: &SigningKey,
    to: Address,
    amount: u64,
    nonce: u64,
) -> SignedTransaction {
    Transaction {
        chain_id: spec.chain_id.clone(),
        from: apiary_core::hd::address_of(key),
        to,
        amount: Amount::from_base_units(amount),
        fee: Amount::from_base_units(1_000),
        nonce: Nonce(nonce),
    }
    .sign(key)
}

/// The ledger of `accounts` accounts with `measured` blocks of each run, from `cache` or
/// made there.
pub(super) fn ledger(cache: &Path, accounts: u64, measured: usize) -> Result<Ledger> {
    let dir = cache.join(format!("ledger-{accounts}-{measured}"));
    let meta_path = dir.join("ledger.json");
    if let Ok(meta) = std::fs::read_to_string(&meta_path) {
        let meta: Value = serde_json::from_str(&meta)?;
        if meta["format"] == FORMAT {
            eprintln!(
                "using the ledger of {accounts} accounts in {}",
                dir.display()
            );
            let spec = Arc::new(apiary_genesis::load_spec(&dir.join("spec.toml"))?);
            if meta["compacted"] != true {
                compact(&dir.join("db"), &spec)?;
                let mut meta = meta.clone();
                meta["compacted"] = json!(true);
                std::fs::write(&meta_path, meta.to_string())?;
            }
            let read = |name: &str| -> Result<Vec<Vec<u8>>> {
                Ok(borsh::from_slice(&std::fs::read(dir.join(name))?)?)
            };
            return Ok(Ledger {
                spec,
                accounts: meta["accounts"].as_u64().unwrap_or(0),
                txs: meta["txs"].as_u64().unwrap_or(0),
                repeat: read("repeat.blocks")?,
                fresh: read("fresh.blocks")?,
                dir,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let newcomers = measured * MEASURED_TXS;
    let regulars: Vec<SigningKey> = (0..REGULARS)
        .into_par_iter()
        .map(|i| key("regular", i))
        .collect();
    let fresh_keys: Vec<SigningKey> = (0..newcomers)
        .into_par_iter()
        .map(|i| key("newcomer", i))
        .collect();
    let allocations: Vec<(Address, Amount)> = regulars
        .iter()
        .chain(&fresh_keys)
        .map(|k| {
            (
                apiary_core::hd::address_of(k),
                Amount::from_coins(1_000_000).unwrap(),
            )
        })
        .collect();
    let fill_txs = accounts.saturating_sub(allocations.len() as u64 + 1);
    let fill_blocks = fill_txs.div_ceil(FILL_TXS as u64);
    let blocks = fill_blocks + 2 * measured as u64;
    let spec = Arc::new(
        NewSpec {
            chain_id: ChainId::new("apiary-bench-scale")?,
            address_prefix: AddressPrefix::new("apbench")?,
            // Room for every block a second apart, ending before now.
            genesis_timestamp_ms: now_ms() - (blocks + 60) * 1_000,
            target_block_time_ms: 1_000,
            asert_half_life_ms: 1_000_000_000,
            initial_hashes: 2,
            min_hashes: 2,
            max_block_bytes: 4 << 20,
            max_block_txs: FILL_TXS as u32,
            max_future_drift_ms: 3_600_000,
            initial_reward: Amount::from_coins(50).unwrap(),
            halving_interval: 0,
            max_reorg_depth: 100,
            allocations,
        }
        .build()?,
    );
    std::fs::write(dir.join("spec.toml"), apiary_genesis::spec_to_toml(&spec))?;
    let miner = Address([7; 32]);
    let keys = apiary_core::tx::KeyCache::default();
    let budget = CacheBudget::mib(1024);
    let open = |path: &Path| -> Result<Chain> {
        let store = Store::open_tuned(path, spec.genesis_hash(), budget.store_tuning())?;
        Ok(Chain::open_with_budget(store, spec.clone(), &budget)?)
    };

    eprintln!("making a ledger of {accounts} accounts: {fill_txs} transfers to new addresses in {fill_blocks} blocks");
    let started = Instant::now();
    let mut chain = open(&dir.join("db"))?;
    for block in 0..fill_blocks {
        let first = block * FILL_TXS as u64;
        let txs: Vec<SignedTransaction> = (first..(first + FILL_TXS as u64).min(fill_txs))
            .into_par_iter()
            .map(|j| {
                let sender = (j % REGULARS as u64) as usize;
                transfer(
                    &spec,
                    &regulars[sender],
                    fill_address(j),
                    1,
                    j / REGULARS as u64,
                )
            })
            .collect();
        take(&mut chain, &spec, &keys, miner, txs, 1 + block)?;
        if block % 100 == 99 {
            eprintln!(
                "  {} of {fill_blocks} blocks, {:.0} s",
                block + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    chain.flush_state()?;
    chain.flush_memtables()?;
    drop(chain);
    compact(&dir.join("db"), &spec)?;
    eprintln!(
        "made in {:.0} s; building the measured blocks",
        started.elapsed().as_secs_f64()
    );

    // The measured blocks, built on a clone so the ledger stays at its tip.
    let scratch = tempfile::TempDir::new_in(cache)?;
    clone_store(&dir.join("db"), &scratch.path().join("db"))?;
    let mut chain = open(&scratch.path().join("db"))?;
    let mut repeat = Vec::with_capacity(measured);
    let mut picks = crate::connect::Picks(7);
    let height = 1 + fill_blocks;
    for block in 0..measured as u64 {
        let txs: Vec<SignedTransaction> = (0..MEASURED_TXS as u64)
            .map(|i| (i, picks.next(fill_txs.max(1) as usize) as u64))
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(i, to)| {
                let j = fill_txs + block * MEASURED_TXS as u64 + i;
                let sender = (j % REGULARS as u64) as usize;
                transfer(
                    &spec,
                    &regulars[sender],
                    fill_address(to),
                    1,
                    j / REGULARS as u64,
                )
            })
            .collect();
        repeat.push(take(&mut chain, &spec, &keys, miner, txs, height + block)?);
    }
    let mut fresh = Vec::with_capacity(measured);
    for block in 0..measured as u64 {
        let txs: Vec<SignedTransaction> = (0..MEASURED_TXS as u64)
            .into_par_iter()
            .map(|i| {
                let n = block * MEASURED_TXS as u64 + i;
                let to = fill_address(u64::MAX - n);
                transfer(&spec, &fresh_keys[n as usize], to, 1, 0)
            })
            .collect();
        fresh.push(take(
            &mut chain,
            &spec,
            &keys,
            miner,
            txs,
            height + measured as u64 + block,
        )?);
    }
    drop(chain);
    std::fs::write(dir.join("repeat.blocks"), borsh::to_vec(&repeat)?)?;
    std::fs::write(dir.join("fresh.blocks"), borsh::to_vec(&fresh)?)?;
    std::fs::write(
        &meta_path,
        json!({"format": FORMAT, "accounts": accounts, "txs": fill_txs, "compacted": true})
            .to_string(),
    )?;
    Ok(Ledger {
        dir,
        spec,
        accounts,
        txs: fill_txs,
        repeat,
        fresh,
    })
}

/// Builds a block of `txs` at `height` (a second after the one before), takes it into
/// `chain` and returns its bytes. Its signatures are known good: marked so in `keys`, they
/// are not checked again.
fn take(
    chain: &mut Chain,
    spec: &Arc<ChainSpec>,
    keys: &apiary_core::tx::KeyCache,
    miner: Address,
    txs: Vec<SignedTransaction>,
    height: u64,
) -> Result<Vec<u8>> {
    let timestamp = spec.genesis_timestamp_ms.0 + height * 1_000;
    let mut block = block_of(chain, spec, miner, txs, timestamp)?;
    block.header.nonce = search_nonce(&block.header, 0, 1, || false).expect("easy target");
    let txids = block.txids();
    for txid in &txids {
        keys.remember_verified(*txid);
    }
    let bytes = block.encode();
    let checked = CheckedBlock::check_with_txids(block, txids, bytes.clone(), spec, keys)?;
    if !matches!(
        chain.accept_block_deferred(checked, None, now_ms())?,
        Accepted::NewTip(_)
    ) {
        bail!("block {height} did not extend the chain");
    }
    Ok(bytes)
}

/// A copy of the closed store at `from` in `to`: its table files linked (RocksDB never
/// changes one), everything else copied (the copy's writes must not reach the original).
pub(crate) fn clone_store(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            clone_store(&entry.path(), &target)?;
        } else if entry.path().extension().is_some_and(|e| e == "sst") {
            std::fs::hard_link(entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Compacts a ledger made in bulk: a node that grew to its size over months would have
/// done that work in the background long ago, and the measured runs must not inherit it.
fn compact(db: &Path, spec: &ChainSpec) -> Result<()> {
    eprintln!("compacting {}", db.display());
    let started = Instant::now();
    Store::open(db, spec.genesis_hash())?.compact()?;
    eprintln!("compacted in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
