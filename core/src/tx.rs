//! Transactions: a transfer between accounts, signed by the sender's ed25519 key over the
//! borsh bytes of everything else. The txid hashes the signed bytes.

use crate::address::Address;
use crate::amount::Amount;
use crate::hash::{sha256d, TxId};
use crate::spec::ChainId;
use crate::state::Nonce;
use crate::validate::TxError;
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    /// Binds the signature to one chain, so it cannot be replayed on another.
    pub chain_id: ChainId,
    pub from: Address,
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
    /// Must equal the sender's nonce; orders a sender's transactions and stops replays.
    pub nonce: Nonce,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: [u8; 64],
}

/// No transaction encodes to more than this (the chain id is bounded).
pub const MAX_TX_BYTES: usize = 256;

/// Signatures are batch-verified in consecutive chunks of this many transactions. Batch
/// results depend on the chunk's contents, so chunking is part of consensus: keep it fixed.
pub const SIGNATURE_BATCH: usize = 256;

impl Transaction {
    pub fn signing_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }

    pub fn sign(self, key: &SigningKey) -> SignedTransaction {
        let signature = key.sign(&self.signing_bytes()).to_bytes();
        SignedTransaction {
            tx: self,
            signature,
        }
    }
}

impl SignedTransaction {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }

    pub fn txid(&self) -> TxId {
        TxId(sha256d(&self.encode()))
    }

    /// Strict verification of this one signature (RFC 8032 with small-order keys and
    /// non-canonical encodings refused).
    pub fn verify_signature(&self) -> Result<(), TxError> {
        let key = sender_key(&self.tx.from)?;
        key.verify_strict(
            &self.tx.signing_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| TxError::BadSignature)
    }
}

fn sender_key(from: &Address) -> Result<VerifyingKey, TxError> {
    let key = VerifyingKey::from_bytes(&from.0).map_err(|_| TxError::SenderNotAKey)?;
    if key.is_weak() {
        return Err(TxError::SenderNotAKey);
    }
    Ok(key)
}

/// Decoded public keys of recent senders. Decoding a key (a square root on the curve)
/// costs about a quarter of its share of a batch verification, and active accounts send
/// again and again. Bounded: it starts over when full.
pub struct KeyCache {
    keys: Mutex<HashMap<Address, VerifyingKey>>,
    capacity: usize,
}

impl KeyCache {
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            keys: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Address, VerifyingKey>> {
        // The map holds only decoded keys: a panic elsewhere cannot leave it wrong.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decoded keys of `senders`, or the index of the first that is not a valid key.
    fn decode(
        &self,
        senders: impl Iterator<Item = Address> + Clone,
    ) -> Result<Vec<VerifyingKey>, (usize, TxError)> {
        let cached: Vec<Option<VerifyingKey>> = {
            let keys = self.keys();
            senders.clone().map(|a| keys.get(&a).copied()).collect()
        };
        let mut fresh = Vec::new();
        let mut decoded = Vec::with_capacity(cached.len());
        for (i, (address, hit)) in senders.zip(cached).enumerate() {
            let key = match hit {
                Some(key) => key,
                None => {
                    let key = sender_key(&address).map_err(|e| (i, e))?;
                    fresh.push((address, key));
                    key
                }
            };
            decoded.push(key);
        }
        let mut keys = self.keys();
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

/// Verifies every signature, batching on all cores. On failure, names the first bad
/// transaction by its index (found by strict one-by-one verification of its chunk).
pub fn verify_signatures(
    txs: &[SignedTransaction],
    keys: &KeyCache,
) -> Result<(), (usize, TxError)> {
    let failures: Vec<(usize, TxError)> = txs
        .par_chunks(SIGNATURE_BATCH)
        .enumerate()
        .filter_map(|(chunk_index, chunk)| {
            verify_chunk(chunk, keys)
                .err()
                .map(|(i, e)| (chunk_index * SIGNATURE_BATCH + i, e))
        })
        .collect();
    match failures.into_iter().min_by_key(|(i, _)| *i) {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

fn verify_chunk(chunk: &[SignedTransaction], keys: &KeyCache) -> Result<(), (usize, TxError)> {
    let decoded = keys.decode(chunk.iter().map(|stx| stx.tx.from))?;
    let messages: Vec<Vec<u8>> = chunk.iter().map(|stx| stx.tx.signing_bytes()).collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = chunk
        .iter()
        .map(|stx| Signature::from_bytes(&stx.signature))
        .collect();
    if ed25519_dalek::verify_batch(&message_refs, &signatures, &decoded).is_ok() {
        return Ok(());
    }
    for (i, stx) in chunk.iter().enumerate() {
        stx.verify_signature().map_err(|e| (i, e))?;
    }
    // The batch failed yet each signature verifies alone: cannot happen for honest
    // signatures; treat the chunk's first as bad rather than accept what the batch refused.
    Err((0, TxError::BadSignature))
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
    fn signed_transfer_verifies_singly_and_in_batch() {
        let txs: Vec<_> = (0..300)
            .map(|i| transfer(&key(1), Address([2; 32]), 5, i))
            .collect();
        for tx in &txs[..3] {
            tx.verify_signature().unwrap();
        }
        verify_signatures(&txs, &KeyCache::default()).unwrap();
        verify_signatures(&txs, &KeyCache::new(1)).unwrap();
        assert!(txs[0].encode().len() <= MAX_TX_BYTES);
    }

    #[test]
    fn batch_names_the_bad_signature() {
        let mut txs: Vec<_> = (0..300)
            .map(|i| transfer(&key(1), Address([2; 32]), 5, i))
            .collect();
        txs[270].tx.amount = Amount::from_base_units(6);
        assert_eq!(
            verify_signatures(&txs, &KeyCache::default()),
            Err((270, TxError::BadSignature))
        );
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
                    prop_assert!(verify_signatures(std::slice::from_ref(&changed), &KeyCache::default()).is_err());
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
