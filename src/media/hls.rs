//! HLS from every peer: the played stream cut into MPEG-TS segments at
//! random-access blocks, and a live playlist of the latest.
//!
//! [`HlsSegmenter`] takes each block the playback clock releases. An
//! MPEG-TS feed's bytes go into segments as they are; an RTMP feed's FLV
//! tags go through [`FlvToTs`]. A segment begins at a random-access block
//! (the source put a key frame with its decoder configuration, or a PAT and
//! PMT, at its front) and ends at the first random-access block at least
//! the target duration later, so a player that joins late starts at a key
//! frame. Durations come from the source's ingest times. A skipped block
//! ends the segment being built without keeping it, and the next one is
//! marked as a discontinuity, as is one after a feed restart. The last
//! [`SEGMENTS_KEPT`] segments are kept; older ones are gone (404). A
//! segment that grows past [`SEGMENT_MAX_BYTES`] (a feed without key
//! frames) is dropped, so nothing grows without bound.
//!
//! Plain HLS (version 3), not low-latency HLS: partial segments and
//! blocking playlist reloads would cut a player's delay, but the peer's
//! play delay already dominates, players that joins late need whole
//! segments at key frames anyway, and blocking requests would hold an HTTP
//! thread per waiting player. `--latency low` shortens the segments
//! instead.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

use super::flv_ts::FlvToTs;
use super::header::{Container, MediaHeader};

/// Segments kept for players.
pub const SEGMENTS_KEPT: usize = 6;

/// Largest segment kept.
pub const SEGMENT_MAX_BYTES: usize = 16 << 20;

/// A finished segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its sequence number (the playlist's media sequence).
    pub seq: u64,
    /// Its duration, µs.
    pub duration_us: u64,
    /// MPEG-TS packets.
    pub bytes: Arc<[u8]>,
    /// It follows a gap or a feed restart.
    pub discontinuity: bool,
}

/// A segment being built.
#[derive(Debug)]
struct Building {
    start_us: u64,
    bytes: Vec<u8>,
    discontinuity: bool,
}

/// Counters of the segmenter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HlsStats {
    /// Segments finished.
    pub segments: u64,
    /// Segments dropped unfinished: a skipped block, or too big.
    pub dropped: u64,
}

/// Cuts the played stream into segments (see the module documentation).
#[derive(Debug)]
pub struct HlsSegmenter {
    target_us: u64,
    building: Option<Building>,
    segments: VecDeque<Segment>,
    next_seq: u64,
    /// Discontinuities that left the playlist with their segments.
    discontinuity_seq: u64,
    /// The next segment follows a gap.
    gap: bool,
    mux: FlvToTs,
    stats: HlsStats,
}

impl HlsSegmenter {
    /// A segmenter aiming at segments of `target_us`.
    pub fn new(target_us: u64) -> Self {
        HlsSegmenter {
            target_us: target_us.max(1),
            building: None,
            segments: VecDeque::new(),
            next_seq: 0,
            discontinuity_seq: 0,
            gap: false,
            mux: FlvToTs::new(),
            stats: HlsStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> HlsStats {
        self.stats
    }

    /// Takes the next played block: its header and the bytes after it.
    pub fn push(&mut self, header: &MediaHeader, data: &[u8]) {
        if header.rap {
            let due = self
                .building
                .as_ref()
                .is_none_or(|b| header.ingest_us >= b.start_us + self.target_us);
            if due {
                self.finish(header.ingest_us);
                self.mux.reset();
                self.building = Some(Building {
                    start_us: header.ingest_us,
                    bytes: Vec::new(),
                    // The first segment follows nothing.
                    discontinuity: (std::mem::take(&mut self.gap) || header.restart)
                        && self.next_seq > 0,
                });
            }
        }
        let Some(b) = &mut self.building else {
            return;
        };
        match header.container {
            Container::Ts => b.bytes.extend_from_slice(data),
            Container::Flv => self.mux.push(data, &mut b.bytes),
        }
        if b.bytes.len() > SEGMENT_MAX_BYTES {
            self.drop_building();
        }
    }

    /// The next block was skipped: the segment being built is dropped.
    pub fn skip(&mut self) {
        self.drop_building();
    }

    fn drop_building(&mut self) {
        if self.building.take().is_some() {
            self.stats.dropped += 1;
        }
        self.gap = true;
    }

    /// Ends the segment being built at `end_us`, if it holds anything.
    fn finish(&mut self, end_us: u64) {
        let Some(b) = self.building.take() else {
            return;
        };
        if b.bytes.is_empty() {
            return;
        }
        self.segments.push_back(Segment {
            seq: self.next_seq,
            duration_us: end_us.saturating_sub(b.start_us),
            bytes: Arc::from(b.bytes),
            discontinuity: b.discontinuity,
        });
        self.next_seq += 1;
        self.stats.segments += 1;
        while self.segments.len() > SEGMENTS_KEPT {
            if self.segments.pop_front().is_some_and(|s| s.discontinuity) {
                self.discontinuity_seq += 1;
            }
        }
    }

    /// Segment `seq`, while it is kept.
    pub fn segment(&self, seq: u64) -> Option<Arc<[u8]>> {
        let first = self.segments.front()?.seq;
        let s = self
            .segments
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        Some(Arc::clone(&s.bytes))
    }

    /// The live playlist, once a segment is finished; segments are named
    /// `seg/<seq>.ts` relative to it.
    pub fn playlist(&self) -> Option<String> {
        let first = self.segments.front()?;
        let longest = self
            .segments
            .iter()
            .map(|s| s.duration_us)
            .max()
            .unwrap_or(0);
        let mut p = String::new();
        let _ = write!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            longest.div_ceil(1_000_000).max(1),
            first.seq,
            self.discontinuity_seq,
        );
        for s in &self.segments {
            if s.discontinuity {
                p.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = write!(
                p,
                "#EXTINF:{:.3},\nseg/{}.ts\n",
                s.duration_us as f64 / 1e6,
                s.seq
            );
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(rap: bool, ingest_us: u64) -> MediaHeader {
        MediaHeader {
            container: Container::Ts,
            rap,
            restart: false,
            ingest_us,
        }
    }

    /// Plays `seconds` of a TS feed with a key frame every `gop_ms`, one
    /// block each 100 ms, each block a byte of its index.
    fn feed(s: &mut HlsSegmenter, from_ms: u64, to_ms: u64, gop_ms: u64) {
        for ms in (from_ms..to_ms).step_by(100) {
            s.push(
                &header(ms % gop_ms == 0, ms * 1000),
                &[(ms / 100) as u8; 188],
            );
        }
    }

    #[test]
    fn segments_begin_at_random_access_blocks_and_last_the_target() {
        let mut s = HlsSegmenter::new(2_000_000);
        // Blocks before the first random-access block are not kept.
        s.push(&header(false, 0), &[9; 188]);
        feed(&mut s, 1_000, 9_000, 1_000);
        let p = s.playlist().expect("a playlist");
        assert!(p.starts_with("#EXTM3U\n"), "{p}");
        assert!(p.contains("#EXT-X-TARGETDURATION:2\n"), "{p}");
        assert!(p.contains("#EXTINF:2.000,\nseg/0.ts\n"), "{p}");
        assert_eq!(s.stats().segments, 3);
        let seg = s.segment(0).expect("segment 0");
        // Blocks 10 to 29: it starts at the key frame at 1 s.
        assert_eq!(seg.len(), 20 * 188);
        assert_eq!(seg[0], 10);
        assert!(s.segment(3).is_none(), "still being built");
    }

    #[test]
    fn old_segments_expire_and_a_gap_is_marked() {
        let mut s = HlsSegmenter::new(1_000_000);
        feed(&mut s, 0, 10_000, 1_000);
        assert_eq!(s.stats().segments, 9);
        assert!(s.segment(0).is_none(), "expired");
        assert!(s.segment(8).is_some());
        assert!(s.segment(u64::MAX).is_none());
        s.skip();
        assert_eq!(s.stats().dropped, 1);
        // Nothing is kept until the next random-access block.
        s.push(&header(false, 10_500_000), &[1; 188]);
        feed(&mut s, 11_000, 13_000, 1_000);
        let p = s.playlist().expect("a playlist");
        assert!(
            p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\nseg/9.ts"),
            "{p}"
        );
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{p}");
        // A segment of a feed with no key frame stops growing.
        let mut s = HlsSegmenter::new(1_000_000);
        s.push(&header(true, 0), &[0; 188]);
        for i in 0..(SEGMENT_MAX_BYTES / 65_536 + 1) {
            s.push(&header(false, i as u64), &[0; 65_536]);
        }
        assert_eq!(s.stats().dropped, 1);
        assert!(s.playlist().is_none());
    }
}
