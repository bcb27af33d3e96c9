//! Upload that fits the uplink: an estimate of what this peer's uplink
//! carries, and a token bucket that paces block sends to it ([0044],
//! [0048]).
//!
//! A home uplink is often slower than the stream, and a peer that sends
//! faster than its uplink only fills its router's queue until datagrams
//! drop, for every upload at once. Nothing on the sending machine sees
//! that queue, so the estimate comes from the downloaders: each KEEPALIVE
//! says how many blocks arrived on its connection and how far its one-way
//! delay stands above its own floor. Every control period the pacer takes
//! the median, over its uploads, of their queuing delay, and the loss
//! summed over them all but the worst quarter (so a few lying or unlucky
//! downloaders move nothing): above the target the
//! rate falls by a fixed share of what got through (what was sent less
//! what was lost; at most every two periods, since reports lag), and while sends wait for tokens and the path is calm it rises
//! additively, as LEDBAT (RFC 6817) and AIMD do. Until a limit is first
//! seen the peer sends unpaced, as on a clean link. Control messages are
//! never held back but use tokens, so blocks make room for them.

use crate::roles::Time;
use crate::wire::SPARE_UNLIMITED;

/// Pacer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerConfig {
    /// Queuing delay above which the uplink counts as congested, us
    /// (RFC 6817's target is 100 ms).
    pub target_delay_us: u64,
    /// Loss above which the uplink counts as congested. Random loss on a
    /// path stays under it; a queue that overflows goes above.
    pub loss_threshold: f64,
    /// Share of the rate kept on congestion.
    pub decrease: f64,
    /// Share of the rate added per period while sends wait and the path is
    /// calm (at least `min_step_bps`).
    pub increase: f64,
    /// Smallest rate increase, bit/s.
    pub min_step_bps: f64,
    /// The rate never falls below this, bit/s.
    pub min_bps: f64,
    /// Control period, us.
    pub period_us: u64,
    /// Tokens kept at most, as this much sending time at the rate, us.
    pub burst_us: u64,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            target_delay_us: 100_000,
            loss_threshold: 0.15,
            decrease: 0.85,
            increase: 0.05,
            min_step_bps: 16_000.0,
            min_bps: 64_000.0,
            period_us: 500_000,
            burst_us: 40_000,
        }
    }
}

/// What one upload's downloader reported over a control period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadFeedback {
    /// Blocks sent on it (a round trip before the reports).
    pub sent: u64,
    /// Of those, blocks its downloader says arrived.
    pub received: u64,
    /// Its latest queuing delay, us.
    pub queuing_us: Option<u64>,
}

impl UploadFeedback {
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            1.0 - self.received.min(self.sent) as f64 / self.sent as f64
        }
    }
}

/// Loss over `feedback` with the worst quarter of the uploads left out (so
/// a few lying or unlucky downloaders move nothing), summed so that each
/// upload's few blocks a period do not make the figure coarse. One block
/// per upload counts as on its way, not lost: a report can split a block
/// from its count, and on a low-rate feed (a 200 kbit/s one sends about
/// two blocks per upload and period) that one block would read as half
/// of them lost.
fn trimmed_loss(feedback: &[UploadFeedback]) -> f64 {
    let mut fb: Vec<UploadFeedback> = feedback.iter().copied().filter(|f| f.sent > 0).collect();
    fb.sort_by(|a, b| a.loss().total_cmp(&b.loss()));
    let drop = if fb.len() >= 2 {
        fb.len().div_ceil(4)
    } else {
        0
    };
    fb.truncate(fb.len() - drop);
    let sent: u64 = fb.iter().map(|f| f.sent).sum();
    let received: u64 = fb.iter().map(|f| (f.received + 1).min(f.sent)).sum();
    if sent == 0 {
        0.0
    } else {
        1.0 - received as f64 / sent as f64
    }
}

/// The pacer and its rate estimate.
#[derive(Debug, Clone)]
pub struct UplinkPacer {
    cfg: PacerConfig,
    rate_bps: Option<f64>,
    tokens: f64,
    last_refill: Time,
    period_start: Time,
    period_bytes: u64,
    send_rate_bps: f64,
    last_decrease: Option<Time>,
    decreases: u64,
}

/// The median of `v` (the lower one of an even count), sorting it.
fn lower_median<T: Copy + PartialOrd>(v: &mut [T]) -> Option<T> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        None
    } else {
        Some(v[(v.len() - 1) / 2])
    }
}

impl UplinkPacer {
    /// An unpaced sender as of `now`.
    pub fn new(cfg: PacerConfig, now: Time) -> Self {
        UplinkPacer {
            cfg,
            rate_bps: None,
            tokens: 0.0,
            last_refill: now,
            period_start: now,
            period_bytes: 0,
            send_rate_bps: 0.0,
            last_decrease: None,
            decreases: 0,
        }
    }

    /// The estimated uplink rate, bit/s; `None` while no limit was seen.
    pub fn rate_bps(&self) -> Option<f64> {
        self.rate_bps
    }

    /// What was sent over the last control period, bit/s.
    pub fn send_rate_bps(&self) -> f64 {
        self.send_rate_bps
    }

    /// Times the rate was cut.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// Estimated capacity left, kbit/s, as PONG reports it.
    pub fn spare_kbps(&self) -> u32 {
        match self.rate_bps {
            None => SPARE_UNLIMITED,
            Some(r) => ((r - self.send_rate_bps).max(0.0) / 1000.0) as u32,
        }
    }

    fn refill(&mut self, now: Time) {
        let Some(rate) = self.rate_bps else {
            self.last_refill = now;
            return;
        };
        let dt = now.0.saturating_sub(self.last_refill.0) as f64 / 1e6;
        self.last_refill = self.last_refill.max(now);
        let burst = rate / 8.0 * self.cfg.burst_us as f64 / 1e6;
        self.tokens = (self.tokens + rate / 8.0 * dt).min(burst.max(1500.0));
    }

    /// True when a datagram of `len` bytes may leave now.
    pub fn may_send(&mut self, now: Time, len: usize) -> bool {
        self.refill(now);
        self.rate_bps.is_none() || self.tokens >= len as f64 || self.tokens >= 1500.0
    }

    /// Counts `len` bytes sent (blocks and control alike).
    pub fn on_sent(&mut self, len: usize) {
        self.period_bytes += len as u64;
        if self.rate_bps.is_some() {
            self.tokens -= len as f64;
        }
    }

    /// True when a control period is over at `now`.
    pub fn period_over(&self, now: Time) -> bool {
        now.0.saturating_sub(self.period_start.0) >= self.cfg.period_us
    }

    /// Runs the controller if a period is over. `feedback` holds what
    /// each upload's downloader reported over the period, and `backlog`
    /// says whether block sends waited for tokens. Returns true when the
    /// period closed.
    pub fn control(&mut self, now: Time, feedback: &[UploadFeedback], backlog: bool) -> bool {
        let elapsed = now.0.saturating_sub(self.period_start.0);
        if elapsed < self.cfg.period_us {
            return false;
        }
        self.send_rate_bps = self.period_bytes as f64 * 8.0 / (elapsed as f64 / 1e6);
        self.period_bytes = 0;
        self.period_start = now;
        let mut delays: Vec<u64> = feedback.iter().filter_map(|f| f.queuing_us).collect();
        let loss = trimmed_loss(feedback);
        let delay = lower_median(&mut delays).unwrap_or(0);
        let congested = delay > self.cfg.target_delay_us || loss > self.cfg.loss_threshold;
        if congested {
            // What the downloaders report lags the cut by a round trip and
            // the queue takes time to drain: cut at most every two periods.
            let calm_since_cut = self
                .last_decrease
                .is_none_or(|t| now.0 >= t.0 + 2 * self.cfg.period_us);
            if calm_since_cut {
                // What got through is what the uplink carries, when the
                // sender filled it: cut from that (one cut divides by four
                // at most: a quiet period says little), or from the rate
                // when that is lower.
                let from = self.rate_bps.unwrap_or(self.send_rate_bps);
                let delivered = (self.send_rate_bps * (1.0 - loss)).max(from / 4.0);
                let base = from.min(delivered.max(from / 4.0));
                self.rate_bps = Some((base * self.cfg.decrease).max(self.cfg.min_bps));
                self.last_decrease = Some(now);
                self.decreases += 1;
            }
        } else if let Some(r) = self.rate_bps {
            if backlog && delay < self.cfg.target_delay_us / 2 {
                self.rate_bps = Some(r + (r * self.cfg.increase).max(self.cfg.min_step_bps));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(loss: f64, delay_ms: u64) -> UploadFeedback {
        UploadFeedback {
            sent: 100,
            received: (100.0 * (1.0 - loss)).round() as u64,
            queuing_us: Some(delay_ms * 1000),
        }
    }

    fn at(ms: u64) -> Time {
        Time(ms * 1000)
    }

    #[test]
    fn unpaced_until_a_limit_is_seen() {
        let mut p = UplinkPacer::new(PacerConfig::default(), at(0));
        assert!(p.may_send(at(0), 1200));
        p.on_sent(250_000);
        assert!(p.control(at(1_000), &[fb(0.0, 5); 5], false));
        assert_eq!(p.rate_bps(), None);
        assert_eq!(p.spare_kbps(), SPARE_UNLIMITED);
    }

    #[test]
    fn congestion_cuts_to_what_got_through_then_tokens_pace() {
        let mut p = UplinkPacer::new(PacerConfig::default(), at(0));
        // 2 Mbit/s sent for a second; half arrived, 200 ms late (51 of
        // 100 per upload, with one on its way): 0.85 of 51%.
        p.on_sent(250_000);
        p.control(at(1_000), &[fb(0.5, 200); 5], false);
        let r = p.rate_bps().expect("limited");
        assert!((862_000.0..872_000.0).contains(&r), "{r}");
        // Over a second at that rate about r/8 bytes may go.
        let mut sent = 0usize;
        for ms in 1_000..2_000 {
            while p.may_send(at(ms), 1200) {
                p.on_sent(1200);
                sent += 1200;
            }
        }
        let expect = r / 8.0;
        assert!(
            (sent as f64 - expect).abs() < 0.05 * expect,
            "{sent} vs {expect}"
        );
    }

    #[test]
    fn a_low_rate_feed_with_a_report_in_flight_is_not_loss() {
        // A 200 kbit/s feed: two blocks per upload a period, the report of
        // the second still on its way on each: no loss.
        let mut p = UplinkPacer::new(PacerConfig::default(), at(0));
        p.on_sent(6_000);
        let lagging = UploadFeedback {
            sent: 2,
            received: 1,
            queuing_us: Some(0),
        };
        p.control(at(1_000), &[lagging; 20], false);
        assert_eq!(p.rate_bps(), None, "cut on a lagging report");
        // Half of eight blocks missing is loss.
        let lossy = UploadFeedback {
            sent: 8,
            received: 4,
            queuing_us: Some(0),
        };
        p.control(at(2_000), &[lossy; 20], false);
        assert!(p.rate_bps().is_some());
    }

    #[test]
    fn a_period_of_few_blocks_per_upload_is_judged_on_their_sum() {
        // Each upload is one block ahead or behind (a report split a
        // burst): alone 0% or 20% loss; summed, none.
        let mut feedback = Vec::new();
        for i in 0..8 {
            let (sent, received) = if i % 2 == 0 { (5, 4) } else { (5, 6) };
            feedback.push(UploadFeedback {
                sent,
                received,
                queuing_us: Some(0),
            });
        }
        assert!(trimmed_loss(&feedback) < 0.1, "{}", trimmed_loss(&feedback));
    }

    #[test]
    fn one_lying_downloader_among_several_moves_nothing() {
        let mut p = UplinkPacer::new(PacerConfig::default(), at(0));
        p.on_sent(100_000);
        let mut feedback = vec![fb(0.02, 3); 4];
        feedback.push(fb(1.0, 60_000));
        p.control(at(1_000), &feedback, false);
        assert_eq!(p.rate_bps(), None);
        // Of two, the worse is left out.
        p.control(at(2_000), &[fb(0.02, 3), fb(1.0, 60_000)], false);
        assert_eq!(p.rate_bps(), None);
    }

    #[test]
    fn random_loss_below_the_threshold_is_not_congestion() {
        let mut p = UplinkPacer::new(PacerConfig::default(), at(0));
        for s in 1..=20 {
            p.on_sent(125_000);
            p.control(at(s * 500), &[fb(0.05, 10); 6], true);
        }
        assert_eq!(p.rate_bps(), None);
    }

    #[test]
    fn the_rate_climbs_back_while_sends_wait_and_the_path_is_calm() {
        let mut p = UplinkPacer::new(PacerConfig::default(), at(0));
        p.on_sent(125_000);
        p.control(at(1_000), &[fb(0.5, 300)], false);
        let low = p.rate_bps().expect("limited");
        for s in 3..=12 {
            p.control(at(s * 500), &[fb(0.0, 5)], true);
        }
        let high = p.rate_bps().expect("limited");
        assert!(high > low * 1.4, "{low} -> {high}");
        // Without waiting sends there is nothing to learn: it holds.
        p.control(at(7_000), &[fb(0.0, 5)], false);
        assert_eq!(p.rate_bps(), Some(high));
    }

    #[test]
    fn the_rate_has_a_floor_and_cuts_wait_a_period() {
        let mut p = UplinkPacer::new(PacerConfig::default(), at(0));
        for s in 1..=200 {
            p.control(at(s * 500), &[fb(0.9, 900)], false);
        }
        assert_eq!(p.rate_bps(), Some(PacerConfig::default().min_bps));
        assert!(p.decreases() <= 100, "{}", p.decreases());
    }
}
