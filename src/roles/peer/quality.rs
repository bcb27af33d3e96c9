//! The quality measure and graceful failure ([0063]).
//!
//! Every window a peer counts how often playback skipped or froze. Each
//! level of that count has an upload threshold: if the peer uploaded less
//! than the threshold (a share of the stream's bit rate) during the window,
//! and its uplink cannot carry the threshold either, it is taking more from
//! a struggling swarm than it can give, and it stops all download and
//! upload activity. A peer whose uplink has room but whom nobody asked for
//! more is healthy and never stops: the seed's intent is to shed load the
//! swarm cannot carry, not to punish peers for the demand they meet. Nor
//! is a peer punished for an attack: a window in which the peer took
//! `attack_datagrams` or more hostile datagrams (forged or unparsable
//! blocks, blocks refused unjudged, failed tokens, unsolicited answers) is
//! excused, whatever its skips, since an attacker caused them. A stopped
//! peer comes back after a back-off (the peer's business).

use crate::roles::Time;

/// One level: at `bad_events` or more skips and freezes per window, a peer
/// must upload at least `min_upload_share` of the stream's bit rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityLevel {
    /// Skips plus freezes in one window.
    pub bad_events: u64,
    /// Required upload rate as a share of the stream bit rate.
    pub min_upload_share: f64,
}

/// The rule a peer applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityRule {
    /// Off disables graceful failure.
    pub enabled: bool,
    /// Window length in milliseconds.
    pub window_ms: u64,
    /// Levels, checked from the worst down.
    pub levels: [QualityLevel; 2],
    /// Hostile datagrams in one window that excuse its skips.
    pub attack_datagrams: u64,
}

/// What one closed window says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The window is not over, or the peer did its share.
    Healthy,
    /// The peer must stop ([0063]).
    Stop,
    /// The window would have stopped the peer, but it was under attack.
    Excused,
}

impl Default for QualityRule {
    /// 10 s windows; 200 bad events call for half the bit rate uploaded,
    /// 60 for a quarter. A healthy swarm never comes near either. 100
    /// hostile datagrams (10 a second) excuse a window: a healthy swarm
    /// sends none.
    fn default() -> Self {
        QualityRule {
            enabled: true,
            window_ms: 10_000,
            levels: [
                QualityLevel {
                    bad_events: 200,
                    min_upload_share: 0.5,
                },
                QualityLevel {
                    bad_events: 60,
                    min_upload_share: 0.25,
                },
            ],
            attack_datagrams: 100,
        }
    }
}

/// First back-off after a graceful failure, ms; it doubles with each
/// failure in a row.
pub const BACKOFF_MS: u64 = 10_000;

/// Longest back-off, ms.
pub const BACKOFF_MAX_MS: u64 = 160_000;

/// The back-off after the `failures`-th failure in a row (from 1).
pub fn backoff_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_MS << doublings).min(BACKOFF_MAX_MS)
}

/// A peer's counters so far, as the quality check reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityTotals {
    /// Skips plus freezes.
    pub bad: u64,
    /// Payload bytes uploaded.
    pub uploaded: u64,
    /// Hostile datagrams taken.
    pub hostile: u64,
}

/// Applies a [`QualityRule`] window by window.
#[derive(Debug, Clone)]
pub struct QualityMonitor {
    rule: QualityRule,
    window_start: Time,
    bad_at_start: u64,
    uploaded_at_start: u64,
    hostile_at_start: u64,
}

impl QualityMonitor {
    /// A monitor whose first window starts at `now`.
    pub fn new(rule: QualityRule, now: Time) -> Self {
        QualityMonitor {
            rule,
            window_start: now,
            bad_at_start: 0,
            uploaded_at_start: 0,
            hostile_at_start: 0,
        }
    }

    /// Closes the window if it is over. `totals` are the peer's counters
    /// so far, `stream_bps` the stream's bit rate, `capacity_bps` what the
    /// uplink is estimated to carry (`None` when no limit was seen).
    pub fn check(
        &mut self,
        now: Time,
        totals: QualityTotals,
        stream_bps: f64,
        capacity_bps: Option<f64>,
    ) -> Verdict {
        let window_us = self.rule.window_ms * 1000;
        if now.0 < self.window_start.0 + window_us {
            return Verdict::Healthy;
        }
        let bad = totals.bad - self.bad_at_start.min(totals.bad);
        let uploaded = totals.uploaded - self.uploaded_at_start.min(totals.uploaded);
        let hostile = totals.hostile - self.hostile_at_start.min(totals.hostile);
        let elapsed_s = (now.0 - self.window_start.0) as f64 / 1e6;
        self.window_start = now;
        self.bad_at_start = totals.bad;
        self.uploaded_at_start = totals.uploaded;
        self.hostile_at_start = totals.hostile;
        if !self.rule.enabled || stream_bps <= 0.0 {
            return Verdict::Healthy;
        }
        let upload_bps = uploaded as f64 * 8.0 / elapsed_s;
        let fails = self
            .rule
            .levels
            .iter()
            .find(|l| bad >= l.bad_events)
            .is_some_and(|l| {
                let need = l.min_upload_share * stream_bps;
                upload_bps < need && capacity_bps.is_some_and(|c| c < need)
            });
        match (fails, hostile >= self.rule.attack_datagrams) {
            (false, _) => Verdict::Healthy,
            (true, false) => Verdict::Stop,
            (true, true) => Verdict::Excused,
        }
    }
}
