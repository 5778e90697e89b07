//! `hosts`: five release nodes, each in a network namespace of its own on one bridge (its
//! own IP and TCP stack, made by `scripts/netns.py`), every link limited by tc to 100 and
//! then 10 Mbit/s each way. Root only.
//!
//! - Propagation: each round, 1,000 transfers reach every mempool, node 0 mines a block of
//!   them, and each other node's delay is when it had the block minus when node 0 had it
//!   (`block_arrivals`; one machine, one clock). The block travels compact (header + txids,
//!   ~32 kB); the limit is the link's time for that many bytes times the hops each node is
//!   from node 0 (from `net_peers`).
//! - Whole blocks: a sixth node joins node 0 alone and syncs every block of the run, each
//!   sent whole (~150 kB); its time per block against the link's time for the bytes.

use super::*;
use procs::{sibling, wait_for_file};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const NODES: usize = 5;
const RATES_MBIT: [u64; 2] = [100, 10];

/// `scripts/netns.py` run with `code` after `import netns`.
fn netns(code: &str) -> Result<String> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let output = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sys; sys.path.insert(0, {:?}); import netns; {code}",
            scripts
        ))
        .output()
        .context("python3")?;
    if !output.status.success() {
        bail!("netns: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The namespaces of one run, removed however it ends.
struct Hosts {
    tag: String,
    count: usize,
}

impl Hosts {
    fn create(count: usize, rate: &str) -> Result<Hosts> {
        let tag = format!("{:04x}", std::process::id() & 0xffff);
        netns(&format!("netns.create({tag:?}, {count}, {rate:?})"))?;
        Ok(Hosts { tag, count })
    }

    fn set_rate(&self, rate: &str) -> Result<()> {
        let tag = &self.tag;
        netns(&format!(
            "[(netns.shape(netns.veth({tag:?}, i), {rate:?}), netns.shape('eth0', {rate:?}, netns.namespace({tag:?}, i))) for i in range({})]",
            self.count
        ))?;
        Ok(())
    }

    fn namespace(&self, index: usize) -> String {
        format!("apn{}-{index}", self.tag)
    }

    fn ip(&self, index: usize) -> Result<String> {
        netns(&format!("print(netns.ip_of({:?}, {index}))", self.tag))
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = netns(&format!("netns.cleanup({:?})", self.tag));
    }
}

/// A release node in host `index`'s namespace, killed on drop.
struct HostNode {
    child: Child,
    _dir: tempfile::TempDir,
    client: apiary_client::Client,
    p2p: String,
}

impl HostNode {
    fn start(hosts: &Hosts, index: usize, spec: &Path, extra: &[&str]) -> Result<HostNode> {
        let dir = tempfile::tempdir()?;
        let datadir = dir.path().join("node");
        let ip = hosts.ip(index)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &hosts.namespace(index)])
            .arg(sibling("apiary-node")?)
            .arg("--datadir")
            .arg(&datadir)
            .arg("--genesis")
            .arg(spec)
            .args(["--rpc-addr", &format!("{ip}:9797")])
            .args(["--listen", &format!("/ip4/{ip}/tcp/9798")]);
        command.args(extra);
        let log = std::fs::File::create(dir.path().join("node.log"))?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting apiary-node in its namespace")?;
        let cookie = datadir.join("rpc.cookie");
        wait_for_file(&cookie).map_err(|e| {
            let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            anyhow::anyhow!("node {index}: {e}; its log ends: {tail:?}")
        })?;
        let host = wait_for_file(&datadir.join("rpc.addr"))?;
        let p2p = wait_for_file(&datadir.join("p2p.addr"))?;
        let client = apiary_client::Client::new(vec![apiary_client::Endpoint::with_cookie(
            &host,
            Some(&cookie),
        )]);
        Ok(HostNode {
            child,
            _dir: dir,
            client,
            p2p,
        })
    }

    fn peer_id(&self) -> &str {
        self.p2p.rsplit('/').next().unwrap_or_default()
    }

    fn peers(&self) -> Result<Vec<String>> {
        let peers = self.client.call("net_peers", json!({}))?;
        Ok(peers
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|p| p["peer_id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn mempool_len(&self) -> u64 {
        self.client
            .call("mempool_info", json!({}))
            .map(|info| info["count"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    }

    fn height(&self) -> u64 {
        self.client
            .call("chain_tip", json!({}))
            .map(|tip| tip["height"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    }

    /// When this node had block `hash`, in µs by the machine's clock.
    fn received_us(&self, hash: &str) -> Result<Option<u64>> {
        let arrivals = self.client.call("block_arrivals", json!({}))?;
        Ok(arrivals.as_array().and_then(|list| {
            list.iter()
                .find(|a| a["hash"].as_str() == Some(hash))
                .and_then(|a| a["received_us"].as_u64())
        }))
    }
}

impl Drop for HostNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hops from node 0 to each node, over the links `net_peers` shows.
fn hops(nodes: &[HostNode]) -> Result<Vec<usize>> {
    let ids: Vec<&str> = nodes.iter().map(HostNode::peer_id).collect();
    let mut links: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for peer in node.peers()? {
            if let Some(j) = ids.iter().position(|id| *id == peer) {
                links.entry(i).or_default().push(j);
                links.entry(j).or_default().push(i);
            }
        }
    }
    let mut distance = vec![usize::MAX; nodes.len()];
    distance[0] = 0;
    let mut queue = VecDeque::from([0]);
    while let Some(i) = queue.pop_front() {
        for &j in links.get(&i).into_iter().flatten() {
            if distance[j] == usize::MAX {
                distance[j] = distance[i] + 1;
                queue.push_back(j);
            }
        }
    }
    Ok(distance)
}

/// Milliseconds to send `bytes` at `mbit` Mbit/s.
fn link_ms(bytes: usize, mbit: u64) -> f64 {
    bytes as f64 * 8.0 / (mbit as f64 * 1e6) * 1e3
}

/// How the five nodes are linked.
#[derive(Clone, Copy)]
enum Topology {
    /// As they find each other (a full mesh at five): the miner's one uplink carries a copy
    /// to each of its peers.
    Mesh,
    /// A line held by `--max-peers` (1 at the ends, 2 inside): each node passes the block
    /// to the next, one copy per link, and a block takes up to four hops.
    Line,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::Mesh => "mesh",
            Topology::Line => "line",
        }
    }
}

/// What the run measures with: its chain, keys, and sizes.
struct Run {
    accounts: Accounts,
    spec: ChainSpec,
    spec_path: PathBuf,
    rounds: usize,
    txs_per_block: usize,
}

/// Five nodes linked as `topology`, started in order, each knowing the one before it.
fn start_nodes(hosts: &Hosts, run: &Run, topology: Topology) -> Result<Vec<HostNode>> {
    let mut nodes: Vec<HostNode> = Vec::new();
    for index in 0..NODES {
        let before = nodes.last().map(|n: &HostNode| n.p2p.clone());
        let mut args: Vec<String> = before
            .into_iter()
            .flat_map(|p| ["--peer".into(), p])
            .collect();
        if let Topology::Line = topology {
            let ends = index == 0 || index == NODES - 1;
            args.extend(["--max-peers".into(), if ends { "1" } else { "2" }.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(HostNode::start(hosts, index, &run.spec_path, &args)?);
    }
    wait_for("every node to be linked", STEP_LIMIT, || {
        hops(&nodes).is_ok_and(|d| d.iter().all(|&h| h != usize::MAX))
    })?;
    Ok(nodes)
}

/// Rounds of 1,000-transfer blocks mined by node 0 at each link rate: per rate, the
/// other nodes' delays against hops x the compact block's link time. Returns the figures
/// and the bytes of a compact and a whole block.
fn propagation(
    hosts: &Hosts,
    run: &Run,
    nodes: &[HostNode],
) -> Result<(Map<String, Value>, usize, usize)> {
    let mut by_rate = Map::new();
    let (mut compact_bytes, mut whole_bytes) = (0, 0);
    let mut round = 0u64;
    for mbit in RATES_MBIT {
        hosts.set_rate(&format!("{mbit}mbit"))?;
        let distance = hops(nodes)?;
        let mut delays = Vec::new();
        let mut limits = Vec::new();
        for _ in 0..run.rounds {
            let n = run.txs_per_block;
            let txs: Vec<SignedTransaction> = (0..n)
                .into_par_iter()
                .map(|j| run.accounts.transfer(&run.spec, j, (j + 1) % n, round))
                .collect();
            compact_bytes = HEADER_BYTES + 4 + 32 * txs.len();
            whole_bytes = HEADER_BYTES
                + 4
                + txs
                    .iter()
                    .map(|t| borsh::to_vec(t).map_or(0, |b| b.len()))
                    .sum::<usize>();
            for (j, stx) in txs.iter().enumerate() {
                nodes[j % NODES]
                    .client
                    .call("tx_submit", json!({"tx": hex::encode(borsh::to_vec(stx)?)}))?;
            }
            wait_for("the transfers to reach every mempool", STEP_LIMIT, || {
                nodes.iter().all(|node| node.mempool_len() == n as u64)
            })?;
            let mined = nodes[0].client.call("dev_mine", json!({"blocks": 1}))?;
            let hash = mined["hashes"][0]
                .as_str()
                .context("dev_mine's answer names no block")?
                .to_string();
            let mut arrived = [None; NODES];
            wait_for("the block to reach every node", STEP_LIMIT, || {
                for (i, node) in nodes.iter().enumerate() {
                    if arrived[i].is_none() {
                        arrived[i] = node.received_us(&hash).ok().flatten();
                    }
                }
                arrived.iter().all(Option::is_some)
            })?;
            let mined_at = arrived[0].unwrap_or(0);
            for i in 1..NODES {
                delays.push(arrived[i].unwrap_or(0).saturating_sub(mined_at) as f64 / 1e3);
                limits.push(distance[i] as f64 * link_ms(compact_bytes, mbit));
            }
            round += 1;
        }
        delays.sort_by(f64::total_cmp);
        limits.sort_by(f64::total_cmp);
        let p50 = live::percentile(&delays, 0.5);
        let limit = live::percentile(&limits, 0.5);
        eprintln!("{mbit} Mbit/s: p50 {p50:.1} ms against {limit:.1} ms (hops {distance:?})");
        by_rate.insert(
            format!("{mbit}mbit"),
            json!({
                "p50_ms": round3(p50),
                "p90_ms": round3(live::percentile(&delays, 0.9)),
                "max_ms": round3(delays.last().copied().unwrap_or(0.0)),
                "hops_x_compact_link_ms_p50": round3(limit),
                "ratio": round3(p50 / limit),
                "hops": distance[1..].to_vec(),
            }),
        );
    }
    Ok((by_rate, compact_bytes, whole_bytes))
}

pub(crate) fn bench_hosts() -> Result<Value> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("`hosts` needs root: network namespaces, veth pairs and tc");
    }
    let rounds = env_size("BENCH_HOSTS_ROUNDS", 20)?;
    let txs_per_block = env_size("BENCH_TXS", 1000)?;
    let params = ConnectParams {
        blocks: rounds,
        txs_per_block,
        accounts: txs_per_block,
    };
    let accounts = Accounts::derive(txs_per_block);
    let spec = bench_spec(&accounts.addresses, &params)?;
    let spec_dir = tempfile::tempdir()?;
    let spec_path = spec_dir.path().join("spec.toml");
    std::fs::write(&spec_path, apiary_genesis::spec_to_toml(&spec))?;
    let run = Run {
        accounts,
        spec,
        spec_path,
        rounds,
        txs_per_block,
    };

    let hosts = Hosts::create(NODES + 1, &format!("{}mbit", RATES_MBIT[0]))?;
    let mut topologies = Map::new();
    let (mut compact_bytes, mut whole_bytes) = (0, 0);
    let mut sync = Value::Null;
    for topology in [Topology::Line, Topology::Mesh] {
        eprintln!("-- {}", topology.name());
        let nodes = start_nodes(&hosts, &run, topology)?;
        let (figures, compact, whole) = propagation(&hosts, &run, &nodes)?;
        (compact_bytes, whole_bytes) = (compact, whole);
        topologies.insert(topology.name().into(), Value::Object(figures));
        if let Topology::Mesh = topology {
            // Whole blocks: a node lacking every block syncs them from node 0 alone, at
            // the last rate.
            let mbit = RATES_MBIT[RATES_MBIT.len() - 1];
            let target = nodes[0].height();
            let started = Instant::now();
            let joiner =
                HostNode::start(&hosts, NODES, &run.spec_path, &["--peer", &nodes[0].p2p])?;
            wait_for("the new node to sync every block", SYNC_LIMIT, || {
                joiner.height() >= target
            })?;
            let per_block_ms = started.elapsed().as_secs_f64() * 1e3 / target as f64;
            let limit = link_ms(whole_bytes, mbit);
            sync = json!({
                "blocks": target,
                "ms_per_block": round3(per_block_ms),
                "link_ms_per_whole_block": round3(limit),
                "ratio": round3(per_block_ms / limit),
                "rate_mbit": mbit,
            });
        }
    }
    let slow = format!("{}mbit", RATES_MBIT[RATES_MBIT.len() - 1]);
    let line = &topologies["line"][&slow];
    let (value, limit) = (
        line["p50_ms"].as_f64().unwrap_or(f64::NAN),
        line["hops_x_compact_link_ms_p50"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    Ok(json!({
        "value": round3(value),
        "unit": format!("ms (p50 block propagation, a line of 5 hosts, {slow} links)"),
        "limit": round3(limit),
        "ratio": round3(value / limit),
        "params": {
            "nodes": NODES,
            "rounds_per_rate": rounds,
            "txs_per_block": txs_per_block,
            "compact_block_bytes": compact_bytes,
            "whole_block_bytes": whole_bytes,
            "propagation": topologies,
            "whole_blocks_sync": sync,
            "limit_is": "hops from the miner x the link's time for the compact block, p50 over nodes and rounds",
        },
    }))
}
