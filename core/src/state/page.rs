//! How the tree is stored: in pages, each the `Layout::bits` levels of the binary tree
//! below one node. A page at depth d (a multiple of the page width) holds one slot per
//! value of the address bits d..d+width: empty, one account (its address, balance and
//! nonce: the accounts live in the tree, nowhere else), or a child page (its hash) when
//! two or more accounts share those bits. A page reads as one unit, so a path from the
//! root to an account is a handful of reads, not 24, and finding an account reads the
//! pages its change will rewrite. The page's own hash is the commitment's hash of its
//! subtree; pages change nothing about it.

use super::commit::{bit, leaf_hash, node_hash, EMPTY};
use super::Account;
use crate::address::Address;
use crate::amount::Amount;
use crate::hash::Hash256;

/// Most slots a page has (the node's 4-bit pages).
pub const MAX_SLOTS: usize = 16;

/// How many address bits one page covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    bits: u8,
}

impl Layout {
    /// What the node stores: 16 slots a page.
    pub const NODE: Layout = Layout { bits: 4 };

    /// A layout of `bits` (1 to 4) bits a page (narrower ones only to compare designs).
    pub fn new(bits: u8) -> Option<Layout> {
        (1..=4).contains(&bits).then_some(Layout { bits })
    }

    /// Address bits a page covers.
    pub fn bits(self) -> usize {
        self.bits as usize
    }

    /// Slots a page has.
    pub fn slots(self) -> usize {
        1 << self.bits
    }

    /// The slot `address` falls in on the page at `depth`.
    pub fn slot_of(self, address: &Address, depth: usize) -> usize {
        (0..self.bits()).fold(0, |slot, i| {
            (slot << 1) | usize::from(bit(address, depth + i))
        })
    }
}

/// Where a page sits: its depth in bits and the address bits above it (the rest zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageKey {
    depth: u8,
    prefix: [u8; 32],
}

impl std::hash::Hash for PageKey {
    /// The depth and the first 16 prefix bytes: keys that differ below that are pages of
    /// addresses that share 128 bits, which nobody can make.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let head = u128::from_le_bytes(self.prefix[..16].try_into().expect("16 bytes"));
        state.write_u128(head ^ u128::from(self.depth));
    }
}

impl PageKey {
    /// The root page's.
    pub const ROOT: PageKey = PageKey {
        depth: 0,
        prefix: [0; 32],
    };

    /// The page at `depth` on `address`'s path.
    pub fn on_path(address: &Address, depth: usize) -> PageKey {
        debug_assert!(depth < 256);
        let mut prefix = [0u8; 32];
        let whole = depth / 8;
        prefix[..whole].copy_from_slice(&address.0[..whole]);
        if !depth.is_multiple_of(8) {
            prefix[whole] = address.0[whole] & (0xff << (8 - depth % 8));
        }
        PageKey {
            depth: depth as u8,
            prefix,
        }
    }

    /// Its depth in address bits.
    pub fn depth(&self) -> usize {
        self.depth as usize
    }

    /// The address bits above the page (zero below its depth).
    pub fn prefix(&self) -> Address {
        Address(self.prefix)
    }

    /// The page under slot `slot` of this one.
    pub fn child(&self, layout: Layout, slot: usize) -> PageKey {
        let mut prefix = Address(self.prefix);
        for i in 0..layout.bits() {
            if slot & (1 << (layout.bits() - 1 - i)) != 0 {
                let at = self.depth() + i;
                prefix.0[at / 8] |= 0x80 >> (at % 8);
            }
        }
        PageKey {
            depth: (self.depth() + layout.bits()) as u8,
            prefix: prefix.0,
        }
    }

    /// Its bytes as a store key: the depth, then the prefix's bytes that hold its bits.
    /// Keys of one depth sort by prefix.
    pub fn encode(&self) -> Vec<u8> {
        let used = self.depth().div_ceil(8);
        let mut key = Vec::with_capacity(1 + used);
        key.push(self.depth);
        key.extend_from_slice(&self.prefix[..used]);
        key
    }

    /// A key from its record key (`encode`), or None if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<PageKey> {
        let (&depth, rest) = bytes.split_first()?;
        if rest.len() != (depth as usize).div_ceil(8) {
            return None;
        }
        let mut prefix = [0u8; 32];
        prefix[..rest.len()].copy_from_slice(rest);
        let key = PageKey { depth, prefix };
        // Bits below the depth must be zero: one page, one key.
        (PageKey::on_path(&Address(prefix), depth as usize) == key).then_some(key)
    }
}

/// One account in the tree, with its leaf hash (kept: it is needed whenever a page
/// above it is rehashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Whose.
    pub address: Address,
    /// What it holds.
    pub account: Account,
    /// Its leaf hash (`docs/protocol.md`).
    pub hash: Hash256,
}

impl Leaf {
    /// The leaf of `account` at `address`, hashed.
    pub fn new(address: Address, account: Account) -> Leaf {
        Leaf {
            address,
            account,
            hash: leaf_hash(&address, &account),
        }
    }
}

/// One slot of a page: the subtree of the address bits below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// No account.
    Empty,
    /// Exactly one account.
    Leaf(Leaf),
    /// Two or more accounts: a page of their own.
    Child {
        /// The child page's hash.
        hash: Hash256,
    },
}

/// What a binary subtree holds, for hashing it with the one-account shortcut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    /// No account.
    Empty,
    /// Exactly one account.
    One {
        /// The slot it is in (so its address can be found).
        slot: u16,
        /// Its leaf hash.
        hash: Hash256,
    },
    /// Two or more: the subtree's node hash.
    Many(Hash256),
}

impl Summary {
    /// The subtree's hash (zero when empty; a lone account's leaf hash).
    pub fn hash(&self) -> Hash256 {
        match self {
            Summary::Empty => EMPTY,
            Summary::One { hash, .. } | Summary::Many(hash) => *hash,
        }
    }

    fn of_slot(index: usize, slot: &Slot) -> Summary {
        match slot {
            Slot::Empty => Summary::Empty,
            Slot::Leaf(leaf) => Summary::One {
                slot: index as u16,
                hash: leaf.hash,
            },
            Slot::Child { hash } => Summary::Many(*hash),
        }
    }

    /// The summary of a node whose halves are `left` and `right`; `hashed` counts the
    /// node hashes it took (for benchmarks: the tree's cost is these).
    fn join(left: Summary, right: Summary, hashed: &mut usize) -> Summary {
        match (left, right) {
            (Summary::Empty, Summary::Empty) => Summary::Empty,
            // One account alone in a subtree is its leaf, however high the subtree.
            (Summary::Empty, one @ Summary::One { .. })
            | (one @ Summary::One { .. }, Summary::Empty) => one,
            // Two or more: a node at every level, an empty half hashing to zero.
            (left, right) => {
                *hashed += 1;
                Summary::Many(node_hash(&left.hash(), &right.hash()))
            }
        }
    }
}

/// A page: its slots, and the summary of every binary node within it (heap order: 1 is
/// the page's own root, `slots + i` is slot i; only the inner ones are kept, a slot's is
/// worked out from it), kept as slots change so that a change costs a hash per level of
/// the page, not one per node. Fixed arrays: a page is one allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    count: u8,
    slots: [Slot; MAX_SLOTS],
    inner: [Summary; MAX_SLOTS],
}

/// A stored page that does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a state page that does not decode: {0}")]
pub struct PageDecodeError(pub String);

impl Page {
    /// A page with every slot empty.
    pub fn empty(layout: Layout) -> Page {
        Page {
            count: layout.slots() as u8,
            slots: [Slot::Empty; MAX_SLOTS],
            inner: [Summary::Empty; MAX_SLOTS],
        }
    }

    /// A page of these slots (as many as the layout has), its summaries worked out.
    pub fn from_slots(slots: Vec<Slot>) -> Page {
        Page::from_slots_counted(slots, &mut 0)
    }

    /// `from_slots`, counting the node hashes it took into `hashed`.
    pub fn from_slots_counted(slots: Vec<Slot>, hashed: &mut usize) -> Page {
        let count = slots.len();
        debug_assert!(count.is_power_of_two() && (2..=MAX_SLOTS).contains(&count));
        let mut page = Page {
            count: count as u8,
            slots: [Slot::Empty; MAX_SLOTS],
            inner: [Summary::Empty; MAX_SLOTS],
        };
        for (i, slot) in slots.into_iter().enumerate() {
            page.slots[i] = slot;
        }
        for n in (1..count).rev() {
            page.inner[n] = Summary::join(page.node(2 * n), page.node(2 * n + 1), hashed);
        }
        page
    }

    /// Its slots, as many as its layout has.
    pub fn slots(&self) -> &[Slot] {
        &self.slots[..self.count as usize]
    }

    /// Slot `index`.
    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    /// Changes one slot, rehashing its path within the page; returns the node hashes
    /// that took.
    pub fn set_slot(&mut self, index: usize, slot: Slot) -> usize {
        self.set_slots(std::iter::once((index, slot)))
    }

    /// Changes several slots, then rehashes each node above them once; returns the node
    /// hashes that took.
    pub fn set_slots(&mut self, changes: impl IntoIterator<Item = (usize, Slot)>) -> usize {
        let count = self.count as usize;
        let mut dirty = 0u32;
        for (index, slot) in changes {
            self.slots[index] = slot;
            dirty |= 1 << ((count + index) / 2);
        }
        let mut hashed = 0;
        for n in (1..count).rev() {
            if dirty & (1 << n) != 0 {
                self.inner[n] = Summary::join(self.node(2 * n), self.node(2 * n + 1), &mut hashed);
                dirty |= 1 << (n / 2);
            }
        }
        hashed
    }

    /// What the whole page holds.
    pub fn summary(&self) -> Summary {
        self.node(1)
    }

    /// The page's subtree hash.
    pub fn hash(&self) -> Hash256 {
        self.node(1).hash()
    }

    /// The summary of heap node `n` of the page (for proofs).
    pub fn node(&self, n: usize) -> Summary {
        let count = self.count as usize;
        if n >= count {
            Summary::of_slot(n - count, &self.slots[n - count])
        } else {
            self.inner[n]
        }
    }

    /// Bytes as stored: a bitmap of the slots in use, then for each in slot order 1 and
    /// the address, balance and nonce (u64 LE), or 2 and the child's hash. Leaf hashes
    /// are worked out again when read.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.slots().len().div_ceil(8)];
        for (i, slot) in self.slots().iter().enumerate() {
            if *slot != Slot::Empty {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        for slot in self.slots() {
            match slot {
                Slot::Empty => {}
                Slot::Leaf(leaf) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&leaf.address.0);
                    bytes.extend_from_slice(&leaf.account.balance.base_units().to_le_bytes());
                    bytes.extend_from_slice(&leaf.account.nonce.0.to_le_bytes());
                }
                Slot::Child { hash } => {
                    bytes.push(2);
                    bytes.extend_from_slice(&hash.0);
                }
            }
        }
        bytes
    }

    /// A page from its stored bytes (`encode`), its summaries worked out again.
    pub fn decode(layout: Layout, bytes: &[u8]) -> Result<Page, PageDecodeError> {
        let error = |what: &str| PageDecodeError(what.to_string());
        let map_len = layout.slots().div_ceil(8);
        if bytes.len() < map_len {
            return Err(error("shorter than its bitmap"));
        }
        let (map, mut rest) = bytes.split_at(map_len);
        let mut take = |n: usize| -> Result<&[u8], PageDecodeError> {
            if rest.len() < n {
                return Err(error("a slot runs past the end"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let mut slots = Vec::with_capacity(layout.slots());
        for i in 0..layout.slots() {
            if map[i / 8] & (0x80 >> (i % 8)) == 0 {
                slots.push(Slot::Empty);
                continue;
            }
            let hash = |bytes: &[u8]| Hash256(bytes.try_into().expect("32 bytes taken"));
            let u64_le =
                |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes taken"));
            slots.push(match take(1)?[0] {
                1 => {
                    let address = Address(take(32)?.try_into().expect("32 bytes taken"));
                    let account = Account {
                        balance: Amount::from_base_units(u64_le(take(8)?)),
                        nonce: super::Nonce(u64_le(take(8)?)),
                    };
                    if account.is_empty() {
                        return Err(error("an empty account"));
                    }
                    Slot::Leaf(Leaf::new(address, account))
                }
                2 => Slot::Child {
                    hash: hash(take(32)?),
                },
                other => return Err(error(&format!("slot kind {other}"))),
            });
        }
        if !rest.is_empty() {
            return Err(error("bytes left over"));
        }
        Ok(Page::from_slots(slots))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_refuse_stray_bits() {
        let address = Address([0xab; 32]);
        for depth in [0, 4, 12, 100, 252] {
            let key = PageKey::on_path(&address, depth);
            assert_eq!(PageKey::decode(&key.encode()), Some(key));
        }
        let mut stray = PageKey::on_path(&address, 4).encode();
        stray[1] |= 0x01;
        assert_eq!(PageKey::decode(&stray), None);
        assert_eq!(
            PageKey::ROOT.child(Layout::NODE, 0xa),
            PageKey::on_path(&Address([0xa0; 32]), 4)
        );
    }

    #[test]
    fn pages_round_trip_through_their_bytes() {
        let mut page = Page::empty(Layout::NODE);
        let account = Account {
            balance: Amount::from_base_units(7),
            nonce: crate::state::Nonce(1),
        };
        page.set_slot(3, Slot::Leaf(Leaf::new(Address([3; 32]), account)));
        page.set_slot(
            9,
            Slot::Child {
                hash: Hash256([9; 32]),
            },
        );
        assert_eq!(Page::decode(Layout::NODE, &page.encode()).unwrap(), page);
        assert!(Page::decode(Layout::NODE, &page.encode()[..10]).is_err());
    }
}
