//! Round-trip times to a peer, and the timeouts derived from them.
//!
//! Samples come from a PING answered by its PONG and from a CONNECT
//! answered by ACCEPT or REFUSE (never from one that was sent again, whose
//! answer may belong to either copy: Karn's rule). The smoothed round
//! trip and its variation follow RFC 6298, and every timeout a peer sets
//! on a connection is a multiple of them with a floor, so a peer 300 ms
//! away connects and a long path does not read as a dead one.

/// A smoothed round-trip time (RFC 6298, section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtt {
    srtt_us: u64,
    rttvar_us: u64,
}

impl Rtt {
    /// The estimate after the first sample.
    pub fn new(sample_us: u64) -> Self {
        Rtt {
            srtt_us: sample_us,
            rttvar_us: sample_us / 2,
        }
    }

    /// Folds in one more sample (alpha 1/8, beta 1/4).
    pub fn sample(&mut self, sample_us: u64) {
        let diff = self.srtt_us.abs_diff(sample_us);
        self.rttvar_us = (3 * self.rttvar_us + diff) / 4;
        self.srtt_us = (7 * self.srtt_us + sample_us) / 8;
    }

    /// The smoothed round trip, in microseconds.
    pub fn srtt_us(&self) -> u64 {
        self.srtt_us
    }

    /// The retransmission timeout: smoothed round trip plus four times
    /// its variation, at least `floor_us`.
    pub fn rto_us(&self, floor_us: u64) -> u64 {
        (self.srtt_us + 4 * self.rttvar_us).max(floor_us)
    }
}

/// Records a sample into an optional estimate.
pub fn record(rtt: &mut Option<Rtt>, sample_us: u64) {
    match rtt {
        Some(r) => r.sample(sample_us),
        None => *rtt = Some(Rtt::new(sample_us)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_sets_the_estimate_and_the_timeout_has_a_floor() {
        let r = Rtt::new(300_000);
        assert_eq!(r.srtt_us(), 300_000);
        assert_eq!(r.rto_us(0), 300_000 + 4 * 150_000);
        assert_eq!(Rtt::new(1_000).rto_us(200_000), 200_000);
    }

    #[test]
    fn steady_samples_converge_and_the_variation_shrinks() {
        let mut r = Rtt::new(100_000);
        for _ in 0..50 {
            r.sample(40_000);
        }
        assert!((40_000..41_000).contains(&r.srtt_us()), "{r:?}");
        assert!(r.rto_us(0) < 45_000, "{r:?}");
    }

    #[test]
    fn record_starts_or_updates() {
        let mut r = None;
        record(&mut r, 10_000);
        record(&mut r, 10_000);
        assert_eq!(r.map(|r| r.srtt_us()), Some(10_000));
    }
}
