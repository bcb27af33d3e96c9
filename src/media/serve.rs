//! A peer's players: its media output and HTTP endpoint, fed from its
//! playback clock.
//!
//! [`PeerStream`] pairs a [`MediaOutput`] with an [`HttpServer`]. The
//! driver calls [`PeerStream::service`] between runs of the peer (every few
//! milliseconds): new players are connected and every block the peer's
//! playback clock released (`Peer::poll_played`; the peer must be made with
//! `emit_played`) goes to them.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::http::HttpServer;
use super::output::{MediaOutput, OutputStats};
use crate::roles::Peer;

/// How long a player waits for the stream to begin before it gets 503.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A peer's players (see the module documentation).
#[derive(Debug)]
pub struct PeerStream {
    // Dropped first: the players' queues end, then the server waits for
    // them to be written out.
    output: MediaOutput,
    server: HttpServer,
}

impl PeerStream {
    /// Serves `/stream` on `addr`.
    pub fn start(addr: SocketAddr) -> io::Result<Self> {
        Ok(PeerStream {
            server: HttpServer::start(addr, START_TIMEOUT)?,
            output: MediaOutput::new(),
        })
    }

    /// Where players connect.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connects new players and hands them what `peer` played, at `now_us`.
    pub fn service(&mut self, peer: &mut Peer, now_us: u64) {
        self.server.accept(&mut self.output);
        while let Some(block) = peer.poll_played() {
            self.output.play(now_us, block.payload.as_deref());
        }
    }

    /// The output's counters.
    pub fn stats(&self) -> OutputStats {
        self.output.stats()
    }

    /// The output (players, latency).
    pub fn output(&self) -> &MediaOutput {
        &self.output
    }
}
