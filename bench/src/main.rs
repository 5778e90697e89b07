//! `apiary-bench`: end-to-end benchmarks of a release build, each reported against a limit
//! measured in the same run on the same machine. Run through `scripts/bench`.
//!
//! - `connect`: a fresh node connects a chain of blocks full of transfers from disk
//!   (decode, stateless checks, signatures, state, one synced write batch per block),
//!   against raw ed25519 batch verification of the same signatures on all cores.
//! - `mining`: the miner's nonces per second on one thread, against the raw rate of the two
//!   SHA-256 compressions every nonce needs.
//! - `scale`: the ledger at 100 k, 1 M and 10 M accounts (see `scale/mod.rs`).
//! - `hosts`: blocks across network namespaces behind rate-limited links (root; see
//!   `hosts.rs`).

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
use apiary_node::mempool::Candidate;
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

mod accept;
mod connect;
mod external;
mod hosts;
mod idle;
mod liar;
mod live;
mod mining;
mod network;
mod pool;
mod procs;
mod report;
mod scale;

use accept::bench_accept;
use connect::{bench_connect, bench_sync};
use mining::bench_mining;
use network::{bench_gossip, bench_propagation, bench_propagation_liar};
use procs::{
    bench_header, builtin_rate, fixed_spec, payee, rpc_round_trip_ms, sibling, wait_for_file,
    NodeProc,
};
use report::update_markdown;

/// The state tree copies and frees pages of about 2 KiB by the thousand per block: glibc
/// serves those sizes from its slow bins (a fifth of block connection went there), mimalloc
/// from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum Bench {
    Connect,
    Sync,
    Propagation,
    PropagationLiar,
    Gossip,
    Accept,
    Mining,
    IdleTestnet,
    WsLatency,
    WsIdleMemory,
    ExplorerLoad,
    ExternalMiner,
    TemplateLatency,
    TemplateBuild,
    PoolShares,
    PoolStaleRate,
    Scale,
    SyncEmpty,
    Hosts,
}

#[derive(clap::Parser)]
#[command(
    name = "apiary-bench",
    about = "End-to-end benchmarks of a release build, each against a limit measured in the same run",
    after_help = "Run through scripts/bench, which builds the release first. Sizes for `connect` \
                  come from BENCH_BLOCKS, BENCH_TXS and BENCH_ACCOUNTS (default 200 x 1000 among \
                  100,000 accounts). Prints progress on stderr and one JSON object on stdout."
)]
struct Args {
    /// Rewrite the results table in this file (BENCHMARKS.md)
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Run every benchmark (a long while)
    #[arg(long, conflicts_with = "benches")]
    all: bool,
    /// The benchmarks to run
    #[arg(value_enum, required_unless_present = "all")]
    benches: Vec<Bench>,
}

fn main() -> Result<()> {
    use clap::{Parser, ValueEnum};
    apiary_cmdline::end_quietly_on_closed_pipe();
    let args = Args::parse();
    let chosen = if args.all {
        Bench::value_variants().to_vec()
    } else {
        args.benches
    };
    let names: Vec<String> = chosen
        .iter()
        .filter_map(|b| b.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect();
    let markdown = args.markdown;
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
    if names.iter().any(|n| n == "propagation_liar") {
        eprintln!("== propagation_liar");
        let result = bench_propagation_liar()?;
        eprintln!("propagation_liar: {result}");
        results.insert("propagation_liar".into(), result);
    }
    if names.iter().any(|n| n == "gossip") {
        eprintln!("== gossip");
        let gossip = bench_gossip()?;
        eprintln!("gossip: {gossip}");
        results.insert("gossip".into(), gossip);
    }
    if names.iter().any(|n| n == "accept") {
        eprintln!("== accept");
        let accept = bench_accept()?;
        eprintln!("accept: {accept}");
        results.insert("accept".into(), accept);
    }
    if names.iter().any(|n| n == "mining") {
        eprintln!("== mining");
        let mining = bench_mining();
        eprintln!("mining: {mining}");
        results.insert("mining".into(), mining);
    }
    if names.iter().any(|n| n == "idle_testnet") {
        eprintln!("== idle_testnet");
        let idle = idle::bench_idle_testnet()?;
        eprintln!("idle_testnet: {idle}");
        results.insert("idle_testnet".into(), idle);
    }
    for (name, run) in [
        (
            "ws_latency",
            live::bench_ws_latency as fn() -> Result<Value>,
        ),
        ("ws_idle_memory", live::bench_ws_idle_memory),
        ("explorer_load", live::bench_explorer_load),
        ("external_miner", external::bench_external_miner),
        ("template_latency", external::bench_template_latency),
        ("template_build", accept::bench_template_build),
        ("pool_shares", pool::bench_pool_shares),
        ("pool_stale_rate", pool::bench_pool_stale_rate),
        ("hosts", hosts::bench_hosts),
    ] {
        if names.iter().any(|n| n == name) {
            eprintln!("== {name}");
            let result = run()?;
            eprintln!("{name}: {result}");
            results.insert(name.into(), result);
        }
    }
    if names.iter().any(|n| n == "scale") {
        eprintln!("== scale");
        results.extend(scale::bench_scale()?);
    }
    if names.iter().any(|n| n == "sync_empty") {
        eprintln!("== sync_empty");
        let result = scale::bench_sync_empty()?;
        eprintln!("sync_empty: {result}");
        results.insert("sync_empty".into(), result);
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
            limits: p2p::PeerLimits::default(),
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

/// A block of exactly `txs` on `chain`'s tip (no proof of work searched yet).
fn block_of(
    chain: &Chain,
    spec: &ChainSpec,
    miner: Address,
    txs: Vec<SignedTransaction>,
    timestamp_ms: u64,
) -> Result<apiary_core::Block> {
    let count = txs.len();
    let context = chain.parent_context(&chain.tip()).expect("tip is indexed");
    let candidates = txs.into_iter().map(Candidate::new).collect();
    let block = assemble_block(
        &**chain.state(),
        spec,
        &context,
        miner,
        candidates,
        timestamp_ms,
    )?;
    if block.txs.len() != count {
        bail!(
            "block {} holds {} of its {count} transactions",
            block.header.height,
            block.txs.len()
        );
    }
    Ok(block)
}

/// One benchmark's result: its value against the limit measured in the same run.
fn figure(value: f64, unit: &str, limit: f64, params: Value) -> Value {
    json!({
        "value": shown(value),
        "unit": unit,
        "limit": shown(limit),
        "ratio": round3(value / limit),
        "params": params,
    })
}

/// Whole above 100 (tx/s, bytes), three decimals below (milliseconds): a p99 of 0.2 ms
/// must not print as 0.
fn shown(x: f64) -> Value {
    if x.abs() >= 100.0 {
        json!(x.round() as u64)
    } else {
        json!(round3(x))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
