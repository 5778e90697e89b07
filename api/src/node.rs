//! The node itself: what it is, where its chain stands, its fees and mempool.

use crate::{method, NoParams, Units};
use apiary_core::{BlockHash, Height, TimestampMs};
use serde::{Deserialize, Serialize};

method!(
    /// The node: version, chain, peer id, height, sync progress, warnings.
    NodeInfo, "node_info", NoParams => NodeInfoResult
);
method!(
    /// The main chain's tip, as last published (never waits for a block connecting).
    ChainTip, "chain_tip", NoParams => ChainTipResult
);
method!(
    /// The fee a transaction should pay to be in the next block.
    FeeEstimate, "fee_estimate", NoParams => FeeEstimateResult
);
method!(
    /// The mempool's size.
    MempoolInfo, "mempool_info", NoParams => MempoolInfoResult
);
method!(
    /// When this node had each of the last main-chain blocks, newest first.
    BlockArrivals, "block_arrivals", NoParams => Vec<Arrival>
);
method!(
    /// Every method with its parameters and result.
    RpcMethods, "rpc_methods", NoParams => Vec<MethodDoc>
);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfoResult {
    pub version: String,
    pub chain_id: String,
    pub genesis_hash: BlockHash,
    pub address_prefix: String,
    pub target_block_time_ms: u64,
    pub peer_id: Option<String>,
    pub syncing: bool,
    pub sync: Option<SyncProgress>,
    /// Set when the blocks of several peers disagree with this machine's clock.
    pub clock_warning: Option<String>,
    pub height: Height,
    /// Why writing is paused (a full disk), or None.
    pub storage_full: Option<String>,
}

/// How far behind the best proved chain the node is, and how fast it is catching up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Height of the best chain a peer has proved with checked headers.
    pub best_known_height: u64,
    /// Blocks connected per second while syncing (0 when not syncing).
    pub blocks_per_s: f64,
    /// Seconds left at that rate, when syncing.
    pub eta_s: Option<u64>,
    /// Peers that have sent block bodies in the current (or last) download.
    pub download_peers: usize,
    /// A peer's chain goes on with headers stamped ahead of this machine's clock: they are
    /// held back until this time by it (ms since the epoch). Far off, it is usually this
    /// clock that is wrong (`clock_warning` says so when most peers agree).
    pub held_back_until_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChainTipResult {
    pub height: Height,
    pub hash: BlockHash,
    /// Decimal: more than a u64 can hold.
    pub total_work: String,
    pub timestamp_ms: TimestampMs,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeeEstimateResult {
    pub fee: Units,
    pub min_fee: Units,
    /// Transactions waiting.
    pub pending: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MempoolInfoResult {
    pub count: usize,
    pub bytes: usize,
    pub min_fee: Units,
}

/// One method as `rpc_methods` describes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MethodDoc {
    pub name: String,
    pub about: String,
    pub params: Vec<ParamDoc>,
    pub result: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParamDoc {
    pub name: String,
    pub required: bool,
    pub about: String,
}

/// When this node first had a recent main-chain block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    pub height: Height,
    pub hash: BlockHash,
    /// The block's own timestamp.
    pub timestamp_ms: TimestampMs,
    /// When it arrived, by this node's clock.
    pub received_ms: TimestampMs,
    /// The same instant in microseconds, for latencies below a millisecond.
    pub received_us: u64,
}
