//! Helpers for the node's in-process tests: real RocksDB in temp dirs, easy proof of work.
#![allow(dead_code)]

use apiary_core::block::BLOCK_VERSION;
use apiary_core::hd::address_of;
use apiary_core::spec::ChainId;
use apiary_core::SigningKey;
use apiary_core::{
    tx_merkle_root, Address, AddressPrefix, Amount, Block, BlockHeader, ChainSpec, Hash256, Nonce,
    SignedTransaction, Transaction,
};
use apiary_genesis::NewSpec;
use apiary_node::chain::Chain;
use apiary_node::mempool::MempoolConfig;
use apiary_node::miner::{mine_block, search_nonce};
use apiary_node::store::Store;
use apiary_node::Node;
use std::path::Path;
use std::sync::Arc;

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn addr(seed: u8) -> Address {
    address_of(&key(seed))
}

/// A chain whose blocks take a couple of hashes, with keys 1..=3 funded.
pub fn test_spec(max_reorg_depth: u64) -> ChainSpec {
    NewSpec {
        chain_id: ChainId::new("apiary-test").unwrap(),
        address_prefix: AddressPrefix::new("aptest").unwrap(),
        genesis_timestamp_ms: 1_767_225_600_000,
        target_block_time_ms: 1_000,
        asert_half_life_ms: 1_000_000_000,
        initial_hashes: 2,
        min_hashes: 2,
        max_block_bytes: 1_000_000,
        max_block_txs: 5_000,
        max_future_drift_ms: 15_000,
        initial_reward: Amount::from_coins(50).unwrap(),
        halving_interval: 0,
        max_reorg_depth,
        allocations: (1..=3)
            .map(|s| (addr(s), Amount::from_coins(1_000).unwrap()))
            .collect(),
    }
    .build()
    .unwrap()
}

pub fn open_node(dir: &Path, spec: &ChainSpec) -> Arc<Node> {
    let store = Store::open(&dir.join("db"), spec.genesis_hash()).unwrap();
    Node::new(
        Chain::open(store, Arc::new(spec.clone())).unwrap(),
        MempoolConfig::default(),
    )
}

/// `coins` from key `from` to `to`, fee 10,000 base units.
pub fn transfer(
    spec: &ChainSpec,
    from: u8,
    to: Address,
    coins: u64,
    nonce: u64,
) -> SignedTransaction {
    payment(spec, from, to, Amount::from_coins(coins).unwrap(), nonce)
}

/// `amount` from key `from` to `to`, fee 10,000 base units.
pub fn payment(
    spec: &ChainSpec,
    from: u8,
    to: Address,
    amount: Amount,
    nonce: u64,
) -> SignedTransaction {
    Transaction {
        chain_id: spec.chain_id.clone(),
        from: addr(from),
        to,
        amount,
        fee: Amount::from_base_units(10_000),
        nonce: Nonce(nonce),
    }
    .sign(&key(from))
}

/// Mines `count` blocks on `node`'s tip paying `miner`; returns them.
pub fn mine(node: &Node, miner: Address, count: usize) -> Vec<Block> {
    (0..count)
        .map(|_| {
            let hash = mine_block(node, miner, 1).unwrap();
            node.lock().chain.body(&hash).unwrap()
        })
        .collect()
}

/// A block on `parent` with any content and a valid proof of work: for blocks that are
/// well-formed but break a rule only the state can show.
pub fn craft_block(
    parent: &BlockHeader,
    txs: Vec<SignedTransaction>,
    state_root: Hash256,
) -> Block {
    let txids: Vec<_> = txs.iter().map(SignedTransaction::txid).collect();
    let mut header = BlockHeader {
        version: BLOCK_VERSION,
        height: parent.height.next(),
        prev_hash: parent.hash(),
        tx_root: tx_merkle_root(&txids),
        state_root,
        miner: addr(9),
        timestamp_ms: parent.timestamp_ms + 1,
        bits: parent.bits,
        nonce: 0,
    };
    header.nonce = search_nonce(&header, 0, 1, || false).unwrap();
    Block { header, txs }
}

/// Every account of a node's tip state, in order.
pub fn accounts(node: &Node) -> Vec<(Address, apiary_core::Account)> {
    node.lock().chain.state().all_accounts().unwrap()
}

/// Three nodes of one chain, each with its own store: two to mine competing branches,
/// one to receive them. The temp dirs must outlive the nodes.
pub fn three_nodes(spec: &ChainSpec) -> ([tempfile::TempDir; 3], [Arc<Node>; 3]) {
    let dirs = [(); 3].map(|_| tempfile::TempDir::new().unwrap());
    let nodes = [0, 1, 2].map(|i| open_node(dirs[i].path(), spec));
    (dirs, nodes)
}
