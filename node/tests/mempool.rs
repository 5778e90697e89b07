//! Mempool policy against a real chain state.

mod common;

use apiary_core::{Amount, SignedTransaction, Transaction};
use apiary_node::mempool::{Candidate, Mempool, MempoolConfig, MempoolError, VerifiedTx};
use apiary_node::miner::{assemble_block, search_nonce};
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
        .select(10, 1 << 20)
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
            .select(10, 1 << 20)
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

/// What `select` must return, worked out from scratch the slow way: every sender's run of
/// consecutive nonces from its account's nonce in the state, merged by fee (equal fees:
/// the lower address first), a transaction too big for what is left ending its sender's
/// run.
fn select_from_scratch(
    pool: &Mempool,
    state: &impl apiary_core::state::AccountSource,
    max_txs: usize,
    max_bytes: usize,
) -> Vec<apiary_core::TxId> {
    use std::cmp::Reverse;
    let mut senders: Vec<apiary_core::Address> =
        pool.entries().map(|(stx, _)| stx.tx.from).collect();
    senders.sort_unstable();
    senders.dedup();
    let runs: Vec<Vec<apiary_core::TxId>> = senders
        .iter()
        .map(|sender| {
            let next = state.account(sender).unwrap().unwrap_or_default().nonce;
            pool.run_from(sender, next).copied().collect()
        })
        .collect();
    let mut next = vec![0; runs.len()];
    let fee = |txid: &apiary_core::TxId| pool.get(txid).unwrap().tx.fee;
    let mut heap: std::collections::BinaryHeap<(Amount, Reverse<usize>)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, run)| Some((fee(run.first()?), Reverse(i))))
        .collect();
    let (mut chosen, mut bytes) = (Vec::new(), 0);
    while let Some((_, Reverse(i))) = heap.pop() {
        if chosen.len() == max_txs {
            break;
        }
        let txid = runs[i][next[i]];
        next[i] += 1;
        let size = pool.get(&txid).unwrap().encode().len();
        if bytes + size > max_bytes {
            continue;
        }
        bytes += size;
        chosen.push(txid);
        if let Some(following) = runs[i].get(next[i]) {
            heap.push((fee(following), Reverse(i)));
        }
    }
    chosen
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// The pool keeps the senders that can go next sorted as transactions come, wait
    /// behind a gap, replace each other and leave with a block (mined here, taking part
    /// of the pool): a template chosen from that index is the one worked out from scratch.
    /// (Eviction leaves through the same `remove` as a block's transactions.)
    #[test]
    fn selection_kept_as_the_pool_changes_is_selection_from_scratch(
        steps in proptest::collection::vec((0u8..8, 1u8..=3, 0u64..5, 1u64..6), 1..40),
    ) {
        let spec = test_spec(100);
        let dir = TempDir::new().unwrap();
        let node = open_node(dir.path(), &spec);
        let size = transfer(&spec, 1, addr(10), 1, 0).encode().len();
        for (kind, key, ahead, fee) in steps {
            if kind == 0 {
                // A block of at most three of the best, as another miner might make.
                let mut block = {
                    let guard = node.lock();
                    let chosen = guard.mempool.select(3, usize::MAX);
                    let context = guard.chain.parent_context(&guard.chain.tip()).unwrap();
                    let state = &**guard.chain.state();
                    assemble_block(state, &spec, &context, addr(9), chosen, 0).unwrap()
                };
                block.header.nonce = search_nonce(&block.header, 0, 1, || false).unwrap();
                node.submit_block(block).unwrap();
            } else {
                // A nonce at or a little past the sender's next: gaps, and replacements
                // when the fee beats the pending one's.
                let next = node.lock().chain.state().account_at(&addr(key)).unwrap().nonce;
                let stx = transfer(&spec, key, addr(10), 1, next.0 + ahead);
                let _ = node.submit_tx(with_fee(stx, key, 1_000 * (fee + 1)));
            }
            let guard = node.lock();
            let state = &**guard.chain.state();
            for (max_txs, max_bytes) in [(usize::MAX, usize::MAX), (4, usize::MAX), (10, 2 * size + size / 2)] {
                let chosen: Vec<_> = guard.mempool.select(max_txs, max_bytes).iter().map(|c| c.txid).collect();
                proptest::prop_assert_eq!(
                    chosen,
                    select_from_scratch(&guard.mempool, state, max_txs, max_bytes)
                );
            }
        }
    }
}

/// A transaction from a peer that the pool would refuse anyway (here: one a block already
/// holds, as a peer replaying mined transactions sends) is refused before its signature is
/// checked: even a broken signature is not looked at. New ones are checked in full.
#[test]
fn gossiped_transactions_the_pool_would_refuse_cost_no_signature_check() {
    use apiary_node::node::Gossiped;
    use apiary_node::SubmitError;
    let spec = test_spec(100);
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &spec);
    let mined = transfer(&spec, 1, addr(10), 1, 0);
    node.submit_tx(mined.clone()).unwrap();
    mine(&node, addr(9), 1);
    let mut forged = mined.clone();
    forged.signature[0] ^= 1;
    let next = transfer(&spec, 1, addr(10), 1, 1);
    let mut broken = transfer(&spec, 2, addr(10), 1, 0);
    broken.signature[0] ^= 1;
    let verdicts = node.take_gossiped_txs(vec![mined, forged, next.clone(), broken]);
    assert!(
        matches!(
            verdicts.as_slice(),
            [
                Gossiped::Skipped(MempoolError::NonceUsed { .. }),
                Gossiped::Skipped(MempoolError::NonceUsed { .. }),
                Gossiped::Checked(Ok(txid)),
                Gossiped::Checked(Err(SubmitError::Rejected(MempoolError::Invalid(_)))),
            ] if *txid == next.txid()
        ),
        "{verdicts:?}"
    );
}
