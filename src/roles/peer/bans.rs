//! The ban list ([0039], [0054]-[0055]).
//!
//! A peer that drops a connection for congestion (delay, sequence gap,
//! silence, missing keep-alives) bans the other side. Those rules judge on
//! rates and lasting delays, so a ban follows only a real fault, never a
//! random loss or a short stall. Banned peers are not
//! chosen for new connections and their requests are refused. Every sweep
//! period (5 s) each banned peer leaves the list with probability 1/8, the
//! seed's roll of an eight-sided die. The list is bounded; when full, the
//! oldest ban is forgotten.

use std::collections::VecDeque;
use std::net::SocketAddr;

use rand::Rng;

/// A bounded ban list with random parole.
#[derive(Debug, Clone)]
pub struct BanList {
    banned: VecDeque<SocketAddr>,
    capacity: usize,
    parole_one_in: u32,
}

impl BanList {
    /// A list of at most `capacity` peers, each paroled with probability
    /// `1 / parole_one_in` per sweep (seed: 8).
    pub fn new(capacity: usize, parole_one_in: u32) -> Self {
        BanList {
            banned: VecDeque::new(),
            capacity: capacity.max(1),
            parole_one_in: parole_one_in.max(1),
        }
    }

    /// Bans `addr`; false when it was banned already.
    pub fn ban(&mut self, addr: SocketAddr) -> bool {
        if self.banned.contains(&addr) {
            return false;
        }
        if self.banned.len() >= self.capacity {
            self.banned.pop_front();
        }
        self.banned.push_back(addr);
        true
    }

    /// True while `addr` is banned.
    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.banned.contains(addr)
    }

    /// Number of banned peers.
    pub fn len(&self) -> usize {
        self.banned.len()
    }

    /// True when nobody is banned.
    pub fn is_empty(&self) -> bool {
        self.banned.is_empty()
    }

    /// One sweep: each banned peer leaves with probability 1/8 ([0055]).
    pub fn sweep(&mut self, rng: &mut impl Rng) {
        let one_in = self.parole_one_in;
        self.banned.retain(|_| rng.random_range(0..one_in) != 0);
    }
}
