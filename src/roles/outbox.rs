//! Datagrams a role wants sent, in a bounded queue.
//!
//! Messages are encoded straight into fixed-size slots, so queuing never
//! allocates per datagram once the queue has grown to its working size. A
//! full queue drops the new datagram and counts it: a driver that falls
//! behind loses sends, never memory.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::wire::{Message, MAX_DATAGRAM};

/// One datagram to send.
#[derive(Clone)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    len: usize,
    buf: [u8; MAX_DATAGRAM],
}

impl Transmit {
    /// A datagram of raw bytes for `to`; `None` when longer than
    /// [`MAX_DATAGRAM`].
    pub fn new(to: SocketAddr, bytes: &[u8]) -> Option<Self> {
        let mut t = Transmit {
            to,
            len: bytes.len(),
            buf: [0; MAX_DATAGRAM],
        };
        t.buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(t)
    }

    /// The datagram's bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmit")
            .field("to", &self.to)
            .field("len", &self.len)
            .finish()
    }
}

/// A bounded queue of datagrams to send.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Transmit>,
    capacity: usize,
    dropped: u64,
}

impl Outbox {
    /// A queue holding at most `capacity` datagrams.
    pub fn new(capacity: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Encodes `msg` for `to`. Returns the datagram length, or `None`
    /// (and counts a drop) when the queue is full or the message does not
    /// encode.
    pub fn push(&mut self, to: SocketAddr, msg: &Message<'_>) -> Option<usize> {
        if self.queue.len() >= self.capacity {
            self.dropped += 1;
            return None;
        }
        let mut t = Transmit {
            to,
            len: 0,
            buf: [0; MAX_DATAGRAM],
        };
        match msg.encode(&mut t.buf) {
            Ok(len) => {
                t.len = len;
                self.queue.push_back(t);
                Some(len)
            }
            Err(_) => {
                self.dropped += 1;
                None
            }
        }
    }

    /// The next datagram to send.
    pub fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// Datagrams dropped because the queue was full or would not encode.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
