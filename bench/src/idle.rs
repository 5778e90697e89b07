//! `idle_testnet`: the CPU a 3-node testnet takes while nobody uses it, as
//! `scripts/testnet up` starts it (one paced miner), against the 5 %-of-a-core goal.

use super::*;
use std::process::Command;
use std::time::Duration;

/// What an idle 3-node testnet may cost at most, in percent of one core (all nodes).
const GOAL_PERCENT: f64 = 5.0;

fn testnet(root: &std::path::Path, args: &[&str]) -> Result<String> {
    let output = Command::new(root.join("scripts/testnet"))
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!(
            "scripts/testnet {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn height(datadir: &str) -> Result<u64> {
    let addr = std::fs::read_to_string(format!("{datadir}/rpc.addr"))?;
    let cookie = PathBuf::from(format!("{datadir}/rpc.cookie"));
    let client = apiary_client::Client::new(vec![apiary_client::Endpoint::with_cookie(
        addr.trim(),
        Some(&cookie),
    )]);
    Ok(client
        .ask::<apiary_api::ChainTip>(&apiary_api::NoParams {})?
        .height
        .0)
}

pub(crate) fn bench_idle_testnet() -> Result<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace")?
        .to_path_buf();
    let dir = tempfile::tempdir()?;
    let dir_text = dir.path().to_str().context("a UTF-8 temp dir")?;
    let window = Duration::from_secs(
        std::env::var("BENCH_IDLE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    if let Err(error) = testnet(&root, &["--dir", dir_text, "up"]) {
        // `up` may have started some nodes before it failed: stop them too.
        let _ = testnet(&root, &["--dir", dir_text, "down"]);
        return Err(error);
    }
    let result = (|| -> Result<Value> {
        let nodes: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("nodes.json"))?)?;
        let nodes = nodes.as_array().context("nodes.json lists nodes")?;
        let pids: Vec<u64> = nodes.iter().filter_map(|n| n["pid"].as_u64()).collect();
        let datadir = nodes[0]["datadir"]
            .as_str()
            .context("a datadir")?
            .to_string();
        // Start-up (opening stores, first dials) is not idling.
        std::thread::sleep(Duration::from_secs(10));
        let before: f64 = pids
            .iter()
            .map(|p| super::procs::cpu_seconds(*p))
            .sum::<Result<f64>>()?;
        let height_before = height(&datadir)?;
        let started = Instant::now();
        std::thread::sleep(window);
        let after: f64 = pids
            .iter()
            .map(|p| super::procs::cpu_seconds(*p))
            .sum::<Result<f64>>()?;
        let blocks = height(&datadir)? - height_before;
        let seconds = started.elapsed().as_secs_f64();
        let percent = 100.0 * (after - before) / seconds;
        Ok(json!({
            "value": (percent * 100.0).round() / 100.0,
            "unit": "% of one core (3 nodes, all processes)",
            "limit": GOAL_PERCENT,
            "ratio": (percent / GOAL_PERCENT * 1000.0).round() / 1000.0,
            "params": {
                "limit_is": "the goal: an idle 3-node testnet within 5 % of one core",
                "setup": "scripts/testnet up (1 miner, --mine-interval-ms 2000), after 10 s of start-up",
                "nodes": pids.len(),
                "seconds": seconds.round(),
                "blocks_mined": blocks,
            },
        }))
    })();
    testnet(&root, &["--dir", dir_text, "down"])?;
    result
}
