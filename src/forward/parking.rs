//! Blocks that cannot be checked yet, kept for a moment: one place for the
//! peer and the relay's forwarding core.
//!
//! A block whose proof builds on hashes that came in a datagram that is
//! late or lost ([`super::Verdict::Unverifiable`]) is not a forgery. It is
//! parked here, as the datagram it came in, and judged again each time
//! another block of its batch verifies, round after round while any parked
//! block verifies, since each may complete the proof of the next. A parked
//! block waits at most [`PARKED_US`]; with every slot taken the oldest is
//! evicted. Slots are allocated once, in [`ParkedBlocks::new`]: parking and
//! retrying allocate nothing.

use std::net::SocketAddr;

use super::Verdict;
use crate::wire::{Block, Message, MAX_DATAGRAM};

/// Blocks parked at most.
pub const PARKED_MAX: usize = 64;

/// How long a parked block waits, in microseconds.
pub const PARKED_US: u64 = 500_000;

/// One parked datagram.
struct Slot {
    live: bool,
    at_us: u64,
    from: SocketAddr,
    batch: u64,
    len: usize,
    bytes: Box<[u8; MAX_DATAGRAM]>,
}

/// What became of parked blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParkingStats {
    /// Blocks parked.
    pub parked: u64,
    /// Parked blocks that verified when judged again.
    pub verified_later: u64,
    /// Parked blocks judged again and rejected (stale, forged, ...).
    pub rejected_later: u64,
    /// Parked blocks evicted to make room.
    pub evicted: u64,
    /// Parked blocks forgotten after [`PARKED_US`].
    pub expired: u64,
}

/// Parked blocks; see the module comment.
pub struct ParkedBlocks {
    slots: Box<[Slot]>,
    live: usize,
    stats: ParkingStats,
}

impl Default for ParkedBlocks {
    /// No slot at all: parks nothing (and allocates nothing).
    fn default() -> Self {
        ParkedBlocks {
            slots: Box::new([]),
            live: 0,
            stats: ParkingStats::default(),
        }
    }
}

impl ParkedBlocks {
    /// Room for `capacity` blocks.
    pub fn new(capacity: usize) -> Self {
        let slots = (0..capacity)
            .map(|_| Slot {
                live: false,
                at_us: 0,
                from: SocketAddr::from(([0, 0, 0, 0], 0)),
                batch: 0,
                len: 0,
                bytes: Box::new([0u8; MAX_DATAGRAM]),
            })
            .collect();
        ParkedBlocks {
            slots,
            live: 0,
            stats: ParkingStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ParkingStats {
        self.stats
    }

    /// Blocks parked now.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parks `datagram`, a BLOCK of `batch` that `from` sent, at `now_us`;
    /// forgets blocks parked too long and, if no slot is free, the oldest.
    /// False when it could not be kept (no slot at all, or too long).
    pub fn park(&mut self, now_us: u64, from: SocketAddr, batch: u64, datagram: &[u8]) -> bool {
        self.expire(now_us);
        if datagram.len() > MAX_DATAGRAM {
            return false;
        }
        let free = self.slots.iter().position(|s| !s.live);
        let i = match free {
            Some(i) => {
                self.live += 1;
                i
            }
            None => {
                let Some(oldest) = (0..self.slots.len()).min_by_key(|&i| self.slots[i].at_us)
                else {
                    return false;
                };
                self.stats.evicted += 1;
                oldest
            }
        };
        let slot = &mut self.slots[i];
        slot.live = true;
        slot.at_us = now_us;
        slot.from = from;
        slot.batch = batch;
        slot.len = datagram.len();
        slot.bytes[..datagram.len()].copy_from_slice(datagram);
        self.stats.parked += 1;
        true
    }

    /// Forgets blocks parked [`PARKED_US`] or longer before `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        for slot in self.slots.iter_mut() {
            if slot.live && now_us >= slot.at_us.saturating_add(PARKED_US) {
                slot.live = false;
                self.live -= 1;
                self.stats.expired += 1;
            }
        }
    }

    /// Judges the parked blocks of `batch` again, round after round while
    /// any verifies. `judge` gets each block with when it was parked, who
    /// sent it and the datagram it came in, judges it and acts on the
    /// verdict; it returns the verdict. A block still unverifiable stays
    /// parked; every other leaves.
    pub fn retry(
        &mut self,
        batch: u64,
        mut judge: impl FnMut(u64, SocketAddr, &[u8], &Block<'_>) -> Verdict,
    ) {
        let mut progress = true;
        while progress {
            progress = false;
            for i in 0..self.slots.len() {
                let slot = &self.slots[i];
                if !slot.live || slot.batch != batch {
                    continue;
                }
                let datagram = &slot.bytes[..slot.len];
                let verdict = match Message::parse(datagram) {
                    Ok(Message::Block(block)) => judge(slot.at_us, slot.from, datagram, &block),
                    _ => Verdict::Forged,
                };
                match verdict {
                    Verdict::Unverifiable => continue,
                    Verdict::Fresh(_) | Verdict::Duplicate(_) => {
                        progress = true;
                        self.stats.verified_later += 1;
                    }
                    _ => self.stats.rejected_later += 1,
                }
                self.slots[i].live = false;
                self.live -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::signer::HopFields;
    use crate::auth::{BatchSigner, ProofPlan, SourceKey, Verified};

    fn from() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 9))
    }

    fn datagram(seq: u64) -> Vec<u8> {
        let payloads = [vec![1u8; 10], vec![2u8; 10]];
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let signed = BatchSigner::new(SourceKey::from_seed(&[1; 32]))
            .sign(seq / 2, seq, 0, &refs)
            .expect("signs");
        let hop = HopFields {
            club: 0,
            sent_at_us: seq,
            delay_threshold_ms: 0,
            bitrate_kbps: 0,
        };
        let plan = ProofPlan {
            signature: true,
            hashes: 1,
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        let len = Message::Block(signed.block(0, plan, hop))
            .encode(&mut buf)
            .expect("encodes");
        buf[..len].to_vec()
    }

    const OK: Verdict = Verdict::Fresh(Verified {
        fresh: true,
        batch_timestamp_us: 0,
    });

    #[test]
    fn a_full_lot_evicts_the_oldest_and_old_blocks_expire() {
        let mut p = ParkedBlocks::new(2);
        assert!(p.park(10, from(), 1, &datagram(10)));
        assert!(p.park(20, from(), 1, &datagram(20)));
        assert!(p.park(30, from(), 1, &datagram(30)));
        assert_eq!((p.len(), p.stats().evicted), (2, 1));
        let mut seen = Vec::new();
        p.retry(1, |at, _, _, b| {
            seen.push((at, b.sent_at_us));
            Verdict::Unverifiable
        });
        seen.sort_unstable();
        assert_eq!(seen, vec![(20, 20), (30, 30)], "the oldest went");
        p.expire(20 + PARKED_US);
        assert_eq!((p.len(), p.stats().expired), (1, 1));
    }

    #[test]
    fn retry_goes_round_while_blocks_verify_and_keeps_the_rest() {
        let mut p = ParkedBlocks::new(8);
        for seq in 0..4 {
            p.park(0, from(), 7, &datagram(seq));
        }
        p.park(0, from(), 8, &datagram(99));
        // Each round only the lowest parked block verifies; the others
        // wait for it, as a chain of proofs would.
        let mut next = 0;
        p.retry(7, |_, _, _, b| {
            if b.sent_at_us == next {
                next += 1;
                OK
            } else {
                Verdict::Unverifiable
            }
        });
        assert_eq!(next, 4, "every block of batch 7 verified in turn");
        assert_eq!((p.len(), p.stats().verified_later), (1, 4));
        p.retry(8, |_, _, _, _| Verdict::Forged);
        assert_eq!((p.len(), p.stats().rejected_later), (0, 1));
    }

    #[test]
    fn no_slot_parks_nothing() {
        let mut p = ParkedBlocks::default();
        assert!(!p.park(0, from(), 1, &datagram(1)));
        assert!(p.is_empty());
    }
}
