//! The standalone miner's parts, shared with `apiary-pool`: where work comes from
//! (`work`) and the nonce search (`hashing`).

pub mod hashing;
pub mod stratum;
pub mod work;

use std::sync::atomic::AtomicU64;

/// What a miner has done so far.
#[derive(Default)]
pub struct Counters {
    pub hashes: AtomicU64,
    pub accepted: AtomicU64,
    pub stale: AtomicU64,
    pub refused: AtomicU64,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs `work` on a thread of its own that must never end: if it returns or panics, the
/// process says which and exits with status 2, so a supervisor restarts it rather than a
/// miner or pool that looks alive but has stopped hashing, feeding or paying.
pub fn spawn_core<R>(
    name: &str,
    work: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let label = name.to_string();
    std::thread::Builder::new()
        .name(label.clone())
        .spawn(move || {
            let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let how = if ended.is_ok() { "ended" } else { "panicked" };
            eprintln!("error: the {label} thread {how}; stopping");
            std::process::exit(2);
        })
}
