//! Several real nodes on 127.0.0.1: gossip, sync, a node killed and restarted, a late
//! joiner, and a node of another chain kept out.

use apiary_system_tests::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// An ephemeral loopback port (what `NodeProcess` uses unless told otherwise).
const EPHEMERAL: &str = "/ip4/127.0.0.1/tcp/0";

fn start_peer(dir: &Path, name: &str, spec: &Path, bootnode: Option<&str>) -> NodeProcess {
    let mut args = vec!["--mine-threads", "1"];
    if let Some(addr) = bootnode {
        args.extend(["--peer", addr]);
    }
    NodeProcess::start(&dir.join(name), Some(spec), &args).unwrap()
}

/// Three nodes, the last two started with the first as their bootnode; returns its address.
fn star(dir: &Path, spec: &Path) -> (NodeProcess, NodeProcess, NodeProcess, String) {
    let n0 = start_peer(dir, "n0", spec, None);
    let boot = n0.p2p_addr();
    let n1 = start_peer(dir, "n1", spec, Some(&boot));
    let n2 = start_peer(dir, "n2", spec, Some(&boot));
    (n0, n1, n2, boot)
}

fn wait_for_tip(nodes: &[&NodeProcess], tip: &(u64, String)) {
    wait_until(
        Duration::from_secs(60),
        &format!("every node to reach {tip:?}"),
        || nodes.iter().all(|n| n.tip() == *tip),
    );
}

#[test]
fn nodes_gossip_sync_and_recover_from_a_kill() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (n0, mut n1, n2, boot) = star(dir.path(), &spec);
    wait_until(Duration::from_secs(30), "peers to connect", || {
        n0.peer_count() == 2 && n1.peer_count() >= 1 && n2.peer_count() >= 1
    });

    n0.rpc.call("dev_mine", json!({"blocks": 5})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());

    // A payment sent to n2 reaches n0's mempool by gossip and confirms everywhere.
    let stx = transfer(2, address(7), 123_000, 10_000, 0);
    let txid = n2.submit_tx(&stx);
    wait_until(Duration::from_secs(30), "the tx to reach n0", || {
        n0.mempool_count() == 1
    });
    n0.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());
    for node in [&n0, &n1, &n2] {
        assert_eq!(node.tx_status(&txid), "confirmed");
        assert_eq!(node.balance(&address_text(7)), 123_000);
    }

    // n1 dies; the others go on; n1 comes back and catches up by itself.
    n1.kill9();
    n0.rpc.call("dev_mine", json!({"blocks": 30})).unwrap();
    wait_for_tip(&[&n0, &n2], &n0.tip());
    let n1 = start_peer(dir.path(), "n1", &spec, Some(&boot));
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());

    // A late joiner that knows only n2 gets the whole chain, thousands of blocks long.
    n0.rpc.call("dev_mine", json!({"blocks": 2000})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());
    let n3 = start_peer(dir.path(), "n3", &spec, Some(&n2.p2p_addr()));
    wait_for_tip(&[&n0, &n3], &n0.tip());
    assert_eq!(n3.tip().0, 2036);
    let info = n3.rpc.call("node_info", json!({})).unwrap();
    assert_eq!(info["syncing"], false);
    assert_eq!(info["sync"]["best_known_height"], 2036);
}

/// Blocks travel in compact form (header and txids); a node that lacks some of a block's
/// transactions fetches the whole block from the peer that announced it.
#[test]
fn a_block_with_transactions_a_peer_lacks_is_fetched_whole() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let n0 = start_peer(dir.path(), "n0", &spec, None);
    let n1 = start_peer(dir.path(), "n1", &spec, Some(&n0.p2p_addr()));
    wait_until(Duration::from_secs(30), "peers to connect", || {
        n0.peer_count() == 1 && n1.peer_count() == 1
    });
    // A payment n0 pulls from a third node's mempool after n1 pulled n0's: pulled
    // transactions are not gossiped again, so it never reaches n1.
    let n2 = start_peer(dir.path(), "n2", &spec, None);
    // n1 could find n2 through n0's DHT and pull its mempool itself: n2 will not have it.
    n2.rpc
        .call(
            "net_disconnect",
            json!({"peer_id": n1.peer_id(), "ban_seconds": 3600}),
        )
        .unwrap();
    let unseen = transfer(2, address(7), 55_000, 10_000, 0);
    let unseen_id = n2.submit_tx(&unseen);
    n0.rpc
        .call("net_connect", json!({"addr": n2.p2p_addr()}))
        .unwrap();
    wait_until(Duration::from_secs(30), "n0 to pull n2's payment", || {
        n0.tx_status(&unseen_id) == "pending"
    });
    // An empty block from n1, so both have gossiped before the test proper.
    n1.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_for_tip(&[&n0, &n1], &n1.tip());
    // A payment that does travel, so gossip is known to flow from n1 to n0.
    let seen = transfer(3, address(8), 66_000, 10_000, 0);
    n1.submit_tx(&seen);
    wait_until(Duration::from_secs(30), "n1's payment to reach n0", || {
        n0.mempool_count() == 2
    });
    assert_eq!(n1.mempool_count(), 1, "n1 never saw the first payment");

    n0.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_for_tip(&[&n0, &n1], &n0.tip());
    // n1 could not rebuild the block from its mempool: it has it, all the same.
    assert_eq!(n1.tip().0, 2);
    assert_eq!(n1.tx_status(&unseen_id), "confirmed");
    assert_eq!(n1.balance(&address_text(7)), 55_000);
    assert_eq!(n1.balance(&address_text(8)), 66_000);
    assert_eq!(n1.mempool_count(), 0);
}

/// Five nodes, two mining for real; each is killed in turn and comes back.
#[test]
fn any_single_loss_is_survived() {
    let dir = TempDir::new().unwrap();
    // Blocks of about 300 ms at a few thousand hashes: real forks, quick convergence.
    let spec = write_spec(
        dir.path(),
        &[
            "--block-time-ms",
            "300",
            "--half-life-ms",
            "3000",
            "--initial-hashes",
            "4096",
            "--min-hashes",
            "256",
        ],
    );
    let miner = address_text(9);
    // Restarted nodes listen where they did before, so their peers find them again.
    let args = |index: usize, listen: &str, boot: Option<&str>| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            listen.to_string(),
            "--mine-threads".into(),
            "1".into(),
        ];
        if index < 2 {
            args.extend(["--mine".into(), "--miner-address".into(), miner.clone()]);
        }
        if let Some(boot) = boot {
            args.extend(["--peer".into(), boot.to_string()]);
        }
        args
    };
    let start = |index: usize, listen: &str, boot: Option<&str>| {
        let owned = args(index, listen, boot);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        NodeProcess::start(&dir.path().join(format!("n{index}")), Some(&spec), &refs).unwrap()
    };
    let listen_of = |node: &NodeProcess| node.p2p_addr().split("/p2p/").next().unwrap().to_string();
    let first = start(0, EPHEMERAL, None);
    let boot = first.p2p_addr();
    let second = start(1, EPHEMERAL, Some(&boot));
    let second_addr = second.p2p_addr();
    let mut listens = vec![listen_of(&first), listen_of(&second)];
    let mut nodes: Vec<Option<NodeProcess>> = vec![Some(first), Some(second)];
    for index in 2..5 {
        // Everyone knows two nodes, so losing any one leaves it connected.
        let node = start(index, EPHEMERAL, Some(&boot));
        node.rpc
            .call("net_connect", json!({"addr": second_addr}))
            .unwrap();
        listens.push(listen_of(&node));
        nodes.push(Some(node));
    }
    let live = |nodes: &Vec<Option<NodeProcess>>| {
        nodes.iter().flatten().map(|n| n.tip()).collect::<Vec<_>>()
    };
    wait_until(
        Duration::from_secs(60),
        "the network to make progress",
        || live(&nodes).iter().all(|t| t.0 >= 5),
    );

    for victim in 0..5 {
        let mut node = nodes[victim].take().unwrap();
        node.kill9();
        let before = live(&nodes).iter().map(|t| t.0).max().unwrap();
        let what = format!("the others to keep extending after node {victim} died (from {before})");
        wait_until(Duration::from_secs(60), &what, || {
            live(&nodes).iter().all(|t| t.0 >= before + 3)
        });
        let boot = if victim == 0 {
            second_addr.clone()
        } else {
            boot.clone()
        };
        let node = start(victim, &listens[victim], Some(&boot));
        let target = live(&nodes).iter().map(|t| t.0).max().unwrap();
        nodes[victim] = Some(node);
        wait_until(
            Duration::from_secs(60),
            "the restarted node to catch up",
            || nodes[victim].as_ref().unwrap().tip().0 >= target,
        );
    }
    // With miners running the tip moves; all five agree at some instant.
    wait_until(Duration::from_secs(60), "all tips to agree", || {
        let tips = live(&nodes);
        tips.iter().all(|t| t.1 == tips[0].1)
    });
}

#[test]
fn a_node_of_another_chain_is_refused_and_says_why() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let n0 = start_peer(dir.path(), "n0", &spec, None);
    n0.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    // The devnet: another genesis.
    let other =
        NodeProcess::start(&dir.path().join("other"), None, &["--peer", &n0.p2p_addr()]).unwrap();
    wait_until(Duration::from_secs(30), "the connection to close", || {
        n0.peer_count() == 0 && other.peer_count() == 0
    });
    assert_eq!(
        other.tip().0,
        0,
        "nothing of the test chain reached the devnet node"
    );
}

#[test]
fn partition_and_heal_ends_on_most_work_and_loses_no_tx() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (n0, n1, n2, boot) = star(dir.path(), &spec);
    let n2_addr = n2.p2p_addr();
    let extra = ["--mine-threads", "1", "--peer", &boot, "--peer", &n2_addr];
    let n3 = NodeProcess::start(&dir.path().join("n3"), Some(&spec), &extra).unwrap();
    let n4 = NodeProcess::start(&dir.path().join("n4"), Some(&spec), &extra).unwrap();
    let (side_a, side_b) = ([&n0, &n1], [&n2, &n3, &n4]);
    wait_until(Duration::from_secs(30), "all five to connect", || {
        n0.peer_count() == 4 && n2.peer_count() >= 3
    });
    n0.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2, &n3, &n4], &n0.tip());

    // Split 2 | 3: each side drops and bans the other.
    for a in side_a {
        for b in side_b {
            a.rpc
                .call(
                    "net_disconnect",
                    json!({"peer_id": b.peer_id(), "ban_seconds": 3600}),
                )
                .unwrap();
            b.rpc
                .call(
                    "net_disconnect",
                    json!({"peer_id": a.peer_id(), "ban_seconds": 3600}),
                )
                .unwrap();
        }
    }
    wait_until(Duration::from_secs(30), "the partition", || {
        n0.peer_count() == 1 && n2.peer_count() == 2
    });

    // Both sides mine; side B mines more. Each side confirms a payment of its own.
    let tx_a = transfer(2, address(7), 70_000, 10_000, 0);
    let txid_a = n1.submit_tx(&tx_a);
    wait_until(Duration::from_secs(30), "tx A to reach n0", || {
        n0.mempool_count() == 1
    });
    n0.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    let tx_b = transfer(3, address(8), 80_000, 10_000, 0);
    n3.submit_tx(&tx_b);
    wait_until(Duration::from_secs(30), "tx B to reach n2", || {
        n2.mempool_count() == 1
    });
    n2.rpc.call("dev_mine", json!({"blocks": 4})).unwrap();
    wait_for_tip(&side_a, &n0.tip());
    wait_for_tip(&side_b, &n2.tip());
    assert_eq!(n1.tx_status(&txid_a), "confirmed");
    assert_ne!(n0.tip(), n2.tip());

    // Heal: every node ends on side B's chain, which has more work.
    for a in side_a {
        for b in side_b {
            a.rpc
                .call("net_connect", json!({"addr": b.p2p_addr()}))
                .unwrap();
            b.rpc
                .call("net_connect", json!({"addr": a.p2p_addr()}))
                .unwrap();
        }
    }
    let best = n2.tip();
    wait_for_tip(&[&n0, &n1, &n2, &n3, &n4], &best);

    // Tx A was confirmed only on the losing side: it is pending again, then confirms.
    assert_eq!(n0.tx_status(&txid_a), "pending");
    n0.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2, &n3, &n4], &n0.tip());
    for node in [&n0, &n1, &n2, &n3, &n4] {
        assert_eq!(node.tx_status(&txid_a), "confirmed");
        assert_eq!(node.balance(&address_text(7)), 70_000);
        assert_eq!(node.balance(&address_text(8)), 80_000);
    }
}

#[test]
fn a_double_spend_confirms_once_and_supply_adds_up() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (n0, n1, n2, _) = star(dir.path(), &spec);
    wait_until(Duration::from_secs(30), "peers to connect", || {
        n0.peer_count() == 2
    });

    // Same sender, same nonce, different payees, sent to two nodes at once.
    let first = transfer(2, address(7), 500_000, 10_000, 0);
    let second = transfer(2, address(8), 600_000, 20_000, 0);
    let (r1, r2) = std::thread::scope(|s| {
        let a = s.spawn(|| n1.try_submit_tx(&first));
        let b = s.spawn(|| n2.try_submit_tx(&second));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        r1.is_ok() || r2.is_ok(),
        "at least one is accepted: {r1:?} {r2:?}"
    );
    wait_until(
        Duration::from_secs(30),
        "one of them to reach the miner",
        || n0.mempool_count() == 1,
    );
    n0.rpc.call("dev_mine", json!({"blocks": 3})).unwrap();
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());

    let height = n0.tip().0;
    for node in [&n0, &n1, &n2] {
        let statuses = [first.txid(), second.txid()].map(|t| node.tx_status(&t.to_string()));
        assert_eq!(
            statuses.iter().filter(|s| *s == "confirmed").count(),
            1,
            "{statuses:?}"
        );
        let paid = node.balance(&address_text(7)) + node.balance(&address_text(8));
        assert!(
            paid == 500_000 || paid == 600_000,
            "exactly one payment arrived: {paid}"
        );
        // Three allocations of 1,000 coins plus 50 per block; fees only move coins.
        let total: u64 = [
            address_text(1),
            address_text(2),
            address_text(3),
            address_text(7),
            address_text(8),
        ]
        .iter()
        .map(|a| node.balance(a))
        .sum();
        assert_eq!(total, (3_000 + 50 * height) * 100_000_000);
        assert_eq!(node.mempool_count(), 0, "the loser left every mempool");
    }
}

/// Nodes that only know a neighbour find the rest through Kademlia.
#[test]
fn peers_are_discovered_through_the_dht() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let mut chain = vec![start_peer(dir.path(), "n0", &spec, None)];
    for index in 1..4 {
        let previous = chain[index - 1].p2p_addr();
        chain.push(start_peer(
            dir.path(),
            &format!("n{index}"),
            &spec,
            Some(&previous),
        ));
    }
    let first = chain[0].peer_id();
    let knows_first = |node: &NodeProcess| peer_entry(node, first.as_str()).is_some();
    wait_until(
        Duration::from_secs(60),
        "the last node to find the first",
        || knows_first(&chain[3]),
    );
    // And what it finds is usable: a block mined at one end reaches the other.
    chain[0].rpc.call("dev_mine", json!({"blocks": 3})).unwrap();
    wait_for_tip(&chain.iter().collect::<Vec<_>>(), &chain[0].tip());
}

/// With `--mdns`, nodes on the same LAN find each other without any `--peer`.
#[test]
fn peers_on_the_lan_are_found_by_mdns() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let lan = ["--mdns", "--listen", "/ip4/0.0.0.0/tcp/0"];
    let a = NodeProcess::start(&dir.path().join("a"), Some(&spec), &lan).unwrap();
    let b = NodeProcess::start(&dir.path().join("b"), Some(&spec), &lan).unwrap();
    let a_id = a.peer_id();
    wait_until(Duration::from_secs(60), "b to find a on the LAN", || {
        b.rpc
            .call("net_peers", json!({}))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == a_id.as_str())
    });
    a.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    wait_for_tip(&[&a, &b], &a.tip());
}

/// A new node that knows three peers downloads the headers from one and the blocks from
/// several at once, and ends on the same chain.
#[test]
fn a_new_node_downloads_blocks_from_several_peers() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (n0, n1, n2, _) = star(dir.path(), &spec);
    wait_until(Duration::from_secs(30), "peers to connect", || {
        n0.peer_count() == 2
    });
    // Blocks with transactions, so bodies are not trivial.
    for nonce in 0..5 {
        let stx = transfer(1, address(9), 1_000, 10_000, nonce);
        n0.submit_tx(&stx);
        n0.rpc.call("dev_mine", json!({"blocks": 300})).unwrap();
    }
    wait_for_tip(&[&n0, &n1, &n2], &n0.tip());
    let peers = [n0.p2p_addr(), n1.p2p_addr(), n2.p2p_addr()];
    let mut args = vec!["--mine-threads", "1"];
    for addr in &peers {
        args.extend(["--peer", addr.as_str()]);
    }
    let late = NodeProcess::start(&dir.path().join("late"), Some(&spec), &args).unwrap();
    wait_for_tip(&[&n0, &late], &n0.tip());
    let info = late.rpc.call("node_info", json!({})).unwrap();
    let suppliers = info["sync"]["download_peers"].as_u64().unwrap();
    assert!(
        suppliers >= 2,
        "bodies came from {suppliers} peer(s): {}",
        late.log()
    );
    assert_eq!(late.balance(&address_text(9)), 5_000);
}

/// Each node pings the other (the standard `/ipfs/ping/1.0.0`) and shows the round trip.
#[test]
fn peers_ping_each_other_and_show_the_round_trip() {
    let pair = Pair::start();
    for (node, other) in [(&pair.victim, &pair.witness), (&pair.witness, &pair.victim)] {
        let other = other.peer_id();
        wait_until(Duration::from_secs(30), "a ping's round trip", || {
            peer_entry(node, &other).is_some_and(|p| p["rtt_ms"].is_u64())
        });
    }
}

/// A payment gossiped while the only miner was down reaches it when it comes back: peers
/// that meet pull what each other's mempools hold. No wallet resends it.
#[test]
fn a_payment_sent_while_the_only_miner_was_down_confirms_when_it_returns() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let listen = fixed_listen_addr();
    let payee = address_text(9);
    let miner_args = [
        "--listen",
        &listen,
        "--mine",
        "--miner-address",
        &payee,
        "--mine-interval-ms",
        "300",
    ];
    let miner_dir = dir.path().join("miner");
    let mut miner = NodeProcess::start(&miner_dir, Some(&spec), &miner_args).unwrap();
    let miner_addr = miner.p2p_addr();
    let a =
        NodeProcess::start(&dir.path().join("a"), Some(&spec), &["--peer", &miner_addr]).unwrap();
    let b = NodeProcess::start(
        &dir.path().join("b"),
        Some(&spec),
        &["--peer", &a.p2p_addr()],
    )
    .unwrap();
    // b may also find the miner through a's DHT and dial it: at least a is enough.
    wait_until(Duration::from_secs(30), "the nodes to connect", || {
        a.peer_count() == 2 && b.peer_count() >= 1
    });
    assert!(miner.stop());
    let payment = transfer(1, address(7), 12_345, 10_000, 0);
    let txid = a.submit_tx(&payment);
    wait_until(Duration::from_secs(30), "the payment to reach b", || {
        b.tx_status(&txid) == "pending"
    });
    // The miner comes back with an empty mempool; a redials it.
    let miner = NodeProcess::start(&miner_dir, Some(&spec), &miner_args).unwrap();
    wait_until(Duration::from_secs(60), "the payment to confirm", || {
        a.tx_status(&txid) == "confirmed"
    });
    wait_until(Duration::from_secs(30), "b to see it paid", || {
        b.balance(&address_text(7)) == 12_345
    });
    drop(miner);
}

/// `localhost` in place of the peer's IP: the name is resolved at the dial, as a service
/// name is in compose or Kubernetes.
fn by_name(addr: &str) -> String {
    addr.replace("/ip4/127.0.0.1/", "/dns4/localhost/")
}

#[test]
fn a_peer_given_by_dns_name_connects() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let n0 = start_peer(dir.path(), "n0", &spec, None);
    let boot = by_name(&n0.p2p_addr());
    assert!(boot.starts_with("/dns4/localhost/tcp/"), "{boot}");
    let n1 = start_peer(dir.path(), "n1", &spec, Some(&boot));
    wait_until(Duration::from_secs(30), "n1 to dial n0 by name", || {
        peer_entry(&n1, &n0.peer_id()).is_some()
    });
    // And through net_connect, to a node nobody told about n0.
    let n2 = start_peer(dir.path(), "n2", &spec, None);
    n2.rpc
        .call("net_connect", json!({"addr": boot}))
        .expect("a /dns4 address is accepted");
    wait_until(Duration::from_secs(30), "n2 to dial n0 by name", || {
        peer_entry(&n2, &n0.peer_id()).is_some()
    });
}

#[test]
fn net_connect_refuses_an_address_it_cannot_dial() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = start_peer(dir.path(), "n0", &spec, None);
    let error = node
        .rpc
        .call(
            "net_connect",
            json!({"addr": "/ip4/127.0.0.1/udp/9798/quic-v1"}),
        )
        .unwrap_err();
    assert_eq!(error.code, -32602, "invalid params");
    assert!(
        error.message.contains("/udp is not a transport"),
        "{}",
        error.message
    );
    assert_eq!(node.peer_count(), 0);
}

/// Gossipsub's own counters are on /metrics: transactions gossiped to a peer show there as
/// messages received on the transactions' topic, before and after duplicates are filtered.
#[test]
fn gossiped_copies_are_counted_on_metrics() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (first, second) = connected_pair(dir.path(), &spec, ["first", "second"]);
    let on_tx_topic = |node: &NodeProcess, name: &str| {
        metrics::sum(&metrics::scrape(&node.rpc.url), name, "hash", |topic| {
            topic.ends_with("/txs")
        })
    };
    // Until the peers have told each other their topics a transaction reaches the other
    // through the mempool exchange instead: send another until one goes by gossip.
    let mut nonce = 0;
    wait_until(Duration::from_secs(30), "a gossiped transaction", || {
        // At most 16 may wait for a block (the pool's limit on nonces ahead).
        if nonce < 16 {
            first.submit_tx(&transfer(2, address(7), 1_000, 10_000, nonce));
            nonce += 1;
        }
        on_tx_topic(&second, "apiary_gossipsub_topic_msg_recv_counts_total") >= 1.0
    });
    let unfiltered = on_tx_topic(
        &second,
        "apiary_gossipsub_topic_msg_recv_counts_unfiltered_total",
    );
    assert!(unfiltered >= 1.0, "copies received: {unfiltered}");
}
