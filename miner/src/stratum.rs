//! The pool protocol, Stratum-style: newline-delimited JSON-RPC over TCP, the methods
//! pool miners know (`mining.subscribe`, `mining.authorize`, `mining.notify`,
//! `mining.set_difficulty`, `mining.submit`), with Apiary's work in them: a job is the
//! whole 160-byte header (nonce 0) and the share target, both hex.
//!
//! This file holds the names and codes both sides use, and the miner's side.

use crate::hashing::Found;
use crate::work::{Board, Work};
use crate::Counters;
use anyhow::{anyhow, Context, Result};
use apiary_core::block::target_words;
use apiary_core::pow::Target;
use apiary_core::BlockHeader;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SUBSCRIBE: &str = "mining.subscribe";
pub const AUTHORIZE: &str = "mining.authorize";
pub const NOTIFY: &str = "mining.notify";
pub const SET_DIFFICULTY: &str = "mining.set_difficulty";
pub const SUBMIT: &str = "mining.submit";

/// Error codes in `[code, message]` errors, as Stratum pools number them.
pub const OTHER: i64 = 20;
pub const STALE_JOB: i64 = 21;
pub const DUPLICATE_SHARE: i64 = 22;
pub const LOW_DIFFICULTY: i64 = 23;
pub const UNAUTHORIZED: i64 = 24;
pub const TOO_MANY_BAD_SHARES: i64 = 25;

/// The longest line either side takes; a longer one is an error and the connection ends.
pub const MAX_LINE_BYTES: usize = 16 << 10;

/// A job as `mining.notify` carries it: [job id, header hex, share target hex, clean].
pub fn job_from_notify(params: &Value) -> Result<Work> {
    let id = params[0].as_str().context("job id")?.to_string();
    let bytes = hex::decode(params[1].as_str().context("header")?)?;
    let header: BlockHeader = borsh::from_slice(&bytes).context("an undecodable header")?;
    let target = Target::from_hex(params[2].as_str().context("target")?)
        .map_err(|e| anyhow!("share target: {e}"))?;
    Ok(Work {
        id,
        height: header.height.0,
        header,
        target: target_words(&target),
        reward: 0,
        many: true,
    })
}

/// Mines through the pool at `address` (HOST:PORT) for `payout` until the process ends:
/// jobs onto `board`, found shares from `found` back to the pool; reconnects after a drop.
pub fn work_for_pool(
    address: &str,
    payout: &str,
    board: Arc<Board>,
    found: std::sync::mpsc::Receiver<Found>,
    counters: Arc<Counters>,
    json_lines: bool,
) -> ! {
    let writer: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
    {
        let (writer, payout) = (writer.clone(), payout.to_string());
        std::thread::spawn(move || {
            let mut id = 100u64;
            for share in found {
                id += 1;
                let line = json!({"id": id, "method": SUBMIT,
                    "params": [payout, share.id, share.nonce.to_string(), share.timestamp_ms]});
                if json_lines {
                    println!(
                        "{}",
                        json!({"event": "found", "submit_id": id, "job": share.id,
                               "height": share.height, "block": share.block,
                               "found_us": share.found_us, "sent_us": crate::now_us()})
                    );
                }
                let mut guard = writer.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(stream) = guard.as_mut() {
                    if send_line(stream, &line).is_err() {
                        *guard = None;
                    }
                }
            }
        });
    }
    loop {
        if let Err(error) = session(address, payout, &board, &counters, &writer, json_lines) {
            eprintln!("pool {address}: {error}; reconnecting in 1 s");
        }
        *writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One line, newline included, in one write: split in two (as `writeln!` does), the
/// newline waits for the peer to acknowledge the rest, up to its delayed-ACK timer (40 ms
/// on Linux), and the pool cannot read the line until then.
fn send_line(stream: &mut TcpStream, message: &Value) -> std::io::Result<()> {
    let mut line = message.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())
}

fn session(
    address: &str,
    payout: &str,
    board: &Board,
    counters: &Counters,
    writer: &Mutex<Option<TcpStream>>,
    json_lines: bool,
) -> Result<()> {
    let stream = TcpStream::connect(address).with_context(|| format!("cannot reach {address}"))?;
    // A found block must not wait for an acknowledgement of the share before it.
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    send_line(
        &mut out,
        &json!({"id": 1, "method": SUBSCRIBE, "params": [concat!("apiary-miner/", env!("CARGO_PKG_VERSION"))]}),
    )?;
    send_line(
        &mut out,
        &json!({"id": 2, "method": AUTHORIZE, "params": [payout, "x"]}),
    )?;
    *writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let line = line?;
        let message: Value = serde_json::from_str(&line).context("a line that is not JSON")?;
        match message["method"].as_str() {
            Some(NOTIFY) => {
                let work = job_from_notify(&message["params"])?;
                if json_lines {
                    println!(
                        "{}",
                        json!({"event": "work", "id": work.id, "height": work.height, "from": "pool", "at_us": crate::now_us()})
                    );
                }
                board.publish(work);
            }
            Some(SET_DIFFICULTY) => {}
            _ => match message["id"].as_u64() {
                Some(2) if !message["error"].is_null() => {
                    // Asking again would be refused again: the address is wrong for this
                    // pool's chain, and only the person who started the miner can mend it.
                    let why = message["error"][1]
                        .as_str()
                        .map_or_else(|| message["error"].to_string(), str::to_string);
                    apiary_cmdline::say!("error: the pool refused --address {payout}: {why}");
                    std::process::exit(1);
                }
                Some(id) if id > 100 => {
                    let code = message["error"][0].as_i64();
                    match code {
                        None => counters.accepted.fetch_add(1, Ordering::Relaxed),
                        Some(STALE_JOB) => counters.stale.fetch_add(1, Ordering::Relaxed),
                        Some(_) => counters.refused.fetch_add(1, Ordering::Relaxed),
                    };
                    if json_lines {
                        println!(
                            "{}",
                            json!({"event": "share", "reply": message, "at_us": crate::now_us()})
                        );
                    }
                }
                _ => {}
            },
        }
    }
    Err(anyhow!("the pool closed the connection"))
}
