//! Transactions waiting for a block: each checked against the tip state, queued per sender
//! in nonce order, and offered to the miner highest fee first.

use apiary_core::validate::check_chain_id;
use apiary_core::{AccountTree, Address, Amount, ChainSpec, SignedTransaction, TxError, TxId};
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// Policy, not consensus: what this node keeps and relays.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    pub max_bytes: usize,
    /// Lowest fee a transaction must pay to be accepted.
    pub min_fee: Amount,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_bytes: 64 << 20,
            min_fee: Amount::from_base_units(1_000),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("transaction {0} is already pending")]
    Duplicate(TxId),
    #[error("nonce {found} is already used; the sender's next nonce is {expected}")]
    NonceUsed { expected: u64, found: u64 },
    #[error("nonce {found} leaves a gap: the sender's next nonce is {expected}")]
    NonceGap { expected: u64, found: u64 },
    #[error(
        "fee {offered} does not beat the pending transaction's fee {existing} for the same nonce"
    )]
    ReplacementFeeTooLow { existing: Amount, offered: Amount },
    #[error("fee {offered} is below this node's minimum of {minimum}")]
    FeeTooLow { minimum: Amount, offered: Amount },
    #[error("sender's balance {balance} cannot pay this and its pending transactions ({needed})")]
    Overdraft { balance: Amount, needed: Amount },
    #[error("the mempool is full")]
    Full,
}

struct PoolEntry {
    tx: SignedTransaction,
    size: usize,
}

#[derive(Default)]
pub struct Mempool {
    config: MempoolConfig,
    txs: HashMap<TxId, PoolEntry>,
    /// Each sender's pending transactions by nonce, contiguous from the account's nonce.
    by_sender: HashMap<Address, BTreeMap<u64, TxId>>,
    bytes: usize,
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool {
            config,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, txid: &TxId) -> Option<&SignedTransaction> {
        self.txs.get(txid).map(|e| &e.tx)
    }

    pub fn contains(&self, txid: &TxId) -> bool {
        self.txs.contains_key(txid)
    }

    pub fn min_fee(&self) -> Amount {
        self.config.min_fee
    }

    /// Checks `stx` against the tip `state` and the sender's pending transactions, then
    /// queues it (replacing a pending one of the same nonce that pays less).
    pub fn add(
        &mut self,
        stx: SignedTransaction,
        state: &AccountTree,
        spec: &ChainSpec,
    ) -> Result<TxId, MempoolError> {
        self.insert(stx, state, spec, true)
    }

    fn insert(
        &mut self,
        stx: SignedTransaction,
        state: &AccountTree,
        spec: &ChainSpec,
        verify_signature: bool,
    ) -> Result<TxId, MempoolError> {
        let txid = stx.txid();
        if self.txs.contains_key(&txid) {
            return Err(MempoolError::Duplicate(txid));
        }
        let tx = &stx.tx;
        if tx.fee < self.config.min_fee {
            return Err(MempoolError::FeeTooLow {
                minimum: self.config.min_fee,
                offered: tx.fee,
            });
        }
        check_chain_id(&stx, spec)?;
        if verify_signature {
            stx.verify_signature()?;
        }
        let account = state.get(&tx.from).unwrap_or_default();
        let pending = self.by_sender.get(&tx.from);
        let next_nonce = account.nonce.0 + pending.map_or(0, |p| p.len() as u64);
        if tx.nonce.0 < account.nonce.0 {
            return Err(MempoolError::NonceUsed {
                expected: account.nonce.0,
                found: tx.nonce.0,
            });
        }
        if tx.nonce.0 > next_nonce {
            return Err(MempoolError::NonceGap {
                expected: next_nonce,
                found: tx.nonce.0,
            });
        }
        let replaced = pending.and_then(|p| p.get(&tx.nonce.0)).copied();
        if let Some(old) = replaced {
            let existing = self.txs[&old].tx.tx.fee;
            if tx.fee <= existing {
                return Err(MempoolError::ReplacementFeeTooLow {
                    existing,
                    offered: tx.fee,
                });
            }
        }
        // Everything the sender has pending (but the replaced one) plus this must be payable.
        let mut needed = tx
            .amount
            .checked_add(tx.fee)
            .ok_or(TxError::AmountOverflow)?;
        for other in pending
            .into_iter()
            .flat_map(|p| p.values())
            .filter(|id| Some(**id) != replaced)
        {
            let other = &self.txs[other].tx.tx;
            needed = needed
                .checked_add(other.amount)
                .and_then(|n| n.checked_add(other.fee))
                .ok_or(TxError::AmountOverflow)?;
        }
        if needed > account.balance {
            return Err(MempoolError::Overdraft {
                balance: account.balance,
                needed,
            });
        }
        let size = stx.encode().len();
        if self.bytes + size > self.config.max_bytes {
            return Err(MempoolError::Full);
        }
        if let Some(old) = replaced {
            self.remove(&old);
        }
        self.by_sender
            .entry(tx.from)
            .or_default()
            .insert(tx.nonce.0, txid);
        self.bytes += size;
        self.txs.insert(txid, PoolEntry { tx: stx, size });
        Ok(txid)
    }

    fn remove(&mut self, txid: &TxId) -> Option<SignedTransaction> {
        let entry = self.txs.remove(txid)?;
        self.bytes -= entry.size;
        let from = entry.tx.tx.from;
        if let Some(queue) = self.by_sender.get_mut(&from) {
            queue.remove(&entry.tx.tx.nonce.0);
            if queue.is_empty() {
                self.by_sender.remove(&from);
            }
        }
        Some(entry.tx)
    }

    /// Follows the main chain: drops what it confirmed (or made stale), and takes back the
    /// transactions of blocks it no longer holds.
    pub fn update_for_tip(
        &mut self,
        connected: &[&SignedTransaction],
        disconnected: &[&SignedTransaction],
        state: &AccountTree,
        spec: &ChainSpec,
    ) {
        if self.txs.is_empty() && disconnected.is_empty() {
            return;
        }
        for stx in connected {
            self.remove(&stx.txid());
        }
        // Every affected sender's queue is rebuilt against the new state: what the chain
        // now holds, or what lost its place in nonce order, falls out.
        let mut requeue: Vec<SignedTransaction> =
            disconnected.iter().map(|stx| (*stx).clone()).collect();
        let senders: std::collections::HashSet<Address> = connected
            .iter()
            .chain(disconnected)
            .map(|stx| stx.tx.from)
            .collect();
        for sender in senders {
            let queued: Vec<TxId> = self
                .by_sender
                .get(&sender)
                .map(|q| q.values().copied().collect())
                .unwrap_or_default();
            requeue.extend(queued.iter().filter_map(|txid| self.remove(txid)));
        }
        for stx in requeue {
            // Already verified once; a failure means the chain made it invalid or stale.
            let _ = self.insert(stx, state, spec, false);
        }
    }

    /// Pending transactions for a block, highest fee first, each sender's in nonce order.
    pub fn select(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTransaction> {
        let mut heap = BinaryHeap::new();
        let mut cursors: HashMap<Address, std::collections::btree_map::Values<'_, u64, TxId>> =
            HashMap::new();
        for (sender, queue) in &self.by_sender {
            let mut values = queue.values();
            if let Some(first) = values.next() {
                heap.push((self.txs[first].tx.tx.fee, *first));
                cursors.insert(*sender, values);
            }
        }
        let mut selected = Vec::new();
        let mut bytes = 0;
        while let Some((_, txid)) = heap.pop() {
            if selected.len() >= max_txs {
                break;
            }
            let entry = &self.txs[&txid];
            if bytes + entry.size > max_bytes {
                continue;
            }
            bytes += entry.size;
            selected.push(entry.tx.clone());
            if let Some(next) = cursors.get_mut(&entry.tx.tx.from).and_then(|c| c.next()) {
                heap.push((self.txs[next].tx.tx.fee, *next));
            }
        }
        selected
    }
}
