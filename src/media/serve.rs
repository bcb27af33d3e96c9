//! A peer's players: its media output and HTTP endpoint, fed from its
//! playback clock.
//!
//! [`PeerStream`] pairs a [`MediaOutput`] with an [`HttpServer`]. The
//! driver calls [`PeerStream::service`] between runs of the peer (every few
//! milliseconds): new players are connected, every block the peer's
//! playback clock released (`Peer::poll_played`; the peer must be made with
//! `emit_played`) goes to them and to the HLS segmenter, and twice a second
//! the peer's health is published for `/status.json`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::http::HttpServer;
use super::output::{MediaOutput, OutputStats};
use crate::roles::Peer;

/// How often the status is published, µs.
const STATUS_EVERY_US: u64 = 500_000;

/// How long a player waits for the stream to begin before it gets 503.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A peer's players (see the module documentation).
#[derive(Debug)]
pub struct PeerStream {
    // Dropped first: the players' queues end, then the server waits for
    // them to be written out.
    output: MediaOutput,
    server: HttpServer,
    status_at: u64,
}

impl PeerStream {
    /// Serves `/stream`, HLS with segments of about `segment_target_us`,
    /// and the page on `addr`.
    pub fn start(addr: SocketAddr, segment_target_us: u64) -> io::Result<Self> {
        let output = MediaOutput::with_segment_target(segment_target_us);
        Ok(PeerStream {
            server: HttpServer::start(addr, START_TIMEOUT, output.hls())?,
            output,
            status_at: 0,
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
        if now_us >= self.status_at + STATUS_EVERY_US {
            self.status_at = now_us;
            self.server
                .publish_status(status_json(peer, self.output.players()));
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

/// The peer's health for the page: clubs, reachability, connections,
/// continuity, upload rate and block delay.
pub fn status_json(peer: &Peer, players: usize) -> String {
    let c = peer.connections();
    let d = peer.delays_us();
    let clubs: Vec<String> = peer.clubs().iter().map(u16::to_string).collect();
    format!(
        "{{\"clubs\":[{}],\"reach\":\"{}\",\"downloads\":{},\"uploads\":{},\"continuity\":{:.4},\"upload_bps\":{:.0},\"delay_ms_p50\":{:.1},\"delay_ms_p99\":{:.1},\"players\":{}}}",
        clubs.join(","),
        peer.nat_type().name(),
        c.downloads.len(),
        c.uploads.len(),
        peer.playout_stats().continuity(),
        peer.upload_bps(),
        d.value_at_quantile(0.5) as f64 / 1000.0,
        d.value_at_quantile(0.99) as f64 / 1000.0,
        players,
    )
}
