//! Mining from outside the node, on release binaries:
//!
//! - `external_miner`: `apiary-miner --threads 1` hashes per second through a node (a chain
//!   so hard no block is found), against the node's own search loop on one thread in the
//!   same run; best of 3 alternating passes each.
//! - `template_latency`: from a block's acceptance on the node (`block_arrivals`) to the
//!   external miner having the next template (its `work` events), p50 and p99, against
//!   an HTTP JSON-RPC round trip to the same node.

use super::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn sibling(name: &str) -> Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(name))
}

/// A chain spec with `hashes` expected per block that never retargets.
fn spec_with(dir: &std::path::Path, hashes: u64) -> Result<PathBuf> {
    let path = dir.join("spec.toml");
    let status = Command::new(sibling("apiary-genesis")?)
        .args([
            "new",
            "--chain-id",
            "apiary-bench-mining",
            "--address-prefix",
            "apbench",
        ])
        .args(["--block-time-ms", "1000", "--half-life-ms", "1000000000"])
        .args([
            "--initial-hashes",
            &hashes.to_string(),
            "--min-hashes",
            "2",
            "-o",
        ])
        .arg(&path)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("apiary-genesis new failed");
    }
    Ok(path)
}

struct NodeProc {
    child: std::process::Child,
    dir: tempfile::TempDir,
    url: String,
    client: apiary_client::Client,
    address: String,
}

impl NodeProc {
    fn start(hashes: u64) -> Result<NodeProc> {
        let dir = tempfile::tempdir()?;
        let spec = spec_with(dir.path(), hashes)?;
        let datadir = dir.path().join("node");
        let child = Command::new(sibling("apiary-node")?)
            .arg("--datadir")
            .arg(&datadir)
            .arg("--genesis")
            .arg(&spec)
            .args([
                "--rpc-addr",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let cookie = datadir.join("rpc.cookie");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cookie.exists() {
            if Instant::now() > deadline {
                bail!("the node did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = std::fs::read_to_string(datadir.join("rpc.addr"))?
            .trim()
            .to_string();
        let client = apiary_client::Client::new(vec![apiary_client::Endpoint::with_cookie(
            &url,
            Some(&cookie),
        )?]);
        let address = Address([9; 32]).to_text(&AddressPrefix::new("apbench")?);
        Ok(NodeProc {
            child,
            dir,
            url,
            client,
            address,
        })
    }

    fn miner(&self, seconds: u64) -> Command {
        let mut command = Command::new(sibling("apiary-miner").expect("a path"));
        command
            .args(["--rpc", &self.url, "--rpc-cookie"])
            .arg(self.dir.path().join("node/rpc.cookie"))
            .args(["--address", &self.address, "--threads", "1", "--json"])
            .args(["--duration", &seconds.to_string()]);
        command
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The node's own search loop on one thread for about `seconds`, in hashes per second.
fn builtin_rate(seconds: f64) -> f64 {
    let header = BlockHeader {
        version: 1,
        height: apiary_core::Height(1),
        prev_hash: Default::default(),
        tx_root: Default::default(),
        state_root: Default::default(),
        miner: Address([1; 32]),
        timestamp_ms: now_ms(),
        bits: Target::from_u256(U256::one()).unwrap().to_compact(),
        nonce: 0,
    };
    let checks = std::cell::Cell::new(0u64);
    let started = Instant::now();
    search_nonce(&header, 0, 1, || {
        checks.set(checks.get() + 1);
        started.elapsed().as_secs_f64() >= seconds
    });
    (checks.get() * NONCES_BETWEEN_CHECKS) as f64 / started.elapsed().as_secs_f64()
}

pub(crate) fn bench_external_miner() -> Result<Value> {
    // 2^50 hashes a block: nothing is found, every hash is search.
    let node = NodeProc::start(1 << 50)?;
    let seconds = 8;
    let (mut external, mut builtin) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let output = node.miner(seconds).output()?;
        if !output.status.success() {
            bail!("apiary-miner: {}", String::from_utf8_lossy(&output.stderr));
        }
        let summary = json_lines(&output.stdout)
            .into_iter()
            .find(|l| l["event"] == "summary")
            .context("the miner's summary")?;
        external.push(
            summary["hashes_per_second_per_thread"]
                .as_f64()
                .unwrap_or(0.0),
        );
        builtin.push(builtin_rate(seconds as f64));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let (external_best, builtin_best) = (best(&external), best(&builtin));
    Ok(json!({
        "value": external_best.round(),
        "unit": "hashes/s/thread (apiary-miner through RPC)",
        "limit": builtin_best.round(),
        "ratio": ((external_best / builtin_best) * 1000.0).round() / 1000.0,
        "params": {
            "limit_is": "the node's own search loop (search_nonce) on one thread, same run, best of 3 alternating passes",
            "passes_external": external.iter().map(|r| r.round()).collect::<Vec<_>>(),
            "passes_builtin": builtin.iter().map(|r| r.round()).collect::<Vec<_>>(),
            "seconds_per_pass": seconds,
            "goal_ratio": 0.95,
        },
    }))
}

pub(crate) fn bench_template_latency() -> Result<Value> {
    // About 50 ms of one thread per block.
    let node = NodeProc::start(400_000)?;
    let mut miner = node.miner(10).stdout(Stdio::piped()).spawn()?;
    // Arrivals keep the last 64 blocks: read them while the miner runs.
    let mut accepted: std::collections::HashMap<u64, u64> = Default::default();
    while miner.try_wait()?.is_none() {
        if let Ok(arrivals) = node.client.call("block_arrivals", json!({})) {
            for a in arrivals.as_array().into_iter().flatten() {
                if let (Some(h), Some(us)) = (a["height"].as_u64(), a["received_us"].as_u64()) {
                    accepted.insert(h, us);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = miner.wait_with_output()?;
    let lines = json_lines(&output.stdout);
    // A template for height h follows the acceptance of block h - 1.
    let mut latencies: Vec<f64> = lines
        .iter()
        .filter(|l| l["event"] == "work")
        .filter_map(|l| {
            let height = l["height"].as_u64()?;
            let at = l["at_us"].as_u64()?;
            let accepted = accepted.get(&height.checked_sub(1)?)?;
            Some(at.saturating_sub(*accepted) as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.len() < 20 {
        bail!("only {} templates matched a block", latencies.len());
    }
    let pick = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let mut round_trips: Vec<f64> = (0..200)
        .map(|_| {
            let started = Instant::now();
            let _ = node.client.call("chain_tip", json!({}));
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    round_trips.sort_by(f64::total_cmp);
    let rpc = round_trips[round_trips.len() / 2];
    let summary = lines.iter().find(|l| l["event"] == "summary").cloned();
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    Ok(json!({
        "value": round(pick(0.5)),
        "unit": "ms (p50, block accepted → the external miner has the next template)",
        "limit": round(rpc),
        "ratio": round(pick(0.5) / rpc),
        "params": {
            "limit_is": "p50 of an HTTP JSON-RPC round trip (chain_tip) to the same node, same run",
            "templates": latencies.len(),
            "p50_ms": round(pick(0.5)),
            "p99_ms": round(pick(0.99)),
            "max_ms": round(*latencies.last().unwrap_or(&0.0)),
            "miner": summary,
            "setup": "release node, apiary-miner --threads 1 on the templates subscription, blocks of ~400,000 hashes for 10 s",
        },
    }))
}
