//! The sync machine driven by hand: claims proved or punished, headers checked before any
//! body is asked for, low-work chains and early headers.

use super::*;
use apiary_core::{Address, BlockError, CompactTarget, Hash256};

const LIAR: u32 = 1;
const HONEST: u32 = 2;

fn hash(n: u64) -> BlockHash {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    BlockHash(Hash256(bytes))
}

fn work(units: u8) -> Work {
    let mut bytes = [0u8; 32];
    bytes[31] = units;
    Work::from_be_bytes(&bytes)
}

fn ours(height: u64, units: u8) -> OurTip {
    OurTip {
        hash: hash(height),
        height: Height(height),
        work: work(units),
        timestamp_ms: apiary_core::TimestampMs(0),
        locator: vec![hash(height)],
    }
}

fn status(height: u64, units: u8) -> Status {
    Status {
        genesis: hash(0),
        height: Height(height),
        tip: hash(height),
        total_work: work(units),
    }
}

/// Where a checked run of headers ends: at `height`, with total work `units`.
fn ancestry(height: u64, units: u8) -> HeaderAncestry {
    let spec = apiary_genesis::devnet();
    let header = BlockHeader {
        version: 1,
        height: Height(height),
        prev_hash: hash(height - 1),
        tx_root: Hash256::ZERO,
        state_root: Hash256::ZERO,
        miner: Address([0; 32]),
        timestamp_ms: apiary_core::TimestampMs(1_000 * height),
        bits: CompactTarget(0),
        nonce: 0,
    };
    HeaderAncestry::new(
        hash(height),
        &header,
        &[header.timestamp_ms],
        work(units),
        &spec,
    )
}

/// `count` checked headers ending at `height` with total work `units`.
fn checked(count: usize, height: u64, units: u8, answer: usize) -> HeadersChecked {
    HeadersChecked::Checked {
        checked: CheckedHeaders {
            hashes: (height + 1 - count as u64..=height).map(hash).collect(),
            stopped: None,
        },
        ancestry: Box::new(ancestry(height, units)),
        count: answer,
        now_ms: 0,
    }
}

/// An answer of `count` headers (the machine only counts them; checking is the service's).
fn headers(count: usize) -> Vec<BlockHeader> {
    let spec = apiary_genesis::devnet();
    vec![spec.genesis_block().header; count]
}

fn asks_headers(actions: &[Action<u32>], peer: u32) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::AskHeaders { peer: p, .. } if *p == peer))
}

fn penalised(actions: &[Action<u32>], peer: u32) -> Vec<Misbehaviour> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Penalise { peer: p, why } if *p == peer => Some(why.clone()),
            _ => None,
        })
        .collect()
}

fn asks_bodies(actions: &[Action<u32>]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::AskBodies { .. }))
}

#[test]
fn a_claim_answered_with_nothing_costs_the_liar_and_is_dropped() {
    let now = Instant::now();
    let mut sync = Sync::new(ours(10, 10));
    let actions = sync.status(LIAR, status(1_000_000, 200), now);
    assert!(asks_headers(&actions, LIAR));
    assert!(!sync.is_behind(), "a claim is not proof");
    assert_eq!(sync.progress().best_known_height, 10);

    let actions = sync.headers(LIAR, Vec::new(), now);
    assert_eq!(
        penalised(&actions, LIAR),
        vec![Misbehaviour::ClaimNotDelivered]
    );
    assert!(
        !asks_headers(&actions, LIAR),
        "not asked again on the same claim"
    );
    assert!(!sync.is_downloading() && !sync.is_behind());
    // Ticks do not bring it back; only a new claim does, and costs it again.
    assert!(sync.tick(now + Duration::from_secs(1)).is_empty());
    let actions = sync.status(LIAR, status(1_000_000, 200), now);
    assert!(asks_headers(&actions, LIAR));
    let actions = sync.headers(LIAR, Vec::new(), now);
    assert_eq!(
        penalised(&actions, LIAR),
        vec![Misbehaviour::ClaimNotDelivered]
    );
}

#[test]
fn a_silent_source_costs_it_and_the_next_best_is_followed() {
    let now = Instant::now();
    let mut sync = Sync::new(ours(10, 10));
    sync.status(HONEST, status(12, 12), now);
    let actions = sync.status(LIAR, status(1_000, 200), now);
    // Still following the honest one (already asked); the liar waits its turn.
    assert!(!asks_headers(&actions, LIAR));
    let actions = sync.tick(now + HEADERS_TIMEOUT + Duration::from_secs(1));
    assert_eq!(penalised(&actions, HONEST), vec![Misbehaviour::NoAnswer]);
    assert!(asks_headers(&actions, LIAR), "the next claim is tested");
    let late = now + HEADERS_TIMEOUT * 2 + Duration::from_secs(3);
    let actions = sync.tick(late);
    assert_eq!(penalised(&actions, LIAR), vec![Misbehaviour::NoAnswer]);
    assert!(!sync.is_downloading());
}

#[test]
fn proved_headers_are_downloaded_and_imported_in_order() {
    let now = Instant::now();
    let mut sync = Sync::new(ours(10, 10));
    sync.status(HONEST, status(14, 14), now);
    let actions = sync.headers(HONEST, headers(4), now);
    assert!(matches!(
        actions.as_slice(),
        [Action::CheckHeaders { after: None, .. }]
    ));
    assert!(!sync.is_behind(), "not before the headers are checked");
    let actions = sync.headers_checked(HONEST, checked(4, 14, 14, 4), now);
    assert!(sync.is_behind());
    assert_eq!(sync.progress().best_known_height, 14);
    let hashes = actions
        .iter()
        .find_map(|a| match a {
            Action::AskBodies {
                peer: HONEST,
                hashes,
            } => Some(hashes.clone()),
            _ => None,
        })
        .expect("bodies asked for");
    assert_eq!(hashes, (11..=14).map(hash).collect::<Vec<_>>());
    // Bodies stand in for themselves: their "hash" is read by the test's reader.
    let bodies: Vec<Vec<u8>> = (11u64..=14).map(|h| h.to_le_bytes().to_vec()).collect();
    let read = |b: &[u8]| Some(hash(u64::from_le_bytes(b.try_into().ok()?)));
    let actions = sync.bodies(HONEST, bodies.clone(), read, now);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Import { peer: HONEST, blocks } if *blocks == bodies)));
    // The tip moves as the importer connects them, then it reports.
    sync.our_tip(ours(14, 14), now);
    let actions = sync.imported(HONEST, 4, None, now);
    assert!(actions.is_empty(), "{actions:?}");
    assert!(!sync.is_downloading() && !sync.is_behind());
}

#[test]
fn a_low_work_header_chain_costs_no_bodies_and_its_sender_pays() {
    let now = Instant::now();
    let mut sync = Sync::new(ours(100, 100));
    sync.status(LIAR, status(5_000, 101), now);
    // Full answers of headers that never beat our work: kept in memory up to the limit.
    let per = MAX_HEADERS_PER_RESPONSE as usize;
    let mut height = 0;
    let mut punished = Vec::new();
    for _ in 0..=(MAX_PENDING_HEADERS / per) {
        sync.headers(LIAR, headers(per), now);
        height += per as u64;
        let actions = sync.headers_checked(LIAR, checked(per, height, 50, per), now);
        assert!(!asks_bodies(&actions), "no body for a chain below ours");
        punished.extend(penalised(&actions, LIAR));
        if !punished.is_empty() {
            break;
        }
    }
    assert_eq!(punished, vec![Misbehaviour::LowWorkChain]);
    assert!(!sync.is_downloading() && !sync.is_behind());

    // A short one that ends below ours: its claim was not delivered.
    sync.status(LIAR, status(5_000, 101), now);
    sync.headers(LIAR, headers(3), now);
    let actions = sync.headers_checked(LIAR, checked(3, 3, 50, 3), now);
    assert_eq!(
        penalised(&actions, LIAR),
        vec![Misbehaviour::ClaimNotDelivered]
    );
    assert!(!asks_bodies(&actions));
}

#[test]
fn an_early_header_is_not_yet_not_wrong() {
    let now = Instant::now();
    let mut sync = Sync::new(ours(10, 10));
    sync.status(HONEST, status(13, 13), now);
    sync.headers(HONEST, headers(3), now);
    let early = HeadersChecked::Checked {
        checked: CheckedHeaders {
            hashes: vec![hash(11), hash(12)],
            stopped: Some((
                2,
                HeaderError::NotYet {
                    hash: hash(13),
                    ahead_ms: 3_600_000,
                    valid_from_ms: apiary_core::TimestampMs(3_600_000),
                },
            )),
        },
        ancestry: Box::new(ancestry(12, 12)),
        count: 3,
        now_ms: 0,
    };
    let actions = sync.headers_checked(HONEST, early, now);
    assert!(penalised(&actions, HONEST).is_empty(), "early is not wrong");
    assert!(
        asks_bodies(&actions),
        "what came before it is fetched: {actions:?}"
    );
    // The rest is not asked for again before its time: no re-download loop.
    for seconds in [1, 10, 100, 1_000] {
        let actions = sync.tick(now + Duration::from_secs(seconds));
        assert!(
            !asks_headers(&actions, HONEST),
            "asked again after {seconds} s"
        );
    }
}

#[test]
fn an_invalid_header_costs_its_sender_and_ends_the_download() {
    let now = Instant::now();
    let mut sync = Sync::new(ours(10, 10));
    sync.status(LIAR, status(13, 13), now);
    sync.headers(LIAR, headers(3), now);
    let error = BlockError::BitsAboveLimit(CompactTarget(0));
    let bad = HeadersChecked::Checked {
        checked: CheckedHeaders {
            hashes: vec![],
            stopped: Some((
                0,
                HeaderError::Invalid {
                    hash: hash(11),
                    error: error.clone(),
                },
            )),
        },
        ancestry: Box::new(ancestry(10, 10)),
        count: 3,
        now_ms: 0,
    };
    let actions = sync.headers_checked(LIAR, bad, now);
    assert_eq!(
        penalised(&actions, LIAR),
        vec![Misbehaviour::InvalidHeader(error)]
    );
    assert!(!sync.is_downloading());
    // Headers that build on nothing we know cost too.
    sync.status(LIAR, status(13, 13), now);
    sync.headers(LIAR, headers(3), now);
    let actions = sync.headers_checked(LIAR, HeadersChecked::Orphan, now);
    assert_eq!(penalised(&actions, LIAR), vec![Misbehaviour::OrphanHeaders]);
}
