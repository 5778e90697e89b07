//! A damaged store is refused on every start, left as it is, with what to do; `--reindex`
//! then rebuilds the chain from what the store still holds, and a peer supplies the rest.
//! One test per kind of damage.

use apiary_system_tests::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// How the node is stopped before its store is damaged: a clean stop leaves the blocks in
/// table files, a crash leaves the newest in the write-ahead log.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Clean,
    Crash,
}

fn files(db: &Path, ending: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().ends_with(ending))
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    found
}

/// The largest file of `db` whose name ends with `ending`.
fn largest(db: &Path, ending: &str) -> PathBuf {
    files(db, ending)
        .pop()
        .unwrap_or_else(|| panic!("no *{ending} file in {}", db.display()))
}

fn flip_byte_in_the_middle(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// Every main-chain hash of `node`, by height.
fn chain_of(node: &NodeProcess) -> Vec<String> {
    (0..=node.rpc.tip_height())
        .map(|height| node.block_hash(height))
        .collect()
}

/// A peer holding a chain of 30 blocks with transactions, and a node that synced it and
/// was then stopped as `stop` says. Returns the dir, the spec, the peer and the node's
/// data dir.
fn synced_then_stopped(stop: Stop) -> (TempDir, PathBuf, NodeProcess, PathBuf) {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let peer = NodeProcess::start(&dir.path().join("peer"), Some(&spec), &[]).unwrap();
    for nonce in 0..5 {
        peer.submit_tx(&transfer(1, address(7), 1_000, 10_000, nonce));
        peer.rpc.call("dev_mine", json!({"blocks": 6})).unwrap();
    }
    let datadir = dir.path().join("node");
    let peer_addr = peer.p2p_addr();
    let mut node = NodeProcess::start(&datadir, Some(&spec), &["--peer", &peer_addr]).unwrap();
    let tip = peer.tip();
    wait_until(Duration::from_secs(60), "the node to sync", || {
        node.tip() == tip
    });
    match stop {
        Stop::Clean => assert!(node.stop()),
        Stop::Crash => node.kill9(),
    }
    (dir, spec, peer, datadir)
}

/// Every start of a node on `datadir` fails, saying the store is damaged and what to do,
/// and changes none of the store's files.
fn refused_three_times(datadir: &Path, spec: &Path) {
    let db = datadir.join("db");
    let before = store_files(&db);
    for attempt in 1..=3 {
        let log = NodeProcess::start(datadir, Some(spec), &[])
            .err()
            .unwrap_or_else(|| panic!("start {attempt} on a damaged store succeeded"));
        let last = log
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("");
        assert!(last.contains("damaged"), "start {attempt}: {last}");
        assert!(last.contains("--reindex"), "start {attempt}: {last}");
        assert_eq!(
            store_files(&db),
            before,
            "start {attempt} changed the store"
        );
    }
}

/// The files holding the store's data, with their sizes: table files and non-empty logs
/// (RocksDB may start a new empty log and rewrite its bookkeeping files when it opens a
/// store that our own checks then refuse; the data is what must stay as it was).
fn store_files(db: &Path) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(name, size)| name.ends_with(".sst") || (name.ends_with(".log") && *size > 0))
        .collect();
    found.sort();
    found
}

/// Where the chain comes back from after `--reindex`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    /// All of it from the damaged store itself (no peer is given).
    Store,
    /// What the store could not give, from the peer.
    StoreAndPeer,
}

/// `--reindex` brings the node back to the whole chain.
fn reindex_recovers(datadir: &Path, spec: &Path, peer: &NodeProcess, from: From) {
    let peer_addr = peer.p2p_addr();
    let mut args = vec!["--reindex"];
    if from == From::StoreAndPeer {
        args.extend(["--peer", &peer_addr]);
    }
    let node = NodeProcess::start(datadir, Some(spec), &args).expect("--reindex starts the node");
    let tip = peer.tip();
    wait_until(
        Duration::from_secs(60),
        "the node to have the chain again",
        || node.tip() == tip,
    );
    assert_eq!(chain_of(&node), chain_of(peer));
    // The supply adds up on the rebuilt state: the payments and every reward.
    assert_eq!(node.balance(&address_text(7)), 5_000);
    let set_aside: Vec<String> = std::fs::read_dir(datadir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("db.damaged-"))
        .collect();
    assert_eq!(set_aside.len(), 1, "the damaged store is kept aside");
}

#[test]
fn a_store_without_current_is_refused_and_reindex_recovers_it() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Clean);
    std::fs::remove_file(datadir.join("db/CURRENT")).unwrap();
    refused_three_times(&datadir, &spec);
    assert!(!datadir.join("db/CURRENT").exists());
    reindex_recovers(&datadir, &spec, &peer, From::Store);
}

#[test]
fn a_store_without_its_manifest_is_refused_and_reindex_recovers_it() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Clean);
    for manifest in std::fs::read_dir(datadir.join("db")).unwrap() {
        let path = manifest.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("MANIFEST-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    refused_three_times(&datadir, &spec);
    reindex_recovers(&datadir, &spec, &peer, From::Store);
}

#[test]
fn a_truncated_table_file_is_refused_and_reindex_recovers() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Clean);
    let table = largest(&datadir.join("db"), ".sst");
    let length = std::fs::metadata(&table).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    refused_three_times(&datadir, &spec);
    reindex_recovers(&datadir, &spec, &peer, From::StoreAndPeer);
}

#[test]
fn a_removed_table_file_is_refused_and_reindex_recovers() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Clean);
    std::fs::remove_file(largest(&datadir.join("db"), ".sst")).unwrap();
    refused_three_times(&datadir, &spec);
    reindex_recovers(&datadir, &spec, &peer, From::StoreAndPeer);
}

#[test]
fn a_damaged_write_ahead_log_is_refused_and_reindex_recovers() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Crash);
    flip_byte_in_the_middle(&largest(&datadir.join("db"), ".log"));
    refused_three_times(&datadir, &spec);
    reindex_recovers(&datadir, &spec, &peer, From::StoreAndPeer);
}

#[test]
fn a_removed_write_ahead_log_is_refused_and_reindex_recovers() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Crash);
    for log in files(&datadir.join("db"), ".log") {
        std::fs::remove_file(log).unwrap();
    }
    refused_three_times(&datadir, &spec);
    reindex_recovers(&datadir, &spec, &peer, From::StoreAndPeer);
}

/// A flipped byte inside a table file is found when the node reads it (at start, or when
/// a block in it is asked for): the node stops rather than serve it, every later start is
/// refused, and `--reindex` recovers the chain.
#[test]
fn a_flipped_byte_in_a_table_file_stops_the_node_and_reindex_recovers() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Clean);
    flip_byte_in_the_middle(&largest(&datadir.join("db"), ".sst"));
    let truth = chain_of(&peer);
    if let Ok(mut node) = NodeProcess::start(&datadir, Some(&spec), &[]) {
        // Whatever it still answers is right; the damaged block stops it.
        for (height, hash) in truth.iter().enumerate() {
            match node.rpc.call("block_get", json!({"height": height})) {
                Ok(block) => assert_eq!(block["hash"].as_str().unwrap(), hash),
                Err(error) => {
                    assert!(error.code == -32031 || error.http_status == 0, "{error:?}");
                    break;
                }
            }
        }
        wait_until(Duration::from_secs(30), "the node to stop", || {
            node.has_exited_with_failure()
        });
        node.kill9();
    }
    refused_three_times(&datadir, &spec);
    reindex_recovers(&datadir, &spec, &peer, From::StoreAndPeer);
}

/// `--resync` sets a damaged store aside, kept, and the node downloads the chain again.
#[test]
fn resync_sets_a_damaged_store_aside_and_downloads_the_chain() {
    let (_dir, spec, peer, datadir) = synced_then_stopped(Stop::Clean);
    std::fs::remove_file(datadir.join("db/CURRENT")).unwrap();
    refused_three_times(&datadir, &spec);
    let damaged = store_files(&datadir.join("db"));
    let peer_addr = peer.p2p_addr();
    let node = NodeProcess::start(&datadir, Some(&spec), &["--resync", "--peer", &peer_addr])
        .expect("--resync starts the node");
    let tip = peer.tip();
    wait_until(
        Duration::from_secs(60),
        "the node to download the chain",
        || node.tip() == tip,
    );
    assert_eq!(chain_of(&node), chain_of(&peer));
    let set_aside: Vec<PathBuf> = std::fs::read_dir(&datadir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("db.set-aside-")
        })
        .collect();
    assert_eq!(set_aside.len(), 1);
    assert_eq!(store_files(&set_aside[0]), damaged, "kept as it was");
}
