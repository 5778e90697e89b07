//! How a catch-up is going, for `node_info`: blocks per second and time left.

use std::time::Instant;

pub use apiary_api::SyncProgress;

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
