//! What a client that believes no node asks for: headers it links and checks itself, and
//! accounts proved against a header's state root. Every proof here is checked with the
//! core's verifier against the header the node served, and a proof with one byte of its
//! account changed must fail.

use apiary_core::state::AccountProof;
use apiary_core::{BlockHeader, Hash256};
use apiary_system_tests::*;
use serde_json::{json, Value};
use tempfile::TempDir;

fn headers(node: &NodeProcess, from: u64, count: u32) -> Vec<BlockHeader> {
    let answer = node
        .rpc
        .call("headers_get", json!({"from": from, "count": count}))
        .unwrap();
    answer["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| borsh::from_slice(&hex::decode(h.as_str().unwrap()).unwrap()).unwrap())
        .collect()
}

fn proof_of(answer: &Value) -> AccountProof {
    borsh::from_slice(&hex::decode(answer["proof"].as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn headers_link_from_genesis_and_accounts_prove_against_them() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("n"), Some(&spec), &[]).unwrap();
    let miner = address_text(9);
    node.rpc
        .call("dev_mine", json!({"blocks": 5, "address": miner}))
        .unwrap();

    let chain = headers(&node, 0, 2_000);
    assert_eq!(chain.len(), 6, "genesis and five blocks, fewer than asked");
    for pair in chain.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash());
    }
    let tip = node.rpc.call("chain_tip", json!({})).unwrap();
    assert_eq!(chain[5].hash().to_string(), tip["hash"].as_str().unwrap());

    let answer = node
        .rpc
        .call("account_proof", json!({"address": miner}))
        .unwrap();
    assert_eq!(answer["height"], 5);
    let root: Hash256 = chain[5].state_root;
    assert_eq!(answer["state_root"].as_str().unwrap(), root.to_string());
    let account = node
        .rpc
        .call("account_get", json!({"address": miner}))
        .unwrap();
    let proved = proof_of(&answer)
        .verify(&root, &address(9))
        .expect("the proof leads to the tip header's state root")
        .expect("the miner's account exists");
    assert_eq!(
        proved.balance.base_units().to_string(),
        account["balance"].as_str().unwrap()
    );
    assert_eq!(answer["account"]["balance"], account["balance"]);

    // One byte of the account changed: the proof no longer leads to the root.
    let mut bytes = hex::decode(answer["proof"].as_str().unwrap()).unwrap();
    let at = bytes.len() - 16; // the balance's first byte (balance, then nonce, u64 LE)
    bytes[at] ^= 1;
    let forged: AccountProof = borsh::from_slice(&bytes).unwrap();
    assert!(forged.verify(&root, &address(9)).is_err());

    // An address nobody paid: proved absent.
    let nobody = address(0x77);
    let absent = node
        .rpc
        .call("account_proof", json!({"address": address_text(0x77)}))
        .unwrap();
    assert!(absent["account"].is_null());
    assert_eq!(proof_of(&absent).verify(&root, &nobody), Ok(None));
}

#[test]
fn a_proof_at_an_old_height_and_too_many_headers_are_refused_with_reasons() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("n"), Some(&spec), &[]).unwrap();
    node.rpc
        .call("dev_mine", json!({"blocks": 2, "address": address_text(9)}))
        .unwrap();
    let old = node
        .rpc
        .call(
            "account_proof",
            json!({"address": address_text(9), "height": 1}),
        )
        .unwrap_err();
    assert!(
        old.message.contains("only the tip's (height 2)"),
        "{}",
        old.message
    );
    let many = node
        .rpc
        .call("headers_get", json!({"from": 0, "count": 2_001}))
        .unwrap_err();
    assert_eq!(many.code, -32602, "{}", many.message);
    let beyond = node
        .rpc
        .call("headers_get", json!({"from": 3, "count": 1}))
        .unwrap_err();
    assert!(
        beyond.message.contains("the tip is at 2"),
        "{}",
        beyond.message
    );
}
