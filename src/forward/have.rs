//! What a receiver said it holds, readable from another thread.
//!
//! [0046]-[0047]: a downloader sends HAVE to its in-club uploaders so they
//! skip blocks it already has. The peer keeps each upload's recent HAVEs
//! in a [`HaveBoard`]; in the relay the same board is handed to the AF_XDP
//! workers through the fan-out table, so the data plane skips those
//! copies too. One thread writes (the control plane), any may read; a
//! board is a fixed ring of atomics, so neither side allocates, locks or
//! waits. A read that races a write may miss the newest HAVE: the copy
//! then goes out, as it would have without the HAVE.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Recent HAVEs kept per receiver.
pub const HAVE_WINDOW: usize = 64;

/// Marks an empty slot (no sequence number gets that high).
const EMPTY: u64 = u64::MAX;

/// The last [`HAVE_WINDOW`] sequence numbers a receiver announced.
#[derive(Debug)]
pub struct HaveBoard {
    seqs: [AtomicU64; HAVE_WINDOW],
    next: AtomicUsize,
}

impl Default for HaveBoard {
    fn default() -> Self {
        HaveBoard {
            seqs: std::array::from_fn(|_| AtomicU64::new(EMPTY)),
            next: AtomicUsize::new(0),
        }
    }
}

impl HaveBoard {
    /// Records `seq`, forgetting the oldest (one writer at a time).
    pub fn insert(&self, seq: u64) {
        if seq == EMPTY || self.contains(seq) {
            return;
        }
        let i = self.next.load(Ordering::Relaxed);
        self.seqs[i % HAVE_WINDOW].store(seq, Ordering::Relaxed);
        self.next.store((i + 1) % HAVE_WINDOW, Ordering::Relaxed);
    }

    /// True when `seq` was announced recently.
    pub fn contains(&self, seq: u64) -> bool {
        seq != EMPTY && self.seqs.iter().any(|s| s.load(Ordering::Relaxed) == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_window_of_announcements() {
        let b = HaveBoard::default();
        assert!(!b.contains(0));
        for s in 0..100 {
            b.insert(s);
        }
        assert!(!b.contains(35));
        assert!((36..100).all(|s| b.contains(s)));
        // Announcing again does not push anything out.
        b.insert(99);
        assert!(b.contains(36));
    }

    #[test]
    fn another_thread_sees_what_was_announced() {
        let b = std::sync::Arc::new(HaveBoard::default());
        let w = std::sync::Arc::clone(&b);
        std::thread::spawn(move || w.insert(7))
            .join()
            .expect("writer");
        assert!(b.contains(7));
    }
}
