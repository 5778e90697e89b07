//! Shared by the golden-vector tests of `apiary-core` and `apiary-genesis` (included by
//! path): reading and writing vectors, and the JSON form of a chain spec and its genesis.

use apiary_core::ChainSpec;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Works from either crate: both sit beside `core/` in the workspace.
fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/vectors")
        .join(name)
}

/// The committed vector `name`.
pub fn pinned_file(name: &str) -> Value {
    let path = vector_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed vector `name`; or, with APIARY_WRITE_VECTORS set, `computed` written to it.
fn pinned(name: &str, computed: &Value) -> Value {
    let path = vector_path(name);
    if std::env::var_os("APIARY_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(computed).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    pinned_file(name)
}

/// Fails naming the first path where `computed` and `pinned` differ.
pub fn assert_same(name: &str, at: &str, computed: &Value, pinned: &Value) {
    match (computed, pinned) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                assert_same(name, &format!("{at}.{key}"), x, y);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same(name, &format!("{at}[{i}]"), x, y);
            }
        }
        _ => assert_eq!(
            computed, pinned,
            "{name}: {at} differs from the pinned vector (a format or consensus change? see \
             the top of core/tests/vectors.rs)"
        ),
    }
}

pub fn check_against_pinned(name: &str, computed: &Value) -> Value {
    let pinned = pinned(name, computed);
    assert_same(name, "$", computed, &pinned);
    pinned
}

pub fn spec_json(spec: &ChainSpec) -> Value {
    let c = &spec.consensus;
    json!({
        "chain_id": spec.chain_id.as_str(),
        "address_prefix": spec.address_prefix.as_str(),
        "genesis_timestamp_ms": spec.genesis_timestamp_ms.to_string(),
        "target_block_time_ms": c.target_block_time_ms.to_string(),
        "asert_half_life_ms": c.asert_half_life_ms.to_string(),
        "pow_limit_bits": format!("{:08x}", c.pow_limit.0),
        "genesis_bits": format!("{:08x}", c.genesis_bits.0),
        "max_block_bytes": c.max_block_bytes,
        "max_block_txs": c.max_block_txs,
        "max_future_drift_ms": c.max_future_drift_ms.to_string(),
        "median_time_span": c.median_time_span,
        "initial_reward": c.initial_reward.base_units().to_string(),
        "halving_interval": c.halving_interval.to_string(),
        "max_reorg_depth": c.max_reorg_depth.to_string(),
        "allocations": spec.allocations.iter().map(|(a, amount)| json!({
            "address": a.to_text(&spec.address_prefix),
            "amount": amount.base_units().to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// What a chain spec commits to, and the genesis block that follows from it.
pub fn genesis_json(spec: &ChainSpec) -> Value {
    let genesis = spec.genesis_block();
    json!({
        "spec": spec_json(spec),
        "spec_borsh": hex::encode(borsh::to_vec(spec).unwrap()),
        "spec_hash": spec.spec_hash().to_string(),
        "genesis_state_root": spec.genesis_state().root().to_string(),
        "genesis_header": hex::encode(genesis.header.encode()),
        "genesis_block": hex::encode(genesis.encode()),
        "genesis_hash": genesis.hash().to_string(),
    })
}
