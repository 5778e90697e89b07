//! The node's metrics, served as `/metrics` in Prometheus' text format. Counters and
//! histograms are bumped where things happen (blocks, bans, flushes); figures that are
//! state (height, peers, mempool, store size) are read when scraped, by the server above
//! (`Figures`): nothing here reads the node.
//!
//! One set per process, reached through `metrics()`: a node is one process, and the
//! places that count (the chain's flush, the network's bans) need no handle threaded
//! through to them.

use crate::chain::Accepted;
use crate::time::now_ms;
use apiary_core::Height;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Mutex<Registry>,
    height: Gauge,
    tip_age: Gauge<f64, AtomicU64>,
    peers: Family<Labels, Gauge>,
    bans: Counter,
    mempool_txs: Gauge,
    mempool_bytes: Gauge,
    blocks_accepted: Family<Labels, Counter>,
    /// `blocks_accepted`'s three series, looked up once: no allocation or lock per block.
    new_tip: Counter,
    side_branch: Counter,
    duplicate: Counter,
    blocks_rejected: Family<Labels, Counter>,
    block_connect: Histogram,
    block_propagation: Histogram,
    syncing: Gauge,
    sync_best_known_height: Gauge,
    sync_blocks_per_second: Gauge<f64, AtomicU64>,
    flush: Histogram,
    store_bytes: Gauge,
    subscribers: Gauge,
    subscribers_cut_off: Counter,
}

/// The figures that are state, read at each scrape.
pub struct Figures {
    pub height: Height,
    pub tip_timestamp_ms: apiary_core::TimestampMs,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    /// None for a node without a network (tests, benchmarks).
    pub network: Option<NetworkFigures>,
    pub store_path: Option<PathBuf>,
}

pub struct NetworkFigures {
    pub inbound: usize,
    pub outbound: usize,
    pub syncing: bool,
    pub best_known_height: u64,
    pub blocks_per_s: f64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Mutex::new(Registry::with_prefix("apiary")),
            height: Gauge::default(),
            tip_age: Gauge::default(),
            peers: Family::default(),
            bans: Counter::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            blocks_accepted: Family::default(),
            new_tip: Counter::default(),
            side_branch: Counter::default(),
            duplicate: Counter::default(),
            blocks_rejected: Family::default(),
            // 1 ms to about 65 s.
            block_connect: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            // 10 ms to about 160 s: a block's own timestamp to its arrival here.
            block_propagation: Histogram::new(exponential_buckets(0.01, 2.0, 15)),
            syncing: Gauge::default(),
            sync_best_known_height: Gauge::default(),
            sync_blocks_per_second: Gauge::default(),
            flush: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            store_bytes: Gauge::default(),
            subscribers: Gauge::default(),
            subscribers_cut_off: Counter::default(),
        };
        let outcome = |label| {
            metrics
                .blocks_accepted
                .get_or_create_owned(&vec![("outcome", label)])
        };
        (metrics.new_tip, metrics.side_branch, metrics.duplicate) = (
            outcome("new_tip"),
            outcome("side_branch"),
            outcome("duplicate"),
        );
        // Every series shows from the start, at 0: a dashboard's rate() needs the zero,
        // and an operator looking for a reason finds it before it first happens.
        for reason in apiary_core::BlockError::REASONS
            .into_iter()
            .chain(crate::chain::ChainError::OWN_REASONS)
        {
            let _ = metrics
                .blocks_rejected
                .get_or_create_owned(&vec![("reason", reason)]);
        }
        {
            let mut r = metrics.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register("height", "Height of the tip", metrics.height.clone());
            r.register_with_unit(
                "tip_age",
                "Time since the tip's timestamp",
                Unit::Seconds,
                metrics.tip_age.clone(),
            );
            r.register(
                "peers",
                "Connected peers, by direction",
                metrics.peers.clone(),
            );
            r.register(
                "bans",
                "Peers banned for misbehaviour or by an operator",
                metrics.bans.clone(),
            );
            r.register(
                "mempool_transactions",
                "Transactions in the mempool",
                metrics.mempool_txs.clone(),
            );
            r.register_with_unit(
                "mempool",
                "Encoded size of the mempool's transactions",
                Unit::Bytes,
                metrics.mempool_bytes.clone(),
            );
            r.register(
                "blocks_accepted",
                "Blocks taken into the block tree, by outcome",
                metrics.blocks_accepted.clone(),
            );
            r.register(
                "blocks_rejected",
                "Blocks refused, by reason",
                metrics.blocks_rejected.clone(),
            );
            r.register_with_unit(
                "block_connect",
                "Time to take a checked block into the chain (state, store, mempool)",
                Unit::Seconds,
                metrics.block_connect.clone(),
            );
            r.register_with_unit(
                "block_propagation",
                "Delay from a gossiped block's timestamp to its acceptance here",
                Unit::Seconds,
                metrics.block_propagation.clone(),
            );
            r.register(
                "syncing",
                "1 while a peer has proved a chain with more work than ours",
                metrics.syncing.clone(),
            );
            r.register(
                "sync_best_known_height",
                "Height of the best chain a peer has proved with checked headers",
                metrics.sync_best_known_height.clone(),
            );
            r.register(
                "sync_blocks_per_second",
                "Blocks connected per second while catching up",
                metrics.sync_blocks_per_second.clone(),
            );
            r.register_with_unit(
                "state_flush",
                "Time to write the accounts and indexes changed since the last flush",
                Unit::Seconds,
                metrics.flush.clone(),
            );
            r.register_with_unit(
                "store",
                "Size of the RocksDB store on disk",
                Unit::Bytes,
                metrics.store_bytes.clone(),
            );
            r.register(
                "ws_connections",
                "Open WebSocket connections",
                metrics.subscribers.clone(),
            );
            r.register(
                "ws_cut_off",
                "WebSocket clients cut off for reading too slowly",
                metrics.subscribers_cut_off.clone(),
            );
        }
        metrics
    }

    /// A block became part of the block tree, as `accepted` says.
    pub fn block_accepted(&self, accepted: &Accepted, connect_seconds: f64) {
        match accepted {
            Accepted::NewTip(_) => &self.new_tip,
            Accepted::SideBranch => &self.side_branch,
            Accepted::Duplicate => &self.duplicate,
        }
        .inc();
        self.block_connect.observe(connect_seconds);
    }

    pub fn ws_opened(&self) {
        self.subscribers.inc();
    }

    pub fn ws_closed(&self) {
        self.subscribers.dec();
    }

    pub fn subscriber_cut_off(&self) {
        self.subscribers_cut_off.inc();
    }

    pub fn block_rejected(&self, reason: &'static str) {
        self.blocks_rejected
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// A gossiped block with timestamp `timestamp_ms` became our tip.
    pub fn block_propagated(&self, timestamp_ms: u64) {
        let delay_ms = now_ms().saturating_sub(timestamp_ms);
        self.block_propagation.observe(delay_ms as f64 / 1000.0);
    }

    pub fn banned(&self) {
        self.bans.inc();
    }

    pub fn flushed(&self, seconds: f64) {
        self.flush.observe(seconds);
    }

    /// Lets gossipsub register its own counters (messages and copies received per topic,
    /// mesh sizes, peer scores) under `apiary_gossipsub_`. One network a process: a second
    /// one (nodes of a test or benchmark sharing a process) adds its series beside them.
    pub fn gossipsub<T>(&self, register: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        register(registry.sub_registry_with_prefix("gossipsub"))
    }

    /// The text exposition, with the state figures read now.
    pub fn render(&self, figures: Figures) -> String {
        self.height.set(figures.height.0 as i64);
        self.tip_age
            .set(now_ms().saturating_sub(figures.tip_timestamp_ms.0) as f64 / 1000.0);
        self.mempool_txs.set(figures.mempool_txs as i64);
        self.mempool_bytes.set(figures.mempool_bytes as i64);
        if let Some(network) = figures.network {
            self.peers
                .get_or_create(&vec![("direction", "inbound")])
                .set(network.inbound as i64);
            self.peers
                .get_or_create(&vec![("direction", "outbound")])
                .set(network.outbound as i64);
            self.syncing.set(network.syncing as i64);
            self.sync_best_known_height
                .set(network.best_known_height as i64);
            self.sync_blocks_per_second.set(network.blocks_per_s);
        }
        if let Some(path) = figures.store_path {
            self.store_bytes.set(directory_bytes(&path) as i64);
        }
        self.text()
    }

    /// The text exposition as the series stand.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

/// Bytes of the files in `dir` (RocksDB keeps its files in one flat directory).
fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}
