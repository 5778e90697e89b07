//! Hostile peers on gossip and on the wire, one attack per test: the node stays up and
//! answers RPC, forwards none of it, honest blocks still reach the witness as fast as
//! gossip brings them, and the attacker pays (a ban, or a score the node shows).

use apiary_core::{Block, Hash256};
use apiary_system_tests::hostile::Hostile;
use apiary_system_tests::*;
use std::time::Duration;

/// A block on genesis paying key 9, nonce 0, with no proof of work searched yet.
fn block_on_genesis(pair: &Pair) -> Block {
    let spec = apiary_genesis::load_spec(&pair.spec).unwrap();
    let genesis = &pair.genesis;
    apiary_node::miner::assemble_block(
        &spec.genesis_state(),
        &spec,
        &apiary_core::ParentContext {
            hash: genesis.hash(),
            height: genesis.header.height,
            bits: genesis.header.bits,
            timestamp_ms: genesis.header.timestamp_ms,
            solve_time_ms: None,
            median_time_past_ms: genesis.header.timestamp_ms,
        },
        address(9),
        vec![],
        genesis.header.timestamp_ms.0 + 1,
    )
    .unwrap()
}

fn attacker(pair: &Pair) -> Hostile {
    Hostile::connect(&pair.victim.p2p_addr(), &pair.genesis.hash())
}

/// After the attack: the victim is up and truthful, the witness saw nothing of it, and
/// honest blocks travel by gossip.
fn survived(pair: &Pair) {
    assert_truthful(&pair.victim);
    assert_eq!(
        pair.witness.mempool_count(),
        0,
        "nothing of the attack was forwarded"
    );
    pair.relays(2);
    assert_truthful(&pair.witness);
}

#[test]
fn a_block_without_its_proof_of_work_gets_its_sender_banned() {
    let pair = Pair::start();
    let mut block = block_on_genesis(&pair);
    let target = block.header.bits.to_target().unwrap();
    block.header.nonce = (0..)
        .find(|n| {
            let mut h = block.header.clone();
            h.nonce = *n;
            !target.is_met_by(&h.hash().0)
        })
        .unwrap();
    let mut hostile = attacker(&pair);
    hostile.publish_compact(&block);
    assert!(hostile.is_dropped(Duration::from_secs(20)));
    assert_eq!(pair.victim.tip().0, 0);
    // An operator sees it in the metrics: the refusal by reason, and the ban.
    let refused = [("reason", "insufficient_work")];
    assert!(metrics::of(&pair.victim, "apiary_blocks_rejected_total", &refused) >= Some(1.0));
    assert!(metrics::of(&pair.victim, "apiary_bans_total", &[]) >= Some(1.0));
    survived(&pair);
}

#[test]
fn an_overdrawing_block_fetched_whole_gets_its_sender_banned() {
    let pair = Pair::start();
    // Valid proof of work and a real signature; the victim lacks the overdraft (no mempool
    // takes it), so it fetches the whole block, then refuses it.
    let mut block = block_on_genesis(&pair);
    block.txs = vec![transfer(3, address(12), 5_000 * 100_000_000, 10_000, 0)];
    block.header.tx_root = apiary_core::tx_merkle_root(&block.txids());
    block.header.state_root = Hash256::ZERO;
    block.header.nonce = apiary_node::miner::search_nonce(&block.header, 0, 1, || false).unwrap();
    let mut hostile = attacker(&pair);
    hostile.publish_compact(&block);
    assert!(hostile.is_dropped_serving(Duration::from_secs(20), vec![block.encode()]));
    assert_eq!(pair.victim.tip().0, 0);
    survived(&pair);
}

#[test]
fn forged_signatures_and_garbage_get_their_sender_banned() {
    let pair = Pair::start();
    let mut hostile = attacker(&pair);
    for i in 0..5u64 {
        let mut forged = transfer(2, address(13), 1_000 + i, 10_000, 0);
        forged.signature[5] ^= 0x10;
        hostile.publish_tx(forged.encode());
    }
    hostile.publish_block(b"not a block at all".to_vec());
    assert!(hostile.is_dropped(Duration::from_secs(20)));
    survived(&pair);
}

#[test]
fn an_oversized_sync_frame_is_refused_before_it_is_read() {
    let pair = Pair::start();
    let mut hostile = attacker(&pair);
    let mut frame = u32::MAX.to_be_bytes().to_vec();
    frame.extend(vec![0u8; 70_000]);
    hostile.send(frame.clone());
    hostile.send(frame);
    assert!(hostile.is_dropped(Duration::from_secs(20)));
    survived(&pair);
}

#[test]
fn a_flood_of_duplicate_transactions_gets_its_sender_banned() {
    let pair = Pair::start();
    let honest = transfer(3, address(8), 7_000, 100_000, 0);
    pair.victim.submit_tx(&honest);
    wait_until(Duration::from_secs(30), "the honest tx to travel", || {
        pair.witness.mempool_count() == 1
    });
    // Validly signed, same sender and nonce, paying no more: each costs a signature check.
    let mut hostile = attacker(&pair);
    for amount in 1..=1_000u64 {
        hostile.publish_tx(transfer(3, address(14), amount, 10_000, 0).encode());
    }
    assert!(hostile.is_dropped(Duration::from_secs(30)));
    assert_eq!(
        pair.witness.mempool_count(),
        1,
        "only the honest tx travelled"
    );
    assert_truthful(&pair.victim);
    pair.relays(2);
    assert_eq!(pair.witness.balance(&address_text(8)), 7_000);
}

/// Gossip signed with a key, on a network whose gossip carries no signatures: gossipsub
/// drops each itself, its scoring graylists the sender, and a graylisted peer is banned.
/// The log says so once, not once per message (the node runs with RUST_LOG=info here).
#[test]
fn a_flood_of_signed_gossip_envelopes_gets_its_sender_banned_in_few_log_lines() {
    let pair = Pair::start();
    let mut hostile = Hostile::connect_signing(&pair.victim.p2p_addr(), &pair.genesis.hash());
    for i in 0..2_000u64 {
        hostile.publish_tx(transfer(2, address(15), 1_000 + i, 10_000, 0).encode());
    }
    assert!(hostile.is_dropped(Duration::from_secs(30)));
    assert!(metrics::of(&pair.victim, "apiary_bans_total", &[]) >= Some(1.0));
    assert_eq!(pair.victim.mempool_count(), 0, "none of it was taken");
    survived(&pair);
    let log = pair.victim.log();
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();
    assert!(warnings < 20, "{warnings} warnings for one flooding peer");
}

/// Transfers with one flipped signature bit, and nothing else, two a second: each costs
/// the sender 20 points, and after four gossipsub graylists it (dropping its messages
/// before the node sees them, at 80 points, short of a ban): the node bans it then, not
/// only once the graylisting has decayed and a fifth gets through (seconds later, and an
/// attacker that paces itself never gets there).
#[test]
fn forged_signatures_alone_get_their_sender_banned_once_graylisted() {
    let pair = Pair::start();
    let mut hostile = attacker(&pair);
    let sent = (0..30u64).find(|&i| {
        let mut forged = transfer(2, address(13), 1_000 + i, 10_000, 0);
        forged.signature[5] ^= 0x10;
        hostile.publish_tx(forged.encode());
        hostile.is_dropped(Duration::from_millis(500))
    });
    let sent = sent.expect("still connected after 30 forged signatures") + 1;
    assert!(sent <= 8, "banned only after {sent} forged signatures");
    survived(&pair);
}

/// A message over its topic's limit costs the sender; its later, valid messages are
/// still heard (it is not cut off without a word).
#[test]
fn an_oversized_message_costs_its_sender_and_later_valid_ones_still_count() {
    let pair = Pair::start();
    let mut hostile = attacker(&pair);
    let me = hostile.swarm.local_peer_id().to_string();
    hostile.publish_tx(vec![7u8; 300_000]);
    hostile.run_for(Duration::from_millis(500));
    for nonce in 0..3 {
        hostile.publish_tx(transfer(2, address(16), 5_000, 10_000, nonce).encode());
    }
    hostile.run_for(Duration::from_millis(500));
    wait_until(
        Duration::from_secs(20),
        "the valid ones to be taken",
        || pair.victim.mempool_count() == 3,
    );
    let score = score_of(&pair.victim, &me).expect("still connected");
    assert!(score >= 45, "the oversized message cost it: score {score}");
    wait_until(
        Duration::from_secs(20),
        "the valid ones to travel on",
        || pair.witness.mempool_count() == 3,
    );
    assert_truthful(&pair.victim);
    pair.relays(1);
}

/// Thousands of connections that never finish a handshake, and dozens of libp2p
/// identities from one address, to a node that may open 1,024 files: its RPC answers,
/// the peers it had stay, and honest blocks still travel.
#[test]
fn thousands_of_connections_do_not_starve_the_node() {
    let dir = tempfile::TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let victim =
        NodeProcess::start_with_file_limit(&dir.path().join("victim"), Some(&spec), &[], 1024)
            .unwrap();
    let addr = victim.p2p_addr();
    let witness =
        NodeProcess::start(&dir.path().join("witness"), Some(&spec), &["--peer", &addr]).unwrap();
    wait_until(Duration::from_secs(30), "the witness to connect", || {
        witness.peer_count() == 1
    });
    let genesis = apiary_genesis::load_spec(&spec).unwrap().genesis_hash();
    let socket: std::net::SocketAddr = {
        let mut parts = addr.split('/');
        let ip = parts.nth(2).unwrap();
        let port = parts.nth(1).unwrap();
        format!("{ip}:{port}").parse().unwrap()
    };
    // 3,000 TCP connections in well under 15 s, held open without a handshake.
    let mut held = Vec::new();
    for _ in 0..3_000 {
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(1)) {
            held.push(stream);
        }
        if held.len() % 500 == 0 {
            assert_eq!(victim.rpc.tip_height(), 0, "RPC answers during the flood");
        }
    }
    assert!(victim.rpc.call("node_info", serde_json::json!({})).is_ok());
    assert_eq!(witness.peer_count(), 1, "the peer it had stays");
    drop(held);
    // Then identities of our own from the same address, beyond what one address may hold.
    let identities: Vec<Hostile> = (0..12)
        .filter_map(|_| Hostile::try_connect(&addr, &genesis, false))
        .collect();
    assert!(identities.len() < 12, "some were refused");
    assert!(
        victim.peer_count() <= 8,
        "at most 8 from one address, the witness included"
    );
    assert_eq!(witness.peer_count(), 1, "the peer it had stays");
    victim
        .rpc
        .call("dev_mine", serde_json::json!({"blocks": 1}))
        .unwrap();
    let tip = victim.tip();
    wait_until(RELAY_LIMIT, "the witness to get the block", || {
        witness.tip() == tip
    });
    drop(identities);
}
