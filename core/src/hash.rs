//! Hashes: double SHA-256 for block hashes and txids, tagged single SHA-256 for Merkle
//! trees, and the newtypes that keep a block hash from being taken for a txid.

use borsh::{BorshDeserialize, BorshSerialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A 32-byte digest. Shown as lowercase hex in byte order.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    /// All zeros (the parent of genesis, an empty subtree).
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex characters for a hash, got {0:?}")]
pub struct ParseHashError(pub String);

impl FromStr for Hash256 {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseHashError(s.to_string()))?;
        Ok(Hash256(out))
    }
}

/// SHA-256 applied twice: block hashes and txids.
pub fn sha256d(data: &[u8]) -> Hash256 {
    Hash256(Sha256::digest(Sha256::digest(data)).into())
}

/// Single SHA-256 of a one-byte domain tag followed by `parts`: Merkle leaves and nodes,
/// so that a leaf can never be read as an inner node.
pub fn tagged_hash(tag: u8, parts: &[&[u8]]) -> Hash256 {
    let mut hasher = Sha256::new();
    hasher.update([tag]);
    for part in parts {
        hasher.update(part);
    }
    Hash256(hasher.finalize().into())
}

/// SHA-256 of a message of at most 119 bytes, by raw compressions of its padded blocks:
/// the same digest as `Sha256::digest`, without the streaming API's buffering (the state
/// tree hashes millions of 49- and 65-byte messages). Pinned to `sha2`'s digest by a test.
pub fn sha256_short(message: &[u8]) -> Hash256 {
    debug_assert!(message.len() <= 119);
    let mut blocks = [[0u8; 64]; 2];
    let flat = blocks.as_flattened_mut();
    flat[..message.len()].copy_from_slice(message);
    flat[message.len()] = 0x80;
    // One block when the length still fits after the 0x80 byte, else two.
    let count = if message.len() + 9 <= 64 { 1 } else { 2 };
    let end = 64 * count;
    flat[end - 8..end].copy_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, &blocks[..count]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash256(out)
}

/// Domain tags of every tagged hash in the protocol.
pub mod tag {
    /// A node of a block's transaction Merkle tree.
    pub const MERKLE_NODE: u8 = 0x01;
    /// An account's leaf in the state tree.
    pub const ACCOUNT_LEAF: u8 = 0x02;
    /// An inner node of the state tree.
    pub const STATE_NODE: u8 = 0x03;
}

/// SHA-256's initial state.
pub(crate) const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Root of a binary Merkle tree whose leaves are already hashes. An odd node is carried
/// up unchanged (never paired with itself), so two different leaf lists never share a
/// root (the mutation that duplicating the last node allows in Bitcoin). Empty: zero.
pub fn merkle_root(leaves: &[Hash256]) -> Hash256 {
    match leaves.len() {
        0 => return Hash256::ZERO,
        1 => return leaves[0],
        _ => {}
    }
    let mut level: Vec<Hash256> = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            next.push(match pair {
                [left, right] => tagged_hash(tag::MERKLE_NODE, &[&left.0, &right.0]),
                [odd] => *odd,
                _ => unreachable!("chunks(2) yields one or two"),
            });
        }
        level = next;
    }
    level[0]
}

/// The path of leaf `index` to the root of `merkle_root(leaves)`: its sibling at each level
/// where it has one, from the bottom (an odd node carried up has none). None when `index`
/// is not a leaf.
pub fn merkle_path(leaves: &[Hash256], index: usize) -> Option<Vec<Hash256>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level: Vec<Hash256> = leaves.to_vec();
    let mut at = index;
    while level.len() > 1 {
        if let Some(sibling) = level.get(at ^ 1) {
            path.push(*sibling);
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => tagged_hash(tag::MERKLE_NODE, &[&left.0, &right.0]),
                [odd] => *odd,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
        at /= 2;
    }
    Some(path)
}

/// The root that `leaf`, at `index` of `count` leaves, reaches by `path` (`merkle_path`'s
/// form); None when the path has the wrong length for that place. A client checks a
/// transaction's place in a block with it, knowing only the header's `tx_root`.
pub fn merkle_root_from_path(
    leaf: Hash256,
    index: u64,
    count: u64,
    path: &[Hash256],
) -> Option<Hash256> {
    if index >= count {
        return None;
    }
    let (mut hash, mut at, mut width) = (leaf, index, count);
    let mut siblings = path.iter();
    while width > 1 {
        let sibling_at = at ^ 1;
        if sibling_at < width {
            let sibling = siblings.next()?;
            hash = if at % 2 == 0 {
                tagged_hash(tag::MERKLE_NODE, &[&hash.0, &sibling.0])
            } else {
                tagged_hash(tag::MERKLE_NODE, &[&sibling.0, &hash.0])
            };
        }
        at /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none().then_some(hash)
}

/// Defines a hash newtype that reads and prints as hex and serialises to JSON as hex.
macro_rules! hash_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, BorshSerialize, BorshDeserialize)]
        pub struct $name(pub Hash256);

        impl $name {
            /// All zeros.
            pub const ZERO: $name = $name(Hash256::ZERO);
            /// The 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
        impl FromStr for $name {
            type Err = ParseHashError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Hash256::from_str(s).map($name)
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_newtype!(
    /// Double SHA-256 of a block header's borsh bytes.
    BlockHash
);
hash_newtype!(
    /// Double SHA-256 of a signed transaction's borsh bytes.
    TxId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256d_matches_known_vector() {
        // sha256d("hello") as used in Bitcoin's own test vectors.
        assert_eq!(
            sha256d(b"hello").to_string(),
            "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50"
        );
    }

    proptest::proptest! {
        #[test]
        fn every_leaf_proves_its_place_and_no_other(count in 1usize..70, pick in 0usize..70, other in 0u64..80) {
            let leaves: Vec<Hash256> = (0..count).map(|i| sha256d(&i.to_le_bytes())).collect();
            let index = pick % count;
            let root = merkle_root(&leaves);
            let path = merkle_path(&leaves, index).unwrap();
            let count = count as u64;
            proptest::prop_assert_eq!(merkle_root_from_path(leaves[index], index as u64, count, &path), Some(root));
            if other != index as u64 {
                proptest::prop_assert_ne!(merkle_root_from_path(leaves[index], other, count, &path), Some(root));
            }
            proptest::prop_assert_ne!(merkle_root_from_path(sha256d(b"not a leaf"), index as u64, count, &path), Some(root));
        }
    }

    #[test]
    fn merkle_root_distinguishes_odd_duplication() {
        let a = sha256d(b"a");
        let b = sha256d(b"b");
        let c = sha256d(b"c");
        assert_ne!(merkle_root(&[a, b, c]), merkle_root(&[a, b, c, c]));
        assert_eq!(merkle_root(&[a]), a);
        assert_eq!(merkle_root(&[]), Hash256::ZERO);
    }

    #[test]
    fn short_messages_hash_as_sha2_does() {
        for len in 0..=119 {
            let message: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let expected: [u8; 32] = Sha256::digest(&message).into();
            assert_eq!(sha256_short(&message), Hash256(expected), "{len} bytes");
        }
    }

    #[test]
    fn hash_parses_back_from_its_text() {
        let h = BlockHash(sha256d(b"x"));
        assert_eq!(h.to_string().parse::<BlockHash>().unwrap(), h);
        assert!("zz".parse::<BlockHash>().is_err());
    }
}
