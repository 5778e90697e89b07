//! `sync_empty`: a fresh `apiary-node` syncs a long chain of near-empty blocks (each pays
//! its miner only) from one peer, as a node joining a chain a year old would: blocks per
//! second, and its memory at the end (the header index grows with every block). Against
//! the same blocks connected in-process from memory in the same run. The chain
//! (`BENCH_SYNC_BLOCKS`, default 1,000,000) is made once and kept beside the ledgers.

use super::super::*;
use super::{cache_dir, clone_store};
use apiary_node::cache::CacheBudget;
use procs::NodeProc;
use std::path::Path;
use std::time::Duration;

/// Bump when what a cached chain holds changes.
const FORMAT: u32 = 1;
/// Miners taking turns, so the state holds a few accounts, not one.
const MINERS: u64 = 100;
/// Blocks connected in-process for the limit.
const LIMIT_BLOCKS: u64 = 100_000;

fn miner(height: u64) -> Address {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(height % MINERS).to_le_bytes());
    bytes[31] = 0x5a;
    Address(bytes)
}

/// The chain of `blocks` near-empty blocks in `cache`, made there if missing.
fn chain(cache: &Path, blocks: u64) -> Result<(PathBuf, Arc<ChainSpec>)> {
    let dir = cache.join(format!("empty-{blocks}"));
    let meta = dir.join("chain.json");
    if std::fs::read_to_string(&meta).is_ok_and(|m| m.contains(&format!("\"format\":{FORMAT}"))) {
        eprintln!("using the chain of {blocks} blocks in {}", dir.display());
        return Ok((
            dir.clone(),
            Arc::new(apiary_genesis::load_spec(&dir.join("spec.toml"))?),
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let spec = Arc::new(
        NewSpec {
            chain_id: ChainId::new("apiary-bench-empty")?,
            address_prefix: AddressPrefix::new("apbench")?,
            // A block a millisecond, ending before now; the target block time matches,
            // so the difficulty stays at its floor.
            genesis_timestamp_ms: now_ms() - blocks - 60_000,
            target_block_time_ms: 1,
            asert_half_life_ms: 1_000_000_000,
            initial_hashes: 2,
            min_hashes: 2,
            max_block_bytes: 1 << 20,
            max_block_txs: 1_000,
            max_future_drift_ms: 3_600_000,
            initial_reward: Amount::from_coins(50).unwrap(),
            halving_interval: 0,
            max_reorg_depth: 100,
            allocations: vec![(Address([1; 32]), Amount::from_coins(1).unwrap())],
        }
        .build()?,
    );
    std::fs::write(dir.join("spec.toml"), apiary_genesis::spec_to_toml(&spec))?;
    eprintln!("making a chain of {blocks} near-empty blocks");
    let budget = CacheBudget::default();
    let store = Store::open_tuned(&dir.join("db"), spec.genesis_hash(), budget.store_tuning())?;
    let mut chain = Chain::open_with_budget(store, spec.clone(), &budget)?;
    let keys = apiary_core::tx::KeyCache::default();
    let started = Instant::now();
    for height in 1..=blocks {
        let context = chain.parent_context(&chain.tip()).expect("tip is indexed");
        let timestamp = spec.genesis_timestamp_ms.0 + height;
        let mut block = assemble_block(
            &**chain.state(),
            &spec,
            &context,
            miner(height),
            vec![],
            timestamp,
        )?;
        block.header.nonce = search_nonce(&block.header, 0, 1, || false).expect("easy target");
        let bytes = block.encode();
        let checked = CheckedBlock::check(block, bytes, &spec, &keys)?;
        chain.accept_block_deferred(checked, None, now_ms())?;
        if height % 100_000 == 0 {
            eprintln!(
                "  {height} blocks, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    chain.flush_state()?;
    chain.flush_memtables()?;
    drop(chain);
    std::fs::write(
        &meta,
        json!({"format": FORMAT, "blocks": blocks}).to_string(),
    )?;
    Ok((dir, spec))
}

pub(crate) fn bench_sync_empty() -> Result<Value> {
    let cache = cache_dir()?;
    let blocks = env_size("BENCH_SYNC_BLOCKS", 1_000_000)? as u64;
    let (dir, spec) = chain(&cache, blocks)?;

    // The limit: the first blocks connected in-process from memory on a fresh node.
    let (limit, limit_blocks) = {
        let store = Store::open(&dir.join("db"), spec.genesis_hash())?;
        let source = Chain::open(store, spec.clone())?;
        let count = LIMIT_BLOCKS.min(blocks);
        let encoded: Vec<Vec<u8>> = (1..=count)
            .map(|h| {
                let hash = source.main_hash(Height(h)).context("a main-chain block")?;
                Ok(source.body(&hash)?.encode())
            })
            .collect::<Result<_>>()?;
        drop(source);
        let (node, _scratch) = fresh_node(&spec)?;
        let started = Instant::now();
        for run in encoded.chunks(2_000) {
            node.connect_in_order(run.to_vec())?;
        }
        (count as f64 / started.elapsed().as_secs_f64(), count)
    };
    eprintln!("in-process: {limit:.0} blocks/s");

    let server_dir = tempfile::TempDir::new_in(&cache)?;
    clone_store(&dir.join("db"), &server_dir.path().join("node/db"))?;
    let server = NodeProc::start_in(server_dir, Some(&dir.join("spec.toml")), &[])?;
    let server_addr = procs::wait_for_file(&server.dir.path().join("node/p2p.addr"))?;
    eprintln!("syncing {blocks} blocks from one peer");
    let started = Instant::now();
    let client = NodeProc::start_in(
        tempfile::TempDir::new_in(&cache)?,
        Some(&dir.join("spec.toml")),
        &["--peer", &server_addr],
    )?;
    let mut last_report = Instant::now();
    loop {
        let height = client
            .client
            .ask::<apiary_api::ChainTip>(&apiary_api::NoParams {})?
            .height
            .0;
        if height >= blocks {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "  {height} blocks, {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(3_600) {
            bail!("the sync reached only {height} of {blocks} blocks in an hour");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rss, peak) = client.rss()?;
    let mib = |bytes: u64| round3(bytes as f64 / (1 << 20) as f64);
    Ok(figure(
        blocks as f64 / seconds,
        "blocks/s",
        limit,
        json!({
            "blocks": blocks,
            "seconds": round3(seconds),
            "rss_mib_at_end": mib(rss),
            "peak_rss_mib": mib(peak),
            "limit_blocks": limit_blocks,
            "limit_is": "the first blocks connected in-process from memory, same run",
        }),
    ))
}
