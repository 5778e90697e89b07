//! What the WebSocket subscriptions send.

use crate::Units;
use apiary_core::{BlockHash, Height, TxId};
use serde::{Deserialize, Serialize};

/// What happened to one of an address's transactions (`address` topic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressEventKind {
    /// In the mempool.
    Pending,
    /// In a main-chain block, `confirmations` deep (sent again each block, up to the depth
    /// asked for).
    Confirmed,
    /// Gone without a block, or its block left the chain and it is not valid on the new
    /// one: `reason` says which.
    Dropped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressEvent {
    pub event: AddressEventKind,
    pub txid: TxId,
    /// The transfer (absent on a drop from the mempool, which knows only its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Units>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Units>,
    /// Where it is confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<Height>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<BlockHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// Why it was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AddressEvent {
    /// `event` for `txid`, every other field absent (fill in what the event knows).
    pub fn bare(event: AddressEventKind, txid: TxId) -> AddressEvent {
        AddressEvent {
            event,
            txid,
            from: None,
            to: None,
            amount: None,
            fee: None,
            height: None,
            block_hash: None,
            confirmations: None,
            reason: None,
        }
    }
}
