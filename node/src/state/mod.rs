//! The account state on disk: accounts and the pages of their tree in the store, what
//! changed since the last flush in memory (the overlay), and a cache of pages read,
//! bounded in bytes. Memory grows with the blocks since the last flush and the cache,
//! never with the number of accounts. Readers (RPC, peers, the mempool, templates) read
//! it without the chain's lock: the overlay's lock is held for a lookup, or to take in a
//! block's changes.

mod pending;

pub use pending::Pending;

use crate::store::{Store, StoreError};
use apiary_core::state::{AccountSource, Layout, Page, PageKey, PageSource, SourceError};
use apiary_core::{Account, Address, BlockHash, Hash256};
use borsh::BorshDeserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A page's size in memory, roughly (slots and summaries of a 16-slot page).
const PAGE_BYTES: u64 = 1_800;
/// An overlay entry's size in memory, roughly, beyond a page's.
const ENTRY_BYTES: usize = 96;

/// The store's key of a page: its depth, then its 32 prefix bytes (33 bytes: never an
/// account's 32 or the state tip's empty key).
pub fn page_record_key(key: &PageKey) -> [u8; 33] {
    let mut bytes = [0u8; 33];
    bytes[0] = key.depth() as u8;
    bytes[1..].copy_from_slice(&key.prefix().0);
    bytes
}

/// Changes to the state not yet in the store: accounts (None: removed) and pages (None:
/// deleted).
#[derive(Clone, Debug, Default)]
pub struct StateChanges {
    pub accounts: HashMap<Address, Option<Account>>,
    pub pages: HashMap<PageKey, Option<Arc<Page>>>,
}

impl StateChanges {
    /// Takes in `later`'s changes, which happened after these.
    pub fn absorb(&mut self, later: StateChanges) {
        self.accounts.extend(later.accounts);
        self.pages.extend(later.pages);
    }

    fn bytes(&self) -> usize {
        self.accounts.len() * ENTRY_BYTES + self.pages.len() * (ENTRY_BYTES + PAGE_BYTES as usize)
    }
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
    overlay: RwLock<StateChanges>,
    /// Pages read from the store (the overlay's are not here: they are in the overlay).
    cache: quick_cache::sync::Cache<PageKey, Arc<Page>, PageWeight>,
}

impl StateDb {
    /// The state in `store`, with a page cache of about `cache_bytes`.
    pub fn new(store: Arc<Store>, cache_bytes: u64) -> StateDb {
        let pages = (cache_bytes / PAGE_BYTES).max(16) as usize;
        StateDb {
            store,
            overlay: RwLock::new(StateChanges::default()),
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

    fn overlay(&self) -> std::sync::RwLockReadGuard<'_, StateChanges> {
        self.overlay.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The commitment to every account: the root page's hash.
    pub fn root(&self) -> Result<Hash256, SourceError> {
        Ok(self
            .page(&PageKey::ROOT)?
            .map_or(apiary_core::state::EMPTY, |page| page.hash()))
    }

    /// Takes in changes that are now part of the state (a block connected).
    pub fn commit(&self, changes: StateChanges) {
        let mut overlay = self.overlay.write().unwrap_or_else(|e| e.into_inner());
        overlay.absorb(changes);
    }

    /// Bytes held in memory by changes not yet flushed, roughly.
    pub fn unflushed_bytes(&self) -> usize {
        self.overlay().bytes()
    }

    /// Accounts changed since the last flush.
    pub fn unflushed_accounts(&self) -> usize {
        self.overlay().accounts.len()
    }

    /// Writes the changes since the last flush to the store, with `state_tip` (the block
    /// they are the state after): all or nothing. Then the overlay empties; its pages go
    /// to the cache.
    pub fn flush(&self, state_tip: &BlockHash) -> Result<(), StoreError> {
        let records = {
            let overlay = self.overlay();
            let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                Vec::with_capacity(overlay.accounts.len() + overlay.pages.len());
            for (address, account) in &overlay.accounts {
                let value = account.map(|a| borsh::to_vec(&a).expect("writing to a Vec"));
                records.push((address.0.to_vec(), value));
            }
            for (key, page) in &overlay.pages {
                records.push((
                    page_record_key(key).to_vec(),
                    page.as_ref().map(|p| p.encode()),
                ));
            }
            records
        };
        let mut records = records;
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.store.ingest_state(state_tip, records)?;
        let mut overlay = self.overlay.write().unwrap_or_else(|e| e.into_inner());
        let flushed = std::mem::take(&mut *overlay);
        drop(overlay);
        for (key, page) in flushed.pages {
            match page {
                Some(page) => self.cache.insert(key, page),
                None => {
                    self.cache.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Every account, in address order: the store's with the overlay laid over it. Reads
    /// them all (tests and tools, never a hot path).
    pub fn all_accounts(&self) -> Result<Vec<(Address, Account)>, SourceError> {
        let stored = self
            .store
            .accounts()
            .map_err(|e| SourceError(e.to_string()))?;
        let mut all: std::collections::BTreeMap<Address, Account> = stored.into_iter().collect();
        for (address, account) in &self.overlay().accounts {
            match account {
                Some(account) => all.insert(*address, *account),
                None => all.remove(address),
            };
        }
        Ok(all.into_iter().collect())
    }

    /// Writes a whole state at once (genesis, or a state that arrived whole), building
    /// its tree as it goes; returns the root. The store must hold no state yet.
    pub fn write_initial(
        &self,
        state_tip: &BlockHash,
        accounts: &[(Address, Account)],
    ) -> Result<Hash256, StoreError> {
        use rayon::prelude::*;
        let leaves: Vec<(Address, Hash256)> = accounts
            .par_iter()
            .map(|(a, acc)| (*a, apiary_core::state::leaf_hash(a, acc)))
            .collect();
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = accounts
            .iter()
            .map(|(a, acc)| {
                (
                    a.0.to_vec(),
                    Some(borsh::to_vec(acc).expect("writing to a Vec")),
                )
            })
            .collect();
        let root = apiary_core::state::tree::build_tree(Layout::NODE, &leaves, &mut |key, page| {
            records.push((page_record_key(&key).to_vec(), Some(page.encode())));
        });
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.store.ingest_state(state_tip, records)?;
        Ok(root)
    }

    fn read_page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError> {
        if let Some(page) = self.cache.get(key) {
            return Ok(Some(page));
        }
        let Some(bytes) = self
            .store
            .state_record(&page_record_key(key))
            .map_err(|e| SourceError(e.to_string()))?
        else {
            return Ok(None);
        };
        let page =
            Arc::new(Page::decode(Layout::NODE, &bytes).map_err(|e| SourceError(e.to_string()))?);
        self.cache.insert(*key, page.clone());
        Ok(Some(page))
    }
}

fn decode_account(bytes: &[u8]) -> Result<Account, SourceError> {
    Account::try_from_slice(bytes).map_err(|e| SourceError(format!("an account record: {e}")))
}

impl AccountSource for StateDb {
    fn account(&self, address: &Address) -> Result<Option<Account>, SourceError> {
        if let Some(account) = self.overlay().accounts.get(address) {
            return Ok(*account);
        }
        self.store
            .state_record(&address.0)
            .map_err(|e| SourceError(e.to_string()))?
            .map(|bytes| decode_account(&bytes))
            .transpose()
    }

    fn accounts(&self, addresses: &[Address]) -> Result<Vec<Option<Account>>, SourceError> {
        let mut found: Vec<Option<Option<Account>>> = {
            let overlay = self.overlay();
            addresses
                .iter()
                .map(|a| overlay.accounts.get(a).copied())
                .collect()
        };
        let missing: Vec<&[u8]> = addresses
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(a, _)| a.0.as_slice())
            .collect();
        if !missing.is_empty() {
            let read = self
                .store
                .state_records(&missing)
                .map_err(|e| SourceError(e.to_string()))?;
            let mut read = read.into_iter();
            for slot in found.iter_mut().filter(|f| f.is_none()) {
                let bytes = read.next().expect("one answer per key");
                *slot = Some(bytes.map(|b| decode_account(&b)).transpose()?);
            }
        }
        Ok(found
            .into_iter()
            .map(|f| f.expect("every one filled"))
            .collect())
    }
}

impl PageSource for StateDb {
    fn page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError> {
        if let Some(page) = self.overlay().pages.get(key) {
            return Ok(page.clone());
        }
        self.read_page(key)
    }

    fn layout(&self) -> Layout {
        Layout::NODE
    }
}
