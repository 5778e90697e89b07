//! How a catch-up is going, for `node_info`: blocks per second and time left.

use std::time::Instant;

/// How far behind the best proved chain the node is, and how fast it is catching up.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncProgress {
    /// Height of the best chain a peer has proved with checked headers.
    pub best_known_height: u64,
    /// Blocks connected per second while syncing (0 when not syncing).
    pub blocks_per_s: f64,
    /// Seconds left at that rate, when syncing.
    pub eta_s: Option<u64>,
    /// Peers that have sent block bodies in the current (or last) download.
    pub download_peers: usize,
    /// A peer's chain goes on with headers stamped ahead of this machine's clock: they are
    /// held back until this time by it (ms since the epoch). Far off, it is usually this
    /// clock that is wrong (`clock_warning` says so when most peers agree).
    pub held_back_until_ms: Option<u64>,
}

/// The figures shown, and what they are worked out from.
#[derive(Default)]
pub(super) struct Progress {
    pub shown: SyncProgress,
    /// When this stretch of catching up began, and blocks connected since.
    started: Option<(Instant, u64)>,
}

impl Progress {
    /// `received` blocks were connected; the node is at `height`, the best proved chain
    /// at `target`.
    pub fn imported(&mut self, received: u64, height: u64, target: u64, now: Instant) {
        if received == 0 || height >= target {
            self.started = None;
            self.shown.blocks_per_s = 0.0;
            self.shown.eta_s = None;
            return;
        }
        let (started, total) = self.started.get_or_insert((now, 0));
        *total += received;
        let seconds = now
            .saturating_duration_since(*started)
            .as_secs_f64()
            .max(1e-3);
        let rate = *total as f64 / seconds;
        self.shown.blocks_per_s = (rate * 10.0).round() / 10.0;
        self.shown.eta_s = Some(((target - height) as f64 / rate.max(1e-3)) as u64);
    }
}
