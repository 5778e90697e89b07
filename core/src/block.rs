//! Blocks: the header that proof of work seals, the body of transactions, the Merkle root
//! that binds them, and the midstate hasher the miner searches nonces with.

use crate::address::Address;
use crate::encoding::read_bounded_vec;
use crate::hash::{merkle_root, sha256d, BlockHash, Hash256, TxId, SHA256_IV};
use crate::pow::CompactTarget;
use crate::tx::SignedTransaction;
use crate::units::TimestampMs;
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

crate::unit_newtype! {
    shown as is:
    /// Height of a block above genesis (which is 0).
    pub struct Height(pub u64);
}

impl Height {
    /// The height after this one.
    pub fn next(self) -> Height {
        Height(self.0 + 1)
    }
}

impl fmt::Debug for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Height({})", self.0)
    }
}

/// The header version these rules know.
pub const BLOCK_VERSION: u32 = 1;

/// The header. Field order is chosen so that the nonce sits in the last 32 bytes: a miner
/// hashes the first 128 bytes once and then needs two SHA-256 compressions per nonce.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    /// `BLOCK_VERSION`.
    pub version: u32,
    /// Its parent's plus one.
    pub height: Height,
    /// Its parent's hash.
    pub prev_hash: BlockHash,
    /// Merkle root of the txids (for genesis: the hash of the chain spec).
    pub tx_root: Hash256,
    /// Commitment to every account after this block (see `state::commit`).
    pub state_root: Hash256,
    /// Receives the block reward and the fees.
    pub miner: Address,
    /// When it was mined, by its miner's clock (after the median time past, at most the
    /// allowed drift ahead of a validating node's clock).
    pub timestamp_ms: TimestampMs,
    /// Its target, compact (the retarget decides it).
    pub bits: CompactTarget,
    /// What the miner varies until the hash meets the target.
    pub nonce: u64,
}

/// Encoded size of a header; fixed, as every field is.
pub const HEADER_BYTES: usize = 160;

impl BlockHeader {
    /// Double SHA-256 of the header's bytes.
    pub fn hash(&self) -> BlockHash {
        BlockHash(sha256d(&self.encode()))
    }

    /// Its borsh bytes: fixed size, the nonce last.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let bytes = borsh::to_vec(self).expect("writing to a Vec cannot fail");
        bytes
            .try_into()
            .expect("a header always encodes to HEADER_BYTES")
    }
}

/// A block: its header, and the transactions the header commits to.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize)]
pub struct Block {
    /// Its header.
    pub header: BlockHeader,
    /// Its transactions, in the order they apply.
    pub txs: Vec<SignedTransaction>,
}

/// No block may claim more transactions than this, whatever its chain spec says: bounds
/// what a length prefix can make a decoder do before the spec's own limit is checked.
pub const MAX_TXS_ANY_BLOCK: usize = 1 << 20;

impl BorshDeserialize for Block {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let header = BlockHeader::deserialize_reader(reader)?;
        let txs = read_bounded_vec(reader, MAX_TXS_ANY_BLOCK)?;
        Ok(Block { header, txs })
    }
}

impl Block {
    /// Double SHA-256 of the header's bytes.
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// Its borsh bytes: what is sent and stored.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }

    /// Its transactions' ids, in order (hashed on all cores).
    pub fn txids(&self) -> Vec<TxId> {
        use rayon::prelude::*;
        self.txs.par_iter().map(SignedTransaction::txid).collect()
    }

    /// The fees its transactions pay its miner (None past u64: no valid block).
    pub fn fees(&self) -> Option<crate::Amount> {
        self.txs
            .iter()
            .try_fold(crate::Amount::ZERO, |sum, stx| sum.checked_add(stx.tx.fee))
    }
}

/// A block as relayed between peers that already hold most of its transactions (from
/// their mempools): the header and the txids in block order, 32 bytes a transaction
/// instead of ~150. It starts with the header's bytes, like a full block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize)]
pub struct CompactBlock {
    /// The block's header.
    pub header: BlockHeader,
    /// Its transactions' ids, in block order.
    pub txids: Vec<TxId>,
}

impl BorshDeserialize for CompactBlock {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let header = BlockHeader::deserialize_reader(reader)?;
        let txids = read_bounded_vec(reader, MAX_TXS_ANY_BLOCK)?;
        Ok(CompactBlock { header, txids })
    }
}

impl CompactBlock {
    /// The compact form of `block`, whose txids are `txids`.
    pub fn new(block: &Block, txids: &[TxId]) -> CompactBlock {
        debug_assert_eq!(block.txs.len(), txids.len());
        CompactBlock {
            header: block.header.clone(),
            txids: txids.to_vec(),
        }
    }

    /// The block's hash (its header's).
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// Most bytes the compact form of a block of at most `max_txs` transactions takes.
    pub fn max_encoded_bytes(max_txs: usize) -> usize {
        HEADER_BYTES + 4 + 32 * max_txs
    }

    /// Its borsh bytes, as relayed.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }
}

/// The Merkle root of a block's txids (`docs/protocol.md`), which its header carries.
pub fn tx_merkle_root(txids: &[TxId]) -> Hash256 {
    let leaves: Vec<Hash256> = txids.iter().map(|t| t.0).collect();
    merkle_root(&leaves)
}

/// Hashes one header under many nonces, reusing the SHA-256 state of its first 128 bytes.
#[derive(Clone)]
pub struct HeaderHasher {
    midstate: [u32; 8],
    /// Bytes 128..160 of the header followed by SHA-256 padding for 160 bytes.
    tail: [u8; 64],
    /// The second hash's only block: the first digest, then padding for 32 bytes.
    second: [u8; 64],
}

const NONCE_OFFSET_IN_TAIL: usize = HEADER_BYTES - 8 - 128;

impl HeaderHasher {
    /// Hashes the first 128 bytes of `header` once.
    pub fn new(header: &BlockHeader) -> HeaderHasher {
        let bytes = header.encode();
        let mut midstate = SHA256_IV;
        let first: [u8; 64] = bytes[0..64].try_into().unwrap();
        let second: [u8; 64] = bytes[64..128].try_into().unwrap();
        sha2::block_api::compress256(&mut midstate, &[first, second]);
        let mut tail = [0u8; 64];
        tail[..32].copy_from_slice(&bytes[128..160]);
        tail[32] = 0x80;
        tail[56..].copy_from_slice(&((HEADER_BYTES as u64) * 8).to_be_bytes());
        let mut second = [0u8; 64];
        second[32] = 0x80;
        second[56..].copy_from_slice(&256u64.to_be_bytes());
        HeaderHasher {
            midstate,
            tail,
            second,
        }
    }

    /// The block hash the header would have with `nonce`.
    pub fn hash_with_nonce(&mut self, nonce: u64) -> Hash256 {
        let words = self.hash_words(nonce);
        let mut digest = [0u8; 32];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Hash256(digest)
    }

    /// The hash with `nonce` as eight big-endian words: comparing these arrays compares
    /// the hashes as numbers, without building bytes (the miner's inner loop).
    #[inline]
    pub fn hash_words(&mut self, nonce: u64) -> [u32; 8] {
        self.tail[NONCE_OFFSET_IN_TAIL..NONCE_OFFSET_IN_TAIL + 8]
            .copy_from_slice(&nonce.to_le_bytes());
        let mut state = self.midstate;
        sha2::block_api::compress256(&mut state, std::slice::from_ref(&self.tail));
        for (chunk, word) in self.second[..32].chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        let mut out = SHA256_IV;
        sha2::block_api::compress256(&mut out, std::slice::from_ref(&self.second));
        out
    }
}

/// A target as eight big-endian words, for comparison with `HeaderHasher::hash_words`.
pub fn target_words(target: &crate::pow::Target) -> [u32; 8] {
    let bytes = target.to_be_bytes();
    std::array::from_fn(|i| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample_header(nonce: u64, timestamp_ms: u64) -> BlockHeader {
        BlockHeader {
            version: BLOCK_VERSION,
            height: Height(42),
            prev_hash: BlockHash(sha256d(b"parent")),
            tx_root: sha256d(b"txs"),
            state_root: sha256d(b"state"),
            miner: Address([9; 32]),
            timestamp_ms: TimestampMs(timestamp_ms),
            bits: CompactTarget(0x1f00ffff),
            nonce,
        }
    }

    #[test]
    fn header_encodes_to_its_fixed_size() {
        assert_eq!(
            borsh::to_vec(&sample_header(1, 2)).unwrap().len(),
            HEADER_BYTES
        );
    }

    #[test]
    fn compact_block_round_trips_and_refuses_leftovers() {
        let compact = CompactBlock {
            header: sample_header(7, 8),
            txids: vec![TxId(sha256d(b"a")), TxId(sha256d(b"b"))],
        };
        let bytes = compact.encode();
        assert_eq!(bytes.len(), CompactBlock::max_encoded_bytes(2));
        assert_eq!(&bytes[..HEADER_BYTES], &compact.header.encode()[..]);
        let max = bytes.len();
        assert_eq!(
            crate::decode_exact::<CompactBlock>("compact block", &bytes, max),
            Ok(compact)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(crate::decode_exact::<CompactBlock>("compact block", &longer, max + 1).is_err());
    }

    proptest! {
        #[test]
        fn midstate_hasher_agrees_with_plain_hashing(nonce in any::<u64>(), ts in any::<u64>()) {
            let header = sample_header(nonce, ts);
            let mut hasher = HeaderHasher::new(&sample_header(0, ts));
            prop_assert_eq!(hasher.hash_with_nonce(nonce), header.hash().0);
        }
    }
}
