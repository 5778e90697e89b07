//! `apiary-miner`: mines for an address through one or more nodes' JSON-RPC, as a machine
//! that runs no node would. Templates come from the node (`templates` subscription, or
//! long polls of `mining_template`); N threads search nonces with the same midstate
//! hashing as the node's own miner; found nonces go back with `mining_submit`.

use apiary_miner::{hashing, now_us, work, Counters};

use anyhow::{Context, Result};
use apiary_client::{Client, Endpoint};
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "apiary-miner",
    version,
    about = "Mine Apiary blocks through nodes' JSON-RPC",
    after_help = "Example:\n  \
        apiary-miner --rpc 127.0.0.1:9797 --rpc-cookie ~/.apiary/apiary-devnet/rpc.cookie \\\n    \
        --address apdev1… --threads 4\n\n\
        Nodes are tried in the order given; when one stops answering the next takes over.\n\
        Exit status: 0 after --duration; 1 a node or the pool refused the setup (an address of another chain, say); \
        2 bad usage."
)]
struct Args {
    /// A node's JSON-RPC URL; repeat for several, tried in order
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "pool",
        conflicts_with = "pool"
    )]
    rpc: Vec<String>,
    /// Mine through an apiary-pool at HOST:PORT instead (Stratum-style over TCP;
    /// stratum+tcp://HOST:PORT is taken too); --address is where the pool pays
    #[arg(long, value_name = "HOST:PORT", value_parser = pool_address)]
    pool: Option<String>,
    /// A node's rpc.cookie; one per --rpc in the same order, or one for all
    #[arg(long, value_name = "FILE")]
    rpc_cookie: Vec<PathBuf>,
    /// Who the blocks pay (checked at start: by the node, or the pool, of its chain)
    #[arg(long, value_name = "ADDR", value_parser = payout_address)]
    address: String,
    /// Threads searching nonces [default: all cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Stop after this many seconds and print a summary (for benchmarks and scripts)
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// One JSON object per line (each template, each submission, each report)
    #[arg(long)]
    json: bool,
    /// Seconds between hashrate reports
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    report_every: u64,
}

/// The pool's HOST:PORT: a bare one, or after `stratum+tcp://`. An http(s) URL is
/// refused: the pool does not speak HTTP, and its port would never answer one.
fn pool_address(text: &str) -> Result<String, String> {
    let bare = text.strip_prefix("stratum+tcp://").unwrap_or(text);
    if bare.contains("://") {
        return Err(format!(
            "the pool speaks Stratum over TCP, not {}: give its HOST:PORT, e.g. 127.0.0.1:3333",
            text.split("://").next().unwrap_or("that scheme")
        ));
    }
    let bare = bare.trim_end_matches('/');
    match bare.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(bare.to_string())
        }
        _ => Err("give the pool's HOST:PORT, e.g. 127.0.0.1:3333".into()),
    }
}

/// An address of some chain (the checksum holds); whether it is of the chain mined is
/// asked of the node or the pool at start.
fn payout_address(text: &str) -> Result<String, String> {
    apiary_core::Address::parse_any_chain(text)
        .map(|_| text.to_string())
        .map_err(|e| {
            format!(
                "{e}; an address is bech32m, e.g. apdev1… (`apiary-wallet address` shows yours)"
            )
        })
}

fn main() {
    apiary_cmdline::finish(run(apiary_cmdline::start()));
}

fn endpoints(args: &Args) -> Result<Vec<Endpoint>> {
    Ok(Endpoint::pair(&args.rpc, &args.rpc_cookie)?)
}

fn run(args: Args) -> Result<()> {
    if args.pool.is_none() {
        // The address is checked once, by a node, before any hashing.
        Client::new(endpoints(&args)?)
            .ask::<apiary_api::MiningTemplate>(&apiary_api::TemplateParams {
                address: args.address.clone(),
                ..Default::default()
            })
            .with_context(|| format!("cannot mine for {:?}", args.address))?;
    }
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let board = Arc::new(work::Board::default());
    let counters = Arc::new(Counters::default());
    let json_lines = args.json;
    let (found_sender, found) = std::sync::mpsc::channel::<hashing::Found>();
    for index in 0..threads {
        let (board, counters, found_sender) =
            (board.clone(), counters.clone(), found_sender.clone());
        apiary_miner::spawn_core(&format!("hash-{index}"), move || {
            hashing::search(
                &board,
                &counters,
                index as u64,
                threads as u64,
                &found_sender,
            )
        })?;
    }
    drop(found_sender);
    if let Some(pool) = args.pool.clone() {
        let (pool_board, pool_counters, payout) =
            (board.clone(), counters.clone(), args.address.clone());
        apiary_miner::spawn_core("pool", move || {
            apiary_miner::stratum::work_for_pool(
                &pool,
                &payout,
                pool_board,
                found,
                pool_counters,
                json_lines,
            )
        })?;
        return report_until_done(&args, &counters, &board, threads);
    }
    {
        let (board, address) = (board.clone(), args.address.clone());
        let client = Client::new(endpoints(&args)?);
        apiary_miner::spawn_core("templates", move || {
            work::feed(&client, &address, &board, &|work, from| {
                if json_lines {
                    println!(
                        "{}",
                        json!({"event": "work", "id": work.id, "height": work.height, "from": from, "at_us": now_us()})
                    );
                }
            })
        })?;
    }
    {
        let counters = counters.clone();
        let client = Client::new(endpoints(&args)?);
        apiary_miner::spawn_core("submit", move || {
            for found in found {
                submit(&client, &counters, &found, json_lines);
            }
        })?;
    }
    report_until_done(&args, &counters, &board, threads)
}

/// Reports the hashrate every --report-every seconds; after --duration, a summary.
fn report_until_done(
    args: &Args,
    counters: &Counters,
    board: &work::Board,
    threads: usize,
) -> Result<()> {
    let json_lines = args.json;
    let started = Instant::now();
    let mut last_report = (Instant::now(), 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let elapsed = started.elapsed();
        if args
            .duration
            .is_some_and(|d| elapsed >= Duration::from_secs(d))
        {
            let hashes = counters.hashes.load(Ordering::Relaxed);
            let per_second = hashes as f64 / elapsed.as_secs_f64();
            println!(
                "{}",
                json!({
                    "event": "summary",
                    "seconds": elapsed.as_secs_f64(),
                    "threads": threads,
                    "hashes": hashes,
                    "hashes_per_second": per_second.round(),
                    "hashes_per_second_per_thread": (per_second / threads as f64).round(),
                    "accepted": counters.accepted.load(Ordering::Relaxed),
                    "stale": counters.stale.load(Ordering::Relaxed),
                    "refused": counters.refused.load(Ordering::Relaxed),
                })
            );
            return Ok(());
        }
        if last_report.0.elapsed() >= Duration::from_secs(args.report_every.max(1)) {
            let hashes = counters.hashes.load(Ordering::Relaxed);
            let rate = (hashes - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            last_report = (Instant::now(), hashes);
            report(counters, board, rate, threads, json_lines);
        }
    }
}

fn report(counters: &Counters, board: &work::Board, rate: f64, threads: usize, json_lines: bool) {
    let (accepted, stale, refused) = (
        counters.accepted.load(Ordering::Relaxed),
        counters.stale.load(Ordering::Relaxed),
        counters.refused.load(Ordering::Relaxed),
    );
    let height = board.current().map(|(_, w)| w.height);
    if json_lines {
        println!(
            "{}",
            json!({"event": "report", "hashes_per_second": rate.round(), "threads": threads,
                   "accepted": accepted, "stale": stale, "refused": refused, "height": height})
        );
    } else {
        eprintln!(
            "{:.2} MH/s on {threads} thread(s) · accepted {accepted} · stale {stale} · refused {refused} · mining height {}",
            rate / 1e6,
            height.map_or("-".to_string(), |h| h.to_string())
        );
    }
}

fn submit(client: &Client, counters: &Counters, found: &hashing::Found, json_lines: bool) {
    use apiary_api::{SubmitResult, SubmitStatus};
    let reply = client.ask::<apiary_api::MiningSubmit>(&apiary_api::SubmitParams {
        id: Some(found.id.clone()),
        nonce: Some(apiary_api::NonceParam::Text(found.nonce.to_string())),
        timestamp_ms: Some(found.timestamp_ms),
        block: None,
    });
    let detail = reply.unwrap_or_else(|error| SubmitResult {
        status: SubmitStatus::Refused,
        hash: None,
        reason: Some(error.to_string()),
        reason_code: None,
    });
    match detail.status {
        SubmitStatus::Accepted => counters.accepted.fetch_add(1, Ordering::Relaxed),
        SubmitStatus::Stale => counters.stale.fetch_add(1, Ordering::Relaxed),
        SubmitStatus::Refused => counters.refused.fetch_add(1, Ordering::Relaxed),
    };
    let status = json!(detail.status);
    let status = status.as_str().unwrap_or("refused");
    if json_lines {
        println!(
            "{}",
            json!({"event": "submit", "height": found.height, "status": status, "reply": detail})
        );
    } else if detail.status != SubmitStatus::Accepted {
        eprintln!(
            "block at height {} {status}: {}",
            found.height,
            detail.reason.as_deref().unwrap_or("")
        );
    } else {
        eprintln!(
            "block at height {} accepted: {}",
            found.height,
            detail.hash.map(|h| h.to_string()).unwrap_or_default()
        );
    }
}
