//! Which worker fans a block out, when a relay has several.
//!
//! Each worker verifies on its own and so learns a block's freshness only
//! for its own queue; the same block arriving from two senders on two
//! queues would be fanned out twice. [`ForwardClaims`] is shared by the
//! workers of one relay: before fanning a fresh block out, a worker claims
//! its sequence number, and only the first claim wins. It is a fixed ring
//! of atomic slots, one per sequence number modulo [`CLAIM_WINDOW`], each
//! holding the newest number claimed there; a number older than its slot's
//! holder is refused as stale. Lock-free, and nothing is allocated after
//! [`ForwardClaims::new`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Sequence numbers a claim ring covers (a minute of a 2 Mbit/s stream in
/// 1 KiB blocks is about 15,000).
pub const CLAIM_WINDOW: usize = 1 << 16;

/// Claims on sequence numbers, shared by the workers of one relay (see the
/// module documentation).
#[derive(Debug)]
pub struct ForwardClaims {
    /// Per slot: 1 + the newest sequence number claimed there, 0 if none.
    slots: Box<[AtomicU64]>,
}

impl Default for ForwardClaims {
    fn default() -> Self {
        Self::new()
    }
}

impl ForwardClaims {
    /// No claims yet.
    pub fn new() -> Self {
        ForwardClaims {
            slots: (0..CLAIM_WINDOW).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// True if this call is the first to claim `seq`; false if it was
    /// claimed before, or is older than a number claimed in its slot.
    pub fn claim(&self, seq: u64) -> bool {
        let Some(mark) = seq.checked_add(1) else {
            return false;
        };
        let slot = &self.slots[(seq % CLAIM_WINDOW as u64) as usize];
        let mut held = slot.load(Ordering::Acquire);
        loop {
            if held >= mark {
                return false;
            }
            match slot.compare_exchange_weak(held, mark, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_number_is_claimed_once_and_old_ones_are_refused() {
        let c = ForwardClaims::new();
        assert!(c.claim(7));
        assert!(!c.claim(7));
        assert!(
            c.claim(7 + CLAIM_WINDOW as u64),
            "a newer number in the slot"
        );
        assert!(!c.claim(7), "older than the slot's holder");
        assert!(c.claim(8));
        assert!(!c.claim(u64::MAX));
    }

    #[test]
    fn racing_workers_claim_each_number_exactly_once() {
        let c = Arc::new(ForwardClaims::new());
        let wins: Vec<u64> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || (0..50_000u64).filter(|&s| c.claim(s)).count() as u64)
            })
            .map(|t| t.join().expect("claimer"))
            .collect();
        assert_eq!(wins.iter().sum::<u64>(), 50_000);
    }
}
