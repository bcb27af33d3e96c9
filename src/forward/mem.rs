//! A [`CopySink`] that keeps each copy as a datagram in memory: the relay
//! forwarding core on a kernel socket (the driver sends the queue with
//! `sendmmsg`) and in the simulator, and its tests without root.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::fanout::{CopyError, CopySink};
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
        self.queue
            .push_back((SocketAddr::V4(to.addr), datagram.to_vec()));
        Ok(())
    }

    fn flush(&mut self) {
        self.flushes += 1;
    }
}
