//! The `mem` backend: packets as queues in memory.
//!
//! [`DatagramQueue`] is a [`CopySink`] that keeps each copy as a datagram:
//! the relay's forwarding core inline in the control plane (the node's
//! driver sends the queue, on a kernel socket or in the simulator).
//! [`MemIo`] is the whole [`PacketIo`] backend, datagrams pushed in and
//! copies popped out, so the forwarding loop runs in tests without root.

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};

use super::packet::{Burst, Datagram, OnBurst, PacketIo};
use crate::forward::{CopyError, CopySink};
use crate::relay::fanout::Subscriber;
use crate::wire::MAX_DATAGRAM;

/// Copies waiting to be sent, bounded.
#[derive(Debug, Clone)]
pub struct DatagramQueue {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    capacity: usize,
    flushes: u64,
}

impl DatagramQueue {
    /// A queue of at most `capacity` copies.
    pub fn new(capacity: usize) -> Self {
        DatagramQueue {
            queue: VecDeque::new(),
            capacity,
            flushes: 0,
        }
    }

    /// The oldest copy, to send.
    pub fn pop(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.queue.pop_front()
    }

    /// Copies waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no copy waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Blocks whose copies were completed.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }
}

impl CopySink for DatagramQueue {
    fn begin(&mut self, _datagram: &[u8]) {}

    fn copy(&mut self, to: &Subscriber, datagram: &[u8]) -> Result<(), CopyError> {
        if self.queue.len() >= self.capacity {
            return Err(CopyError::NoBuffer);
        }
        if datagram.len() > MAX_DATAGRAM {
            return Err(CopyError::TooLarge);
        }
        let mut copy = datagram.to_vec();
        crate::wire::set_block_tag(&mut copy, to.tag);
        self.queue.push_back((SocketAddr::V4(to.addr), copy));
        Ok(())
    }

    fn flush(&mut self, _parked_us: u64) {
        self.flushes += 1;
    }
}

/// The in-memory [`PacketIo`] backend: a bounded inbound queue that a test
/// or the simulator fills, and a [`DatagramQueue`] of copies it drains.
#[derive(Debug, Clone)]
pub struct MemIo {
    inbound: VecDeque<(SocketAddrV4, Vec<u8>)>,
    inbound_capacity: usize,
    /// The datagrams of the receive in progress, taken off `inbound`
    /// (kept, so its room is reused).
    taken: Vec<(SocketAddrV4, Vec<u8>)>,
    copies: DatagramQueue,
    refused: u64,
    received: u64,
}

impl MemIo {
    /// At most `inbound` datagrams waiting to be received and `copies`
    /// copies waiting to be taken.
    pub fn new(inbound: usize, copies: usize) -> Self {
        MemIo {
            inbound: VecDeque::new(),
            inbound_capacity: inbound,
            taken: Vec::new(),
            copies: DatagramQueue::new(copies),
            refused: 0,
            received: 0,
        }
    }

    /// `datagram` arrives from `from`; false (and counted) when the inbound
    /// queue is full, as a full receive buffer drops it.
    pub fn push(&mut self, from: SocketAddrV4, datagram: &[u8]) -> bool {
        if self.inbound.len() >= self.inbound_capacity {
            self.refused += 1;
            return false;
        }
        self.inbound.push_back((from, datagram.to_vec()));
        true
    }

    /// The copies sent so far and not yet taken.
    pub fn copies(&mut self) -> &mut DatagramQueue {
        &mut self.copies
    }

    /// Datagrams received, and datagrams refused for a full queue.
    pub fn counts(&self) -> (u64, u64) {
        (self.received, self.refused)
    }
}

impl PacketIo for MemIo {
    type Tx = DatagramQueue;

    /// Nothing to take back: a copy leaves memory when it is popped.
    fn reclaim(&mut self) {}

    fn receive_batch(&mut self, max: usize, each: &mut OnBurst<'_, DatagramQueue>) -> usize {
        let n = max.min(self.inbound.len());
        self.taken.clear();
        self.taken.extend(self.inbound.drain(..n));
        let mut burst = Burst::new();
        for (from, datagram) in &self.taken {
            let gram = Datagram {
                from: *from,
                payload: datagram,
            };
            burst.push(gram, &mut self.copies, each);
        }
        burst.hand_over(&mut self.copies, each);
        self.received += n as u64;
        n
    }

    /// Copies are sent as they are made: they wait in [`MemIo::copies`].
    fn send_batch(&mut self) {}
}
