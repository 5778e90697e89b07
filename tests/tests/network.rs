//! Several real nodes on 127.0.0.1: gossip, sync, a node killed and restarted, a late
//! joiner, and a node of another chain kept out.

use apiary_system_tests::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

const LISTEN: [&str; 2] = ["--listen", "/ip4/127.0.0.1/tcp/0"];

fn start_peer(dir: &Path, name: &str, spec: &Path, bootnode: Option<&str>) -> NodeProcess {
    let mut args: Vec<&str> = LISTEN.to_vec();
    args.extend(["--mine-threads", "1"]);
    if let Some(addr) = bootnode {
        args.extend(["--peer", addr]);
    }
    NodeProcess::start(&dir.join(name), Some(spec), &args).unwrap()
}

fn wait_for_tip(nodes: &[&NodeProcess], tip: &(u64, String)) {
    wait_until(Duration::from_secs(60), &format!("every node to reach {tip:?}"), || {
        nodes.iter().all(|n| n.tip() == *tip)
    });
}

#[test]
fn nodes_gossip_sync_and_recover_from_a_kill() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let n0 = start_peer(dir.path(), "n0", &spec, None);
    let boot = n0.p2p_addr();
    let mut n1 = start_peer(dir.path(), "n1", &spec, Some(&boot));
    let n2 = start_peer(dir.path(), "n2", &spec, Some(&boot));
    wait_until(Duration::from_secs(30), "peers to connect", || {
        n0.peer_count() == 2 && n1.peer_count() >= 1 && n2.peer_count() >= 1
    });

    n0.rpc.call("dev_mine", json!({"blocks": 5})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());

    // A payment sent to n2 reaches n0's mempool by gossip and confirms everywhere.
    let stx = transfer(2, address(7), 123_000, 10_000, 0);
    let txid = n2.rpc.call("tx_submit", json!({"tx": hex::encode(stx.encode())})).unwrap()["txid"].clone();
    wait_until(Duration::from_secs(30), "the tx to reach n0", || {
        n0.rpc.call("mempool_info", json!({})).unwrap()["count"] == 1
    });
    n0.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());
    for node in [&n0, &n1, &n2] {
        assert_eq!(node.rpc.call("tx_get", json!({"txid": txid})).unwrap()["status"], "confirmed");
        assert_eq!(node.rpc.call("account_get", json!({"address": address_text(7)})).unwrap()["balance"], 123_000);
    }

    // n1 dies; the others go on; n1 comes back and catches up by itself.
    n1.kill9();
    n0.rpc.call("dev_mine", json!({"blocks": 30})).unwrap();
    wait_for_tip(&[&n0, &n2], &n0.tip());
    let n1 = start_peer(dir.path(), "n1", &spec, Some(&boot));
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());

    // A late joiner that knows only n2 gets the whole chain.
    let n3 = start_peer(dir.path(), "n3", &spec, Some(&n2.p2p_addr()));
    wait_for_tip(&[&n0, &n3], &n0.tip());
    assert_eq!(n3.tip().0, 36);
}

#[test]
fn a_node_of_another_chain_is_refused_and_says_why() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let n0 = start_peer(dir.path(), "n0", &spec, None);
    n0.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    // The devnet: another genesis.
    let other = NodeProcess::start(&dir.path().join("other"), None, &[LISTEN[0], LISTEN[1], "--peer", &n0.p2p_addr()]).unwrap();
    wait_until(Duration::from_secs(30), "the other chain's node to be refused", || {
        n0.log().contains("another chain") || other.log().contains("another chain")
    });
    wait_until(Duration::from_secs(30), "the connection to close", || n0.peer_count() == 0);
    assert_eq!(other.tip().0, 0, "nothing of the test chain reached the devnet node");
}
