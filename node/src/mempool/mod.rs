//! Transactions waiting for a block: each checked against the tip state, queued per sender
//! in nonce order (a few nonces ahead may wait for the gap to fill), offered to the miner
//! highest fee first, and bounded in bytes by evicting the lowest fee, and in time.

pub mod log;
mod select;

use apiary_core::state::{AccountSource, FastMap};
use apiary_core::tx::{signature_verdicts, KeyCache};
use apiary_core::validate::check_chain_id;
use apiary_core::{Address, Amount, ChainSpec, Nonce, SignedTransaction, TxError, TxId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// Policy, not consensus: what this node keeps and relays.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    pub max_bytes: usize,
    /// Lowest fee a transaction must pay to be accepted.
    pub min_fee: Amount,
    /// How far past a sender's next nonce a transaction may wait for the gap to fill.
    pub max_nonce_ahead: u64,
    /// A transaction not mined this long after it arrived is dropped.
    pub expiry: Duration,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_bytes: 64 << 20,
            min_fee: Amount::from_base_units(1_000),
            max_nonce_ahead: 16,
            expiry: Duration::from_secs(3 * 3600),
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
    NonceUsed { expected: Nonce, found: Nonce },
    #[error("nonce {found} is too far ahead: the sender's next nonce is {expected}, at most {limit} may wait")]
    NonceTooFarAhead {
        expected: Nonce,
        found: Nonce,
        limit: Nonce,
    },
    #[error(
        "fee {offered} does not beat the pending transaction's fee {existing} for the same nonce"
    )]
    ReplacementFeeTooLow { existing: Amount, offered: Amount },
    #[error("fee {offered} is below this node's minimum of {minimum}")]
    FeeTooLow { minimum: Amount, offered: Amount },
    #[error("sender's balance {balance} cannot pay this and its pending transactions ({needed})")]
    Overdraft { balance: Amount, needed: Amount },
    #[error("the mempool is full and its cheapest evictable transaction pays at least {0}")]
    Full(Amount),
    /// The node could not read the sender's account (its store): nothing about the tx.
    #[error("this node cannot read its state now ({0}); try again")]
    StateUnreadable(String),
}

/// A transaction whose signature passed the consensus rule (docs/protocol.md,
/// "Signatures"): the one check that needs no state, so it runs before the node's lock is
/// taken (in batches on all cores, never making a block connect wait behind it). Only
/// these enter the mempool, and a block carrying one skips its signature.
pub struct VerifiedTx(SignedTransaction);

impl VerifiedTx {
    /// One transaction's check (`cache`: keys decoded before, signatures verified before).
    pub fn check(stx: SignedTransaction, cache: &KeyCache) -> Result<VerifiedTx, TxError> {
        Self::check_all(vec![stx], cache)
            .pop()
            .expect("one verdict per transaction")
    }

    /// Each of `txs` checked, in batches: one verdict per transaction, in order.
    pub fn check_all(
        txs: Vec<SignedTransaction>,
        cache: &KeyCache,
    ) -> Vec<Result<VerifiedTx, TxError>> {
        let txids: Vec<apiary_core::TxId> = txs.iter().map(SignedTransaction::txid).collect();
        let verdicts = signature_verdicts(&txs, &txids, cache);
        txs.into_iter()
            .zip(verdicts)
            .map(|(stx, verdict)| verdict.map(|()| VerifiedTx(stx)))
            .collect()
    }

    pub fn tx(&self) -> &SignedTransaction {
        &self.0
    }
}

/// A transaction the pool offers a block, with what the pool already knows of it (so a
/// template neither encodes nor hashes it again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub tx: SignedTransaction,
    pub txid: TxId,
    /// Its encoded size in bytes.
    pub size: usize,
}

impl Candidate {
    pub fn new(tx: SignedTransaction) -> Candidate {
        let bytes = tx.encode();
        Candidate {
            txid: TxId(apiary_core::hash::sha256d(&bytes)),
            size: bytes.len(),
            tx,
        }
    }
}

/// A sender's pending transactions, and its account's nonce at the tip.
#[derive(Default)]
struct Queue {
    /// The nonce its next transaction must carry. Right whenever the pool is consistent
    /// with the tip: a sender's nonce changes only when a block holds its transactions,
    /// and `update_for_tip` builds every such sender's queue again on the new state.
    next: Nonce,
    by_nonce: BTreeMap<Nonce, TxId>,
    /// The fee it stands under in `Mempool::ready` (its first transaction's, when that one
    /// carries `next`).
    ready_fee: Option<Amount>,
}

struct PoolEntry {
    tx: SignedTransaction,
    size: usize,
    added: Instant,
}

#[derive(Default)]
pub struct Mempool {
    config: MempoolConfig,
    txs: FastMap<TxId, PoolEntry>,
    /// Each sender's pending transactions by nonce.
    by_sender: FastMap<Address, Queue>,
    /// The senders whose first pending transaction can go in the next block, by its fee:
    /// where a template starts (`select`), without looking at any other sender.
    ready: BTreeSet<(Amount, Reverse<Address>)>,
    /// Every pending transaction, cheapest first: where eviction looks.
    by_fee: BTreeSet<(Amount, TxId)>,
    bytes: usize,
    last_expiry: Option<Instant>,
}

/// Expired transactions are looked for at most this often.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// How a transaction enters the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// New from a user or a peer: every policy limit applies (minimum fee, how far ahead
    /// its nonce may be, room in the pool).
    New,
    /// Accepted once already: from a block a reorganisation undid, re-queued after a tip
    /// change, or replayed after a restart. Only validity counts (chain, nonce not spent,
    /// payable), so nothing the node once accepted is dropped by a policy limit; the pool
    /// may exceed its size until new transactions evict the cheapest.
    Returning,
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

    /// Every pending transaction with when it arrived.
    pub fn entries(&self) -> impl Iterator<Item = (&SignedTransaction, Instant)> {
        self.txs.values().map(|e| (&e.tx, e.added))
    }

    /// The txids of up to `max` pending transactions, highest fee first: what a peer that
    /// connects is told this pool holds.
    pub fn inventory(&self, max: usize) -> Vec<TxId> {
        self.by_fee
            .iter()
            .rev()
            .take(max)
            .map(|(_, txid)| *txid)
            .collect()
    }

    /// Removes a pending transaction (one the node could not keep after all).
    pub fn evict(&mut self, txid: &TxId) -> Option<SignedTransaction> {
        self.remove(txid)
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

    /// `sender`'s pending transactions with consecutive nonces from `next` (its account's
    /// nonce): those a block could take now, in order; the rest wait for a gap to fill.
    pub fn run_from(&self, sender: &Address, next: Nonce) -> impl Iterator<Item = &TxId> + '_ {
        self.by_sender
            .get(sender)
            .into_iter()
            .flat_map(move |queue| {
                (next.0..)
                    .zip(queue.by_nonce.range(next..))
                    .take_while(|(expected, (nonce, _))| *expected == nonce.0)
                    .map(|(_, (_, txid))| txid)
            })
    }

    /// `sender`'s pending transactions, lowest nonce first.
    pub fn pending_from(&self, sender: &Address) -> Vec<&SignedTransaction> {
        self.by_sender
            .get(sender)
            .into_iter()
            .flat_map(|queue| queue.by_nonce.values())
            .map(|txid| &self.txs[txid].tx)
            .collect()
    }

    /// Every pending transaction that sends to or from `address`.
    pub fn involving(&self, address: &Address) -> Vec<&SignedTransaction> {
        let mut found: Vec<&SignedTransaction> = self
            .txs
            .values()
            .map(|entry| &entry.tx)
            .filter(|stx| stx.tx.from == *address || stx.tx.to == *address)
            .collect();
        found.sort_by_key(|stx| (stx.tx.from, stx.tx.nonce));
        found
    }

    /// A fee that gets a transaction into the next block as things stand: the minimum while
    /// everything pending fits in one, else one base unit above the best fee left out.
    pub fn fee_for_next_block(&self, max_txs: usize, max_bytes: usize) -> Amount {
        let (mut count, mut bytes) = (0, 0);
        for (fee, txid) in self.by_fee.iter().rev() {
            count += 1;
            bytes += self.txs[txid].size;
            if count > max_txs || bytes > max_bytes {
                let above = fee.checked_add(Amount::from_base_units(1)).unwrap_or(*fee);
                return above.max(self.config.min_fee);
            }
        }
        self.config.min_fee
    }

    /// Checks `stx` against the tip `state` and the sender's pending transactions, then
    /// queues it (replacing a pending one of the same nonce that pays less, and evicting
    /// cheaper transactions when full).
    pub fn add(
        &mut self,
        verified: VerifiedTx,
        state: &impl AccountSource,
        spec: &ChainSpec,
    ) -> Result<TxId, MempoolError> {
        self.insert(verified.0, state, spec, Instant::now(), Admission::New)
    }

    /// Takes back a transaction this node accepted before (`Admission::Returning`), which
    /// arrived at `added`.
    pub fn readmit(
        &mut self,
        verified: VerifiedTx,
        state: &impl AccountSource,
        spec: &ChainSpec,
        added: Instant,
    ) -> Result<TxId, MempoolError> {
        self.insert(verified.0, state, spec, added, Admission::Returning)
    }

    /// Whether `stx` (whose id is `txid`) could enter the pool on the tip `state` as a new
    /// transaction, every check but its signature's: a node asks this first of what peers
    /// send, so a transaction it would refuse anyway (stale, known, unpayable) costs a
    /// lookup, not a signature check.
    pub fn precheck(
        &self,
        stx: &SignedTransaction,
        txid: &TxId,
        state: &impl AccountSource,
        spec: &ChainSpec,
    ) -> Result<(), MempoolError> {
        self.admissible(stx, txid, state, spec, Admission::New)
            .map(|_| ())
    }

    /// The checks a transaction passes before it is queued (its signature aside): the
    /// sender's account, and the pending transaction it replaces, if any.
    fn admissible(
        &self,
        stx: &SignedTransaction,
        txid: &TxId,
        state: &impl AccountSource,
        spec: &ChainSpec,
        admission: Admission,
    ) -> Result<(apiary_core::Account, Option<TxId>), MempoolError> {
        if self.txs.contains_key(txid) {
            return Err(MempoolError::Duplicate(*txid));
        }
        let tx = &stx.tx;
        let new = admission == Admission::New;
        if new && tx.fee < self.config.min_fee {
            return Err(MempoolError::FeeTooLow {
                minimum: self.config.min_fee,
                offered: tx.fee,
            });
        }
        check_chain_id(stx, spec)?;
        let account = state
            .account(&tx.from)
            .map_err(|e| MempoolError::StateUnreadable(e.to_string()))?
            .unwrap_or_default();
        if tx.nonce < account.nonce {
            return Err(MempoolError::NonceUsed {
                expected: account.nonce,
                found: tx.nonce,
            });
        }
        let limit = account.nonce.saturating_add(self.config.max_nonce_ahead);
        if new && tx.nonce > limit {
            return Err(MempoolError::NonceTooFarAhead {
                expected: account.nonce,
                found: tx.nonce,
                limit,
            });
        }
        let queue = self.by_sender.get(&tx.from);
        let replaced = queue.and_then(|q| q.by_nonce.get(&tx.nonce)).copied();
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
        for other in queue
            .into_iter()
            .flat_map(|q| q.by_nonce.values())
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
        Ok((account, replaced))
    }

    /// `add` for a transaction whose signature was verified when it first came in.
    fn insert(
        &mut self,
        stx: SignedTransaction,
        state: &impl AccountSource,
        spec: &ChainSpec,
        added: Instant,
        admission: Admission,
    ) -> Result<TxId, MempoolError> {
        let txid = stx.txid();
        let (account, replaced) = self.admissible(&stx, &txid, state, spec, admission)?;
        let tx = &stx.tx;
        let size = stx.encode().len();
        let freed = replaced.map_or(0, |old| self.txs[&old].size);
        let victims = match admission {
            Admission::New => self.victims_for(size.saturating_sub(freed), tx.fee, replaced)?,
            Admission::Returning => Vec::new(),
        };
        for victim in victims.iter().chain(replaced.as_ref()) {
            self.remove(victim);
        }
        let from = tx.from;
        let queue = self.by_sender.entry(from).or_default();
        queue.next = account.nonce;
        queue.by_nonce.insert(tx.nonce, txid);
        self.by_fee.insert((tx.fee, txid));
        self.bytes += size;
        self.txs.insert(
            txid,
            PoolEntry {
                tx: stx,
                size,
                added,
            },
        );
        self.restate(from);
        Ok(txid)
    }

    /// The cheapest transactions to evict to make room for `size` more bytes for a
    /// transaction paying `fee`. Only a sender's last transaction is evicted, so no queue
    /// is left with a hole; nothing paying `fee` or more is.
    fn victims_for(
        &self,
        size: usize,
        fee: Amount,
        keep: Option<TxId>,
    ) -> Result<Vec<TxId>, MempoolError> {
        let mut over = (self.bytes + size).saturating_sub(self.config.max_bytes);
        let mut victims = Vec::new();
        let mut taken: HashSet<Address> = HashSet::new();
        for (victim_fee, victim) in &self.by_fee {
            if over == 0 {
                break;
            }
            if *victim_fee >= fee {
                return Err(MempoolError::Full(*victim_fee));
            }
            let entry = &self.txs[victim];
            let sender = entry.tx.tx.from;
            let is_tail =
                self.by_sender[&sender].by_nonce.keys().next_back() == Some(&entry.tx.tx.nonce);
            if Some(*victim) == keep || !is_tail || !taken.insert(sender) {
                continue;
            }
            victims.push(*victim);
            over = over.saturating_sub(entry.size);
        }
        if over > 0 {
            return Err(MempoolError::Full(fee));
        }
        Ok(victims)
    }

    fn remove(&mut self, txid: &TxId) -> Option<SignedTransaction> {
        let entry = self.txs.remove(txid)?;
        self.bytes -= entry.size;
        self.by_fee.remove(&(entry.tx.tx.fee, *txid));
        let from = entry.tx.tx.from;
        if let Some(queue) = self.by_sender.get_mut(&from) {
            queue.by_nonce.remove(&entry.tx.tx.nonce);
        }
        self.restate(from);
        Some(entry.tx)
    }

    /// Runs `expire` if it has not run for a minute (it scans the whole pool).
    pub fn expire_if_due(&mut self, now: Instant) {
        if self
            .last_expiry
            .is_none_or(|last| now.saturating_duration_since(last) >= EXPIRY_CHECK_INTERVAL)
        {
            self.last_expiry = Some(now);
            let dropped = self.expire(now);
            if dropped > 0 {
                tracing::info!(dropped, "expired transactions left the mempool");
            }
        }
    }

    /// Drops transactions that have waited longer than the configured expiry.
    pub fn expire(&mut self, now: Instant) -> usize {
        let expiry = self.config.expiry;
        let old: Vec<TxId> = self
            .txs
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.added) > expiry)
            .map(|(txid, _)| *txid)
            .collect();
        for txid in &old {
            self.remove(txid);
        }
        old.len()
    }

    /// Follows the main chain: drops what it confirmed, and takes back the transactions of
    /// blocks it no longer holds, whatever their nonce distance and the pool's size (they
    /// were accepted once). Returns those that could not stay, with why: each is invalid on
    /// the new chain (its nonce is spent, or its sender cannot pay it).
    pub fn update_for_tip(
        &mut self,
        connected: &[&SignedTransaction],
        connected_txids: &[TxId],
        disconnected: &[&SignedTransaction],
        state: &impl AccountSource,
        spec: &ChainSpec,
    ) -> Vec<(TxId, MempoolError)> {
        if self.txs.is_empty() && disconnected.is_empty() {
            return Vec::new();
        }
        for txid in connected_txids {
            self.remove(txid);
        }
        // Every affected sender's queue is rebuilt against the new state: what the chain
        // now holds, or what can no longer be paid, falls out.
        let now = Instant::now();
        let confirmed: HashSet<&TxId> = connected_txids.iter().collect();
        let mut requeue: Vec<(SignedTransaction, Instant)> = disconnected
            .iter()
            .filter(|stx| !confirmed.contains(&stx.txid()))
            .map(|stx| ((*stx).clone(), now))
            .collect();
        let senders: HashSet<Address> = connected
            .iter()
            .chain(disconnected)
            .map(|stx| stx.tx.from)
            .collect();
        for sender in senders {
            let queued: Vec<TxId> = self
                .by_sender
                .get(&sender)
                .map(|q| q.by_nonce.values().copied().collect())
                .unwrap_or_default();
            for txid in queued {
                let added = self.txs[&txid].added;
                if let Some(stx) = self.remove(&txid) {
                    requeue.push((stx, added));
                }
            }
        }
        // Nonce order, so each sender's run is rebuilt from its next nonce up.
        requeue.sort_by_key(|(stx, _)| (stx.tx.from, stx.tx.nonce));
        let mut dropped = Vec::new();
        for (stx, added) in requeue {
            let txid = stx.txid();
            // Already verified once.
            match self.insert(stx, state, spec, added, Admission::Returning) {
                Ok(_) | Err(MempoolError::Duplicate(_)) => {}
                Err(error) => dropped.push((txid, error)),
            }
        }
        dropped
    }
}
