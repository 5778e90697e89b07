//! The differential oracle for signatures, fuzzed: a batch of up to 8 signed transactions
//! whose keys, Rs and Ss come from the input (or from real signatures the input then
//! corrupts); our verdict on each equals ZIP 215's (ed25519-consensus) with our documented
//! extra refusals, and the batch's verdict is their conjunction, naming the first bad one.
#![no_main]

use apiary_core::spec::ChainId;
use apiary_core::tx::{signature_verdicts, verify_signatures, KeyCache};
use apiary_core::{Address, Amount, Nonce, SignedTransaction, SigningKey, Transaction, TxId};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Encodings worth reaching often (y little-endian; the sign bit is chosen apart): the
/// small-order ys 1, −1, 0, ±y₈, and the non-canonical p, p + 1, 2^255 − 1.
const SPECIAL: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

#[derive(Arbitrary, Debug)]
enum Point {
    Bytes([u8; 32]),
    Special(u8, bool),
}

impl Point {
    fn bytes(&self) -> [u8; 32] {
        match self {
            Point::Bytes(bytes) => *bytes,
            Point::Special(i, negative) => {
                let mut out: [u8; 32] = hex::decode(SPECIAL[*i as usize % SPECIAL.len()])
                    .unwrap()
                    .try_into()
                    .unwrap();
                if *negative {
                    out[31] |= 0x80;
                }
                out
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Item {
    /// Any key, R and S.
    Raw {
        a: Point,
        r: Point,
        s: [u8; 32],
        nonce: u64,
    },
    /// A real signature by key `seed`, then one bit flipped (or none).
    Signed {
        seed: [u8; 32],
        nonce: u64,
        flip: Option<u16>,
    },
}

fn build(item: &Item) -> SignedTransaction {
    let tx = |from: [u8; 32], nonce: u64| Transaction {
        chain_id: ChainId::new("apiary-fuzz").unwrap(),
        from: Address(from),
        to: Address([7; 32]),
        amount: Amount::from_base_units(1),
        fee: Amount::from_base_units(1),
        nonce: Nonce(nonce),
    };
    match item {
        Item::Raw { a, r, s, nonce } => {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&r.bytes());
            signature[32..].copy_from_slice(s);
            SignedTransaction {
                tx: tx(a.bytes(), *nonce),
                signature,
            }
        }
        Item::Signed { seed, nonce, flip } => {
            let key = SigningKey::from_bytes(seed);
            let mut stx = tx(key.verifying_key().to_bytes(), *nonce).sign(&key);
            if let Some(bit) = flip {
                let bit = *bit as usize % (96 * 8);
                if bit < 512 {
                    stx.signature[bit / 8] ^= 1 << (bit % 8);
                } else {
                    let bit = bit - 512;
                    stx.tx.from.0[bit / 8] ^= 1 << (bit % 8);
                }
            }
            stx
        }
    }
}

fuzz_target!(|items: Vec<Item>| {
    let batch: Vec<SignedTransaction> = items.iter().take(8).map(build).collect();
    if batch.is_empty() {
        return;
    }
    let verdicts: Vec<bool> = batch.iter().map(apiary_fuzz::expected_verdict).collect();
    for (stx, verdict) in batch.iter().zip(&verdicts) {
        let ours =
            verify_signatures(std::slice::from_ref(stx), &[stx.txid()], &KeyCache::new(4)).is_ok();
        assert_eq!(ours, *verdict, "{stx:?}");
        if stx.verify_signature().is_ok() {
            assert!(ours, "RFC 8032's strict check is stricter than consensus");
        }
    }
    let txids: Vec<TxId> = batch.iter().map(SignedTransaction::txid).collect();
    // The mempool's path: a verdict per signature, each the single one.
    let each: Vec<bool> = signature_verdicts(&batch, &txids, &KeyCache::default())
        .iter()
        .map(Result::is_ok)
        .collect();
    assert_eq!(each, verdicts, "verdicts signature by signature");
    let first_bad = verdicts.iter().position(|v| !v);
    let found = verify_signatures(&batch, &txids, &KeyCache::default()).map_err(|(i, _)| i);
    match first_bad {
        None => assert_eq!(found, Ok(())),
        Some(first) => assert_eq!(found, Err(first)),
    }
});
