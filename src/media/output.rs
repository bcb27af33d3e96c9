//! The peer's media output: played blocks to the bytes each player gets.
//!
//! [`MediaOutput`] takes the blocks the playback clock releases, in order
//! (a skipped block as `None`), and feeds every connected player through
//! its own bounded queue. A player starts at a random-access block: right
//! away from the group since the last one, which the output keeps (bounded),
//! or at the next. The first message a player gets names the container;
//! an FLV player then gets the FLV file header once. A skipped block breaks
//! the stream: every player waits for the next random-access block (FLV tag
//! boundaries are lost, and a decoder would misread what follows). A player
//! whose queue is full (stalled or too slow) is dropped and counted; the
//! peer never waits for one. Raw blocks without a media header are counted
//! and ignored. An MPEG-TS player that starts mid-stream gets no packet of
//! an elementary stream before that stream's first unit start: the audio
//! packets after a key frame may finish a PES begun before it, which a
//! decoder would reject. The ingest-to-output latency of every block goes into a
//! histogram: glass-to-glass, up to the player's own buffer.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use super::flv::FILE_HEADER;
use super::header::{Container, MediaHeader};
use super::hls::HlsSegmenter;
use super::ts::TS_PACKET;

/// Most bytes kept of the group since the last random-access block.
pub const MAX_GROUP_BYTES: usize = 8 << 20;

/// Largest latency the histogram tracks, µs (one minute).
const LATENCY_MAX_US: u64 = 60_000_000;

/// What a player's queue carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// The stream begins; its container (for the Content-Type).
    Start(Container),
    /// Stream bytes.
    Bytes(Arc<[u8]>),
}

/// Counters of the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// Media blocks played out.
    pub blocks: u64,
    /// Skipped blocks, each a break in the stream.
    pub skipped: u64,
    /// Blocks without a valid media header (raw feeds), ignored.
    pub not_media: u64,
    /// Players connected.
    pub players: u64,
    /// Players dropped because their queue was full.
    pub dropped_slow: u64,
    /// Players that went away.
    pub gone: u64,
}

/// Holds back, for a player that starts mid-stream, the MPEG-TS packets of
/// each PID until that PID's first unit start; retires itself once the
/// stream has run long enough for every PID to have started.
struct TsGate {
    started: Box<[u64; 128]>,
    packets_left: u32,
}

/// Packets a gate watches before it retires (a few seconds of a stream).
const GATE_PACKETS: u32 = 4096;

impl TsGate {
    fn new() -> Self {
        TsGate {
            started: Box::new([0; 128]),
            packets_left: GATE_PACKETS,
        }
    }

    /// `data` less the packets of PIDs not started yet; `None` when
    /// nothing is held back.
    fn filter(&mut self, data: &[u8]) -> Option<Arc<[u8]>> {
        let mut out: Option<Vec<u8>> = None;
        for (i, p) in data.chunks(TS_PACKET).enumerate() {
            self.packets_left = self.packets_left.saturating_sub(1);
            let pid = p.get(1..3).map_or(0x1FFF, |b| {
                (usize::from(b[0] & 0x1F) << 8) | usize::from(b[1])
            });
            let (word, bit) = (pid / 64, 1u64 << (pid % 64));
            if p.get(1).is_some_and(|b| b & 0x40 != 0) {
                self.started[word] |= bit;
            }
            let pass = self.started[word] & bit != 0;
            match (&mut out, pass) {
                (Some(o), true) => o.extend_from_slice(p),
                (Some(_), false) => {}
                (None, true) => {}
                (None, false) => out = Some(data[..i * TS_PACKET].to_vec()),
            }
        }
        out.map(Arc::from)
    }
}

struct Player {
    tx: SyncSender<Chunk>,
    gate: Option<TsGate>,
    /// Start and (for FLV) the file header were sent.
    opened: bool,
    /// Receiving blocks now (false until a random-access block, and again
    /// after a break).
    playing: bool,
}

/// The output of one peer (see the module documentation).
pub struct MediaOutput {
    container: Option<Container>,
    group: Vec<Arc<[u8]>>,
    group_bytes: usize,
    group_valid: bool,
    players: Vec<Player>,
    latency: Histogram<u64>,
    stats: OutputStats,
    hls: Arc<Mutex<HlsSegmenter>>,
}

/// HLS segments aim at this long by default, µs.
pub const SEGMENT_TARGET_US: u64 = 2_000_000;

impl std::fmt::Debug for MediaOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaOutput")
            .field("container", &self.container)
            .field("players", &self.players.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for MediaOutput {
    fn default() -> Self {
        Self::new()
    }
}

impl MediaOutput {
    /// An output with no player and no media yet, cutting HLS segments
    /// of [`SEGMENT_TARGET_US`].
    pub fn new() -> Self {
        Self::with_segment_target(SEGMENT_TARGET_US)
    }

    /// An output whose HLS segments aim at `target_us`.
    pub fn with_segment_target(target_us: u64) -> Self {
        MediaOutput {
            container: None,
            group: Vec::new(),
            group_bytes: 0,
            group_valid: false,
            players: Vec::new(),
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .unwrap_or_else(|_| unreachable!("constant, valid bounds")),
            stats: OutputStats::default(),
            hls: Arc::new(Mutex::new(HlsSegmenter::new(target_us))),
        }
    }

    /// The HLS segments, shared with the HTTP server (held only briefly).
    pub fn hls(&self) -> Arc<Mutex<HlsSegmenter>> {
        Arc::clone(&self.hls)
    }

    /// Counters so far.
    pub fn stats(&self) -> OutputStats {
        self.stats
    }

    /// Players connected now.
    pub fn players(&self) -> usize {
        self.players.len()
    }

    /// The container of the stream, once a media block was played.
    pub fn container(&self) -> Option<Container> {
        self.container
    }

    /// Ingest-to-output latency of the blocks played, µs.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Connects a player fed through `tx`. It starts at once if the
    /// output holds a whole group since a random-access block.
    pub fn add_player(&mut self, tx: SyncSender<Chunk>) {
        self.stats.players += 1;
        let mut p = Player {
            tx,
            gate: None,
            opened: false,
            playing: false,
        };
        if let (true, Some(container)) = (self.group_valid, self.container) {
            let mut ok = open(&mut p, container);
            for chunk in &self.group {
                ok = ok && p.send_bytes(chunk);
            }
            p.playing = true;
            if !ok {
                self.stats.dropped_slow += 1;
                return;
            }
        }
        self.players.push(p);
    }

    /// Plays the next block at `now_us`: its payload, or `None` if the
    /// playback clock skipped it.
    pub fn play(&mut self, now_us: u64, payload: Option<&[u8]>) {
        let Some(payload) = payload else {
            if let Ok(mut hls) = self.hls.lock() {
                hls.skip();
            }
            self.stats.skipped += 1;
            self.group_valid = false;
            self.group.clear();
            self.group_bytes = 0;
            for p in &mut self.players {
                p.playing = false;
            }
            return;
        };
        let Ok((header, data)) = MediaHeader::parse(payload) else {
            self.stats.not_media += 1;
            return;
        };
        self.stats.blocks += 1;
        let _ = self.latency.record(
            now_us
                .saturating_sub(header.ingest_us)
                .clamp(1, LATENCY_MAX_US),
        );
        if let Ok(mut hls) = self.hls.lock() {
            hls.push(&header, data);
        }
        let chunk: Arc<[u8]> = Arc::from(data);
        if header.rap {
            self.container = Some(header.container);
            self.group.clear();
            self.group_bytes = 0;
            self.group_valid = true;
        }
        if self.group_valid {
            self.group_bytes += chunk.len();
            if self.group_bytes > MAX_GROUP_BYTES {
                self.group_valid = false;
                self.group.clear();
                self.group_bytes = 0;
            } else {
                self.group.push(Arc::clone(&chunk));
            }
        }
        let container = header.container;
        let stats = &mut self.stats;
        self.players.retain_mut(|p| {
            if !p.playing && header.rap {
                p.playing = true;
                if !p.opened && !open(p, container) {
                    stats.dropped_slow += 1;
                    return false;
                }
            }
            if !p.playing {
                return true;
            }
            match p.try_send_bytes(&chunk) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    stats.dropped_slow += 1;
                    false
                }
                Err(TrySendError::Disconnected(_)) => {
                    stats.gone += 1;
                    false
                }
            }
        });
    }
}

impl Player {
    /// Queues stream bytes, through the MPEG-TS gate while it is on.
    fn try_send_bytes(&mut self, chunk: &Arc<[u8]>) -> Result<(), TrySendError<Chunk>> {
        let gated = self.gate.as_mut().and_then(|g| g.filter(chunk));
        if self.gate.as_ref().is_some_and(|g| g.packets_left == 0) {
            self.gate = None;
        }
        match gated {
            Some(g) if g.is_empty() => Ok(()),
            Some(g) => self.tx.try_send(Chunk::Bytes(g)),
            None => self.tx.try_send(Chunk::Bytes(Arc::clone(chunk))),
        }
    }

    fn send_bytes(&mut self, chunk: &Arc<[u8]>) -> bool {
        self.try_send_bytes(chunk).is_ok()
    }
}

/// Sends the start (and the FLV file header) to a player, and turns its
/// MPEG-TS gate on.
fn open(p: &mut Player, container: Container) -> bool {
    p.opened = true;
    let mut ok = p.tx.try_send(Chunk::Start(container)).is_ok();
    match container {
        Container::Flv => {
            ok = ok
                && p.tx
                    .try_send(Chunk::Bytes(Arc::from(&FILE_HEADER[..])))
                    .is_ok();
        }
        Container::Ts => p.gate = Some(TsGate::new()),
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{sync_channel, Receiver};

    fn block(container: Container, rap: bool, data: &[u8]) -> Vec<u8> {
        let mut b = MediaHeader {
            container,
            rap,
            restart: false,
            ingest_us: 1_000,
        }
        .to_bytes()
        .to_vec();
        b.extend_from_slice(data);
        b
    }

    fn got(rx: &Receiver<Chunk>) -> Vec<Chunk> {
        rx.try_iter().collect()
    }

    fn bytes(b: &[u8]) -> Chunk {
        Chunk::Bytes(Arc::from(b))
    }

    #[test]
    fn players_start_at_a_random_access_block_with_the_header() {
        let mut out = MediaOutput::new();
        let (tx, early) = sync_channel(64);
        out.add_player(tx);
        out.play(2_000, Some(&block(Container::Flv, false, b"mid")));
        out.play(2_000, Some(&block(Container::Flv, true, b"key")));
        out.play(2_000, Some(&block(Container::Flv, false, b"next")));
        assert_eq!(
            got(&early),
            vec![
                Chunk::Start(Container::Flv),
                bytes(&FILE_HEADER),
                bytes(b"key"),
                bytes(b"next")
            ]
        );
        // A late player gets the group since the key block at once.
        let (tx, late) = sync_channel(64);
        out.add_player(tx);
        assert_eq!(
            got(&late),
            vec![
                Chunk::Start(Container::Flv),
                bytes(&FILE_HEADER),
                bytes(b"key"),
                bytes(b"next")
            ]
        );
        assert_eq!(out.latency().len(), 3);
    }

    #[test]
    fn a_skip_holds_every_player_until_the_next_random_access_block() {
        let mut out = MediaOutput::new();
        let (tx, rx) = sync_channel(64);
        out.add_player(tx);
        out.play(0, Some(&block(Container::Flv, true, b"a")));
        out.play(0, None);
        out.play(0, Some(&block(Container::Flv, false, b"b")));
        out.play(0, Some(&block(Container::Flv, true, b"c")));
        assert_eq!(
            got(&rx),
            vec![
                Chunk::Start(Container::Flv),
                bytes(&FILE_HEADER),
                bytes(b"a"),
                bytes(b"c")
            ]
        );
        assert_eq!(out.stats().skipped, 1);
    }

    fn ts_packet(pid: u16, start: bool, tag: u8) -> Vec<u8> {
        let mut p = vec![tag; TS_PACKET];
        p[0] = 0x47;
        p[1] = ((pid >> 8) as u8) | if start { 0x40 } else { 0 };
        p[2] = pid as u8;
        p
    }

    #[test]
    fn a_ts_player_gets_no_packet_of_a_stream_before_its_first_unit_start() {
        let mut out = MediaOutput::new();
        let (tx, rx) = sync_channel(64);
        out.add_player(tx);
        let mut rap = ts_packet(0x100, true, 1);
        rap.extend(ts_packet(0x101, false, 2)); // audio PES begun earlier
        rap.extend(ts_packet(0x100, false, 3));
        out.play(0, Some(&block(Container::Ts, true, &rap)));
        let mut next = ts_packet(0x101, false, 4);
        next.extend(ts_packet(0x101, true, 5)); // audio starts here
        next.extend(ts_packet(0x101, false, 6));
        out.play(0, Some(&block(Container::Ts, false, &next)));
        let tags: Vec<u8> = got(&rx)
            .into_iter()
            .filter_map(|c| match c {
                Chunk::Bytes(b) => Some(b.chunks(TS_PACKET).map(|p| p[3]).collect::<Vec<_>>()),
                Chunk::Start(_) => None,
            })
            .flatten()
            .collect();
        assert_eq!(tags, vec![1, 3, 5, 6]);
    }

    #[test]
    fn a_stalled_player_is_dropped_and_the_others_go_on() {
        let mut out = MediaOutput::new();
        let (slow_tx, _slow) = sync_channel(2);
        let (tx, rx) = sync_channel(64);
        out.add_player(slow_tx);
        out.add_player(tx);
        for i in 0..10u8 {
            out.play(0, Some(&block(Container::Flv, i == 0, &[i])));
        }
        assert_eq!(out.stats().dropped_slow, 1);
        assert_eq!(out.players(), 1);
        assert_eq!(got(&rx).len(), 12, "start, file header and ten blocks");
        let raw: Vec<u8> = (0..64u32).map(|i| (i % 251) as u8).collect();
        out.play(0, Some(&raw));
        assert_eq!(out.stats().not_media, 1);
    }
}
