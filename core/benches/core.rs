//! Criterion benches of the consensus hot paths: signature checks, block validation, state
//! apply and the miner's header hashing. End-to-end figures come from `scripts/bench`.

use apiary_core::block::{HeaderHasher, BLOCK_VERSION};
use apiary_core::spec::{ChainId, ConsensusParams};
use apiary_core::state::{tree, Layout, PageKey, PageSource, SourceError};
use apiary_core::tx::{verify_signatures, KeyCache};
use apiary_core::validate::{check_block, connect_block, ConnectError};
use apiary_core::{
    tx_merkle_root, Account, Address, AddressPrefix, Amount, Block, BlockHeader, ChainSpec,
    Hash256, Height, MemoryState, Nonce, SignedTransaction, SigningKey, Target, Transaction,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};

const TXS: usize = 1000;
const ACCOUNTS: u64 = 100_000;

fn spec() -> ChainSpec {
    let easy = Target::for_expected_hashes(1).to_compact();
    ChainSpec {
        chain_id: ChainId::new("apiary-bench").unwrap(),
        address_prefix: AddressPrefix::new("apbench").unwrap(),
        genesis_timestamp_ms: apiary_core::TimestampMs(0),
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

fn funded() -> Account {
    Account {
        balance: Amount::from_base_units(1 << 40),
        nonce: Nonce(0),
    }
}

/// 1000 transfers from distinct signers, and a state of `accounts` funded accounts.
fn fixture(spec: &ChainSpec, accounts: u64) -> (Vec<SignedTransaction>, MemoryState) {
    let keys: Vec<SigningKey> = (0..TXS as u64)
        .map(|i| SigningKey::from_bytes(&Sha256::digest((i + 1_000_000).to_le_bytes()).into()))
        .collect();
    let state = MemoryState::from_accounts(
        (0..accounts).map(|i| (address_of(i), funded())).chain(
            keys.iter()
                .map(|k| (Address(k.verifying_key().to_bytes()), funded())),
        ),
    );
    let txs: Vec<SignedTransaction> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            Transaction {
                chain_id: spec.chain_id.clone(),
                from: Address(key.verifying_key().to_bytes()),
                to: address_of(i as u64 * 97 % accounts),
                amount: Amount::from_base_units(5),
                fee: Amount::from_base_units(1),
                nonce: Nonce(0),
            }
            .sign(key)
        })
        .collect();
    (txs, state)
}

fn block_on(state: &MemoryState, spec: &ChainSpec, txs: Vec<SignedTransaction>) -> Block {
    let txids: Vec<_> = txs.iter().map(SignedTransaction::txid).collect();
    let mut block = Block {
        header: BlockHeader {
            version: BLOCK_VERSION,
            height: Height(1),
            prev_hash: Default::default(),
            tx_root: tx_merkle_root(&txids),
            state_root: Hash256::ZERO,
            miner: address_of(0),
            timestamp_ms: apiary_core::TimestampMs(1),
            bits: spec.consensus.pow_limit,
            nonce: 0,
        },
        txs,
    };
    // Connecting with a zero state root fails and names the root the block should carry.
    match connect_block(state, &block, &txids, spec) {
        Err(ConnectError::Invalid(apiary_core::BlockError::BadStateRoot { expected, .. })) => {
            block.header.state_root = expected
        }
        other => panic!("{other:?}"),
    }
    block
}

/// A state's pages, counting the reads: what a store would be asked.
struct Counted<'a> {
    state: &'a MemoryState,
    reads: AtomicUsize,
}

impl PageSource for Counted<'_> {
    fn page(
        &self,
        key: &PageKey,
    ) -> Result<Option<std::sync::Arc<apiary_core::state::Page>>, SourceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.state.page(key)
    }

    fn layout(&self) -> Layout {
        self.state.layout()
    }
}

/// The tree's work for one block of 1000 transfers (2000 accounts and the miner changed)
/// on `accounts` accounts, in pages of `bits` bits: time, page reads, node hashes.
fn tree_designs(c: &mut Criterion) {
    let spec = spec();
    let mut group = c.benchmark_group("state tree");
    group.throughput(Throughput::Elements(TXS as u64));
    group.sample_size(20);
    for accounts in [100_000u64, 1_000_000] {
        let (txs, state) = fixture(&spec, accounts);
        let block = block_on(&state, &spec, txs);
        let txids = block.txids();
        let connected = connect_block(&state, &block, &txids, &spec).unwrap();
        let leaves = &connected.changes;
        let sorted: Vec<(Address, Account)> = state.iter().map(|(a, acc)| (*a, *acc)).collect();
        for bits in [1u8, 4] {
            let layout = Layout::new(bits).unwrap();
            let paged = MemoryState::from_accounts_with_layout(layout, sorted.iter().copied());
            let counted = Counted {
                state: &paged,
                reads: AtomicUsize::new(0),
            };
            let update = tree::update(&counted, leaves).unwrap();
            assert_eq!(update.root, connected.tree.root);
            let (pages, bytes) = paged
                .pages()
                .fold((0, 0), |(n, b), (_, page)| (n + 1, b + page.encode().len()));
            eprintln!(
                "state tree: {accounts} accounts, {bits}-bit pages: {} page reads and {} written, \
                 {} node hashes a block; {pages} pages, {:.1} bytes an account",
                counted.reads.load(Ordering::Relaxed),
                update.pages.len(),
                update.hashes,
                bytes as f64 / sorted.len() as f64,
            );
            group.bench_function(
                format!("update for 1000 txs, {accounts} accounts, {bits}-bit pages"),
                |b| b.iter(|| tree::update(&paged, leaves).unwrap()),
            );
        }
    }
    group.finish();

    // The node hash as specified (plain SHA-256 of 65 bytes: two compressions) against one
    // compression from a domain-specific starting state (the old tree's node).
    let mut group = c.benchmark_group("node hash");
    group.throughput(Throughput::Elements(1));
    let (mut left, right) = (Hash256([1; 32]), Hash256([2; 32]));
    group.bench_function("plain tagged SHA-256 (the commitment's)", |b| {
        b.iter(|| {
            left = apiary_core::state::node_hash(&left, &right);
            left
        })
    });
    // SHA-256's state after one block holding a domain string.
    let mut iv: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut domain = [0u8; 64];
    domain[..31].copy_from_slice(b"apiary/state-tree/inner-node/v1");
    sha2::block_api::compress256(&mut iv, &[domain]);
    group.bench_function("one compression from a custom IV (the old tree's)", |b| {
        b.iter(|| {
            let mut block = [0u8; 64];
            block[..32].copy_from_slice(&left.0);
            block[32..].copy_from_slice(&right.0);
            let mut state = iv;
            sha2::block_api::compress256(&mut state, &[block]);
            for (chunk, word) in left.0.chunks_exact_mut(4).zip(state) {
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            left
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let spec = spec();
    let (txs, state) = fixture(&spec, ACCOUNTS);
    let block = block_on(&state, &spec, txs.clone());
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
        |b| b.iter(|| connect_block(&state, &block, &txids, &spec).unwrap()),
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

criterion_group!(core_benches, benches, tree_designs);
criterion_main!(core_benches);
