//! WebSocket subscriptions on real nodes: every tip in order, reorgs with their depth, an
//! address's transaction from pending to confirmed, and a client that never reads cut off
//! without the node's memory growing.

use apiary_system_tests::ws::Subscriber;
use apiary_system_tests::*;
use serde_json::json;
use std::time::Duration;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn every_tip_of_a_100_block_run_arrives_in_order() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let mut client = Subscriber::private(&node);
    client.subscribe(json!({"topic": "tips"}));
    node.rpc.call("dev_mine", json!({"blocks": 100})).unwrap();
    for height in 1..=100u64 {
        let tip = client.next("tips", WAIT);
        assert_eq!(tip["height"], height, "{tip}");
        assert!(tip["reorg"].is_null(), "{tip}");
        if height % 25 == 0 {
            assert_eq!(tip["hash"], node.block_hash(height));
        }
    }
}

#[test]
fn a_reorg_is_told_with_its_depth_and_the_blocks_it_undid() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let loser = NodeProcess::start(&dir.path().join("loser"), Some(&spec), &[]).unwrap();
    let winner = NodeProcess::start(&dir.path().join("winner"), Some(&spec), &[]).unwrap();
    loser.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    winner.rpc.call("dev_mine", json!({"blocks": 4})).unwrap();
    let undone = [loser.block_hash(2), loser.block_hash(1)];

    let mut client = Subscriber::public(&loser);
    client.subscribe(json!({"topic": "tips"}));
    loser
        .rpc
        .call("net_connect", json!({"addr": winner.p2p_addr()}))
        .unwrap();
    let first = client.next("tips", WAIT);
    assert_eq!(first["reorg"]["depth"], 2, "{first}");
    assert_eq!(first["reorg"]["disconnected"], json!(undone), "{first}");
    assert_eq!(first["height"], 1);
    assert_eq!(first["hash"], winner.block_hash(1));
    for height in 2..=4u64 {
        let tip = client.next("tips", WAIT);
        assert_eq!(tip["height"], height, "{tip}");
        assert!(tip["reorg"].is_null(), "{tip}");
    }
}

#[test]
fn an_address_sees_its_payment_pending_then_confirmed_deeper_each_block() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let mut client = Subscriber::public(&node);
    client.subscribe(json!({"topic": "address", "address": address_text(30), "confirmations": 2}));

    let txid = node.submit_tx(&transfer(1, address(30), 5_000, 10_000, 0));
    let pending = client.next("address", WAIT);
    assert_eq!(
        (pending["event"].as_str(), pending["txid"].as_str()),
        (Some("pending"), Some(txid.as_str())),
        "{pending}"
    );
    assert_eq!(pending["amount"], "5000");
    assert_eq!(pending["to"], address_text(30));

    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    let confirmed = client.next("address", WAIT);
    assert_eq!(confirmed["event"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["txid"], txid.as_str());
    assert_eq!(confirmed["confirmations"], 1);
    assert_eq!(confirmed["height"], 1);
    assert_eq!(confirmed["block_hash"], node.block_hash(1));

    node.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    let deeper = client.next("address", WAIT);
    assert_eq!(deeper["confirmations"], 2, "{deeper}");
    // Asked for 2 confirmations: nothing more about it. A new payment is the next word.
    let second = node.submit_tx(&transfer(1, address(30), 6_000, 10_000, 1));
    let next = client.next("address", WAIT);
    assert_eq!(next["txid"], second.as_str(), "{next}");
    assert_eq!(next["event"], "pending");
}

#[test]
fn the_public_socket_serves_only_subscriptions_and_the_private_one_needs_the_cookie() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let mut public = Subscriber::public(&node);
    let refused = public.call("dev_mine", json!({"blocks": 1}));
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    assert_eq!(node.rpc.tip_height(), 0);
    let unknown = public.call("subscribe", json!({"topic": "gossip"}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");

    let no_cookie = Subscriber::connect(&node, "/ws", false, None);
    let Err(tungstenite::Error::Http(response)) = no_cookie else {
        panic!("/ws without the cookie is refused");
    };
    assert_eq!(response.status(), 401);

    let mut private = Subscriber::private(&node);
    let mined = private.call("dev_mine", json!({"blocks": 1}));
    assert!(mined["result"].is_object(), "{mined}");
    assert_eq!(private.call("chain_tip", json!({}))["result"]["height"], 1);
    let id = private.subscribe(json!({"topic": "tips"}));
    assert_eq!(
        private.call("unsubscribe", json!({"subscription": id}))["result"],
        true
    );
    assert_eq!(
        private.call("unsubscribe", json!({"subscription": id}))["result"],
        false
    );
}

#[test]
fn peers_and_mempool_topics_say_where_they_stand_and_what_changes() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let mut client = Subscriber::public(&node);
    client.subscribe(json!({"topic": "mempool"}));
    assert_eq!(client.next("mempool", WAIT)["count"], 0);
    node.submit_tx(&transfer(1, address(30), 5_000, 10_000, 0));
    node.submit_tx(&transfer(1, address(30), 5_000, 10_000, 1));
    // Batched: two transactions may come as one notification.
    wait_until(WAIT, "the mempool notification to reach 2", || {
        client.next("mempool", WAIT)["count"] == 2
    });

    client.subscribe(json!({"topic": "peers"}));
    let peer = NodeProcess::start(
        &dir.path().join("peer"),
        Some(&spec),
        &["--peer", &node.p2p_addr()],
    )
    .unwrap();
    let joined = client.next("peers", WAIT);
    assert_eq!(joined["event"], "connected", "{joined}");
    assert_eq!(joined["peer_id"], peer.peer_id());
    drop(peer);
    let left = client.next("peers", WAIT);
    assert_eq!(left["event"], "disconnected", "{left}");
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_memory_stays_flat() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    // Warm: the first blocks grow the caches whatever the subscribers do.
    node.rpc.call("dev_mine", json!({"blocks": 50})).unwrap();
    let before = rss_bytes(node.pid());

    let mut stalled = Subscriber::connect(&node, "/explorer/ws", false, Some(4096)).unwrap();
    for _ in 0..256 {
        stalled.subscribe(json!({"topic": "tips"}));
    }
    // ~100 kB of notifications per block, and the client reads none of them.
    let mut mined = 0;
    wait_until(
        Duration::from_secs(240),
        "the stalled client to be cut off",
        || {
            if metrics::of(&node, "apiary_ws_cut_off_total", &[]) >= Some(1.0) {
                return true;
            }
            node.rpc.call("dev_mine", json!({"blocks": 20})).unwrap();
            mined += 20;
            false
        },
    );
    wait_until(WAIT, "the socket to be closed", || {
        metrics::of(&node, "apiary_ws_connections", &[]) == Some(0.0)
    });
    let after = rss_bytes(node.pid());
    assert!(
        after < before + (64 << 20),
        "RSS grew from {before} to {after} bytes over {mined} blocks"
    );
    // Everyone else is still served.
    let mut other = Subscriber::public(&node);
    other.subscribe(json!({"topic": "tips"}));
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    assert_eq!(other.next("tips", WAIT)["height"], 51 + mined);
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn the_explorer_can_be_turned_off() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let on = NodeProcess::start(&dir.path().join("on"), Some(&spec), &[]).unwrap();
    let (status, page) = http_get(&on.rpc.url, "/explorer");
    assert_eq!(status, 200);
    assert!(page.contains("Apiary explorer"));
    // Public data without the cookie; nothing else.
    let (status, tip) = http_get(&on.rpc.url, "/explorer/api/chain_tip");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&tip).unwrap()["height"],
        0
    );
    let (status, _) = http_get(&on.rpc.url, "/explorer/api/dev_mine?blocks=1");
    assert_eq!(status, 404);
    assert_eq!(on.rpc.tip_height(), 0);

    let off = NodeProcess::start(&dir.path().join("off"), Some(&spec), &["--no-explorer"]).unwrap();
    for path in [
        "/explorer",
        "/explorer/api/chain_tip",
        "/explorer/dashboard",
    ] {
        assert_eq!(http_get(&off.rpc.url, path).0, 404, "{path}");
    }
    assert!(Subscriber::connect(&off, "/explorer/ws", false, None).is_err());
}
