//! Mempool policy against a real chain state.

mod common;

use apiary_core::{Amount, SignedTransaction, Transaction};
use apiary_node::mempool::{Candidate, Mempool, MempoolConfig, MempoolError, VerifiedTx};
use common::*;
use tempfile::TempDir;

/// Verifies and adds, as `Node::submit_tx` does.
fn add(
    pool: &mut Mempool,
    stx: SignedTransaction,
    state: &impl apiary_core::state::AccountSource,
    spec: &apiary_core::ChainSpec,
) -> Result<apiary_core::TxId, MempoolError> {
    pool.add(
        VerifiedTx::check(stx, &apiary_core::tx::KeyCache::default())?,
        state,
        spec,
    )
}

fn with_fee(mut stx: SignedTransaction, from: u8, fee: u64) -> SignedTransaction {
    stx.tx.fee = Amount::from_base_units(fee);
    Transaction::sign(stx.tx, &key(from))
}

#[test]
fn pool_orders_by_fee_keeps_nonce_order_and_refuses_what_cannot_be_mined() {
    let spec = test_spec(100);
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &spec);
    let guard = node.lock();
    let state = guard.chain.state();
    let mut pool = Mempool::new(MempoolConfig::default());

    let low = with_fee(transfer(&spec, 1, addr(10), 1, 0), 1, 2_000);
    let then = with_fee(transfer(&spec, 1, addr(10), 1, 1), 1, 90_000);
    let high = with_fee(transfer(&spec, 2, addr(10), 1, 0), 2, 50_000);
    add(&mut pool, low.clone(), state, &spec).unwrap();
    add(&mut pool, then.clone(), state, &spec).unwrap();
    add(&mut pool, high.clone(), state, &spec).unwrap();
    // Key 2's tx pays more than key 1's first; key 1's second must follow its first.
    let order: Vec<_> = pool
        .select(state, 10, 1 << 20)
        .into_iter()
        .map(|candidate| {
            // What the pool tells the template is what the transaction is.
            assert_eq!(candidate, Candidate::new(candidate.tx.clone()));
            candidate.txid
        })
        .collect();
    assert_eq!(order, vec![high.txid(), low.txid(), then.txid()]);

    assert!(matches!(
        add(&mut pool, low.clone(), state, &spec),
        Err(MempoolError::Duplicate(_))
    ));
    // A nonce a little ahead waits for the gap; one too far ahead is refused.
    let ahead = transfer(&spec, 1, addr(10), 1, 5);
    add(&mut pool, ahead.clone(), state, &spec).unwrap();
    assert!(
        !pool
            .select(state, 10, 1 << 20)
            .iter()
            .any(|candidate| candidate.tx == ahead),
        "it waits behind the gap"
    );
    assert!(matches!(
        add(&mut pool, transfer(&spec, 1, addr(10), 1, 17), state, &spec),
        Err(MempoolError::NonceTooFarAhead {
            expected: apiary_core::Nonce(0),
            found: apiary_core::Nonce(17),
            limit: apiary_core::Nonce(16)
        })
    ));
    // Replacement needs a higher fee.
    let same_fee = with_fee(transfer(&spec, 1, addr(11), 1, 0), 1, 2_000);
    assert!(matches!(
        add(&mut pool, same_fee, state, &spec),
        Err(MempoolError::ReplacementFeeTooLow { .. })
    ));
    let bump = with_fee(transfer(&spec, 1, addr(11), 1, 0), 1, 3_000);
    add(&mut pool, bump.clone(), state, &spec).unwrap();
    assert!(!pool.contains(&low.txid()) && pool.contains(&bump.txid()));
    // Pending spends count against the balance (1,000 coins each key).
    assert!(matches!(
        add(
            &mut pool,
            transfer(&spec, 2, addr(10), 999, 1),
            state,
            &spec
        ),
        Err(MempoolError::Overdraft { .. })
    ));
    let mut bad_sig = transfer(&spec, 3, addr(10), 1, 0);
    bad_sig.signature[0] ^= 1;
    assert!(matches!(
        add(&mut pool, bad_sig, state, &spec),
        Err(MempoolError::Invalid(_))
    ));
    let cheap = with_fee(transfer(&spec, 3, addr(10), 1, 0), 3, 1);
    assert!(matches!(
        add(&mut pool, cheap, state, &spec),
        Err(MempoolError::FeeTooLow { .. })
    ));
    assert_eq!(pool.len(), 4);
}

#[test]
fn a_full_pool_evicts_the_cheapest_tail_and_old_transactions_expire() {
    let spec = test_spec(100);
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &spec);
    let guard = node.lock();
    let state = guard.chain.state();
    let size = transfer(&spec, 1, addr(10), 1, 0).encode().len();
    let mut pool = Mempool::new(MempoolConfig {
        max_bytes: 3 * size,
        ..MempoolConfig::default()
    });

    let cheap_first = with_fee(transfer(&spec, 1, addr(10), 1, 0), 1, 2_000);
    let cheap_tail = with_fee(transfer(&spec, 1, addr(10), 1, 1), 1, 3_000);
    let middle = with_fee(transfer(&spec, 2, addr(10), 1, 0), 2, 5_000);
    for stx in [&cheap_first, &cheap_tail, &middle] {
        add(&mut pool, stx.clone(), state, &spec).unwrap();
    }
    // Full: a tx paying less than anything evictable is refused...
    assert!(matches!(
        add(
            &mut pool,
            with_fee(transfer(&spec, 3, addr(10), 1, 0), 3, 1_500),
            state,
            &spec
        ),
        Err(MempoolError::Full(_))
    ));
    // ...one paying more evicts the cheapest sender tail (not key 1's first, which would
    // leave its second stranded).
    let rich = with_fee(transfer(&spec, 3, addr(10), 1, 0), 3, 9_000);
    add(&mut pool, rich.clone(), state, &spec).unwrap();
    assert!(pool.contains(&cheap_first.txid()) && !pool.contains(&cheap_tail.txid()));
    assert!(pool.contains(&rich.txid()) && pool.contains(&middle.txid()));
    assert!(pool.bytes() <= 3 * size);

    assert_eq!(pool.expire(std::time::Instant::now()), 0);
    let later = std::time::Instant::now()
        + MempoolConfig::default().expiry
        + std::time::Duration::from_secs(1);
    assert_eq!(pool.expire(later), 3);
    assert!(pool.is_empty());
}

/// The fee estimate is the minimum while everything pending fits in a block, and beats
/// the best fee left out once it does not.
#[test]
fn fee_estimate_follows_the_competition_for_the_next_block() {
    let spec = test_spec(100);
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &spec);
    let guard = node.lock();
    let state = guard.chain.state();
    let size = transfer(&spec, 1, addr(10), 1, 0).encode().len();
    let mut pool = Mempool::new(MempoolConfig::default());
    let minimum = pool.min_fee();
    assert_eq!(pool.fee_for_next_block(2, 10 * size), minimum);
    for (key, fee) in [(1u8, 5_000u64), (2, 7_000), (3, 6_000)] {
        add(
            &mut pool,
            with_fee(transfer(&spec, key, addr(10), 1, 0), key, fee),
            state,
            &spec,
        )
        .unwrap();
    }
    // Room for all three: the minimum does.
    assert_eq!(pool.fee_for_next_block(3, 10 * size), minimum);
    // Room for two (by count, then by bytes): beat the 5,000 left out.
    assert_eq!(pool.fee_for_next_block(2, 10 * size).base_units(), 5_001);
    assert_eq!(pool.fee_for_next_block(10, 2 * size).base_units(), 5_001);
    assert_eq!(pool.fee_for_next_block(1, 10 * size).base_units(), 6_001);
}
