//! The sans-IO protocol roles: tracker, source and peer as state machines.
//!
//! A role is fed `(now, from, datagram)` and timer ticks and hands back
//! datagrams to send through `poll_transmit`; it owns no socket, reads no
//! clock and starts no thread, and takes its randomness from an injected
//! RNG. The same role then runs on kernel UDP, on AF_XDP, or in the
//! deterministic in-memory network of the tests.

mod outbox;
mod recommend;
pub mod tracker;

pub use outbox::{Outbox, Transmit};
pub use recommend::ClubRecommender;
pub use tracker::{Tracker, TrackerConfig, TrackerStats};

/// A point in time, in microseconds on the driver's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms.saturating_mul(1000)))
    }
}
