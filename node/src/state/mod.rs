//! The account state on disk: the pages of its tree in the store (accounts live in the
//! tree's leaves, nowhere else), the pages changed since the last flush in memory (the
//! overlay), and a cache of pages read, bounded in bytes. Memory grows with the blocks
//! since the last flush and the cache, never with the number of accounts. Readers (RPC,
//! peers, the mempool, templates) read it without the chain's lock: the overlay's lock
//! is held for a lookup, or to take in a block's changes.

mod pending;

pub use pending::Pending;

use crate::store::{Store, StoreError};
use apiary_core::state::{
    tree, AccountSource, FastMap, Layout, Leaf, Page, PageKey, PageSource, SourceError,
};
use apiary_core::{Account, Address, BlockHash, Hash256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A page's size in memory, roughly (its slots and inner summaries, and the Arc).
pub const PAGE_BYTES: u64 = std::mem::size_of::<Page>() as u64 + 16;
/// An overlay entry's size in memory beyond its page, roughly (key, map slot).
const ENTRY_BYTES: usize = 64;

/// The store's key of a page: its depth, then its 32 prefix bytes (33 bytes: never the
/// state tip's key).
pub fn page_record_key(key: &PageKey) -> [u8; 33] {
    let mut bytes = [0u8; 33];
    bytes[0] = key.depth() as u8;
    bytes[1..].copy_from_slice(&key.prefix().0);
    bytes
}

/// Pages changed and not yet in the store (None: deleted).
#[derive(Clone, Debug, Default)]
pub struct StateChanges {
    pub pages: FastMap<PageKey, Option<Arc<Page>>>,
}

impl StateChanges {
    /// Takes in `later`'s changes, which happened after these.
    pub fn absorb(&mut self, later: StateChanges) {
        self.pages.extend(later.pages);
    }

    fn bytes(&self) -> usize {
        self.pages.len() * (ENTRY_BYTES + PAGE_BYTES as usize)
    }
}

/// What changed since the last flush, and how many flushes there were (a page read from
/// the store before a flush must not reach the cache after it: it may be older than the
/// one the flush wrote).
#[derive(Default)]
struct Overlay {
    changes: StateChanges,
    flushes: u64,
}

#[derive(Clone)]
struct PageWeight;

impl quick_cache::Weighter<PageKey, Arc<Page>> for PageWeight {
    fn weight(&self, _: &PageKey, _: &Arc<Page>) -> u64 {
        PAGE_BYTES
    }
}

pub struct StateDb {
    store: Arc<Store>,
    overlay: RwLock<Overlay>,
    /// Changes taken in so far: a reader that saw the same count before and after saw
    /// one state throughout.
    commits: AtomicU64,
    /// Pages read from the store so far (not from memory).
    store_reads: AtomicU64,
    /// Pages read from the store (the overlay's are not here: they are in the overlay).
    cache: quick_cache::sync::Cache<PageKey, Arc<Page>, PageWeight>,
}

impl StateDb {
    /// The state in `store`, with a page cache of about `cache_bytes`.
    pub fn new(store: Arc<Store>, cache_bytes: u64) -> StateDb {
        let pages = (cache_bytes / PAGE_BYTES).max(16) as usize;
        StateDb {
            store,
            overlay: RwLock::new(Overlay::default()),
            commits: AtomicU64::new(0),
            store_reads: AtomicU64::new(0),
            cache: quick_cache::sync::Cache::with_weighter(
                pages,
                cache_bytes.max(PAGE_BYTES * 16),
                PageWeight,
            ),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn overlay(&self) -> std::sync::RwLockReadGuard<'_, Overlay> {
        self.overlay.read().unwrap_or_else(|e| e.into_inner())
    }

    fn overlay_mut(&self) -> std::sync::RwLockWriteGuard<'_, Overlay> {
        self.overlay.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The commitment to every account: the root page's hash.
    pub fn root(&self) -> Result<Hash256, SourceError> {
        Ok(self
            .page(&PageKey::ROOT)?
            .map_or(apiary_core::state::EMPTY, |page| page.hash()))
    }

    /// Takes in changes that are now part of the state (a block connected).
    pub fn commit(&self, changes: StateChanges) {
        let mut overlay = self.overlay_mut();
        overlay.changes.absorb(changes);
        self.commits.fetch_add(1, Ordering::AcqRel);
    }

    /// The account at `address` (empty where there is none), for readers.
    pub fn account_at(&self, address: &Address) -> Result<Account, SourceError> {
        Ok(AccountSource::account(self, address)?.unwrap_or_default())
    }

    /// How many pages were read from the store so far.
    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    /// How many changes were taken in so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// Bytes held in memory by changes not yet flushed, roughly.
    pub fn unflushed_bytes(&self) -> usize {
        self.overlay().changes.bytes()
    }

    /// Bytes the page cache holds now, roughly.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Writes the changes since the last flush to the store, with `state_tip` (the block
    /// they are the state after): all or nothing. Then the overlay empties; its pages go
    /// to the cache.
    pub fn flush(&self, state_tip: &BlockHash) -> Result<(), StoreError> {
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .overlay()
            .changes
            .pages
            .iter()
            .map(|(key, page)| {
                (
                    page_record_key(key).to_vec(),
                    page.as_ref().map(|p| p.encode()),
                )
            })
            .collect();
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.store.ingest_state(state_tip, records)?;
        let mut overlay = self.overlay_mut();
        overlay.flushes += 1;
        // Under the lock: a reader that read the store before the flush sees the count
        // changed and keeps its page out of the cache.
        for (key, page) in std::mem::take(&mut overlay.changes.pages) {
            match page {
                Some(page) => self.cache.insert(key, page),
                None => {
                    self.cache.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Every account, in address order. Reads them all (tests and tools, never a hot
    /// path).
    pub fn all_accounts(&self) -> Result<Vec<(Address, Account)>, SourceError> {
        let mut all = Vec::new();
        tree::walk(self, &Address([0; 32]), &mut |leaf| {
            all.push((leaf.address, leaf.account));
            true
        })?;
        Ok(all)
    }

    /// Writes a whole state at once (genesis, or a state that arrived whole), building
    /// its tree as it goes; returns the root. The store must hold no state yet.
    pub fn write_initial(
        &self,
        state_tip: &BlockHash,
        accounts: &[(Address, Account)],
    ) -> Result<Hash256, StoreError> {
        use rayon::prelude::*;
        let leaves: Vec<Leaf> = accounts
            .par_iter()
            .map(|(a, acc)| Leaf::new(*a, *acc))
            .collect();
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let root = tree::build_tree(Layout::NODE, &leaves, &mut |key, page| {
            records.push((page_record_key(&key).to_vec(), Some(page.encode())));
        });
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.store.ingest_state(state_tip, records)?;
        Ok(root)
    }

    /// A page not in the overlay (as of flush number `flushes`): the cache's, or the
    /// store's, then cached.
    fn read_page(&self, key: &PageKey, flushes: u64) -> Result<Option<Arc<Page>>, SourceError> {
        if let Some(page) = self.cache.get(key) {
            return Ok(Some(page));
        }
        self.store_reads.fetch_add(1, Ordering::Relaxed);
        let Some(bytes) = self
            .store
            .state_record(&page_record_key(key))
            .map_err(|e| SourceError(e.to_string()))?
        else {
            return Ok(None);
        };
        let page =
            Arc::new(Page::decode(Layout::NODE, &bytes).map_err(|e| SourceError(e.to_string()))?);
        let overlay = self.overlay();
        if overlay.flushes == flushes && !overlay.changes.pages.contains_key(key) {
            self.cache.insert(*key, page.clone());
        }
        Ok(Some(page))
    }
}

impl StateDb {
    /// `read`, again if a block's changes were taken in while it read and it failed (a
    /// page its path named was replaced meanwhile): readers take no lock of the chain's.
    fn consistent<T>(&self, read: impl Fn() -> Result<T, SourceError>) -> Result<T, SourceError> {
        for _ in 0..3 {
            let before = self.commits();
            match read() {
                Err(_) if self.commits() != before => continue,
                done => return done,
            }
        }
        read()
    }
}

impl AccountSource for StateDb {
    fn account(&self, address: &Address) -> Result<Option<Account>, SourceError> {
        self.consistent(|| tree::account(self, address))
    }

    fn accounts(&self, addresses: &[Address]) -> Result<Vec<Option<Account>>, SourceError> {
        self.consistent(|| tree::accounts(self, addresses))
    }
}

impl PageSource for StateDb {
    fn page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError> {
        let flushes = {
            let overlay = self.overlay();
            if let Some(page) = overlay.changes.pages.get(key) {
                return Ok(page.clone());
            }
            overlay.flushes
        };
        self.read_page(key, flushes)
    }

    fn layout(&self) -> Layout {
        Layout::NODE
    }
}
