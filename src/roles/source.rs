//! The source ([0040]-[0045]) as a sans-IO state machine.
//!
//! Media bytes come in (from an ingest, or the built-in synthetic feed) and
//! are cut into numbered blocks of equal size; block n belongs to club
//! n mod C. Every `batch_blocks` blocks (or sooner, when the feed pauses)
//! the batch is signed, and each block goes to the source's two uploads in
//! its club. Connection handling, keep-alives and the proof ledgers are the
//! peer state machine's, run in `Mode::Source`. A decaying bit-rate
//! estimate ([0044]-[0045]) rides in every block.

use std::net::SocketAddr;

use rand::rngs::SmallRng;

use super::bitrate::{BitrateEstimator, DEFAULT_DECAY};
use super::peer::{Mode, Peer, PeerConfig};
use super::{Node, Time, Transmit};
use crate::auth::signer::HopFields;
use crate::auth::tree::max_depth;
use crate::auth::{BatchSigner, ProofPlan, SourceKey};
use crate::wire::Block;

/// Source settings.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Blocks per signed batch.
    pub batch_blocks: usize,
    /// Payload bytes per block (at most `Block::max_payload` for the
    /// batch's depth; larger values are clamped).
    pub payload_bytes: usize,
    /// A partial batch older than this is signed anyway, in ms.
    pub flush_ms: u64,
    /// Bit-rate estimate interval, in ms ([0044]).
    pub bitrate_interval_ms: u64,
    /// A synthetic feed of this many bits per second; `None` for pushed
    /// media only.
    pub synthetic_bps: Option<u64>,
    /// How often the synthetic feed produces bytes, in ms.
    pub feed_tick_ms: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            batch_blocks: crate::auth::DEFAULT_BATCH_BLOCKS,
            payload_bytes: usize::MAX,
            flush_ms: 200,
            bitrate_interval_ms: 1_000,
            synthetic_bps: None,
            feed_tick_ms: 5,
        }
    }
}

/// The source state machine.
pub struct Source {
    cfg: SourceConfig,
    peer: Peer,
    signer: BatchSigner,
    partial: Vec<u8>,
    cut: Vec<Vec<u8>>,
    cut_since: Option<Time>,
    next_seq: u64,
    next_batch: u64,
    estimator: BitrateEstimator,
    interval_start: Time,
    feed_start: Time,
    fed_bytes: u64,
    next_feed: Time,
    blocks_published: u64,
}

impl Source {
    /// A source signing with `key`; `peer_cfg` is switched to source mode.
    pub fn new(
        key: SourceKey,
        cfg: SourceConfig,
        mut peer_cfg: PeerConfig,
        now: Time,
        rng: SmallRng,
    ) -> Self {
        peer_cfg.mode = Mode::Source;
        let mut cfg = cfg;
        cfg.batch_blocks = cfg.batch_blocks.clamp(1, crate::auth::MAX_BATCH_BLOCKS);
        cfg.payload_bytes = cfg
            .payload_bytes
            .clamp(1, Block::max_payload(max_depth(cfg.batch_blocks as u16)));
        let initial = cfg.synthetic_bps.unwrap_or(0) as f64;
        Source {
            estimator: BitrateEstimator::new(
                cfg.bitrate_interval_ms * 1000,
                DEFAULT_DECAY,
                initial,
            ),
            peer: Peer::new(peer_cfg, now, rng),
            signer: BatchSigner::new(key),
            partial: Vec::new(),
            cut: Vec::new(),
            cut_since: None,
            next_seq: 0,
            next_batch: 0,
            interval_start: now,
            feed_start: now,
            fed_bytes: 0,
            next_feed: now,
            blocks_published: 0,
            cfg,
        }
    }

    /// The peer state machine underneath (connections, counters).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Blocks cut, signed and handed to the swarm so far.
    pub fn blocks_published(&self) -> u64 {
        self.blocks_published
    }

    /// The next sequence number to be cut.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The current bit-rate estimate, bits per second.
    pub fn bitrate_estimate(&self) -> f64 {
        self.estimator.estimate_bps()
    }

    /// Bytes of one block's payload (media framing included).
    pub fn block_bytes(&self) -> usize {
        self.cfg.payload_bytes
    }

    /// Appends one block's payload, already cut by a media ingest
    /// (`crate::media::BlockCutter`); longer payloads are cut short to
    /// [`Source::block_bytes`]. The batch is signed and sent when full.
    pub fn push_block(&mut self, now: Time, payload: &[u8]) {
        if !self.partial.is_empty() {
            // Raw bytes pushed before: their block goes first.
            let block = std::mem::take(&mut self.partial);
            self.cut_block(now, block);
        }
        let len = payload.len().min(self.cfg.payload_bytes);
        self.cut_block(now, payload[..len].to_vec());
    }

    fn cut_block(&mut self, now: Time, block: Vec<u8>) {
        self.cut.push(block);
        self.cut_since.get_or_insert(now);
        if self.cut.len() == self.cfg.batch_blocks {
            self.sign_and_send(now);
        }
    }

    /// Appends live media; full blocks are cut and full batches signed
    /// and sent ([0040]).
    pub fn push_media(&mut self, now: Time, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.cfg.payload_bytes - self.partial.len();
            let take = room.min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == self.cfg.payload_bytes {
                let block = std::mem::take(&mut self.partial);
                self.cut_block(now, block);
            }
        }
    }

    /// Signs the blocks cut so far as one batch and sends them.
    fn sign_and_send(&mut self, now: Time) {
        if self.cut.is_empty() {
            return;
        }
        let payloads: Vec<&[u8]> = self.cut.iter().map(Vec::as_slice).collect();
        let first_seq = self.next_seq;
        let Ok(signed) = self
            .signer
            .sign(self.next_batch, first_seq, now.0, &payloads)
        else {
            // Payloads are cut to the batch's limit, so signing cannot fail;
            // if it ever did, the batch is dropped rather than sent unsigned.
            self.cut.clear();
            self.cut_since = None;
            return;
        };
        let full = ProofPlan {
            signature: true,
            hashes: usize::MAX,
        };
        let clubs = u64::from(self.peer.club_count());
        let kbps = self.estimator.estimate_kbps();
        for index in 0..signed.count() {
            let seq = signed.seq(index);
            let hop = HopFields {
                club: (seq % clubs) as u16,
                sent_at_us: now.0,
                delay_threshold_ms: 0,
                bitrate_kbps: kbps,
            };
            let block = signed.block(index, full, hop);
            self.estimator.record(block.payload.len());
            self.peer.publish(now, &block, kbps);
            self.blocks_published += 1;
        }
        self.next_seq += u64::from(signed.count());
        self.next_batch += 1;
        self.cut.clear();
        self.cut_since = None;
    }

    fn feed(&mut self, now: Time) {
        let Some(bps) = self.cfg.synthetic_bps else {
            return;
        };
        if now < self.next_feed {
            return;
        }
        self.next_feed = now.plus_ms(self.cfg.feed_tick_ms);
        let due = (now.0 - self.feed_start.0) as u128 * u128::from(bps) / 8 / 1_000_000;
        let due = u64::try_from(due).unwrap_or(u64::MAX);
        let n = due.saturating_sub(self.fed_bytes).min(1 << 20) as usize;
        if n == 0 {
            return;
        }
        // A recognisable pattern: byte i of the feed is i mod 251.
        let bytes: Vec<u8> = (0..n as u64)
            .map(|i| ((self.fed_bytes + i) % 251) as u8)
            .collect();
        self.fed_bytes += n as u64;
        self.push_media(now, &bytes);
    }
}

impl Node for Source {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        self.peer.handle_datagram(now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.feed(now);
        if self
            .cut_since
            .is_some_and(|t| now.0 >= t.0 + self.cfg.flush_ms * 1000)
        {
            self.sign_and_send(now);
        }
        if now.0 >= self.interval_start.0 + self.cfg.bitrate_interval_ms * 1000 {
            self.interval_start = now;
            self.estimator.end_interval();
        }
        self.peer.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.peer.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Time> {
        let peer = self.peer.poll_timeout();
        let feed = self.cfg.synthetic_bps.map(|_| self.next_feed);
        let flush = self.cut_since.map(|t| t.plus_ms(self.cfg.flush_ms));
        [peer, feed, flush].into_iter().flatten().min()
    }

    fn leave(&mut self, now: Time) {
        self.peer.leave(now);
    }
}
