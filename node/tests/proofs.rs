//! Proofs from a node's state against the state root its headers carry: one account and
//! a range, from pages in memory (unflushed) and from the store (flushed).

mod common;

use apiary_core::state::proof::{prove, prove_range};
use apiary_core::{Account, Address, Amount, Hash256, Nonce};
use apiary_node::Node;
use common::*;
use tempfile::TempDir;

/// The tip's header state root, and every account of the tip, in address order.
fn tip_root_and_accounts(node: &Node) -> (Hash256, Vec<(Address, Account)>) {
    let guard = node.lock();
    let tip = guard.chain.tip();
    let header = guard.chain.body(&tip).unwrap().header;
    (
        header.state_root,
        guard.chain.state().all_accounts().unwrap(),
    )
}

/// Checks one account's proof and a range's against the header's root, then that one
/// changed byte of an account makes each fail.
fn prove_against_header(node: &Node) {
    let (root, all) = tip_root_and_accounts(node);
    assert!(
        all.len() >= 4,
        "the chain holds a few accounts: {}",
        all.len()
    );
    let state = node.lock().chain.state().clone();

    let (address, account) = all[1];
    let proof = prove(&*state, &address).unwrap();
    assert_eq!(proof.verify(&root, &address), Ok(Some(account)));
    let mut forged = proof.clone();
    if let apiary_core::state::proof::ProofEnd::Leaf { account: a, .. } = &mut forged.end {
        a.balance = Amount::from_base_units(a.balance.base_units() ^ 1);
    } else {
        panic!("the proof of a held account ends at its leaf");
    }
    assert!(forged.verify(&root, &address).is_err());

    let (first, last) = (all[0].0, all[all.len() - 1].0);
    let range = prove_range(&*state, &first, &last).unwrap();
    assert_eq!(range.verify(&root, &first, &last, &all), Ok(()));
    let mut changed = all.clone();
    changed[2].1.nonce = Nonce(changed[2].1.nonce.0 ^ 1);
    assert!(range.verify(&root, &first, &last, &changed).is_err());
    // Against any other root it fails.
    assert!(proof.verify(&Hash256([7; 32]), &address).is_err());
}

#[test]
fn an_account_and_a_range_prove_against_the_tip_header_in_memory_and_on_disk() {
    let spec = test_spec(100);
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &spec);
    node.submit_tx(transfer(&spec, 1, addr(10), 100, 0))
        .unwrap();
    node.submit_tx(transfer(&spec, 2, addr(11), 200, 0))
        .unwrap();
    mine(&node, addr(20), 2);
    // The tip's pages are still in memory (not flushed).
    prove_against_header(&node);
    // Flushed: the pages are read back from the store.
    node.lock().chain.flush_state().unwrap();
    prove_against_header(&node);
}
