//! Mining from outside the node: `mining_template` / `mining_submit` and the standalone
//! `apiary-miner`, against real node processes.

use apiary_core::BlockHeader;
use apiary_system_tests::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(60);

fn miner_command(nodes: &[&NodeProcess], address: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(bin("apiary-miner"));
    for node in nodes {
        command
            .args(["--rpc", &node.rpc.url, "--rpc-cookie"])
            .arg(node.datadir.join("rpc.cookie"));
    }
    command
        .args(["--address", address, "--threads", "1"])
        .args(extra)
        .stdin(Stdio::null());
    command
}

fn template(node: &NodeProcess, params: Value) -> Value {
    node.rpc.call("mining_template", params).unwrap()
}

fn header_of(template: &Value) -> BlockHeader {
    borsh::from_slice(&hex::decode(template["header"].as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn an_external_miner_mines_through_the_node() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let payee = address_text(9);
    let output = miner_command(&[&node], &payee, &["--duration", "3", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "summary")
        .expect("a summary line");
    let accepted = summary["accepted"].as_u64().unwrap();
    assert!(accepted >= 5, "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");
    let height = node.rpc.tip_height();
    assert!(height >= accepted, "{height} < {accepted}");
    for h in [1, height] {
        let block = node.rpc.call("block_get", json!({"height": h})).unwrap();
        assert_eq!(block["miner"], payee.as_str(), "block {h}");
    }
    assert!(node.balance(&payee) > 0);
}

#[test]
fn a_miner_fails_over_to_the_next_node() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (mut first, second) = connected_pair(dir.path(), &spec, ["first", "second"]);
    let mut miner = miner_command(&[&first, &second], &address_text(9), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(WAIT, "blocks through the first node", || {
        second.rpc.tip_height() >= 3
    });
    first.kill9();
    let after = second.rpc.tip_height();
    let mined = mines_on(&second, after + 5, &mut miner);
    let _ = miner.kill();
    let _ = miner.wait();
    assert!(
        mined,
        "no blocks through the second node after the first died"
    );
}

/// A node stopped cleanly has no cookie: it is down, not a reason to give up. A miner
/// started meanwhile mines through the next node, and takes the first node's new cookie
/// when it comes back.
#[test]
fn a_miner_mines_while_a_node_is_stopped_and_after_it_restarts() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let first_dir = dir.path().join("first");
    let mut first = NodeProcess::start(&first_dir, Some(&spec), &[]).unwrap();
    let mut second = NodeProcess::start(
        &dir.path().join("second"),
        Some(&spec),
        &["--peer", &first.p2p_addr()],
    )
    .unwrap();
    wait_until(WAIT, "the nodes to connect", || second.peer_count() == 1);
    let rpc_addr = first
        .rpc
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(first.stop(), "a clean stop");
    let mut miner = miner_command(&[&first, &second], &address_text(9), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mined = mines_on(&second, 3, &mut miner);
    assert!(mined, "no blocks through the second node");
    // The first comes back on the same address with a new cookie; the second goes.
    first = NodeProcess::start(
        &first_dir,
        Some(&spec),
        &["--rpc-addr", &rpc_addr, "--peer", &second.p2p_addr()],
    )
    .unwrap();
    let tip = second.tip();
    wait_until(WAIT, "the first node to catch up", || {
        first.tip().0 >= tip.0
    });
    second.kill9();
    let after = first.rpc.tip_height();
    let mined = mines_on(&first, after + 3, &mut miner);
    let _ = miner.kill();
    let _ = miner.wait();
    assert!(mined, "no blocks through the restarted first node");
}

/// Waits until `node` reaches `height`, failing if the miner gives up first.
fn mines_on(node: &NodeProcess, height: u64, miner: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if node.rpc.tip_height() >= height {
            return true;
        }
        if let Ok(Some(status)) = miner.try_wait() {
            panic!("the miner gave up ({status}) instead of failing over");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_long_poll_answers_when_the_tip_moves() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let first = template(&node, json!({"address": address_text(9)}));
    assert_eq!(first["height"], 1);
    let rpc = node.rpc.clone();
    let longpoll_id = first["longpoll_id"].clone();
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        let next = rpc
            .call(
                "mining_template",
                json!({"address": address_text(9), "longpoll_id": longpoll_id}),
            )
            .unwrap();
        (next, started.elapsed())
    });
    // Still waiting: nothing changed yet.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished());
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    let (next, waited) = waiting.join().unwrap();
    assert_eq!(next["height"], 2, "{next}");
    assert_eq!(next["prev_hash"], node.block_hash(1));
    assert!(waited < Duration::from_secs(20), "{waited:?}");
}

#[test]
fn a_wrong_nonce_an_unknown_template_and_an_early_timestamp_are_refused_with_reasons() {
    let dir = TempDir::new().unwrap();
    // A random nonce almost never meets this target.
    let spec = write_fixed_spec(dir.path(), 1 << 40);
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let work = template(&node, json!({"address": address_text(9), "txs": true}));
    assert_eq!(work["tx_count"], 0);
    assert_eq!(work["txs"], json!([]));
    let refused = |params: Value| {
        let reply = node.rpc.call("mining_submit", params).unwrap();
        assert_eq!(reply["status"], "refused", "{reply}");
        reply["reason_code"].as_str().unwrap().to_string()
    };
    assert_eq!(
        refused(json!({"id": work["id"], "nonce": 0})),
        "insufficient_work"
    );
    assert_eq!(
        refused(json!({"id": "00000000deadbeef", "nonce": 0})),
        "unknown_template"
    );
    let early = work["timestamp_ms"].as_u64().unwrap() - 1;
    assert_eq!(
        refused(json!({"id": work["id"], "nonce": "0", "timestamp_ms": early})),
        "timestamp_too_early"
    );
    // Malformed: named, as a bad parameter.
    let bad = node
        .rpc
        .call("mining_submit", json!({"id": work["id"], "nonce": "-1"}))
        .unwrap_err();
    assert_eq!(bad.code, -32602, "{bad:?}");
    let bad = node
        .rpc
        .call("mining_template", json!({"address": "nonsense"}))
        .unwrap_err();
    assert_eq!(bad.code, -32602, "{bad:?}");
    assert_eq!(node.rpc.tip_height(), 0);
}

#[test]
fn a_block_for_an_old_tip_is_stale_and_a_current_one_accepted() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let old = template(&node, json!({"address": address_text(9)}));
    let current = |t: &Value| {
        let header = header_of(t);
        apiary_node::miner::search_nonce(&header, 0, 1, || false).unwrap()
    };
    let old_nonce = current(&old);
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    let reply = node
        .rpc
        .call(
            "mining_submit",
            json!({"id": old["id"], "nonce": old_nonce}),
        )
        .unwrap();
    assert_eq!(reply["status"], "stale", "{reply}");
    assert_eq!(node.rpc.tip_height(), 1);

    let fresh = template(&node, json!({"address": address_text(9)}));
    let reply = node
        .rpc
        .call(
            "mining_submit",
            json!({"id": fresh["id"], "nonce": current(&fresh).to_string()}),
        )
        .unwrap();
    assert_eq!(reply["status"], "accepted", "{reply}");
    assert_eq!(reply["hash"], node.block_hash(2));
    assert_eq!(
        node.rpc.call("block_get", json!({"height": 2})).unwrap()["miner"],
        address_text(9)
    );
}

#[test]
fn the_templates_topic_sends_a_new_template_on_each_new_tip() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let mut client = apiary_system_tests::ws::Subscriber::private(&node);
    client.subscribe(json!({"topic": "templates", "address": address_text(9)}));
    let first = client.next("templates", WAIT);
    assert_eq!(first["height"], 1, "{first}");
    let mut last = first;
    for height in 2..=4u64 {
        node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
        last = client.next("templates", WAIT);
        assert_eq!(last["height"], height, "{last}");
        assert_eq!(last["prev_hash"], node.block_hash(height - 1));
    }
    // A template from the topic is as good as one asked for.
    let nonce = apiary_node::miner::search_nonce(&header_of(&last), 0, 1, || false).unwrap();
    let reply = node
        .rpc
        .call("mining_submit", json!({"id": last["id"], "nonce": nonce}))
        .unwrap();
    assert_eq!(reply["status"], "accepted", "{reply}");
}
