//! One live feed into a source: RTMP, MPEG-TS over UDP, or a pipe.
//!
//! [`IngestPump`] owns the feed's endpoint, its packer (FLV for RTMP,
//! MPEG-TS for UDP and pipes) and a [`BlockCutter`]. Each
//! [`IngestPump::pump`] takes what arrived (bounded work per call), turns it
//! into block payloads, and flushes a partial block once it is older than
//! `flush_us`, so a quiet moment does not hold media back. A publisher that
//! stops and comes back, or a UDP feed that falls silent for a second and
//! resumes, starts a new session: the packers learn the stream afresh and
//! the next block is marked as a restart. A publisher whose messages the
//! packer cannot take (an unsupported codec) is logged; the pump goes on.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::Receiver;

use super::cutter::BlockCutter;
use super::flv::FlvPacker;
use super::header::Container;
use super::rtmp::{Ingest, RtmpServer};
use super::ts::{TsPacker, TsStats};

/// Default age at which a partial block is sent anyway, µs.
pub const DEFAULT_FLUSH_US: u64 = 20_000;

/// Silence after which a UDP feed that resumes is a new session, µs.
const UDP_SESSION_GAP_US: u64 = 1_000_000;

/// Datagrams or events taken per pump.
const PER_PUMP: usize = 1024;

/// Largest UDP datagram read.
const UDP_BUF: usize = 65_536;

enum Feed {
    Rtmp(RtmpServer),
    Udp(UdpSocket),
    Pipe(Receiver<Vec<u8>>),
}

/// Counters of an ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Sessions begun (publishers, or UDP feeds after a silence).
    pub sessions: u64,
    /// Block payloads made.
    pub blocks: u64,
    /// Bytes of media taken in.
    pub bytes: u64,
    /// Messages the packer refused (logged).
    pub refused: u64,
    /// The MPEG-TS packer's counters (UDP and pipe feeds).
    pub ts: TsStats,
}

/// A live feed turned into block payloads (see the module documentation).
pub struct IngestPump {
    feed: Feed,
    buf: Vec<u8>,
    packing: Packing,
}

/// Everything but the feed: what a pump does with the input.
struct Packing {
    flv: FlvPacker,
    ts: TsPacker,
    cutter: BlockCutter,
    flush_us: u64,
    last_input_us: Option<u64>,
    stats: IngestStats,
}

impl std::fmt::Debug for IngestPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestPump")
            .field("stats", &self.packing.stats)
            .finish_non_exhaustive()
    }
}

impl IngestPump {
    fn new(feed: Feed, container: Container, block_bytes: usize) -> Self {
        IngestPump {
            feed,
            buf: Vec::new(),
            packing: Packing {
                flv: FlvPacker::new(),
                ts: TsPacker::new(),
                cutter: BlockCutter::new(container, block_bytes),
                flush_us: DEFAULT_FLUSH_US,
                last_input_us: None,
                stats: IngestStats::default(),
            },
        }
    }

    /// An RTMP endpoint on `addr` for publishers with the stream key
    /// `key`; blocks of `block_bytes`.
    pub fn rtmp(addr: SocketAddr, key: &str, block_bytes: usize) -> io::Result<Self> {
        let server = RtmpServer::start(addr, key)?;
        Ok(Self::new(Feed::Rtmp(server), Container::Flv, block_bytes))
    }

    /// MPEG-TS datagrams on `addr`.
    pub fn udp_ts(addr: SocketAddr, block_bytes: usize) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let _ =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
        let mut pump = Self::new(Feed::Udp(socket), Container::Ts, block_bytes);
        pump.buf = vec![0u8; UDP_BUF];
        Ok(pump)
    }

    /// MPEG-TS bytes from a pipe (a reader thread sends its chunks).
    pub fn pipe_ts(chunks: Receiver<Vec<u8>>, block_bytes: usize) -> Self {
        Self::new(Feed::Pipe(chunks), Container::Ts, block_bytes)
    }

    /// What the RTMP listener refused (RTMP feeds only).
    pub fn rtmp_counters(&self) -> Option<&super::rtmp::RtmpCounters> {
        match &self.feed {
            Feed::Rtmp(s) => Some(s.counters()),
            _ => None,
        }
    }

    /// Where the feed arrives (RTMP and UDP).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.feed {
            Feed::Rtmp(s) => Some(s.addr()),
            Feed::Udp(s) => s.local_addr().ok(),
            Feed::Pipe(_) => None,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> IngestStats {
        IngestStats {
            ts: self.packing.ts.stats(),
            ..self.packing.stats
        }
    }

    /// Sets the age at which a partial block is flushed.
    pub fn set_flush_us(&mut self, us: u64) {
        self.packing.flush_us = us;
    }

    /// Takes what arrived by `now_us`; `emit` gets each block payload.
    pub fn pump(&mut self, now_us: u64, mut emit: impl FnMut(Vec<u8>)) {
        let mut made = 0u64;
        let mut out = |p: Vec<u8>| {
            made += 1;
            emit(p)
        };
        let k = &mut self.packing;
        match &self.feed {
            Feed::Rtmp(server) => {
                for _ in 0..PER_PUMP {
                    let Some(event) = server.try_event() else {
                        break;
                    };
                    k.on_rtmp(now_us, event, &mut out);
                }
            }
            Feed::Udp(socket) => {
                for _ in 0..PER_PUMP {
                    let Ok(n) = socket.recv(&mut self.buf) else {
                        break;
                    };
                    if k.last_input_us
                        .is_none_or(|t| now_us.saturating_sub(t) > UDP_SESSION_GAP_US)
                    {
                        k.new_session(&mut out);
                    }
                    k.last_input_us = Some(now_us);
                    k.ts_bytes(now_us, &self.buf[..n], &mut out);
                }
            }
            Feed::Pipe(rx) => {
                for _ in 0..PER_PUMP {
                    let Ok(chunk) = rx.try_recv() else { break };
                    k.ts_bytes(now_us, &chunk, &mut out);
                }
            }
        }
        if k.cutter
            .pending_since_us()
            .is_some_and(|t| now_us.saturating_sub(t) >= k.flush_us)
        {
            k.cutter.flush(&mut out);
        }
        k.stats.blocks += made;
    }
}

impl Packing {
    fn ts_bytes(&mut self, now_us: u64, bytes: &[u8], out: &mut impl FnMut(Vec<u8>)) {
        self.stats.bytes += bytes.len() as u64;
        let cutter = &mut self.cutter;
        self.ts
            .push(bytes, |u, rap| cutter.push(now_us, u, rap, &mut *out));
    }

    fn new_session(&mut self, out: &mut impl FnMut(Vec<u8>)) {
        self.cutter.flush(&mut *out);
        self.cutter.restart();
        self.flv.new_session();
        self.ts.new_session();
        self.stats.sessions += 1;
    }

    fn on_rtmp(&mut self, now_us: u64, event: Ingest, out: &mut impl FnMut(Vec<u8>)) {
        let result = match event {
            Ingest::Started(name) => {
                println!("rtmp: publisher started: {name}");
                self.new_session(out);
                return;
            }
            Ingest::Stopped(why) => {
                println!("rtmp: publisher stopped: {why}; waiting for the next one");
                self.cutter.flush(&mut *out);
                return;
            }
            Ingest::Video(ts, body) => {
                self.stats.bytes += body.len() as u64;
                let cutter = &mut self.cutter;
                self.flv
                    .video(ts, &body, |u, rap| cutter.push(now_us, u, rap, &mut *out))
            }
            Ingest::Audio(ts, body) => {
                self.stats.bytes += body.len() as u64;
                let cutter = &mut self.cutter;
                self.flv
                    .audio(ts, &body, |u, rap| cutter.push(now_us, u, rap, &mut *out))
            }
        };
        if let Err(e) = result {
            self.stats.refused += 1;
            if self.stats.refused.is_power_of_two() {
                tracing::warn!(refused = self.stats.refused, "rtmp message refused: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::header::MediaHeader;
    use crate::media::ts::fixtures::{packet, pat, pmt};

    /// A PAT, a PMT (H.264 on PID 0x100) and a key-frame packet.
    fn ts_group() -> Vec<u8> {
        [pat(), pmt(), packet(0x100, true, true, &[0, 0, 1])].concat()
    }

    /// Sends one group to the pump and pumps at `now_us` until it is in.
    fn feed(pump: &mut IngestPump, tx: &UdpSocket, now_us: u64, blocks: &mut Vec<Vec<u8>>) {
        let to = pump.local_addr().expect("bound");
        tx.send_to(&ts_group(), to).expect("send");
        let before = pump.stats().bytes;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while pump.stats().bytes == before && std::time::Instant::now() < deadline {
            pump.pump(now_us, |p| blocks.push(p));
        }
        pump.pump(now_us + DEFAULT_FLUSH_US, |p| blocks.push(p));
    }

    #[test]
    fn a_udp_feed_that_resumes_after_a_silence_is_a_new_session() {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut pump = IngestPump::udp_ts(addr, 979).expect("bind");
        let tx = UdpSocket::bind(addr).expect("bind");
        let mut blocks = Vec::new();
        feed(&mut pump, &tx, 1_000_000, &mut blocks);
        feed(&mut pump, &tx, 1_100_000, &mut blocks);
        feed(&mut pump, &tx, 3_000_000, &mut blocks);
        let flags: Vec<(bool, bool)> = blocks
            .iter()
            .map(|b| {
                let (h, _) = MediaHeader::parse(b).expect("a media block");
                (h.rap, h.restart)
            })
            .collect();
        // The second group's tables go out as plain packets first (the
        // feed is running); a new session drops them until its key frame.
        assert_eq!(
            flags,
            vec![(true, true), (false, false), (true, false), (true, true)]
        );
        assert_eq!(pump.stats().sessions, 2);
    }
}
