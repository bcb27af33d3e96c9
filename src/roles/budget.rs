//! A rate budget with a burst: the token bucket the peer answers repair
//! requests with (bytes per requester), and that the peer and the relay's
//! forwarding core meter signature checks with. Sans-IO: the caller passes
//! the time.

use super::Time;

/// A budget (of bytes, signature checks, ...) refilled at a steady rate,
/// with a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last: Time,
    rate_per_s: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket of `burst` units refilled at `rate_per_s` units a
    /// second.
    pub fn new(rate_per_s: f64, burst: f64, now: Time) -> Self {
        TokenBucket {
            tokens: burst,
            last: now,
            rate_per_s,
            burst,
        }
    }

    /// Changes the rate and burst from now on.
    pub fn set_rate(&mut self, rate_per_s: f64, burst: f64) {
        self.rate_per_s = rate_per_s;
        self.burst = burst;
    }

    /// Takes `amount` units if the budget allows at `now`.
    pub fn take(&mut self, now: Time, amount: f64) -> bool {
        let dt = now.0.saturating_sub(self.last.0) as f64 / 1e6;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate_per_s).min(self.burst);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time(ms * 1000)
    }

    #[test]
    fn a_token_bucket_gives_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(1000.0, 500.0, at(0));
        assert!(b.take(at(0), 500.0));
        assert!(!b.take(at(0), 1.0));
        assert!(!b.take(at(100), 101.0));
        assert!(b.take(at(100), 100.0));
        // Never more than the burst however long it rests.
        assert!(!b.take(at(10_000), 501.0));
        assert!(b.take(at(10_000), 500.0));
    }
}
