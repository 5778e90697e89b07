//! Per-peer budgets for work a peer can make this node do: token buckets. An honest peer
//! stays far inside them; a flooding one runs dry, is ignored, and is penalised.

use std::time::{Duration, Instant};

/// How fast a budget refills and how much it can hold.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct Allowance {
    tokens: f64,
    updated: Instant,
}

impl Allowance {
    pub fn full(rate: Rate, now: Instant) -> Allowance {
        Allowance {
            tokens: rate.burst,
            updated: now,
        }
    }

    /// Spends one token if there is one.
    pub fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Spends one token, borrowing it if there is none, and says how long until it is
    /// earned (zero if it was there); None, spending nothing, if that is over `max_wait`.
    pub fn take_within(
        &mut self,
        rate: Rate,
        now: Instant,
        max_wait: Duration,
    ) -> Option<Duration> {
        self.refill(rate, now);
        let wait = Duration::from_secs_f64(((1.0 - self.tokens) / rate.per_second).max(0.0));
        if wait > max_wait {
            return None;
        }
        self.tokens -= 1.0;
        Some(wait)
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }
}

/// Gossiped transactions a peer may make us validate.
pub const TX_MESSAGES: Rate = Rate {
    per_second: 5_000.0,
    burst: 20_000.0,
};
/// Gossiped transactions that turn out useless (already known, stale, unpayable, a
/// replacement that pays too little): honest peers send a few, in races.
pub const USELESS_TXS: Rate = Rate {
    per_second: 20.0,
    burst: 200.0,
};
/// Block requests over the sync protocol (each may read megabytes from disk). Beyond it a
/// request is answered late (`MAX_REQUEST_DELAY`), so a syncing peer that asks faster is
/// paced, not refused.
pub const SYNC_REQUESTS: Rate = Rate {
    // An honest sync of empty blocks asks for 128 at a time: 6,400 blocks a second.
    per_second: 50.0,
    burst: 200.0,
};

/// Mempool inventories a peer may ask for: one when it connects, rarely more (each costs
/// a walk of the whole pool and up to 1.6 MB sent).
pub const MEMPOOL_INVENTORIES: Rate = Rate {
    per_second: 1.0 / 60.0,
    burst: 2.0,
};

/// The budgets of one connected peer.
#[derive(Clone, Copy, Debug)]
pub struct PeerBudget {
    pub tx_messages: Allowance,
    pub useless_txs: Allowance,
    pub sync_requests: Allowance,
    pub inventories: Allowance,
}

impl PeerBudget {
    pub fn new(now: Instant) -> PeerBudget {
        PeerBudget {
            tx_messages: Allowance::full(TX_MESSAGES, now),
            useless_txs: Allowance::full(USELESS_TXS, now),
            sync_requests: Allowance::full(SYNC_REQUESTS, now),
            inventories: Allowance::full(MEMPOOL_INVENTORIES, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let rate = Rate {
            per_second: 10.0,
            burst: 3.0,
        };
        let start = Instant::now();
        let mut allowance = Allowance::full(rate, start);
        assert!((0..3).all(|_| allowance.take(rate, start)));
        assert!(!allowance.take(rate, start));
        // 10 per second: one more token after 100 ms, and never more than the burst.
        assert!(allowance.take(rate, start + Duration::from_millis(100)));
        assert!(!allowance.take(rate, start + Duration::from_millis(100)));
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| allowance.take(rate, later)).count(), 3);
    }

    #[test]
    fn past_the_burst_a_token_is_lent_for_the_time_it_takes_to_earn() {
        let rate = Rate {
            per_second: 10.0,
            burst: 2.0,
        };
        let start = Instant::now();
        let mut allowance = Allowance::full(rate, start);
        let max = Duration::from_millis(250);
        assert_eq!(
            allowance.take_within(rate, start, max),
            Some(Duration::ZERO)
        );
        assert_eq!(
            allowance.take_within(rate, start, max),
            Some(Duration::ZERO)
        );
        // Then each waits 100 ms more than the one before, until the wait is too long.
        let waits: Vec<_> = (0..3)
            .map(|_| allowance.take_within(rate, start, max))
            .collect();
        let ms = |w: Option<Duration>| w.map(|w| w.as_millis());
        assert_eq!(
            waits.into_iter().map(ms).collect::<Vec<_>>(),
            vec![Some(100), Some(200), None]
        );
        // Refused: nothing was spent, so in 300 ms the next is due at once.
        assert_eq!(
            allowance.take_within(rate, start + Duration::from_millis(300), max),
            Some(Duration::ZERO)
        );
    }
}
