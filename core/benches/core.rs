//! Criterion benches of the consensus hot paths: signature checks, block validation, state
//! apply and the miner's header hashing. End-to-end figures come from `scripts/bench`.

use apiary_core::block::{HeaderHasher, BLOCK_VERSION};
use apiary_core::spec::{ChainId, ConsensusParams};
use apiary_core::tx::{verify_signatures, KeyCache};
use apiary_core::validate::{check_block, connect_block};
use apiary_core::{
    tx_merkle_root, Account, AccountTree, Address, AddressPrefix, Amount, Block, BlockHeader,
    ChainSpec, Hash256, Height, Nonce, SignedTransaction, SigningKey, Target, Transaction,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sha2::{Digest, Sha256};

const TXS: usize = 1000;
const ACCOUNTS: u64 = 100_000;

fn spec() -> ChainSpec {
    let easy = Target::for_expected_hashes(1).to_compact();
    ChainSpec {
        chain_id: ChainId::new("apiary-bench").unwrap(),
        address_prefix: AddressPrefix::new("apbench").unwrap(),
        genesis_timestamp_ms: 0,
        consensus: ConsensusParams {
            target_block_time_ms: 1000,
            asert_half_life_ms: 1_000_000,
            pow_limit: easy,
            genesis_bits: easy,
            max_block_bytes: 64 << 20,
            max_block_txs: 100_000,
            max_future_drift_ms: 0,
            median_time_span: 11,
            initial_reward: Amount::from_base_units(1),
            halving_interval: 0,
            max_reorg_depth: 10,
        },
        allocations: vec![],
    }
}

fn address_of(i: u64) -> Address {
    Address(Sha256::digest(i.to_le_bytes()).into())
}

/// 1000 transfers from distinct signers, and a state of 100,000 funded accounts.
fn fixture(spec: &ChainSpec) -> (Vec<SignedTransaction>, AccountTree) {
    let mut tree = AccountTree::new();
    for i in 0..ACCOUNTS {
        tree.set(
            address_of(i),
            Some(Account {
                balance: Amount::from_base_units(1 << 40),
                nonce: Nonce(0),
            }),
        );
    }
    let txs: Vec<SignedTransaction> = (0..TXS as u64)
        .map(|i| {
            let key = SigningKey::from_bytes(&Sha256::digest((i + 1_000_000).to_le_bytes()).into());
            let from = Address(key.verifying_key().to_bytes());
            tree.set(
                from,
                Some(Account {
                    balance: Amount::from_base_units(1 << 40),
                    nonce: Nonce(0),
                }),
            );
            Transaction {
                chain_id: spec.chain_id.clone(),
                from,
                to: address_of(i * 97 % ACCOUNTS),
                amount: Amount::from_base_units(5),
                fee: Amount::from_base_units(1),
                nonce: Nonce(0),
            }
            .sign(&key)
        })
        .collect();
    tree.root();
    (txs, tree)
}

fn block_on(tree: &mut AccountTree, spec: &ChainSpec, txs: Vec<SignedTransaction>) -> Block {
    let txids: Vec<_> = txs.iter().map(SignedTransaction::txid).collect();
    let mut block = Block {
        header: BlockHeader {
            version: BLOCK_VERSION,
            height: Height(1),
            prev_hash: Default::default(),
            tx_root: tx_merkle_root(&txids),
            state_root: Hash256::ZERO,
            miner: address_of(0),
            timestamp_ms: 1,
            bits: spec.consensus.pow_limit,
            nonce: 0,
        },
        txs,
    };
    // Connecting with a zero state root fails (leaving the state as it was) and names the
    // root the block should carry.
    match connect_block(tree, &block, &txids, spec) {
        Err(apiary_core::BlockError::BadStateRoot { expected, .. }) => {
            block.header.state_root = expected
        }
        other => panic!("{other:?}"),
    }
    block
}

fn benches(c: &mut Criterion) {
    let spec = spec();
    let (txs, mut tree) = fixture(&spec);
    let block = block_on(&mut tree, &spec, txs.clone());
    let txids = block.txids();
    let encoded_size = block.encode().len();

    let mut group = c.benchmark_group("signatures");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_strict one tx", |b| {
        b.iter(|| txs[0].verify_signature().unwrap())
    });
    group.throughput(Throughput::Elements(TXS as u64));
    group.bench_function(
        "verify_signatures 1000 txs (batched, all cores, keys decoded)",
        |b| b.iter(|| verify_signatures(&txs, &txids, &KeyCache::default()).unwrap()),
    );
    let warm = KeyCache::default();
    group.bench_function(
        "verify_signatures 1000 txs (batched, all cores, keys cached)",
        |b| b.iter(|| verify_signatures(&txs, &txids, &warm).unwrap()),
    );
    group.finish();

    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(TXS as u64));
    group.bench_function("check_block 1000 txs", |b| {
        b.iter(|| check_block(&block, encoded_size, &spec, &KeyCache::default()).unwrap())
    });
    group.bench_function(
        "connect_block 1000 txs on 100k accounts (apply + root + undo)",
        |b| {
            b.iter_batched_ref(
                || tree.clone(),
                |tree| connect_block(tree, &block, &txids, &spec).unwrap(),
                BatchSize::LargeInput,
            )
        },
    );
    group.finish();

    let header = block.header.clone();
    let mut group = c.benchmark_group("mining");
    group.throughput(Throughput::Elements(1));
    let mut hasher = HeaderHasher::new(&header);
    let mut nonce = 0u64;
    group.bench_function("midstate hash per nonce", |b| {
        b.iter(|| {
            nonce += 1;
            hasher.hash_with_nonce(nonce)
        })
    });
    let mut bytes = header.encode();
    group.bench_function("plain sha256d of the header", |b| {
        b.iter(|| {
            bytes[152] = bytes[152].wrapping_add(1);
            Sha256::digest(Sha256::digest(bytes))
        })
    });
    let mut state = [0u32; 8];
    group.bench_function("two raw compressions (the floor)", |b| {
        b.iter(|| {
            sha2::block_api::compress256(&mut state, &[[7u8; 64]]);
            sha2::block_api::compress256(&mut state, &[[7u8; 64]]);
            state[0]
        })
    });
    group.finish();
}

criterion_group!(core_benches, benches);
criterion_main!(core_benches);
