//! Mining by machines outside the node: templates and submissions.

use crate::{method, Units};
use apiary_core::{BlockHash, Height};
use serde::{Deserialize, Serialize};

method!(
    /// A block template paying `address`; with `longpoll_id`, waits for a better one.
    MiningTemplate, "mining_template", TemplateParams => Template
);
method!(
    /// A solved template (id, nonce, timestamp) or a whole block.
    MiningSubmit, "mining_submit", SubmitParams => SubmitResult
);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateParams {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longpoll_id: Option<String>,
    /// Include each transaction's bytes (a pool wants them; a miner does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txs: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Template {
    /// 16 hex digits.
    pub id: String,
    pub height: Height,
    pub prev_hash: BlockHash,
    pub bits: String,
    /// The target, 64 hex digits.
    pub target: String,
    pub timestamp_ms: apiary_core::TimestampMs,
    /// The header's borsh bytes, hex.
    pub header: String,
    pub nonce_offset: usize,
    pub timestamp_offset: usize,
    /// New coins and fees.
    pub reward: Units,
    pub fees: Units,
    pub tx_count: usize,
    pub longpoll_id: String,
    /// Each transaction's bytes, hex (when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txs: Option<Vec<String>>,
}

/// A nonce as a JSON number or a decimal string (JavaScript cannot say every u64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NonceParam {
    Number(u64),
    Text(String),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitParams {
    /// The template's id, with `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<NonceParam>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
    /// Or a whole block's borsh bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubmitStatus {
    Accepted,
    /// Valid, but another block took the height first.
    Stale,
    Refused,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitResult {
    pub status: SubmitStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<BlockHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}
