//! Wrong clocks (libfaketime, as an operator's machine might have them): a block ahead of a
//! node's clock is early, not wrong — it is not fetched again and again, nobody is banned
//! for it — and a node whose clock disagrees with its peers' blocks says so.

use apiary_system_tests::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A node whose wall clock is `offset` (e.g. "+1h") off; its monotonic clock is true.
fn node_with_clock(dir: &Path, spec: &Path, offset: &str, peers: &[&str]) -> NodeProcess {
    assert!(
        Path::new(FAKETIME).exists(),
        "libfaketime is missing: scripts/setup installs the faketime package"
    );
    let mut args = Vec::new();
    for peer in peers {
        args.extend(["--peer", peer]);
    }
    let offset = offset.to_string();
    NodeProcess::start_with(dir, Some(spec), &args, move |command| {
        command
            .env("LD_PRELOAD", FAKETIME)
            .env("FAKETIME", &offset)
            .env("DONT_FAKE_MONOTONIC", "1");
    })
    .unwrap()
}

fn clock_warning(node: &NodeProcess) -> Option<String> {
    node.rpc.call("node_info", json!({})).unwrap()["clock_warning"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_miner_an_hour_ahead_is_not_banned_and_bans_no_one() {
    let pair = Pair::start();
    let fast = node_with_clock(
        &pair.dir.path().join("fast"),
        &pair.spec,
        "+1h",
        &[&pair.victim.p2p_addr(), &pair.witness.p2p_addr()],
    );
    wait_until(Duration::from_secs(30), "the fast miner to connect", || {
        fast.peer_count() == 2
    });
    let (fast_id, victim_id) = (fast.peer_id(), pair.victim.peer_id());
    // It mines blocks stamped an hour ahead, the honest pair mines on.
    for _ in 0..5 {
        fast.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
        pair.relays(1);
    }
    // Early is not wrong: nobody pays for it, either way.
    assert_eq!(score_of(&pair.victim, &fast_id), Some(0));
    assert_eq!(score_of(&pair.witness, &fast_id), Some(0));
    assert_eq!(
        score_of(&fast, &victim_id),
        Some(0),
        "the honest node was not banned"
    );
    // The honest nodes did not take its blocks, and say the truth.
    assert_eq!(pair.victim.tip(), pair.witness.tip());
    assert_truthful(&pair.victim);
    assert_eq!(
        clock_warning(&pair.victim),
        None,
        "one peer's clock says nothing of ours"
    );
    // The fast node hears blocks from two peers arriving an hour "late": it warns.
    pair.witness
        .rpc
        .call("dev_mine", json!({"blocks": 1}))
        .unwrap();
    pair.victim
        .rpc
        .call("dev_mine", json!({"blocks": 1}))
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the fast node to warn about its clock",
        || clock_warning(&fast).is_some_and(|w| w.contains("ahead")),
    );
}

#[test]
fn a_node_an_hour_behind_says_its_clock_is_wrong_and_bans_no_one() {
    let pair = Pair::start();
    let slow = node_with_clock(
        &pair.dir.path().join("slow"),
        &pair.spec,
        "-1h",
        &[&pair.victim.p2p_addr(), &pair.witness.p2p_addr()],
    );
    wait_until(Duration::from_secs(30), "the slow node to connect", || {
        slow.peer_count() == 2
    });
    // Honest blocks, from both honest nodes: an hour ahead of the slow node's clock.
    for _ in 0..3 {
        pair.relays(1);
        pair.witness
            .rpc
            .call("dev_mine", json!({"blocks": 1}))
            .unwrap();
    }
    wait_until(
        Duration::from_secs(20),
        "the slow node to warn about its clock",
        || clock_warning(&slow).is_some_and(|w| w.contains("behind")),
    );
    let slow_id = slow.peer_id();
    for peer in [pair.victim.peer_id(), pair.witness.peer_id()] {
        assert_eq!(
            score_of(&slow, &peer),
            Some(0),
            "an honest peer was held to blame"
        );
    }
    assert_eq!(score_of(&pair.victim, &slow_id), Some(0));
    // It took none of the blocks, and does not pretend to be syncing toward them.
    assert_eq!(slow.tip().0, 0);
    assert_truthful(&slow);
}
