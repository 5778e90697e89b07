//! Fork choice and reorganisation, in-process against real RocksDB stores.

mod common;

use apiary_core::{Block, BlockError, Hash256, TxError};
use apiary_node::chain::{Accepted, ChainError};
use apiary_node::Node;
use common::*;
use tempfile::TempDir;

fn feed(node: &Node, blocks: &[&Block]) {
    for block in blocks {
        node.submit_block((*block).clone()).unwrap();
    }
}

fn tip_hash(node: &Node) -> apiary_core::BlockHash {
    node.lock().chain.tip()
}

/// A node that only ever saw `branch`, in order: the replay the reorged node must equal.
fn replay(spec: &apiary_core::ChainSpec, branch: &[Block]) -> (TempDir, std::sync::Arc<Node>) {
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), spec);
    feed(&node, &branch.iter().collect::<Vec<_>>());
    (dir, node)
}

#[test]
fn interleaved_branches_end_on_most_work_and_switch_back() {
    let spec = test_spec(100);
    let (dirs, [a, b, c]) = three_nodes(&spec);

    a.submit_tx(transfer(&spec, 1, addr(10), 100, 0)).unwrap();
    let mut branch_a = mine(&a, addr(20), 4);
    b.submit_tx(transfer(&spec, 1, addr(11), 200, 0)).unwrap();
    b.submit_tx(transfer(&spec, 2, addr(11), 300, 0)).unwrap();
    let branch_b = mine(&b, addr(21), 6);
    assert_eq!(branch_a[0].txs.len(), 1);
    assert_eq!(branch_b[0].txs.len(), 2);

    let mut interleaved = Vec::new();
    for i in 0..6 {
        interleaved.extend(branch_a.get(i));
        interleaved.extend(branch_b.get(i));
    }
    feed(&c, &interleaved);
    assert_eq!(tip_hash(&c), branch_b[5].hash());
    let (_replay_dir, replay_b) = replay(&spec, &branch_b);
    assert_eq!(accounts(&c), accounts(&replay_b));
    assert_eq!(
        c.lock().chain.state().root().unwrap(),
        branch_b[5].header.state_root
    );

    // Branch A overtakes: the node goes back, and its state is A's replay.
    branch_a.extend(mine(&a, addr(20), 4));
    feed(&c, &branch_a[4..].iter().collect::<Vec<_>>());
    assert_eq!(tip_hash(&c), branch_a[7].hash());
    let (_replay_dir, replay_a) = replay(&spec, &branch_a);
    assert_eq!(accounts(&c), accounts(&replay_a));
    assert_eq!(accounts(&c), accounts(&a));

    // The tx of key 2 was only on branch B: it is back in the mempool. Key 1's B tx
    // conflicts with A's (same nonce) and is gone.
    let pending = c.lock().mempool.len();
    assert_eq!(pending, 1);

    // A restart finds the same chain and state.
    let tip = tip_hash(&c);
    let before = accounts(&c);
    drop(c);
    let c = open_node(dirs[2].path(), &spec);
    assert_eq!(tip_hash(&c), tip);
    assert_eq!(accounts(&c), before);
}

/// The state is written every few hundred blocks; a crash after a reorg that took the last
/// written state off the main chain must undo and replay back to the tip.
#[test]
fn restart_after_unflushed_reorg_rebuilds_the_tip_state() {
    let spec = test_spec(100);
    let (dirs, [a, b, c]) = three_nodes(&spec);
    a.submit_tx(transfer(&spec, 1, addr(10), 100, 0)).unwrap();
    let branch_a = mine(&a, addr(20), 3);
    b.submit_tx(transfer(&spec, 2, addr(11), 300, 0)).unwrap();
    let branch_b = mine(&b, addr(21), 5);
    feed(&c, &branch_a.iter().collect::<Vec<_>>());
    c.lock().chain.flush_state().unwrap();
    feed(&c, &branch_b.iter().collect::<Vec<_>>());
    assert_eq!(tip_hash(&c), branch_b[4].hash());
    let expected = accounts(&c);
    // Dropped without a flush: as after kill -9.
    drop(c);
    let c = open_node(dirs[2].path(), &spec);
    assert_eq!(tip_hash(&c), branch_b[4].hash());
    assert_eq!(accounts(&c), expected);
    assert_eq!(accounts(&c), accounts(&b));
    // The tx index was rebuilt too: B's payment is found, A's is gone with its branch.
    let chain = &c.lock().chain;
    let paid = chain
        .tx_location(&branch_b[0].txs[0].txid())
        .unwrap()
        .unwrap();
    assert_eq!(paid.block, branch_b[0].hash());
    assert_eq!(chain.tx_location(&branch_a[0].txs[0].txid()).unwrap(), None);
    // So was the address index: key 1's payment left with branch A, key 2's is there.
    assert_eq!(history(chain, 1), vec![]);
    assert_eq!(history(chain, 11), vec![branch_b[0].txs[0].txid()]);
    assert_eq!(history(chain, 2), vec![branch_b[0].txs[0].txid()]);
}

/// The txids in `seed`'s history (rewards left out).
fn history(chain: &apiary_node::chain::Chain, seed: u8) -> Vec<apiary_core::TxId> {
    chain
        .address_txs(&addr(seed), None, 100)
        .unwrap()
        .into_iter()
        .filter(|(entry, _)| !entry.is_reward())
        .map(|(_, entry)| apiary_core::TxId(entry.id))
        .collect()
}

/// The heights of the blocks whose rewards `seed` got, newest first.
fn rewards(chain: &apiary_node::chain::Chain, seed: u8) -> Vec<u64> {
    chain
        .address_txs(&addr(seed), None, 100)
        .unwrap()
        .into_iter()
        .filter(|(entry, _)| entry.is_reward())
        .map(|(entry, _)| entry.height.0)
        .collect()
}

/// The address index answers newest first, a page at a time, the same before and after
/// a flush, and forgets what a reorganisation took off the main chain.
#[test]
fn address_history_pages_newest_first_across_flushes_and_reorgs() {
    let spec = test_spec(100);
    let (dirs, [a, b, c]) = three_nodes(&spec);
    let mut sent = Vec::new();
    let mut branch = Vec::new();
    for nonce in 0..7 {
        let stx = transfer(&spec, 1, addr(30 + nonce as u8 % 2), 1, nonce);
        sent.push(stx.txid());
        a.submit_tx(stx).unwrap();
        branch.extend(mine(&a, addr(20), 1));
    }
    feed(&c, &branch.iter().collect::<Vec<_>>());
    let newest_first: Vec<_> = sent.iter().rev().copied().collect();
    let pages = |chain: &apiary_node::chain::Chain| {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = chain.address_txs(&addr(1), cursor, 3).unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            cursor = Some(last.0);
            all.extend(page.iter().map(|(_, entry)| apiary_core::TxId(entry.id)));
        }
        all
    };
    assert_eq!(pages(&c.lock().chain), newest_first);
    assert_eq!(history(&c.lock().chain, 31).len(), 3);
    c.lock().chain.flush_state().unwrap();
    assert_eq!(pages(&c.lock().chain), newest_first);

    // A longer branch without the last three payments wins: they leave the index.
    let competing = {
        feed(&b, &branch[..4].iter().collect::<Vec<_>>());
        mine(&b, addr(21), 5)
    };
    feed(&c, &competing.iter().collect::<Vec<_>>());
    assert_eq!(tip_hash(&c), competing[4].hash());
    assert_eq!(pages(&c.lock().chain), newest_first[3..].to_vec());
    // Rewards follow the main chain too: addr(20) keeps those of the shared blocks only.
    assert_eq!(rewards(&c.lock().chain, 20), vec![4, 3, 2, 1]);
    assert_eq!(rewards(&c.lock().chain, 21), vec![9, 8, 7, 6, 5]);
    drop(c);
    let c = open_node(dirs[2].path(), &spec);
    assert_eq!(pages(&c.lock().chain), newest_first[3..].to_vec());
}

#[test]
fn invalid_tx_deep_in_winning_branch_is_rejected_and_node_stays_valid() {
    let spec = test_spec(100);
    let (_dirs, [a, b, c]) = three_nodes(&spec);
    let main = mine(&a, addr(20), 4);
    feed(&c, &main.iter().collect::<Vec<_>>());

    let valid = mine(&b, addr(21), 2);
    // Key 3 holds 1,000 coins: a correctly signed transfer of 5,000 overdraws.
    let overdraft = transfer(&spec, 3, addr(12), 5_000, 0);
    let bad = craft_block(&valid[1].header, vec![overdraft], Hash256::ZERO);
    let mut side = valid.clone();
    side.push(bad.clone());
    for _ in 0..3 {
        let parent = side.last().unwrap().header.clone();
        side.push(craft_block(&parent, vec![], Hash256::ZERO));
    }

    for block in &side[..4] {
        assert!(matches!(
            c.submit_block(block.clone()),
            Ok(Accepted::SideBranch)
        ));
    }
    // Block 5 of the side branch has more work than the main chain: switching fails at
    // the overdraft, and the node stays where it was.
    match c.submit_block(side[4].clone()) {
        Err(ChainError::Invalid {
            hash,
            error:
                BlockError::InvalidTx {
                    source: TxError::Overdraft { .. },
                    ..
                },
        }) => {
            assert_eq!(hash, bad.hash())
        }
        other => panic!("expected the overdraft to be named, got {other:?}"),
    }
    assert_eq!(tip_hash(&c), main[3].hash());
    assert_eq!(accounts(&c), accounts(&a));
    assert!(matches!(
        c.submit_block(side[5].clone()),
        Err(ChainError::InvalidAncestor { .. })
    ));
    assert!(matches!(
        c.submit_block(bad),
        Err(ChainError::KnownInvalid(_))
    ));
    assert_eq!(tip_hash(&c), main[3].hash());
}

#[test]
fn reorg_deeper_than_the_limit_is_refused() {
    let spec = test_spec(2);
    let (_dirs, [a, b, c]) = three_nodes(&spec);
    let main = mine(&a, addr(20), 4);
    let fork = mine(&b, addr(21), 6);
    feed(&c, &main.iter().collect::<Vec<_>>());
    feed(&c, &fork[..4].iter().collect::<Vec<_>>());
    assert!(matches!(
        c.submit_block(fork[4].clone()),
        Err(ChainError::ReorgTooDeep {
            depth: 4,
            max: 2,
            ..
        })
    ));
    assert_eq!(tip_hash(&c), main[3].hash());
}

#[test]
fn unknown_parent_and_bad_proof_of_work_are_refused() {
    let spec = test_spec(100);
    let (_dirs, [a, _, c]) = three_nodes(&spec);
    let blocks = mine(&a, addr(20), 2);
    assert!(matches!(
        c.submit_block(blocks[1].clone()),
        Err(ChainError::UnknownParent { .. })
    ));

    let mut no_work = blocks[0].clone();
    let target = no_work.header.bits.to_target().unwrap();
    no_work.header.nonce = (0..)
        .find(|n| {
            let mut h = no_work.header.clone();
            h.nonce = *n;
            !target.is_met_by(&h.hash().0)
        })
        .unwrap();
    assert!(matches!(
        c.submit_block(no_work),
        Err(ChainError::Invalid {
            error: BlockError::InsufficientWork(_),
            ..
        })
    ));
    assert_eq!(c.lock().chain.height().0, 0);
}

#[test]
fn reindex_rebuilds_the_same_state() {
    let spec = test_spec(100);
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &spec);
    let paid = node.submit_tx(transfer(&spec, 1, addr(10), 7, 0)).unwrap();
    mine(&node, addr(20), 3);
    node.lock().chain.flush_state().unwrap();
    let (tip, before) = (tip_hash(&node), accounts(&node));
    drop(node);
    let db = dir.path().join("db");
    let budget = apiary_node::cache::CacheBudget::mib(16);
    let rebuilt = apiary_node::reindex::reindex(&db, std::sync::Arc::new(spec.clone()), &budget)
        .unwrap()
        .unwrap();
    assert_eq!(rebuilt.height.0, 3);
    assert!(
        rebuilt.stopped.is_none() && rebuilt.kept.is_none(),
        "{rebuilt:?}"
    );
    let store = apiary_node::store::Store::open(&db, spec.genesis_hash()).unwrap();
    let chain = apiary_node::chain::Chain::open(store, std::sync::Arc::new(spec.clone())).unwrap();
    assert_eq!(chain.tip(), tip);
    let after = chain.state().all_accounts().unwrap();
    assert_eq!(after, before);
    // The indexes come back too, from the blocks alone.
    assert_eq!(history(&chain, 10), vec![paid]);
    assert_eq!(chain.tx_location(&paid).unwrap().unwrap().index, 0);
    // Nothing is left beside the store.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["db".to_string()]);
}
