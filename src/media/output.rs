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
//! and ignored. The ingest-to-output latency of every block goes into a
//! histogram: glass-to-glass, up to the player's own buffer.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::flv::FILE_HEADER;
use super::header::{Container, MediaHeader};

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

struct Player {
    tx: SyncSender<Chunk>,
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
}

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
    /// An output with no player and no media yet.
    pub fn new() -> Self {
        MediaOutput {
            container: None,
            group: Vec::new(),
            group_bytes: 0,
            group_valid: false,
            players: Vec::new(),
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .unwrap_or_else(|_| unreachable!("constant, valid bounds")),
            stats: OutputStats::default(),
        }
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
            opened: false,
            playing: false,
        };
        if let (true, Some(container)) = (self.group_valid, self.container) {
            let mut ok = open(&mut p, container);
            for chunk in &self.group {
                ok = ok && send(&p, Chunk::Bytes(Arc::clone(chunk)));
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
            match p.tx.try_send(Chunk::Bytes(Arc::clone(&chunk))) {
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

/// Sends the start (and the FLV file header) to a player.
fn open(p: &mut Player, container: Container) -> bool {
    p.opened = true;
    let mut ok = send(p, Chunk::Start(container));
    if container == Container::Flv {
        ok = ok && send(p, Chunk::Bytes(Arc::from(&FILE_HEADER[..])));
    }
    ok
}

fn send(p: &Player, chunk: Chunk) -> bool {
    p.tx.try_send(chunk).is_ok()
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
        out.play(0, Some(&block(Container::Ts, true, b"a")));
        out.play(0, None);
        out.play(0, Some(&block(Container::Ts, false, b"b")));
        out.play(0, Some(&block(Container::Ts, true, b"c")));
        assert_eq!(
            got(&rx),
            vec![Chunk::Start(Container::Ts), bytes(b"a"), bytes(b"c")]
        );
        assert_eq!(out.stats().skipped, 1);
    }

    #[test]
    fn a_stalled_player_is_dropped_and_the_others_go_on() {
        let mut out = MediaOutput::new();
        let (slow_tx, _slow) = sync_channel(2);
        let (tx, rx) = sync_channel(64);
        out.add_player(slow_tx);
        out.add_player(tx);
        for i in 0..10u8 {
            out.play(0, Some(&block(Container::Ts, i == 0, &[i])));
        }
        assert_eq!(out.stats().dropped_slow, 1);
        assert_eq!(out.players(), 1);
        assert_eq!(got(&rx).len(), 11, "start and ten blocks");
        let raw: Vec<u8> = (0..64u32).map(|i| (i % 251) as u8).collect();
        out.play(0, Some(&raw));
        assert_eq!(out.stats().not_media, 1);
    }
}
