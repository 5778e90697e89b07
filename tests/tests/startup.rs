//! What a user meets when something is wrong at start: each a clear error, never a hang.

use apiary_system_tests::*;
use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

/// Runs a node of `spec` on `datadir` (RPC on port 0) with `extra`, expecting it to fail.
fn node_fails_on(spec: &Path, datadir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "--genesis",
        spec.to_str().unwrap(),
        "--datadir",
        datadir.to_str().unwrap(),
    ];
    if !extra.contains(&"--rpc-addr") {
        args.extend(["--rpc-addr", "127.0.0.1:0"]);
    }
    args.extend(extra);
    node_fails(&args)
}

fn node_fails(args: &[&str]) -> String {
    let output = Command::new(bin("apiary-node"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "apiary-node {args:?} should have failed"
    );
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn malformed_spec_files_name_the_line() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let text = std::fs::read_to_string(&spec).unwrap();
    let check = run("apiary-genesis", &["check", spec.to_str().unwrap()]);
    assert!(check.status.success());

    let broken = dir.path().join("broken.toml");
    let bad_line = text
        .lines()
        .position(|l| l.starts_with("max_block_txs"))
        .unwrap()
        + 1;
    std::fs::write(
        &broken,
        text.replace("max_block_txs = 20000", "max_block_txs = \"many\""),
    )
    .unwrap();
    let check = run("apiary-genesis", &["check", broken.to_str().unwrap()]);
    assert!(!check.status.success());
    let message = String::from_utf8_lossy(&check.stderr);
    assert!(message.contains(&format!("line {bad_line}")), "{message}");

    let message = node_fails(&[
        "--genesis",
        broken.to_str().unwrap(),
        "--datadir",
        dir.path().join("n").to_str().unwrap(),
    ]);
    assert!(message.contains(&format!("line {bad_line}")), "{message}");
    let message = node_fails(&[
        "--genesis",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert!(message.contains("cannot read chain spec"), "{message}");
}

#[test]
fn busy_port_busy_datadir_and_foreign_datadir_are_clear_errors() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();

    let addr = node
        .rpc
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let other = dir.path().join("other");
    let message = node_fails_on(&spec, &other, &["--rpc-addr", &addr]);
    assert!(message.contains("already in use"), "{message}");

    // The same for the p2p port (libp2p alone would share it silently).
    let p2p = node.p2p_addr();
    let listen = p2p.split("/p2p/").next().unwrap();
    let message = node_fails_on(&spec, &other, &["--listen", listen]);
    assert!(message.contains("port is already in use"), "{message}");

    let message = node_fails_on(&spec, &datadir, &[]);
    assert!(
        message.contains("in use by another apiary-node"),
        "{message}"
    );
    drop(node);

    // The devnet refuses a data dir of the test chain.
    let message = node_fails(&[
        "--datadir",
        datadir.to_str().unwrap(),
        "--rpc-addr",
        "127.0.0.1:0",
    ]);
    assert!(message.contains("another chain"), "{message}");

    // A clean stop removes the cookie and exits 0.
    let mut node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    assert!(node.stop());
    assert!(!datadir.join("rpc.cookie").exists());
}

#[test]
fn a_chain_made_with_apiary_genesis_runs_and_survives_corruption_checks() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    node.rpc
        .call("dev_mine", serde_json::json!({"blocks": 2}))
        .unwrap();
    drop(node);

    // Corrupt the RocksDB manifest: refused at start with the reason and what to do.
    let db = datadir.join("db");
    let current = std::fs::read_to_string(db.join("CURRENT")).unwrap();
    std::fs::write(db.join(current.trim()), b"garbage").unwrap();
    let message = node_fails_on(&spec, &datadir, &[]);
    assert!(message.contains("is damaged"), "{message}");
    assert!(message.contains("--reindex"), "{message}");
}

/// SIGTERM is a clean stop however soon it comes: every stop exits 0 with the store
/// closed (a thread that outlived `main` once made RocksDB abort in about one stop of
/// three).
#[test]
fn a_stop_right_after_start_is_clean() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    for round in 0..10 {
        let mut node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
        assert!(node.stop(), "stop {round} was not clean:\n{}", node.log());
    }
    // And the data dir opens again as the same chain.
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    assert_eq!(node.tip().0, 0);
}

#[test]
fn a_peer_address_the_node_cannot_dial_is_refused_at_start() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("n");
    for (peer, reason) in [
        ("/ip4/192.0.2.7/udp/9798/quic-v1", "/udp is not a transport"),
        ("/dns4/node-1/tcp/0", "port 0"),
        ("/dns4/node-1", "no /tcp/<port>"),
    ] {
        let message = node_fails_on(&spec, &datadir, &["--peer", peer]);
        let first = message.lines().next().unwrap_or_default();
        assert!(
            first.contains(reason) && first.contains(peer),
            "{peer}: {message}"
        );
    }
    // The same rule for a peer in the config file.
    let config = dir.path().join("apiary.toml");
    std::fs::write(&config, "peer = [\"/ip4/192.0.2.7/tcp/9798/ws\"]\n").unwrap();
    let message = node_fails_on(&spec, &datadir, &["--config", config.to_str().unwrap()]);
    assert!(message.contains("/ws is not a transport"), "{message}");
}
