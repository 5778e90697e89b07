//! Golden vectors (`tests/vectors/*.json`): bytes and hashes a third-party implementation
//! can test itself against, and that pin our own formats — a change to an encoding, a hash
//! or a consensus rule fails here instead of passing unnoticed.
//!
//! Each test recomputes its file and compares it with the committed one, field by field,
//! then reads the committed bytes back (decode, verify, connect). To change a vector on
//! purpose (a new format version): `APIARY_WRITE_VECTORS=1 cargo test -p apiary-core
//! --test vectors`, and say why in the commit.

use apiary_core::block::{HeaderHasher, BLOCK_VERSION};
use apiary_core::hash::merkle_root;
use apiary_core::hd::{account_key, account_path, address_of, seed_from_mnemonic};
use apiary_core::pow::{next_target, RetargetParams};
use apiary_core::spec::ConsensusParams;
use apiary_core::tx::{verify_signatures, KeyCache};
use apiary_core::validate::{
    check_block, check_header_context, connect_block, ConnectError, ParentContext,
};
use apiary_core::*;
use serde_json::{json, Value};

mod common;
use common::{assert_same, check_against_pinned, genesis_json, pinned_file};

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string"))
}

fn bytes(value: &Value, key: &str) -> Vec<u8> {
    hex::decode(text(value, key)).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Keys of the vectors: the secret key is 32 bytes of `seed`. Public test keys only.
fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn address(seed: u8) -> Address {
    Address(key(seed).verifying_key().to_bytes())
}

const PREFIX: &str = "apvec";

/// A small chain of its own, funding the vector keys 1, 2 and 3, with the devnet's easy
/// proof of work.
fn vector_spec() -> ChainSpec {
    ChainSpec {
        chain_id: ChainId::new("apiary-vectors").unwrap(),
        address_prefix: AddressPrefix::new(PREFIX).unwrap(),
        genesis_timestamp_ms: apiary_core::TimestampMs(1_767_225_600_000),
        consensus: ConsensusParams {
            target_block_time_ms: 2_000,
            asert_half_life_ms: 40_000,
            pow_limit: CompactTarget(0x1f00ffff),
            genesis_bits: CompactTarget(0x1f00ffff),
            max_block_bytes: 4_000_000,
            max_block_txs: 20_000,
            max_future_drift_ms: 15_000,
            median_time_span: 11,
            initial_reward: Amount::from_coins(50).unwrap(),
            halving_interval: 210_000,
            max_reorg_depth: 1_000,
        },
        allocations: vec![
            (address(1), Amount::from_coins(1_000).unwrap()),
            (address(2), Amount::from_coins(1_000).unwrap()),
            (address(3), Amount::from_base_units(5)),
        ],
    }
}

fn transfer(
    spec: &ChainSpec,
    from: u8,
    to: Address,
    amount: u64,
    fee: u64,
    nonce: u64,
) -> SignedTransaction {
    Transaction {
        chain_id: spec.chain_id.clone(),
        from: address(from),
        to,
        amount: Amount::from_base_units(amount),
        fee: Amount::from_base_units(fee),
        nonce: Nonce(nonce),
    }
    .sign(&key(from))
}

fn tx_json(spec: &ChainSpec, seed: u8, stx: &SignedTransaction) -> Value {
    let prefix = &spec.address_prefix;
    json!({
        "secret_key": hex::encode(key(seed).to_bytes()),
        "chain_id": stx.tx.chain_id.as_str(),
        "from": stx.tx.from.to_text(prefix),
        "from_hex": hex::encode(stx.tx.from.0),
        "to": stx.tx.to.to_text(prefix),
        "to_hex": hex::encode(stx.tx.to.0),
        "amount": stx.tx.amount.base_units().to_string(),
        "fee": stx.tx.fee.base_units().to_string(),
        "nonce": stx.tx.nonce.0.to_string(),
        "signing_bytes": hex::encode(stx.tx.signing_bytes()),
        "signature": hex::encode(stx.signature),
        "encoded": hex::encode(stx.encode()),
        "txid": stx.txid().to_string(),
    })
}

#[test]
fn transactions_match_their_vectors() {
    let spec = vector_spec();
    let cases = [
        (1, transfer(&spec, 1, address(2), 100_000_000, 1_000, 0)),
        (2, transfer(&spec, 2, address(1), 1, 0, 41)),
        // The largest amounts and nonce: all little-endian u64.
        (
            3,
            transfer(&spec, 3, address(3), u64::MAX, u64::MAX, u64::MAX),
        ),
    ];
    let computed = json!({
        "about": "Signed transfers: signing_bytes = borsh(chain_id, from, to, amount, fee, nonce); \
                  signature = Ed25519 (RFC 8032) over signing_bytes; encoded = signing_bytes ‖ signature; \
                  txid = SHA-256(SHA-256(encoded)), shown as hex of its bytes in order. \
                  Amounts and nonces are decimal strings of u64 base units (1 coin = 10^8).",
        "address_prefix": PREFIX,
        "transactions": cases.iter().map(|(seed, stx)| tx_json(&spec, *seed, stx)).collect::<Vec<_>>(),
    });
    let pinned = check_against_pinned("transactions.json", &computed);
    for case in pinned["transactions"].as_array().unwrap() {
        let encoded = bytes(case, "encoded");
        let stx: SignedTransaction =
            decode_exact("tx", &encoded, apiary_core::tx::MAX_TX_BYTES).unwrap();
        assert_eq!(stx.encode(), encoded, "one encoding only");
        assert_eq!(stx.tx.signing_bytes(), bytes(case, "signing_bytes"));
        assert_eq!(stx.txid().to_string(), text(case, "txid"));
        stx.verify_signature().expect("the mempool's strict check");
        verify_signatures(
            std::slice::from_ref(&stx),
            &[stx.txid()],
            &KeyCache::default(),
        )
        .expect("the consensus check");
        let prefix = AddressPrefix::new(PREFIX).unwrap();
        assert_eq!(
            Address::parse(text(case, "from"), &prefix)
                .unwrap()
                .0
                .to_vec(),
            bytes(case, "from_hex")
        );
    }
}

/// Block 1 of the vector chain: three transfers (an odd count, so the Merkle tree carries a
/// node up), mined to the genesis target.
fn block_one(spec: &ChainSpec) -> (Block, MemoryState) {
    let genesis = spec.genesis_block();
    let txs = vec![
        transfer(spec, 1, address(2), 250_000_000, 2_000, 0),
        transfer(spec, 2, address(4), 100_000_000, 1_000, 0),
        transfer(spec, 1, address(1), 1, 500, 1),
    ];
    let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();
    let mut header = BlockHeader {
        version: BLOCK_VERSION,
        height: Height(1),
        prev_hash: genesis.hash(),
        tx_root: tx_merkle_root(&txids),
        state_root: Hash256::ZERO,
        miner: address(5),
        timestamp_ms: spec.genesis_timestamp_ms + 2_000,
        bits: spec.consensus.genesis_bits,
        nonce: 0,
    };
    // The state root after the block: connect it once with a zero root to learn it.
    let mut state = spec.genesis_state();
    let probe = Block {
        header: header.clone(),
        txs: txs.clone(),
    };
    let root = match connect_block(&state, &probe, &txids, spec) {
        Err(ConnectError::Invalid(BlockError::BadStateRoot { expected, .. })) => expected,
        other => panic!("expected only the root to differ, got {other:?}"),
    };
    header.state_root = root;
    let target = header.bits.to_target().unwrap();
    let mut hasher = HeaderHasher::new(&header);
    header.nonce = (0..)
        .find(|n| target.is_met_by(&hasher.hash_with_nonce(*n)))
        .unwrap();
    let block = Block { header, txs };
    let connected = connect_block(&state, &block, &txids, spec).unwrap();
    state.apply(&connected.changes);
    (block, state)
}

/// The spec in `vector` decodes and yields the genesis block the vector pins.
fn check_genesis(vector: &Value) -> ChainSpec {
    let spec: ChainSpec = borsh::from_slice(&bytes(vector, "spec_borsh")).unwrap();
    assert_same("genesis", "$", &genesis_json(&spec), vector);
    spec
}

#[test]
fn a_block_matches_its_vector() {
    let spec = vector_spec();
    let (block, state) = block_one(&spec);
    let txids = block.txids();
    let mut accounts: Vec<(&Address, &Account)> = state.iter().collect();
    accounts.sort_by_key(|(a, _)| a.0);
    let accounts_after: Vec<Value> = accounts
        .iter()
        .map(|(a, account)| {
            json!({
                "address": a.to_text(&spec.address_prefix),
                "balance": account.balance.base_units().to_string(),
                "nonce": account.nonce.0.to_string(),
            })
        })
        .collect();
    let computed = json!({
        "about": "Block 1 of the chain `genesis`: header = borsh(version u32, height u64, prev_hash, \
                  tx_root, state_root, miner, timestamp_ms u64, bits u32, nonce u64), 160 bytes; \
                  block hash = SHA-256(SHA-256(header)); tx_root = Merkle root of the txids \
                  (node = SHA-256(tag 0x01 ‖ left ‖ right), an odd node carried up unchanged); \
                  state_root commits to every account after the block (docs/protocol.md).",
        "genesis": genesis_json(&spec),
        "txids": txids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "tx_root": block.header.tx_root.to_string(),
        "state_root": block.header.state_root.to_string(),
        "accounts_after": accounts_after,
        "header": hex::encode(block.header.encode()),
        "block": hex::encode(block.encode()),
        "hash": block.hash().to_string(),
    });
    let pinned = check_against_pinned("block.json", &computed);

    // Read back: the pinned bytes decode, pass every check and connect to the genesis state.
    let spec = check_genesis(&pinned["genesis"]);
    let encoded = bytes(&pinned, "block");
    let block: Block = decode_exact("block", &encoded, 1 << 20).unwrap();
    assert_eq!(block.encode(), encoded);
    assert_eq!(block.hash().to_string(), text(&pinned, "hash"));
    let txids = check_block(&block, encoded.len(), &spec, &KeyCache::default()).unwrap();
    let genesis = spec.genesis_block();
    let parent = ParentContext {
        hash: genesis.hash(),
        height: Height(0),
        bits: genesis.header.bits,
        timestamp_ms: genesis.header.timestamp_ms,
        solve_time_ms: None,
        median_time_past_ms: genesis.header.timestamp_ms,
    };
    check_header_context(&block.header, &parent, block.header.timestamp_ms, &spec).unwrap();
    let state = spec.genesis_state();
    let connected = connect_block(&state, &block, &txids, &spec).unwrap();
    assert_eq!(connected.tree.root.to_string(), text(&pinned, "state_root"));
}

#[test]
fn merkle_roots_match_their_vectors() {
    let leaf = |i: u8| apiary_core::hash::sha256d(&[i]);
    let roots: Vec<Value> = [0u8, 1, 2, 3, 4, 5, 7]
        .iter()
        .map(|&n| {
            let leaves: Vec<Hash256> = (0..n).map(leaf).collect();
            json!({"leaves": n, "root": merkle_root(&leaves).to_string()})
        })
        .collect();
    let computed = json!({
        "about": "Merkle roots of n leaves, leaf i = SHA-256(SHA-256([i])): empty = 32 zero bytes, \
                  one leaf = itself, node = SHA-256(0x01 ‖ left ‖ right), an odd last node carried up.",
        "roots": roots,
    });
    check_against_pinned("merkle.json", &computed);
}

#[test]
fn the_retarget_matches_its_vector() {
    let spec = vector_spec();
    let params = spec.retarget_params();
    // Solve times in ms: on time, fast, slow, negative (a timestamp before its parent's),
    // one full half-life late, and a day idle (clamped at the limit).
    let solve_times: [i64; 12] = [
        2_000, 2_000, 0, 0, 0, 1, 500, 42_000, -10_000, 6_000, 86_400_000, 1_000,
    ];
    let mut target = spec.consensus.genesis_bits.to_target().unwrap();
    // Start well below the limit, so both directions show.
    for _ in 0..40 {
        target = next_target(target, 0, &params);
    }
    let steps: Vec<Value> = solve_times
        .iter()
        .map(|&solve| {
            let next = next_target(target, solve, &params);
            let step = json!({
                "parent_bits": format!("{:08x}", target.to_compact().0),
                "parent_target": target.to_hex(),
                "solve_time_ms": solve,
                "next_bits": format!("{:08x}", next.to_compact().0),
                "next_target": next.to_hex(),
            });
            target = next;
            step
        })
        .collect();
    let computed = json!({
        "about": "ASERT, block to block: next = parent × 2^((solve_time − target_block_time) / half_life), \
                  16.16 fixed point with aserti3-2d's cubic approximation, clamped to pow_limit, \
                  then rounded through the compact form (docs/protocol.md).",
        "target_block_time_ms": params.target_block_time_ms,
        "half_life_ms": params.half_life_ms,
        "pow_limit": params.pow_limit.to_hex(),
        "steps": steps,
    });
    let pinned = check_against_pinned("asert.json", &computed);
    let limit = Target::from_hex(text(&pinned, "pow_limit")).unwrap();
    let params = RetargetParams {
        target_block_time_ms: pinned["target_block_time_ms"].as_u64().unwrap(),
        half_life_ms: pinned["half_life_ms"].as_u64().unwrap(),
        pow_limit: limit,
    };
    for step in pinned["steps"].as_array().unwrap() {
        let parent = CompactTarget(u32::from_str_radix(text(step, "parent_bits"), 16).unwrap());
        let next = next_target(
            parent.to_target().unwrap(),
            step["solve_time_ms"].as_i64().unwrap(),
            &params,
        );
        assert_eq!(
            format!("{:08x}", next.to_compact().0),
            text(step, "next_bits")
        );
    }
}

#[test]
fn addresses_match_their_vectors() {
    // A public test mnemonic (BIP39's "abandon … about"): never hold value with it.
    let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let seed = seed_from_mnemonic(phrase, "").unwrap();
    let prefixes = ["apdev", PREFIX];
    let accounts: Vec<Value> = (0..3)
        .map(|index| {
            let key = account_key(&seed, index);
            let public = address_of(&key);
            json!({
                "index": index,
                "path": format!("m/{}", account_path(index).map(|i| format!("{i}'")).join("/")),
                "secret_key": hex::encode(key.to_bytes()),
                "public_key": hex::encode(public.0),
                "addresses": prefixes.iter().map(|p| {
                    let prefix = AddressPrefix::new(p).unwrap();
                    (p.to_string(), Value::from(public.to_text(&prefix)))
                }).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let computed = json!({
        "about": "Accounts of a BIP39 mnemonic: seed by BIP39 (empty passphrase), key by SLIP-0010 \
                  ed25519 along m/44'/7877'/index'/0'/0'; address = bech32m(prefix, public key).",
        "mnemonic": phrase,
        "seed": hex::encode(seed),
        "accounts": accounts,
    });
    let pinned = check_against_pinned("addresses.json", &computed);
    for account in pinned["accounts"].as_array().unwrap() {
        for (prefix, text) in account["addresses"].as_object().unwrap() {
            let prefix = AddressPrefix::new(prefix).unwrap();
            let parsed = Address::parse(text.as_str().unwrap(), &prefix).unwrap();
            assert_eq!(parsed.0.to_vec(), bytes(account, "public_key"));
        }
    }
}

/// The devnet's genesis (written by `apiary-genesis`'s test from the embedded spec): its
/// spec bytes give exactly the genesis block and hash the vector pins.
#[test]
fn the_devnet_genesis_vector_is_consistent() {
    let vector = pinned_file("devnet-genesis.json");
    let spec = check_genesis(&vector);
    assert_eq!(spec.chain_id.as_str(), "apiary-devnet");
}

fn state_account(balance: u64, nonce: u64) -> Account {
    Account {
        balance: Amount::from_base_units(balance),
        nonce: Nonce(nonce),
    }
}

fn proof_json(proof: &apiary_core::state::AccountProof) -> Value {
    use apiary_core::state::proof::ProofEnd;
    let end = match &proof.end {
        ProofEnd::Empty => json!({"kind": "empty"}),
        ProofEnd::Leaf { address, account } => json!({
            "kind": "account",
            "address": hex::encode(address.0),
            "balance": account.balance.base_units().to_string(),
            "nonce": account.nonce.0.to_string(),
        }),
    };
    json!({
        "siblings": proof.siblings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "end": end,
        "borsh": hex::encode(borsh::to_vec(proof).unwrap()),
    })
}

/// The state commitment: leaves, root, and proofs of presence, absence and a range.
#[test]
fn the_state_commitment_matches_its_vector() {
    use apiary_core::state::{leaf_hash, proof, root_of_sorted, AccountProof, RangeProof};
    use sha2::{Digest, Sha256};
    let mut zero_last = [0u8; 32];
    zero_last[31] = 1;
    let mut accounts: Vec<(Address, Account)> = vec![
        // Two addresses that part only at their last bit, 256 levels down.
        (Address([0; 32]), state_account(1, 0)),
        (Address(zero_last), state_account(2, 0)),
        (Address([0x80; 32]), state_account(3, 1)),
        (Address([0xc0; 32]), state_account(u64::MAX, u64::MAX)),
    ];
    accounts.extend((0u8..6).map(|i| {
        let address = Address(Sha256::digest([i]).into());
        (address, state_account(1_000 + i as u64, i as u64))
    }));
    accounts.sort_by_key(|(a, _)| *a);
    let state = MemoryState::from_accounts(accounts.clone());
    let root = state.root();
    assert_eq!(
        root,
        root_of_sorted(&accounts),
        "the pages give the defined root"
    );
    let present = accounts[5].0;
    let mut absent_empty = Address([0x20; 32]);
    absent_empty.0[0] = 0x3f;
    let mut absent_other = Address([0; 32]);
    absent_other.0[31] = 2;
    let (first, last) = (accounts[2].0, accounts[7].0);
    let listed: Vec<(Address, Account)> = accounts[2..=7].to_vec();
    let computed = json!({
        "about": "The state commitment (docs/protocol.md): leaf = SHA-256(0x02 ‖ address ‖ \
                  balance u64 LE ‖ nonce u64 LE); node = SHA-256(0x03 ‖ left ‖ right); an \
                  empty subtree is 32 zero bytes, a subtree of one account is its leaf. Proofs: \
                  siblings from the root down, and where the path ends.",
        "accounts": accounts.iter().map(|(a, acc)| json!({
            "address": hex::encode(a.0),
            "balance": acc.balance.base_units().to_string(),
            "nonce": acc.nonce.0.to_string(),
            "leaf": leaf_hash(a, acc).to_string(),
        })).collect::<Vec<_>>(),
        "root": root.to_string(),
        "proof_present": {"address": hex::encode(present.0), "proof": proof_json(&proof::prove(&state, &present).unwrap())},
        "proof_absent_empty": {"address": hex::encode(absent_empty.0), "proof": proof_json(&proof::prove(&state, &absent_empty).unwrap())},
        "proof_absent_other": {"address": hex::encode(absent_other.0), "proof": proof_json(&proof::prove(&state, &absent_other).unwrap())},
        "range": {
            "first": hex::encode(first.0),
            "last": hex::encode(last.0),
            "proof": hex::encode(borsh::to_vec(&proof::prove_range(&state, &first, &last).unwrap()).unwrap()),
        },
    });
    let pinned = check_against_pinned("state.json", &computed);

    // Read back: the pinned proofs verify against the pinned root.
    let root: Hash256 = text(&pinned, "root").parse().unwrap();
    let address_of =
        |v: &Value| Address(hex::decode(text(v, "address")).unwrap().try_into().unwrap());
    let decode =
        |v: &Value| -> AccountProof { borsh::from_slice(&bytes(&v["proof"], "borsh")).unwrap() };
    let found = decode(&pinned["proof_present"])
        .verify(&root, &address_of(&pinned["proof_present"]))
        .unwrap();
    assert_eq!(found, Some(accounts[5].1));
    for absent in ["proof_absent_empty", "proof_absent_other"] {
        let proof = decode(&pinned[absent]);
        assert_eq!(
            proof.verify(&root, &address_of(&pinned[absent])),
            Ok(None),
            "{absent}"
        );
    }
    let range: RangeProof = borsh::from_slice(&bytes(&pinned["range"], "proof")).unwrap();
    range.verify(&root, &first, &last, &listed).unwrap();
}
