//! `apiary-wallet` end to end against real node processes on 127.0.0.1.

use apiary_core::AddressPrefix;
use apiary_system_tests::*;
use apiary_system_tests::{wallet_ok as ok, wallet_refused as refused};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";

/// The wallet of `dir` against `rpcs` (in that order of preference), with `password`.
fn wallet_command(
    dir: &Path,
    rpcs: &[(String, PathBuf)],
    password: &str,
    args: &[&str],
) -> Command {
    let mut command = Command::new(bin("apiary-wallet"));
    command.arg("--wallet-dir").arg(dir).arg("--json");
    for (url, cookie) in rpcs {
        command.args(["--rpc", url]).arg("--rpc-cookie").arg(cookie);
    }
    command
        .args(args)
        .env("APIARY_WALLET_PASSWORD", password)
        .stdin(Stdio::null());
    command
}

/// Runs the wallet to the end.
fn wallet(dir: &Path, rpcs: &[(String, PathBuf)], password: &str, args: &[&str]) -> Output {
    wallet_command(dir, rpcs, password, args)
        .output()
        .expect("running apiary-wallet")
}

/// A wallet process running in the background, killed if the test ends before it does.
struct Running(Option<std::process::Child>);

impl Running {
    fn start(mut command: Command) -> Running {
        Running(Some(
            command
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting apiary-wallet"),
        ))
    }

    fn finish(mut self) -> Output {
        let child = self.0.take().expect("finished once");
        child.wait_with_output().expect("waiting for apiary-wallet")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn endpoint(node: &NodeProcess) -> (String, PathBuf) {
    (node.rpc.url.clone(), node.datadir.join("rpc.cookie"))
}

/// A node of `spec`, and a new wallet "alice" whose address one mined block paid.
fn funded_wallet(dir: &Path, spec: &Path) -> (NodeProcess, PathBuf, [(String, PathBuf); 1]) {
    let node = NodeProcess::start(&dir.join("n1"), Some(spec), &[]).unwrap();
    let wallet_dir = dir.join("alice");
    let at = [endpoint(&node)];
    let alice = ok(wallet(&wallet_dir, &at, PASSWORD, &["new"]));
    node.rpc
        .call(
            "dev_mine",
            json!({"blocks": 1, "address": alice["address"]}),
        )
        .unwrap();
    (node, wallet_dir, at)
}

#[test]
fn two_wallets_pay_each_other_through_two_nodes_and_bad_payments_are_refused() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let n1 = NodeProcess::start(&dir.path().join("n1"), Some(&spec), &[]).unwrap();
    let n2 = NodeProcess::start(
        &dir.path().join("n2"),
        Some(&spec),
        &["--peer", &n1.p2p_addr()],
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "the nodes to connect", || {
        n1.peer_count() == 1
    });
    let (alice_dir, bob_dir) = (dir.path().join("alice"), dir.path().join("bob"));
    let at_n1 = [endpoint(&n1)];
    let at_n2 = [endpoint(&n2)];

    // Two new wallets: each gets a 24-word mnemonic and the node's chain.
    let alice = ok(wallet(&alice_dir, &at_n1, PASSWORD, &["new"]));
    assert_eq!(alice["mnemonic"].as_str().unwrap().split(' ').count(), 24);
    assert_eq!(alice["chain_id"], CHAIN_ID);
    let alice_address = alice["address"].as_str().unwrap().to_string();
    let bob = ok(wallet(&bob_dir, &at_n2, "another password", &["new"]));
    let bob_address = bob["address"].as_str().unwrap().to_string();
    assert!(alice_address.starts_with("aptest1") && bob_address != alice_address);
    // The keystore is private and holds no mnemonic in the clear.
    let keystore = std::fs::read_to_string(alice_dir.join("wallet.json")).unwrap();
    let first_word = alice["mnemonic"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(!keystore.contains(alice["mnemonic"].as_str().unwrap()));
    assert!(!keystore.contains(&format!("\"{first_word} ")));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(alice_dir.join("wallet.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Fund Alice by mining to her address.
    n1.rpc
        .call("dev_mine", json!({"blocks": 2, "address": alice_address}))
        .unwrap();
    let funded = ok(wallet(&alice_dir, &at_n1, PASSWORD, &["balance"]))["balance"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(funded > 0);

    // Payments that must be refused before anything is signed or sent.
    let before = (n1.balance(&alice_address), n1.balance(&bob_address));
    let overdraft = format!("{}", funded / 100_000_000 + 1);
    let message = refused(wallet(
        &alice_dir,
        &at_n1,
        PASSWORD,
        &["send", &bob_address, &overdraft],
    ));
    assert!(message.contains("insufficient funds"), "{message}");
    let mut mistyped = bob_address.clone();
    let last = mistyped.pop().unwrap();
    mistyped.push(if last == 'q' { 'p' } else { 'q' });
    let message = refused(wallet(
        &alice_dir,
        &at_n1,
        PASSWORD,
        &["send", &mistyped, "1"],
    ));
    assert!(message.contains("checksum"), "{message}");
    let other_chain = address(5).to_text(&AddressPrefix::new("apdev").unwrap());
    let message = refused(wallet(
        &alice_dir,
        &at_n1,
        PASSWORD,
        &["send", &other_chain, "1"],
    ));
    assert!(message.contains("prefix"), "{message}");
    let message = refused(wallet(
        &alice_dir,
        &at_n1,
        "not the password",
        &["send", &bob_address, "1"],
    ));
    assert!(message.contains("wrong password"), "{message}");
    assert_eq!(n1.mempool_count(), 0, "nothing reached the node");
    assert_eq!(
        (n1.balance(&alice_address), n1.balance(&bob_address)),
        before
    );

    // A real payment, waited for: a miner runs meanwhile.
    let miner = std::thread::spawn({
        let rpc = n2.rpc.clone();
        move || {
            // Mines once the payment has reached n2's mempool by gossip.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if rpc.call("mempool_info", json!({})).unwrap()["count"] == 1 {
                    rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        }
    });
    let sent = ok(wallet(
        &alice_dir,
        &at_n1,
        PASSWORD,
        &["send", &bob_address, "1.25", "--wait"],
    ));
    assert!(miner.join().unwrap(), "the payment reached the other node");
    assert_eq!(sent["status"], "confirmed");
    assert!(sent["confirmations"].as_u64().unwrap() >= 1);
    let txid = sent["txid"].as_str().unwrap().to_string();

    // Bob sees it through his own node, and both histories show it.
    wait_until(Duration::from_secs(30), "n2 to have the payment", || {
        n2.balance(&bob_address) == 125_000_000
    });
    let bob_balance = ok(wallet(&bob_dir, &at_n2, "another password", &["balance"]));
    assert_eq!(bob_balance["balance"], "125000000");
    let bob_history = ok(wallet(&bob_dir, &at_n2, "", &["history"]));
    assert_eq!(bob_history["txs"][0]["txid"], txid.as_str());
    assert_eq!(bob_history["txs"][0]["from"], alice_address.as_str());
    let alice_history = ok(wallet(&alice_dir, &at_n1, "", &["history"]));
    assert_eq!(alice_history["txs"][0]["txid"], txid.as_str());
    assert_eq!(alice_history["txs"][0]["to"], bob_address.as_str());
    // Her two mined blocks are there too, newest first, each paying the block reward.
    let rewards: Vec<&Value> = alice_history["txs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "reward")
        .collect();
    assert_eq!(rewards.len(), 2);
    assert_eq!(rewards[0]["height"], 2);
    assert_eq!(
        rewards
            .iter()
            .map(|r| r["amount"].as_str().unwrap().parse::<u64>().unwrap())
            .sum::<u64>(),
        funded
    );
    let tx = ok(wallet(&bob_dir, &at_n2, "", &["tx", &txid]));
    assert_eq!(tx["status"], "confirmed");

    // Failover: the first node listed is down; the wallet pays through the second.
    let dead = (
        "http://127.0.0.1:9".to_string(),
        n1.datadir.join("rpc.cookie"),
    );
    let through_n2 = ok(wallet(
        &bob_dir,
        &[dead, endpoint(&n2)],
        "another password",
        &["send", &alice_address, "0.5"],
    ));
    assert_eq!(through_n2["status"], "pending");
    wait_until(
        Duration::from_secs(30),
        "the refund to reach n2's pool",
        || n2.mempool_count() == 1,
    );

    // Offline signing, then broadcast.
    let signed = dir.path().join("tx.hex");
    let nonce = n1
        .rpc
        .call("account_get", json!({"address": alice_address}))
        .unwrap()["pending"]["next_nonce"]
        .as_u64()
        .unwrap();
    ok(wallet(
        &alice_dir,
        &[],
        PASSWORD,
        &[
            "sign",
            &bob_address,
            "0.1",
            "--nonce",
            &nonce.to_string(),
            "--fee",
            "0.0001",
            "-o",
            signed.to_str().unwrap(),
        ],
    ));
    let broadcast = ok(wallet(
        &alice_dir,
        &at_n1,
        "",
        &["broadcast", signed.to_str().unwrap()],
    ));
    let pending = n1
        .rpc
        .call("tx_get", json!({"txid": broadcast["txid"]}))
        .unwrap();
    assert_eq!(pending["status"], "pending");

    // A payment the node refuses (fee under its minimum) is an error that says so.
    let message = refused(wallet(
        &alice_dir,
        &at_n1,
        PASSWORD,
        &["send", &bob_address, "0.2", "--fee", "0.00000001"],
    ));
    assert!(message.contains("rejected"), "{message}");

    // A payment replaced while `--wait` waits: the wallet exits non-zero and says why.
    let before = n1.mempool_count();
    let waiting = Running::start(wallet_command(
        &alice_dir,
        &at_n1,
        PASSWORD,
        &["send", &bob_address, "0.2", "--fee", "0.0001", "--wait"],
    ));
    wait_until(Duration::from_secs(30), "the payment to be pending", || {
        n1.mempool_count() == before + 1
    });
    let replacement = dir.path().join("replacement.hex");
    ok(wallet(
        &alice_dir,
        &[],
        PASSWORD,
        &[
            "sign",
            &alice_address,
            "0.2",
            "--nonce",
            &(nonce + 1).to_string(),
            "--fee",
            "0.001",
            "-o",
            replacement.to_str().unwrap(),
        ],
    ));
    ok(wallet(
        &alice_dir,
        &at_n1,
        "",
        &["broadcast", replacement.to_str().unwrap()],
    ));
    let message = refused(waiting.finish());
    assert!(message.contains("dropped"), "{message}");
}

/// Importing a devnet mnemonic gives the README's address; a second import over it is
/// refused and leaves the keystore as it was.
#[test]
fn import_gives_the_published_address_and_never_overwrites() {
    let dir = TempDir::new().unwrap();
    let phrase = dir.path().join("phrase.txt");
    std::fs::write(
        &phrase,
        "absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic \
         avoid letter advice cage absurd amount doctor acoustic avoid letter advice comic\n",
    )
    .unwrap();
    let wallet_dir = dir.path().join("w");
    let import = |password: &str| {
        wallet(
            &wallet_dir,
            &[],
            password,
            &[
                "import",
                "--mnemonic-file",
                phrase.to_str().unwrap(),
                "--chain-id",
                "apiary-devnet",
                "--address-prefix",
                "apdev",
                "--accounts",
                "2",
            ],
        )
    };
    let imported = ok(import(PASSWORD));
    assert_eq!(
        imported["address"],
        "apdev1nye7zzkr5ghqjprzet75ccuw06pna4hrlg6mjhnmu4227r6cthmq2k0ee9"
    );
    assert_eq!(imported["accounts"].as_array().unwrap().len(), 2);
    let before = std::fs::read(wallet_dir.join("wallet.json")).unwrap();
    let message = refused(import("other"));
    assert!(message.contains("refusing to overwrite"), "{message}");
    assert_eq!(
        std::fs::read(wallet_dir.join("wallet.json")).unwrap(),
        before
    );
    let listed = ok(wallet(&wallet_dir, &[], "", &["account", "list"]));
    assert_eq!(listed["accounts"][1]["index"], 1);

    // A damaged keystore is named as such, and not rewritten.
    let mut damaged = before.clone();
    damaged[before.len() / 2] ^= 0x01;
    std::fs::write(wallet_dir.join("wallet.json"), &damaged).unwrap();
    let message = refused(wallet(&wallet_dir, &[], PASSWORD, &["account", "new"]));
    assert!(message.contains("damaged"), "{message}");
    assert_eq!(
        std::fs::read(wallet_dir.join("wallet.json")).unwrap(),
        damaged
    );
}

/// A node that lost a payment the wallet sent (here: it restarted without its mempool
/// log) is given it again by the next command, before the wallet signs anything new.
#[test]
fn the_wallet_gives_a_node_the_payments_it_lost() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("n1");
    let mut node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    let wallet_dir = dir.path().join("alice");
    let at = |node: &NodeProcess| [endpoint(node)];
    let alice = ok(wallet(&wallet_dir, &at(&node), PASSWORD, &["new"]));
    let alice_address = alice["address"].as_str().unwrap().to_string();
    node.rpc
        .call("dev_mine", json!({"blocks": 1, "address": alice_address}))
        .unwrap();
    let payee = address_text(7);
    let first = ok(wallet(
        &wallet_dir,
        &at(&node),
        PASSWORD,
        &["send", &payee, "1", "--fee", "0.0001"],
    ));
    let first_txid = first["txid"].as_str().unwrap().to_string();
    assert_eq!(first["nonce"], 0);

    // The node forgets it.
    assert!(node.stop());
    std::fs::remove_file(datadir.join("mempool.log")).unwrap();
    node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    assert_eq!(node.tx_status(&first_txid), "unknown");

    // Any command that talks to the node gives it back; a new payment follows it.
    ok(wallet(&wallet_dir, &at(&node), PASSWORD, &["balance"]));
    assert_eq!(node.tx_status(&first_txid), "pending");
    let second = ok(wallet(
        &wallet_dir,
        &at(&node),
        PASSWORD,
        &["send", &payee, "2", "--fee", "0.0001"],
    ));
    assert_eq!(second["nonce"], 1, "the lost payment's nonce is not reused");
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    assert_eq!(node.balance(&payee), 300_000_000);

    // Buried deep enough, they leave the outbox.
    let listed = ok(wallet(&wallet_dir, &at(&node), PASSWORD, &["rebroadcast"]));
    assert_eq!(listed["sent"].as_array().unwrap().len(), 2);
    node.rpc.call("dev_mine", json!({"blocks": 6})).unwrap();
    let listed = ok(wallet(&wallet_dir, &at(&node), PASSWORD, &["rebroadcast"]));
    assert!(listed["sent"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["fate"].as_str().unwrap().contains("done")));
    let listed = ok(wallet(&wallet_dir, &at(&node), PASSWORD, &["rebroadcast"]));
    assert!(listed["sent"].as_array().unwrap().is_empty());
}

#[test]
fn waiting_while_nobody_mines_stops_and_says_why() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (node, wallet_dir, at) = funded_wallet(dir.path(), &spec);
    // No miner runs: the tip stays put, and --wait says so long before its 600 s. It
    // waits on the sender's address subscription, not by polling.
    let waiting = Running::start(wallet_command(
        &wallet_dir,
        &at,
        PASSWORD,
        &["send", &address_text(7), "1", "--fee", "0.0001", "--wait"],
    ));
    wait_until(Duration::from_secs(30), "send --wait to subscribe", || {
        metrics::of(&node, "apiary_ws_connections", &[]) == Some(1.0)
    });
    let reason = refused(waiting.finish());
    assert!(reason.contains("is any node mining?"), "{reason}");
    assert_eq!(node.mempool_count(), 1, "the payment stays pending");
}

/// The lines a background `watch` prints, as they come.
struct Lines {
    lines: std::sync::mpsc::Receiver<String>,
    /// Killed when the test is done with it.
    _process: Running,
}

impl Lines {
    fn start(mut command: Command) -> Lines {
        let mut running = Running::start({
            command.stderr(Stdio::null());
            command
        });
        let stdout = running.0.as_mut().unwrap().stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            lines: receiver,
            _process: running,
        }
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("watch prints a line within 60 s");
        serde_json::from_str(&line).unwrap()
    }
}

fn watched_payment(poll: bool) {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("n1"), Some(&spec), &[]).unwrap();
    let wallet_dir = dir.path().join("bob");
    let at = [endpoint(&node)];
    let bob = ok(wallet(&wallet_dir, &at, PASSWORD, &["new"]));
    let bob_address = bob["address"].as_str().unwrap().to_string();
    let mut args = vec!["watch", "--confirmations", "2"];
    if poll {
        args.push("--poll");
    }
    let payee =
        apiary_core::Address::parse(&bob_address, &AddressPrefix::new(PREFIX).unwrap()).unwrap();
    let stx = transfer(1, payee, 250_000_000, 10_000, 0);
    let (lines, txid) = if poll {
        // Polling shows what is in flight when it starts.
        let txid = node.submit_tx(&stx);
        (
            Lines::start(wallet_command(&wallet_dir, &at, PASSWORD, &args)),
            txid,
        )
    } else {
        let lines = Lines::start(wallet_command(&wallet_dir, &at, PASSWORD, &args));
        wait_until(Duration::from_secs(30), "watch to subscribe", || {
            metrics::of(&node, "apiary_ws_connections", &[]) == Some(1.0)
        });
        (lines, node.submit_tx(&stx))
    };
    let pending = lines.next();
    assert_eq!(pending["event"], "pending", "{pending}");
    assert_eq!(pending["txid"], txid.as_str());
    assert_eq!(pending["amount"], "250000000");
    for depth in 1..=2u64 {
        node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
        let confirmed = lines.next();
        assert_eq!(confirmed["event"], "confirmed", "{confirmed}");
        assert_eq!(confirmed["txid"], txid.as_str());
        assert_eq!(confirmed["confirmations"], depth);
        assert_eq!(confirmed["height"], 1);
    }
}

#[test]
fn watch_follows_a_payment_from_pending_to_confirmed() {
    watched_payment(false);
}

#[test]
fn watch_polls_where_it_cannot_subscribe() {
    watched_payment(true);
}

/// A node stopped cleanly removes its cookie: the wallet asks the next node, as it does
/// after a crash, and a node that comes back with a new cookie is asked again.
#[test]
fn the_wallet_fails_over_from_a_node_stopped_cleanly() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let first_dir = dir.path().join("n1");
    let (mut first, second) = connected_pair(dir.path(), &spec, ["n1", "n2"]);
    let wallet_dir = dir.path().join("alice");
    let both = [endpoint(&first), endpoint(&second)];
    let alice = ok(wallet(&wallet_dir, &both, PASSWORD, &["new"]));
    let alice_address = alice["address"].as_str().unwrap().to_string();
    first
        .rpc
        .call("dev_mine", json!({"blocks": 1, "address": alice_address}))
        .unwrap();
    let tip = first.tip();
    wait_until(Duration::from_secs(30), "the block to reach n2", || {
        second.tip() == tip
    });

    assert!(first.stop(), "a clean stop");
    assert!(!first_dir.join("rpc.cookie").exists());
    let balance = ok(wallet(&wallet_dir, &both, PASSWORD, &["balance"]));
    assert_eq!(
        balance["balance"],
        second.balance(&alice_address).to_string()
    );
    let sent = ok(wallet(
        &wallet_dir,
        &both,
        PASSWORD,
        &["send", &address_text(7), "1", "--fee", "0.0001"],
    ));
    let txid = sent["txid"].as_str().unwrap();
    assert_eq!(second.tx_status(txid), "pending");
    // An amount in base units, as a decimal string, as every RPC answer gives it.
    assert_eq!(sent["fee"], "10000", "{sent}");
}

/// `send` takes its recipient and amount as flags too (`--to`, `--amount`), as people
/// also type them: no hint toward an unrelated flag.
#[test]
fn send_takes_the_recipient_and_the_amount_as_flags() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (node, wallet_dir, at) = funded_wallet(dir.path(), &spec);
    let payee = address_text(7);
    let sent = ok(wallet(
        &wallet_dir,
        &at,
        PASSWORD,
        &["send", "--amount", "1", "--to", &payee, "--fee", "0.0001"],
    ));
    assert_eq!(node.tx_status(sent["txid"].as_str().unwrap()), "pending");
    // Half of each is refused with the usage, and nothing is sent.
    let mixed = wallet(&wallet_dir, &at, PASSWORD, &["send", "--to", &payee, "1"]);
    assert_eq!(mixed.status.code(), Some(2), "{mixed:?}");
    assert_eq!(node.mempool_count(), 1);
}
