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

/// A node on a chain of `hashes` per block, and the command of a one-thread miner paying
/// `payee(9)` through it for `seconds`.
fn node_and_miner(hashes: u64) -> Result<(tempfile::TempDir, NodeProc)> {
    let specs = tempfile::tempdir()?;
    let spec = fixed_spec(specs.path(), hashes, 1000)?;
    let node = NodeProc::start(Some(&spec))?;
    Ok((specs, node))
}

fn miner(node: &NodeProc, seconds: u64) -> Result<Command> {
    let mut command = Command::new(sibling("apiary-miner")?);
    command
        .args(["--rpc", &node.host, "--rpc-cookie"])
        .arg(node.cookie())
        .args(["--address", &payee(9)?, "--threads", "1", "--json"])
        .args(["--duration", &seconds.to_string()]);
    Ok(command)
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub(crate) fn bench_external_miner() -> Result<Value> {
    // 2^50 hashes a block: nothing is found, every hash is search.
    let (_specs, node) = node_and_miner(1 << 50)?;
    let seconds = 8;
    let (mut external, mut builtin) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let output = miner(&node, seconds)?.output()?;
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
    let (_specs, node) = node_and_miner(400_000)?;
    let mut miner = miner(&node, 10)?.stdout(Stdio::piped()).spawn()?;
    // Arrivals keep the last 64 blocks: read them while the miner runs.
    let mut accepted: std::collections::HashMap<u64, u64> = Default::default();
    while miner.try_wait()?.is_none() {
        if let Ok(arrivals) = node
            .client
            .ask::<apiary_api::BlockArrivals>(&apiary_api::NoParams {})
        {
            for arrival in arrivals {
                accepted.insert(arrival.height.0, arrival.received_us);
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
    let rpc_ms = rpc_round_trip_ms(&node);
    let rpc = rpc_ms;
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
