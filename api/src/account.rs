//! Accounts: balance, nonce, what is pending, history.

use crate::{method, Units};
use apiary_core::{Amount, BlockHash, Height, Nonce, TxId};
use serde::{Deserialize, Serialize};

method!(
    /// An account's balance and nonce, and what its pending transactions spend.
    AccountGet, "account_get", AccountParams => AccountInfo
);
method!(
    /// Everything an account was allocated, received and sent, added up.
    AccountTotals, "account_totals", AccountParams => AccountTotalsResult
);
method!(
    /// An account's transactions and rewards, newest first, a page at a time.
    AccountHistory, "account_history", AccountHistoryParams => AccountHistoryResult
);

method!(
    /// An account (or its absence) with a proof against the state root of a header.
    AccountProof, "account_proof", AccountProofParams => AccountProofResult
);

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountProofParams {
    pub address: String,
    /// The block whose state to prove against; only the tip's state is kept, so this
    /// must be the tip's height (or left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
}

/// What `account_proof` proves: the account at `address` in the state after block
/// `block_hash` (`height`), whose header's `state_root` the proof leads to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountProofResult {
    pub address: String,
    pub height: Height,
    pub block_hash: BlockHash,
    /// The header's state root (hex), which the proof leads to.
    pub state_root: String,
    /// The account, or None where there is none (balance 0 and nonce 0).
    pub account: Option<ProvedAccount>,
    /// Hex of the borsh bytes of `AccountProof` (docs/protocol.md, "The state commitment").
    pub proof: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvedAccount {
    pub balance: Units,
    pub nonce: Nonce,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountParams {
    pub address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountInfo {
    pub address: String,
    pub balance: Units,
    pub nonce: Nonce,
    pub pending: PendingSpend,
}

/// The account's transactions in the mempool.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingSpend {
    pub count: usize,
    /// The nonce a new transaction takes: after the run of pending ones.
    pub next_nonce: Nonce,
    /// What they spend (amounts and fees), base units as a decimal string: the sum of
    /// many may pass what one amount can hold.
    pub spend: String,
}

impl PendingSpend {
    /// What they spend, as an amount (the most an amount holds if more).
    pub fn spend(&self) -> Amount {
        let units: u128 = self.spend.parse().unwrap_or(0);
        Amount::from_base_units(u64::try_from(units).unwrap_or(u64::MAX))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountTotalsResult {
    pub address: String,
    pub allocated: Units,
    pub received: Units,
    pub sent: Units,
    /// Index entries added up.
    pub entries: u64,
    pub balance: Units,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountHistoryParams {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page: "HEIGHT:INDEX".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountHistoryResult {
    pub address: String,
    pub txs: Vec<HistoryEntry>,
    /// Give it as `cursor` for the next page (None: this was the last).
    pub next_cursor: Option<String>,
    /// Pending transactions (on the first page only).
    pub pending: Vec<HistoryEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Transfer,
    /// A block's new coins and fees, to its miner.
    Reward,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    Confirmed,
    Pending,
}

/// A transfer or a reward in an account's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub kind: EntryKind,
    /// None for a reward.
    pub txid: Option<TxId>,
    /// None for a reward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    pub amount: Units,
    pub fee: Units,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub status: EntryStatus,
    /// Where it is confirmed (None while pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<Height>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<BlockHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
}
