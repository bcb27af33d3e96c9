//! Cutting a media feed into block payloads at the source.
//!
//! The ingest hands over *units*: an FLV tag, or an MPEG-TS packet, each
//! flagged when it begins a random-access point (a group that starts with
//! the decoder configuration and a key frame). [`BlockCutter`] packs units
//! into block payloads of at most `block_bytes` (media header included) so
//! that every random-access unit begins a block, marked `rap`: a peer that
//! joins late starts playing at such a block. FLV units are packed tightly
//! and may span blocks; MPEG-TS units (packets, or the PAT+PMT+packet group
//! of a random-access point) are never split, so every block holds whole
//! 188-byte packets. A block is emitted when full, when a random-access
//! unit arrives, or when the caller flushes it (the source does after a
//! short idle time, to bound latency).

use super::header::{Container, MediaHeader, MEDIA_HEADER_LEN};

/// Packs units into block payloads (see the module documentation).
#[derive(Debug, Clone)]
pub struct BlockCutter {
    container: Container,
    block_bytes: usize,
    buf: Vec<u8>,
    header: Option<MediaHeader>,
    restart_next: bool,
}

impl BlockCutter {
    /// A cutter for `container` making payloads of at most `block_bytes`
    /// bytes (raised to the header plus one MPEG-TS packet if smaller).
    pub fn new(container: Container, block_bytes: usize) -> Self {
        let block_bytes = block_bytes.max(MEDIA_HEADER_LEN + 188);
        BlockCutter {
            container,
            block_bytes,
            buf: Vec::with_capacity(block_bytes),
            header: None,
            restart_next: true,
        }
    }

    /// Marks the next block as the first of a new ingest session.
    pub fn restart(&mut self) {
        self.restart_next = true;
    }

    /// Media bytes one block holds.
    pub fn capacity(&self) -> usize {
        self.block_bytes - MEDIA_HEADER_LEN
    }

    /// When the partial block's first byte came, if one is pending.
    pub fn pending_since_us(&self) -> Option<u64> {
        self.header.map(|h| h.ingest_us)
    }

    /// Adds one unit received at `now_us`; `emit` gets every finished
    /// payload.
    pub fn push(&mut self, now_us: u64, unit: &[u8], rap: bool, mut emit: impl FnMut(Vec<u8>)) {
        let whole = self.container == Container::Ts && unit.len() <= self.capacity();
        let room = self.capacity() - self.buf.len().saturating_sub(MEDIA_HEADER_LEN);
        if self.header.is_some() && (rap || (whole && unit.len() > room)) {
            self.flush(&mut emit);
        }
        let mut rest = unit;
        let mut first = true;
        while !rest.is_empty() {
            if self.header.is_none() {
                self.begin(now_us, rap && first);
            }
            first = false;
            let room = self.block_bytes - self.buf.len();
            let take = room.min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == self.block_bytes {
                self.flush(&mut emit);
            }
        }
    }

    /// Emits the partial block, if any.
    pub fn flush(&mut self, mut emit: impl FnMut(Vec<u8>)) {
        let Some(header) = self.header.take() else {
            return;
        };
        let mut out = std::mem::replace(&mut self.buf, Vec::with_capacity(self.block_bytes));
        let mut bytes = [0u8; MEDIA_HEADER_LEN];
        header.write(&mut bytes);
        out[..MEDIA_HEADER_LEN].copy_from_slice(&bytes);
        emit(out);
    }

    fn begin(&mut self, now_us: u64, rap: bool) {
        self.header = Some(MediaHeader {
            container: self.container,
            rap,
            restart: std::mem::take(&mut self.restart_next),
            ingest_us: now_us,
        });
        self.buf.clear();
        self.buf.resize(MEDIA_HEADER_LEN, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(container: Container, block: usize, units: &[(Vec<u8>, bool)]) -> Vec<Vec<u8>> {
        let mut c = BlockCutter::new(container, block);
        let mut out = Vec::new();
        for (i, (u, rap)) in units.iter().enumerate() {
            c.push(i as u64, u, *rap, |p| out.push(p));
        }
        c.flush(|p| out.push(p));
        out
    }

    #[test]
    fn flv_units_pack_tightly_and_raps_start_blocks() {
        let units = vec![
            (vec![1u8; 300], true),
            (vec![2u8; 300], false),
            (vec![3u8; 300], false),
            (vec![4u8; 50], true),
        ];
        let blocks = cut(Container::Flv, 11 + 400, &units);
        let parsed: Vec<_> = blocks
            .iter()
            .map(|b| MediaHeader::parse(b).expect("header"))
            .collect();
        let raps: Vec<bool> = parsed.iter().map(|(h, _)| h.rap).collect();
        assert_eq!(raps, vec![true, false, false, true]);
        assert!(parsed[0].0.restart && !parsed[1].0.restart);
        let joined: Vec<u8> = parsed.iter().flat_map(|(_, d)| d.to_vec()).collect();
        let fed: Vec<u8> = units.iter().flat_map(|(u, _)| u.clone()).collect();
        assert_eq!(joined, fed, "the bytes in order, nothing lost");
        assert_eq!(parsed[0].1.len(), 400, "full blocks are full");
    }

    #[test]
    fn ts_packets_are_never_split() {
        let units: Vec<(Vec<u8>, bool)> = (0..12u8).map(|i| (vec![i; 188], i == 7)).collect();
        let blocks = cut(Container::Ts, 11 + 5 * 188 + 20, &units);
        for b in &blocks {
            let (_, data) = MediaHeader::parse(b).expect("header");
            assert_eq!(data.len() % 188, 0, "whole packets only");
        }
        let starts: Vec<(u8, bool)> = blocks
            .iter()
            .map(|b| {
                let (h, d) = MediaHeader::parse(b).expect("header");
                (d[0], h.rap)
            })
            .collect();
        assert_eq!(starts, vec![(0, false), (5, false), (7, true)]);
    }

    #[test]
    fn restart_marks_the_next_block() {
        let mut c = BlockCutter::new(Container::Flv, 100);
        let mut out = Vec::new();
        c.push(1, &[1; 10], true, |p| out.push(p));
        c.flush(|p| out.push(p));
        c.push(2, &[2; 10], true, |p| out.push(p));
        c.restart();
        c.push(3, &[3; 10], true, |p| out.push(p));
        c.flush(|p| out.push(p));
        let flags: Vec<(bool, u64)> = out
            .iter()
            .map(|b| {
                let (h, _) = MediaHeader::parse(b).expect("header");
                (h.restart, h.ingest_us)
            })
            .collect();
        assert_eq!(flags, vec![(true, 1), (false, 2), (true, 3)]);
    }
}
