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
