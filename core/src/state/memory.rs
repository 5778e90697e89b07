//! A whole state in memory: its accounts and its tree's pages. For genesis, tests, tools
//! and the fuzz harness; the node keeps its state on disk and reads it through caches.

use super::commit::EMPTY;
use super::page::{Layout, Leaf, Page, PageKey};
use super::tree::{build_tree, update, AccountChange, PageSource, SourceError};
use super::{Account, AccountSource, StateUndo};
use crate::address::Address;
use crate::hash::Hash256;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A whole state in memory, its tree's pages kept: genesis, tests, tools.
#[derive(Clone)]
pub struct MemoryState {
    layout: Layout,
    accounts: BTreeMap<Address, Account>,
    pages: super::FastMap<PageKey, Arc<Page>>,
    root: Hash256,
}

impl Default for MemoryState {
    fn default() -> Self {
        MemoryState::new()
    }
}

impl std::fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MemoryState({} accounts, root {})",
            self.accounts.len(),
            self.root
        )
    }
}

impl MemoryState {
    /// No accounts, in the node's page layout.
    pub fn new() -> MemoryState {
        MemoryState::with_layout(Layout::NODE)
    }

    /// No accounts, in `layout` (narrower pages, to compare designs).
    pub fn with_layout(layout: Layout) -> MemoryState {
        MemoryState {
            layout,
            accounts: BTreeMap::new(),
            pages: Default::default(),
            root: EMPTY,
        }
    }

    /// A state of these accounts (empty ones are left out; a later one for an address
    /// replaces an earlier), its tree built in one pass.
    pub fn from_accounts(accounts: impl IntoIterator<Item = (Address, Account)>) -> MemoryState {
        MemoryState::from_accounts_with_layout(Layout::NODE, accounts)
    }

    /// `from_accounts` with pages of another width (to compare layouts).
    pub fn from_accounts_with_layout(
        layout: Layout,
        accounts: impl IntoIterator<Item = (Address, Account)>,
    ) -> MemoryState {
        let mut state = MemoryState::with_layout(layout);
        for (address, account) in accounts {
            if account.is_empty() {
                state.accounts.remove(&address);
            } else {
                state.accounts.insert(address, account);
            }
        }
        let leaves: Vec<Leaf> = state
            .accounts
            .iter()
            .map(|(a, account)| Leaf::new(*a, *account))
            .collect();
        let pages = &mut state.pages;
        state.root = build_tree(state.layout, &leaves, &mut |key, page| {
            pages.insert(key, Arc::new(page));
        });
        state
    }

    /// Accounts held.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether it holds no account.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The account at `address` (None: absent, which is the same as empty).
    pub fn get(&self, address: &Address) -> Option<Account> {
        self.accounts.get(address).copied()
    }

    /// Every account, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// The pages of its tree (for tests and tools that store them).
    pub fn pages(&self) -> impl Iterator<Item = (&PageKey, &Arc<Page>)> {
        self.pages.iter()
    }

    /// The commitment to every account.
    pub fn root(&self) -> Hash256 {
        self.root
    }

    /// Sets (or, with None or an empty account, removes) one account; returns what it was.
    pub fn set(&mut self, address: Address, account: Option<Account>) -> Option<Account> {
        let previous = self.get(&address);
        self.apply(&[(address, account)]);
        previous
    }

    /// Applies changes (in any order, each address once; None or empty: removed).
    pub fn apply(&mut self, changes: &[(Address, Option<Account>)]) {
        let mut sorted: Vec<AccountChange> = changes
            .iter()
            .map(|(a, account)| (*a, account.filter(|acc| !acc.is_empty())))
            .collect();
        sorted.sort_unstable_by_key(|(a, _)| *a);
        let update = update(&*self, &sorted).expect("memory is always readable");
        for (address, account) in sorted {
            match account {
                Some(account) => self.accounts.insert(address, account),
                None => self.accounts.remove(&address),
            };
        }
        for (key, page) in update.pages {
            match page {
                Some(page) => self.pages.insert(key, page),
                None => self.pages.remove(&key),
            };
        }
        self.root = update.root;
    }

    /// Restores the state an undo record was taken from; returns the record that would
    /// restore the state as it was before this call.
    pub fn apply_undo(&mut self, undo: &StateUndo) -> StateUndo {
        let previous = undo
            .previous
            .iter()
            .rev()
            .map(|(address, _)| (*address, self.get(address)))
            .collect();
        self.apply(&undo.previous);
        StateUndo { previous }
    }
}

impl PageSource for MemoryState {
    fn page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError> {
        Ok(self.pages.get(key).cloned())
    }

    fn layout(&self) -> Layout {
        self.layout
    }
}

impl AccountSource for MemoryState {
    fn account(&self, address: &Address) -> Result<Option<Account>, SourceError> {
        Ok(self.get(address))
    }
}
