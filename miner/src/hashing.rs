//! The nonce search, as the node's own miner does it: the header's first 128 bytes hashed
//! once per template (the midstate), two SHA-256 compressions per nonce. Each thread takes
//! every `threads`-th nonce from a random start, so two miners paid to one address do not
//! search the same nonces; every second the timestamp moves to now, so a block found late
//! does not look older than it is to the difficulty retarget.
//!
//! Hashing threads run at the lowest priority (`SCHED_IDLE` on Linux, as cpuminer's do):
//! the thread that brings a new job, the pool and the node on the same machine all run the
//! moment they wake, so a new tip reaches the search in microseconds instead of after a
//! scheduler slice of a busy core. On an otherwise idle machine the hashrate is the same.

use crate::work::Board;
use crate::Counters;
use apiary_core::block::{target_words, HeaderHasher};
use apiary_core::TimestampMs;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// Nonces tried between looks at whether the work changed.
const BATCH: u64 = 1 << 14;
/// How long a thread that found a block waits for the new tip's template.
const NEW_TIP_WAIT: Duration = Duration::from_secs(2);
/// How often the header's timestamp is moved to now.
const ROLL_TIMESTAMP: Duration = Duration::from_secs(1);

/// A nonce that meets the target of template `id`.
pub struct Found {
    pub id: String,
    pub height: u64,
    pub nonce: u64,
    pub timestamp_ms: u64,
    /// When it was found (µs since the Unix epoch), for `--json`'s timeline.
    pub found_us: u64,
    /// It meets the block's target too, not only a pool's share target.
    pub block: bool,
}

/// Lowers the calling thread to the idle scheduling class (Linux), else to nice 19
/// (other Unix). Best effort: a miner that cannot lower itself still mines.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: 0 names the calling thread; `param` is a valid sched_param.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
    }
    #[cfg(unix)]
    // SAFETY: who = 0 is the calling thread (Linux) or process; no pointers.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn now_ms() -> u64 {
    crate::now_us() / 1000
}

pub fn search(board: &Board, counters: &Counters, index: u64, threads: u64, found: &Sender<Found>) {
    lowest_priority();
    loop {
        let Some((generation, work)) = board.current() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let mut header = work.header.clone();
        header.timestamp_ms = header.timestamp_ms.max(TimestampMs(now_ms()));
        let mut hasher = HeaderHasher::new(&header);
        let block_target = header.bits.to_target().map_or([0; 8], |t| target_words(&t));
        let mut rolled = Instant::now();
        let mut nonce = random_u64().wrapping_mul(threads).wrapping_add(index);
        'work: loop {
            for _ in 0..BATCH {
                let hash = hasher.hash_words(nonce);
                if hash <= work.target {
                    let sent = found.send(Found {
                        id: work.id.clone(),
                        height: work.height,
                        nonce,
                        timestamp_ms: header.timestamp_ms.0,
                        found_us: crate::now_us(),
                        block: hash <= block_target,
                    });
                    if sent.is_err() {
                        return;
                    }
                    // A pool's share target is met many times per job: search on.
                    if work.many {
                        nonce = nonce.wrapping_add(threads);
                        continue;
                    }
                    // One block per template: the next comes with the new tip (a refused
                    // block brings none; then this one is searched on).
                    counters.hashes.fetch_add(BATCH, Ordering::Relaxed);
                    let waited = Instant::now();
                    while board.generation() == generation && waited.elapsed() < NEW_TIP_WAIT {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    break 'work;
                }
                nonce = nonce.wrapping_add(threads);
            }
            counters.hashes.fetch_add(BATCH, Ordering::Relaxed);
            if board.generation() != generation {
                break;
            }
            if rolled.elapsed() >= ROLL_TIMESTAMP {
                header.timestamp_ms = TimestampMs(now_ms()).max(header.timestamp_ms);
                hasher = HeaderHasher::new(&header);
                rolled = Instant::now();
            }
        }
    }
}
