//! Structure-aware: chains of random blocks on random parents (so reorgs of any depth),
//! some with a flaw, taken by a real node on RocksDB; checked against a model that knows
//! only the ledger's rules (balances and nonces in a map). Every valid block is accepted
//! and every flawed one refused; afterwards the node's tip has the most work of any block
//! and its accounts equal a replay of its main chain from genesis.
#![no_main]

use apiary_core::block::{HeaderHasher, BLOCK_VERSION};
use apiary_core::validate::required_bits;
use apiary_core::*;
use apiary_fuzz::{address, key, spec, FUNDED};
use apiary_node::chain::Accepted;
use apiary_node::Node;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

#[derive(Arbitrary, Debug)]
struct Op {
    /// Which known block to build on (the newest when out of range).
    parent: u16,
    /// Seconds and fifths past the parent: fast, on time, and slow blocks.
    time_step: u8,
    txs: Vec<Pick>,
    flaw: Option<Flaw>,
}

#[derive(Arbitrary, Debug)]
struct Pick {
    from: u8,
    to: u8,
    amount: u32,
    fee: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Flaw {
    StateRoot,
    Overdraft,
    NonceGap,
    SpentNonce,
}

/// Balances and nonces only.
type Ledger = HashMap<Address, (u64, u64)>;

struct World {
    node: Arc<Node>,
    _dir: tempfile::TempDir,
    /// Every block taken, by hash, with its parent's hash.
    blocks: HashMap<BlockHash, Block>,
    order: Vec<BlockHash>,
    /// The model's ledger after each block taken (replayed once, when it was taken).
    ledgers: HashMap<BlockHash, Ledger>,
}

impl World {
    fn new() -> World {
        let (node, dir) = apiary_fuzz::fresh_node();
        let genesis = apiary_fuzz::genesis().clone();
        let hash = genesis.hash();
        let mut world = World {
            node,
            _dir: dir,
            blocks: HashMap::from([(hash, genesis)]),
            order: vec![hash],
            ledgers: HashMap::new(),
        };
        world.ledgers.insert(hash, world.replay(hash));
        world
    }

    /// The ledger after `tip`, as replayed when it was taken.
    fn ledger(&self, tip: BlockHash) -> Ledger {
        self.ledgers[&tip].clone()
    }

    /// The ledger after `tip`, replayed from genesis by the model's rules.
    fn replay(&self, tip: BlockHash) -> Ledger {
        let mut path = Vec::new();
        let mut at = tip;
        loop {
            let block = &self.blocks[&at];
            path.push(block);
            if block.header.height.0 == 0 {
                break;
            }
            at = block.header.prev_hash;
        }
        let spec = spec();
        let mut ledger: Ledger = spec
            .allocations
            .iter()
            .map(|(a, amount)| (*a, (amount.base_units(), 0)))
            .collect();
        for block in path.iter().rev().skip(1) {
            let mut fees = 0u64;
            for stx in &block.txs {
                assert!(apply(&mut ledger, &stx.tx), "a block the model calls valid");
                fees += stx.tx.fee.base_units();
            }
            let reward = spec.block_reward(block.header.height).base_units() + fees;
            ledger.entry(block.header.miner).or_default().0 += reward;
        }
        ledger
    }
}

/// Applies `tx` if it is valid on `ledger`; says whether it was.
fn apply(ledger: &mut Ledger, tx: &Transaction) -> bool {
    let (balance, nonce) = ledger.get(&tx.from).copied().unwrap_or_default();
    let needed = u128::from(tx.amount.base_units()) + u128::from(tx.fee.base_units());
    if tx.nonce.0 != nonce || needed > u128::from(balance) {
        return false;
    }
    let to_balance = if tx.to == tx.from {
        balance - needed as u64
    } else {
        ledger.get(&tx.to).copied().unwrap_or_default().0
    };
    if to_balance.checked_add(tx.amount.base_units()).is_none() {
        return false;
    }
    ledger.insert(tx.from, (balance - needed as u64, nonce + 1));
    let entry = ledger.entry(tx.to).or_default();
    entry.0 += tx.amount.base_units();
    true
}

/// The state root of `ledger`, straight from the definition (docs/protocol.md): the
/// model never shares the node's paged tree.
fn state_root(ledger: &Ledger) -> Hash256 {
    let mut accounts: Vec<(Address, Account)> = ledger
        .iter()
        .map(|(address, (balance, nonce))| {
            let account = Account {
                balance: Amount::from_base_units(*balance),
                nonce: Nonce(*nonce),
            };
            (*address, account)
        })
        .filter(|(_, account)| !account.is_empty())
        .collect();
    accounts.sort_unstable_by_key(|(address, _)| *address);
    apiary_core::state::root_of_sorted(&accounts)
}

fn transfer(from_seed: u8, to: Address, amount: u64, fee: u64, nonce: u64) -> SignedTransaction {
    let tx = Transaction {
        chain_id: spec().chain_id.clone(),
        from: address(from_seed),
        to,
        amount: Amount::from_base_units(amount),
        fee: Amount::from_base_units(fee),
        nonce: Nonce(nonce),
    };
    // Ed25519 signing is deterministic, so a signature made once is the signature: inputs
    // repeat most transfers, and signing them again was a sixth of the target's time.
    static SIGNED: LazyLock<Mutex<HashMap<Vec<u8>, SignedTransaction>>> =
        LazyLock::new(Mutex::default);
    let mut signed = SIGNED.lock().unwrap_or_else(|e| e.into_inner());
    if signed.len() > 100_000 {
        signed.clear();
    }
    signed
        .entry(tx.signing_bytes())
        .or_insert_with(|| tx.sign(key(from_seed)))
        .clone()
}

/// Builds the block `op` describes; says whether the model calls it valid.
fn build(world: &mut World, op: &Op) -> (Block, bool) {
    let spec = spec();
    let parent_hash = world.order[op.parent as usize % world.order.len()];
    let parent = &world.blocks[&parent_hash].header;
    let mut ledger = world.ledger(parent_hash);
    let mut txs = Vec::new();
    for pick in op.txs.iter().take(8) {
        let from = pick.from % FUNDED + 1;
        let nonce = ledger.get(&address(from)).map_or(0, |a| a.1);
        let stx = transfer(
            from,
            address(pick.to % 6),
            pick.amount.into(),
            pick.fee.into(),
            nonce,
        );
        if apply(&mut ledger, &stx.tx) {
            txs.push(stx);
        }
    }
    let fees: u64 = txs.iter().map(|t| t.tx.fee.base_units()).sum();
    let mut valid = true;
    match op.flaw {
        None | Some(Flaw::StateRoot) => {}
        Some(flaw) => {
            let from = address(1);
            let (balance, nonce) = ledger.get(&from).copied().unwrap_or_default();
            let (amount, nonce) = match flaw {
                Flaw::Overdraft => (balance, nonce),
                Flaw::NonceGap => (1, nonce + 1),
                _ => (1, nonce.wrapping_sub(1)),
            };
            txs.push(transfer(1, address(2), amount, 1, nonce));
            valid = false;
        }
    }
    let height = parent.height.next();
    let miner = address(5);
    ledger.entry(miner).or_default().0 += spec.block_reward(height).base_units() + fees;
    let mut root = state_root(&ledger);
    if matches!(op.flaw, Some(Flaw::StateRoot)) {
        root.0[0] ^= 1;
        valid = false;
    }
    let node = &world.node;
    let context = node
        .lock()
        .chain
        .parent_context(&parent_hash)
        .expect("the parent is stored");
    let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();
    let mut header = BlockHeader {
        version: BLOCK_VERSION,
        height,
        prev_hash: parent_hash,
        tx_root: tx_merkle_root(&txids),
        state_root: root,
        miner,
        timestamp_ms: parent.timestamp_ms + 1_000 + 20 * u64::from(op.time_step),
        bits: required_bits(&context, &spec),
        nonce: 0,
    };
    let target = header.bits.to_target().expect("required bits are valid");
    let mut hasher = HeaderHasher::new(&header);
    header.nonce = (0..)
        .find(|n| target.is_met_by(&hasher.hash_with_nonce(*n)))
        .expect("a nonce");
    (Block { header, txs }, valid)
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

fuzz_target!(|ops: Vec<Op>| {
    let mut guard = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    // A new chain now and then, so one run covers many short histories.
    if guard.as_ref().is_none_or(|w| w.order.len() > 200) {
        *guard = Some(World::new());
    }
    let world = guard.as_mut().unwrap();
    for op in ops.iter().take(8) {
        let (block, valid) = build(world, op);
        let hash = block.hash();
        let bytes = block.encode();
        let result = world
            .node
            .check_block(block.clone(), bytes)
            .and_then(|checked| world.node.accept_block(checked));
        match (valid, &result) {
            (true, Ok(Accepted::NewTip(_) | Accepted::SideBranch)) => {
                world.blocks.insert(hash, block);
                world.order.push(hash);
                let ledger = world.replay(hash);
                world.ledgers.insert(hash, ledger);
            }
            (true, Ok(Accepted::Duplicate)) => {}
            // A flawed block is refused, or stored unconnected on a side branch with less
            // work (its state is checked only if it ever leads): never built on here.
            (false, Err(_) | Ok(Accepted::SideBranch | Accepted::Duplicate)) => {}
            _ => panic!("valid: {valid}, the node said {result:?} for {block:?}"),
        }
    }
    // Fork choice: no block has more work than the tip.
    let state = world.node.lock();
    let tip = state.chain.tip();
    let tip_work = state.chain.entry(&tip).unwrap().total_work;
    for hash in &world.order {
        assert!(state.chain.entry(hash).unwrap().total_work <= tip_work);
    }
    // State: the node's accounts are the model's replay of the node's main chain: each
    // account the model has, and no other (the same count of non-empty accounts).
    let mut expected = world.ledger(tip);
    expected.retain(|_, (b, n)| *b != 0 || *n != 0);
    for (address, (balance, nonce)) in &expected {
        let account = state.chain.account(address).unwrap();
        assert_eq!(
            (account.balance.base_units(), account.nonce.0),
            (*balance, *nonce),
            "account {address:?} after {tip}"
        );
    }
    assert_eq!(
        state.chain.state().all_accounts().unwrap().len(),
        expected.len(),
        "accounts after {tip}"
    );
});
