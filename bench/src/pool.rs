//! The pool, on release binaries:
//!
//! - `pool_shares`: shares per second `apiary-pool` checks and books (every share written
//!   before it is acknowledged) with the pool pinned to one core, 4 miners pipelining
//!   shares at difficulty 1 (every nonce a share), against the share check alone (one
//!   header hash and a comparison) on one core in the same run.
//! - `pool_stale_rate`: the share of stale shares for two `apiary-miner --pool` at 2 s
//!   blocks (a fixed difficulty set from the miners' measured hashrate), against the 1 %
//!   goal. Shares come ten a second per miner (`--share-seconds 0.1`) so the rate rests on
//!   thousands of shares, not a hundred; with the miners' timelines, how long after each
//!   block every miner had the next job (the window a share can go stale in).

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

struct Procs {
    children: Vec<std::process::Child>,
    node: NodeProc,
    _specs: tempfile::TempDir,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A node on a chain of `hashes` per block (2 s blocks, no retarget) and a pool on it.
fn node_and_pool(hashes: u64, pool_args: &[&str], pin: Option<&str>) -> Result<(Procs, String)> {
    let specs = tempfile::tempdir()?;
    let spec = fixed_spec(specs.path(), hashes, 2000)?;
    let node = NodeProc::start(Some(&spec))?;
    let mut procs = Procs {
        children: Vec::new(),
        node,
        _specs: specs,
    };
    let mut command = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(sibling("apiary-pool")?);
            c
        }
        None => Command::new(sibling("apiary-pool")?),
    };
    let pool = command
        .args(["--rpc", &procs.node.host, "--rpc-cookie"])
        .arg(procs.node.cookie())
        .arg("--datadir")
        .arg(procs.node.dir.path().join("pool"))
        .args(["--listen", "127.0.0.1:0"])
        .args(pool_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    procs.children.push(pool);
    let addr = wait_for_file(&procs.node.dir.path().join("pool/pool.addr"))?;
    Ok((procs, addr))
}

/// Connects, authorizes, and returns the stream, its reader and the first job.
fn stratum(
    addr: &str,
    who: &str,
) -> Result<(std::net::TcpStream, BufReader<std::net::TcpStream>, Value)> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    writeln!(
        stream,
        "{}",
        json!({"id": 1, "method": "mining.authorize", "params": [who, "x"]})
    )?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("the pool closed the connection");
        }
        let message: Value = serde_json::from_str(&line)?;
        if message["method"] == "mining.notify" {
            return Ok((stream, reader, message["params"].clone()));
        }
    }
}

pub(crate) fn bench_pool_shares() -> Result<Value> {
    let (_procs, addr) = node_and_pool(
        1 << 50,
        &["--start-difficulty", "1", "--share-seconds", "0.000001"],
        Some("1"),
    )?;
    let connections = 4u64;
    let per_connection = 5000u64;
    // Every connection ready before the clock starts.
    let mut sessions = Vec::new();
    for c in 0..connections {
        sessions.push(stratum(&addr, &payee(c as u8 + 1)?)?);
    }
    let started = Instant::now();
    let threads: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(c, (stream, mut reader, job))| {
            let who = payee(c as u8 + 1).unwrap_or_default();
            std::thread::spawn(move || -> Result<u64> {
                let header: BlockHeader =
                    borsh::from_slice(&hex::decode(job[1].as_str().unwrap_or(""))?)?;
                let writer = std::thread::spawn({
                    let mut stream = stream.try_clone()?;
                    let job_id = job[0].clone();
                    move || -> Result<()> {
                        let mut out = std::io::BufWriter::new(&mut stream);
                        for i in 0..per_connection {
                            let nonce = (c as u64) << 40 | i;
                            writeln!(
                                out,
                                "{}",
                                json!({"id": i + 10, "method": "mining.submit",
                                "params": [who, job_id, nonce.to_string(), header.timestamp_ms]})
                            )?;
                        }
                        out.flush()?;
                        Ok(())
                    }
                });
                let mut accepted = 0;
                let mut answered = 0;
                while answered < per_connection {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 {
                        break;
                    }
                    let message: Value = serde_json::from_str(&line)?;
                    if message["id"].as_u64().is_some_and(|id| id >= 10) {
                        answered += 1;
                        if message["result"] == true {
                            accepted += 1;
                        }
                    }
                }
                let _ = writer.join();
                let _ = stream.shutdown(std::net::Shutdown::Both);
                Ok(accepted)
            })
        })
        .collect();
    let mut accepted = 0;
    for thread in threads {
        accepted += thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = accepted as f64 / seconds;
    // The check alone: one header hash and a comparison per share, one core.
    let header = bench_header(apiary_core::CompactTarget(0x1f00ffff));
    let target = apiary_core::block::target_words(&Target::from_u256(U256::one())?);
    let checks = 2_000_000u64;
    let check_started = Instant::now();
    let mut met = 0u64;
    for nonce in 0..checks {
        let mut h = header.clone();
        h.nonce = nonce;
        if apiary_core::block::HeaderHasher::new(&h).hash_words(nonce) <= target {
            met += 1;
        }
    }
    std::hint::black_box(met);
    let check_rate = checks as f64 / check_started.elapsed().as_secs_f64();
    Ok(json!({
        "value": rate.round(),
        "unit": "shares/s checked and booked (pool on one core)",
        "limit": check_rate.round(),
        "ratio": ((rate / check_rate) * 10000.0).round() / 10000.0,
        "params": {
            "limit_is": "the share check alone (midstate, hash, compare) on one core, same run",
            "accepted": accepted,
            "submitted": connections * per_connection,
            "connections": connections,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "setup": "apiary-pool under taskset -c 1, --start-difficulty 1; each share's books written (fsync, rename) before its answer, one write for all shares waiting",
        },
    }))
}

pub(crate) fn bench_pool_stale_rate() -> Result<Value> {
    let seconds: u64 = env_size("BENCH_POOL_SECONDS", 90)? as u64;
    let miners = 2u64;
    // Blocks of about 2 s for two one-thread miners sharing the machine with the node
    // and the pool.
    let per_thread = builtin_rate(2.0);
    // Two one-thread miners, each on most of a core (their hashing threads run at idle
    // priority, so the node and the pool take what they need first).
    let hashes = (per_thread * 1.1 * 2.0 * miners as f64) as u64;
    let (procs, addr) = node_and_pool(hashes, &["--share-seconds", "0.1"], None)?;
    let outputs: Vec<_> = (0..miners)
        .map(|i| {
            Command::new(sibling("apiary-miner")?)
                .args([
                    "--pool",
                    &addr,
                    "--address",
                    &payee(i as u8 + 1)?,
                    "--threads",
                    "1",
                ])
                .args(["--json", "--duration", &seconds.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        // Each drained on its own thread: a miner whose output pipe fills stops reading
        // its jobs (and its shares go stale) while another is waited for.
        .map(|m| std::thread::spawn(move || m.wait_with_output()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a reader panicked")))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let (mut accepted, mut stale, mut refused) = (0u64, 0u64, 0u64);
    let timelines: Vec<Vec<Value>> = outputs
        .iter()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect()
        })
        .collect();
    let window = stale_window(&timelines);
    if let Ok(dir) = std::env::var("BENCH_DUMP") {
        for (i, t) in timelines.iter().enumerate() {
            std::fs::write(
                format!("{dir}/miner{i}.json"),
                serde_json::to_vec_pretty(t)?,
            )?;
        }
    }
    for timeline in &timelines {
        let summary = timeline
            .iter()
            .find(|l| l["event"] == "summary")
            .context("a miner's summary")?;
        accepted += summary["accepted"].as_u64().unwrap_or(0);
        stale += summary["stale"].as_u64().unwrap_or(0);
        refused += summary["refused"].as_u64().unwrap_or(0);
    }
    let books: Value = serde_json::from_slice(&std::fs::read(
        procs.node.dir.path().join("pool/pool.json"),
    )?)?;
    let blocks = books["blocks"].as_array().map_or(0, |b| b.len());
    let percent = 100.0 * stale as f64 / (accepted + stale).max(1) as f64;
    // At most what the window allows: a share found inside it may go stale (only one
    // that reaches the pool after the pool has the new job does).
    let at_most = match (window["mean_ms"].as_f64(), blocks) {
        (Some(mean_ms), 1..) => 100.0 * mean_ms / (seconds as f64 * 1000.0 / blocks as f64),
        _ => f64::NAN,
    };
    Ok(json!({
        "value": (percent * 100.0).round() / 100.0,
        "unit": "% of shares stale (2 s blocks)",
        "limit": 1.0,
        "ratio": (percent * 100.0).round() / 100.0,
        "params": {
            "limit_is": "the goal: at most 1 % stale shares at 2 s blocks",
            "miners": miners,
            "seconds": seconds,
            "accepted": accepted,
            "stale": stale,
            "refused": refused,
            "blocks": blocks,
            "mean_block_seconds": if blocks > 0 { (seconds as f64 / blocks as f64 * 100.0).round() / 100.0 } else { 0.0 },
            "hashes_per_block": hashes,
            "window": window,
            "percent_at_most_by_window": (at_most * 1000.0).round() / 1000.0,
            "setup": "release node on a fixed-difficulty chain, apiary-pool --share-seconds 0.1, two apiary-miner --pool --threads 1 on the same 2 cores",
        },
    }))
}

/// Where stale shares come from, from the miners' `--json` timelines (one clock: same
/// machine): how long after a block was found each miner had the next job (the window in
/// which its shares go stale), and whether any stale share was found after its miner
/// already had the new job (the search not switching).
fn stale_window(timelines: &[Vec<Value>]) -> Value {
    // Blocks found and taken: (height, µs found), from the finder's own record.
    let mut blocks = Vec::new();
    for timeline in timelines {
        let taken: std::collections::HashSet<u64> = timeline
            .iter()
            .filter(|e| e["event"] == "share" && e["reply"]["error"].is_null())
            .filter_map(|e| e["reply"]["id"].as_u64())
            .collect();
        for event in timeline {
            if event["event"] == "found"
                && event["block"] == true
                && event["submit_id"]
                    .as_u64()
                    .is_some_and(|id| taken.contains(&id))
            {
                blocks.push((
                    event["height"].as_u64().unwrap_or(0),
                    event["found_us"].as_u64().unwrap_or(0),
                ));
            }
        }
    }
    let mut switch_ms = Vec::new();
    let mut stale_after_switch = 0u64;
    for timeline in timelines {
        let works: Vec<(u64, u64)> = timeline
            .iter()
            .filter(|e| e["event"] == "work")
            .map(|e| {
                (
                    e["height"].as_u64().unwrap_or(0),
                    e["at_us"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        for (height, found_us) in &blocks {
            if let Some((_, at)) = works.iter().find(|(h, at)| h > height && at >= found_us) {
                switch_ms.push((at - found_us) as f64 / 1000.0);
            }
        }
        // Each stale share's find, against when this miner had a job past its height.
        let found: std::collections::HashMap<u64, (u64, u64)> = timeline
            .iter()
            .filter(|e| e["event"] == "found")
            .filter_map(|e| {
                Some((
                    e["submit_id"].as_u64()?,
                    (e["height"].as_u64()?, e["found_us"].as_u64()?),
                ))
            })
            .collect();
        for event in timeline.iter().filter(|e| e["event"] == "share") {
            let reply = &event["reply"];
            if reply["error"][0].as_i64() != Some(apiary_miner::stratum::STALE_JOB) {
                continue;
            }
            let Some((height, found_us)) = reply["id"].as_u64().and_then(|id| found.get(&id))
            else {
                continue;
            };
            if works.iter().any(|(h, at)| h > height && at < found_us) {
                stale_after_switch += 1;
            }
        }
    }
    switch_ms.sort_by(f64::total_cmp);
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    if switch_ms.is_empty() {
        return json!({"blocks_seen": blocks.len()});
    }
    json!({
        "is": "block found (by its miner) → each miner has the next job, ms",
        "p50_ms": round(crate::live::percentile(&switch_ms, 0.5)),
        "p99_ms": round(crate::live::percentile(&switch_ms, 0.99)),
        "max_ms": round(switch_ms[switch_ms.len() - 1]),
        "mean_ms": round(switch_ms.iter().sum::<f64>() / switch_ms.len() as f64),
        "samples": switch_ms.len(),
        "stale_found_after_the_miner_had_the_new_job": stale_after_switch,
    })
}
