//! Upload order: in-club first, one out-of-club send after nine in a row
//! ([0048]).
//!
//! Blocks to forward wait in two queues. The drain takes from the in-club
//! queue, except that after `in_club_run` in-club sends in a row it takes
//! one out-of-club send if one waits, so uploads to other clubs are never
//! starved. The peer drains them only as fast as its uplink pacer allows,
//! so on a slow uplink the queues fill and the order matters; both queues
//! are bounded and count what they drop.

use std::collections::VecDeque;

/// Where a queued send goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// To a peer in the block's club.
    InClub,
    /// To a peer of another club.
    OutOfClub,
}

/// Two bounded queues drained with the 9:1 rule.
#[derive(Debug, Clone)]
pub struct SendScheduler<T> {
    in_club: VecDeque<T>,
    out_of_club: VecDeque<T>,
    in_club_run: u32,
    run: u32,
    capacity: usize,
    dropped: u64,
}

impl<T> SendScheduler<T> {
    /// Queues of `capacity` items each; one out-of-club send after every
    /// `in_club_run` in-club sends (seed: 9).
    pub fn new(capacity: usize, in_club_run: u32) -> Self {
        SendScheduler {
            in_club: VecDeque::new(),
            out_of_club: VecDeque::new(),
            in_club_run: in_club_run.max(1),
            run: 0,
            capacity,
            dropped: 0,
        }
    }

    /// Queues `item` on `lane`; false (and counted) when that queue is full.
    pub fn push(&mut self, lane: Lane, item: T) -> bool {
        let q = match lane {
            Lane::InClub => &mut self.in_club,
            Lane::OutOfClub => &mut self.out_of_club,
        };
        if q.len() >= self.capacity {
            self.dropped += 1;
            return false;
        }
        q.push_back(item);
        true
    }

    /// The next item to send, by the 9:1 rule.
    pub fn pop(&mut self) -> Option<(Lane, T)> {
        self.pop_ready(|_| true)
    }

    /// The next item to send, by the 9:1 rule, taking the in-club queue's
    /// head only if `ready` says it may go now (the items behind it wait
    /// with it).
    pub fn pop_ready(&mut self, ready: impl Fn(&T) -> bool) -> Option<(Lane, T)> {
        let in_club_ready = self.in_club.front().is_some_and(&ready);
        let take_out = self.run >= self.in_club_run || !in_club_ready;
        if take_out {
            if let Some(item) = self.out_of_club.pop_front() {
                self.run = 0;
                return Some((Lane::OutOfClub, item));
            }
        }
        if !in_club_ready {
            return None;
        }
        let item = self.in_club.pop_front()?;
        self.run += 1;
        Some((Lane::InClub, item))
    }

    /// The item at the head of each queue (the oldest of each).
    pub fn fronts(&self) -> impl Iterator<Item = &T> {
        self.in_club
            .front()
            .into_iter()
            .chain(self.out_of_club.front())
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.in_club.len() + self.out_of_club.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items dropped because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
