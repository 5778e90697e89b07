//! The miner: a block template from the mempool's best transactions, worked out on an
//! overlay of the state (the live state never changes for it), then a nonce search on N
//! threads that starts over whenever the tip changes. A found block is announced at once
//! and takes the same way in as every other block (`Node::submit_mined_block`).

use crate::chain::{Accepted, ChainError};
use crate::health::CoreTask;
use crate::mempool::Candidate;
use crate::node::{Node, NodeState};
use crate::time::now_ms;
use apiary_core::block::{target_words, HeaderHasher, BLOCK_VERSION, HEADER_BYTES};
use apiary_core::state::{tree, SourceError, StateDelta, StateSource};
use apiary_core::validate::{apply_tx, pay_miner, required_bits};
use apiary_core::{
    tx_merkle_root, Address, Amount, Block, BlockHash, BlockHeader, ChainSpec, Hash256,
    ParentContext, SignedTransaction, TxId,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod templates;

/// A template is rebuilt at least this often, to take in new transactions.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(2);
/// Nonces tried between looks at whether to stop.
pub const NONCES_BETWEEN_CHECKS: u64 = 1 << 14;

/// How many times a template is worked out again because a block connected meanwhile.
const TEMPLATE_ATTEMPTS: usize = 8;

/// Builds the next block on the tip, paying `miner`: valid transactions from the mempool,
/// highest fee first, and the state root they lead to. The node's lock is held only to
/// choose the transactions; the block is worked out after, on the state, which readers
/// read without the lock (a block that connects meanwhile changes the state: the template
/// is made again on the new tip).
pub fn build_template(node: &Node, miner: Address, now_ms: u64) -> Result<Block, SourceError> {
    for _ in 0..TEMPLATE_ATTEMPTS {
        let (chosen, state, commits) = {
            let guard = node.lock();
            let state = guard.chain.state().clone();
            let commits = state.commits();
            (Chosen::from(&guard), state, commits)
        };
        let block = chosen.assemble(&*state, miner, now_ms);
        // The same state throughout, or it is done again.
        if state.commits() == commits {
            return block;
        }
    }
    // Blocks kept connecting: under the lock, where none can.
    let guard = node.lock();
    Chosen::from(&guard).assemble(&**guard.chain.state(), miner, now_ms)
}

/// What a template is built from: the tip's context and the mempool's choice on it.
struct Chosen {
    spec: Arc<ChainSpec>,
    context: ParentContext,
    candidates: Vec<Candidate>,
}

impl Chosen {
    fn from(state: &NodeState) -> Chosen {
        let NodeState { chain, mempool } = state;
        let spec = chain.shared_spec();
        let context = chain
            .parent_context(&chain.tip())
            .expect("the tip is indexed");
        let candidates = mempool.select(
            spec.consensus.max_block_txs as usize,
            block_tx_budget(&spec),
        );
        Chosen {
            spec,
            context,
            candidates,
        }
    }

    fn assemble(
        self,
        state: &impl StateSource,
        miner: Address,
        now_ms: u64,
    ) -> Result<Block, SourceError> {
        assemble_block(
            state,
            &self.spec,
            &self.context,
            miner,
            self.candidates,
            now_ms,
        )
    }
}

/// Bytes a block's transactions may take.
pub fn block_tx_budget(spec: &ChainSpec) -> usize {
    (spec.consensus.max_block_bytes as usize).saturating_sub(HEADER_BYTES + 4)
}

/// Assembles an unsealed block (nonce 0) on the parent described by `context`: those
/// `candidates` (`Candidate::new` for transactions from elsewhere than the mempool) that
/// apply in order and fit (the rest are skipped), the miner's reward and fees, and the
/// state root all that leads to. `state` is the parent's, only read: the
/// block's changes are worked out on a delta over it.
pub fn assemble_block(
    state: &impl StateSource,
    spec: &ChainSpec,
    context: &ParentContext,
    miner: Address,
    candidates: Vec<Candidate>,
    now_ms: u64,
) -> Result<Block, SourceError> {
    let mut header = BlockHeader {
        version: BLOCK_VERSION,
        height: context.height.next(),
        prev_hash: context.hash,
        tx_root: Hash256::ZERO,
        state_root: Hash256::ZERO,
        miner,
        timestamp_ms: apiary_core::TimestampMs(now_ms).max(context.median_time_past_ms + 1),
        bits: required_bits(context, spec),
        nonce: 0,
    };
    let max_txs = spec.consensus.max_block_txs as usize;
    let mut bytes_left = block_tx_budget(spec);
    let mut touched: Vec<Address> = candidates
        .iter()
        .flat_map(|candidate| [candidate.tx.tx.from, candidate.tx.tx.to])
        .collect();
    touched.push(miner);
    let mut delta = StateDelta::load(state, &touched)?;
    let mut fees = Amount::ZERO;
    let mut txs: Vec<SignedTransaction> = Vec::with_capacity(candidates.len().min(max_txs));
    let mut txids: Vec<TxId> = Vec::with_capacity(txs.capacity());
    for Candidate { tx, txid, size } in candidates {
        if txs.len() == max_txs || size > bytes_left {
            continue;
        }
        // Candidates were checked against the parent state; skip any the order made invalid.
        if let Ok(fee) = apply_tx(&mut delta, &tx) {
            fees = fees.checked_add(fee).unwrap_or(fees);
            bytes_left -= size;
            txs.push(tx);
            txids.push(txid);
        }
    }
    if pay_miner(&mut delta, &header, fees, spec).is_err() {
        tracing::warn!("the miner's balance would overflow; its pay is left out");
    }
    let (changes, _) = delta.finish();
    header.state_root = tree::update(state, &changes)?.root;
    header.tx_root = tx_merkle_root(&txids);
    Ok(Block { header, txs })
}

/// Searches nonces `start, start + stride, …` until the header meets its target or
/// `stop()` says to give up.
pub fn search_nonce(
    header: &BlockHeader,
    start: u64,
    stride: u64,
    stop: impl Fn() -> bool,
) -> Option<u64> {
    let target = target_words(&header.bits.to_target().ok()?);
    let mut hasher = HeaderHasher::new(header);
    let mut nonce = start;
    loop {
        for _ in 0..NONCES_BETWEEN_CHECKS {
            if hasher.hash_words(nonce) <= target {
                return Some(nonce);
            }
            nonce = nonce.wrapping_add(stride);
        }
        if stop() {
            return None;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MineError {
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Writing is paused (a full disk): a block found now could not be stored.
    #[error("{0}")]
    StorageFull(String),
    #[error("the mined block was refused: {0}")]
    Refused(#[from] ChainError),
}

/// Mines one block on the current tip with `threads` threads and submits it. Starts over
/// when the tip moves underneath it.
pub fn mine_block(node: &Node, miner: Address, threads: usize) -> Result<BlockHash, MineError> {
    let threads = threads.max(1) as u64;
    loop {
        if node.is_shutting_down() {
            return Err(MineError::ShuttingDown);
        }
        if let Some(full) = node.health().storage_full() {
            return Err(MineError::StorageFull(full));
        }
        let generation = node.tip_generation();
        let template = build_template(node, miner, now_ms()).map_err(ChainError::from)?;
        let started = Instant::now();
        let found = AtomicBool::new(false);
        let winner = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for index in 0..threads {
                let (header, found, winner) = (&template.header, &found, &winner);
                scope.spawn(move || {
                    let stop = || {
                        found.load(Ordering::Relaxed)
                            || node.tip_generation() != generation
                            || started.elapsed() > TEMPLATE_REFRESH
                    };
                    if let Some(nonce) = search_nonce(header, index, threads, stop) {
                        if !found.swap(true, Ordering::AcqRel) {
                            winner.store(nonce, Ordering::Release);
                        }
                    }
                });
            }
        });
        if !found.load(Ordering::Acquire) {
            continue;
        }
        let mut block = template;
        block.header.nonce = winner.load(Ordering::Acquire);
        let hash = block.hash();
        match node.submit_mined_block(block)? {
            Accepted::NewTip(_) => return Ok(hash),
            // Another block won the race for this height: mine on the new tip.
            Accepted::SideBranch | Accepted::Duplicate => continue,
        }
    }
}

/// How long the miner waits before it looks again while the disk is full.
const STORAGE_FULL_PAUSE: Duration = Duration::from_secs(1);

/// How long a paced miner sleeps at most before it looks again (shutdown, a new tip).
const PACE_CHECK: Duration = Duration::from_millis(250);

/// Waits until `interval` has passed since the tip's timestamp (the tip may change while
/// waiting: a peer's block restarts the wait). False if the node is shutting down.
fn wait_for_slot(node: &Node, interval: Duration) -> bool {
    let interval_ms = interval.as_millis() as u64;
    loop {
        if node.is_shutting_down() {
            return false;
        }
        let tip_ms = node.lock().chain.tip_entry().header.timestamp_ms.0;
        let due_ms = tip_ms.saturating_add(interval_ms);
        let now = now_ms();
        if now >= due_ms {
            return true;
        }
        std::thread::sleep(Duration::from_millis(due_ms - now).min(PACE_CHECK));
    }
}

/// Mines continuously until shutdown (`--mine`); pauses while the disk is full. With a
/// `pace`, each block waits until that long after the tip's timestamp: blocks then come
/// no faster than the pace, the retarget lowers the difficulty to the chain's floor, and
/// an idle development chain costs next to no CPU.
pub fn spawn_miner(
    node: Arc<Node>,
    miner: Address,
    threads: usize,
    pace: Option<Duration>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("miner".into())
        .spawn(move || {
            let _running = CoreTask::new(node.clone(), "miner");
            loop {
                if let Some(pace) = pace {
                    if !wait_for_slot(&node, pace) {
                        return;
                    }
                }
                match mine_block(&node, miner, threads) {
                    Ok(_) => {}
                    Err(MineError::ShuttingDown) => return,
                    Err(MineError::StorageFull(_)) => std::thread::sleep(STORAGE_FULL_PAUSE),
                    Err(error) => {
                        tracing::error!(%error, "mined block refused; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        })
}
