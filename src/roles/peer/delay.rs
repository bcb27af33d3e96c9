//! One-way delay judged against its own floor, never against another
//! machine's clock ([0051], [0061]; LEDBAT's idea, RFC 6817).
//!
//! A sample is the local arrival time minus a time stamped by the sender
//! on its own clock. The two clocks may disagree by any constant amount,
//! so a sample alone means nothing; but the lowest sample seen lately (the
//! *base*) carries the same offset, so a sample minus the base is the
//! extra delay the path added: queuing. The base is the minimum over a few
//! ten-second buckets, so it follows a route that changes; the *current*
//! delay is the minimum over quarter-second buckets covering at least the
//! last second, so one late datagram does not move it and only a delay
//! that lasts does.
//! A smoothed jitter (RFC 3550's estimator) says how far datagrams spread.

use crate::roles::Time;

/// Length of one base bucket, in microseconds.
const BASE_BUCKET_US: u64 = 10_000_000;

/// Base buckets kept: the base is the lowest of the last two minutes.
const BASE_BUCKETS: usize = 12;

/// Length of one current-delay bucket, in microseconds.
const RECENT_BUCKET_US: u64 = 250_000;

/// Current-delay buckets kept: the current delay is the lowest of the
/// last second (the current bucket and four whole ones before it).
const RECENT_BUCKETS: usize = 5;

/// Minima over fixed-length time buckets, the oldest forgotten first.
#[derive(Debug, Clone)]
struct BucketMin<const N: usize> {
    mins: [Option<i64>; N],
    /// Bucket number (time / length) of the newest bucket.
    newest: Option<u64>,
    len_us: u64,
}

impl<const N: usize> BucketMin<N> {
    fn new(len_us: u64) -> Self {
        BucketMin {
            mins: [None; N],
            newest: None,
            len_us: len_us.max(1),
        }
    }

    /// Moves the newest bucket to the one holding `now`, clearing the ones
    /// passed over.
    fn advance(&mut self, now: Time) {
        let k = now.0 / self.len_us;
        match self.newest {
            Some(n) if k <= n => {}
            Some(n) => {
                for i in 1..=(k - n).min(N as u64) {
                    self.mins[((n + i) % N as u64) as usize] = None;
                }
                self.newest = Some(k);
            }
            None => self.newest = Some(k),
        }
    }

    fn record(&mut self, now: Time, v: i64) {
        self.advance(now);
        let Some(k) = self.newest else {
            return;
        };
        let slot = &mut self.mins[(k % N as u64) as usize];
        *slot = Some(slot.map_or(v, |m| m.min(v)));
    }

    /// The lowest value recorded in the buckets still kept at `now`.
    fn min(&self, now: Time) -> Option<i64> {
        let newest = self.newest?;
        let k = now.0 / self.len_us;
        let age = k.saturating_sub(newest);
        if age >= N as u64 {
            return None;
        }
        // Buckets older than N - age have expired by `now`.
        let keep = N as u64 - age;
        (0..keep)
            .filter_map(|i| {
                let b = newest.checked_sub(i)?;
                self.mins[(b % N as u64) as usize]
            })
            .min()
    }
}

/// The one-way delay of one stream of datagrams.
#[derive(Debug, Clone)]
pub struct OneWayDelay {
    base: BucketMin<BASE_BUCKETS>,
    recent: BucketMin<RECENT_BUCKETS>,
    last: Option<i64>,
    jitter_us: f64,
    samples: u64,
}

impl Default for OneWayDelay {
    fn default() -> Self {
        Self::new()
    }
}

impl OneWayDelay {
    /// An estimator with no sample yet.
    pub fn new() -> Self {
        OneWayDelay {
            base: BucketMin::new(BASE_BUCKET_US),
            recent: BucketMin::new(RECENT_BUCKET_US),
            last: None,
            jitter_us: 0.0,
            samples: 0,
        }
    }

    /// Records a datagram that arrived at `now` (local clock) stamped
    /// `stamped_us` by its sender (the sender's clock).
    pub fn sample(&mut self, now: Time, stamped_us: u64) {
        let raw = (i128::from(now.0) - i128::from(stamped_us))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        self.base.record(now, raw);
        self.recent.record(now, raw);
        if let Some(last) = self.last {
            let d = raw.saturating_sub(last).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last = Some(raw);
        self.samples += 1;
    }

    /// Samples recorded.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The lowest raw delay of the last two minutes: path delay plus the
    /// clocks' offset.
    pub fn base(&self, now: Time) -> Option<i64> {
        self.base.min(now)
    }

    /// Queuing delay now: the lowest delay of (at least) the last second
    /// above the base, in microseconds; `None` with nothing heard lately.
    pub fn queuing_us(&self, now: Time) -> Option<u64> {
        let current = self.recent.min(now)?;
        let base = self.base.min(now)?;
        Some(current.saturating_sub(base).max(0) as u64)
    }

    /// How far apart consecutive delays are, smoothed, in microseconds.
    pub fn jitter_us(&self) -> u64 {
        self.jitter_us as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time(ms * 1000)
    }

    #[test]
    fn a_constant_clock_offset_does_not_show_as_delay() {
        for offset_s in [-60i64, 0, 60] {
            let mut d = OneWayDelay::new();
            for i in 0..100u64 {
                let sent = (1_000_000 + i as i64 * 10_000 - offset_s * 1_000_000) as u64;
                d.sample(at(1_000 + i * 10 + 20), sent);
            }
            assert_eq!(d.queuing_us(at(2_000)), Some(0), "offset {offset_s}");
        }
    }

    #[test]
    fn only_a_delay_that_lasts_a_second_counts() {
        let mut d = OneWayDelay::new();
        // 20 ms path for two seconds.
        for i in 0..200u64 {
            d.sample(at(i * 10 + 20), i * 10_000);
        }
        // One datagram 900 ms late: the current delay keeps its floor.
        d.sample(at(2_000 + 920), 2_000_000);
        assert_eq!(d.queuing_us(at(2_920)), Some(0));
        // Every datagram 500 ms late for over a second.
        for i in 0..120u64 {
            let sent = 3_000_000 + i * 10_000;
            d.sample(Time(sent + 520_000), sent);
        }
        let q = d
            .queuing_us(Time(3_000_000 + 119 * 10_000 + 520_000))
            .unwrap();
        assert_eq!(q, 500_000);
    }

    #[test]
    fn the_base_follows_a_slower_route_within_two_minutes() {
        let mut d = OneWayDelay::new();
        d.sample(at(0), 0);
        for s in 1..=130u64 {
            d.sample(at(s * 1000 + 50), s * 1_000_000);
        }
        assert_eq!(d.base(at(130_050)), Some(50_000));
        assert_eq!(d.queuing_us(at(130_050)), Some(0));
    }

    #[test]
    fn jitter_measures_the_spread() {
        let mut d = OneWayDelay::new();
        for i in 0..400u64 {
            let extra = if i % 2 == 0 { 0 } else { 30_000 };
            d.sample(Time(i * 10_000 + 40_000 + extra), i * 10_000);
        }
        assert!(
            (25_000..=30_000).contains(&d.jitter_us()),
            "{}",
            d.jitter_us()
        );
    }

    #[test]
    fn nothing_heard_for_a_second_means_no_current_delay() {
        let mut d = OneWayDelay::new();
        d.sample(at(100), 0);
        assert!(d.queuing_us(at(200)).is_some());
        assert_eq!(d.queuing_us(at(1_300)), None);
    }
}
