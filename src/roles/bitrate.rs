//! The source's bit-rate estimate ([0044]-[0045]).
//!
//! Once per interval the source measures the rate of the blocks it sent in
//! the interval just ended. A rise is taken at once; a fall is taken only in
//! part: the estimate drops by a fraction (0.6 by default) of the
//! difference, so it falls asymptotically and one quiet interval cannot
//! starve the swarm's upload budget.

/// Share of a drop that is applied per interval ([0045]: 0.6).
pub const DEFAULT_DECAY: f64 = 0.6;

/// A decaying bit-rate estimate fed with bytes sent per interval.
#[derive(Debug, Clone)]
pub struct BitrateEstimator {
    interval_us: u64,
    decay: f64,
    bytes_this_interval: u64,
    estimate_bps: f64,
}

impl BitrateEstimator {
    /// An estimator over intervals of `interval_us` microseconds, starting
    /// at `initial_bps`.
    pub fn new(interval_us: u64, decay: f64, initial_bps: f64) -> Self {
        BitrateEstimator {
            interval_us: interval_us.max(1),
            decay: decay.clamp(0.0, 1.0),
            bytes_this_interval: 0,
            estimate_bps: initial_bps.max(0.0),
        }
    }

    /// Records `bytes` of payload sent in the current interval.
    pub fn record(&mut self, bytes: usize) {
        self.bytes_this_interval += bytes as u64;
    }

    /// Ends the current interval and updates the estimate.
    pub fn end_interval(&mut self) -> f64 {
        let measured = self.bytes_this_interval as f64 * 8.0 * 1e6 / self.interval_us as f64;
        self.bytes_this_interval = 0;
        self.estimate_bps = if measured >= self.estimate_bps {
            measured
        } else {
            self.estimate_bps - self.decay * (self.estimate_bps - measured)
        };
        self.estimate_bps
    }

    /// The current estimate in bits per second.
    pub fn estimate_bps(&self) -> f64 {
        self.estimate_bps
    }

    /// The current estimate in kbit/s, as carried in BLOCKs.
    pub fn estimate_kbps(&self) -> u32 {
        (self.estimate_bps / 1000.0)
            .round()
            .min(f64::from(u32::MAX)) as u32
    }
}
