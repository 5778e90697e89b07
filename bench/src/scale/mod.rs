//! `scale`: what the ledger costs as it grows, at 100 k, 1 M and 10 M accounts
//! (`BENCH_SCALE_ACCOUNTS`, comma-separated), each against a limit of the same run:
//!
//! - connect of blocks whose senders sent before and pay existing accounts, and of blocks
//!   whose every sender is new (a key never seen) and pays a new address, in-process
//!   from memory, against raw ed25519 batch verification of the same signatures;
//! - a real `apiary-node` on the ledger: start-up until its RPC answers (against the same
//!   node on an empty chain), resident memory at rest and at its peak while blocks arrive
//!   (against `--cache-mb`), and `account_get`'s p99 while a block connects every second
//!   (against `chain_tip`'s, which reads no state);
//! - disk bytes per account and per transaction (against their encodings).
//!
//! The ledgers are made once and kept in `BENCH_CACHE_DIR` (default ~/.cache/apiary/bench).

mod empty;
mod ledger;

pub(crate) use empty::bench_sync_empty;

pub(crate) use ledger::clone_store;

use super::*;
use apiary_node::cache::CacheBudget;
use ledger::{fill_address, Ledger, MEASURED_TXS};
use procs::NodeProc;
use std::time::Duration;

/// Where made ledgers are kept between runs.
pub(crate) fn cache_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("BENCH_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/apiary/bench"),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn sizes() -> Result<Vec<u64>> {
    let text =
        std::env::var("BENCH_SCALE_ACCOUNTS").unwrap_or_else(|_| "100000,1000000,10000000".into());
    text.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .with_context(|| format!("BENCH_SCALE_ACCOUNTS={text:?}"))
        })
        .collect()
}

/// A short name of a size: 100k, 1M, 10M.
fn size_name(accounts: u64) -> String {
    match accounts {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

pub(crate) fn bench_scale() -> Result<Map<String, Value>> {
    let cache = cache_dir()?;
    let measured = env_size("BENCH_SCALE_BLOCKS", 30)?;
    let mut results = Map::new();
    let empty_ready = ready_on_empty_chain()?;
    eprintln!("an empty chain's node answers {empty_ready:.0} ms after it starts");
    for accounts in sizes()? {
        let name = size_name(accounts);
        let ledger = ledger::ledger(&cache, accounts, measured)?;
        for kind in ["repeat", "fresh"] {
            let figure = connect(&ledger, kind)?;
            eprintln!("scale {name} connect {kind}: {figure}");
            results.insert(format!("scale_{name}_connect_{kind}"), figure);
        }
        for (key, figure) in process(&ledger, empty_ready)? {
            eprintln!("scale {name} {key}: {figure}");
            results.insert(format!("scale_{name}_{key}"), figure);
        }
    }
    Ok(results)
}

/// Connects the measured blocks of `kind` in-process on a clone of the ledger (default
/// `--cache-mb`), counting the state flush that ends them. The fresh blocks follow the
/// repeat ones, which are connected first, untimed.
fn connect(ledger: &Ledger, kind: &str) -> Result<Value> {
    let (before, blocks) = match kind {
        "repeat" => (&[][..], &ledger.repeat),
        _ => (&ledger.repeat[..], &ledger.fresh),
    };
    let scratch = tempfile::TempDir::new_in(ledger.dir.parent().unwrap_or(&ledger.dir))?;
    let db = scratch.path().join("db");
    clone_store(&ledger.db(), &db)?;
    let budget = CacheBudget::default();
    let store = Store::open_tuned(&db, ledger.spec.genesis_hash(), budget.store_tuning())?;
    let opened = Instant::now();
    let node = Node::new(
        Chain::open_with_budget(store, ledger.spec.clone(), &budget)?,
        MempoolConfig::default(),
    );
    let open_seconds = opened.elapsed().as_secs_f64();
    node.connect_in_order(before.to_vec())?;
    // The first block warms the caches a running node would have warm.
    node.connect_in_order(blocks[..1].to_vec())?;
    let started = Instant::now();
    node.connect_in_order(blocks[1..].to_vec())?;
    node.lock().chain.flush_state()?;
    let seconds = started.elapsed().as_secs_f64();
    let decoded: Vec<Block> = blocks[1..]
        .iter()
        .map(|b| borsh::from_slice(b))
        .collect::<Result<_, _>>()?;
    let txs: usize = decoded.iter().map(|b| b.txs.len()).sum();
    let limit = (0..3)
        .map(|_| crate::connect::batch_verify_limit(&decoded))
        .fold(0.0, f64::max);
    drop(node);
    Ok(figure(
        txs as f64 / seconds,
        "tx/s",
        limit,
        json!({
            "accounts": ledger.accounts,
            "blocks": decoded.len(),
            "txs": txs,
            "senders": if kind == "repeat" { "sent before, paying existing accounts" } else { "never seen, paying new addresses" },
            "seconds": round3(seconds),
            "open_seconds": round3(open_seconds),
            "cache_mb": CacheBudget::DEFAULT_MIB,
            "limit_is": "ed25519 verify_batch on all cores, same signatures, best of 3",
        }),
    ))
}

/// Milliseconds from starting a node on a new devnet until its RPC answers.
fn ready_on_empty_chain() -> Result<f64> {
    let started = Instant::now();
    let node = NodeProc::start(None)?;
    node.client.call("chain_tip", json!({}))?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// p99 and median of `samples` (ms).
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.99), at(0.5))
}

/// A real node on a clone of the ledger: start-up, memory, reads while blocks connect,
/// disk.
fn process(ledger: &Ledger, empty_ready_ms: f64) -> Result<Vec<(String, Value)>> {
    let dir = tempfile::TempDir::new_in(ledger.dir.parent().unwrap_or(&ledger.dir))?;
    clone_store(&ledger.db(), &dir.path().join("node/db"))?;
    let started = Instant::now();
    let mut node = NodeProc::start_in(dir, Some(&ledger.spec_file()), &[])?;
    node.client.call("chain_tip", json!({}))?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (rest_rss, _) = node.rss()?;

    // chain_tip's latency at rest: the floor of a call.
    let mut floor = procs::rpc_round_trips_ms(&node, 500);
    let (floor_p99, _) = percentiles(&mut floor);

    // Reads of random existing accounts while a block arrives every second.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let fills = ledger.txs.max(1);
    let blocks: Vec<&Vec<u8>> = ledger.repeat.iter().chain(&ledger.fresh).collect();
    let reader_client = node.new_client();
    let (mut latencies, peak_rss) = std::thread::scope(|scope| -> Result<(Vec<f64>, u64)> {
        let reader = scope.spawn(|| {
            let client = reader_client;
            let mut picks = crate::connect::Picks(11);
            let prefix = ledger.spec.address_prefix.clone();
            let mut latencies = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let address = fill_address(picks.next(fills as usize) as u64).to_text(&prefix);
                let at = Instant::now();
                let answer = client.call("account_get", json!({ "address": address }));
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                if let Err(error) = answer {
                    eprintln!("account_get failed: {error}");
                }
            }
            latencies
        });
        let mut peak = 0;
        for (i, block) in blocks.iter().enumerate() {
            let due = Instant::now() + Duration::from_secs(1);
            let answer =
                node.client
                    .ask::<apiary_api::MiningSubmit>(&apiary_api::SubmitParams {
                        block: Some(hex::encode(block)),
                        ..Default::default()
                    })?;
            if answer.status != apiary_api::SubmitStatus::Accepted {
                bail!("measured block {i} was not accepted: {answer:?}");
            }
            peak = peak.max(node.rss()?.0);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        Ok((reader.join().expect("the reader ends"), peak))
    })?;
    let (after_rss, peak_hwm) = node.rss()?;
    let (p99, median) = percentiles(&mut latencies);
    node.stop()?;

    let store = Store::open(&node.dir.path().join("node/db"), ledger.spec.genesis_hash())?;
    let families = store.family_bytes()?;
    drop(store);
    let state_bytes = families
        .iter()
        .find(|(name, _)| *name == "accounts")
        .map_or(0, |(_, b)| *b);
    let chain_bytes: u64 = families
        .iter()
        .filter(|(name, _)| *name != "accounts")
        .map(|(_, b)| b)
        .sum();
    let txs = ledger.txs + (blocks.len() * MEASURED_TXS) as u64;
    let accounts = ledger.accounts + (ledger.fresh.len() * MEASURED_TXS) as u64;
    let tx_bytes = {
        let block: Block = borsh::from_slice(blocks[0])?;
        block.txs[0].encode().len()
    };
    let cache_mb = CacheBudget::DEFAULT_MIB as f64;
    let mb = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    Ok(vec![
        (
            "ready".into(),
            figure(
                ready_ms,
                "ms",
                empty_ready_ms,
                json!({"accounts": ledger.accounts, "limit_is": "the same node starting on a new devnet, same run"}),
            ),
        ),
        (
            "rss".into(),
            figure(
                mb(peak_rss.max(peak_hwm)),
                "MiB peak",
                cache_mb,
                json!({
                    "accounts": ledger.accounts,
                    "rest_mib": round3(mb(rest_rss)),
                    "after_mib": round3(mb(after_rss)),
                    "blocks": blocks.len(),
                    "limit_is": "--cache-mb (default)",
                }),
            ),
        ),
        (
            "account_get_p99".into(),
            figure(
                p99,
                "ms",
                floor_p99,
                json!({
                    "accounts": ledger.accounts,
                    "calls": latencies.len(),
                    "median_ms": round3(median),
                    "while": "a block of 1,000 transfers connects every second",
                    "limit_is": "chain_tip's p99 at rest (no state read), same run",
                }),
            ),
        ),
        (
            "disk_per_account".into(),
            figure(
                state_bytes as f64 / accounts as f64,
                "bytes",
                48.0,
                json!({
                    "accounts": accounts,
                    "state_mib": round3(mb(state_bytes)),
                    "limit_is": "an account's own bytes: address, balance, nonce",
                }),
            ),
        ),
        (
            "disk_per_tx".into(),
            figure(
                chain_bytes as f64 / txs as f64,
                "bytes",
                tx_bytes as f64,
                json!({
                    "txs": txs,
                    "blocks_and_indexes_mib": round3(mb(chain_bytes)),
                    "families": families.iter().map(|(n, b)| (n.to_string(), json!(b))).collect::<Map<_, _>>(),
                    "limit_is": "a transfer's encoding",
                }),
            ),
        ),
    ])
}
