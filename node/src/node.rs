//! The hub: every block (miner, RPC, gossip, sync, import) takes one way through it —
//! the stateless checks, its state worked out before the lock, then the chain under the
//! lock — and the mempool follows the tip. It publishes what readers need without the
//! lock (the tip, the ledger, events) and hands announcements to the network.

pub use crate::chain::ImportError;
use crate::chain::{Accepted, Chain, ChainError, CheckedBlock, Prepared, TipChange};
use crate::events::{BlockBrief, Events, NodeEvent, OurTip, TxBrief};
use crate::health::Health;
use crate::mempool::log::MempoolLog;
use crate::mempool::{Mempool, MempoolConfig, MempoolError, VerifiedTx};
use crate::metrics::metrics;
pub use crate::time::now_ms;
use crate::warmer::{Warmer, WARM_AFTER_READS};

/// Blocks of an import checked at once, ahead of the one connecting (`connect_in_order`).
const CHECKS_AHEAD: usize = 8;
use apiary_core::encoding::decode_exact;
use apiary_core::tx::KeyCache;
use apiary_core::{
    Block, BlockHash, ChainSpec, CompactBlock, Height, SignedTransaction, TimestampMs, TxId, Work,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the node tells the network about: its new tips and the transactions it accepted
/// (with their ids, so the network can skip what it already relayed without encoding it).
#[derive(Debug, Clone)]
pub enum Announcement {
    /// A new block in compact form (peers hold most of its transactions already). One
    /// announced before it is stored (one we mined) brings its encoding, so a peer that
    /// lacks some transactions can be answered at once.
    Block {
        compact: CompactBlock,
        encoded: Option<Vec<u8>>,
    },
    Tx(TxId, SignedTransaction),
}

/// When a block taken into the chain must be on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Before it is acknowledged (one from a miner, RPC or gossip).
    Now,
    /// By the end of its run (`connect_in_order`: sync, import, reindex).
    Deferred,
}

/// A block `Node::connect_in_order` refused, after connecting every block before it.
#[derive(Debug, thiserror::Error)]
#[error("block {position} of the batch (after {position} accepted): {error}")]
pub struct ImportStopped {
    /// How many blocks were taken before it: its position in the batch.
    pub position: usize,
    #[source]
    pub error: Box<ImportError>,
}

/// Why `Node::submit_tx` did not take a transaction.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Rejected(#[from] MempoolError),
    /// Writing is paused (a full disk); the transaction may be valid.
    #[error("{0}")]
    StorageFull(String),
    /// It could not be written to the mempool's log, so it was not kept.
    #[error("cannot keep the transaction: the mempool log cannot be written: {0}")]
    NotLogged(String),
}

/// What became of a transaction a peer sent.
#[derive(Debug)]
pub enum Gossiped {
    /// Refused on the pool's own checks before its signature was checked: it cost a
    /// lookup (stale, known, unpayable, too far ahead).
    Skipped(MempoolError),
    /// Checked in full, signature and all: in the pool, or why not.
    Checked(Result<TxId, SubmitError>),
}

/// What `Node::restore_mempool` found in the log.
#[derive(Debug, Default)]
pub struct Restored {
    /// Back in the mempool.
    pub restored: usize,
    /// Confirmed meanwhile, or no longer valid on the tip.
    pub dropped: usize,
}

/// Everything that changes together when a block connects.
pub struct NodeState {
    pub chain: Chain,
    pub mempool: Mempool,
}

pub struct Node {
    spec: Arc<ChainSpec>,
    /// The spec's genesis hash, worked out once (it builds the genesis state).
    genesis_hash: BlockHash,
    state: Mutex<NodeState>,
    /// The chain's account state, for work that must not take the lock.
    ledger: Arc<crate::state::StateDb>,
    /// Bumped on every tip change, so miners know their template is stale.
    tip_generation: AtomicU64,
    shutdown: AtomicBool,
    keys: KeyCache,
    /// Set once the network runs; announcements go nowhere before that.
    announcer: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Announcement>>,
    health: Health,
    /// Where accepted transactions are logged, once `restore_mempool` has run. Lock
    /// order: this one, then `state`.
    mempool_log: Mutex<Option<MempoolLog>>,
    /// The tip, published on every change, for those who must not take the lock (the
    /// network's event loop).
    tip: tokio::sync::watch::Sender<OurTip>,
    events: Events,
}

/// The tip's figures as `Node::published_tip` reads them (its locator left behind).
#[derive(Clone, Copy, Debug)]
pub struct PublishedTip {
    pub hash: BlockHash,
    pub height: Height,
    pub work: Work,
    pub timestamp_ms: TimestampMs,
}

/// The tip as `Node::tip_watch` publishes it.
fn our_tip(chain: &Chain) -> OurTip {
    let entry = chain.tip_entry();
    OurTip {
        hash: chain.tip(),
        height: entry.header.height,
        work: entry.total_work,
        timestamp_ms: entry.header.timestamp_ms,
        locator: chain.locator(),
    }
}

impl Node {
    pub fn new(chain: Chain, mempool: MempoolConfig) -> Arc<Node> {
        let health = Health::default();
        health.watch_store(chain.store_path());
        let tip = tokio::sync::watch::Sender::new(our_tip(&chain));
        Arc::new(Node {
            genesis_hash: chain
                .main_hash(Height(0))
                .expect("a chain holds its genesis"),
            spec: chain.shared_spec(),
            ledger: chain.state().clone(),
            state: Mutex::new(NodeState {
                chain,
                mempool: Mempool::new(mempool),
            }),
            tip_generation: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            keys: KeyCache::default(),
            announcer: std::sync::OnceLock::new(),
            health,
            mempool_log: Mutex::new(None),
            tip,
            events: Events::default(),
        })
    }

    /// The account state at the tip, read without the node's lock.
    pub fn ledger(&self) -> &Arc<crate::state::StateDb> {
        &self.ledger
    }

    /// Changes of tip, accepted transactions and the mempool's size, for watchers.
    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The tip from now on: a new value on every change.
    pub fn tip_watch(&self) -> tokio::sync::watch::Receiver<OurTip> {
        self.tip.subscribe()
    }

    /// The tip as last published (after every change of tip): read without the lock.
    pub fn published_tip(&self) -> PublishedTip {
        let tip = self.tip.borrow();
        PublishedTip {
            hash: tip.hash,
            height: tip.height,
            work: tip.work,
            timestamp_ms: tip.timestamp_ms,
        }
    }

    /// Takes a store or chain error to heart: damage stops the node, a full disk pauses
    /// writing. Returns the error for the caller to pass on.
    pub fn note_error(&self, error: ChainError) -> ChainError {
        match &error {
            ChainError::Store(store) if store.is_no_space() => {
                if let crate::store::StoreError::NoSpace { path, message } = store {
                    self.health.storage_is_full(path, message);
                }
            }
            ChainError::Store(store) if store.is_damage() => self.health.fail(error.to_string()),
            // Another I/O error on write (a failing disk): stop, so a supervisor restarts.
            ChainError::Store(crate::store::StoreError::WritesStopped(_)) => {
                self.health.fail(error.to_string())
            }
            ChainError::Store(crate::store::StoreError::Db(db))
                if db.kind() == rocksdb::ErrorKind::IOError =>
            {
                self.health.fail(error.to_string())
            }
            ChainError::Inconsistent(_) | ChainError::StateUnreadable(_) => {
                self.health.fail(error.to_string())
            }
            _ => {}
        }
        error
    }

    /// While the disk is full, tries a small write every call and resumes writing once
    /// the store takes it.
    pub fn check_storage(&self) {
        self.health.check_storage(|| {
            let recovered = self.lock().chain.recover_store();
            if let Err(crate::store::StoreError::Damaged { .. }) = &recovered {
                // It could not even be opened again: nothing can go on.
                self.health.fail(format!(
                    "the store could not be reopened after the disk was full: {recovered:?}"
                ));
            }
            recovered.map_err(|e| e.to_string())
        });
    }

    /// Where announcements go from now on; returns the receiving end.
    pub fn announcements(&self) -> tokio::sync::mpsc::UnboundedReceiver<Announcement> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let _ = self.announcer.set(sender);
        receiver
    }

    fn announce(&self, announcement: Announcement) {
        if let Some(announcer) = self.announcer.get() {
            let _ = announcer.send(announcement);
        }
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// The chain's genesis hash (the spec's, which the store was opened with).
    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_hash
    }

    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A thread panicked while changing the chain: the state in memory may be half
            // changed. Reads go on until the node is down; what is on disk is sound.
            self.health
                .fail("a thread panicked while it held the chain state (see the error above)");
            poisoned.into_inner()
        })
    }

    pub fn tip_generation(&self) -> u64 {
        self.tip_generation.load(Ordering::Acquire)
    }

    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.tip_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Stops miners and writes the account state, so the next start needs no replay.
    /// After a fatal fault nothing is written: the next start replays from the last flush.
    pub fn shutdown(&self) {
        self.request_shutdown();
        if self.state.is_poisoned() || self.health.fatal_reason().is_some() {
            return;
        }
        if self.health.storage_full().is_some() {
            tracing::warn!("the disk is full: the account state is not written; the next start replays the blocks since the last write");
            return;
        }
        {
            let guard = &mut *self.lock();
            if let Err(error) = guard.chain.flush_state() {
                tracing::error!(%error, "could not write the account state; the next start replays blocks");
            } else if let Err(error) = guard.chain.flush_memtables() {
                tracing::warn!(%error, "could not flush the store's memtables; the next start replays its log");
            }
        }
        let mut log = self.mempool_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = log.as_mut() {
            if let Err(error) = self.rewrite_mempool_log(log) {
                tracing::warn!(%error, "could not rewrite the mempool log; it is read as it is at the next start");
            }
        }
    }

    /// Brings back the transactions of the mempool log at `path` (each checked again
    /// against the tip, like one a reorganisation returns), then logs every transaction
    /// accepted from now on there.
    pub fn restore_mempool(&self, path: &std::path::Path) -> std::io::Result<Restored> {
        let (mut log, logged) = MempoolLog::open(path)?;
        let found = logged.len();
        let (arrivals, txs): (Vec<u64>, Vec<SignedTransaction>) =
            logged.into_iter().map(|l| (l.arrived_ms, l.tx)).unzip();
        let mut verified: Vec<(u64, VerifiedTx)> = arrivals
            .into_iter()
            .zip(VerifiedTx::check_all(txs, &self.keys))
            .filter_map(|(arrived_ms, verdict)| Some((arrived_ms, verdict.ok()?)))
            .collect();
        verified.sort_by_key(|(_, v)| (v.tx().tx.from, v.tx().tx.nonce));
        let now = std::time::Instant::now();
        let now_ms = now_ms();
        let mut restored = 0;
        {
            let mut guard = self.lock();
            let NodeState { chain, mempool } = &mut *guard;
            for (arrived_ms, tx) in verified {
                let age = std::time::Duration::from_millis(now_ms.saturating_sub(arrived_ms));
                let arrived = now.checked_sub(age).unwrap_or(now);
                let txid = tx.tx().txid();
                match mempool.readmit(tx, &**chain.state(), &self.spec, arrived) {
                    Ok(_) => {
                        restored += 1;
                        self.keys.remember_verified(txid);
                    }
                    Err(reason) => {
                        tracing::debug!(%txid, %reason, "logged transaction not restored")
                    }
                }
            }
        }
        self.rewrite_mempool_log(&mut log)?;
        *self.mempool_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(log);
        Ok(Restored {
            restored,
            dropped: found - restored,
        })
    }

    /// Replaces the log with what the mempool holds now.
    fn rewrite_mempool_log(&self, log: &mut MempoolLog) -> std::io::Result<()> {
        let now = std::time::Instant::now();
        let now_ms = now_ms();
        let pending: Vec<(u64, SignedTransaction)> = self
            .lock()
            .mempool
            .entries()
            .map(|(tx, added)| {
                let age = now.saturating_duration_since(added).as_millis() as u64;
                (now_ms.saturating_sub(age), tx.clone())
            })
            .collect();
        log.rewrite(pending.iter().map(|(at, tx)| (*at, tx)))
    }

    /// Appends a transaction just accepted to the mempool log (rewriting the log when it
    /// has grown well past the pool).
    fn log_accepted(&self, tx: &SignedTransaction) -> std::io::Result<()> {
        let mut log = self.mempool_log.lock().unwrap_or_else(|e| e.into_inner());
        let Some(log) = log.as_mut() else {
            return Ok(());
        };
        log.append(now_ms(), tx)?;
        let pool_len = self.lock().mempool.len();
        if log.wants_rewrite(pool_len) {
            self.rewrite_mempool_log(log)?;
        }
        Ok(())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Validates and accepts a block from anywhere.
    pub fn submit_block(&self, block: Block) -> Result<Accepted, ChainError> {
        let bytes = block.encode();
        self.accept_block(self.check_block(block, bytes)?)
    }

    /// Accepts a block this node mined, announcing it as soon as its stateless checks
    /// pass: it was built on our own validated tip, so peers can start checking it while
    /// we connect it (the announcement of the new tip that follows is a duplicate the
    /// network drops).
    pub fn submit_mined_block(&self, block: Block) -> Result<Accepted, ChainError> {
        let bytes = block.encode();
        let checked = self.check_block(block, bytes)?;
        self.announce(Announcement::Block {
            compact: CompactBlock::new(checked.block(), checked.txids()),
            encoded: Some(checked.bytes().to_vec()),
        });
        self.accept_block(checked)
    }

    /// The checks that need no state (signatures on all cores); no lock is taken, so they
    /// can run ahead of the chain.
    pub fn check_block(&self, block: Block, bytes: Vec<u8>) -> Result<CheckedBlock, ChainError> {
        CheckedBlock::check(block, bytes, &self.spec, &self.keys)
            .inspect_err(|e| metrics().block_rejected(e.reason()))
    }

    /// `check_block` for a block rebuilt from our mempool, whose txids are the keys its
    /// transactions were found under.
    pub fn check_rebuilt_block(
        &self,
        block: Block,
        txids: Vec<TxId>,
        bytes: Vec<u8>,
    ) -> Result<CheckedBlock, ChainError> {
        CheckedBlock::check_with_txids(block, txids, bytes, &self.spec, &self.keys)
            .inspect_err(|e| metrics().block_rejected(e.reason()))
    }

    /// Takes `blocks` (borsh bytes, parents first) as a sync or an import does: the pool
    /// decodes and checks several blocks at once (signatures on all cores; one block's
    /// serial parts overlap another's signature batches, so no core waits), while this
    /// thread takes them into the chain in order as their checks complete. Stops at the
    /// first block refused; those before it stay taken.
    pub fn connect_in_order(&self, blocks: Vec<Vec<u8>>) -> Result<(), ImportStopped> {
        let max_bytes = self.spec.consensus.max_block_bytes as usize;
        // Blocks after this position are not worth checking: the import stops there.
        let first_refused = AtomicUsize::new(usize::MAX);
        let first_refused = &first_refused;
        let (sender, receiver) = std::sync::mpsc::channel();
        // The checks run on the pool, FIFO: in the order the chain will want them, at most
        // CHECKS_AHEAD at once. More in flight would not be faster, and is slower: a worker
        // waiting inside one block's signature batches takes later blocks' checks meanwhile
        // and can finish the early block only after them, so the chain would wait for
        // nearly the whole import before connecting its first block. This thread connects
        // meanwhile; the scope ends once every check has.
        rayon::in_place_scope_fifo(|checks| {
            let total = blocks.len();
            let mut blocks = blocks.into_iter().enumerate();
            let mut spawn_next = || {
                let Some((position, bytes)) = blocks.next() else {
                    return;
                };
                let sender = sender.clone();
                checks.spawn_fifo(move |_| {
                    if position > first_refused.load(Ordering::Acquire) {
                        return;
                    }
                    let checked = decode_exact::<Block>("block", &bytes, max_bytes)
                        .map_err(ImportError::from)
                        .and_then(|block| Ok(self.check_block(block, bytes)?));
                    if checked.is_err() {
                        first_refused.fetch_min(position, Ordering::AcqRel);
                    }
                    let _ = sender.send((position, checked));
                });
            };
            (0..CHECKS_AHEAD).for_each(|_| spawn_next());
            let warmer = Warmer::start(self.ledger.clone());
            let mut waiting = BTreeMap::new();
            let mut next = 0;
            let mut stopped = None;
            'taking: while next < total {
                let Ok((position, checked)) = receiver.recv() else {
                    break;
                };
                waiting.insert(position, checked);
                while let Some(checked) = waiting.remove(&next) {
                    spawn_next();
                    warmer.ahead_of(next, &waiting);
                    let reads = self.ledger.store_reads();
                    let taken = checked.and_then(|c| Ok(self.take_block(c, Durability::Deferred)?));
                    warmer.cold(self.ledger.store_reads() - reads > WARM_AFTER_READS);
                    if let Err(error) = taken {
                        first_refused.fetch_min(next, Ordering::AcqRel);
                        stopped = Some(ImportStopped {
                            position: next,
                            error: Box::new(error),
                        });
                        break 'taking;
                    }
                    next += 1;
                }
            }
            // The run's blocks reach the disk together: one wait for it, not one a block.
            if let Err(error) = self.lock().chain.make_durable() {
                let error = self.note_error(error);
                return Err(stopped.unwrap_or(ImportStopped {
                    position: next,
                    error: Box::new(error.into()),
                }));
            }
            stopped.map_or(Ok(()), Err)
        })
    }

    /// Takes a checked block into the chain; the mempool follows any change of tip.
    pub fn accept_block(&self, checked: CheckedBlock) -> Result<Accepted, ChainError> {
        self.take_block(checked, Durability::Now)
    }

    fn take_block(
        &self,
        checked: CheckedBlock,
        durability: Durability,
    ) -> Result<Accepted, ChainError> {
        if let Some(full) = self.health.storage_full() {
            return Err(ChainError::StorageFull(full));
        }
        let started = std::time::Instant::now();
        // The state work first, outside the lock: readers wait only for the write.
        let tip = self.tip.borrow().hash;
        let prepared = Prepared::work_out(&self.ledger, tip, &checked, &self.spec);
        let mut guard = self.lock();
        let NodeState { chain, mempool } = &mut *guard;
        let accepted = match durability {
            Durability::Now => chain.accept_prepared(checked, prepared, now_ms()),
            Durability::Deferred => chain.accept_block_deferred(checked, prepared, now_ms()),
        };
        if let Some(error) = chain.take_flush_error() {
            self.note_error(error);
        }
        if let Some(seconds) = chain.take_flush_seconds() {
            metrics().flushed(seconds);
        }
        match &accepted {
            Ok(outcome) => metrics().block_accepted(outcome, started.elapsed().as_secs_f64()),
            Err(error) => metrics().block_rejected(error.reason()),
        }
        let accepted = accepted.map_err(|e| self.note_error(e))?;
        if let Accepted::NewTip(change) = &accepted {
            let connected: Vec<&SignedTransaction> =
                change.connected.iter().flat_map(|b| &b.txs).collect();
            let disconnected: Vec<&SignedTransaction> =
                change.disconnected.iter().flat_map(|b| &b.txs).collect();
            let dropped = mempool.update_for_tip(
                &connected,
                &change.connected_txids,
                &disconnected,
                &**chain.state(),
                &self.spec,
            );
            for (txid, reason) in &dropped {
                tracing::info!(%txid, %reason, "transaction left the mempool: invalid on the new tip");
            }
            // Those the reorganisation returned to the pool are logged again below (a
            // rewrite since they were mined may have left them out).
            let returned: Vec<SignedTransaction> = disconnected
                .iter()
                .filter(|tx| mempool.contains(&tx.txid()))
                .map(|tx| (*tx).clone())
                .collect();
            mempool.expire_if_due(std::time::Instant::now());
            self.tip.send_replace(our_tip(chain));
            self.tip_generation.fetch_add(1, Ordering::AcqRel);
            self.tell_watchers(change, dropped);
            if let Some(tip) = change.connected.last() {
                let txids = &change.connected_txids[change.connected_txids.len() - tip.txs.len()..];
                self.announce(Announcement::Block {
                    compact: CompactBlock::new(tip, txids),
                    encoded: None,
                });
            }
            drop(guard);
            for tx in &returned {
                if let Err(error) = self.log_accepted(tx) {
                    tracing::warn!(%error, "could not log a transaction a reorganisation returned");
                }
            }
        }
        Ok(accepted)
    }

    /// Records when each new main-chain block arrived and, when anyone watches, what the
    /// change of tip was. Under the state lock, so watchers see changes in order.
    fn tell_watchers(&self, change: &TipChange, dropped: Vec<(TxId, MempoolError)>) {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        // On every connect: only what the arrivals need (no per-transaction copies unless
        // someone watches).
        for block in &change.connected {
            self.events.arrived(block, now_us);
        }
        if !self.events.wanted() {
            return;
        }
        let mut txids = change.connected_txids.as_slice();
        let connected: Vec<BlockBrief> = change
            .connected
            .iter()
            .map(|block| {
                let (own, rest) = txids.split_at(block.txs.len().min(txids.len()));
                txids = rest;
                BlockBrief::of(block, own)
            })
            .collect();
        let disconnected = change
            .disconnected
            .iter()
            .map(|block| {
                let txids: Vec<TxId> = block.txs.iter().map(|tx| tx.txid()).collect();
                BlockBrief::of(block, &txids)
            })
            .collect();
        self.events.send(NodeEvent::Tip {
            connected,
            disconnected,
            dropped: dropped
                .into_iter()
                .map(|(txid, reason)| (txid, reason.to_string()))
                .collect(),
        });
    }

    /// Validates a transaction against the tip and queues it for the next blocks; peers
    /// hear of it by gossip.
    pub fn submit_tx(&self, stx: SignedTransaction) -> Result<TxId, SubmitError> {
        self.admit_tx(stx, true)
    }

    /// As `submit_tx`, for a transaction pulled from a peer's mempool: not gossiped again
    /// (it was, when it was new; peers that lack it pull it as this node did).
    pub fn take_pulled_tx(&self, stx: SignedTransaction) -> Result<TxId, SubmitError> {
        self.admit_tx(stx, false)
    }

    fn admit_tx(&self, stx: SignedTransaction, announce: bool) -> Result<TxId, SubmitError> {
        self.admit_all(vec![stx], announce)
            .pop()
            .expect("one verdict per transaction")
    }

    /// Transactions gossiped by peers, as they came while the last batch was checked: their
    /// signatures verified in batches, the mempool locked once. One verdict each, in order.
    pub fn take_gossiped_txs(&self, txs: Vec<SignedTransaction>) -> Vec<Gossiped> {
        // The pool's own checks first, under one lock: what it would refuse anyway costs
        // no signature check (a peer replaying mined transactions costs us lookups).
        let prechecked: Vec<Result<(), MempoolError>> = {
            let guard = self.lock();
            let state = &**guard.chain.state();
            txs.iter()
                .map(|stx| guard.mempool.precheck(stx, &stx.txid(), state, &self.spec))
                .collect()
        };
        let worth: Vec<SignedTransaction> = txs
            .into_iter()
            .zip(&prechecked)
            .filter_map(|(stx, precheck)| precheck.is_ok().then_some(stx))
            .collect();
        // Gossipsub forwards each one the node accepts: no announcement of our own.
        let mut checked = self.admit_all(worth, false).into_iter();
        prechecked
            .into_iter()
            .map(|precheck| match precheck {
                Err(why) => Gossiped::Skipped(why),
                Ok(()) => Gossiped::Checked(checked.next().expect("one verdict per transaction")),
            })
            .collect()
    }

    fn admit_all(
        &self,
        txs: Vec<SignedTransaction>,
        announce: bool,
    ) -> Vec<Result<TxId, SubmitError>> {
        if let Some(full) = self.health.storage_full() {
            return txs
                .iter()
                .map(|_| Err(SubmitError::StorageFull(full.clone())))
                .collect();
        }
        let checked = VerifiedTx::check_all(txs, &self.keys);
        let added: Vec<Result<(TxId, SignedTransaction), SubmitError>> = {
            let mut guard = self.lock();
            let NodeState { chain, mempool } = &mut *guard;
            checked
                .into_iter()
                .map(|verdict| {
                    let verified = verdict.map_err(MempoolError::from)?;
                    let stx = verified.tx().clone();
                    let txid = mempool.add(verified, &**chain.state(), &self.spec)?;
                    Ok((txid, stx))
                })
                .collect()
        };
        added
            .into_iter()
            .map(|added| {
                let (txid, stx) = added?;
                self.admitted(txid, stx, announce)
            })
            .collect()
    }

    /// A transaction the mempool took: logged (or taken back out), then told.
    fn admitted(
        &self,
        txid: TxId,
        stx: SignedTransaction,
        announce: bool,
    ) -> Result<TxId, SubmitError> {
        // Accepted means kept: a transaction that cannot be logged is taken back out.
        if let Err(error) = self.log_accepted(&stx) {
            self.lock().mempool.evict(&txid);
            let message = error.to_string();
            if crate::store::is_no_space(&message) {
                if let Some(path) = self.health.store_path() {
                    self.health.storage_is_full(&path, &message);
                }
                return Err(SubmitError::StorageFull(message));
            }
            return Err(SubmitError::NotLogged(message));
        }
        // Its signature passed: a block carrying it skips it.
        self.keys.remember_verified(txid);
        // Told after the log has it (a block may already have confirmed it: watchers
        // that saw that ignore this).
        if self.events.wanted() {
            self.events
                .send(NodeEvent::TxAccepted(TxBrief::of(txid, &stx)));
        }
        if announce {
            self.announce(Announcement::Tx(txid, stx));
        }
        Ok(txid)
    }
}
