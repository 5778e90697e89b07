//! What the node tells its watchers (WebSocket subscribers, the explorer): each change
//! of tip with what it connected and disconnected, each transaction it accepted, and the
//! mempool's size. One broadcast ring for all of them: a watcher that falls a whole ring
//! behind learns it (`Lagged`) and is cut off, so a slow one costs nothing but its place.

use apiary_core::{
    Address, Amount, Block, BlockHash, Height, SignedTransaction, TimestampMs, TxId, Work,
};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Events the ring holds before the slowest watcher is lagging.
pub const EVENT_RING: usize = 4096;
/// Main-chain blocks whose arrival time is remembered (`block_arrivals`).
pub const ARRIVALS_KEPT: usize = 64;

/// A transaction as watchers see it.
#[derive(Debug, Clone)]
pub struct TxBrief {
    pub txid: TxId,
    pub from: Address,
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
}

impl TxBrief {
    pub fn of(txid: TxId, stx: &SignedTransaction) -> TxBrief {
        TxBrief {
            txid,
            from: stx.tx.from,
            to: stx.tx.to,
            amount: stx.tx.amount,
            fee: stx.tx.fee,
        }
    }

    pub fn touches(&self, address: &Address) -> bool {
        self.from == *address || self.to == *address
    }
}

/// A block on the main chain, as watchers see it.
#[derive(Debug, Clone)]
pub struct BlockBrief {
    pub height: Height,
    pub hash: BlockHash,
    pub timestamp_ms: TimestampMs,
    pub miner: Address,
    pub txs: Vec<TxBrief>,
}

impl BlockBrief {
    pub fn of(block: &Block, txids: &[TxId]) -> BlockBrief {
        BlockBrief {
            height: block.header.height,
            hash: block.hash(),
            timestamp_ms: block.header.timestamp_ms,
            miner: block.header.miner,
            txs: txids
                .iter()
                .zip(&block.txs)
                .map(|(txid, stx)| TxBrief::of(*txid, stx))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum NodeEvent {
    /// The main chain changed: `disconnected` (tip first) left it, `connected` (lowest
    /// first) joined it; the last connected block is the new tip.
    Tip {
        connected: Vec<BlockBrief>,
        disconnected: Vec<BlockBrief>,
        /// Transactions that left the mempool because they are invalid on the new tip.
        dropped: Vec<(TxId, String)>,
    },
    /// A transaction entered the mempool.
    TxAccepted(TxBrief),
}

pub use apiary_api::Arrival;

pub struct Events {
    sender: tokio::sync::broadcast::Sender<Arc<NodeEvent>>,
    arrivals: Mutex<VecDeque<Arrival>>,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            sender: tokio::sync::broadcast::Sender::new(EVENT_RING),
            arrivals: Mutex::new(VecDeque::with_capacity(ARRIVALS_KEPT)),
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<NodeEvent>> {
        self.sender.subscribe()
    }

    /// Sent only when someone listens: the briefs cost a copy of each tx's fields.
    pub fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn send(&self, event: NodeEvent) {
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn arrived(&self, block: &Block, received_us: u64) {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() == ARRIVALS_KEPT {
            arrivals.pop_front();
        }
        arrivals.push_back(Arrival {
            height: block.header.height,
            hash: block.hash(),
            timestamp_ms: block.header.timestamp_ms,
            received_ms: TimestampMs(received_us / 1000),
            received_us,
        });
    }

    /// Newest first.
    pub fn arrivals(&self) -> Vec<Arrival> {
        let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        arrivals.iter().rev().cloned().collect()
    }
}

/// Where our main chain stands, as the chain last told the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurTip {
    pub hash: BlockHash,
    pub height: Height,
    pub work: Work,
    /// The tip header's timestamp.
    pub timestamp_ms: TimestampMs,
    /// Main-chain hashes from the tip back, ever further apart, ending at genesis.
    pub locator: Vec<BlockHash>,
}
