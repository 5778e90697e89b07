//! Standard libp2p: a stock js-libp2p peer (tests/interop/js), set up only as
//! docs/protocol.md says, connects to a node and follows its blocks; a script hashes the
//! state commitment from the document alone.

use apiary_system_tests::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

#[test]
fn a_js_libp2p_peer_follows_blocks_with_the_documented_settings() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let genesis = apiary_genesis::load_spec(&spec).unwrap().genesis_hash();
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/js/follow.mjs");
    assert!(
        script.with_file_name("node_modules").exists(),
        "the js-libp2p peer's packages are missing: run scripts/setup"
    );
    let mut follower = Command::new("node")
        .arg(&script)
        .args([node.p2p_addr(), genesis.to_string(), "3".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (Node.js 20+) runs; scripts/setup installs it");
    wait_until(Duration::from_secs(60), "the js peer to connect", || {
        node.peer_count() == 1
    });
    let stdout = follower.stdout.take().unwrap();
    let (lines, seen_rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(serde_json::from_str(&line).unwrap());
        }
    });
    // Gossipsub takes a heartbeat or two to put the new peer in its mesh: a block at a
    // time, each waited for a while, until the follower has had three (at most 30 blocks).
    let miner = address_text(9);
    let mut seen = Vec::new();
    for _ in 0..30 {
        node.rpc
            .call("dev_mine", json!({"blocks": 1, "address": miner}))
            .unwrap();
        if let Ok(block) = seen_rx.recv_timeout(Duration::from_secs(2)) {
            seen.push(block);
        }
        if seen.len() == 3 {
            break;
        }
    }
    let status = follower.wait().unwrap();
    assert!(status.success(), "the js peer saw {} blocks", seen.len());
    assert_eq!(seen.len(), 3);
    for block in &seen {
        let height = block["height"].as_u64().unwrap();
        assert_eq!(
            block["hash"].as_str().unwrap(),
            node.block_hash(height),
            "the js peer's hash of block {height} (its message id) is the block hash"
        );
    }
}

/// A js-libp2p peer whose connection monitor pings the node every second (and aborts the
/// connection when a ping fails), and which refuses the node's own pings: the node
/// answers every one, and the connection lives on.
#[test]
fn a_js_libp2p_peer_that_refuses_our_pings_still_gets_its_own_answered() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/js/monitor.mjs");
    let output = Command::new("node")
        .arg(&script)
        .args([node.p2p_addr(), "8".into()])
        .stderr(Stdio::inherit())
        .output()
        .expect("node (Node.js 20+) runs; scripts/setup installs it");
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["closed"], 0,
        "the monitor dropped the node: {report}"
    );
    assert_eq!(report["status"], "open", "{report}");
    assert!(report["rtt"].is_number(), "no ping was answered: {report}");
}

/// A third party's state root: a script written from docs/protocol.md alone, hashing with
/// WebCrypto as a browser would, recomputes every golden vector's state root and checks
/// its proofs (and that a proof of a changed balance fails).
#[test]
fn a_third_party_recomputes_the_state_roots_with_webcrypto() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("node")
        .arg(root.join("interop/js/state_root.mjs"))
        .arg(root.join("../core/tests/vectors"))
        .stderr(Stdio::inherit())
        .output()
        .expect("node (Node.js 20+) runs; scripts/setup installs it");
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["checked"].as_u64().unwrap() >= 17, "{report}");
}
