//! Reorganisations between real nodes lose no transaction: everything a node accepted is,
//! after the losing branch is undone, confirmed on the winning chain, pending, or provably
//! invalid there (its nonce spent by another transaction).

use apiary_system_tests::*;
use serde_json::json;
use std::time::Duration;
use tempfile::TempDir;

fn wait_for_tip(nodes: &[&NodeProcess], tip: &(u64, String)) {
    wait_until(
        Duration::from_secs(60),
        &format!("every node to reach {tip:?}"),
        || nodes.iter().all(|n| n.tip() == *tip),
    );
}

/// Sends `count` payments from `sender` starting at `nonce`, each accepted; returns their
/// txids with their nonces.
fn pay(node: &NodeProcess, sender: u8, nonce: u64, count: u64) -> Vec<(u64, String)> {
    (nonce..nonce + count)
        .map(|n| {
            (
                n,
                node.submit_tx(&transfer(sender, address(30), 1_000, 10_000, n)),
            )
        })
        .collect()
}

/// The account nonce of `seed`'s key on `node`.
fn nonce_of(node: &NodeProcess, seed: u8) -> u64 {
    node.rpc
        .call("account_get", json!({"address": address_text(seed)}))
        .unwrap()["nonce"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_reorg_undoing_48_transactions_of_one_sender_loses_none() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let loser = NodeProcess::start(&dir.path().join("loser"), Some(&spec), &[]).unwrap();
    let winner = NodeProcess::start(&dir.path().join("winner"), Some(&spec), &[]).unwrap();

    // Apart: three blocks of 16 payments of key 1 and a few of keys 2 and 3 on one side…
    let mut accepted = Vec::new();
    for round in 0..3 {
        accepted.extend(pay(&loser, 1, round * 16, 16));
        accepted.extend(pay(&loser, 2, round * 2, 2));
        accepted.extend(pay(&loser, 3, round, 1));
        loser.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    }
    assert_eq!(nonce_of(&loser, 1), 48);
    // …and more work on the other.
    winner.rpc.call("dev_mine", json!({"blocks": 5})).unwrap();

    // Together: the loser takes the winner's chain and every payment comes back.
    loser
        .rpc
        .call("net_connect", json!({"addr": winner.p2p_addr()}))
        .unwrap();
    let best = winner.tip();
    wait_for_tip(&[&loser, &winner], &best);
    for (_, txid) in &accepted {
        assert_eq!(loser.tx_status(txid), "pending", "{txid} after the reorg");
    }
    // Mined on the winning chain, on both nodes.
    loser.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_for_tip(&[&loser, &winner], &loser.tip());
    for (_, txid) in &accepted {
        assert_eq!(winner.tx_status(txid), "confirmed", "{txid}");
    }
    assert_eq!(nonce_of(&winner, 1), 48);
}

#[test]
fn a_2_3_partition_with_busy_senders_on_both_sides_loses_no_transaction() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let start = |name: &str, peers: &[&str]| {
        let mut args = Vec::new();
        for peer in peers {
            args.extend(["--peer", peer]);
        }
        NodeProcess::start(&dir.path().join(name), Some(&spec), &args).unwrap()
    };
    let a0 = start("a0", &[]);
    let a1 = start("a1", &[&a0.p2p_addr()]);
    let b0 = start("b0", &[]);
    let b1 = start("b1", &[&b0.p2p_addr()]);
    let b2 = start("b2", &[&b0.p2p_addr()]);
    let (side_a, side_b) = ([&a0, &a1], [&b0, &b1, &b2]);
    wait_until(Duration::from_secs(30), "each side to connect", || {
        a0.peer_count() == 1 && b0.peer_count() == 2
    });

    // Side A: key 1 is busy (40 payments over 3 blocks, sent to a1, mined by a0).
    let mut on_a = Vec::new();
    for (round, count) in [(0u64, 16u64), (16, 16), (32, 8)] {
        on_a.extend(pay(&a1, 1, round, count));
        wait_until(
            Duration::from_secs(30),
            "side A's payments to reach a0",
            || a0.mempool_count() == count,
        );
        a0.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    }
    // Side B: key 2 is busy, and key 1 spends its nonce 0 differently (a double spend).
    let double_spend = b1.submit_tx(&transfer(1, address(31), 5_000, 10_000, 0));
    let on_b = pay(&b1, 2, 0, 16);
    wait_until(
        Duration::from_secs(30),
        "side B's payments to reach b0",
        || b0.mempool_count() == 17,
    );
    b0.rpc.call("dev_mine", json!({"blocks": 5})).unwrap();
    wait_for_tip(&side_a, &a0.tip());
    wait_for_tip(&side_b, &b0.tip());

    // Heal: side B's chain has more work; every node ends on it.
    a0.rpc
        .call("net_connect", json!({"addr": b0.p2p_addr()}))
        .unwrap();
    let best = b0.tip();
    wait_for_tip(&[&a0, &a1, &b0, &b1, &b2], &best);
    assert_eq!(a0.tx_status(&double_spend), "confirmed");

    // Side A's payments: nonce 0 lost to the double spend, provably; the rest come back
    // and confirm once mined.
    a0.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_for_tip(&[&a0, &a1, &b0, &b1, &b2], &a0.tip());
    for node in [&a0, &a1, &b0, &b1, &b2] {
        for (nonce, txid) in &on_a {
            let status = node.tx_status(txid);
            if *nonce == 0 {
                assert_eq!(status, "unknown", "its nonce went to the double spend");
            } else {
                assert_eq!(status, "confirmed", "side A's payment {nonce} on a node");
            }
        }
        for (_, txid) in &on_b {
            assert_eq!(node.tx_status(txid), "confirmed");
        }
        assert_eq!(nonce_of(node, 1), 40);
    }
}
