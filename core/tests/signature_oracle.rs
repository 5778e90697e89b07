//! Our consensus signature check against a well-kept one: `ed25519-consensus` (ZIP 215).
//!
//! The rule (docs/protocol.md, "Signatures"): a transaction's signature holds when the
//! ZIP-215 verdict holds **and** its key A and its R are canonical encodings of points not
//! of small order. Those are our only extra refusals; anywhere else a disagreement with
//! the oracle is a bug in our code. The mempool's strict check (`verify_signature`) may
//! refuse more (signatures that hold only cofactored), never less.
//!
//! Cases: ZIP 215's edge cases (every small-order and non-canonical encoding as A and as R,
//! S = 0, S ≥ ℓ), keys with a torsion component, random valid signatures and random
//! corruptions of them; then all of them mixed into batches of every size up to 300 and of
//! a full block's, through a fresh key cache, a warm one, and one too small to hold a key.

use apiary_core::spec::ChainId;
use apiary_core::tx::{signature_verdicts, verify_signatures, KeyCache, SIGNATURE_BATCH};
use apiary_core::{Address, Amount, Nonce, SignedTransaction, Transaction, TxId};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// A deterministic stream of bytes (SHA-512 of a counter), so every run tests the same cases.
struct Stream(u64);

impl Stream {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(64) {
            self.0 += 1;
            let digest = Sha512::digest(self.0.to_le_bytes());
            chunk.copy_from_slice(&digest[..chunk.len()]);
        }
        out
    }

    fn below(&mut self, n: usize) -> usize {
        (u64::from_le_bytes(self.bytes()) % n as u64) as usize
    }
}

/// What ZIP 215 says: A and R any encodings of points (canonical or not), S < ℓ, and
/// [8](S·B − R − k·A) = 0 with k = SHA-512(R ‖ A ‖ M) over the bytes as given.
fn oracle(stx: &SignedTransaction) -> bool {
    let Ok(key) = ed25519_consensus::VerificationKey::try_from(stx.tx.from.0) else {
        return false;
    };
    key.verify(
        &ed25519_consensus::Signature::from(stx.signature),
        &stx.tx.signing_bytes(),
    )
    .is_ok()
}

/// A canonical encoding of a point not of small order: what we ask of A and of R.
fn acceptable_point(bytes: [u8; 32]) -> bool {
    CompressedEdwardsY(bytes)
        .decompress()
        .is_some_and(|p| p.compress().0 == bytes && !p.is_small_order())
}

/// The verdict our rule must give: the oracle's, with exactly our documented extra refusals.
fn expected(stx: &SignedTransaction) -> bool {
    let r: [u8; 32] = stx.signature[..32].try_into().unwrap();
    oracle(stx) && acceptable_point(stx.tx.from.0) && acceptable_point(r)
}

fn ours(stx: &SignedTransaction, cache: &KeyCache) -> bool {
    verify_signatures(std::slice::from_ref(stx), &[stx.txid()], cache).is_ok()
}

fn chain() -> ChainId {
    ChainId::new("apiary-oracle").unwrap()
}

fn unsigned(from: [u8; 32], nonce: u64) -> Transaction {
    Transaction {
        chain_id: chain(),
        from: Address(from),
        to: Address([7; 32]),
        amount: Amount::from_base_units(1_000 + nonce),
        fee: Amount::from_base_units(10),
        nonce: Nonce(nonce),
    }
}

/// Signs as Ed25519 does, but under any encoding `a_bytes` of the key `a`·B (+ whatever
/// torsion it carries): k hashes the bytes as given, as the verifier does.
fn sign_raw(
    a: Scalar,
    a_bytes: [u8; 32],
    tx: Transaction,
    stream: &mut Stream,
) -> SignedTransaction {
    let r = Scalar::from_bytes_mod_order_wide(&stream.bytes());
    let big_r = (r * ED25519_BASEPOINT_POINT).compress().0;
    let mut hasher = Sha512::new();
    hasher.update(big_r);
    hasher.update(a_bytes);
    hasher.update(tx.signing_bytes());
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    let s = r + k * a;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&big_r);
    signature[32..].copy_from_slice(s.as_bytes());
    SignedTransaction { tx, signature }
}

/// y coordinates (little-endian) of the points of small order: 1, −1, 0 and ±y₈.
const SMALL_ORDER_Y: [&str; 5] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
];

/// ZIP 215's troublesome encodings: every small-order point (with either sign bit, so the
/// "negative zero" x encodings too), and every non-canonical y (y = p + v for v ≤ 18, with
/// either sign bit) — some of which are small order, some of large order, some no point.
fn edge_encodings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for y in SMALL_ORDER_Y {
        let y: [u8; 32] = hex::decode(y).unwrap().try_into().unwrap();
        out.push(y);
        let mut negative = y;
        negative[31] |= 0x80;
        out.push(negative);
    }
    for v in 0..=18u8 {
        let mut y = [0xffu8; 32];
        y[0] = 0xed + v;
        y[31] = 0x7f;
        out.push(y);
        y[31] = 0xff;
        out.push(y);
    }
    for bytes in &out[..10] {
        let point = CompressedEdwardsY(*bytes).decompress();
        assert!(
            point.is_some_and(|p| p.is_small_order()),
            "{} is a point of small order",
            hex::encode(bytes)
        );
    }
    out
}

fn ell_plus(v: u8) -> [u8; 32] {
    // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian, plus v.
    let mut ell: [u8; 32] =
        hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
            .unwrap()
            .try_into()
            .unwrap();
    ell[0] += v;
    ell
}

/// Every case with its verdict, checked singly: the oracle's verdict with our extra refusals.
fn cases() -> Vec<(SignedTransaction, bool)> {
    let mut stream = Stream(0);
    let mut cases = Vec::new();
    let edges = edge_encodings();
    let valid_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let valid_a = valid_key.verifying_key().to_bytes();
    let some_r = (Scalar::from(5u64) * ED25519_BASEPOINT_POINT).compress().0;

    // ZIP 215's grid: A and R over the edge encodings (and one ordinary point), S = 0.
    // With A and R of small order, [8](0·B − R − k·A) = 0 whatever the message: the oracle
    // accepts exactly the pairs that decode; we refuse every one of them.
    let mut points = edges.clone();
    points.push(valid_a);
    points.push(some_r);
    for (i, a) in points.iter().enumerate() {
        for r in &points {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(r);
            cases.push(SignedTransaction {
                tx: unsigned(*a, i as u64),
                signature,
            });
        }
    }
    // S ≥ ℓ: refused by both — S + ℓ even where S itself verifies, and ℓ, ℓ + 1, 2^256 − 1.
    let mut plus_ell = unsigned(valid_a, 1_000).sign(&valid_key);
    let mut carry = 0u16;
    for (j, byte) in plus_ell.signature[32..].iter_mut().enumerate() {
        let sum = u16::from(*byte) + u16::from(ell_plus(0)[j]) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + ℓ < 2^254 fits");
    cases.push(plus_ell);
    for (n, s) in [ell_plus(0), ell_plus(1), [0xff; 32]]
        .into_iter()
        .enumerate()
    {
        let mut stx = unsigned(valid_a, 1_001 + n as u64).sign(&valid_key);
        stx.signature[32..].copy_from_slice(&s);
        cases.push(stx);
    }
    // Keys with a torsion component (a·B + T): canonical and of large order, so we take
    // them; a signature holds cofactored (the oracle agrees) though mostly not without the
    // cofactor — what the mempool's strict check refuses.
    for (i, t) in edges[..10].iter().enumerate() {
        let torsion = CompressedEdwardsY(*t).decompress().unwrap();
        let a = Scalar::from_bytes_mod_order_wide(&stream.bytes());
        let point: EdwardsPoint = a * ED25519_BASEPOINT_POINT + torsion;
        let a_bytes = point.compress().0;
        for n in 0..4 {
            cases.push(sign_raw(
                a,
                a_bytes,
                unsigned(a_bytes, 3_000 + 10 * i as u64 + n),
                &mut stream,
            ));
        }
    }
    // Random valid signatures, and random corruptions of them: a flipped bit anywhere in the
    // signature, in the key, or in the signed fields.
    for n in 0..300u64 {
        let key = ed25519_dalek::SigningKey::from_bytes(&stream.bytes());
        let stx = unsigned(key.verifying_key().to_bytes(), n).sign(&key);
        cases.push(stx.clone());
        let mut bad = stx;
        match n % 3 {
            0 => bad.signature[stream.below(64)] ^= 1 << stream.below(8),
            1 => bad.tx.from.0[stream.below(32)] ^= 1 << stream.below(8),
            _ => bad.tx.amount = Amount::from_base_units(bad.tx.amount.base_units() ^ 1),
        }
        cases.push(bad);
    }
    cases
        .into_iter()
        .map(|stx| {
            let verdict = expected(&stx);
            (stx, verdict)
        })
        .collect()
}

#[test]
fn each_signature_gets_the_oracles_verdict_with_our_documented_refusals() {
    let cases = cases();
    let cache = KeyCache::default();
    let (mut accepted, mut extra_refusals, mut strict_refusals) = (0, 0, 0);
    for (stx, verdict) in &cases {
        let fresh = ours(stx, &KeyCache::default());
        assert_eq!(
            fresh,
            *verdict,
            "key {} signature {}: the oracle says {}, ours {fresh}",
            hex::encode(stx.tx.from.0),
            hex::encode(stx.signature),
            oracle(stx)
        );
        assert_eq!(ours(stx, &cache), *verdict, "through a warm cache");
        assert_eq!(
            ours(stx, &KeyCache::new(1)),
            *verdict,
            "through a tiny cache"
        );
        // The mempool's strict check is stricter, never looser.
        if stx.verify_signature().is_ok() {
            assert!(*verdict, "strict accepts only what consensus accepts");
        } else if *verdict {
            strict_refusals += 1;
        }
        accepted += usize::from(*verdict);
        extra_refusals += usize::from(oracle(stx) && !*verdict);
    }
    // The grid must exercise both sides: refusals the oracle would accept, acceptances, and
    // signatures only the cofactored rule takes.
    assert!(accepted >= 300, "{accepted} accepted");
    assert!(extra_refusals >= 100, "{extra_refusals} extra refusals");
    assert!(
        strict_refusals >= 10,
        "{strict_refusals} strict-only refusals"
    );
}

/// Whatever the batch — size, position of bad signatures, what the cache already holds —
/// the verdict is the conjunction of the single verdicts and names the first bad one, and
/// the verdicts signature by signature (gossiped transactions) are the single ones.
#[test]
fn batches_of_every_size_agree_with_the_single_verdicts() {
    let cases = cases();
    let (good, bad): (Vec<_>, Vec<_>) = cases.iter().partition(|(_, verdict)| *verdict);
    let mut stream = Stream(1 << 40);
    let warm = KeyCache::default();
    let mut sizes: Vec<usize> = (1..=300).collect();
    sizes.extend([
        SIGNATURE_BATCH * 2 - 1,
        SIGNATURE_BATCH * 2 + 1,
        1_000,
        4_096,
        20_000, // the devnet's max_block_txs
    ]);
    for (round, &size) in sizes.iter().enumerate() {
        // A third of the batches are all good; the others hide one to three bad signatures.
        let bad_count = if round % 3 == 0 { 0 } else { 1 + round % 3 };
        let mut batch: Vec<SignedTransaction> = (0..size)
            .map(|_| good[stream.below(good.len())].0.clone())
            .collect();
        let mut bad_at = Vec::new();
        for _ in 0..bad_count.min(size) {
            let at = stream.below(size);
            batch[at] = bad[stream.below(bad.len())].0.clone();
            bad_at.push(at);
        }
        let first_bad = bad_at.iter().min().copied();
        let txids: Vec<TxId> = batch.iter().map(SignedTransaction::txid).collect();
        // Signatures the node saw verified before are skipped; only good ones are remembered.
        for (i, txid) in txids.iter().enumerate() {
            if !bad_at.contains(&i) && stream.below(4) == 0 {
                warm.remember_verified(*txid);
            }
        }
        for (cache, name) in [
            (&KeyCache::default(), "fresh"),
            (&warm, "warm"),
            (&KeyCache::new(1), "tiny"),
        ] {
            // The mempool's path: a verdict for every signature, each the single one.
            let each = signature_verdicts(&batch, &txids, cache);
            for (i, verdict) in each.iter().enumerate() {
                assert_eq!(
                    verdict.is_ok(),
                    !bad_at.contains(&i),
                    "size {size}, {name} cache: signature {i} of the batch"
                );
            }
            let verdict = verify_signatures(&batch, &txids, cache);
            match first_bad {
                None => assert!(verdict.is_ok(), "size {size}, {name} cache: {verdict:?}"),
                Some(first) => assert_eq!(
                    verdict.map_err(|(i, _)| i),
                    Err(first),
                    "size {size}, {name} cache: the first bad signature is named"
                ),
            }
        }
    }
}
