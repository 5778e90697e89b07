//! The chain: every known header with its cumulative work, the main chain, and the account
//! state at its tip. Blocks may arrive in any order from anywhere; the most-work valid
//! branch wins, and switching to it (disconnects and connects together) is one write batch.
//!
//! Account balances and the tx and address indexes are written to disk every few hundred blocks (as
//! Bitcoin Core flushes its coins cache), not with every block: blocks, undo data and the
//! tip are durable per block, so after a crash both are rebuilt by replaying the blocks
//! since the last flush. Writing them per block would cost more than the block's signatures.

mod index;
mod prepared;
mod unflushed;

pub use prepared::Prepared;

use crate::cache::CacheBudget;
use crate::state::{Pending, StateDb};
use crate::store::{
    AddressEntry, AddressTotals, AddressTx, BlockStatus, IndexEntry, Store, StoreError, TxLocation,
};
use apiary_core::state::SourceError;
use apiary_core::tx::KeyCache;
use apiary_core::validate::{
    check_block_with_txids, check_header_context, connect_block, ConnectError,
};
use apiary_core::{
    Account, Address, Block, BlockError, BlockHash, BlockHeader, ChainSpec, HeaderAncestry, Height,
    ParentContext, TxId, Work,
};
use index::HeaderIndex;
use std::collections::BTreeSet;
use std::sync::Arc;
use unflushed::Unflushed;

/// Write the state to disk once its changes since the last flush outgrow their share of
/// `--cache-mb`, or this many transactions were indexed…
const FLUSH_AFTER_TXS: usize = 500_000;
/// …or this many blocks have connected, bounding the replay after a crash.
const FLUSH_AFTER_BLOCKS: u64 = 500;
/// Main-chain blocks read back at every start.
const CHECK_BLOCKS_AT_START: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("block {hash} is invalid: {error}")]
    Invalid { hash: BlockHash, error: BlockError },
    #[error("block {0} was already found invalid")]
    KnownInvalid(BlockHash),
    #[error("block {hash} descends from invalid block {ancestor}")]
    InvalidAncestor {
        hash: BlockHash,
        ancestor: BlockHash,
    },
    #[error("parent {parent} of block {hash} is unknown")]
    UnknownParent { hash: BlockHash, parent: BlockHash },
    #[error("switching to block {hash} would undo {depth} blocks, more than the limit of {max}")]
    ReorgTooDeep {
        hash: BlockHash,
        depth: u64,
        max: u64,
    },
    #[error("stored chain is inconsistent: {0}; restart with --reindex")]
    Inconsistent(String),
    /// Writing is paused (a full disk): nothing about the block is known yet.
    #[error("{0}")]
    StorageFull(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state could not be read (the store's own error, in words).
    #[error("{0}")]
    StateUnreadable(#[from] SourceError),
}

/// Why `Node::connect_in_order` stopped before the last block.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Decode(#[from] apiary_core::DecodeError),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl ChainError {
    /// A short name for why the block was not taken, for metrics labels.
    /// The reasons of the chain's own refusals, beside `BlockError::REASONS`.
    pub const OWN_REASONS: [&'static str; 7] = [
        "known_invalid",
        "invalid_ancestor",
        "unknown_parent",
        "reorg_too_deep",
        "store_inconsistent",
        "storage_full",
        "store_error",
    ];

    /// A short name for the kind of refusal, for metrics labels (one of `OWN_REASONS` or
    /// `BlockError::REASONS`).
    pub fn reason(&self) -> &'static str {
        match self {
            ChainError::Invalid { error, .. } => error.reason(),
            ChainError::KnownInvalid(_) => "known_invalid",
            ChainError::InvalidAncestor { .. } => "invalid_ancestor",
            ChainError::UnknownParent { .. } => "unknown_parent",
            ChainError::ReorgTooDeep { .. } => "reorg_too_deep",
            ChainError::Inconsistent(_) => "store_inconsistent",
            ChainError::StorageFull(_) => "storage_full",
            ChainError::Store(_) | ChainError::StateUnreadable(_) => "store_error",
        }
    }
}

/// A block that passed every check that needs no state. Only `CheckedBlock::check` makes
/// one, so the chain never takes a block whose signatures nobody verified; the checks can
/// run on other threads, ahead of the chain (as a sync or an import does).
#[derive(Debug)]
pub struct CheckedBlock {
    hash: BlockHash,
    block: Block,
    /// The block's canonical borsh bytes (what decoded to `block`), stored as they are.
    bytes: Vec<u8>,
    txids: Vec<TxId>,
}

impl CheckedBlock {
    /// Checks `block`, whose canonical encoding is `bytes` (decoding is canonical, so
    /// the bytes a block was decoded from are its encoding).
    pub fn check(
        block: Block,
        bytes: Vec<u8>,
        spec: &ChainSpec,
        keys: &KeyCache,
    ) -> Result<CheckedBlock, ChainError> {
        let txids = block.txids();
        CheckedBlock::check_with_txids(block, txids, bytes, spec, keys)
    }

    /// `check` for a block rebuilt from transactions found under their own ids (in a
    /// mempool): `txids` must be exactly theirs, so they need not be hashed again.
    pub fn check_with_txids(
        block: Block,
        txids: Vec<TxId>,
        bytes: Vec<u8>,
        spec: &ChainSpec,
        keys: &KeyCache,
    ) -> Result<CheckedBlock, ChainError> {
        let hash = block.hash();
        let txids = check_block_with_txids(&block, txids, bytes.len(), spec, keys)
            .map_err(|error| ChainError::Invalid { hash, error })?;
        Ok(CheckedBlock {
            hash,
            block,
            bytes,
            txids,
        })
    }

    pub fn hash(&self) -> BlockHash {
        self.hash
    }

    pub fn block(&self) -> &Block {
        &self.block
    }

    pub fn txids(&self) -> &[TxId] {
        &self.txids
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What accepting a block did to the main chain.
#[derive(Debug, Default)]
pub struct TipChange {
    /// Blocks taken off the main chain, tip first.
    pub disconnected: Vec<Block>,
    /// Blocks put on the main chain, lowest first.
    pub connected: Vec<Block>,
    /// The txids of `connected`'s transactions, in the same order (already computed
    /// to connect them; followers need not hash them again).
    pub connected_txids: Vec<TxId>,
}

impl TipChange {
    fn absorb(&mut self, other: TipChange) {
        self.disconnected.extend(other.disconnected);
        self.connected.extend(other.connected);
        self.connected_txids.extend(other.connected_txids);
    }
}

#[derive(Debug)]
pub enum Accepted {
    /// The block was already known.
    Duplicate,
    /// Stored on a side branch with less work than the main chain.
    SideBranch,
    /// The main chain changed.
    NewTip(TipChange),
}

pub struct Chain {
    spec: Arc<ChainSpec>,
    store: Arc<Store>,
    index: HeaderIndex,
    /// Main chain hashes by height.
    main: Vec<BlockHash>,
    /// The accounts at the tip: on disk, with what changed since the last flush.
    state: Arc<StateDb>,
    /// Stored blocks with more work than the tip when they arrived, best last.
    candidates: BTreeSet<(Work, BlockHash)>,
    /// The block being accepted, with its txids, so connecting it needs no reread.
    arriving: Option<(BlockHash, Block, Vec<TxId>)>,
    /// Its changes, if worked out before the lock was taken (`Prepared`).
    prepared: Option<Prepared>,
    /// What changed since the derived state (accounts, tx index) was last written, and
    /// the height it was written at.
    unflushed: Unflushed,
    flushed_height: Height,
    /// Why the last periodic flush failed, until someone asks (`take_flush_error`).
    flush_error: Option<ChainError>,
    /// How long the last flush took, until someone asks (`take_flush_seconds`).
    flush_seconds: Option<f64>,
    /// The state's share of `--cache-mb` for changes not yet flushed.
    flush_after_state_bytes: usize,
    /// Set during `accept_block_deferred`: the switch's batch is written without waiting
    /// for the disk.
    deferring: bool,
    /// A tip written so (survives the process, not yet a power loss) until `make_durable`.
    undurable: Option<BlockHash>,
}

fn block_work(entry_bits: apiary_core::CompactTarget) -> Work {
    entry_bits
        .to_target()
        .map(|t| t.work())
        .unwrap_or(Work::ZERO)
}

impl Chain {
    /// A chain with nothing loaded yet; `load` fills it from the store.
    fn unloaded(store: Store, spec: Arc<ChainSpec>, budget: &CacheBudget) -> Chain {
        let store = Arc::new(store);
        Chain {
            spec,
            state: Arc::new(StateDb::new(store.clone(), budget.state_pages())),
            flush_after_state_bytes: budget.unflushed_state(),
            deferring: false,
            undurable: None,
            store,
            index: HeaderIndex::default(),
            main: Vec::new(),
            candidates: BTreeSet::new(),
            arriving: None,
            prepared: None,
            unflushed: Unflushed::default(),
            flushed_height: Height(0),
            flush_error: None,
            flush_seconds: None,
        }
    }

    /// Loads the chain from `store`, creating genesis on first start, and checks that the
    /// tip, the main-chain index and the account state agree.
    pub fn open(store: Store, spec: Arc<ChainSpec>) -> Result<Chain, ChainError> {
        Chain::open_with_budget(store, spec, &CacheBudget::default())
    }

    /// `open`, with the memory `budget` (`--cache-mb`) gives the state (the store's own
    /// share is set when it is opened: `CacheBudget::store_tuning`).
    pub fn open_with_budget(
        store: Store,
        spec: Arc<ChainSpec>,
        budget: &CacheBudget,
    ) -> Result<Chain, ChainError> {
        let mut chain = Chain::unloaded(store, spec, budget);
        if chain.store.tip()?.is_none() {
            if chain.store.has_blocks()? {
                return Err(ChainError::Inconsistent(
                    "blocks are stored but no tip is recorded".into(),
                ));
            }
            chain.write_genesis()?;
        }
        chain.load()?;
        // Blocks stored but not yet connected when the node stopped.
        let tip_work = chain.tip_entry().total_work;
        for (hash, entry) in chain.index.iter() {
            if entry.status == BlockStatus::Stored && entry.total_work > tip_work {
                chain.candidates.insert((entry.total_work, *hash));
            }
        }
        chain.activate_best_chain()?;
        chain.check_recent_blocks()?;
        Ok(chain)
    }

    /// Reads back the body and undo data of the last few main-chain blocks (as Bitcoin
    /// Core's -checkblocks does), so that damage where the next reorganisation or peer
    /// would look is found at start, not later.
    fn check_recent_blocks(&self) -> Result<(), ChainError> {
        for hash in self.main.iter().rev().take(CHECK_BLOCKS_AT_START) {
            self.body(hash)?;
            if *hash != self.spec.genesis_hash() && self.store.undo(hash)?.is_none() {
                return Err(ChainError::Inconsistent(format!(
                    "undo data of block {hash} is missing"
                )));
            }
        }
        Ok(())
    }

    /// Writes RocksDB's memtables to table files (at a clean stop: the next start replays
    /// no log, and damage to the log after a clean stop loses nothing).
    pub fn flush_memtables(&self) -> Result<(), ChainError> {
        Ok(self.store.flush_memtables()?)
    }

    fn write_genesis(&mut self) -> Result<(), ChainError> {
        let genesis = self.spec.genesis_block();
        let hash = genesis.hash();
        // The state first: until the tip below is written, a restart writes genesis again.
        let root = self
            .state
            .write_initial(&hash, &self.spec.genesis_accounts())?;
        if root != genesis.header.state_root {
            return Err(ChainError::Inconsistent(format!(
                "the genesis state was written with root {root}, its header commits to {}",
                genesis.header.state_root
            )));
        }
        let mut batch = self.store.batch();
        let entry = IndexEntry {
            total_work: block_work(genesis.header.bits),
            header: genesis.header.clone(),
            status: BlockStatus::Valid,
        };
        batch.put_entry(&hash, &entry);
        batch.put_body(&hash, &genesis);
        batch.set_main(Height(0), &hash);
        batch.set_tip(&hash);
        batch.commit(true)?;
        Ok(())
    }

    fn load(&mut self) -> Result<(), ChainError> {
        let inconsistent = |m: String| ChainError::Inconsistent(m);
        self.index = HeaderIndex::from_entries(self.store.entries()?);
        self.main.clear();
        for (height, hash) in self.store.main_chain()? {
            if height.0 != self.main.len() as u64 {
                return Err(inconsistent(format!(
                    "main chain index skips to height {height}"
                )));
            }
            let entry = self
                .index
                .get(&hash)
                .ok_or_else(|| inconsistent(format!("main chain block {hash} has no header")))?;
            if entry.header.height != height {
                return Err(inconsistent(format!(
                    "block {hash} is indexed at height {height}"
                )));
            }
            self.main.push(hash);
        }
        let tip = self
            .store
            .tip()?
            .ok_or_else(|| inconsistent("no tip recorded".into()))?;
        if self.main.last() != Some(&tip) {
            return Err(inconsistent(format!(
                "tip {tip} is not the top of the main chain index"
            )));
        }
        if self.main.first() != Some(&self.spec.genesis_hash()) {
            return Err(inconsistent(
                "main chain does not start at this chain's genesis".into(),
            ));
        }
        let state_tip = self.store.state_tip()?.unwrap_or(tip);
        let state_entry = self.index.get(&state_tip).ok_or_else(|| {
            inconsistent(format!("the stored state is of unknown block {state_tip}"))
        })?;
        // The stored tree's root against the header it is the state after: one page read,
        // not every account (a node with millions starts in seconds).
        let expected = state_entry.header.state_root;
        let found = self.state.root()?;
        if found != expected {
            return Err(inconsistent(format!(
                "the stored state's root is {found}, block {state_tip} commits to {expected}"
            )));
        }
        self.flushed_height = state_entry.header.height;
        self.replay_to_tip(state_tip)
    }

    /// Brings the state from `state_tip` (where it was last written) to the tip: undoes
    /// blocks a reorganisation has since taken off the main chain, then re-applies the
    /// main chain's blocks, checking each header's state commitment on the way.
    fn replay_to_tip(&mut self, state_tip: BlockHash) -> Result<(), ChainError> {
        let state = self.state.clone();
        let mut pending = Pending::new(&state);
        let mut cursor = state_tip;
        let mut undone = 0;
        while !self.is_main(&cursor) {
            let undo = self.store.undo(&cursor)?.ok_or_else(|| {
                ChainError::Inconsistent(format!("undo data of block {cursor} is missing"))
            })?;
            pending.apply_undo(&undo)?;
            let block = self.body(&cursor)?;
            self.unflushed.disconnected(&block);
            cursor = self.index[&cursor].header.prev_hash;
            undone += 1;
        }
        let from = self.index[&cursor].header.height.0 + 1;
        let to = self.height().0;
        for height in from..=to {
            let hash = self.main[height as usize];
            let block = self.body(&hash)?;
            let txids = block.txids();
            let connected =
                connect_block(&pending, &block, &txids, &self.spec).map_err(|error| {
                    ChainError::Inconsistent(format!("replaying block {hash}: {error}"))
                })?;
            pending.apply(connected.tree);
            let earned = earned(&self.spec, &block);
            self.unflushed.connected(hash, &block, &txids, earned);
        }
        self.state.commit(pending.into_changes());
        if undone > 0 || from <= to {
            tracing::info!(
                undone,
                replayed = to + 1 - from,
                "state rebuilt from stored blocks"
            );
            self.flush_state()?;
        }
        Ok(())
    }

    /// Writes every account and index entry changed since the last flush, with the block
    /// the accounts are the state after.
    pub fn flush_state(&mut self) -> Result<(), ChainError> {
        let started = std::time::Instant::now();
        // The state about to be written names the tip: that tip must be on disk first.
        self.make_durable()?;
        // The indexes go first. They describe blocks already on the stored main chain, so
        // a crash before the accounts are written leaves entries that the replay from the
        // last state tip writes again, identically.
        self.unflushed.write_indexes(&self.store)?;
        // Accounts, their tree and the state tip change together: a replay starts from
        // exactly the state it names.
        self.state.flush(&self.tip())?;
        self.unflushed = Unflushed::default();
        self.flushed_height = self.height();
        self.flush_seconds = Some(started.elapsed().as_secs_f64());
        Ok(())
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// How long the last state flush took, once (for the metrics, which sit above).
    pub fn take_flush_seconds(&mut self) -> Option<f64> {
        self.flush_seconds.take()
    }

    /// Why the last periodic state flush failed, once.
    pub fn take_flush_error(&mut self) -> Option<ChainError> {
        self.flush_error.take()
    }

    /// After the disk was full: reopens the store if a write failed (RocksDB takes no
    /// write after a failed one), then tries a small synced write.
    pub fn recover_store(&mut self) -> Result<(), StoreError> {
        if self.store.writes_stopped() {
            self.store.reopen()?;
        }
        self.store.probe()
    }

    /// The store's directory.
    pub fn store_path(&self) -> &std::path::Path {
        self.store.path()
    }

    pub fn shared_spec(&self) -> Arc<ChainSpec> {
        self.spec.clone()
    }

    pub fn tip(&self) -> BlockHash {
        *self
            .main
            .last()
            .expect("the main chain holds at least genesis")
    }

    pub fn tip_entry(&self) -> &IndexEntry {
        &self.index[&self.tip()]
    }

    pub fn height(&self) -> Height {
        Height(self.main.len() as u64 - 1)
    }

    /// The accounts at the tip, readable without the chain (it is shared).
    pub fn state(&self) -> &Arc<StateDb> {
        &self.state
    }

    pub fn account(&self, address: &Address) -> Result<Account, ChainError> {
        Ok(self.state.account_at(address)?)
    }

    pub fn entry(&self, hash: &BlockHash) -> Option<&IndexEntry> {
        self.index.get(hash)
    }

    pub fn main_hash(&self, height: Height) -> Option<BlockHash> {
        self.main.get(usize::try_from(height.0).ok()?).copied()
    }

    pub fn is_main(&self, hash: &BlockHash) -> bool {
        self.index
            .get(hash)
            .is_some_and(|e| self.main_hash(e.header.height) == Some(*hash))
    }

    pub fn body(&self, hash: &BlockHash) -> Result<Block, ChainError> {
        self.store
            .body(hash)?
            .ok_or_else(|| ChainError::Inconsistent(format!("body of block {hash} is missing")))
    }

    pub fn tx_location(&self, txid: &TxId) -> Result<Option<TxLocation>, ChainError> {
        match self.unflushed.tx_location(txid) {
            Some(location) => Ok(location),
            None => Ok(self.store.tx_location(txid)?),
        }
    }

    /// The main-chain txs `address` sent or received, and the block rewards it was paid
    /// (entries `is_reward`, pointing at the block hash; the others at the txid), before
    /// `before` (all when None),
    /// newest first, at most `limit`: the store's index with the changes since the last
    /// flush laid over it.
    pub fn address_txs(
        &self,
        address: &Address,
        before: Option<AddressTx>,
        limit: usize,
    ) -> Result<Vec<(AddressTx, AddressEntry)>, ChainError> {
        let overlay = self.unflushed.address_txs(address, before);
        // Overlay deletions may hide stored entries: read enough to still fill the page.
        let stored = self
            .store
            .address_txs(address, before, limit + overlay.len())?;
        let mut merged: std::collections::BTreeMap<AddressTx, AddressEntry> =
            stored.into_iter().collect();
        for (entry, value) in overlay {
            match value {
                Some(value) => merged.insert(entry, value),
                None => merged.remove(&entry),
            };
        }
        Ok(merged.into_iter().rev().take(limit).collect())
    }

    /// What `address` received and sent on the main chain, over at most `max` index
    /// entries (`StoreError::TooMany` past them): the stored index with the changes since
    /// the last flush laid over it.
    pub fn address_totals(&self, address: &Address, max: u64) -> Result<AddressTotals, ChainError> {
        let overlay = self.unflushed.address_txs(address, None);
        let stored =
            self.store
                .address_totals(address, |entry| overlay.contains_key(entry), max)?;
        let overflow = || ChainError::Inconsistent("address totals overflow".into());
        overlay
            .values()
            .flatten()
            .try_fold(stored, |totals, entry| totals.with(entry))
            .ok_or_else(overflow)
    }

    /// Hashes of the main chain from the tip back, spaced ever wider, ending at genesis:
    /// a peer finds the most recent one it shares to say where to continue.
    pub fn locator(&self) -> Vec<BlockHash> {
        let mut heights = Vec::new();
        let mut height = self.height().0;
        let mut step = 1;
        loop {
            heights.push(height);
            if height == 0 {
                break;
            }
            if heights.len() > 10 {
                step *= 2;
            }
            height = height.saturating_sub(step);
        }
        heights.into_iter().map(|h| self.main[h as usize]).collect()
    }

    /// Headers of the main chain after the first `locator` hash on it (genesis when none
    /// is), at most `max` of them, lowest first.
    pub fn main_headers_after(&self, locator: &[BlockHash], max: u32) -> Vec<BlockHeader> {
        let fork = locator
            .iter()
            .find(|hash| self.is_main(hash))
            .map(|hash| self.index[hash].header.height.0)
            .unwrap_or(0);
        (fork + 1..=self.height().0)
            .take(max as usize)
            .map(|height| self.index[&self.main[height as usize]].header.clone())
            .collect()
    }

    /// The stored bytes of `hashes`' blocks, in order, stopping at the first not held (or
    /// found invalid) or once about `byte_target` bytes are read (at least one if held).
    pub fn bodies(
        &self,
        hashes: &[BlockHash],
        byte_target: usize,
    ) -> Result<Vec<Vec<u8>>, ChainError> {
        let mut bodies = Vec::new();
        let mut bytes = 0;
        for hash in hashes {
            if bytes >= byte_target && !bodies.is_empty() {
                break;
            }
            // Never pass on a block found invalid.
            if self
                .index
                .get(hash)
                .is_none_or(|e| e.status == BlockStatus::Invalid)
            {
                break;
            }
            let Some(body) = self.store.body_bytes(hash)? else {
                break;
            };
            bytes += body.len();
            bodies.push(body);
        }
        Ok(bodies)
    }

    /// What a child of `parent` is checked against.
    pub fn parent_context(&self, parent: &BlockHash) -> Option<ParentContext> {
        self.ancestry(parent).map(|a| a.context())
    }

    /// What headers building on the known block `hash` are checked against.
    pub fn ancestry(&self, hash: &BlockHash) -> Option<HeaderAncestry> {
        let entry = self.index.get(hash)?;
        // The median time past's span, and at least the parent for the solve time.
        let span = (self.spec.consensus.median_time_span as usize).max(2);
        let mut timestamps = Vec::with_capacity(span);
        let mut cursor = Some(entry);
        while let Some(e) = cursor {
            if timestamps.len() == span {
                break;
            }
            timestamps.push(e.header.timestamp_ms);
            cursor = if e.header.height.0 == 0 {
                None
            } else {
                self.index.get(&e.header.prev_hash)
            };
        }
        Some(HeaderAncestry::new(
            *hash,
            &entry.header,
            &timestamps,
            entry.total_work,
            &self.spec,
        ))
    }

    /// Accepts a checked block: checks it against its parent, stores it, and moves the
    /// main chain to the most-work branch.
    pub fn accept_block(
        &mut self,
        checked: CheckedBlock,
        now_ms: u64,
    ) -> Result<Accepted, ChainError> {
        self.accept_prepared(checked, None, now_ms)
    }

    /// `accept_block`, with the block's changes if they were worked out before (used only
    /// if they still hold).
    pub fn accept_prepared(
        &mut self,
        checked: CheckedBlock,
        prepared: Option<Prepared>,
        now_ms: u64,
    ) -> Result<Accepted, ChainError> {
        let CheckedBlock {
            hash,
            block,
            bytes,
            txids,
        } = checked;
        if let Some(entry) = self.index.get(&hash) {
            return match entry.status {
                BlockStatus::Invalid => Err(ChainError::KnownInvalid(hash)),
                _ => Ok(Accepted::Duplicate),
            };
        }
        let parent_hash = block.header.prev_hash;
        let parent = self
            .index
            .get(&parent_hash)
            .ok_or(ChainError::UnknownParent {
                hash,
                parent: parent_hash,
            })?;
        if parent.status == BlockStatus::Invalid {
            return Err(ChainError::InvalidAncestor {
                hash,
                ancestor: parent_hash,
            });
        }
        let parent_work = parent.total_work;
        let context = self
            .parent_context(&parent_hash)
            .expect("parent is indexed");
        let now = apiary_core::TimestampMs(now_ms);
        if let Err(error) = check_header_context(&block.header, &context, now, &self.spec) {
            return Err(ChainError::Invalid { hash, error });
        }
        let total_work = parent_work
            .checked_add(block_work(block.header.bits))
            .unwrap_or(parent_work);
        let entry = IndexEntry {
            header: block.header.clone(),
            total_work,
            status: BlockStatus::Stored,
        };
        let mut batch = self.store.batch();
        batch.put_entry(&hash, &entry);
        batch.put_encoded_body(&hash, &bytes);
        // Not synced: the block is acknowledged only once connected, by a synced batch.
        batch.commit(false)?;
        self.index.insert(hash, entry);
        if total_work <= self.tip_entry().total_work {
            return Ok(Accepted::SideBranch);
        }
        self.candidates.insert((total_work, hash));
        self.arriving = Some((hash, block, txids));
        self.prepared = prepared;
        let change = self.activate_best_chain_reporting(hash);
        self.arriving = None;
        self.prepared = None;
        let change = change?;
        Ok(if change.connected.is_empty() {
            Accepted::SideBranch
        } else {
            Accepted::NewTip(change)
        })
    }

    /// `accept_block` for one block of a run from peers or an import: its batch is
    /// written without waiting for the disk (it survives the process ending, as every
    /// write does, but not yet a power loss), as Bitcoin Core writes blocks during initial
    /// sync. Waiting for the disk on every block would cap a sync at the disk's syncs per
    /// second. `make_durable` ends the run.
    pub fn accept_block_deferred(
        &mut self,
        checked: CheckedBlock,
        prepared: Option<Prepared>,
        now_ms: u64,
    ) -> Result<Accepted, ChainError> {
        self.deferring = true;
        let accepted = self.accept_prepared(checked, prepared, now_ms);
        self.deferring = false;
        accepted
    }

    /// Waits until the tips written by `accept_block_deferred` are on disk.
    pub fn make_durable(&mut self) -> Result<(), ChainError> {
        if let Some(tip) = self.undurable {
            let mut batch = self.store.batch();
            batch.set_tip(&tip);
            batch.commit(true)?;
            self.undurable = None;
        }
        Ok(())
    }

    fn activate_best_chain(&mut self) -> Result<TipChange, ChainError> {
        self.activate_best_chain_reporting(BlockHash::ZERO)
    }

    /// Switches to the best candidate until none beats the tip. If `watched` turns out
    /// invalid, that error is returned (after the chain settled on the best valid branch).
    fn activate_best_chain_reporting(
        &mut self,
        watched: BlockHash,
    ) -> Result<TipChange, ChainError> {
        let mut change = TipChange::default();
        let mut watched_error = None;
        while let Some(&(work, candidate)) = self.candidates.last() {
            self.candidates.remove(&(work, candidate));
            if work <= self.tip_entry().total_work {
                continue;
            }
            match self.reorganize_to(candidate) {
                Ok(step) => change.absorb(step),
                Err(ChainError::Invalid { hash, error }) => {
                    tracing::warn!(%hash, %error, "invalid block on a competing branch");
                    self.mark_invalid(&hash);
                    if self.descends_from(&watched, &hash) {
                        watched_error = Some(ChainError::Invalid { hash, error });
                    }
                }
                Err(ChainError::InvalidAncestor { hash, ancestor }) => {
                    self.mark_invalid(&hash);
                    if hash == watched {
                        watched_error = Some(ChainError::InvalidAncestor { hash, ancestor });
                    }
                }
                Err(error @ ChainError::ReorgTooDeep { .. }) => {
                    tracing::warn!(%error, "refusing deep reorganisation");
                    if candidate == watched {
                        watched_error = Some(error);
                    }
                }
                Err(other) => return Err(other),
            }
        }
        match watched_error {
            Some(error) if change.connected.is_empty() => Err(error),
            _ => Ok(change),
        }
    }

    fn descends_from(&self, block: &BlockHash, ancestor: &BlockHash) -> bool {
        let Some(target_height) = self.index.get(ancestor).map(|e| e.header.height) else {
            return false;
        };
        let mut cursor = *block;
        while let Some(entry) = self.index.get(&cursor) {
            if cursor == *ancestor {
                return true;
            }
            if entry.header.height <= target_height {
                return false;
            }
            cursor = entry.header.prev_hash;
        }
        false
    }

    fn mark_invalid(&mut self, hash: &BlockHash) {
        if let Some(entry) = self.index.get_mut(hash) {
            entry.status = BlockStatus::Invalid;
            let mut batch = self.store.batch();
            batch.put_entry(hash, entry);
            if let Err(error) = batch.commit(false) {
                tracing::warn!(%error, "could not record an invalid block");
            }
        }
    }

    /// Disconnects the main chain down to the fork point with `target`'s branch and
    /// connects that branch up to `target`, all in one write batch. On any failure the
    /// state and the store are as they were.
    fn reorganize_to(&mut self, target: BlockHash) -> Result<TipChange, ChainError> {
        let mut branch = Vec::new();
        let mut cursor = target;
        while !self.is_main(&cursor) {
            let entry = &self.index[&cursor];
            if entry.status == BlockStatus::Invalid {
                return Err(ChainError::InvalidAncestor {
                    hash: target,
                    ancestor: cursor,
                });
            }
            branch.push(cursor);
            cursor = entry.header.prev_hash;
        }
        branch.reverse();
        let fork_height = self.index[&cursor].header.height;
        let depth = self.height().0 - fork_height.0;
        if depth > self.spec.consensus.max_reorg_depth {
            return Err(ChainError::ReorgTooDeep {
                hash: target,
                depth,
                max: self.spec.consensus.max_reorg_depth,
            });
        }

        let (change, branch_entries) = self.switch_branch(fork_height, &branch, target)?;
        self.main.truncate(fork_height.0 as usize + 1);
        for (hash, entry) in branch.iter().zip(branch_entries) {
            self.main.push(*hash);
            self.index.insert(*hash, entry);
        }
        if self.state.unflushed_bytes() >= self.flush_after_state_bytes
            || self.unflushed.tx_changes() >= FLUSH_AFTER_TXS
            || self.height().0.saturating_sub(self.flushed_height.0) >= FLUSH_AFTER_BLOCKS
        {
            // The switch is committed already: a flush that fails (a full disk) leaves
            // the changes unflushed for the next one, and is reported, not the block.
            if let Err(error) = self.flush_state() {
                tracing::warn!(%error, "state flush failed; it is retried with the next block");
                self.flush_error = Some(error);
            }
        }
        if let Some(last) = change.connected.last() {
            tracing::info!(
                height = last.header.height.0,
                hash = %target,
                txs = last.txs.len(),
                connected = change.connected.len(),
                disconnected = change.disconnected.len(),
                "new tip"
            );
        }
        Ok(change)
    }

    /// The switch itself: the state's changes are worked out on a `Pending` layer and
    /// committed only once the store's batch is durable; on any failure nothing changed.
    fn switch_branch(
        &mut self,
        fork_height: Height,
        branch: &[BlockHash],
        target: BlockHash,
    ) -> Result<(TipChange, Vec<IndexEntry>), ChainError> {
        let state = self.state.clone();
        let mut pending = Pending::new(&state);
        let mut batch = self.store.batch();
        let mut changes = Unflushed::default();
        let mut change = TipChange::default();
        for height in (fork_height.0 + 1..=self.height().0).rev() {
            let hash = self.main[height as usize];
            let block = self.body(&hash)?;
            let undo = self.store.undo(&hash)?.ok_or_else(|| {
                ChainError::Inconsistent(format!("undo data of block {hash} is missing"))
            })?;
            pending.apply_undo(&undo)?;
            changes.disconnected(&block);
            batch.unset_main(Height(height));
            change.disconnected.push(block);
        }
        let mut entries = Vec::with_capacity(branch.len());
        for hash in branch {
            let (block, txids) = match self.arriving.take_if(|(arriving, ..)| arriving == hash) {
                Some((_, block, txids)) => (block, txids),
                None => {
                    let block = self.body(hash)?;
                    let txids = block.txids();
                    (block, txids)
                }
            };
            // Worked out before the lock, on this very tip and state: nothing to redo.
            let untouched = change.disconnected.is_empty() && entries.is_empty();
            let prepared = self
                .prepared
                .take()
                .filter(|p| untouched && p.holds(hash, &self.tip(), self.state.commits()));
            let connected = match prepared {
                Some(prepared) => prepared.connected,
                None => {
                    connect_block(&pending, &block, &txids, &self.spec).map_err(
                        |error| match error {
                            ConnectError::Invalid(error) => {
                                ChainError::Invalid { hash: *hash, error }
                            }
                            ConnectError::Unreadable(error) => ChainError::StateUnreadable(error),
                        },
                    )?
                }
            };
            changes.connected(*hash, &block, &txids, earned(&self.spec, &block));
            batch.put_undo(hash, &connected.undo);
            pending.apply(connected.tree);
            batch.set_main(block.header.height, hash);
            let mut entry = self.index[hash].clone();
            entry.status = BlockStatus::Valid;
            batch.put_entry(hash, &entry);
            entries.push(entry);
            change.connected.push(block);
            change.connected_txids.extend(txids);
        }
        batch.set_tip(&target);
        batch.commit(!self.deferring)?;
        self.undurable = self.deferring.then_some(target);
        // Accounts, their tree and the indexes reach the disk with the next flush.
        self.state.commit(pending.into_changes());
        self.unflushed.absorb(changes);
        Ok((change, entries))
    }
}

/// What a valid block paid its miner: the reward at its height and its fees.
fn earned(spec: &ChainSpec, block: &Block) -> apiary_core::Amount {
    let fees = block.fees().unwrap_or(apiary_core::Amount::ZERO);
    let reward = spec.block_reward(block.header.height);
    reward.checked_add(fees).unwrap_or(reward)
}
