//! Whether this machine's clock agrees with its peers': each peer's latest evidence of
//! the time — a block new to us that it gossiped (stamped against when it arrived), or
//! headers of its chain held back as not yet valid by our clock — is one vote. When most
//! peers, and at least two, say our clock is far off, it probably is (as Bitcoin Core
//! warns when its peers' times disagree with its own). One vote per peer: a prolific peer
//! with a wrong clock is one voice, never the median. Old blocks say nothing of the clock
//! and are not counted.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Distinct peers whose evidence must agree before we blame our own clock.
const MIN_PEERS: usize = 2;
/// Offsets smaller than this are propagation or ordinary drift, whatever the chain allows.
const MIN_THRESHOLD_MS: u64 = 30_000;
/// Evidence older than this is forgotten.
const VOTE_LIFETIME: Duration = Duration::from_secs(30 * 60);

struct Vote {
    /// A block's or header's timestamp − our clock when it came, in ms.
    offset_ms: i64,
    at: Instant,
}

pub struct ClockWatch<P> {
    votes: HashMap<P, Vote>,
    threshold_ms: u64,
}

impl<P: Copy + Eq + Hash> ClockWatch<P> {
    /// `max_future_drift_ms`: how far ahead of a node's clock the chain lets a block be.
    pub fn new(max_future_drift_ms: u64) -> ClockWatch<P> {
        ClockWatch {
            votes: HashMap::new(),
            threshold_ms: max_future_drift_ms.max(MIN_THRESHOLD_MS),
        }
    }

    /// `peer` showed a block or header stamped `stamped_ms`, new to us, at `now_ms` by our
    /// clock (`at` by the monotonic one): its vote now.
    pub fn observe(&mut self, peer: P, stamped_ms: u64, now_ms: u64, at: Instant) {
        let offset =
            (stamped_ms as i128 - now_ms as i128).clamp(i64::MIN as i128, i64::MAX as i128);
        self.votes.insert(
            peer,
            Vote {
                offset_ms: offset as i64,
                at,
            },
        );
    }

    /// `peer` left: its vote goes with it.
    pub fn forget(&mut self, peer: &P) {
        self.votes.remove(peer);
    }

    /// What to tell the operator, when most peers (at least two) disagree with our clock
    /// the same way.
    pub fn warning(&mut self, now: Instant) -> Option<String> {
        self.votes
            .retain(|_, vote| now.saturating_duration_since(vote.at) < VOTE_LIFETIME);
        let voters = self.votes.len();
        if voters < MIN_PEERS {
            return None;
        }
        let threshold = self.threshold_ms as i64;
        let mut ahead: Vec<i64> = Vec::new();
        let mut behind: Vec<i64> = Vec::new();
        for vote in self.votes.values() {
            if vote.offset_ms > threshold {
                ahead.push(vote.offset_ms);
            } else if vote.offset_ms < -threshold {
                behind.push(vote.offset_ms);
            }
        }
        let median = |mut offsets: Vec<i64>| {
            offsets.sort_unstable();
            offsets[offsets.len() / 2].unsigned_abs() / 1_000
        };
        if ahead.len() * 2 > voters {
            let (agree, seconds) = (ahead.len(), median(ahead));
            Some(format!(
                "{agree} of {voters} peers show blocks stamped a median {seconds} s ahead of this \
                 machine's clock (their chain is held back until then): this clock is probably \
                 behind; check its time (NTP)"
            ))
        } else if behind.len() * 2 > voters {
            let (agree, seconds) = (behind.len(), median(behind));
            Some(format!(
                "new blocks from {agree} of {voters} peers arrive a median {seconds} s after \
                 their timestamps: this machine's clock is probably ahead; check its time (NTP)"
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
    fn most_peers_an_hour_ahead_mean_our_clock_is_behind() {
        let mut watch = ClockWatch::new(15_000);
        let at = Instant::now();
        for peer in 0..3 {
            watch.observe(peer, NOW + 3_600_000 + peer as u64, NOW, at);
        }
        let warning = watch.warning(at).expect("a warning");
        assert!(
            warning.contains("behind") && warning.contains("3600 s") && warning.contains("3 of 3"),
            "{warning}"
        );
    }

    #[test]
    fn blocks_arriving_an_hour_late_mean_our_clock_is_ahead() {
        let mut watch = ClockWatch::new(15_000);
        let at = Instant::now();
        for peer in 0..2 {
            watch.observe(peer, NOW - 3_600_000, NOW, at);
        }
        assert!(watch.warning(at).unwrap().contains("ahead"));
    }

    #[test]
    fn one_peer_is_one_voice_however_much_it_says() {
        let mut watch = ClockWatch::new(15_000);
        let at = Instant::now();
        for _ in 0..100 {
            watch.observe(1, NOW + 3_600_000, NOW, at);
        }
        assert_eq!(
            watch.warning(at),
            None,
            "one peer proves nothing about our clock"
        );
        watch.observe(2, NOW - 800, NOW, at);
        assert_eq!(
            watch.warning(at),
            None,
            "one fast peer against one honest one is no majority"
        );
        watch.observe(3, NOW + 3_500_000, NOW, at);
        assert!(watch.warning(at).is_some(), "two of three agree");
        watch.forget(&3);
        assert_eq!(watch.warning(at), None);
    }

    #[test]
    fn old_evidence_is_forgotten() {
        let mut watch = ClockWatch::new(15_000);
        let at = Instant::now();
        for peer in 0..3 {
            watch.observe(peer, NOW + 3_600_000, NOW, at);
        }
        assert!(watch.warning(at).is_some());
        assert_eq!(watch.warning(at + VOTE_LIFETIME), None);
    }
}
