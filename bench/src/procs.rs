//! This workspace's release binaries as processes, for the benchmarks that run the real
//! programs: a node on a chain of its own (or the devnet), killed on drop, and the node's
//! own nonce search for a reference rate.

use super::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A binary built beside `apiary-bench`.
pub(crate) fn sibling(name: &str) -> Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(name))
}

/// Waits for a file a process writes when it is ready; returns its contents, trimmed.
pub(crate) fn wait_for_file(path: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear within 30 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// The prefix of the chains `fixed_spec` writes.
pub(crate) const PREFIX: &str = "apbench";

/// A chain spec in `dir` with `hashes` expected per block that never retargets.
pub(crate) fn fixed_spec(dir: &Path, hashes: u64, block_time_ms: u64) -> Result<PathBuf> {
    let path = dir.join("spec.toml");
    let status = Command::new(sibling("apiary-genesis")?)
        .args([
            "new",
            "--chain-id",
            "apiary-bench-mining",
            "--address-prefix",
            PREFIX,
        ])
        .args(["--block-time-ms", &block_time_ms.to_string()])
        .args(["--half-life-ms", "1000000000"])
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

/// An address of the `fixed_spec` chains.
pub(crate) fn payee(seed: u8) -> Result<String> {
    Ok(Address([seed; 32]).to_text(&AddressPrefix::new(PREFIX)?))
}

/// A release node in a temporary data dir, on `spec` (the devnet when None).
pub(crate) struct NodeProc {
    child: Child,
    pub dir: tempfile::TempDir,
    /// HOST:PORT of its RPC.
    pub host: String,
    pub client: apiary_client::Client,
}

impl NodeProc {
    pub(crate) fn start(spec: Option<&Path>) -> Result<NodeProc> {
        NodeProc::start_in(tempfile::tempdir()?, spec, &[])
    }

    /// A node whose data dir is `<dir>/node` (which may hold a store already), with
    /// `extra` flags.
    pub(crate) fn start_in(
        dir: tempfile::TempDir,
        spec: Option<&Path>,
        extra: &[&str],
    ) -> Result<NodeProc> {
        let mut command = Command::new(sibling("apiary-node")?);
        command.arg("--datadir").arg(dir.path().join("node"));
        if let Some(spec) = spec {
            command.arg("--genesis").arg(spec);
        }
        let child = command
            .args([
                "--rpc-addr",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting apiary-node")?;
        let mut node = NodeProc {
            child,
            dir,
            host: String::new(),
            client: apiary_client::Client::new(Vec::new()),
        };
        wait_for_file(&node.cookie())?;
        node.host = wait_for_file(&node.dir.path().join("node/rpc.addr"))?;
        node.client = apiary_client::Client::new(vec![apiary_client::Endpoint::with_cookie(
            &node.host,
            Some(&node.cookie()),
        )]);
        Ok(node)
    }

    /// Another client of its RPC (one per thread that calls it).
    pub(crate) fn new_client(&self) -> apiary_client::Client {
        apiary_client::Client::new(vec![apiary_client::Endpoint::with_cookie(
            &self.host,
            Some(&self.cookie()),
        )])
    }

    /// Its resident memory now and at its peak, in bytes (/proc).
    pub(crate) fn rss(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// Stops it as an operator would (SIGTERM: it writes its state and exits).
    pub(crate) fn stop(&mut self) -> Result<()> {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("the node did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub(crate) fn cookie(&self) -> PathBuf {
        self.dir.path().join("node/rpc.cookie")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header for hashing benchmarks, with the given target.
pub(crate) fn bench_header(bits: apiary_core::CompactTarget) -> BlockHeader {
    BlockHeader {
        version: 1,
        height: apiary_core::Height(1),
        prev_hash: Default::default(),
        tx_root: Default::default(),
        state_root: Default::default(),
        miner: Address([1; 32]),
        timestamp_ms: apiary_core::TimestampMs(now_ms()),
        bits,
        nonce: 0,
    }
}

/// The node's own search loop on one thread for about `seconds`, in hashes per second
/// (a target no hash meets: every hash is search).
pub(crate) fn builtin_rate(seconds: f64) -> f64 {
    let impossible = Target::from_u256(U256::one())
        .expect("1 is a target")
        .to_compact();
    let header = bench_header(impossible);
    let checks = std::cell::Cell::new(0u64);
    let started = Instant::now();
    search_nonce(&header, 0, 1, || {
        checks.set(checks.get() + 1);
        started.elapsed().as_secs_f64() >= seconds
    });
    (checks.get() * NONCES_BETWEEN_CHECKS) as f64 / started.elapsed().as_secs_f64()
}

/// The median of 200 HTTP JSON-RPC round trips (`chain_tip`) to `node`, in ms: the scale
/// for the latency benchmarks.
pub(crate) fn rpc_round_trip_ms(node: &NodeProc) -> f64 {
    let mut round_trips = rpc_round_trips_ms(node, 200);
    round_trips.sort_by(f64::total_cmp);
    round_trips[round_trips.len() / 2]
}

/// `count` HTTP JSON-RPC round trips (`chain_tip`, which reads no state) to `node`, in ms.
pub(crate) fn rpc_round_trips_ms(node: &NodeProc, count: usize) -> Vec<f64> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            let _ = node.client.call("chain_tip", json!({}));
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// CPU seconds (user + system) `pid` has used so far.
pub(crate) fn cpu_seconds(pid: u64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let after = &stat[stat.rfind(')').context("unreadable /proc stat")? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks as f64 / per_second)
}
