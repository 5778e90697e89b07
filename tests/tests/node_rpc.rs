//! A real node process answering JSON-RPC: the README tour, payments, and every kind of
//! bad request refused with a message that says what is wrong.

use apiary_system_tests::*;
use serde_json::json;
use tempfile::TempDir;

fn hex_tx(stx: &apiary_core::SignedTransaction) -> String {
    hex::encode(stx.encode())
}

/// One node of the test chain (the temp dir must outlive it).
fn one_node() -> (TempDir, std::path::PathBuf, NodeProcess) {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(
        &dir.path().join("node"),
        Some(&spec),
        &["--mine-threads", "1"],
    )
    .unwrap();
    (dir, spec, node)
}

#[test]
fn mine_pay_and_query_over_rpc() {
    let (_dir, spec, node) = one_node();
    let rpc = &node.rpc;

    let info = rpc.call("node_info", json!({})).unwrap();
    assert_eq!(info["chain_id"], CHAIN_ID);
    let genesis = run("apiary-genesis", &["hash", spec.to_str().unwrap()]);
    assert_eq!(
        info["genesis_hash"].as_str().unwrap(),
        String::from_utf8_lossy(&genesis.stdout).trim()
    );

    let mined = rpc
        .call("dev_mine", json!({"blocks": 3, "address": address_text(9)}))
        .unwrap();
    assert_eq!(mined["hashes"].as_array().unwrap().len(), 3);
    let tip = rpc.call("chain_tip", json!({})).unwrap();
    assert_eq!(tip["height"], 3);
    assert_eq!(tip["hash"], mined["hashes"][2]);
    let block = rpc.call("block_get", json!({"height": 2})).unwrap();
    assert_eq!(block["hash"], mined["hashes"][1]);
    assert_eq!(block["miner"], address_text(9));
    assert_eq!(
        rpc.call("block_get", json!({"hash": block["hash"]}))
            .unwrap()["height"],
        2
    );
    let miner = rpc
        .call("account_get", json!({"address": address_text(9)}))
        .unwrap();
    // Amounts are decimal strings, exact in JavaScript too.
    assert_eq!(miner["balance"], (3 * 50 * 100_000_000u64).to_string());

    // A payment: pending, then confirmed, with balances moved.
    let stx = transfer(1, address(7), 250_000_000, 10_000, 0);
    let txid = rpc.call("tx_submit", json!({"tx": hex_tx(&stx)})).unwrap()["txid"].clone();
    assert_eq!(txid, json!(stx.txid().to_string()));
    assert_eq!(
        rpc.call("tx_get", json!({"txid": txid})).unwrap()["status"],
        "pending"
    );
    assert_eq!(rpc.call("mempool_info", json!({})).unwrap()["count"], 1);
    let mined = rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    let status = rpc.call("tx_get", json!({"txid": txid})).unwrap();
    assert_eq!(status["status"], "confirmed");
    assert_eq!(status["block_hash"], mined["hashes"][0]);
    assert_eq!(status["confirmations"], 2);
    assert_eq!(
        rpc.call("account_get", json!({"address": address_text(7)}))
            .unwrap()["balance"],
        "250000000"
    );
    let sender = rpc
        .call("account_get", json!({"address": address_text(1)}))
        .unwrap();
    // Without an address, dev_mine pays the first allocated account: here the sender,
    // who thus also gets its own fee back with two block rewards.
    assert_eq!(
        sender["balance"],
        ((1000 + 2 * 50) * 100_000_000u64 - 250_000_000).to_string()
    );
    assert_eq!(sender["nonce"], 1);
    assert_eq!(rpc.call("mempool_info", json!({})).unwrap()["count"], 0);
    let unknown = "00".repeat(32);
    assert_eq!(
        rpc.call("tx_get", json!({"txid": unknown})).unwrap()["status"],
        "unknown"
    );
}

fn rejection(rpc: &Rpc, stx: &apiary_core::SignedTransaction) -> RpcFailure {
    rpc.call("tx_submit", json!({"tx": hex_tx(stx)}))
        .unwrap_err()
}

#[test]
fn bad_transactions_and_bad_requests_are_refused_with_reasons() {
    let (_dir, _, node) = one_node();
    let rpc = &node.rpc;

    let mut bad_sig = transfer(1, address(7), 5, 10_000, 0);
    bad_sig.signature[10] ^= 0x40;
    let e = rejection(rpc, &bad_sig);
    assert_eq!(e.code, -32010);
    assert!(e.message.contains("signature does not verify"), "{e:?}");

    let e = rejection(rpc, &transfer(1, address(7), 5, 10_000, 40));
    assert!(e.message.contains("nonce 40 is too far ahead"), "{e:?}");

    let e = rejection(
        rpc,
        &transfer(1, address(7), 2_000 * 100_000_000, 10_000, 0),
    );
    assert!(e.message.contains("cannot pay"), "{e:?}");

    let mut other_chain = transfer(1, address(7), 5, 10_000, 0);
    other_chain.tx.chain_id = apiary_core::ChainId::new("apiary-other").unwrap();
    let other_chain = other_chain.tx.sign(&key(1));
    let e = rejection(rpc, &other_chain);
    assert!(
        e.message.contains("apiary-other") && e.message.contains(CHAIN_ID),
        "{e:?}"
    );

    // Bytes that are not a transaction at all.
    let e = rpc.call("tx_submit", json!({"tx": "zz"})).unwrap_err();
    assert_eq!(e.code, -32602);
    let e = rpc
        .call("tx_submit", json!({"tx": "00112233"}))
        .unwrap_err();
    assert_eq!(e.code, -32602);
    assert!(e.message.contains("could not be decoded"), "{e:?}");
    let mut trailing = hex_tx(&transfer(1, address(7), 5, 10_000, 0));
    trailing.push_str("00");
    assert!(rpc
        .call("tx_submit", json!({"tx": trailing}))
        .unwrap_err()
        .message
        .contains("left over"));

    // Envelope errors.
    assert_eq!(rpc.raw("{not json").unwrap_err().code, -32700);
    assert_eq!(
        rpc.call("no_such_method", json!({})).unwrap_err().code,
        -32601
    );
    let e = rpc.call("block_get", json!({"heigth": 1})).unwrap_err();
    assert_eq!(e.code, -32602);
    assert!(e.message.contains("heigth"), "{e:?}");
    assert_eq!(
        rpc.raw(r#"{"jsonrpc":"2.0","id":1,"method":"chain_tip","params":[1]}"#)
            .unwrap_err()
            .code,
        -32602
    );
    assert_eq!(
        rpc.raw(r#"{"id":1,"method":"chain_tip"}"#)
            .unwrap_err()
            .code,
        -32600
    );
    let e = rpc
        .call("account_get", json!({"address": "aptest1qqqq"}))
        .unwrap_err();
    assert_eq!(e.code, -32602);
    let e = rpc.call("account_get", json!({"address": address(1).to_text(&apiary_core::AddressPrefix::new("apdev").unwrap())})).unwrap_err();
    assert!(e.message.contains("prefix"), "{e:?}");
    assert_eq!(
        rpc.call("block_get", json!({"height": 999}))
            .unwrap_err()
            .code,
        -32004
    );
    assert_eq!(
        rpc.call("dev_mine", json!({"blocks": 0})).unwrap_err().code,
        -32602
    );
    for bad in [
        json!({"address": address_text(1), "cursor": "yesterday"}),
        json!({"address": address_text(1), "limit": 0}),
        json!({"address": address_text(1), "limit": 100_000}),
        json!({"address": "aptest1qqqq"}),
    ] {
        let e = rpc.call("account_history", bad.clone()).unwrap_err();
        assert_eq!(e.code, -32602, "{bad}: {e:?}");
    }
    let e = rpc
        .call(
            "account_history",
            json!({"address": address_text(1), "cursor": "yesterday"}),
        )
        .unwrap_err();
    assert!(e.message.contains("cursor"), "{e:?}");

    let no_auth = Rpc {
        url: rpc.url.clone(),
        credentials: "__cookie__:wrong".into(),
    };
    assert_eq!(
        no_auth
            .call("chain_tip", json!({}))
            .unwrap_err()
            .http_status,
        401
    );

    // After all that, the node still works, and nothing was added.
    assert_eq!(rpc.call("mempool_info", json!({})).unwrap()["count"], 0);
    rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    assert_eq!(rpc.tip_height(), 1);
}

/// `account_totals`: what an address received (rewards included) and sent (fees
/// included), the same before and after the index is written to disk (a clean restart
/// flushes it), and a self-payment counted both ways.
#[test]
fn account_totals_add_up_across_a_flush() {
    let (dir, spec, mut node) = one_node();
    let (miner, friend) = (address_text(9), address_text(10));
    node.rpc
        .call("dev_mine", json!({"blocks": 2, "address": miner}))
        .unwrap();
    let reward = node.balance(&miner) / 2;
    for (nonce, amount) in [(0, 1_000_000u64), (1, 2_000_000)] {
        node.submit_tx(&transfer(9, address(10), amount, 10_000, nonce));
    }
    node.submit_tx(&transfer(9, address(9), 500, 10_000, 2));
    // A block mined to the friend: the miner's fees go to it.
    node.rpc
        .call("dev_mine", json!({"blocks": 1, "address": friend}))
        .unwrap();
    let totals = |node: &NodeProcess, who: &str| {
        let t = node
            .rpc
            .call("account_totals", json!({"address": who}))
            .unwrap();
        let units = |v: &serde_json::Value| v.as_str().unwrap().parse::<u64>().unwrap();
        (
            units(&t["received"]),
            units(&t["sent"]),
            t["entries"].as_u64().unwrap(),
        )
    };
    let expected_miner = (2 * reward + 500, 3_000_000 + 500 + 3 * 10_000, 5);
    let expected_friend = (3_000_000 + reward + 3 * 10_000, 0, 3);
    assert_eq!(totals(&node, &miner), expected_miner);
    assert_eq!(totals(&node, &friend), expected_friend);
    let (received, sent, _) = totals(&node, &miner);
    assert_eq!(received - sent, node.balance(&miner));
    assert!(node.stop());
    node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    assert_eq!(totals(&node, &miner), expected_miner);
    assert_eq!(totals(&node, &friend), expected_friend);
}
