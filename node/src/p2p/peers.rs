//! What this node holds against each peer: one `Misbehaviour` per kind of wrong, each with
//! its score (derived from the typed errors of the rules), scores that decay, bans that
//! expire, and budgets for the work a peer can make us do. No I/O: the network loop reports
//! what happened and does what the book says.

use super::allowance::{self, Allowance, PeerBudget, Rate};
pub use crate::misbehaviour::{Flood, Misbehaviour, BAN_SCORE};
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a ban lasts.
pub const BAN_TIME: Duration = Duration::from_secs(600);
/// The longest ban an operator may ask for (`net_disconnect`): a year.
pub const MAX_BAN: Duration = Duration::from_secs(365 * 24 * 3600);
/// Scores are forgiven at this many points per tick, so rare honest mistakes (a race, a
/// stale transaction) never add up to a ban.
pub const DECAY_PER_TICK: u32 = 5;

/// What the book decided about a peer after a penalty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do (no points, or still below the ban).
    Kept { score: u32 },
    /// Banned now: disconnect it and refuse it until `until`.
    Banned { until: Instant },
}

/// Scores, bans and budgets of every peer this node knows.
pub struct PeerBook<P> {
    scores: HashMap<P, u32>,
    banned: HashMap<P, Instant>,
    budgets: HashMap<P, PeerBudget>,
}

impl<P> Default for PeerBook<P> {
    fn default() -> Self {
        PeerBook {
            scores: HashMap::new(),
            banned: HashMap::new(),
            budgets: HashMap::new(),
        }
    }
}

impl<P: Copy + Eq + Hash> PeerBook<P> {
    /// Charges `peer` for `what`; bans it once its score reaches `BAN_SCORE`.
    pub fn penalise(&mut self, peer: P, what: &Misbehaviour, now: Instant) -> Verdict {
        let points = what.score();
        let score = self.scores.entry(peer).or_default();
        *score = score.saturating_add(points);
        let score = *score;
        if points > 0 && score >= BAN_SCORE {
            let until = now + BAN_TIME;
            self.banned.insert(peer, until);
            crate::metrics::metrics().banned();
            return Verdict::Banned { until };
        }
        Verdict::Kept { score }
    }

    pub fn score(&self, peer: &P) -> u32 {
        self.scores.get(peer).copied().unwrap_or(0)
    }

    /// Refuses `peer` for `duration` (at most `MAX_BAN`).
    pub fn ban(&mut self, peer: P, duration: Duration, now: Instant) {
        let duration = duration.min(MAX_BAN);
        // MAX_BAN is far below any clock's end; never panic on it anyway.
        let until = now.checked_add(duration).unwrap_or(now + BAN_TIME);
        self.banned.insert(peer, until);
        crate::metrics::metrics().banned();
    }

    /// Lifts any ban and forgives the score (an operator's `net_connect`).
    pub fn pardon(&mut self, peer: &P) {
        self.banned.remove(peer);
        self.scores.remove(peer);
    }

    pub fn is_banned(&self, peer: &P, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    /// Takes one unit of `peer`'s allowance for `what`; false when it has none left.
    pub fn allow(&mut self, peer: P, what: Flood, now: Instant) -> bool {
        self.allowance(peer, what, now).take(rate(what), now)
    }

    fn allowance(&mut self, peer: P, what: Flood, now: Instant) -> &mut Allowance {
        let budget = self
            .budgets
            .entry(peer)
            .or_insert_with(|| PeerBudget::new(now));
        match what {
            Flood::Transactions => &mut budget.tx_messages,
            Flood::UselessTransactions => &mut budget.useless_txs,
            Flood::BlockRequests | Flood::ConcurrentRequests => &mut budget.sync_requests,
            Flood::MempoolInventories => &mut budget.inventories,
        }
    }

    /// `allow`, but past the allowance a request waits for its token (up to `max_wait`):
    /// how long, or None if that is too long.
    pub fn allow_within(
        &mut self,
        peer: P,
        what: Flood,
        now: Instant,
        max_wait: Duration,
    ) -> Option<Duration> {
        self.allowance(peer, what, now)
            .take_within(rate(what), now, max_wait)
    }

    /// The peer's connection closed: its budgets go (its score and any ban stay).
    pub fn disconnected(&mut self, peer: &P) {
        self.budgets.remove(peer);
    }

    /// Forgives a little of every score and lets expired bans go.
    pub fn tick(&mut self, now: Instant) {
        self.banned.retain(|_, until| *until > now);
        self.scores.retain(|_, score| {
            *score = score.saturating_sub(DECAY_PER_TICK);
            *score > 0
        });
    }
}

/// The allowance a kind of flood is measured against.
fn rate(flood: Flood) -> Rate {
    match flood {
        Flood::Transactions => allowance::TX_MESSAGES,
        Flood::UselessTransactions => allowance::USELESS_TXS,
        Flood::BlockRequests => allowance::SYNC_REQUESTS,
        // Counted by requests in flight, not by a bucket.
        Flood::ConcurrentRequests => allowance::SYNC_REQUESTS,
        Flood::MempoolInventories => allowance::MEMPOOL_INVENTORIES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_add_up_to_a_ban_that_expires_and_decay_forgives() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        assert_eq!(
            book.penalise(1u32, &Misbehaviour::ClaimNotDelivered, now),
            Verdict::Kept { score: 35 }
        );
        book.penalise(1, &Misbehaviour::ClaimNotDelivered, now);
        assert!(!book.is_banned(&1, now));
        let Verdict::Banned { until } = book.penalise(1, &Misbehaviour::ClaimNotDelivered, now)
        else {
            panic!("three lies ban");
        };
        assert!(book.is_banned(&1, now) && !book.is_banned(&1, until));
        book.tick(until);
        assert!(!book.is_banned(&1, until));

        // Decay: a single honest-looking slip is forgiven over a few ticks.
        book.penalise(2, &Misbehaviour::NoAnswer, now);
        book.tick(now);
        assert_eq!(book.score(&2), 5);
        book.tick(now);
        assert_eq!(book.score(&2), 0);
    }

    #[test]
    fn an_operator_ban_is_bounded_and_a_pardon_lifts_it() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        book.ban(7u32, Duration::from_secs(u64::MAX), now);
        assert!(book.is_banned(&7, now + MAX_BAN - Duration::from_secs(1)));
        assert!(!book.is_banned(&7, now + MAX_BAN + Duration::from_secs(1)));
        book.pardon(&7);
        assert!(!book.is_banned(&7, now));
    }

    #[test]
    fn allowances_run_dry_and_refill() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        let burst = allowance::USELESS_TXS.burst as usize;
        for _ in 0..burst {
            assert!(book.allow(1u32, Flood::UselessTransactions, now));
        }
        assert!(!book.allow(1, Flood::UselessTransactions, now));
        assert!(book.allow(1, Flood::UselessTransactions, now + Duration::from_secs(1)));
    }
}
