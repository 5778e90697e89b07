//! Account state and its commitment. `commit` defines the commitment (a binary sparse
//! Merkle tree over addresses); `page` and `tree` store and change it a page at a time,
//! at a cost that grows with the accounts a block touches, never with the accounts there
//! are; `proof` proves one account, or a range of them, against a root; `memory` holds a
//! whole state in memory. A block's changes are worked out in a `StateDelta` over a state
//! that stays as it is until its owner keeps them.

pub mod commit;
pub mod memory;
pub mod page;
pub mod proof;
pub mod tree;

pub use commit::{leaf_hash, node_hash, root_of_sorted, EMPTY};
pub use memory::MemoryState;
pub use page::{Layout, Leaf, Page, PageKey, Slot};
pub use proof::{AccountProof, ProofError, RangeProof};
pub use tree::{AccountChange, PageSource, SourceError, TreeUpdate};

use crate::address::Address;
use crate::amount::Amount;
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::HashMap;
use std::fmt;

/// Maps keyed by address or page: foldhash, seeded per process (so keys a peer chooses
/// cannot be made to collide), several times quicker than SipHash on the paths a block
/// takes thousands of times.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// A set with the same hasher.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

crate::unit_newtype! {
    shown as is:
    /// A sender's count of transactions so far; the next one must carry exactly this.
    pub struct Nonce(pub u64);
}

impl Nonce {
    /// `n` nonces later (the largest nonce, if past it: no account gets there).
    pub fn saturating_add(self, n: u64) -> Nonce {
        Nonce(self.0.saturating_add(n))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.0)
    }
}

/// What the ledger holds for an address.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct Account {
    /// Its coins.
    pub balance: Amount,
    /// The transactions it has sent.
    pub nonce: Nonce,
}

impl Account {
    /// Empty accounts are not stored: absent and empty are the same state.
    pub fn is_empty(&self) -> bool {
        self.balance == Amount::ZERO && self.nonce == Nonce(0)
    }
}

/// What a block changed, as the value each touched account had before it (None: absent).
/// Applying it restores the exact prior state.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateUndo {
    /// Each touched account as it was (None: absent).
    pub previous: Vec<(Address, Option<Account>)>,
}

/// Where accounts are read from: a state in memory, or a node's store through its
/// caches. A read may fail (I/O): never taken for an absent account.
pub trait AccountSource: Sync {
    /// The account at `address` (None: absent).
    fn account(&self, address: &Address) -> Result<Option<Account>, SourceError>;

    /// Several at once (a store answers a batch faster than one at a time).
    fn accounts(&self, addresses: &[Address]) -> Result<Vec<Option<Account>>, SourceError> {
        addresses.iter().map(|a| self.account(a)).collect()
    }
}

impl<T: AccountSource + Send> AccountSource for std::sync::Arc<T> {
    fn account(&self, address: &Address) -> Result<Option<Account>, SourceError> {
        (**self).account(address)
    }

    fn accounts(&self, addresses: &[Address]) -> Result<Vec<Option<Account>>, SourceError> {
        (**self).accounts(addresses)
    }
}

impl<T: PageSource + Send> PageSource for std::sync::Arc<T> {
    fn page(&self, key: &PageKey) -> Result<Option<std::sync::Arc<Page>>, SourceError> {
        (**self).page(key)
    }

    fn layout(&self) -> Layout {
        (**self).layout()
    }
}

/// A whole state: accounts, and the pages of their tree.
pub trait StateSource: AccountSource + PageSource {}

impl<S: AccountSource + PageSource> StateSource for S {}

/// Changes to accounts over a state that stays as it is: what a block (or a template)
/// does, before its owner decides to keep it. The accounts it may touch are read first,
/// in one batch (`load`); from then on reading and changing them cannot fail.
#[derive(Clone, Debug, Default)]
pub struct StateDelta {
    accounts: FastMap<Address, Loaded>,
    /// Changed accounts, in the order of their first change.
    changed: Vec<Address>,
}

/// A loaded account: as it was (None: absent), and as it stands now.
#[derive(Clone, Copy, Debug)]
struct Loaded {
    before: Option<Account>,
    now: Option<Account>,
    changed: bool,
}

impl StateDelta {
    /// Reads `addresses` (duplicates allowed) from `base`.
    pub fn load(
        base: &impl AccountSource,
        addresses: &[Address],
    ) -> Result<StateDelta, SourceError> {
        let mut delta = StateDelta::default();
        delta.load_more(base, addresses)?;
        Ok(delta)
    }

    /// Reads the accounts of `addresses` not read yet from `base`.
    pub fn load_more(
        &mut self,
        base: &impl AccountSource,
        addresses: &[Address],
    ) -> Result<(), SourceError> {
        // Deduplicated before sorting: a template names each sender ten times and more,
        // and sorting 32-byte keys costs more than hashing them.
        let mut seen = FastSet::with_capacity_and_hasher(addresses.len(), Default::default());
        let mut missing: Vec<Address> = addresses
            .iter()
            .filter(|a| !self.accounts.contains_key(a) && seen.insert(**a))
            .copied()
            .collect();
        missing.sort_unstable();
        let found = base.accounts(&missing)?;
        self.accounts
            .extend(missing.into_iter().zip(found).map(|(address, account)| {
                let loaded = Loaded {
                    before: account,
                    now: account,
                    changed: false,
                };
                (address, loaded)
            }));
        Ok(())
    }

    fn loaded(&mut self, address: &Address) -> &mut Loaded {
        self.accounts
            .get_mut(address)
            .unwrap_or_else(|| panic!("account {address:?} was not loaded before use"))
    }

    /// An account as it stands in this delta. It must have been loaded.
    pub fn get(&self, address: &Address) -> Account {
        self.accounts
            .get(address)
            .unwrap_or_else(|| panic!("account {address:?} was not loaded before use"))
            .now
            .unwrap_or_default()
    }

    /// Sets an account (an empty one is removed).
    pub fn set(&mut self, address: Address, account: Account) {
        let loaded = self.loaded(&address);
        loaded.now = (!account.is_empty()).then_some(account);
        if !loaded.changed {
            loaded.changed = true;
            self.changed.push(address);
        }
    }

    /// How many accounts it changed.
    pub fn touched(&self) -> usize {
        self.changed.len()
    }

    /// The changed accounts' values (None: removed), sorted by address, and the record
    /// that undoes them.
    pub fn finish(self) -> (Vec<(Address, Option<Account>)>, StateUndo) {
        let previous = self
            .changed
            .iter()
            .map(|address| (*address, self.accounts[address].before))
            .collect();
        let mut changes: Vec<(Address, Option<Account>)> = self
            .changed
            .iter()
            .map(|address| (*address, self.accounts[address].now))
            .collect();
        changes.sort_unstable_by_key(|(a, _)| *a);
        (changes, StateUndo { previous })
    }
}

#[cfg(test)]
mod tests;
