//! The live view's costs, on a release node process on 127.0.0.1:
//!
//! - `ws_latency`: from a block's acceptance (the node's `block_arrivals`, in µs) to its
//!   `tips` notification at each of 100 WebSocket subscribers, p50 and p99, against the
//!   node's own HTTP round trip (`chain_tip`) measured in the same run.
//! - `ws_idle_memory`: the node's RSS growth with 1,000 idle subscribers, per subscriber,
//!   against a 64 KiB goal.
//! - `explorer_load`: the explorer's home page in headless Chromium until its 20 latest
//!   blocks are shown (best of 5 loads), against a 1 s goal.

use super::*;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SUBSCRIBERS: usize = 100;
const IDLE_SUBSCRIBERS: usize = 1000;
const IDLE_GOAL_BYTES: f64 = 64.0 * 1024.0;
const EXPLORER_GOAL_MS: f64 = 1000.0;
/// Devnet account 0: mined to.
const MINER: &str = "apdev1nye7zzkr5ghqjprzet75ccuw06pna4hrlg6mjhnmu4227r6cthmq2k0ee9";

impl NodeProc {
    fn mine(&self, blocks: u64) -> Result<()> {
        self.client
            .call("dev_mine", json!({"blocks": blocks, "address": MINER}))?;
        Ok(())
    }

    fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .context("VmRSS")?
            .parse()?;
        Ok(kib * 1024)
    }

    /// A public socket subscribed to tips.
    fn subscriber(&self) -> Result<tungstenite::WebSocket<TcpStream>> {
        let stream = TcpStream::connect(&self.host)?;
        let (mut socket, _) =
            tungstenite::client(format!("ws://{}/explorer/ws", self.host), stream)
                .map_err(|e| anyhow::anyhow!("WebSocket handshake: {e}"))?;
        let call =
            json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topic": "tips"}});
        socket.send(tungstenite::Message::Text(call.to_string().into()))?;
        // The reply to subscribe.
        socket.read()?;
        Ok(socket)
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Latencies (ms, sorted) from each block's acceptance to each of `subscribers` sockets,
/// over `blocks` blocks mined one at a time.
fn notification_latencies(node: &NodeProc, subscribers: usize, blocks: u64) -> Result<Vec<f64>> {
    // Each subscriber records (height, µs received) on its own thread.
    let (sender, receiver) = std::sync::mpsc::channel::<(u64, u64)>();
    let first = node
        .client
        .ask::<apiary_api::ChainTip>(&apiary_api::NoParams {})?
        .height
        .0;
    let mut threads = Vec::new();
    for _ in 0..subscribers {
        let mut socket = node.subscriber()?;
        let sender = sender.clone();
        threads.push(std::thread::spawn(move || {
            let mut seen = 0;
            while seen < blocks {
                let Ok(tungstenite::Message::Text(text)) = socket.read() else {
                    return;
                };
                let at = now_us();
                let message: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                if let Some(height) = message["params"]["result"]["height"].as_u64() {
                    let _ = sender.send((height, at));
                    seen += 1;
                }
            }
        }));
    }
    drop(sender);
    // Arrivals keep the last 64 blocks: read them after each batch of 50.
    let mut accepted: std::collections::HashMap<u64, u64> = Default::default();
    let mut mined = 0;
    while mined < blocks {
        let batch = (blocks - mined).min(50);
        for _ in 0..batch {
            node.mine(1)?;
        }
        mined += batch;
        for arrival in node
            .client
            .ask::<apiary_api::BlockArrivals>(&apiary_api::NoParams {})?
        {
            accepted.insert(arrival.height.0, arrival.received_us);
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    let mut latencies: Vec<f64> = receiver
        .into_iter()
        .filter(|(height, _)| *height > first)
        .filter_map(|(height, at)| {
            let accepted = accepted.get(&height)?;
            Some(at.saturating_sub(*accepted) as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.len() as u64 != subscribers as u64 * blocks {
        bail!(
            "{} of {} notifications arrived",
            latencies.len(),
            subscribers as u64 * blocks
        );
    }
    Ok(latencies)
}

pub(crate) fn bench_ws_latency() -> Result<Value> {
    let node = NodeProc::start(None)?;
    let blocks: u64 = env_size("BENCH_WS_BLOCKS", 200)? as u64;
    let alone = notification_latencies(&node, 1, blocks)?;
    let crowd = notification_latencies(&node, SUBSCRIBERS, blocks)?;
    // For scale: an HTTP JSON-RPC round trip to the same node.
    let rpc_ms = rpc_round_trip_ms(&node);
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let p50 = percentile(&crowd, 0.5);
    let alone_p50 = percentile(&alone, 0.5);
    Ok(json!({
        "value": round(p50),
        "unit": "ms (p50, block accepted → each of 100 WebSocket clients)",
        "limit": round(alone_p50),
        "ratio": round(p50 / alone_p50),
        "params": {
            "limit_is": "p50 with a single subscriber, same node, same run",
            "subscribers": SUBSCRIBERS,
            "blocks": blocks,
            "notifications": crowd.len(),
            "p50_ms": round(p50),
            "p99_ms": round(percentile(&crowd, 0.99)),
            "max_ms": round(*crowd.last().unwrap_or(&0.0)),
            "one_subscriber": {"p50_ms": round(alone_p50), "p99_ms": round(percentile(&alone, 0.99))},
            "http_round_trip_p50_ms": round(rpc_ms),
            "setup": "release node on the devnet, dev_mine one block at a time, public sockets subscribed to tips, each read on its own thread (client and node share the 2 cores)",
        },
    }))
}

pub(crate) fn bench_ws_idle_memory() -> Result<Value> {
    let node = NodeProc::start(None)?;
    node.mine(5)?;
    // Warm: one socket opened and closed, so the first one's setup is not counted.
    drop(node.subscriber()?);
    std::thread::sleep(Duration::from_secs(1));
    let before = node.rss_bytes()?;
    let sockets: Vec<_> = (0..IDLE_SUBSCRIBERS)
        .map(|_| node.subscriber())
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_secs(2));
    let after = node.rss_bytes()?;
    let per = after.saturating_sub(before) as f64 / IDLE_SUBSCRIBERS as f64;
    // They still work: a block reaches the last one.
    node.mine(1)?;
    let mut last = sockets.into_iter().last().context("a socket")?;
    last.read()?;
    Ok(json!({
        "value": (per / 1024.0 * 10.0).round() / 10.0,
        "unit": "KiB RSS per idle subscriber",
        "limit": IDLE_GOAL_BYTES / 1024.0,
        "ratio": ((per / IDLE_GOAL_BYTES) * 1000.0).round() / 1000.0,
        "params": {
            "limit_is": "goal: 64 KiB of node memory per idle subscriber",
            "subscribers": IDLE_SUBSCRIBERS,
            "rss_before_mib": before / (1 << 20),
            "rss_after_mib": after / (1 << 20),
        },
    }))
}

pub(crate) fn bench_explorer_load() -> Result<Value> {
    use fantoccini::{ClientBuilder, Locator};
    let node = NodeProc::start(None)?;
    node.mine(30)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("chromedriver (apt install chromium-driver)")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": "/usr/bin/chromium",
                   "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => bail!("no WebDriver session: {e}"),
            }
        };
        let url = format!("http://{}/explorer", node.host);
        let mut loads = Vec::new();
        for _ in 0..5 {
            client.goto("about:blank").await?;
            let started = Instant::now();
            client.goto(&url).await?;
            loop {
                let rows = client
                    .find_all(Locator::Css("#blocks tbody tr"))
                    .await
                    .map_or(0, |r| r.len());
                if rows >= 20 {
                    break;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    bail!("the explorer showed no blocks within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            loads.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let _ = client.close().await;
        Ok(loads)
    });
    let _ = driver.kill();
    let _ = driver.wait();
    let mut loads = result?;
    loads.sort_by(f64::total_cmp);
    let best = loads[0];
    Ok(json!({
        "value": best.round(),
        "unit": "ms (best of 5: navigation until the 20 latest blocks show)",
        "limit": EXPLORER_GOAL_MS,
        "ratio": ((best / EXPLORER_GOAL_MS) * 1000.0).round() / 1000.0,
        "params": {
            "limit_is": "goal: the explorer's home page in under 1 s",
            "loads_ms": loads.iter().map(|l| l.round()).collect::<Vec<_>>(),
            "setup": "release node on the devnet with 30 blocks, headless Chromium via chromedriver on the same machine, 21 API calls per load",
        },
    }))
}
