//! kill -9 while mining, many times: every block the node reported over RPC is still there.

use apiary_system_tests::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tempfile::TempDir;

#[test]
fn kill_9_while_mining_never_loses_a_reported_block() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    let miner = address_text(9);
    let args = [
        "--mine",
        "--miner-address",
        miner.as_str(),
        "--mine-threads",
        "1",
    ];
    let mut reported: BTreeMap<u64, String> = BTreeMap::new();

    for round in 0..20 {
        let mut node = NodeProcess::start(&datadir, Some(&spec), &args).unwrap();
        // Everything reported before the last kill must have survived it.
        let tip = node.rpc.tip_height();
        let highest = reported.keys().last().copied().unwrap_or(0);
        assert!(
            tip >= highest,
            "round {round}: restarted at {tip}, below reported {highest}"
        );
        for (height, hash) in &reported {
            assert_eq!(
                node.block_hash(*height),
                *hash,
                "round {round}: block {height} changed"
            );
        }
        // Let it mine a while, recording what it reports, then kill it mid-stride.
        let goal = tip + 10 + round * 5;
        wait_until(
            Duration::from_secs(60),
            "the miner to make progress",
            || {
                let tip = node.rpc.call("chain_tip", json!({})).unwrap();
                reported.insert(
                    tip["height"].as_u64().unwrap(),
                    tip["hash"].as_str().unwrap().to_string(),
                );
                tip["height"].as_u64().unwrap() >= goal
            },
        );
        node.kill9();
    }
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    assert!(node.rpc.tip_height() >= *reported.keys().last().unwrap());
}

/// A transaction the node accepted is still pending after a restart: a clean stop
/// (SIGTERM) or a crash (kill -9), with no block mined in between.
fn pending_survives(stop: impl FnOnce(&mut NodeProcess)) {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    let mut node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    let txids: Vec<String> = (0..16)
        .map(|nonce| node.submit_tx(&transfer(1, address(7), 1_000, 10_000, nonce)))
        .chain([node.submit_tx(&transfer(2, address(7), 2_000, 10_000, 0))])
        .collect();
    stop(&mut node);
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    for txid in &txids {
        assert_eq!(node.tx_status(txid), "pending", "{txid} after the restart");
    }
    assert_eq!(node.mempool_count(), txids.len() as u64);
    // And they are mined as usual.
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    for txid in &txids {
        assert_eq!(node.tx_status(txid), "confirmed");
    }
}

#[test]
fn a_pending_transaction_survives_a_clean_restart() {
    pending_survives(|node| assert!(node.stop(), "the node stops cleanly"));
}

#[test]
fn a_pending_transaction_survives_kill_9() {
    pending_survives(NodeProcess::kill9);
}
