//! Account state and its commitment. The tree has a fixed shape: 2^16 buckets chosen by
//! the first two bytes of the address, each bucket a Merkle tree of its accounts, and a
//! complete binary tree over the buckets. Changing k accounts rehashes k buckets and their
//! paths (16 nodes each), never the whole state; a bucket's siblings plus its path is a
//! proof of one balance for a light wallet.

use crate::address::Address;
use crate::amount::Amount;
use crate::hash::{merkle_root, state_node_hash, tag, tagged_hash, Hash256};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;
use std::fmt;

/// A sender's count of transactions so far; the next one must carry exactly this.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Nonce(pub u64);

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.0)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, BorshSerialize, BorshDeserialize)]
pub struct Account {
    pub balance: Amount,
    pub nonce: Nonce,
}

impl Account {
    /// Empty accounts are not stored: absent and empty are the same state.
    pub fn is_empty(&self) -> bool {
        self.balance == Amount::ZERO && self.nonce == Nonce(0)
    }

    fn leaf_hash(&self, address: &Address) -> Hash256 {
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&self.balance.base_units().to_le_bytes());
        value[8..].copy_from_slice(&self.nonce.0.to_le_bytes());
        tagged_hash(tag::ACCOUNT_LEAF, &[&address.0, &value])
    }
}

/// What a block changed, as the value each touched account had before it (None: absent).
/// Applying it restores the exact prior state.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateUndo {
    pub previous: Vec<(Address, Option<Account>)>,
}

const BUCKET_BITS: u32 = 16;
const BUCKETS: usize = 1 << BUCKET_BITS;

#[derive(Clone)]
pub struct AccountTree {
    buckets: Vec<BTreeMap<Address, Account>>,
    /// Heap order: node 1 is the root, nodes BUCKETS.. are the bucket roots.
    nodes: Vec<Hash256>,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    len: usize,
}

impl Default for AccountTree {
    fn default() -> Self {
        AccountTree::new()
    }
}

impl fmt::Debug for AccountTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountTree({} accounts)", self.len)
    }
}

fn bucket_of(address: &Address) -> usize {
    u16::from_be_bytes([address.0[0], address.0[1]]) as usize
}

fn node_hash(left: &Hash256, right: &Hash256) -> Hash256 {
    // Empty subtrees hash to zero, so an empty tree needs no hashing at all.
    if left == &Hash256::ZERO && right == &Hash256::ZERO {
        return Hash256::ZERO;
    }
    state_node_hash(left, right)
}

fn bucket_hash(bucket: &BTreeMap<Address, Account>) -> Hash256 {
    let leaves: Vec<Hash256> = bucket.iter().map(|(a, acc)| acc.leaf_hash(a)).collect();
    merkle_root(&leaves)
}

impl AccountTree {
    pub fn new() -> AccountTree {
        AccountTree {
            buckets: vec![BTreeMap::new(); BUCKETS],
            nodes: vec![Hash256::ZERO; 2 * BUCKETS],
            dirty: Vec::new(),
            is_dirty: vec![false; BUCKETS],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, address: &Address) -> Option<Account> {
        self.buckets[bucket_of(address)].get(address).copied()
    }

    /// Sets (or, with None or an empty account, removes) an account; returns what it was.
    pub fn set(&mut self, address: Address, account: Option<Account>) -> Option<Account> {
        let bucket = bucket_of(&address);
        let previous = match account.filter(|a| !a.is_empty()) {
            Some(account) => self.buckets[bucket].insert(address, account),
            None => self.buckets[bucket].remove(&address),
        };
        if previous != account.filter(|a| !a.is_empty()) && !self.is_dirty[bucket] {
            self.is_dirty[bucket] = true;
            self.dirty.push(bucket as u32);
        }
        self.len = self.len + usize::from(account.is_some_and(|a| !a.is_empty()))
            - usize::from(previous.is_some());
        previous
    }

    /// Restores the state an undo record was taken from; returns the record that would
    /// restore the state as it was before this call.
    pub fn apply_undo(&mut self, undo: &StateUndo) -> StateUndo {
        let previous = undo
            .previous
            .iter()
            .rev()
            .map(|(address, value)| (*address, self.set(*address, *value)))
            .collect();
        StateUndo { previous }
    }

    /// Every account, in address order (buckets are the first two bytes, in order).
    pub fn iter(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.buckets.iter().flat_map(|b| b.iter())
    }

    /// The commitment to every account; rehashes only what changed since the last call.
    /// On one thread on purpose: it runs while other blocks' signatures keep all cores busy.
    pub fn root(&mut self) -> Hash256 {
        if self.dirty.is_empty() {
            return self.nodes[1];
        }
        let mut level: Vec<usize> = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|b| b as usize)
            .collect();
        level.sort_unstable();
        for &b in &level {
            self.is_dirty[b] = false;
            self.nodes[BUCKETS + b] = bucket_hash(&self.buckets[b]);
        }
        let mut level: Vec<usize> = level.into_iter().map(|b| BUCKETS + b).collect();
        while level[0] > 1 {
            level = level.into_iter().map(|i| i / 2).collect();
            level.dedup();
            for &i in &level {
                self.nodes[i] = node_hash(&self.nodes[2 * i], &self.nodes[2 * i + 1]);
            }
        }
        self.nodes[1]
    }
}

/// Builds a block's undo record: the value of each account before its first change.
#[derive(Default)]
pub struct UndoRecorder {
    seen: std::collections::HashSet<Address>,
    undo: StateUndo,
}

impl UndoRecorder {
    pub fn new() -> UndoRecorder {
        UndoRecorder::default()
    }

    /// Sets an account in `tree`, remembering its value from before the block.
    pub fn set(&mut self, tree: &mut AccountTree, address: Address, account: Account) {
        let previous = tree.set(address, Some(account));
        if self.seen.insert(address) {
            self.undo.previous.push((address, previous));
        }
    }

    pub fn finish(self) -> StateUndo {
        self.undo
    }

    pub fn touched(&self) -> usize {
        self.undo.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn account(balance: u64, nonce: u64) -> Account {
        Account {
            balance: Amount::from_base_units(balance),
            nonce: Nonce(nonce),
        }
    }

    fn rebuilt_root(tree: &AccountTree) -> Hash256 {
        let mut fresh = AccountTree::new();
        for (a, acc) in tree.iter() {
            fresh.set(*a, Some(*acc));
        }
        fresh.root()
    }

    #[test]
    fn empty_tree_and_empty_accounts_commit_to_zero() {
        let mut tree = AccountTree::new();
        assert_eq!(tree.root(), Hash256::ZERO);
        tree.set(Address([1; 32]), Some(account(0, 0)));
        assert_eq!(tree.root(), Hash256::ZERO);
        assert!(tree.is_empty());
    }

    proptest! {
        #[test]
        fn incremental_root_equals_rebuilt_root_and_undo_restores(
            initial in proptest::collection::vec((any::<[u8; 32]>(), 1u64..1000, 0u64..5), 0..50),
            changes in proptest::collection::vec((0usize..60, 0u64..1000, 0u64..5), 1..40),
        ) {
            let mut tree = AccountTree::new();
            let addresses: Vec<Address> = initial.iter().map(|(a, _, _)| Address(*a)).collect();
            for (a, balance, nonce) in &initial {
                tree.set(Address(*a), Some(account(*balance, *nonce)));
            }
            let before_root = tree.root();
            let before: Vec<_> = tree.iter().map(|(a, acc)| (*a, *acc)).collect();

            let mut recorder = UndoRecorder::new();
            for (i, balance, nonce) in &changes {
                let address = addresses.get(*i).copied().unwrap_or(Address([*i as u8; 32]));
                recorder.set(&mut tree, address, account(*balance, *nonce));
            }
            prop_assert_eq!(tree.root(), rebuilt_root(&tree));

            tree.apply_undo(&recorder.finish());
            prop_assert_eq!(tree.root(), before_root);
            let after: Vec<_> = tree.iter().map(|(a, acc)| (*a, *acc)).collect();
            prop_assert_eq!(after, before);
        }
    }
}
