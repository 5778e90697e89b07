//! Helpers for whole-system tests: real `apiary-node` processes on 127.0.0.1 with
//! ephemeral ports, a JSON-RPC client with cookie auth, and waiting on conditions with
//! deadlines (never sleeping in place of synchronisation).

use apiary_core::spec::ChainId;
use apiary_core::{
    Address, AddressPrefix, Amount, Nonce, SignedTransaction, SigningKey, Transaction,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod metrics;
pub mod pool;
pub mod structure;
pub mod ws;

pub const CHAIN_ID: &str = "apiary-systest";
pub const PREFIX: &str = "aptest";

/// A built binary of this workspace (tests run from target/<profile>/deps).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` first",
        path.display()
    );
    path
}

pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .output()
        .expect("running a workspace binary")
}

/// A loopback p2p listen address on a port free now, for a node that must come back on
/// the same address after a restart.
pub fn fixed_listen_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// The repository's top folder (scripts/, deploy/ …).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// Whether the tests run as root (namespaces, tc and Docker need it; CI runs as root).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Polls `check` until it returns true, panicking with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn address(seed: u8) -> Address {
    Address(key(seed).verifying_key().to_bytes())
}

pub fn address_text(seed: u8) -> String {
    address(seed).to_text(&AddressPrefix::new(PREFIX).unwrap())
}

/// Writes a chain spec with `apiary-genesis new`: blocks need a couple of hashes, and keys
/// 1..=3 hold 1,000 coins each.
pub fn write_test_spec(dir: &Path) -> PathBuf {
    write_spec(dir, &TEST_DIFFICULTY)
}

/// A chain spec (keys 1..=3 funded) with `hashes` expected per block and no retarget.
pub fn write_fixed_spec(dir: &Path, hashes: u64) -> PathBuf {
    let hashes = hashes.to_string();
    write_spec(
        dir,
        &[
            "--block-time-ms",
            "1000",
            "--half-life-ms",
            "1000000000",
            "--initial-hashes",
            &hashes,
            "--min-hashes",
            "2",
        ],
    )
}

/// The test chain's difficulty: 1 s blocks, a couple of hashes each, a retarget so slow
/// that the difficulty stays put.
pub const TEST_DIFFICULTY: [&str; 8] = [
    "--block-time-ms",
    "1000",
    "--half-life-ms",
    "1000000000",
    "--initial-hashes",
    "2",
    "--min-hashes",
    "2",
];

/// `GET path` on `base` (http://host:port/): the status and the body.
pub fn http_get(base: &str, path: &str) -> (u16, String) {
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    match ureq::get(&url).timeout(Duration::from_secs(10)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(status, r)) => (status, r.into_string().unwrap()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// Writes a chain spec with keys 1..=3 funded and the given difficulty parameters.
pub fn write_spec(dir: &Path, difficulty: &[&str]) -> PathBuf {
    let path = dir.join("spec.toml");
    let allocs: Vec<String> = (1..=3)
        .map(|s| format!("--alloc={}=1000", address_text(s)))
        .collect();
    let path_text = path.to_str().unwrap().to_string();
    let mut args = vec![
        "new",
        "--chain-id",
        CHAIN_ID,
        "--address-prefix",
        PREFIX,
        "--halving-interval",
        "0",
        "-o",
    ];
    args.push(&path_text);
    args.extend(difficulty);
    args.extend(allocs.iter().map(String::as_str));
    let output = run("apiary-genesis", &args);
    assert!(
        output.status.success(),
        "apiary-genesis new: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

pub fn transfer(from: u8, to: Address, base_units: u64, fee: u64, nonce: u64) -> SignedTransaction {
    Transaction {
        chain_id: ChainId::new(CHAIN_ID).unwrap(),
        from: address(from),
        to,
        amount: Amount::from_base_units(base_units),
        fee: Amount::from_base_units(fee),
        nonce: Nonce(nonce),
    }
    .sign(&key(from))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFailure {
    pub http_status: u16,
    pub code: i64,
    pub message: String,
}

#[derive(Clone)]
pub struct Rpc {
    pub url: String,
    pub credentials: String,
}

impl Rpc {
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcFailure> {
        self.raw(
            &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
        )
    }

    /// Posts `body` as is and returns the result, or the JSON-RPC error.
    pub fn raw(&self, body: &str) -> Result<Value, RpcFailure> {
        use base64::Engine;
        let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let response = ureq::post(&self.url)
            .timeout(Duration::from_secs(60))
            .set(
                "Authorization",
                &format!("Basic {}", encode(self.credentials.as_bytes())),
            )
            .set("Content-Type", "application/json")
            .send_string(body);
        let (status, text) = match response {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(status, r)) => (status, r.into_string().unwrap_or_default()),
            Err(e) => {
                return Err(RpcFailure {
                    http_status: 0,
                    code: 0,
                    message: e.to_string(),
                })
            }
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| RpcFailure {
            http_status: status,
            code: 0,
            message: format!("{e}: {text}"),
        })?;
        match value.get("error") {
            Some(error) => Err(RpcFailure {
                http_status: status,
                code: error["code"].as_i64().unwrap_or(0),
                message: error["message"].as_str().unwrap_or_default().to_string(),
            }),
            None => Ok(value["result"].clone()),
        }
    }

    pub fn tip_height(&self) -> u64 {
        self.call("chain_tip", json!({})).expect("chain_tip")["height"]
            .as_u64()
            .unwrap()
    }
}

/// A running `apiary-node`; killed (SIGKILL) when dropped.
pub struct NodeProcess {
    child: Option<Child>,
    pub datadir: PathBuf,
    pub rpc: Rpc,
}

impl NodeProcess {
    /// Starts a node on `datadir` with RPC on an ephemeral loopback port and waits until it
    /// answers; Err holds its log if it exits first.
    pub fn start(
        datadir: &Path,
        spec: Option<&Path>,
        extra: &[&str],
    ) -> Result<NodeProcess, String> {
        NodeProcess::start_with(datadir, spec, extra, |_| {})
    }

    /// `start` in a process that may open at most `max_files` files (as under a default
    /// `ulimit -n`), so a test can show the node does not run out of descriptors.
    pub fn start_with_file_limit(
        datadir: &Path,
        spec: Option<&Path>,
        extra: &[&str],
        max_files: u64,
    ) -> Result<NodeProcess, String> {
        use std::os::unix::process::CommandExt;
        NodeProcess::start_with(datadir, spec, extra, |command| unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: max_files,
                    rlim_max: max_files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        })
    }

    /// `start`, with `configure` adjusting the command first (limits, environment).
    pub fn start_with(
        datadir: &Path,
        spec: Option<&Path>,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Result<NodeProcess, String> {
        std::fs::create_dir_all(datadir).unwrap();
        let cookie = datadir.join("rpc.cookie");
        let _ = std::fs::remove_file(&cookie);
        let _ = std::fs::remove_file(datadir.join("rpc.addr"));
        let log_path = datadir.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = Command::new(bin("apiary-node"));
        command.arg("--datadir").arg(datadir);
        // RPC on an ephemeral loopback port unless the test says where (a restart on the
        // same port, say).
        if !extra.contains(&"--rpc-addr") {
            command.args(["--rpc-addr", "127.0.0.1:0"]);
        }
        // Peers on an ephemeral loopback port unless the test says where.
        if !extra.contains(&"--listen") {
            command.args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        }
        if let Some(spec) = spec {
            command.arg("--genesis").arg(spec);
        }
        command.args(extra);
        configure(&mut command);
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("apiary-node exited with {status}:\n{log}"));
            }
            if cookie.exists() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("apiary-node did not start within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let addr = std::fs::read_to_string(datadir.join("rpc.addr")).map_err(|e| e.to_string())?;
        let credentials = std::fs::read_to_string(&cookie).map_err(|e| e.to_string())?;
        let rpc = Rpc {
            url: format!("http://{}/", addr.trim()),
            credentials,
        };
        Ok(NodeProcess {
            child: Some(child),
            datadir: datadir.to_path_buf(),
            rpc,
        })
    }

    /// The node's p2p address with its peer id (written once it listens).
    pub fn p2p_addr(&self) -> String {
        let path = self.datadir.join("p2p.addr");
        wait_until(
            Duration::from_secs(30),
            "the node to listen for peers",
            || path.exists(),
        );
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    pub fn peer_count(&self) -> usize {
        self.rpc
            .call("net_peers", json!({}))
            .map(|p| p.as_array().map_or(0, Vec::len))
            .unwrap_or(0)
    }

    pub fn tip(&self) -> (u64, String) {
        let tip = self.rpc.call("chain_tip", json!({})).expect("chain_tip");
        (
            tip["height"].as_u64().unwrap(),
            tip["hash"].as_str().unwrap().to_string(),
        )
    }

    /// The hash of the main-chain block at `height`.
    pub fn block_hash(&self, height: u64) -> String {
        self.rpc
            .call("block_get", json!({"height": height}))
            .expect("block_get")["hash"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn peer_id(&self) -> String {
        self.rpc.call("node_info", json!({})).unwrap()["peer_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn mempool_count(&self) -> u64 {
        self.rpc.call("mempool_info", json!({})).unwrap()["count"]
            .as_u64()
            .unwrap()
    }

    /// The confirmed balance of `address` (its text form), in base units.
    pub fn balance(&self, address: &str) -> u64 {
        self.rpc
            .call("account_get", json!({"address": address}))
            .unwrap()["balance"]
            .as_str()
            .expect("amounts are decimal strings")
            .parse()
            .unwrap()
    }

    /// `tx_submit` of `stx`: the node's answer, or how it refused.
    pub fn try_submit_tx(&self, stx: &SignedTransaction) -> Result<Value, RpcFailure> {
        self.rpc
            .call("tx_submit", json!({"tx": hex::encode(stx.encode())}))
    }

    /// Submits `stx`, which the node must accept; returns its txid.
    pub fn submit_tx(&self, stx: &SignedTransaction) -> String {
        self.try_submit_tx(stx).unwrap()["txid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `tx_get`'s status: pending, confirmed or unknown.
    pub fn tx_status(&self, txid: &str) -> String {
        self.rpc.call("tx_get", json!({"txid": txid})).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process has ended with a failure exit (it is reaped then).
    pub fn has_exited_with_failure(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        match exited {
            Some(status) => {
                self.child = None;
                !status.success()
            }
            None => false,
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.datadir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
        // A failing test shows what its nodes said last.
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {}/node.log:", self.datadir.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub mod hostile;
pub mod liar;

/// How long a block may take to travel from one honest node to the next: gossip takes
/// milliseconds (this leaves room for a loaded test machine); a node that missed it would
/// learn of it only at the next status round, 5 s apart.
pub const RELAY_LIMIT: Duration = Duration::from_millis(3_500);

/// An honest pair on the test chain: a victim (which mines when told) and a witness
/// connected to it.
pub struct Pair {
    pub dir: tempfile::TempDir,
    pub spec: PathBuf,
    pub genesis: apiary_core::Block,
    pub victim: NodeProcess,
    pub witness: NodeProcess,
}

impl Pair {
    pub fn start() -> Pair {
        let dir = tempfile::TempDir::new().unwrap();
        let spec = write_test_spec(dir.path());
        Pair::start_on(dir, spec, &[])
    }

    /// A pair on the chain of `spec` in `dir`; the victim also gets `victim_args`.
    pub fn start_on(dir: tempfile::TempDir, spec: PathBuf, victim_args: &[&str]) -> Pair {
        let genesis = apiary_genesis::load_spec(&spec).unwrap().genesis_block();
        let victim =
            NodeProcess::start(&dir.path().join("victim"), Some(&spec), victim_args).unwrap();
        let addr = victim.p2p_addr();
        let witness =
            NodeProcess::start(&dir.path().join("witness"), Some(&spec), &["--peer", &addr])
                .unwrap();
        wait_until(Duration::from_secs(30), "the witness to connect", || {
            witness.peer_count() == 1
        });
        // Connected is not yet gossiping: each must have the other's subscriptions to
        // blocks and transactions, or what a test sends first may never travel.
        let gossiping = |node: &NodeProcess, other: &NodeProcess| {
            peer_entry(node, &other.peer_id())
                .is_some_and(|p| p["topics"].as_array().is_some_and(|t| t.len() >= 2))
        };
        wait_until(Duration::from_secs(30), "the pair to gossip", || {
            gossiping(&victim, &witness) && gossiping(&witness, &victim)
        });
        Pair {
            dir,
            spec,
            genesis,
            victim,
            witness,
        }
    }

    /// The victim mines `blocks` blocks one at a time; each must reach the witness within
    /// `RELAY_LIMIT`, as gossip brings it.
    pub fn relays(&self, blocks: usize) {
        for _ in 0..blocks {
            self.victim
                .rpc
                .call("dev_mine", json!({"blocks": 1}))
                .unwrap();
            let tip = self.victim.tip();
            wait_until(RELAY_LIMIT, "the witness to get the victim's block", || {
                self.witness.tip() == tip
            });
        }
    }
}

/// Two nodes of the chain of `spec` in `dir`/`names`, the second peered to the first,
/// connected when this returns.
pub fn connected_pair(dir: &Path, spec: &Path, names: [&str; 2]) -> (NodeProcess, NodeProcess) {
    let first = NodeProcess::start(&dir.join(names[0]), Some(spec), &[]).unwrap();
    let second = NodeProcess::start(
        &dir.join(names[1]),
        Some(spec),
        &["--peer", &first.p2p_addr()],
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "the nodes to connect", || {
        first.peer_count() == 1 && second.peer_count() == 1
    });
    (first, second)
}

/// `node_info` tells the truth: not syncing, and the best known height is its own.
pub fn assert_truthful(node: &NodeProcess) {
    let info = node.rpc.call("node_info", json!({})).unwrap();
    assert_eq!(info["syncing"], false, "{info}");
    assert_eq!(
        info["sync"]["best_known_height"].as_u64(),
        info["height"].as_u64(),
        "{info}"
    );
}

/// What `net_peers` says of `peer` (None: not connected).
pub fn peer_entry(node: &NodeProcess, peer: &str) -> Option<Value> {
    node.rpc
        .call("net_peers", json!({}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == peer)
        .cloned()
}

/// The score the node holds against `peer` (None: not connected).
pub fn score_of(node: &NodeProcess, peer: &str) -> Option<u64> {
    peer_entry(node, peer).map(|p| p["score"].as_u64().unwrap_or(0))
}

/// The JSON a successful `apiary-wallet --json` command printed.
pub fn wallet_ok(output: std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "wallet failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json output")
}

/// The error of an `apiary-wallet --json` command that must fail.
pub fn wallet_refused(output: std::process::Output) -> String {
    assert!(
        !output.status.success(),
        "the wallet should have refused: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let reply: Value = serde_json::from_slice(&output.stdout).expect("--json error output");
    reply["error"].as_str().unwrap().to_string()
}
