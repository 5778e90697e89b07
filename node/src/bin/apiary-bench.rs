//! `apiary-bench`: end-to-end benchmarks of a release build, each reported against a limit
//! measured in the same run on the same machine. Run through `scripts/bench`.
//!
//! - `connect`: a fresh node connects a chain of blocks full of transfers from disk
//!   (decode, stateless checks, signatures, state, one synced write batch per block),
//!   against raw ed25519 batch verification of the same signatures on all cores.
//! - `mining`: the miner's nonces per second on one thread, against the raw rate of the two
//!   SHA-256 compressions every nonce needs.

use anyhow::{bail, Context, Result};
use apiary_core::block::HEADER_BYTES;
use apiary_core::pow::U256;
use apiary_core::spec::ChainId;
use apiary_core::{
    Address, AddressPrefix, Amount, Block, BlockHash, BlockHeader, ChainSpec, Height, Nonce,
    SignedTransaction, SigningKey, Target, Transaction, TxId,
};
use apiary_genesis::NewSpec;
use apiary_node::chain::{Accepted, Chain, CheckedBlock};
use apiary_node::mempool::MempoolConfig;
use apiary_node::miner::{assemble_block, search_nonce, NONCES_BETWEEN_CHECKS};
use apiary_node::p2p::{self, NetworkConfig};
use apiary_node::store::Store;
use apiary_node::{now_ms, Node};
use rayon::prelude::*;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const ALL: [&str; 5] = ["connect", "sync", "propagation", "gossip", "mining"];

fn main() -> Result<()> {
    let mut names = Vec::new();
    let mut markdown: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--markdown" => markdown = Some(args.next().context("--markdown FILE")?.into()),
            "--help" | "-h" => {
                println!(
                    "usage: apiary-bench [--markdown BENCHMARKS.md] [{}]...",
                    ALL.join("|")
                );
                return Ok(());
            }
            name if ALL.contains(&name) => names.push(name.to_string()),
            other => bail!("unknown benchmark {other:?}; known: {}", ALL.join(", ")),
        }
    }
    if names.is_empty() {
        names = ALL.iter().map(|s| s.to_string()).collect();
    }
    let mut results = Map::new();
    // `sync` is measured against `connect` of the same run, on the node `connect` filled.
    if names.iter().any(|n| n == "connect" || n == "sync") {
        eprintln!("== connect");
        let (connect, node) = bench_connect(&ConnectParams::from_env()?)?;
        eprintln!("connect: {connect}");
        if names.iter().any(|n| n == "sync") {
            eprintln!("== sync");
            let sync = bench_sync(node, &connect)?;
            eprintln!("sync: {sync}");
            results.insert("sync".into(), sync);
        }
        if names.iter().any(|n| n == "connect") {
            results.insert("connect".into(), connect);
        }
    }
    if names.iter().any(|n| n == "propagation") {
        eprintln!("== propagation");
        let propagation = bench_propagation()?;
        eprintln!("propagation: {propagation}");
        results.insert("propagation".into(), propagation);
    }
    if names.iter().any(|n| n == "gossip") {
        eprintln!("== gossip");
        let gossip = bench_gossip()?;
        eprintln!("gossip: {gossip}");
        results.insert("gossip".into(), gossip);
    }
    if names.iter().any(|n| n == "mining") {
        eprintln!("== mining");
        let mining = bench_mining();
        eprintln!("mining: {mining}");
        results.insert("mining".into(), mining);
    }
    if let Some(path) = markdown {
        update_markdown(&path, &results)?;
    }
    println!("{}", Value::Object(results));
    Ok(())
}

struct ConnectParams {
    blocks: usize,
    txs_per_block: usize,
    accounts: usize,
}

impl ConnectParams {
    fn from_env() -> Result<ConnectParams> {
        Ok(ConnectParams {
            blocks: env_size("BENCH_BLOCKS", 200)?,
            txs_per_block: env_size("BENCH_TXS", 1000)?,
            accounts: env_size("BENCH_ACCOUNTS", 100_000)?,
        })
    }
}

/// A size from the environment, or `default` when unset.
fn env_size(name: &str, default: usize) -> Result<usize> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.parse().with_context(|| format!("{name}={v:?}"))
    })
}

/// Funded bench accounts: keys derived from their index, and their addresses.
struct Accounts {
    keys: Vec<SigningKey>,
    addresses: Vec<Address>,
}

impl Accounts {
    fn derive(count: usize) -> Accounts {
        let keys: Vec<SigningKey> = (0..count as u64)
            .into_par_iter()
            .map(|i| SigningKey::from_bytes(&Sha256::digest(i.to_le_bytes()).into()))
            .collect();
        let addresses = keys.par_iter().map(apiary_core::hd::address_of).collect();
        Accounts { keys, addresses }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// 1,000 base units, fee 1,000, from account `from` to account `to`.
    fn transfer(&self, spec: &ChainSpec, from: usize, to: usize, nonce: u64) -> SignedTransaction {
        Transaction {
            chain_id: spec.chain_id.clone(),
            from: self.addresses[from],
            to: self.addresses[to],
            amount: Amount::from_base_units(1_000),
            fee: Amount::from_base_units(1_000),
            nonce: Nonce(nonce),
        }
        .sign(&self.keys[from])
    }
}

fn bench_spec(addresses: &[Address], params: &ConnectParams) -> Result<ChainSpec> {
    Ok(NewSpec {
        chain_id: ChainId::new("apiary-bench")?,
        address_prefix: AddressPrefix::new("apbench")?,
        genesis_timestamp_ms: now_ms() - 3_600_000,
        target_block_time_ms: 1_000,
        asert_half_life_ms: 1_000_000_000,
        initial_hashes: 2,
        min_hashes: 2,
        max_block_bytes: 64 << 20,
        max_block_txs: params.txs_per_block as u32,
        max_future_drift_ms: 3_600_000,
        initial_reward: Amount::from_coins(50).unwrap(),
        halving_interval: 0,
        max_reorg_depth: 100,
        allocations: addresses
            .iter()
            .map(|a| (*a, Amount::from_coins(1_000).unwrap()))
            .collect(),
    }
    .build()?)
}

/// splitmix64: a deterministic choice of senders and receivers.
struct Picks(u64);
impl Picks {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % below as u64) as usize
    }
}

/// Builds the chain with a generator node and returns its blocks' bytes.
fn generate_chain(
    spec: &Arc<ChainSpec>,
    accounts: &Accounts,
    params: &ConnectParams,
) -> Result<Vec<Vec<u8>>> {
    let dir = tempfile::TempDir::new()?;
    let mut chain = Chain::open(
        Store::open(&dir.path().join("db"), spec.genesis_hash())?,
        spec.clone(),
    )?;
    let mut nonces = vec![0u64; accounts.len()];
    let mut picks = Picks(42);
    let miner = accounts.addresses[0];
    let mut encoded = Vec::with_capacity(params.blocks);
    let key_cache = apiary_core::tx::KeyCache::default();
    for height in 0..params.blocks {
        let plan: Vec<(usize, usize, u64)> = (0..params.txs_per_block)
            .map(|_| {
                let from = picks.next(accounts.len());
                let to = picks.next(accounts.len());
                nonces[from] += 1;
                (from, to, nonces[from] - 1)
            })
            .collect();
        let txs: Vec<SignedTransaction> = plan
            .par_iter()
            .map(|&(from, to, nonce)| accounts.transfer(spec, from, to, nonce))
            .collect();
        let context = chain.parent_context(&chain.tip()).expect("tip is indexed");
        let mut block = assemble_block(chain.state_mut(), spec, &context, miner, txs, now_ms());
        if block.txs.len() != params.txs_per_block {
            bail!(
                "block {height} holds {} transactions, not {}",
                block.txs.len(),
                params.txs_per_block
            );
        }
        block.header.nonce = search_nonce(&block.header, 0, 1, || false).expect("easy target");
        let bytes = block.encode();
        encoded.push(bytes.clone());
        let checked = CheckedBlock::check(block, bytes, spec, &key_cache)?;
        if !matches!(chain.accept_block(checked, now_ms())?, Accepted::NewTip(_)) {
            bail!("generated block {height} did not extend the chain");
        }
    }
    Ok(encoded)
}

/// Signatures per second of raw ed25519 batch verification on all cores.
fn batch_verify_limit(blocks: &[Block]) -> f64 {
    let txs: Vec<&SignedTransaction> = blocks.iter().flat_map(|b| &b.txs).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = txs
        .par_iter()
        .map(|stx| ed25519_dalek::VerifyingKey::from_bytes(&stx.tx.from.0).unwrap())
        .collect();
    let messages: Vec<Vec<u8>> = txs.iter().map(|stx| stx.tx.signing_bytes()).collect();
    let signatures: Vec<ed25519_dalek::Signature> = txs
        .iter()
        .map(|stx| ed25519_dalek::Signature::from_bytes(&stx.signature))
        .collect();
    let started = Instant::now();
    let chunk = apiary_core::tx::SIGNATURE_BATCH;
    let ok = (0..txs.len().div_ceil(chunk)).into_par_iter().all(|i| {
        let range = i * chunk..((i + 1) * chunk).min(txs.len());
        let refs: Vec<&[u8]> = messages[range.clone()].iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&refs, &signatures[range.clone()], &keys[range]).is_ok()
    });
    assert!(ok, "generated signatures verify");
    txs.len() as f64 / started.elapsed().as_secs_f64()
}

/// Returns the figures and the node that connected the chain (with its data dir).
fn bench_connect(params: &ConnectParams) -> Result<(Value, (Arc<Node>, tempfile::TempDir))> {
    eprintln!("deriving {} account keys", params.accounts);
    let accounts = Accounts::derive(params.accounts);
    let spec = Arc::new(bench_spec(&accounts.addresses, params)?);
    eprintln!(
        "generating {} blocks x {} transfers",
        params.blocks, params.txs_per_block
    );
    let encoded = generate_chain(&spec, &accounts, params)?;
    let path = tempfile::NamedTempFile::new()?;
    std::fs::write(path.path(), borsh::to_vec(&encoded)?)?;

    let (node, dir) = fresh_node(&spec)?;
    eprintln!("connecting from disk on a fresh node");
    let started = Instant::now();
    let file: Vec<Vec<u8>> = borsh::from_slice(&std::fs::read(path.path())?)?;
    node.connect_in_order(file)?;
    if node.lock().chain.height().0 != params.blocks as u64 {
        bail!("the chain did not reach height {}", params.blocks);
    }
    // Accounts and the tx index reach the disk in periodic flushes: count the flush too.
    let flush_started = Instant::now();
    node.lock().chain.flush_state()?;
    let flush_seconds = flush_started.elapsed().as_secs_f64();
    let seconds = started.elapsed().as_secs_f64();
    let blocks: Vec<Block> = encoded
        .iter()
        .map(|b| borsh::from_slice(b))
        .collect::<Result<_, _>>()?;
    let txs = params.blocks * params.txs_per_block;
    let tx_per_s = txs as f64 / seconds;
    eprintln!("measuring raw batch verification of the same {txs} signatures");
    // Best of three: this machine's speed wanders by a fifth from second to second, and
    // the fastest pass is the strictest limit.
    let limit = (0..3)
        .map(|_| batch_verify_limit(&blocks))
        .fold(0.0, f64::max);
    // Where the time goes: the stateless checks alone (signatures included), again.
    let started = Instant::now();
    for block in &blocks {
        apiary_core::validate::check_block(
            block,
            block.encode().len(),
            &spec,
            &apiary_core::tx::KeyCache::default(),
        )?;
    }
    let stateless_seconds = started.elapsed().as_secs_f64();
    let figures = json!({
        "value": tx_per_s.round() as u64,
        "unit": "tx/s",
        "limit": limit.round() as u64,
        "ratio": round3(tx_per_s / limit),
        "params": {
            "blocks": params.blocks,
            "txs_per_block": params.txs_per_block,
            "accounts": params.accounts,
            "seconds": round3(seconds),
            "stateless_checks_seconds": round3(stateless_seconds),
            "final_state_flush_seconds": round3(flush_seconds),
            "threads": rayon::current_num_threads(),
            "limit_is": "ed25519 verify_batch on all cores, same signatures, best of 3 passes",
        },
    });
    Ok((figures, (node, dir)))
}

/// A fresh node syncs the whole chain over libp2p (loopback) from the node that connected
/// it; the limit is `connect` of the same run (the same work, from a local file).
fn bench_sync(server: (Arc<Node>, tempfile::TempDir), connect: &Value) -> Result<Value> {
    let (server, server_dir) = server;
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let (_, server_addr) = start_on_loopback(&server, server_dir.path(), vec![])?;
    let (target, txs) = {
        let guard = server.lock();
        let height = guard.chain.height().0;
        let txs: usize = (1..=height)
            .map(|h| {
                guard
                    .chain
                    .body(&guard.chain.main_hash(apiary_core::Height(h)).unwrap())
                    .map(|b| b.txs.len())
            })
            .sum::<Result<usize, _>>()?;
        (height, txs)
    };

    let (client, dir) = fresh_node(&Arc::new(server.spec().clone()))?;
    eprintln!("syncing {target} blocks ({txs} transfers) over loopback");
    let started = Instant::now();
    start_on_loopback(&client, dir.path(), vec![server_addr])?;
    wait_for("the sync to finish", SYNC_LIMIT, || {
        client.lock().chain.height().0 >= target
    })?;
    client.lock().chain.flush_state()?;
    let seconds = started.elapsed().as_secs_f64();
    let tx_per_s = txs as f64 / seconds;
    let limit = connect["value"].as_f64().unwrap_or(f64::NAN);
    client.shutdown();
    server.shutdown();
    Ok(json!({
        "value": tx_per_s.round() as u64,
        "unit": "tx/s",
        "limit": limit.round() as u64,
        "ratio": round3(tx_per_s / limit),
        "params": {
            "blocks": target,
            "txs": txs,
            "seconds": round3(seconds),
            "limit_is": "connect of the same run (same chain from a local file)",
        },
    }))
}

/// Five nodes in this process, connected over libp2p on 127.0.0.1. Each round, 1,000
/// transfers are gossiped to every mempool first; then node 0 mines a block of them, and the
/// delay is from the block's timestamp (set when it was assembled, a millisecond before its
/// trivial proof of work) until the last of the other four has connected it.
fn bench_propagation() -> Result<Value> {
    let rounds = env_size("BENCH_PROP_BLOCKS", 100)?;
    let txs_per_block = env_size("BENCH_TXS", 1000)?;
    let nodes_count = 5;
    let params = ConnectParams {
        blocks: rounds,
        txs_per_block,
        accounts: txs_per_block,
    };
    let accounts = Accounts::derive(txs_per_block);
    let spec = Arc::new(bench_spec(&accounts.addresses, &params)?);

    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let (nodes, _dirs) = start_testnet(&spec, nodes_count)?;

    let miner = accounts.addresses[0];
    // Rounds alternate: the block is mined once its txs have sat in every mempool for
    // MEMPOOL_AGE (as in a network where a tx waits part of a block interval), or the
    // moment the last mempool has them, while gossipsub still relays the duplicates of
    // the burst (the worst case on two shared cores).
    let mut settled_ms = Vec::with_capacity(rounds);
    let mut burst_ms = Vec::with_capacity(rounds);
    for round in 0..2 * rounds {
        let txs: Vec<SignedTransaction> = (0..txs_per_block)
            .into_par_iter()
            .map(|j| accounts.transfer(&spec, j, (j + 1) % txs_per_block, round as u64))
            .collect();
        for (j, stx) in txs.into_iter().enumerate() {
            nodes[j % nodes_count].0.submit_tx(stx)?;
        }
        wait_for("the transfers to reach every mempool", STEP_LIMIT, || {
            nodes
                .iter()
                .all(|(n, _)| n.lock().mempool.len() == txs_per_block)
        })?;
        let settled = round % 2 == 0;
        if settled {
            std::thread::sleep(MEMPOOL_AGE);
        }
        // Mined = the moment the proof of work is found (assembling the template and
        // searching nonces come before); then the miner's own path takes it.
        let mut block = apiary_node::miner::build_template(&mut nodes[0].0.lock(), miner, now_ms());
        block.header.nonce =
            search_nonce(&block.header, 0, 1, || false).context("the nonce space ran out")?;
        let hash = block.hash();
        let mined_ms = now_ms();
        if !matches!(nodes[0].0.submit_mined_block(block)?, Accepted::NewTip(_)) {
            bail!("the mined block did not extend the chain");
        }
        let mut seen = vec![None; nodes_count];
        seen[0] = Some(mined_ms);
        wait_for("the block to reach every node", STEP_LIMIT, || {
            for (i, (node, _)) in nodes.iter().enumerate() {
                if seen[i].is_none() && node.lock().chain.is_main(&hash) {
                    seen[i] = Some(now_ms());
                }
            }
            seen.iter().all(Option::is_some)
        })?;
        let last = seen.iter().flatten().max().copied().unwrap_or(mined_ms);
        let delay = last.saturating_sub(mined_ms);
        if settled {
            settled_ms.push(delay);
        } else {
            burst_ms.push(delay);
        }
    }
    for (node, _) in &nodes {
        node.shutdown();
    }
    let percentiles = |delays: &mut Vec<u64>| {
        delays.sort_unstable();
        let at = |p: f64| delays[((delays.len() as f64 - 1.0) * p).round() as usize];
        (at(0.5), at(0.99))
    };
    let (p50, p99) = percentiles(&mut settled_ms);
    let (burst_p50, burst_p99) = percentiles(&mut burst_ms);
    Ok(json!({
        "value": p50,
        "unit": "ms (p50)",
        "limit": null,
        "ratio": null,
        "params": {
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": settled_ms.last(),
            "blocks": rounds,
            "txs_per_block": txs_per_block,
            "nodes": nodes_count,
            "mempool_age_ms": MEMPOOL_AGE.as_millis() as u64,
            "mined_during_tx_burst": {"p50_ms": burst_p50, "p99_ms": burst_p99, "blocks": rounds},
            "relay": "compact blocks (header + txids), rebuilt from each mempool",
            "setup": "5 nodes in one process on 2 cores, libp2p over 127.0.0.1, txs gossiped before each block",
        },
    }))
}

/// How long a block's txs sit in every mempool before it is mined, in `propagation`'s
/// settled rounds.
const MEMPOOL_AGE: std::time::Duration = std::time::Duration::from_millis(500);

/// `count` fresh nodes on loopback, all bootstrapping from the first, once each has a peer.
/// Call inside a tokio runtime; the directories must outlive the nodes.
#[allow(clippy::type_complexity)]
fn start_testnet(
    spec: &Arc<ChainSpec>,
    count: usize,
) -> Result<(Vec<(Arc<Node>, p2p::NetworkHandle)>, Vec<tempfile::TempDir>)> {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut boot: Option<libp2p::Multiaddr> = None;
    for _ in 0..count {
        let (node, dir) = fresh_node(spec)?;
        let (handle, addr) = start_on_loopback(&node, dir.path(), boot.iter().cloned().collect())?;
        boot.get_or_insert(addr);
        nodes.push((node, handle));
        dirs.push(dir);
    }
    wait_for("every node to have a peer", STEP_LIMIT, || {
        nodes.iter().all(|(_, h)| !h.peers().is_empty())
    })?;
    Ok((nodes, dirs))
}

/// Sustained load: signed transfers submitted at a steady rate, round robin over 5 nodes,
/// while the nodes take turns mining a block a second. Measures the rate at which they
/// are confirmed on every node, and the time from submission to that.
fn bench_gossip() -> Result<Value> {
    let rate = env_size("BENCH_GOSSIP_RATE", 2_000)?;
    let seconds = env_size("BENCH_GOSSIP_SECONDS", 20)?;
    let senders = env_size("BENCH_GOSSIP_SENDERS", 2_000)?;
    let nodes_count = 5;
    let total = rate * seconds;
    let params = ConnectParams {
        blocks: 0,
        txs_per_block: rate * 4,
        accounts: senders,
    };
    let accounts = Accounts::derive(senders);
    let spec = Arc::new(bench_spec(&accounts.addresses, &params)?);
    eprintln!("signing {total} transfers from {senders} senders");
    // Nonce-major order: each sender's transactions are a second or so apart.
    let txs: Vec<SignedTransaction> = (0..total)
        .into_par_iter()
        .map(|i| {
            let (nonce, sender) = (i / senders, i % senders);
            accounts.transfer(&spec, sender, (sender + 1) % senders, nonce as u64)
        })
        .collect();
    let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();

    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let (nodes, _dirs) = start_testnet(&spec, nodes_count)?;
    let miner = accounts.addresses[0];
    let node_refs: Vec<&Arc<Node>> = nodes.iter().map(|(n, _)| n).collect();
    let started = Instant::now();
    let submitted_at = std::sync::Mutex::new(vec![None::<Instant>; total]);
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut confirmed_at: std::collections::HashMap<TxId, (usize, Instant)> =
        std::collections::HashMap::with_capacity(total);
    let mut refused = 0usize;
    std::thread::scope(|scope| -> Result<()> {
        // The submitter: steady rate, each tx to the next node, as wallets would.
        let submitter = scope.spawn(|| {
            let mut refused = 0;
            for (i, stx) in txs.iter().enumerate() {
                let due = started + std::time::Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                submitted_at.lock().unwrap()[i] = Some(Instant::now());
                if node_refs[i % nodes_count].submit_tx(stx.clone()).is_err() {
                    refused += 1;
                }
            }
            refused
        });
        // The miners: one block a second, from each node in turn.
        let mining = scope.spawn(|| -> Result<()> {
            let mut round = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let due = started + std::time::Duration::from_secs(round as u64 + 1);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                apiary_node::miner::mine_block(node_refs[round % nodes_count], miner, 1)?;
                round += 1;
            }
            Ok(())
        });
        // The observer: when each tx is in the main chain of every node. It stops when all
        // are, or when nothing more confirmed for 10 s after the last submission.
        // Blocks are followed by hash, not height: under load, nodes mining in turn fork
        // and reorganise.
        let mut seen_blocks: Vec<std::collections::HashSet<BlockHash>> =
            vec![Default::default(); nodes_count];
        let mut seen_txs: Vec<std::collections::HashSet<TxId>> =
            vec![Default::default(); nodes_count];
        let mut everywhere = 0;
        let mut progressed = Instant::now();
        while everywhere < total
            && !(submitter.is_finished()
                && progressed.elapsed() > std::time::Duration::from_secs(10))
        {
            for (i, node) in node_refs.iter().enumerate() {
                let blocks = {
                    let state = node.lock();
                    let mut blocks = Vec::new();
                    let mut height = state.chain.height().0;
                    while let Some(hash) = state.chain.main_hash(Height(height)) {
                        if height == 0 || !seen_blocks[i].insert(hash) {
                            break;
                        }
                        blocks.push(state.chain.body(&hash)?);
                        height -= 1;
                    }
                    blocks
                };
                let now = Instant::now();
                for txid in blocks.iter().flat_map(Block::txids) {
                    if !seen_txs[i].insert(txid) {
                        continue;
                    }
                    let entry = confirmed_at.entry(txid).or_insert((0, now));
                    entry.0 += 1;
                    entry.1 = now;
                    if entry.0 == nodes_count {
                        everywhere += 1;
                        progressed = now;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        refused = submitter.join().expect("the submitter does not panic");
        mining.join().expect("the miner does not panic")?;
        Ok(())
    })?;
    for (node, _) in &nodes {
        node.shutdown();
    }
    let submitted_at = submitted_at.into_inner().unwrap();
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(total);
    let mut last_confirmed = started;
    for (txid, submitted) in txids.iter().zip(&submitted_at) {
        let Some(&(seen_by, at)) = confirmed_at.get(txid) else {
            continue;
        };
        if seen_by < nodes_count {
            continue;
        }
        let submitted = submitted.expect("every tx was submitted");
        latencies_ms.push(at.duration_since(submitted).as_secs_f64() * 1_000.0);
        last_confirmed = last_confirmed.max(at);
    }
    let confirmed = latencies_ms.len();
    if confirmed == 0 {
        bail!("no transaction was confirmed on every node");
    }
    latencies_ms.sort_unstable_by(f64::total_cmp);
    let percentile =
        |p: f64| latencies_ms[((latencies_ms.len() as f64 - 1.0) * p).round() as usize];
    let confirmed_per_s = confirmed as f64 / last_confirmed.duration_since(started).as_secs_f64();
    Ok(json!({
        "value": confirmed_per_s.round() as u64,
        "unit": "confirmed tx/s",
        "limit": rate,
        "ratio": round3(confirmed_per_s / rate as f64),
        "params": {
            "offered_tx_per_s": rate,
            "txs": total,
            "senders": senders,
            "refused_at_submission": refused,
            "not_confirmed": total - confirmed,
            "p50_confirm_ms": percentile(0.5).round(),
            "p99_confirm_ms": percentile(0.99).round(),
            "block_interval_ms": 1_000,
            "nodes": nodes_count,
            "limit_is": "the offered rate",
            "setup": "5 nodes in one process on 2 cores, libp2p over 127.0.0.1; each tx submitted to one node, gossiped to the others; nodes mine in turn, a block a second",
        },
    }))
}

/// A node of `spec` on an empty store in a temp dir (which must outlive it).
fn fresh_node(spec: &Arc<ChainSpec>) -> Result<(Arc<Node>, tempfile::TempDir)> {
    let dir = tempfile::TempDir::new()?;
    let store = Store::open(&dir.path().join("db"), spec.genesis_hash())?;
    Ok((
        Node::new(Chain::open(store, spec.clone())?, MempoolConfig::default()),
        dir,
    ))
}

/// Starts `node`'s network on an ephemeral 127.0.0.1 port; returns it with its address.
fn start_on_loopback(
    node: &Arc<Node>,
    datadir: &std::path::Path,
    bootnodes: Vec<libp2p::Multiaddr>,
) -> Result<(p2p::NetworkHandle, libp2p::Multiaddr)> {
    let listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    let handle = p2p::start(
        node.clone(),
        NetworkConfig {
            listen,
            bootnodes,
            datadir: datadir.to_path_buf(),
            mdns: false,
        },
    )?;
    let addr_file = datadir.join("p2p.addr");
    wait_for("a node to listen", STEP_LIMIT, || addr_file.exists())?;
    Ok((handle, std::fs::read_to_string(&addr_file)?.trim().parse()?))
}

/// How long a step of a benchmark may take before it is called stuck.
const STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
const SYNC_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Polls `done` every 200 µs until it holds, for up to `limit`.
fn wait_for(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn bench_mining() -> Value {
    let header = BlockHeader {
        version: 1,
        height: apiary_core::Height(1),
        prev_hash: Default::default(),
        tx_root: Default::default(),
        state_root: Default::default(),
        miner: Address([1; 32]),
        timestamp_ms: now_ms(),
        bits: apiary_core::CompactTarget(0x1f00ffff),
        nonce: 0,
    };
    // The miner's own search loop, on a target no hash meets, stopped after `rounds`.
    let mut impossible = header.clone();
    impossible.bits = Target::from_u256(U256::one()).unwrap().to_compact();
    let checks_wanted = 20_000_000 / NONCES_BETWEEN_CHECKS;
    let rounds = checks_wanted * NONCES_BETWEEN_CHECKS;
    let checks = std::cell::Cell::new(0u64);
    let started = Instant::now();
    let found = search_nonce(&impossible, 0, 1, || {
        checks.set(checks.get() + 1);
        checks.get() >= checks_wanted
    });
    assert!(found.is_none(), "no hash meets a target of 1");
    let miner_rate = rounds as f64 / started.elapsed().as_secs_f64();
    let mut sink = 0u8;

    // The floor of any nonce search: two SHA-256 compressions per nonce, nothing else.
    let mut state = [0u32; 8];
    let block = [[7u8; 64]];
    let started = Instant::now();
    for i in 0..rounds {
        state[0] ^= i as u32;
        sha2::block_api::compress256(&mut state, &block);
        sha2::block_api::compress256(&mut state, &block);
    }
    sink ^= state[0] as u8;
    let raw_rate = rounds as f64 / started.elapsed().as_secs_f64();

    // For reference: hashing the whole 160-byte header twice per nonce, no midstate.
    let mut bytes = header.encode();
    let plain_rounds = rounds / 4;
    let started = Instant::now();
    for nonce in 0..plain_rounds {
        bytes[HEADER_BYTES - 8..].copy_from_slice(&nonce.to_le_bytes());
        sink ^= Sha256::digest(Sha256::digest(bytes))[0];
    }
    let plain_rate = plain_rounds as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    json!({
        "value": miner_rate.round() as u64,
        "unit": "hashes/s/thread",
        "limit": raw_rate.round() as u64,
        "ratio": round3(miner_rate / raw_rate),
        "params": {
            "nonces": rounds,
            "limit_is": "two raw SHA-256 compressions per nonce, one thread",
            "plain_sha256d_of_header_per_s": plain_rate.round() as u64,
        },
    })
}

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

/// Rewrites the table between the bench markers, keeping rows of benchmarks not run now.
fn update_markdown(path: &PathBuf, results: &Map<String, Value>) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (before, old_table, after) = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => (
            &text[..b],
            &text[b + BEGIN.len()..e],
            &text[e + END.len()..],
        ),
        _ => (text.as_str(), "", "\n"),
    };
    let mut rows: std::collections::BTreeMap<String, String> = old_table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| Some((l.split('`').nth(1)?.to_string(), l.to_string())))
        .collect();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()?;
    let date = String::from_utf8_lossy(&date.stdout).trim().to_string();
    for (name, r) in results {
        rows.insert(
            name.clone(),
            format!(
                "| `{name}` | {} {} | {} | {} | `{}` | {date} |",
                r["value"],
                r["unit"].as_str().unwrap_or(""),
                r["limit"],
                r["ratio"],
                r["params"]
            ),
        );
    }
    let mut table = String::from(
        "\n| benchmark | value | limit (same run) | ratio | params | date |\n|---|---|---|---|---|---|\n",
    );
    for row in rows.values() {
        table.push_str(row);
        table.push('\n');
    }
    std::fs::write(path, format!("{before}{BEGIN}{table}{END}{after}"))?;
    Ok(())
}
