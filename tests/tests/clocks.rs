//! Wrong clocks (libfaketime, as an operator's machine might have them): a block ahead of a
//! node's clock is early, not wrong — it is not fetched again and again, nobody is banned
//! for it — and a node whose clock disagrees with its peers' blocks says so.

use apiary_system_tests::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// A node whose wall clock is `offset` (e.g. "+1h") off; its monotonic clock is true.
fn node_with_clock(dir: &Path, spec: &Path, offset: &str, args: &[&str]) -> NodeProcess {
    assert!(
        Path::new(FAKETIME).exists(),
        "libfaketime is missing: scripts/setup installs the faketime package"
    );
    let offset = offset.to_string();
    NodeProcess::start_with(dir, Some(spec), args, move |command| {
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
        &[
            "--peer",
            &pair.victim.p2p_addr(),
            "--peer",
            &pair.witness.p2p_addr(),
        ],
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
    for honest in [&pair.victim, &pair.witness] {
        assert_eq!(
            clock_warning(honest),
            None,
            "one peer's clock says nothing of ours"
        );
    }
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
        &[
            "--peer",
            &pair.victim.p2p_addr(),
            "--peer",
            &pair.witness.p2p_addr(),
        ],
    );
    wait_until(Duration::from_secs(30), "the slow node to connect", || {
        slow.peer_count() == 2
    });
    // Honest blocks an hour ahead of the slow node's clock, from one miner only: gossip
    // brings each once, from the miner; the follower's word is the chain it offers, held
    // back as not yet valid.
    pair.relays(3);
    wait_until(
        Duration::from_secs(30),
        "the slow node to warn about its clock",
        || clock_warning(&slow).is_some_and(|w| w.contains("behind")),
    );
    // And it says why its chain does not move: held back until an hour from its "now".
    let info = slow.rpc.call("node_info", json!({})).unwrap();
    let held_back = info["sync"]["held_back_until_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("held back: {info}"));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(held_back + 120_000 > now_ms, "{info}");
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

/// Old blocks say nothing of the clock: nodes catching up re-announce the blocks they
/// take, and a miner that already holds them must not count them (it warned for a minute
/// that its own clock was ahead).
#[test]
fn old_blocks_announced_again_do_not_make_a_miner_doubt_its_clock() {
    let dir = tempfile::TempDir::new().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let genesis_time = (now_ms - 1_200_000).to_string();
    let mut args = TEST_DIFFICULTY.to_vec();
    args.extend(["--genesis-time-ms", &genesis_time]);
    let spec = write_spec(dir.path(), &args);
    // Ten blocks mined by a clock ten minutes slow, then the miner's clock is put right.
    let listen = fixed_listen_addr();
    let miner_dir = dir.path().join("miner");
    let mut miner = node_with_clock(&miner_dir, &spec, "-10m", &["--listen", &listen]);
    miner.rpc.call("dev_mine", json!({"blocks": 10})).unwrap();
    let (tip, miner_addr) = (miner.tip(), miner.p2p_addr());
    assert!(miner.stop());
    // Two fresh nodes wait for it, so they are gossiping with it when they catch up and
    // announce the old blocks they take.
    let fresh: Vec<NodeProcess> = (0..2)
        .map(|i| {
            NodeProcess::start(
                &dir.path().join(format!("fresh-{i}")),
                Some(&spec),
                &["--peer", &miner_addr],
            )
            .unwrap()
        })
        .collect();
    let miner = NodeProcess::start(&miner_dir, Some(&spec), &["--listen", &listen]).unwrap();
    for node in &fresh {
        wait_until(Duration::from_secs(60), "a fresh node to catch up", || {
            node.tip() == tip
        });
    }
    // A new block reaches both after whatever they announced reached the miner.
    miner.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    let tip = miner.tip();
    for node in &fresh {
        wait_until(Duration::from_secs(30), "the new block to arrive", || {
            node.tip() == tip
        });
    }
    assert_eq!(
        clock_warning(&miner),
        None,
        "old blocks said nothing of the clock"
    );
}
