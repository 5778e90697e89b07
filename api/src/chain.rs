//! Blocks and transactions.

use crate::{method, Units};
use apiary_core::{BlockHash, Height, Nonce, TxId};
use serde::{Deserialize, Serialize};

method!(
    /// A block by height or hash: its fields and transactions, or its bytes.
    BlockGet, "block_get", BlockGetParams => BlockAnswer
);
method!(
    /// A transaction by id: confirmed (where), pending, or unknown.
    TxGet, "tx_get", TxGetParams => TxGetResult
);
method!(
    /// Submits a signed transaction (hex of its borsh bytes) to the mempool.
    TxSubmit, "tx_submit", TxSubmitParams => TxSubmitResult
);
method!(
    /// The newest transactions in the mempool.
    MempoolTxs, "mempool_txs", MempoolTxsParams => MempoolTxsResult
);

method!(
    /// Main-chain headers from a height on, as their bytes (a light client's chain).
    HeadersGet, "headers_get", HeadersGetParams => HeadersGetResult
);

method!(
    /// Where a confirmed transaction sits in its block: its bytes and the Merkle path of
    /// its txid to the header's `tx_root` (a light client's proof of a payment).
    TxProof, "tx_proof", TxProofParams => TxProofResult
);
method!(
    /// The chain spec the node follows, whole (a client that believes no node checks it
    /// against the genesis hash it knows, and checks headers by its rules).
    ChainSpecGet, "chain_spec", crate::NoParams => ChainSpecResult
);

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxProofParams {
    pub txid: TxId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxProofResult {
    pub txid: TxId,
    pub height: Height,
    pub block_hash: BlockHash,
    /// Its place among the block's transactions, and how many the block holds.
    pub index: u32,
    pub tx_count: u32,
    /// Hex of the sibling hashes from the bottom, where there is one (docs/protocol.md).
    pub path: Vec<String>,
    /// Hex of the signed transaction's borsh bytes (its txid is their double SHA-256).
    pub tx: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChainSpecResult {
    pub genesis_hash: BlockHash,
    /// Hex of the spec's borsh bytes.
    pub spec: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersGetParams {
    pub from: u64,
    /// At most 2,000.
    pub count: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadersGetResult {
    /// The first header's height.
    pub from: Height,
    /// Hex of each header's 160 bytes, in height order; fewer than asked at the tip.
    pub headers: Vec<String>,
    /// The main chain's height now.
    pub tip_height: Height,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockGetParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<BlockHash>,
    /// The block's borsh bytes as hex instead of its fields.
    #[serde(default)]
    pub raw: bool,
}

/// A block's fields, or (asked `raw`) its bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlockAnswer {
    Fields(Box<BlockInfo>),
    Raw { hash: BlockHash, hex: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockInfo {
    pub hash: BlockHash,
    pub height: Height,
    pub version: u32,
    pub prev_hash: BlockHash,
    pub tx_root: String,
    pub state_root: String,
    pub miner: String,
    pub timestamp_ms: apiary_core::TimestampMs,
    /// The compact target, 8 hex digits.
    pub bits: String,
    pub nonce: u64,
    pub total_work: String,
    /// "valid", "invalid" or "headeronly" …: the block tree's view of it.
    pub status: String,
    pub main_chain: bool,
    pub confirmations: u64,
    pub size: usize,
    pub txs: Vec<TxInfo>,
}

/// A transaction's fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInfo {
    pub txid: TxId,
    pub from: String,
    pub to: String,
    pub amount: Units,
    pub fee: Units,
    pub nonce: Nonce,
    pub chain_id: String,
    /// 64 bytes, hex.
    pub signature: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxGetParams {
    pub txid: TxId,
    /// The signed transaction's borsh bytes as hex in `hex` as well.
    #[serde(default)]
    pub raw: bool,
}

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    Confirmed,
    Pending,
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxGetResult {
    pub txid: TxId,
    pub status: TxStatus,
    /// Where it is confirmed (None unless confirmed).
    pub height: Option<Height>,
    pub block_hash: Option<BlockHash>,
    pub confirmations: u64,
    /// Its fields, unless unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<TxInfo>,
    /// Its bytes, when asked `raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxSubmitParams {
    /// Hex of the signed transaction's borsh bytes.
    pub tx: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxSubmitResult {
    pub txid: TxId,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolTxsParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MempoolTxsResult {
    pub count: usize,
    pub txs: Vec<MempoolTx>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MempoolTx {
    #[serde(flatten)]
    pub tx: TxInfo,
    /// How long it has waited.
    pub age_ms: u64,
}
