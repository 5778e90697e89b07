//! Hostile peers on the sync protocol, one attack per test: what a peer claims is tested
//! against the headers it delivers, headers are checked in full before any body is asked
//! for, and while the attack goes on the victim (a miner) announces every block it finds,
//! so the witness gets each as fast as gossip brings it. Afterwards `node_info` tells the
//! truth: not syncing, and the best known height is the node's own.

use apiary_core::TimestampMs;
use apiary_core::{Address, BlockHash, BlockHeader, CompactTarget, Hash256, Height, Target, Work};
use apiary_node::protocol::{Status, SyncRequest, SyncResponse};
use apiary_system_tests::hostile::{Answer, Hostile};
use apiary_system_tests::*;
use std::time::Duration;

/// How long a hostile peer plays its part.
const ATTACK: Duration = Duration::from_secs(40);

/// A claim far beyond any chain this test makes.
fn huge_claim(genesis: BlockHash) -> Status {
    Status {
        genesis,
        height: Height(1_000_000),
        tip: BlockHash(Hash256([0xee; 32])),
        total_work: Work::from_be_bytes(&[0x0f; 32]),
    }
}

/// A header on `parent` at `timestamp_ms` with `bits`, its proof of work found.
fn mined(parent: &BlockHeader, timestamp_ms: TimestampMs, bits: CompactTarget) -> BlockHeader {
    let mut header = BlockHeader {
        version: apiary_core::block::BLOCK_VERSION,
        height: parent.height.next(),
        prev_hash: parent.hash(),
        tx_root: Hash256::ZERO,
        state_root: Hash256::ZERO,
        miner: Address([0xab; 32]),
        timestamp_ms,
        bits,
        nonce: 0,
    };
    header.nonce = apiary_node::miner::search_nonce(&header, 0, 1, || false).unwrap();
    header
}

/// Runs `hostile` answering with `answer` on a thread of its own while the victim mines
/// and the witness must get each block by gossip; returns whether the node dropped the
/// hostile peer, and what the node asked it for.
fn attack_while_mining(
    pair: &Pair,
    mut hostile: Hostile,
    answer: impl FnMut(&SyncRequest) -> Answer + Send + 'static,
) -> (bool, Vec<SyncRequest>) {
    let attack = std::thread::spawn(move || hostile.serve(ATTACK, answer));
    pair.relays(3);
    attack.join().expect("the hostile peer does not panic")
}

fn headers_asked(asked: &[SyncRequest]) -> usize {
    asked
        .iter()
        .filter(|r| matches!(r, SyncRequest::GetHeaders { .. }))
        .count()
}

fn bodies_asked(asked: &[SyncRequest]) -> usize {
    asked
        .iter()
        .filter(|r| matches!(r, SyncRequest::GetBodies { .. }))
        .count()
}

#[test]
fn a_peer_claiming_work_it_answers_with_nothing_is_banned() {
    let pair = Pair::start();
    let genesis = pair.genesis.hash();
    let hostile = Hostile::connect(&pair.victim.p2p_addr(), &genesis);
    let (dropped, asked) = attack_while_mining(&pair, hostile, move |request| match request {
        SyncRequest::Status(_) => Answer::with(&SyncResponse::Status(huge_claim(genesis))),
        SyncRequest::GetHeaders { .. } => Answer::with(&SyncResponse::Headers(Vec::new())),
        SyncRequest::GetBodies { .. } => Answer::with(&SyncResponse::Blocks(Vec::new())),
    });
    assert!(dropped, "three empty answers to its claims ban it");
    assert!(
        headers_asked(&asked) <= 5,
        "asked {} times",
        headers_asked(&asked)
    );
    assert_truthful(&pair.victim);
    assert_truthful(&pair.witness);
}

#[test]
fn a_peer_claiming_work_and_staying_silent_pays_for_each_silence() {
    let pair = Pair::start();
    let genesis = pair.genesis.hash();
    let hostile = Hostile::connect(&pair.victim.p2p_addr(), &genesis);
    let me = hostile.swarm.local_peer_id().to_string();
    let (_, asked) = attack_while_mining(&pair, hostile, move |request| match request {
        SyncRequest::Status(_) => Answer::with(&SyncResponse::Status(huge_claim(genesis))),
        _ => Answer::Silence,
    });
    // One question per claim and deadline, not thousands a second.
    assert!(
        (1..=4).contains(&headers_asked(&asked)),
        "asked {} times",
        headers_asked(&asked)
    );
    let score = score_of(&pair.victim, &me);
    assert!(score.is_none_or(|s| s > 0), "silence cost it: {score:?}");
    assert_truthful(&pair.victim);
}

/// Answers a headers request with `headers` (then with nothing), after claiming more work.
fn answering_headers(
    genesis: BlockHash,
    headers: Vec<BlockHeader>,
) -> impl FnMut(&SyncRequest) -> Answer + Send + 'static {
    move |request| match request {
        SyncRequest::Status(_) => Answer::with(&SyncResponse::Status(huge_claim(genesis))),
        SyncRequest::GetHeaders { .. } => Answer::with(&SyncResponse::Headers(headers.clone())),
        SyncRequest::GetBodies { .. } => Answer::with(&SyncResponse::Blocks(Vec::new())),
    }
}

/// A peer that claims more work and answers with `header`, which breaks a header rule,
/// is dropped, no body is asked for, and the victim stays truthful.
fn a_bad_header_gets_its_sender_banned(pair: &Pair, header: BlockHeader) {
    let hostile = Hostile::connect(&pair.victim.p2p_addr(), &pair.genesis.hash());
    let (dropped, asked) = attack_while_mining(
        pair,
        hostile,
        answering_headers(pair.genesis.hash(), vec![header]),
    );
    assert!(dropped);
    assert_eq!(
        bodies_asked(&asked),
        0,
        "no body is asked for an invalid header"
    );
    assert_truthful(&pair.victim);
}

#[test]
fn headers_above_the_proof_of_work_limit_get_their_sender_banned() {
    let pair = Pair::start();
    let genesis = &pair.genesis.header;
    // The easiest target there is: far easier than the chain allows; it meets itself.
    let easiest = Target::for_expected_hashes(1).to_compact();
    let header = mined(genesis, genesis.timestamp_ms + 1_000, easiest);
    a_bad_header_gets_its_sender_banned(&pair, header);
}

#[test]
fn headers_with_other_bits_than_the_retarget_requires_get_their_sender_banned() {
    let pair = Pair::start();
    let genesis = &pair.genesis.header;
    // Harder than required: real work, but not the chain's target.
    let harder = Target::for_expected_hashes(64).to_compact();
    let header = mined(genesis, genesis.timestamp_ms + 1_000, harder);
    a_bad_header_gets_its_sender_banned(&pair, header);
}

#[test]
fn headers_on_a_block_nobody_knows_cost_their_sender_each_time() {
    let pair = Pair::start();
    let genesis = &pair.genesis.header;
    // Real work, on a parent that does not exist.
    let mut orphan_parent = genesis.clone();
    orphan_parent.nonce = 0xdead_beef;
    orphan_parent.height = Height(7);
    let first = mined(&orphan_parent, genesis.timestamp_ms + 1_000, genesis.bits);
    let second = mined(&first, genesis.timestamp_ms + 2_000, genesis.bits);
    let hostile = Hostile::connect(&pair.victim.p2p_addr(), &pair.genesis.hash());
    let (dropped, asked) = attack_while_mining(
        &pair,
        hostile,
        answering_headers(pair.genesis.hash(), vec![first, second]),
    );
    assert!(dropped, "orphan headers, answer after answer, ban it");
    assert_eq!(bodies_asked(&asked), 0);
    assert_truthful(&pair.victim);
}

/// A header chain thousands long but with less work than ours (at the easiest target,
/// on schedule, from genesis) costs no body download and no storage, and its sender pays.
#[test]
fn a_long_low_work_header_chain_costs_nothing_but_its_sender() {
    let dir = tempfile::TempDir::new().unwrap();
    // Genesis two hours ago, and a retarget that doubles the difficulty for every block
    // found at once: the victim's few fast blocks outweigh thousands on schedule.
    let two_hours_ago = (apiary_node::now_ms() - 2 * 3_600_000).to_string();
    let spec = write_spec(
        dir.path(),
        &[
            "--genesis-time-ms",
            &two_hours_ago,
            "--block-time-ms",
            "1000",
            "--half-life-ms",
            "1000",
            "--initial-hashes",
            "2",
            "--min-hashes",
            "2",
        ],
    );
    let pair = Pair::start_on(dir, spec, &[]);
    // 13 blocks found at once: about 16,000 hashes of work, against the 3,000 headers
    // on schedule at 2 hashes each.
    pair.victim
        .rpc
        .call("dev_mine", serde_json::json!({"blocks": 13}))
        .unwrap();
    // The witness has them before the attack: the relays under attack below must each be
    // one block, by gossip.
    let tip = pair.victim.tip();
    wait_until(
        Duration::from_secs(30),
        "the witness to get the 13 blocks",
        || pair.witness.tip() == tip,
    );
    let genesis = pair.genesis.header.clone();
    let mut chain = Vec::with_capacity(3_000);
    let mut parent = genesis.clone();
    for i in 1..=3_000u64 {
        let header = mined(&parent, genesis.timestamp_ms + 1_000 * i, genesis.bits);
        parent = header.clone();
        chain.push(header);
    }
    let first = chain[0].hash();
    let genesis_hash = pair.genesis.hash();
    let hostile = Hostile::connect(&pair.victim.p2p_addr(), &genesis_hash);
    let (dropped, asked) = attack_while_mining(&pair, hostile, move |request| match request {
        SyncRequest::Status(_) => Answer::with(&SyncResponse::Status(huge_claim(genesis_hash))),
        SyncRequest::GetHeaders { locator, .. } => {
            // From genesis, or after the last header it was sent.
            let from = chain
                .iter()
                .position(|h| locator.contains(&h.hash()))
                .map_or(0, |i| i + 1);
            let to = (from + 2_000).min(chain.len());
            Answer::with(&SyncResponse::Headers(chain[from..to].to_vec()))
        }
        SyncRequest::GetBodies { .. } => Answer::with(&SyncResponse::Blocks(Vec::new())),
    });
    assert!(dropped, "claims it never backed ban it");
    assert_eq!(
        bodies_asked(&asked),
        0,
        "no body of a low-work chain is asked for"
    );
    assert!(
        headers_asked(&asked) >= 2,
        "its headers were read and checked"
    );
    let stored = pair
        .victim
        .rpc
        .call("block_get", serde_json::json!({"hash": first}));
    assert_eq!(stored.unwrap_err().code, -32004, "nothing of it was stored");
    assert_truthful(&pair.victim);
}

#[test]
fn a_node_behind_a_proved_chain_it_cannot_download_is_not_ready() {
    let dir = tempfile::TempDir::new().unwrap();
    // Genesis an hour ago and a constant difficulty: 20 headers on schedule are valid.
    let an_hour_ago = (apiary_node::now_ms() - 3_600_000).to_string();
    let mut args = vec!["--genesis-time-ms", &an_hour_ago];
    args.extend(TEST_DIFFICULTY);
    let spec = write_spec(dir.path(), &args);
    let pair = Pair::start_on(dir, spec, &[]);
    let ready = |node: &NodeProcess| http_get(&node.rpc.url, "/ready");
    wait_until(Duration::from_secs(30), "the victim ready", || {
        ready(&pair.victim).0 == 200
    });
    let genesis = pair.genesis.header.clone();
    let mut chain = Vec::new();
    let mut parent = genesis.clone();
    for i in 1..=20u64 {
        let header = mined(&parent, genesis.timestamp_ms + 1_000 * i, genesis.bits);
        parent = header.clone();
        chain.push(header);
    }
    let genesis_hash = pair.genesis.hash();
    let mut hostile = Hostile::connect(&pair.victim.p2p_addr(), &genesis_hash);
    // Proves 20 blocks of work with headers, then never sends a body.
    let attack = std::thread::spawn(move || {
        hostile.serve(ATTACK, move |request| match request {
            SyncRequest::Status(_) => Answer::with(&SyncResponse::Status(huge_claim(genesis_hash))),
            SyncRequest::GetHeaders { .. } => Answer::with(&SyncResponse::Headers(chain.clone())),
            SyncRequest::GetBodies { .. } => Answer::Silence,
        })
    });
    wait_until(Duration::from_secs(30), "the victim not ready", || {
        let (status, body) = ready(&pair.victim);
        status == 503 && body.contains("20 blocks below the best proved chain")
    });
    assert_eq!(pair.victim.tip().0, 0);
    // The victim gone, the hostile peer's connection closes and its thread ends.
    drop(pair);
    attack.join().expect("the hostile peer does not panic");
}
