//! A reorganisation never loses a transaction: after random reorgs of random depth with
//! many transactions per sender, every transaction the node once accepted is confirmed on
//! the new chain, pending, or provably invalid there (its nonce spent, or its sender unable
//! to pay it with what it has pending).

mod common;

use apiary_core::{Amount, SignedTransaction, TxId};
use apiary_node::Node;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use tempfile::TempDir;

const SENDERS: [u8; 3] = [1, 2, 3];
const FEE: u64 = 10_000;

/// The nonce a new transaction of `sender` takes on `node`: after its pending run.
fn next_nonce(node: &Node, sender: u8) -> u64 {
    let guard = node.lock();
    let mut next = guard.chain.account(&addr(sender)).unwrap().nonce.0;
    for stx in guard.mempool.pending_from(&addr(sender)) {
        if stx.tx.nonce.0 == next {
            next += 1;
        }
    }
    next
}

/// What became of a transaction the node accepted once.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Confirmed,
    Pending,
    NonceSpent,
    Overdraft,
    Gone,
}

fn fate(node: &Node, stx: &SignedTransaction) -> Fate {
    let guard = node.lock();
    let txid = stx.txid();
    if guard.chain.tx_location(&txid).unwrap().is_some() {
        return Fate::Confirmed;
    }
    if guard.mempool.contains(&txid) {
        return Fate::Pending;
    }
    let account = guard.chain.account(&stx.tx.from).unwrap();
    if stx.tx.nonce < account.nonce {
        return Fate::NonceSpent;
    }
    // The mempool's rule: this and everything its sender has pending must be payable.
    let pending: u128 = guard
        .mempool
        .pending_from(&stx.tx.from)
        .iter()
        .map(|p| u128::from(p.tx.amount.base_units()) + u128::from(p.tx.fee.base_units()))
        .sum();
    let needed = pending + u128::from(stx.tx.amount.base_units()) + u128::from(FEE);
    if needed > u128::from(account.balance.base_units()) {
        return Fate::Overdraft;
    }
    Fate::Gone
}

#[derive(Debug, Clone)]
struct Case {
    prefix: usize,
    /// Per block of the branch that loses: how many txs each sender sends before it.
    losing: Vec<[usize; 3]>,
    /// Blocks the winning branch has beyond the losing one's length.
    extra: usize,
    /// Per sender: on the winning branch, a different tx at this position of the sender's
    /// losing-branch txs (those before it confirmed there too), spending `big` or little.
    conflicts: [Option<(usize, bool)>; 3],
    /// Base units each losing-branch payment moves.
    amount: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        0..3usize,
        prop::collection::vec([0..=16usize, 0..=16usize, 0..=16usize], 1..=3),
        1..=2usize,
        [
            prop::option::of((0..=16usize, any::<bool>())),
            prop::option::of((0..=16usize, any::<bool>())),
            prop::option::of((0..=16usize, any::<bool>())),
        ],
        prop_oneof![Just(1_000u64), Just(1_500_000_000u64)],
    )
        .prop_map(|(prefix, losing, extra, conflicts, amount)| Case {
            prefix,
            losing,
            extra,
            conflicts,
            amount,
        })
}

/// Plays `case` out; returns the node that reorganised (with its stores' dirs) and what
/// it had accepted.
fn run(
    case: Case,
) -> (
    Vec<TempDir>,
    std::sync::Arc<Node>,
    BTreeMap<TxId, SignedTransaction>,
) {
    let spec = test_spec(100);
    let (dirs, [winner, loser, _]) = three_nodes(&spec);
    for block in mine(&winner, addr(9), case.prefix) {
        loser.submit_block(block).unwrap();
    }
    // The losing branch, mined on `loser`: every tx it accepts is recorded.
    let mut accepted: BTreeMap<TxId, SignedTransaction> = BTreeMap::new();
    let mut losing_txs: BTreeMap<u8, Vec<SignedTransaction>> = BTreeMap::new();
    for counts in &case.losing {
        for (sender, count) in SENDERS.iter().zip(counts) {
            for _ in 0..*count {
                let stx = payment(
                    &spec,
                    *sender,
                    addr(20),
                    Amount::from_base_units(case.amount),
                    next_nonce(&loser, *sender),
                );
                loser.submit_tx(stx.clone()).unwrap();
                accepted.insert(stx.txid(), stx.clone());
                losing_txs.entry(*sender).or_default().push(stx);
            }
        }
        mine(&loser, addr(9), 1);
    }
    // Pending on top of the losing branch when it is undone.
    for sender in SENDERS {
        let stx = payment(
            &spec,
            sender,
            addr(21),
            Amount::from_base_units(case.amount),
            next_nonce(&loser, sender),
        );
        if loser.submit_tx(stx.clone()).is_ok() {
            accepted.insert(stx.txid(), stx);
        }
    }
    // The winning branch: some of the same txs, and a double spend of one of them.
    for (index, sender) in SENDERS.iter().enumerate() {
        let Some((position, big)) = case.conflicts[index] else {
            continue;
        };
        let theirs = losing_txs
            .get(sender)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let position = position.min(theirs.len());
        for stx in &theirs[..position] {
            winner.submit_tx(stx.clone()).unwrap();
        }
        let spend = if big { 50_000_000_000 } else { 7 };
        let nonce = next_nonce(&winner, *sender);
        winner
            .submit_tx(payment(
                &spec,
                *sender,
                addr(22),
                Amount::from_base_units(spend),
                nonce,
            ))
            .unwrap();
    }
    let winning = mine(&winner, addr(8), case.losing.len() + case.extra);
    for block in winning {
        loser.submit_block(block).unwrap();
    }
    assert_eq!(loser.lock().chain.tip(), winner.lock().chain.tip());

    for (txid, stx) in &accepted {
        let fate = fate(&loser, stx);
        assert_ne!(
            fate,
            Fate::Gone,
            "tx {txid} (nonce {}) was lost",
            stx.tx.nonce.0
        );
    }
    (dirs.into(), loser, accepted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn a_reorg_loses_no_transaction(case in cases()) {
        run(case);
    }
}

/// The case of the issue: 48 transactions of one sender undone at once come back, though
/// 16 is as far ahead of its account's nonce as a new one may be.
#[test]
fn forty_eight_undone_transactions_of_one_sender_all_come_back() {
    let case = Case {
        prefix: 1,
        losing: vec![[16, 0, 0], [16, 0, 0], [16, 0, 0]],
        extra: 1,
        conflicts: [None, None, None],
        amount: 1_000,
    };
    let spec = test_spec(100);
    let (_dirs, node, accepted) = run(case);
    assert_eq!(accepted.len(), 48 + 3);
    for stx in accepted.values() {
        assert_eq!(fate(&node, stx), Fate::Pending);
    }
    // The pool's admission limit still holds for a new one far ahead.
    let far = payment(&spec, 1, addr(20), Amount::from_base_units(1), 49 + 17);
    assert!(matches!(
        node.submit_tx(far),
        Err(apiary_node::SubmitError::Rejected(
            apiary_node::mempool::MempoolError::NonceTooFarAhead { .. }
        ))
    ));
}
