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
            let block = node
                .rpc
                .call("block_get", json!({"height": height}))
                .unwrap();
            assert_eq!(
                block["hash"].as_str().unwrap(),
                hash,
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
