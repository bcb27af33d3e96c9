//! The sequence-gap rule of a foreign download, judged on a rate ([0052]).
//!
//! The seed drops a download whose next block is not the previous one plus
//! one, because a missing block "typically means congestion". On the real
//! internet one datagram in fifty may be lost at random and jitter
//! reorders them, so one gap means nothing. Here a skipped block that this
//! peer does not already hold becomes a *hole*; a hole the connection
//! fills within the reorder window was only reordered, one it does not is
//! lost. Holes revealed by the first block after a silence are not counted
//! (a stall is the silence rule's business, [0053], and the blocks are
//! repaired either way). The connection is congested when, over its last
//! [`WINDOW`] outcomes, at least [`CONGESTED_SHARE`] were losses.

use std::collections::VecDeque;

use crate::roles::Time;

/// Outcomes (block delivered or lost) judged over.
pub const WINDOW: usize = 64;

/// Outcomes needed before the rule may drop a connection.
pub const MIN_OUTCOMES: usize = 32;

/// Share of losses that marks congestion. Random loss of a few percent
/// stays far below it; an uploader whose queue overflows goes above.
pub const CONGESTED_SHARE: f64 = 0.25;

/// Holes awaited at most.
const HOLES_MAX: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Hole {
    seq: u64,
    seen: Time,
    counted: bool,
}

/// Holes and recent outcomes of one download.
#[derive(Debug, Clone, Default)]
pub struct GapTracker {
    holes: VecDeque<Hole>,
    outcomes: VecDeque<bool>,
    losses: usize,
    lost_total: u64,
}

impl GapTracker {
    fn push_outcome(&mut self, lost: bool) {
        if self.outcomes.len() >= WINDOW && self.outcomes.pop_front() == Some(true) {
            self.losses -= 1;
        }
        self.outcomes.push_back(lost);
        if lost {
            self.losses += 1;
            self.lost_total += 1;
        }
    }

    /// Block `seq` arrived on the connection.
    pub fn delivered(&mut self, seq: u64) {
        if let Some(i) = self.holes.iter().position(|h| h.seq == seq) {
            self.holes.remove(i);
        }
        self.push_outcome(false);
    }

    /// Block `seq` was skipped at `now` and is not held; `counted` is
    /// false when it was skipped over a silence.
    pub fn hole(&mut self, seq: u64, now: Time, counted: bool) {
        if self.holes.iter().any(|h| h.seq == seq) {
            return;
        }
        if self.holes.len() >= HOLES_MAX {
            if let Some(h) = self.holes.pop_front() {
                if h.counted {
                    self.push_outcome(true);
                }
            }
        }
        self.holes.push_back(Hole {
            seq,
            seen: now,
            counted,
        });
    }

    /// Holes older than `reorder_us` are losses.
    pub fn expire(&mut self, now: Time, reorder_us: u64) {
        while let Some(h) = self.holes.front().copied() {
            if now.0 < h.seen.0.saturating_add(reorder_us) {
                break;
            }
            self.holes.pop_front();
            if h.counted {
                self.push_outcome(true);
            }
        }
    }

    /// True when the connection has lost too much of late.
    pub fn congested(&self) -> bool {
        self.outcomes.len() >= MIN_OUTCOMES
            && self.losses as f64 >= CONGESTED_SHARE * self.outcomes.len() as f64
    }

    /// Share lost over the window, if anything was judged yet.
    pub fn loss_share(&self) -> Option<f64> {
        (!self.outcomes.is_empty()).then(|| self.losses as f64 / self.outcomes.len() as f64)
    }

    /// Blocks counted lost so far.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time(ms * 1000)
    }

    #[test]
    fn a_reordered_block_is_no_loss() {
        let mut g = GapTracker::default();
        g.hole(12, at(0), true);
        g.delivered(24);
        g.delivered(12);
        g.expire(at(1_000), 300_000);
        assert_eq!(g.lost_total(), 0);
    }

    #[test]
    fn random_loss_of_five_percent_is_not_congestion() {
        let mut g = GapTracker::default();
        for i in 0..2_000u64 {
            if i % 20 == 7 {
                g.hole(i, at(i * 50), true);
            } else {
                g.delivered(i);
            }
            g.expire(at(i * 50), 300_000);
            assert!(!g.congested(), "at {i}");
        }
        assert!(g.lost_total() > 90);
    }

    #[test]
    fn losing_a_third_is_congestion() {
        let mut g = GapTracker::default();
        for i in 0..100u64 {
            if i % 3 == 0 {
                g.hole(i, at(i * 50), true);
            } else {
                g.delivered(i);
            }
            g.expire(at(i * 50), 300_000);
        }
        assert!(g.congested());
    }

    #[test]
    fn holes_over_a_silence_are_not_counted() {
        let mut g = GapTracker::default();
        for i in 0..40u64 {
            g.delivered(i);
        }
        for i in 40..60u64 {
            g.hole(i, at(0), false);
        }
        g.expire(at(1_000), 300_000);
        assert_eq!(g.lost_total(), 0);
        assert!(!g.congested());
    }
}
