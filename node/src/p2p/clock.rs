//! Whether this machine's clock agrees with its peers': each gossiped block's timestamp
//! against when it arrived. New blocks arrive within seconds of being found, so when the
//! blocks of several peers all seem far ahead of (or behind) our clock, it is our clock
//! that is off — as Bitcoin Core warns when its peers' times disagree with its own.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// Recent blocks looked at.
const SAMPLES: usize = 24;
/// Distinct peers whose blocks must agree before we blame our own clock.
const MIN_PEERS: usize = 2;
/// Offsets smaller than this are propagation or ordinary drift, whatever the chain allows.
const MIN_THRESHOLD_MS: u64 = 30_000;

pub struct ClockWatch<P> {
    /// (sender, block timestamp − our clock at arrival), newest last.
    samples: VecDeque<(P, i64)>,
    threshold_ms: u64,
}

impl<P: Copy + Eq + Hash> ClockWatch<P> {
    /// `max_future_drift_ms`: how far ahead of a node's clock the chain lets a block be.
    pub fn new(max_future_drift_ms: u64) -> ClockWatch<P> {
        ClockWatch {
            samples: VecDeque::with_capacity(SAMPLES),
            threshold_ms: max_future_drift_ms.max(MIN_THRESHOLD_MS),
        }
    }

    /// A block from `peer` stamped `block_time_ms` arrived at `now_ms` by our clock.
    pub fn observe(&mut self, peer: P, block_time_ms: u64, now_ms: u64) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        let offset = block_time_ms as i128 - now_ms as i128;
        self.samples.push_back((
            peer,
            offset.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        ));
    }

    /// What to tell the operator, when the blocks of enough peers disagree with our clock.
    pub fn warning(&self) -> Option<String> {
        let peers: HashSet<P> = self.samples.iter().map(|(p, _)| *p).collect();
        if peers.len() < MIN_PEERS {
            return None;
        }
        let mut offsets: Vec<i64> = self.samples.iter().map(|(_, o)| *o).collect();
        offsets.sort_unstable();
        let median = offsets[offsets.len() / 2];
        let seconds = median.unsigned_abs() / 1_000;
        if median > self.threshold_ms as i64 {
            Some(format!(
                "blocks from {} peers are stamped a median {seconds} s ahead of this machine's \
                 clock: it is probably behind; check its time (NTP)",
                peers.len()
            ))
        } else if median < -(self.threshold_ms as i64) {
            Some(format!(
                "blocks from {} peers arrive a median {seconds} s after their timestamps: this \
                 machine's clock is probably ahead; check its time (NTP)",
                peers.len()
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn blocks_of_several_peers_an_hour_ahead_mean_our_clock_is_behind() {
        let mut watch = ClockWatch::new(15_000);
        for i in 0..6 {
            watch.observe(i % 3, NOW + 3_600_000 + i as u64, NOW);
        }
        let warning = watch.warning().expect("a warning");
        assert!(
            warning.contains("behind") && warning.contains("3600 s"),
            "{warning}"
        );
    }

    #[test]
    fn blocks_arriving_an_hour_late_mean_our_clock_is_ahead() {
        let mut watch = ClockWatch::new(15_000);
        for i in 0..6 {
            watch.observe(i % 2, NOW - 3_600_000, NOW);
        }
        assert!(watch.warning().unwrap().contains("ahead"));
    }

    #[test]
    fn one_skewed_peer_or_ordinary_delays_say_nothing() {
        let mut watch = ClockWatch::new(15_000);
        for _ in 0..10 {
            watch.observe(1, NOW + 3_600_000, NOW);
        }
        assert_eq!(
            watch.warning(),
            None,
            "one peer's clock proves nothing about ours"
        );
        for i in 0..20 {
            watch.observe(2 + i % 4, NOW - 800, NOW);
        }
        assert_eq!(watch.warning(), None);
    }
}
