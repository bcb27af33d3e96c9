//! The data plane's report to the control plane: the BLOCKs the workers
//! verified.
//!
//! In the relay, BLOCKs bypass the kernel socket, so the control plane (the
//! peer state machine that keeps the connections) would never see one. Each
//! worker therefore copies every verified block into an [`Uplink`] slot: a
//! fresh block as the full datagram it fans out (signature and whole proof
//! path, so the control plane can check and store it on its own), a
//! duplicate as received (so a download that only repeats what another
//! brought still counts as alive). The control plane feeds them to its
//! state machine, which keeps its store, HAVE announcements, catch-up and
//! congestion rules as on a kernel socket. Slots are allocated once and
//! move between two lock-free bounded queues (free and filled), so sending
//! never allocates and never blocks: with no free slot the report is
//! dropped and counted, and the data plane goes on.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::wire::MAX_DATAGRAM;

/// Default slots: about a second of a 2 Mbit/s stream's blocks sixteen
/// times over, 5 MiB of memory.
pub const DEFAULT_UPLINK_SLOTS: usize = 4096;

/// One reported datagram.
struct Slot {
    from: SocketAddrV4,
    len: usize,
    data: [u8; MAX_DATAGRAM],
}

struct Shared {
    free: ArrayQueue<Box<Slot>>,
    filled: ArrayQueue<Box<Slot>>,
    dropped: AtomicU64,
}

/// The workers' end: cloneable, one per worker.
#[derive(Clone)]
pub struct UplinkSender {
    shared: Arc<Shared>,
}

/// The control plane's end.
pub struct Uplink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("pending", &self.shared.filled.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl std::fmt::Debug for UplinkSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkSender").finish_non_exhaustive()
    }
}

impl Uplink {
    /// An uplink of `slots` (at least 1) preallocated datagram slots and a
    /// sender for the workers.
    pub fn new(slots: usize) -> (Uplink, UplinkSender) {
        let slots = slots.max(1);
        let free = ArrayQueue::new(slots);
        for _ in 0..slots {
            let slot = Box::new(Slot {
                from: SocketAddrV4::new([0, 0, 0, 0].into(), 0),
                len: 0,
                data: [0; MAX_DATAGRAM],
            });
            // The queue holds exactly `slots`: this never fails.
            let _ = free.push(slot);
        }
        let shared = Arc::new(Shared {
            free,
            filled: ArrayQueue::new(slots),
            dropped: AtomicU64::new(0),
        });
        (
            Uplink {
                shared: Arc::clone(&shared),
            },
            UplinkSender { shared },
        )
    }

    /// Hands every reported datagram, oldest first, to `take(from, bytes)`
    /// and frees its slot. Returns how many there were.
    pub fn drain(&self, mut take: impl FnMut(SocketAddrV4, &[u8])) -> usize {
        let mut n = 0;
        while let Some(slot) = self.shared.filled.pop() {
            take(slot.from, &slot.data[..slot.len]);
            n += 1;
            // Every slot came off the free queue, so there is room.
            let _ = self.shared.free.push(slot);
        }
        n
    }

    /// Reports dropped so far because every slot was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl UplinkSender {
    /// Reports `bytes` (cut to a datagram's size) received from `from`.
    /// Returns false, and counts a drop, if no slot is free. Never blocks
    /// and never allocates.
    pub fn send(&self, from: SocketAddrV4, bytes: &[u8]) -> bool {
        let Some(mut slot) = self.shared.free.pop() else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let len = bytes.len().min(MAX_DATAGRAM);
        slot.from = from;
        slot.len = len;
        slot.data[..len].copy_from_slice(&bytes[..len]);
        // Slots are either free, filled or held here: there is room.
        let _ = self.shared.filled.push(slot);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, 1].into(), port)
    }

    #[test]
    fn datagrams_arrive_in_order_and_slots_are_reused() {
        let (uplink, tx) = Uplink::new(2);
        assert!(tx.send(addr(1), b"one"));
        assert!(tx.send(addr(2), b"two"));
        assert!(!tx.send(addr(3), b"three"), "only two slots");
        assert_eq!(uplink.dropped(), 1);
        let mut seen = Vec::new();
        assert_eq!(uplink.drain(|f, b| seen.push((f, b.to_vec()))), 2);
        assert_eq!(
            seen,
            vec![(addr(1), b"one".to_vec()), (addr(2), b"two".to_vec())]
        );
        assert!(tx.send(addr(4), b"four"), "drained slots are free again");
        assert_eq!(uplink.drain(|_, b| assert_eq!(b, b"four")), 1);
    }

    #[test]
    fn oversize_input_is_cut_to_a_datagram() {
        let (uplink, tx) = Uplink::new(1);
        assert!(tx.send(addr(1), &[7u8; MAX_DATAGRAM + 100]));
        uplink.drain(|_, b| assert_eq!(b.len(), MAX_DATAGRAM));
    }
}
