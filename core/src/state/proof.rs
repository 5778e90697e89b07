//! Proofs against a state root. One account: the siblings along its address's path down
//! to where the path ends — at the account (it is there, with this balance and nonce), at
//! an empty subtree, or at another account alone in the subtree (it is not there). A range:
//! every account between two addresses, and the proofs of those two ends; the verifier
//! rebuilds the root from them, so no account in the range can be left out or added.

use super::commit::{bit, leaf_hash, node_hash, root_of_leaves, EMPTY};
use super::page::{PageKey, Slot, Summary};
use super::tree::PageSource;
use super::tree::SourceError;
use super::Account;
use crate::address::Address;
use crate::hash::Hash256;
use borsh::{BorshDeserialize, BorshSerialize};

/// Where a path ends.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProofEnd {
    /// An empty subtree.
    Empty,
    /// A subtree holding exactly this account (the one asked about, or another).
    Leaf {
        /// Its address.
        address: Address,
        /// What it holds.
        account: Account,
    },
}

/// The path of one address from the root: the sibling of each node on it, from the top
/// (`siblings[i]` is the other child of the path's node at depth i), and where it ends.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AccountProof {
    /// The sibling hashes, from the top.
    pub siblings: Vec<Hash256>,
    /// What the path ends in.
    pub end: ProofEnd,
}

/// The accounts between two addresses, proved by the paths of both.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RangeProof {
    /// The path of the range's first address.
    pub first: AccountProof,
    /// The path of its last.
    pub last: AccountProof,
}

/// Why a proof does not prove what it is offered for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// It hashes to another root.
    #[error("the proof leads to root {found}, not {expected}")]
    WrongRoot {
        /// The root it must prove against (a header's state root).
        expected: Hash256,
        /// The root it hashes to.
        found: Hash256,
    },
    /// More siblings than an address has bits.
    #[error("the proof's path is longer than an address")]
    TooDeep,
    /// It ends at an account whose address leaves the path.
    #[error("the account the path ends at is not on the address's path")]
    OffPath,
    /// The range's accounts are out of order, repeated or outside it.
    #[error("the accounts of a range must be sorted, distinct, and within it")]
    BadRange,
    /// The range's accounts and its paths tell different stories.
    #[error("the accounts listed do not agree with where the range's paths end")]
    Inconsistent,
}

/// The hash the path of a proof ends with.
fn end_hash(end: &ProofEnd) -> Hash256 {
    match end {
        ProofEnd::Empty => EMPTY,
        ProofEnd::Leaf { address, account } => leaf_hash(address, account),
    }
}

/// Whether `a` and `b` share their first `bits` bits.
fn same_prefix(a: &Address, b: &Address, bits: usize) -> bool {
    (0..bits).all(|i| bit(a, i) == bit(b, i))
}

impl AccountProof {
    /// The account at `address` in the state of `root` (None: there is none), if this
    /// proves it.
    pub fn verify(&self, root: &Hash256, address: &Address) -> Result<Option<Account>, ProofError> {
        let depth = self.siblings.len();
        // Two addresses that differ only in the last bit part at depth 256.
        if depth > 256 {
            return Err(ProofError::TooDeep);
        }
        if let ProofEnd::Leaf { address: other, .. } = &self.end {
            if !same_prefix(other, address, depth) {
                return Err(ProofError::OffPath);
            }
        }
        let mut hash = end_hash(&self.end);
        for (i, sibling) in self.siblings.iter().enumerate().rev() {
            hash = if bit(address, i) {
                node_hash(sibling, &hash)
            } else {
                node_hash(&hash, sibling)
            };
        }
        if hash != *root {
            return Err(ProofError::WrongRoot {
                expected: *root,
                found: hash,
            });
        }
        Ok(match &self.end {
            ProofEnd::Leaf {
                address: found,
                account,
            } if found == address => Some(*account),
            _ => None,
        })
    }
}

impl RangeProof {
    /// Checks that `accounts` (sorted by address) are every account of the state of
    /// `root` from `first` to `last`, both included.
    pub fn verify(
        &self,
        root: &Hash256,
        first: &Address,
        last: &Address,
        accounts: &[(Address, Account)],
    ) -> Result<(), ProofError> {
        let in_range = accounts.iter().all(|(a, _)| first <= a && a <= last);
        let sorted = accounts.windows(2).all(|w| w[0].0 < w[1].0);
        if first > last || !in_range || !sorted {
            return Err(ProofError::BadRange);
        }
        if self.first.siblings.len() > 256 || self.last.siblings.len() > 256 {
            return Err(ProofError::TooDeep);
        }
        let leaves: Vec<(Address, Hash256)> = accounts
            .iter()
            .map(|(a, acc)| (*a, leaf_hash(a, acc)))
            .collect();
        let rebuild = Rebuild {
            first,
            last,
            lo: &self.first,
            hi: &self.last,
        };
        let found = rebuild.node(0, &Address([0; 32]), &leaves)?;
        if found != *root {
            return Err(ProofError::WrongRoot {
                expected: *root,
                found,
            });
        }
        Ok(())
    }
}

/// Rebuilding a root from a range's accounts and the paths of its two ends.
struct Rebuild<'a> {
    first: &'a Address,
    last: &'a Address,
    lo: &'a AccountProof,
    hi: &'a AccountProof,
}

impl Rebuild<'_> {
    /// The hash of the subtree at `depth` whose path is `prefix` (bits below zero), which
    /// holds `leaves` of the range.
    fn node(
        &self,
        depth: usize,
        prefix: &Address,
        leaves: &[(Address, Hash256)],
    ) -> Result<Hash256, ProofError> {
        let on_lo = same_prefix(prefix, self.first, depth);
        let on_hi = same_prefix(prefix, self.last, depth);
        if !on_lo && !on_hi {
            // Off both paths: wholly inside the range (both paths parted around it),
            // so the listed accounts are all of it.
            return Ok(root_of_leaves(leaves, depth));
        }
        // A path that ends here says what the whole subtree is. An account of the range
        // is hashed as listed, so the list is what the root commits to.
        for (on, proof) in [(on_lo, self.lo), (on_hi, self.hi)] {
            if on && proof.siblings.len() == depth {
                return match &proof.end {
                    ProofEnd::Empty if leaves.is_empty() => Ok(EMPTY),
                    ProofEnd::Leaf { address, .. } if same_prefix(address, prefix, depth) => {
                        let listed = self.first <= address && address <= self.last;
                        match leaves {
                            [(found, hash)] if listed && found == address => Ok(*hash),
                            [] if !listed => Ok(end_hash(&proof.end)),
                            _ => Err(ProofError::Inconsistent),
                        }
                    }
                    _ => Err(ProofError::Inconsistent),
                };
            }
        }
        if depth >= 256 {
            return Err(ProofError::TooDeep);
        }
        // A node on a path that goes on below it: two children.
        let mut right_prefix = *prefix;
        right_prefix.0[depth / 8] |= 0x80 >> (depth % 8);
        let split = leaves.partition_point(|(a, _)| !bit(a, depth));
        let (left_leaves, right_leaves) = leaves.split_at(split);
        let child = |prefix: &Address, leaves: &[(Address, Hash256)], right: bool| {
            // A child beside a path, outside the range: the path's proof gives its hash.
            let outside_lo = on_lo && !right && bit(self.first, depth);
            let outside_hi = on_hi && right && !bit(self.last, depth);
            if outside_lo || outside_hi {
                let proof = if outside_lo { self.lo } else { self.hi };
                if !leaves.is_empty() {
                    return Err(ProofError::Inconsistent);
                }
                return Ok(proof.siblings[depth]);
            }
            self.node(depth + 1, prefix, leaves)
        };
        Ok(node_hash(
            &child(prefix, left_leaves, false)?,
            &child(&right_prefix, right_leaves, true)?,
        ))
    }
}

/// The proof of `address` in `state`.
pub fn prove(state: &impl PageSource, address: &Address) -> Result<AccountProof, SourceError> {
    let layout = state.layout();
    let mut siblings = Vec::new();
    let Some(mut page) = state.page(&PageKey::ROOT)? else {
        return Ok(AccountProof {
            siblings,
            end: ProofEnd::Empty,
        });
    };
    let mut depth = 0;
    loop {
        // Down through the page, one bit at a time.
        let mut n = 1;
        for i in 0..layout.bits() {
            let right = bit(address, depth + i);
            let (child, sibling) = if right {
                (2 * n + 1, 2 * n)
            } else {
                (2 * n, 2 * n + 1)
            };
            let here = page.node(n);
            // The page's own top: a one-account page (only the root page may be one)
            // ends the path before its first bit.
            if i == 0 && depth == 0 {
                if let Summary::One { slot, .. } = here {
                    return leaf_end(siblings, page.slot(slot as usize));
                }
                if here == Summary::Empty {
                    return Ok(AccountProof {
                        siblings,
                        end: ProofEnd::Empty,
                    });
                }
            }
            siblings.push(page.node(sibling).hash());
            match page.node(child) {
                Summary::Empty => {
                    return Ok(AccountProof {
                        siblings,
                        end: ProofEnd::Empty,
                    })
                }
                Summary::One { slot, .. } => return leaf_end(siblings, page.slot(slot as usize)),
                Summary::Many(_) => n = child,
            }
        }
        // At a slot holding a page of two or more: on into it.
        let key = PageKey::on_path(address, depth + layout.bits());
        page = state.page(&key)?.ok_or_else(|| {
            SourceError(format!("state page at depth {} is missing", key.depth()))
        })?;
        depth += layout.bits();
    }
}

fn leaf_end(siblings: Vec<Hash256>, slot: &Slot) -> Result<AccountProof, SourceError> {
    let Slot::Leaf(leaf) = slot else {
        return Err(SourceError(
            "a page's one account is not in a leaf slot".into(),
        ));
    };
    Ok(AccountProof {
        siblings,
        end: ProofEnd::Leaf {
            address: leaf.address,
            account: leaf.account,
        },
    })
}

/// The proof that the state's accounts from `first` to `last` are those listed beside it.
pub fn prove_range(
    state: &impl PageSource,
    first: &Address,
    last: &Address,
) -> Result<RangeProof, SourceError> {
    Ok(RangeProof {
        first: prove(state, first)?,
        last: prove(state, last)?,
    })
}
