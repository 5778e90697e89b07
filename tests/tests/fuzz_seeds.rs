//! The fuzz targets' seed corpora (`fuzz/seeds/<target>/`), made from a real chain of the
//! fuzz spec (`fuzz/chain.toml`): real transactions, blocks, compact blocks, header runs,
//! sync frames, chain specs, a keystore and RPC calls, so the fuzzers start from inputs
//! that get deep. This test checks the committed seeds still decode (a format change
//! shows here); `APIARY_WRITE_SEEDS=1` writes them anew.

use apiary_core::tx::MAX_TX_BYTES;
use apiary_core::*;
use apiary_node::chain::Chain;
use apiary_node::mempool::MempoolConfig;
use apiary_node::miner::{build_template, search_nonce};
use apiary_node::protocol::{Status, SyncRequest, SyncResponse};
use apiary_node::store::Store;
use apiary_node::Node;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

fn fuzz_spec() -> Arc<ChainSpec> {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/chain.toml"),
    )
    .unwrap();
    Arc::new(apiary_genesis::parse_spec(&text).unwrap())
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn transfer(spec: &ChainSpec, from: u8, to: u8, amount: u64, nonce: u64) -> SignedTransaction {
    Transaction {
        chain_id: spec.chain_id.clone(),
        from: Address(key(from).verifying_key().to_bytes()),
        to: Address(key(to).verifying_key().to_bytes()),
        amount: Amount::from_base_units(amount),
        fee: Amount::from_base_units(1_000),
        nonce: Nonce(nonce),
    }
    .sign(&key(from))
}

/// Three blocks of the fuzz chain, each with a few transfers, mined by a real node.
fn real_chain(spec: &Arc<ChainSpec>, dir: &Path) -> Vec<Block> {
    let store = Store::open(&dir.join("db"), spec.genesis_hash()).unwrap();
    let node = Node::new(
        Chain::open(store, spec.clone()).unwrap(),
        MempoolConfig::default(),
    );
    let mut blocks = Vec::new();
    for height in 0..3u64 {
        for from in 1..=3u8 {
            node.submit_tx(transfer(spec, from, from % 4 + 1, 1_000 + height, height))
                .unwrap();
        }
        let time = spec.genesis_timestamp_ms.0 + 2_000 * (height + 1);
        let miner = Address(key(5).verifying_key().to_bytes());
        let mut block = build_template(&node, miner, time).unwrap();
        block.header.nonce = search_nonce(&block.header, 0, 1, || false).unwrap();
        let bytes = block.encode();
        let checked = node.check_block(block.clone(), bytes).unwrap();
        node.accept_block(checked).unwrap();
        blocks.push(block);
    }
    blocks
}

fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn with_mode(mode: u8, bytes: Vec<u8>) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend(bytes);
    out
}

/// Every seed, by target and name.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let spec = fuzz_spec();
    let dir = tempfile::TempDir::new().unwrap();
    let blocks = real_chain(&spec, dir.path());
    let genesis = spec.genesis_hash();
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };
    for (i, stx) in blocks[0].txs.iter().enumerate() {
        add("tx", &format!("transfer-{i}"), stx.encode());
    }
    add("tx", "unknown-chain", {
        let mut stx = blocks[0].txs[0].clone();
        stx.tx.chain_id = spec::ChainId::new("apiary-devnet").unwrap();
        stx.encode()
    });
    for (i, block) in blocks.iter().enumerate() {
        add(
            "block",
            &format!("height-{}", i + 1),
            with_mode(0, block.encode()),
        );
        add(
            "block",
            &format!("height-{}-fix-root", i + 1),
            with_mode(1, block.encode()),
        );
        let txids = block.txids();
        add(
            "compact_block",
            &format!("height-{}", i + 1),
            CompactBlock::new(block, &txids).encode(),
        );
    }
    let empty = Block {
        header: blocks[0].header.clone(),
        txs: Vec::new(),
    };
    add(
        "compact_block",
        "no-txs",
        CompactBlock::new(&empty, &[]).encode(),
    );
    let headers: Vec<BlockHeader> = blocks.iter().map(|b| b.header.clone()).collect();
    add(
        "headers",
        "three",
        with_mode(0, borsh::to_vec(&headers).unwrap()),
    );
    add(
        "headers",
        "three-linked",
        with_mode(1, borsh::to_vec(&headers).unwrap()),
    );
    let status = Status {
        genesis,
        height: Height(3),
        tip: blocks[2].hash(),
        total_work: Work::from_be_bytes(&[0; 32]),
    };
    let requests = [
        ("status", SyncRequest::Status(status.clone())),
        (
            "get-headers",
            SyncRequest::GetHeaders {
                locator: vec![blocks[1].hash(), genesis],
                max: 2_000,
            },
        ),
        (
            "get-bodies",
            SyncRequest::GetBodies {
                hashes: blocks.iter().map(Block::hash).collect(),
            },
        ),
    ];
    for (name, request) in requests {
        add(
            "sync_request",
            name,
            framed(borsh::to_vec(&request).unwrap()),
        );
    }
    let responses = [
        ("status", SyncResponse::Status(status)),
        ("headers", SyncResponse::Headers(headers)),
        (
            "blocks",
            SyncResponse::Blocks(blocks.iter().map(Block::encode).collect()),
        ),
    ];
    for (name, response) in responses {
        add(
            "sync_response",
            name,
            framed(borsh::to_vec(&response).unwrap()),
        );
    }
    add(
        "chain_spec",
        "devnet",
        apiary_genesis::DEVNET_TOML.as_bytes().to_vec(),
    );
    add(
        "chain_spec",
        "fuzz",
        apiary_genesis::spec_to_toml(&spec).into_bytes(),
    );
    add("keystore", "cheap-kdf", keystore(dir.path(), &spec));
    let tx_hex = hex::encode(blocks[0].txs[0].encode());
    let address = Address(key(1).verifying_key().to_bytes()).to_text(&spec.address_prefix);
    let calls = [
        ("node-info", r#"{"jsonrpc":"2.0","id":1,"method":"node_info"}"#.to_string()),
        ("chain-tip", r#"{"jsonrpc":"2.0","id":"a","method":"chain_tip","params":{}}"#.to_string()),
        ("block-get", r#"{"jsonrpc":"2.0","id":2,"method":"block_get","params":{"height":0}}"#.to_string()),
        ("account-get", format!(r#"{{"jsonrpc":"2.0","id":3,"method":"account_get","params":{{"address":"{address}"}}}}"#)),
        ("account-history", format!(r#"{{"jsonrpc":"2.0","id":4,"method":"account_history","params":{{"address":"{address}","limit":5}}}}"#)),
        ("tx-submit", format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tx_submit","params":{{"tx":"{tx_hex}"}}}}"#)),
        ("tx-get", format!(r#"{{"jsonrpc":"2.0","id":6,"method":"tx_get","params":{{"txid":"{}"}}}}"#, blocks[0].txs[0].txid())),
        ("batch", r#"[{"jsonrpc":"2.0","id":1,"method":"mempool_info"},{"jsonrpc":"2.0","method":"fee_estimate"},{"jsonrpc":"2.0","id":null,"method":"net_peers"}]"#.to_string()),
        ("net-disconnect", r#"{"jsonrpc":"2.0","id":7,"method":"net_disconnect","params":{"peer_id":"12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN","ban_seconds":60}}"#.to_string()),
    ];
    for (name, body) in calls {
        add("rpc", name, body.into_bytes());
    }
    out
}

fn keystore(dir: &Path, spec: &ChainSpec) -> Vec<u8> {
    use apiary_wallet::keystore::{KdfParams, Keystore};
    let path = dir.join("keystore.json");
    let mnemonic = apiary_genesis::DEVNET_MNEMONICS[0];
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        ..KdfParams::recommended()
    };
    Keystore::create(
        &path,
        mnemonic,
        b"fuzz",
        spec.chain_id.as_str(),
        &spec.address_prefix,
        kdf,
    )
    .unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn the_fuzz_seeds_decode_with_the_current_formats() {
    if std::env::var_os("APIARY_WRITE_SEEDS").is_some() {
        for (target, name, bytes) in seeds() {
            let dir = seeds_dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let spec = fuzz_spec();
    let read = |target: &str| -> Vec<Vec<u8>> {
        let dir = seeds_dir().join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "seeds for {target}");
        files
    };
    for bytes in read("tx") {
        decode_exact::<SignedTransaction>("tx", &bytes, MAX_TX_BYTES).unwrap();
    }
    for bytes in read("block") {
        let block: Block = decode_exact("block", &bytes[1..], 1 << 20).unwrap();
        assert_eq!(block.header.tx_root, tx_merkle_root(&block.txids()));
    }
    for bytes in read("compact_block") {
        decode_exact::<CompactBlock>("compact block", &bytes, 1 << 20).unwrap();
    }
    for bytes in read("headers") {
        decode_exact::<Vec<BlockHeader>>("headers", &bytes[1..], 1 << 20).unwrap();
    }
    for bytes in read("sync_request") {
        decode_exact::<SyncRequest>("request", &bytes[4..], 1 << 20).unwrap();
    }
    for bytes in read("sync_response") {
        decode_exact::<SyncResponse>("response", &bytes[4..], 1 << 20).unwrap();
    }
    for bytes in read("chain_spec") {
        apiary_genesis::parse_spec(std::str::from_utf8(&bytes).unwrap()).unwrap();
    }
    for bytes in read("keystore") {
        apiary_wallet::keystore::Keystore::parse(Path::new("seed"), &bytes).unwrap();
    }
    for bytes in read("rpc") {
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
    }
    assert_eq!(spec.chain_id.as_str(), "apiary-fuzz");
}
