//! Loss repair: the blocks a peer lacks and asks for again, and the budget
//! it answers such requests with.
//!
//! A block is *wanted* when a later block of its club came on the download
//! that should have carried it, when it cannot be checked because the
//! datagram with its hashes was lost, or when its play time nears and it
//! is still missing. Each wanted block waits until its ask time (a little
//! longer than the path reorders), then goes into a REQUEST to a peer this
//! peer has a connection with, and again to another after a round-trip
//! timeout, a few times at most. Every peer plays every block, so any
//! connected peer near the same play point holds it. The answering side
//! spends at most the stream's own rate per requester
//! ([`crate::roles::TokenBucket`]),
//! so a request can never draw more than a viewer would receive anyway.

use std::collections::BTreeMap;

use crate::roles::Time;

/// Asks per block before it is given up (its play time will pass).
pub const MAX_ASKS: u8 = 4;

/// One block wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// When it was first wanted.
    pub since: Time,
    /// When to ask (again).
    pub next_ask: Time,
    /// Times asked so far.
    pub asked: u8,
}

/// The blocks wanted, by sequence number, bounded.
#[derive(Debug, Clone)]
pub struct RepairQueue {
    wanted: BTreeMap<u64, Want>,
    capacity: usize,
    given_up: u64,
    overflow: u64,
}

impl RepairQueue {
    /// A queue of at most `capacity` wanted blocks.
    pub fn new(capacity: usize) -> Self {
        RepairQueue {
            wanted: BTreeMap::new(),
            capacity: capacity.max(1),
            given_up: 0,
            overflow: 0,
        }
    }

    /// Wants `seq`, to be asked for at `ask_at` (an earlier ask time of a
    /// block already wanted stays).
    pub fn want(&mut self, seq: u64, now: Time, ask_at: Time) {
        if let Some(w) = self.wanted.get_mut(&seq) {
            if w.asked == 0 {
                w.next_ask = w.next_ask.min(ask_at);
            }
            return;
        }
        if self.wanted.len() >= self.capacity {
            self.overflow += 1;
            return;
        }
        self.wanted.insert(
            seq,
            Want {
                since: now,
                next_ask: ask_at,
                asked: 0,
            },
        );
    }

    /// `seq` arrived: it is no longer wanted. Returns what was known of it.
    pub fn got(&mut self, seq: u64) -> Option<Want> {
        self.wanted.remove(&seq)
    }

    /// True while `seq` is wanted.
    pub fn is_wanted(&self, seq: u64) -> bool {
        self.wanted.contains_key(&seq)
    }

    /// Up to `limit` wanted blocks whose ask time has come, lowest first.
    pub fn due(&self, now: Time, limit: usize) -> Vec<(u64, Want)> {
        self.wanted
            .iter()
            .filter(|(_, w)| w.next_ask <= now)
            .take(limit)
            .map(|(s, w)| (*s, *w))
            .collect()
    }

    /// Records that `seq` was asked for at `now`; the next ask comes after
    /// `retry_us`, and after [`MAX_ASKS`] asks it is given up.
    pub fn asked(&mut self, seq: u64, now: Time, retry_us: u64) {
        let Some(w) = self.wanted.get_mut(&seq) else {
            return;
        };
        w.asked = w.asked.saturating_add(1);
        if w.asked >= MAX_ASKS {
            self.wanted.remove(&seq);
            self.given_up += 1;
        } else {
            w.next_ask = Time(now.0.saturating_add(retry_us));
        }
    }

    /// Forgets blocks below `seq` (played or skipped meanwhile).
    pub fn forget_below(&mut self, seq: u64) {
        let keep = self.wanted.split_off(&seq);
        self.given_up += self.wanted.len() as u64;
        self.wanted = keep;
    }

    /// Blocks wanted now.
    pub fn len(&self) -> usize {
        self.wanted.len()
    }

    /// True when nothing is wanted.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Blocks given up: asked too often, or their play time passed.
    pub fn given_up(&self) -> u64 {
        self.given_up
    }

    /// Wants turned away because the queue was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time(ms * 1000)
    }

    #[test]
    fn wanted_blocks_come_due_at_their_ask_time_lowest_first() {
        let mut q = RepairQueue::new(16);
        q.want(30, at(0), at(50));
        q.want(10, at(0), at(20));
        q.want(20, at(0), at(100));
        assert!(q.due(at(10), 8).is_empty());
        let due: Vec<u64> = q.due(at(60), 8).iter().map(|(s, _)| *s).collect();
        assert_eq!(due, vec![10, 30]);
        // Wanting again keeps the earlier ask time.
        q.want(20, at(0), at(200));
        q.want(20, at(0), at(40));
        assert_eq!(q.due(at(45), 8).len(), 2);
    }

    #[test]
    fn a_block_is_asked_for_at_most_max_asks_times() {
        let mut q = RepairQueue::new(16);
        q.want(5, at(0), at(0));
        for i in 0..MAX_ASKS {
            assert_eq!(q.due(at(u64::from(i) * 100), 8).len(), 1, "ask {i}");
            q.asked(5, at(u64::from(i) * 100), 100_000);
        }
        assert!(q.is_empty());
        assert_eq!(q.given_up(), 1);
    }

    #[test]
    fn arrival_and_playback_clear_wants_and_the_queue_is_bounded() {
        let mut q = RepairQueue::new(3);
        for s in 0..5 {
            q.want(s, at(0), at(0));
        }
        assert_eq!((q.len(), q.overflow()), (3, 2));
        assert!(q.got(1).is_some());
        assert!(q.got(1).is_none());
        q.forget_below(2);
        assert_eq!(q.len(), 1);
        assert!(q.is_wanted(2));
        assert_eq!(q.given_up(), 1);
    }
}
