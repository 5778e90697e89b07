//! What the fuzz targets share: a chain spec whose proof of work almost any hash meets (so
//! inputs get past it to the checks behind), real nodes on real RocksDB in temporary
//! directories, and the verdict our signature rule must give.

use apiary_core::{Address, Block, ChainSpec, SignedTransaction, SigningKey};
use apiary_node::chain::Chain;
use apiary_node::mempool::MempoolConfig;
use apiary_node::store::Store;
use apiary_node::Node;
use curve25519_dalek::edwards::CompressedEdwardsY;
use std::sync::{Arc, OnceLock};

/// Keys funded by `spec()`: secret key = 32 bytes of the seed, seeds 1 to FUNDED.
pub const FUNDED: u8 = 4;

/// Derived once per seed: deriving a key (a base-point multiplication) for every
/// transaction was a fifth of the `chain` target's time, all of it in the harness.
pub fn key(seed: u8) -> &'static SigningKey {
    &keys()[usize::from(seed)].0
}

pub fn address(seed: u8) -> Address {
    keys()[usize::from(seed)].1
}

fn keys() -> &'static [(SigningKey, Address)] {
    static KEYS: OnceLock<Vec<(SigningKey, Address)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..=u8::MAX)
            .map(|seed| {
                let key = SigningKey::from_bytes(&[seed; 32]);
                let address = Address(key.verifying_key().to_bytes());
                (key, address)
            })
            .collect()
    })
}

/// The fuzz chain (`fuzz/chain.toml`, also read by the seed corpus's writer).
pub fn spec() -> Arc<ChainSpec> {
    static SPEC: OnceLock<Arc<ChainSpec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let spec = apiary_genesis::parse_spec(include_str!("../chain.toml"))
            .expect("fuzz/chain.toml is a valid spec");
        assert!(
            (1..=FUNDED).all(|seed| spec.allocations.iter().any(|(a, _)| *a == address(seed))),
            "fuzz/chain.toml funds the keys 1 to {FUNDED}"
        );
        Arc::new(spec)
    })
    .clone()
}

/// The fuzz chain's genesis block, computed once (building the genesis state allocates the
/// whole account tree: milliseconds under the sanitizer, too slow for every input).
pub fn genesis() -> &'static Block {
    static GENESIS: OnceLock<Block> = OnceLock::new();
    GENESIS.get_or_init(|| spec().genesis_block())
}

/// A fresh node of the fuzz chain on RocksDB in a temporary directory (kept alive by the
/// returned guard), in $APIARY_FUZZ_TMP, else /dev/shm, else the system's temp dir.
pub fn fresh_node() -> (Arc<Node>, tempfile::TempDir) {
    // A node kept for the whole run is never dropped, so its directory outlives the run:
    // scripts/fuzz gives each run a directory of its own and removes it afterwards.
    let base = std::env::var_os("APIARY_FUZZ_TMP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/dev/shm".into());
    let base = base.as_path();
    let dir = if base.is_dir() {
        tempfile::TempDir::new_in(base)
    } else {
        tempfile::TempDir::new()
    }
    .expect("a temporary directory");
    let spec = spec();
    let store = Store::open(&dir.path().join("db"), spec.genesis_hash()).expect("a new store");
    let chain = Chain::open(store, spec).expect("a new chain");
    (Node::new(chain, MempoolConfig::default()), dir)
}

/// One node for the whole run, for targets whose inputs are judged against a chain.
pub fn shared_node() -> &'static Arc<Node> {
    static NODE: OnceLock<(Arc<Node>, tempfile::TempDir)> = OnceLock::new();
    &NODE.get_or_init(fresh_node).0
}

/// ZIP 215's verdict (ed25519-consensus), with our documented extra refusals: A and R must
/// be canonical encodings of points not of small order (docs/protocol.md, "Signatures").
pub fn expected_verdict(stx: &SignedTransaction) -> bool {
    let oracle = ed25519_consensus::VerificationKey::try_from(stx.tx.from.0)
        .and_then(|key| {
            key.verify(
                &ed25519_consensus::Signature::from(stx.signature),
                &stx.tx.signing_bytes(),
            )
        })
        .is_ok();
    let r: [u8; 32] = stx.signature[..32].try_into().expect("64-byte signature");
    oracle && acceptable_point(stx.tx.from.0) && acceptable_point(r)
}

fn acceptable_point(bytes: [u8; 32]) -> bool {
    CompressedEdwardsY(bytes)
        .decompress()
        .is_some_and(|p| p.compress().0 == bytes && !p.is_small_order())
}
