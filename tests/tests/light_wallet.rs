//! The wallet believes no node: a lying proxy in front of a real node (tests/light/proxy.py)
//! changes a balance, leaves out a history entry, serves a stale state, or forges a header
//! with too little work. Asked through the liar alone, the wallet refuses; with a real node
//! after it, the wallet names the liar, fails over and shows the truth; with --trust-node
//! it believes the lie (so each proxy does lie).

use apiary_system_tests::liar::Liar;
use apiary_system_tests::*;
use apiary_system_tests::{wallet_ok as ok, wallet_refused as refused};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";

struct Setup {
    _dir: TempDir,
    node: NodeProcess,
    wallet_dir: PathBuf,
    cookie: PathBuf,
    alice: String,
}

impl Setup {
    /// A node, and alice's wallet with mined coins, a payment sent to bob and one back.
    fn new() -> Setup {
        Setup::with_hashes_per_block(2)
    }

    /// The same on a chain whose blocks take `hashes` hashes each.
    fn with_hashes_per_block(hashes: u64) -> Setup {
        let dir = TempDir::new().unwrap();
        let spec = write_fixed_spec(dir.path(), hashes);
        let node = NodeProcess::start(&dir.path().join("n"), Some(&spec), &[]).unwrap();
        let cookie = node.datadir.join("rpc.cookie");
        let wallet_dir = dir.path().join("alice");
        let mut setup = Setup {
            node,
            wallet_dir,
            cookie,
            alice: String::new(),
            _dir: dir,
        };
        let url = setup.node.rpc.url.clone();
        let created = ok(setup.wallet(&[&url], &["new"]));
        setup.alice = created["address"].as_str().unwrap().to_string();
        setup.mine(2, &setup.alice.clone());
        ok(setup.wallet(&[&url], &["send", &address_text(7), "1.5"]));
        setup.mine(1, &address_text(8));
        let back = transfer(7, setup.alice_address(), 10_000, 1_000, 0);
        setup.node.submit_tx(&back);
        setup.mine(1, &address_text(8));
        setup
    }

    fn alice_address(&self) -> apiary_core::Address {
        apiary_core::Address::parse_any_chain(&self.alice)
            .unwrap()
            .0
    }

    fn mine(&self, blocks: u64, to: &str) {
        self.node
            .rpc
            .call("dev_mine", json!({"blocks": blocks, "address": to}))
            .unwrap();
    }

    fn wallet(&self, rpcs: &[&str], args: &[&str]) -> Output {
        let mut command = Command::new(bin("apiary-wallet"));
        command
            .arg("--wallet-dir")
            .arg(&self.wallet_dir)
            .arg("--json");
        for url in rpcs {
            command.args(["--rpc", url]);
        }
        command
            .arg("--rpc-cookie")
            .arg(&self.cookie)
            .args(args)
            .env("APIARY_WALLET_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .expect("running apiary-wallet")
    }

    fn balance(&self) -> u64 {
        self.node.balance(&self.alice)
    }

    fn history_len(&self) -> usize {
        self.node
            .rpc
            .call("account_history", json!({"address": self.alice}))
            .unwrap()["txs"]
            .as_array()
            .unwrap()
            .len()
    }
}

fn units(value: &Value) -> u64 {
    value.as_str().unwrap().parse().unwrap()
}

#[test]
fn a_changed_balance_is_refused_and_the_next_node_tells_the_truth() {
    let setup = Setup::new();
    let liar = Liar::start("balance", &setup.node.rpc.url);
    let truth = setup.balance();
    let trusted = ok(setup.wallet(&[&liar.url], &["--trust-node", "balance"]));
    assert_eq!(units(&trusted["balance"]), truth + 1, "the proxy lies");

    let error = refused(setup.wallet(&[&liar.url], &["balance"]));
    assert!(error.contains(&liar.url), "names the liar: {error}");
    let shown = ok(setup.wallet(&[&liar.url, &setup.node.rpc.url], &["balance"]));
    assert_eq!(units(&shown["balance"]), truth);
    assert_eq!(shown["proved"]["height"], setup.node.rpc.tip_height());
}

#[test]
fn a_history_missing_an_entry_is_refused() {
    let setup = Setup::new();
    let liar = Liar::start("history", &setup.node.rpc.url);
    let entries = setup.history_len();
    let trusted = ok(setup.wallet(&[&liar.url], &["--trust-node", "history"]));
    assert_eq!(
        trusted["txs"].as_array().unwrap().len(),
        entries - 1,
        "the proxy lies"
    );

    refused(setup.wallet(&[&liar.url], &["history"]));
    let shown = ok(setup.wallet(&[&liar.url, &setup.node.rpc.url], &["history"]));
    assert_eq!(shown["txs"].as_array().unwrap().len(), entries);
    assert_eq!(shown["proved"], true);
}

#[test]
fn a_stale_state_is_refused_once_the_wallet_has_seen_newer_headers() {
    let setup = Setup::new();
    let liar = Liar::start("stale", &setup.node.rpc.url);
    let before = ok(setup.wallet(&[&liar.url], &["balance"]));
    // Alice is paid again, three blocks deep.
    setup.mine(3, &setup.alice);
    let truth = setup.balance();
    assert!(truth > units(&before["balance"]));
    let trusted = ok(setup.wallet(&[&liar.url], &["--trust-node", "balance"]));
    assert_eq!(
        units(&trusted["balance"]),
        truth,
        "account_get is not changed"
    );

    let error = refused(setup.wallet(&[&liar.url], &["balance"]));
    assert!(error.contains("stale"), "{error}");
    let shown = ok(setup.wallet(&[&liar.url, &setup.node.rpc.url], &["balance"]));
    assert_eq!(units(&shown["balance"]), truth);
}

#[test]
fn a_header_with_too_little_work_is_refused_and_never_kept() {
    // A target harder than the easiest, so a header can claim less work than it must.
    let setup = Setup::with_hashes_per_block(4_096);
    let liar = Liar::start("forge", &setup.node.rpc.url);
    let error = refused(setup.wallet(&[&liar.url], &["balance"]));
    assert!(error.contains("not believed"), "{error}");
    let shown = ok(setup.wallet(&[&liar.url, &setup.node.rpc.url], &["balance"]));
    assert_eq!(units(&shown["balance"]), setup.balance());

    let (tip, hash) = setup.node.tip();
    let hashes = std::fs::read(setup.wallet_dir.join("headers/hashes")).unwrap();
    assert_eq!(
        hashes.len() as u64,
        (tip + 1) * 32,
        "one hash per height, no more"
    );
    assert_eq!(hex::encode(&hashes[hashes.len() - 32..]), hash);
}

#[test]
fn a_payment_is_confirmed_only_by_its_proof_in_the_wallets_headers() {
    let setup = Setup::new();
    // Two blocks once the payment is in the mempool.
    let miner = std::thread::spawn({
        let rpc = setup.node.rpc.clone();
        move || {
            wait_until(Duration::from_secs(60), "the payment to arrive", || {
                rpc.call("mempool_info", json!({})).unwrap()["count"] == 1
            });
            rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
        }
    });
    let sent = ok(setup.wallet(
        &[&setup.node.rpc.url],
        &["send", &address_text(9), "0.25", "--wait", "2"],
    ));
    miner.join().unwrap();
    let txid = sent["txid"].as_str().unwrap().to_string();
    let shown = ok(setup.wallet(&[&setup.node.rpc.url], &["tx", &txid]));
    assert_eq!(shown["status"], "confirmed");
    assert!(shown["confirmations"].as_u64().unwrap() >= 2);
    assert_eq!(shown["proved"]["height"], sent["height"]);
    let hashes = std::fs::metadata(setup.wallet_dir.join("headers/hashes")).unwrap();
    assert_eq!(hashes.len(), (setup.node.rpc.tip_height() + 1) * 32);
}
