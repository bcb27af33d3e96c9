//! The sans-IO protocol roles: tracker, source and peer as state machines.
//!
//! A role is fed `(now, from, datagram)` and timer ticks and hands back
//! datagrams to send through `poll_transmit`; it owns no socket, reads no
//! clock and starts no thread, and takes its randomness from an injected
//! RNG. The same role then runs on kernel UDP, on AF_XDP, or in the
//! deterministic in-memory network of the tests.

pub mod bitrate;
mod budget;
mod outbox;
pub mod peer;
mod recommend;
pub mod source;
pub mod token;
pub mod tracker;

pub use budget::TokenBucket;
pub use outbox::{Outbox, Transmit};
pub use peer::{Mode, Peer, PeerConfig, PeerEvent, PeerStats, PlayedBlock};
pub use recommend::ClubRecommender;
pub use source::{Source, SourceConfig};
pub use tracker::{Tracker, TrackerConfig, TrackerStats};

/// A sans-IO protocol participant, as drivers see it: the kernel-UDP
/// driver, the AF_XDP relay and the in-memory network all run roles through
/// this trait and nothing else.
pub trait Node {
    /// Feeds one datagram received from `from` at `now`.
    fn handle_datagram(&mut self, now: Time, from: std::net::SocketAddr, datagram: &[u8]);
    /// Called when the time from [`Node::poll_timeout`] has come.
    fn handle_timeout(&mut self, now: Time);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When [`Node::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Time>;
    /// The process is about to exit: say goodbye to everyone this node
    /// holds a connection with (a DROP with reason Leaving each), queued
    /// for [`Node::poll_transmit`]. Nothing by default.
    fn leave(&mut self, _now: Time) {}
}

/// A point in time in microseconds on the driver's clock: wall-clock time
/// since the UNIX epoch on real sockets (all roles on a machine share it, as
/// the one-way delay rule needs), simulated time in `sim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms.saturating_mul(1000)))
    }
}
