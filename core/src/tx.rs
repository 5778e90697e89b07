//! Transactions: a transfer between accounts, signed by the sender's ed25519 key over the
//! borsh bytes of everything else. The txid hashes the signed bytes.

use crate::address::Address;
use crate::amount::Amount;
use crate::chain_id::ChainId;
use crate::hash::{sha256d, TxId};
use crate::state::Nonce;
use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rayon::prelude::*;
use sha2::{Digest, Sha512};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Why a transaction is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Signed for another chain. Boxed: an error is returned on hot paths, and two inline
    /// names would double its size.
    #[error("transaction is for chain \"{found}\", this chain is \"{expected}\"")]
    WrongChain {
        /// This chain.
        expected: Box<ChainId>,
        /// The transaction's.
        found: Box<ChainId>,
    },
    /// The sender's address is not an ed25519 public key.
    #[error("sender is not a valid ed25519 public key")]
    SenderNotAKey,
    /// The signature does not verify (strictly: `docs/protocol.md`).
    #[error("signature does not verify")]
    BadSignature,
    /// Not the sender's next nonce.
    #[error("nonce {found} is not the sender's next nonce {expected}")]
    BadNonce {
        /// The sender's account nonce.
        expected: Nonce,
        /// The transaction's.
        found: Nonce,
    },
    /// The sender cannot pay amount and fee.
    #[error("sender has {balance} coins, the transaction spends {needed}")]
    Overdraft {
        /// The sender's balance.
        balance: Amount,
        /// Amount plus fee.
        needed: Amount,
    },
    /// Amount plus fee, or the receiver's new balance, is more than an amount holds.
    #[error("amount plus fee, or the receiver's balance, overflows")]
    AmountOverflow,
}

/// A payment: `amount` from `from` to `to`, `fee` to the miner.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    /// Binds the signature to one chain, so it cannot be replayed on another.
    pub chain_id: ChainId,
    /// The sender: its ed25519 public key, which signs.
    pub from: Address,
    /// The receiver.
    pub to: Address,
    /// What the receiver gets.
    pub amount: Amount,
    /// What the block's miner gets.
    pub fee: Amount,
    /// Must equal the sender's nonce; orders a sender's transactions and stops replays.
    pub nonce: Nonce,
}

/// A transaction and the sender's signature of its borsh bytes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    /// What is signed.
    pub tx: Transaction,
    /// ed25519 over `tx.signing_bytes()`.
    pub signature: [u8; 64],
}

/// No transaction encodes to more than this (the chain id is bounded).
pub const MAX_TX_BYTES: usize = 256;

/// Signatures are verified in batches of this many. The rule is cofactored, so the size
/// affects only speed, never a verdict.
pub const SIGNATURE_BATCH: usize = 256;

impl Transaction {
    /// What the sender signs: the transaction's borsh bytes.
    pub fn signing_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }

    /// Signed by `key` (the sender's).
    pub fn sign(self, key: &SigningKey) -> SignedTransaction {
        let signature = key.sign(&self.signing_bytes()).to_bytes();
        SignedTransaction {
            tx: self,
            signature,
        }
    }
}

impl SignedTransaction {
    /// Its borsh bytes: what is sent, stored and hashed.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }

    /// Its id: double SHA-256 of its bytes.
    pub fn txid(&self) -> TxId {
        TxId(sha256d(&self.encode()))
    }

    /// RFC 8032 verification with small-order keys and non-canonical encodings refused
    /// (`verify_strict`): stricter than the consensus rule (every signature it accepts
    /// also satisfies the cofactored equation). Not a rule of the node's (the mempool
    /// applies the consensus rule, in batches: docs/protocol.md); for tools and tests
    /// that compare with RFC 8032.
    pub fn verify_signature(&self) -> Result<(), TxError> {
        let key = sender_key(&self.tx.from)?;
        key.verify_strict(
            &self.tx.signing_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| TxError::BadSignature)
    }
}

/// The sender's key for strict verification, refused as `sender_point` refuses it
/// (decoding it once: `VerifyingKey::from_bytes` decompresses the point itself).
fn sender_key(from: &Address) -> Result<VerifyingKey, TxError> {
    if !is_canonical_y(&from.0) {
        return Err(TxError::SenderNotAKey);
    }
    let key = VerifyingKey::from_bytes(&from.0).map_err(|_| TxError::SenderNotAKey)?;
    if key.is_weak() {
        return Err(TxError::SenderNotAKey);
    }
    Ok(key)
}

/// Whether a 32-byte point encoding is canonical: its y coordinate below p = 2^255 - 19.
/// Non-canonical encodings would give one point (one key, one R) several byte forms.
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed)
}

/// The y coordinates of the eight points of small order (1, 2, 4 and 8): 1, -1, 0 and ±y₈.
/// With either sign bit these are the only canonical encodings that decode to a point of
/// small order, so comparing bytes spares the three doublings of `is_small_order`.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    hex_literal(b"0100000000000000000000000000000000000000000000000000000000000000"),
    hex_literal(b"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex_literal(b"0000000000000000000000000000000000000000000000000000000000000000"),
    hex_literal(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex_literal(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
];

const fn hex_literal(text: &[u8; 64]) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]);
        i += 1;
    }
    out
}

/// Whether a canonical encoding decodes to a point of small order (`is_small_order`).
fn encodes_small_order(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_y(bytes) || encodes_small_order(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

/// A sender's key as a curve point: canonical, and not of small order.
fn sender_point(from: &Address) -> Result<EdwardsPoint, TxError> {
    decode_point(&from.0).ok_or(TxError::SenderNotAKey)
}

/// Decoded public keys of recent senders, and the txids whose signatures were already
/// verified (strictly, when they entered the mempool). Decoding a key costs about a quarter
/// of its share of a batch verification; a block of transactions the node has already seen
/// needs no signature work at all. Bounded: each part starts over when full.
pub struct KeyCache {
    keys: Mutex<HashMap<Address, EdwardsPoint>>,
    verified: Mutex<HashSet<TxId>>,
    capacity: usize,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold only checked facts: a panic elsewhere cannot leave them wrong.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl KeyCache {
    /// A cache of at most `capacity` keys and as many verified signatures.
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            keys: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashSet::new()),
            capacity,
        }
    }

    /// Records that `txid`'s signature verified.
    pub fn remember_verified(&self, txid: TxId) {
        let mut verified = locked(&self.verified);
        if verified.len() >= self.capacity {
            verified.clear();
        }
        verified.insert(txid);
    }

    fn is_verified(&self, txid: &TxId) -> bool {
        locked(&self.verified).contains(txid)
    }

    /// The decoded keys of `senders`, or the index of the first that is not a valid key.
    fn decode(
        &self,
        senders: impl Iterator<Item = Address> + Clone,
    ) -> Result<Vec<EdwardsPoint>, (usize, TxError)> {
        let cached: Vec<Option<EdwardsPoint>> = {
            let keys = locked(&self.keys);
            senders.clone().map(|a| keys.get(&a).copied()).collect()
        };
        let mut fresh = Vec::new();
        let mut decoded = Vec::with_capacity(cached.len());
        for (i, (address, hit)) in senders.zip(cached).enumerate() {
            let key = match hit {
                Some(key) => key,
                None => {
                    let key = sender_point(&address).map_err(|e| (i, e))?;
                    fresh.push((address, key));
                    key
                }
            };
            decoded.push(key);
        }
        let mut keys = locked(&self.keys);
        if keys.len() + fresh.len() > self.capacity {
            keys.clear();
        }
        keys.extend(fresh);
        Ok(decoded)
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache::new(1 << 18)
    }
}

/// One signature, decoded for the verification equation.
struct Prepared {
    r: EdwardsPoint,
    s: Scalar,
    /// k = SHA-512(R ‖ A ‖ M) mod ℓ
    k: Scalar,
    a: EdwardsPoint,
}

fn prepare(stx: &SignedTransaction, a: EdwardsPoint) -> Result<Prepared, TxError> {
    let r_bytes: [u8; 32] = stx.signature[..32].try_into().expect("64-byte signature");
    let s_bytes: [u8; 32] = stx.signature[32..].try_into().expect("64-byte signature");
    let s = Option::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(TxError::BadSignature)?;
    let r = decode_point(&r_bytes).ok_or(TxError::BadSignature)?;
    let mut hasher = Sha512::new();
    hasher.update(r_bytes);
    hasher.update(stx.tx.from.0);
    hasher.update(stx.tx.signing_bytes());
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    Ok(Prepared { r, s, k, a })
}

/// The consensus check: [8](Σ zᵢRᵢ + Σ zᵢkᵢAᵢ − (Σ zᵢsᵢ)B) = 0 with the zᵢ derived from all
/// the inputs. Cofactored (as in ZIP 215), so a set passes exactly when every signature
/// satisfies [8](sB − R − kA) = 0 on its own (up to a 2⁻¹²⁸ chance), whatever else shares
/// its batch: every node reaches the same verdict however it groups signatures, or skips
/// ones it verified before.
fn cofactored_batch_holds(items: &[Prepared], txids: &[&TxId]) -> bool {
    // The coefficients come from a hash of everything being verified (each txid commits
    // to its whole signed transaction), so no signer can choose them.
    let mut transcript = Sha512::new();
    for txid in txids {
        transcript.update(txid.as_bytes());
    }
    let seed = transcript.finalize();
    let zs: Vec<Scalar> = (0..items.len().div_ceil(4) as u64)
        .flat_map(|block| {
            let mut h = Sha512::new();
            h.update(seed);
            h.update(block.to_le_bytes());
            let digest = h.finalize();
            (0..4).map(move |j| {
                Scalar::from(u128::from_le_bytes(
                    digest[16 * j..16 * j + 16].try_into().expect("16 bytes"),
                ))
            })
        })
        .take(items.len())
        .collect();
    let b_coefficient: Scalar = -items
        .iter()
        .zip(&zs)
        .map(|(item, z)| z * item.s)
        .sum::<Scalar>();
    let scalars = std::iter::once(b_coefficient)
        .chain(zs.iter().copied())
        .chain(items.iter().zip(&zs).map(|(item, z)| z * item.k));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(items.iter().map(|item| item.r))
        .chain(items.iter().map(|item| item.a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// Verifies every signature of `txs` (whose txids are `txids`) by the consensus rule,
/// skipping those `cache` saw verified, in batches on all cores. On failure, names the
/// first bad transaction by its index.
pub fn verify_signatures(
    txs: &[SignedTransaction],
    txids: &[TxId],
    cache: &KeyCache,
) -> Result<(), (usize, TxError)> {
    let pending: Vec<usize> = (0..txs.len())
        .filter(|&i| !cache.is_verified(&txids[i]))
        .collect();
    if pending.is_empty() {
        // A block of transactions we all saw before: no need to wake the thread pool.
        return Ok(());
    }
    let failures: Vec<(usize, TxError)> = pending
        .par_chunks(SIGNATURE_BATCH)
        .filter_map(|chunk| verify_chunk(txs, txids, chunk, cache).err())
        .collect();
    match failures.into_iter().min_by_key(|(i, _)| *i) {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// The verdict on each signature of `txs` by the consensus rule, in batches on all cores:
/// a batch that holds settles all of its signatures at once, one that fails is checked one
/// signature at a time (so a bad signature costs its sender's batch-mates nothing but
/// time). Signatures `cache` saw verified are not checked again (what to remember is the
/// caller's choice: the node remembers the transactions its mempool takes).
pub fn signature_verdicts(
    txs: &[SignedTransaction],
    txids: &[TxId],
    cache: &KeyCache,
) -> Vec<Result<(), TxError>> {
    let pending: Vec<usize> = (0..txs.len())
        .filter(|&i| !cache.is_verified(&txids[i]))
        .collect();
    let mut verdicts: Vec<Result<(), TxError>> = vec![Ok(()); txs.len()];
    let failed: Vec<(usize, TxError)> = pending
        .par_chunks(SIGNATURE_BATCH)
        .flat_map_iter(|chunk| {
            let bad: Vec<(usize, TxError)> = if chunk_holds(txs, txids, chunk, cache) {
                Vec::new()
            } else {
                chunk
                    .iter()
                    .filter_map(|&i| verify_chunk_at(txs, txids, i, cache).err().map(|e| (i, e)))
                    .collect()
            };
            bad
        })
        .collect();
    for (i, error) in failed {
        verdicts[i] = Err(error);
    }
    verdicts
}

fn verify_chunk(
    txs: &[SignedTransaction],
    txids: &[TxId],
    chunk: &[usize],
    cache: &KeyCache,
) -> Result<(), (usize, TxError)> {
    if chunk_holds(txs, txids, chunk, cache) {
        return Ok(());
    }
    // Something in the chunk is bad: one at a time, in order, by the same rule, so the
    // error names the first bad transaction whatever made the batch fail (a bad key
    // after a bad signature, say).
    for &i in chunk {
        verify_chunk_at(txs, txids, i, cache).map_err(|e| (i, e))?;
    }
    // Unreachable: the cofactored batch holds whenever each of its signatures does.
    Err((chunk[0], TxError::BadSignature))
}

/// Whether every signature of `chunk` holds, in one batch equation.
fn chunk_holds(
    txs: &[SignedTransaction],
    txids: &[TxId],
    chunk: &[usize],
    cache: &KeyCache,
) -> bool {
    let Ok(keys) = cache.decode(chunk.iter().map(|&i| txs[i].tx.from)) else {
        return false;
    };
    let Ok(prepared) = chunk
        .iter()
        .zip(keys)
        .map(|(&i, a)| prepare(&txs[i], a))
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    let ids: Vec<&TxId> = chunk.iter().map(|&i| &txids[i]).collect();
    cofactored_batch_holds(&prepared, &ids)
}

fn verify_chunk_at(
    txs: &[SignedTransaction],
    txids: &[TxId],
    i: usize,
    cache: &KeyCache,
) -> Result<(), TxError> {
    let key = cache
        .decode(std::iter::once(txs[i].tx.from))
        .map_err(|(_, e)| e)?;
    let item = prepare(&txs[i], key[0])?;
    if cofactored_batch_holds(std::slice::from_ref(&item), &[&txids[i]]) {
        Ok(())
    } else {
        Err(TxError::BadSignature)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::encoding::decode_exact;
    use proptest::prelude::*;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn transfer(
        from: &SigningKey,
        to: Address,
        amount: u64,
        nonce: u64,
    ) -> SignedTransaction {
        Transaction {
            chain_id: ChainId::new("apiary-test").unwrap(),
            from: Address(from.verifying_key().to_bytes()),
            to,
            amount: Amount::from_base_units(amount),
            fee: Amount::from_base_units(10),
            nonce: Nonce(nonce),
        }
        .sign(from)
    }

    #[test]
    fn the_small_order_encodings_are_exactly_the_eight_torsion_points() {
        let points: Vec<EdwardsPoint> = SMALL_ORDER_Y
            .iter()
            .flat_map(|y| {
                let mut negative = *y;
                negative[31] |= 0x80;
                [*y, negative]
            })
            .map(|bytes| {
                let point = CompressedEdwardsY(bytes).decompress();
                let point = point.unwrap_or_else(|| panic!("{} decodes", hex::encode(bytes)));
                assert!(
                    point.is_small_order(),
                    "{} is of small order",
                    hex::encode(bytes)
                );
                assert!(encodes_small_order(&bytes));
                point
            })
            .collect();
        // Distinct points among them, closed under addition: a subgroup of eight small-order
        // points, which is all there are.
        let mut distinct: Vec<[u8; 32]> = points.iter().map(|p| p.compress().0).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 8);
        for p in &points {
            for q in &points {
                assert!(distinct.binary_search(&(p + q).compress().0).is_ok());
            }
        }
    }

    proptest! {
        #[test]
        fn the_byte_check_agrees_with_is_small_order(bytes in any::<[u8; 32]>()) {
            if let Some(point) = CompressedEdwardsY(bytes).decompress() {
                if is_canonical_y(&bytes) {
                    prop_assert_eq!(encodes_small_order(&bytes), point.is_small_order());
                }
            }
        }
    }

    #[test]
    fn signed_transfer_verifies_singly_and_in_batch() {
        let txs: Vec<_> = (0..300)
            .map(|i| transfer(&key(1), Address([2; 32]), 5, i))
            .collect();
        for tx in &txs[..3] {
            tx.verify_signature().unwrap();
        }
        let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();
        verify_signatures(&txs, &txids, &KeyCache::default()).unwrap();
        verify_signatures(&txs, &txids, &KeyCache::new(1)).unwrap();
        assert!(txs[0].encode().len() <= MAX_TX_BYTES);
    }

    #[test]
    fn batch_names_the_bad_signature() {
        let mut txs: Vec<_> = (0..300)
            .map(|i| transfer(&key(1), Address([2; 32]), 5, i))
            .collect();
        txs[270].tx.amount = Amount::from_base_units(6);
        let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();
        assert_eq!(
            verify_signatures(&txs, &txids, &KeyCache::default()),
            Err((270, TxError::BadSignature))
        );
        // A signature the cache saw verified is not checked again; the others still are.
        let cache = KeyCache::default();
        cache.remember_verified(txids[5]);
        assert_eq!(
            verify_signatures(&txs, &txids, &cache),
            Err((270, TxError::BadSignature))
        );
    }

    /// The consensus rule gives the same verdict whatever the batch: a bad signature is
    /// found alone, in a batch, and among any mix of cached ones.
    #[test]
    fn verdicts_do_not_depend_on_batching() {
        let mut txs: Vec<_> = (0..40)
            .map(|i| transfer(&key(4), Address([2; 32]), 5, i))
            .collect();
        txs[17].signature[40] ^= 1;
        let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();
        for cached in [0usize, 10, 30] {
            let cache = KeyCache::default();
            for txid in &txids[..cached] {
                if *txid != txids[17] {
                    cache.remember_verified(*txid);
                }
            }
            assert_eq!(
                verify_signatures(&txs, &txids, &cache),
                Err((17, TxError::BadSignature))
            );
        }
        assert!(verify_signatures(&txs[17..18], &txids[17..18], &KeyCache::default()).is_err());
        assert!(verify_signatures(&txs[..17], &txids[..17], &KeyCache::default()).is_ok());
    }

    #[test]
    fn non_canonical_and_small_order_keys_are_refused() {
        // y = p (non-canonical encoding of y = 0), and the identity (small order).
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed;
        non_canonical[31] = 0x7f;
        assert!(!is_canonical_y(&non_canonical));
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            sender_point(&Address(identity)).err(),
            Some(TxError::SenderNotAKey)
        );
        assert!(sender_point(&Address(key(1).verifying_key().to_bytes())).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn changing_any_byte_breaks_decoding_or_signature(index in 0usize..200, delta in 1u8..=255) {
            let stx = transfer(&key(3), Address([4; 32]), 1_000, 7);
            let mut bytes = stx.encode();
            let index = index % bytes.len();
            bytes[index] = bytes[index].wrapping_add(delta);
            match decode_exact::<SignedTransaction>("tx", &bytes, MAX_TX_BYTES) {
                Err(_) => {}
                Ok(changed) => {
                    prop_assert!(changed.verify_signature().is_err());
                    prop_assert!(verify_signatures(std::slice::from_ref(&changed), &[changed.txid()], &KeyCache::default()).is_err());
                }
            }
        }

        #[test]
        fn encoding_round_trips(amount in any::<u64>(), nonce in any::<u64>(), seed in any::<u8>()) {
            let stx = transfer(&key(seed), Address([seed; 32]), amount, nonce);
            let decoded: SignedTransaction = decode_exact("tx", &stx.encode(), MAX_TX_BYTES).unwrap();
            prop_assert_eq!(decoded.txid(), stx.txid());
            prop_assert_eq!(decoded, stx);
        }
    }
}
