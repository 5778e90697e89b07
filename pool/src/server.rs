//! The miners' side: one task per TCP connection speaking the Stratum-style protocol of
//! `apiary_miner::stratum`. Each share is checked (job current, hash under the target this
//! miner was given, never seen before), written to the books before it is acknowledged,
//! and submitted to the node when it also meets the block's target. Difficulty follows
//! each miner's hashrate (a share every `share_seconds`), and a share counts for its
//! difficulty, so claiming more or less hashrate gains nothing.

use crate::Pool;
use apiary_core::block::HeaderHasher;
use apiary_core::pow::{Target, U256};
use apiary_miner::stratum::*;
use apiary_miner::work::Work;
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

/// Shares looked at to retarget a miner's difficulty.
const VARDIFF_SHARES: usize = 6;
/// A share for a job replaced longer ago than this counts as a bad one.
const STALE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Internal: a stale share past the grace (answered as `STALE_JOB`).
const LATE_STALE: i64 = -STALE_JOB;
/// Lines answered together at most (one write of the books for all).
const MAX_BATCH: usize = 256;
/// Out of the last this many submissions…
const BAD_WINDOW: usize = 40;
/// …this many refused ones (low difficulty, duplicate, malformed, stale long after the
/// job was replaced) end the connection.
const BAD_LIMIT: usize = 20;

struct Miner {
    address: Option<String>,
    difficulty: u64,
    /// The share targets and weights given to this miner for each job: the newest, and
    /// the one before a retarget (shares found at it may still be on their way).
    given: HashMap<String, Vec<(Target, u64)>>,
    share_times: VecDeque<Instant>,
    /// The last submissions, true for a refused one.
    recent: VecDeque<bool>,
    /// The books' write generation the shares answered next are in.
    unwritten: Option<u64>,
    /// The difficulty changed: send the current job again at it, after the answers. Which
    /// job is current is decided when it is sent, not when the share was checked: a new
    /// tip's job may have gone out while the books were written, and the one before it must
    /// not follow it (the miner would go back to a stale tip).
    resend_job: bool,
}

fn reply(id: &Value, result: Value) -> String {
    json!({"id": id, "result": result, "error": null}).to_string()
}

fn error(id: &Value, code: i64, message: &str) -> String {
    json!({"id": id, "result": null, "error": [code, message, null]}).to_string()
}

/// The block target's expected hashes, at most u64::MAX.
fn block_hashes(work: &Work) -> u64 {
    let target = work
        .header
        .bits
        .to_target()
        .map(|t| t.as_u256())
        .unwrap_or(U256::MAX);
    let hashes = U256::MAX / target.max(U256::one());
    if hashes > U256::from(u64::MAX) {
        u64::MAX
    } else {
        hashes.low_u64()
    }
}

pub async fn serve(pool: Arc<Pool>, stream: TcpStream) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
    let mut jobs = pool.jobs_sender.subscribe();
    let mut miner = Miner {
        address: None,
        difficulty: pool.start_difficulty,
        given: HashMap::new(),
        share_times: VecDeque::new(),
        recent: VecDeque::new(),
        unwritten: None,
        resend_job: false,
    };
    loop {
        let out: Vec<String> = tokio::select! {
            line = lines.next() => match line {
                None => break,
                Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                    let _ = lines.send(error(&Value::Null, OTHER, &format!("a line over {MAX_LINE_BYTES} bytes; closing"))).await;
                    break;
                }
                Some(Err(_)) => break,
                Some(Ok(line)) => {
                    // This line and any others already here, answered together after one
                    // write of the books.
                    let (mut out, mut close) = handle(&pool, &mut miner, &line).await;
                    let mut batch = 1;
                    while !close && batch < MAX_BATCH {
                        let Some(Some(Ok(line))) = lines.next().now_or_never() else { break };
                        let (more, closing) = handle(&pool, &mut miner, &line).await;
                        out.extend(more);
                        close = closing;
                        batch += 1;
                    }
                    // Acknowledged only once written: a pool killed now restarts with them.
                    // A new job meanwhile goes out at once: a miner must not hash a stale
                    // tip for as long as the books take to write.
                    if let Some(generation) = miner.unwritten.take() {
                        let written = pool.persisted(generation);
                        tokio::pin!(written);
                        let ok = loop {
                            tokio::select! {
                                ok = &mut written => break ok,
                                job = jobs.recv() => match job {
                                    Ok(work) if miner.address.is_some() && pool.is_current(&work) => {
                                        let text = notify(&mut miner, &work, true);
                                        if lines.send(text).await.is_err() {
                                            break false;
                                        }
                                    }
                                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                    Err(_) => break false,
                                },
                            }
                        };
                        if !ok {
                            break;
                        }
                    }
                    let mut sent = true;
                    for text in out {
                        sent &= lines.feed(text).await.is_ok();
                    }
                    if std::mem::take(&mut miner.resend_job) {
                        if let Some(work) = pool.current_job() {
                            sent &= lines.feed(notify(&mut miner, &work, false)).await.is_ok();
                        }
                    }
                    sent &= SinkExt::<String>::flush(&mut lines).await.is_ok();
                    if close || !sent {
                        break;
                    }
                    continue;
                }
            },
            job = jobs.recv() => match job {
                // A job already replaced is skipped: the newer one follows (and the current
                // one may have gone out already, with a retarget).
                Ok(work) if miner.address.is_some() && pool.is_current(&work) => {
                    vec![notify(&mut miner, &work, true)]
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            },
        };
        let mut sent = true;
        for text in out {
            sent &= lines.send(text).await.is_ok();
        }
        if !sent {
            break;
        }
    }
}

/// `mining.notify` of `work` for this miner at its difficulty.
fn notify(miner: &mut Miner, work: &Work, clean: bool) -> String {
    let block = block_hashes(work);
    let weight = miner.difficulty.min(block);
    let target = Target::for_expected_hashes(weight);
    let given = miner.given.entry(work.id.clone()).or_default();
    given.push((target, weight));
    if given.len() > 2 {
        given.remove(0);
    }
    // Jobs given long ago are no use: keep the map small.
    if miner.given.len() > 32 {
        miner.given.retain(|id, _| *id == work.id);
    }
    json!({"id": null, "method": NOTIFY, "params": [
        work.id,
        hex::encode(borsh::to_vec(&work.header).expect("a header encodes")),
        target.to_hex(),
        clean,
    ]})
    .to_string()
}

async fn handle(pool: &Arc<Pool>, miner: &mut Miner, line: &str) -> (Vec<String>, bool) {
    let Ok(message) = serde_json::from_str::<Value>(line) else {
        return (
            vec![error(
                &Value::Null,
                OTHER,
                "parse error: one JSON object per line",
            )],
            false,
        );
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let params = &message["params"];
    match message["method"].as_str() {
        Some(SUBSCRIBE) => (
            vec![reply(&id, json!([format!("{:016x}", rand_u64()), null]))],
            false,
        ),
        Some(AUTHORIZE) => {
            let Some(address) = params[0].as_str() else {
                return (
                    vec![error(
                        &id,
                        UNAUTHORIZED,
                        "authorize with [payout address, password]",
                    )],
                    false,
                );
            };
            if let Err(e) = apiary_core::Address::parse(address, &pool.prefix) {
                return (
                    vec![error(
                        &id,
                        UNAUTHORIZED,
                        &format!("not an address of this chain: {e}"),
                    )],
                    false,
                );
            }
            miner.address = Some(address.to_string());
            let mut out = vec![
                reply(&id, Value::Bool(true)),
                json!({"id": null, "method": SET_DIFFICULTY, "params": [miner.difficulty]})
                    .to_string(),
            ];
            if let Some(work) = pool.current_job() {
                out.push(notify(miner, &work, true));
            }
            (out, false)
        }
        Some(SUBMIT) => submit(pool, miner, &id, params).await,
        Some(other) => (
            vec![error(&id, OTHER, &format!("unknown method {other:?}"))],
            false,
        ),
        None => (vec![error(&id, OTHER, "a call needs a method")], false),
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

async fn submit(
    pool: &Arc<Pool>,
    miner: &mut Miner,
    id: &Value,
    params: &Value,
) -> (Vec<String>, bool) {
    let outcome = check_share(pool, miner, params);
    // A stale share counts against a miner only when its job was replaced long before.
    let refused = matches!(outcome, Err((code, _)) if code != STALE_JOB);
    miner.recent.push_back(refused);
    if miner.recent.len() > BAD_WINDOW {
        miner.recent.pop_front();
    }
    let (work, hash, weight) = match outcome {
        Ok(found) => found,
        Err((code, message)) => {
            let code = if code == LATE_STALE { STALE_JOB } else { code };
            if miner.recent.iter().filter(|bad| **bad).count() >= BAD_LIMIT {
                return (
                    vec![error(
                        id,
                        TOO_MANY_BAD_SHARES,
                        &format!("{message}; too many refused shares, closing"),
                    )],
                    true,
                );
            }
            return (vec![error(id, code, &message)], false);
        }
    };
    let address = miner.address.clone().unwrap_or_default();
    miner.unwritten = Some(pool.record_share(&address, weight));
    if work.target >= hash {
        // A block too: the node decides.
        pool.submit_block(&work, params).await;
    }
    let mut out = vec![reply(id, Value::Bool(true))];
    if vardiff(pool, miner) {
        out.push(
            json!({"id": null, "method": SET_DIFFICULTY, "params": [miner.difficulty]}).to_string(),
        );
        miner.resend_job = true;
    }
    (out, false)
}

type Refusal = (i64, String);

/// A share's job, its hash (as words) and weight, or why it is refused.
fn check_share(
    pool: &Pool,
    miner: &Miner,
    params: &Value,
) -> Result<(Arc<Work>, [u32; 8], u64), Refusal> {
    let Some(address) = &miner.address else {
        return Err((UNAUTHORIZED, "authorize first".into()));
    };
    if params[0].as_str() != Some(address) {
        return Err((UNAUTHORIZED, "submit for the address you authorized".into()));
    }
    let job_id = params[1].as_str().ok_or((
        OTHER,
        "params: [address, job id, nonce, timestamp_ms]".to_string(),
    ))?;
    let nonce: u64 = params[2]
        .as_str()
        .and_then(|n| n.parse().ok())
        .or_else(|| params[2].as_u64())
        .ok_or((OTHER, "nonce: a whole number (decimal string)".to_string()))?;
    let timestamp_ms = params[3]
        .as_u64()
        .ok_or((OTHER, "timestamp_ms: a whole number".to_string()))?;
    let work = pool
        .job(job_id)
        .ok_or((LATE_STALE, "unknown job: work on the newest".to_string()))?;
    if pool
        .current_job()
        .is_none_or(|current| current.id != work.id)
    {
        // Found just before the new job reached the miner: every miner has a few. Long
        // after it: a miner that ignores new jobs.
        let late = pool
            .replaced_since(job_id)
            .is_none_or(|since| since > STALE_GRACE);
        let message = "stale job: the tip moved; work on the new job";
        return Err((if late { LATE_STALE } else { STALE_JOB }, message.into()));
    }
    let given = miner
        .given
        .get(job_id)
        .ok_or((STALE_JOB, "a job not given to this connection".to_string()))?;
    let now_ms = apiary_miner::now_us() / 1000;
    if timestamp_ms < work.header.timestamp_ms.0 || timestamp_ms > now_ms + 60_000 {
        return Err((
            OTHER,
            "timestamp_ms: not between the job's and a minute from now".into(),
        ));
    }
    let mut header = work.header.clone();
    header.timestamp_ms = apiary_core::TimestampMs(timestamp_ms);
    let hash = HeaderHasher::new(&header).hash_words(nonce);
    // The hardest target given for this job that the hash meets sets its weight.
    let weight = given
        .iter()
        .filter(|(target, _)| hash <= apiary_core::block::target_words(target))
        .map(|(_, weight)| *weight)
        .max()
        .ok_or((LOW_DIFFICULTY, "low difficulty share".to_string()))?;
    // Remembered only once it proved its work: random nonces cost a hash each and are
    // never stored, so the set grows no faster than real shares come.
    if !pool.first_sight(job_id, nonce, timestamp_ms) {
        return Err((DUPLICATE_SHARE, "duplicate share".into()));
    }
    Ok((work, hash, weight))
}

/// A new difficulty when this miner's shares come much faster or slower than one per
/// `share_seconds`; true when it changed.
fn vardiff(pool: &Pool, miner: &mut Miner) -> bool {
    miner.share_times.push_back(Instant::now());
    if miner.share_times.len() <= VARDIFF_SHARES {
        return false;
    }
    miner.share_times.pop_front();
    let (Some(first), Some(last)) = (miner.share_times.front(), miner.share_times.back()) else {
        return false;
    };
    let span = last.duration_since(*first);
    let per_share = span.as_secs_f64() / (VARDIFF_SHARES - 1) as f64;
    let factor = (pool.share_seconds / per_share.max(1e-3)).clamp(0.25, 4.0);
    if (0.7..=1.4).contains(&factor) {
        return false;
    }
    miner.difficulty = ((miner.difficulty as f64 * factor) as u64).max(1);
    miner.share_times.clear();
    true
}
