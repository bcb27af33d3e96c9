//! MPEG-TS at the source: packets from a byte stream, with random-access
//! points marked.
//!
//! [`TsPacker`] takes the bytes of MPEG-TS over UDP datagrams or a pipe,
//! finds the 188-byte packets (resynchronising on the sync byte after
//! garbage, which it counts), reads the PAT and PMT to learn the video PID,
//! and hands every packet on as a unit. A packet of the video PID that
//! starts a PES with the random-access indicator set (a key frame, as
//! encoders mark it) becomes a random-access unit together with copies of
//! the latest PAT and PMT in front of it, so a player that starts there
//! knows the programme. Nothing is emitted before the first such packet.
//! What is emitted goes through a [`TsRetimer`], so that the timeline and
//! continuity counters go on across sessions.

use super::ts_retime::TsRetimer;

/// Bytes of an MPEG-TS packet.
pub const TS_PACKET: usize = 188;
/// First byte of every packet.
pub const SYNC: u8 = 0x47;

/// Counters of the packer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsStats {
    /// Packets emitted.
    pub packets: u64,
    /// Random-access points found.
    pub random_access_points: u64,
    /// Bytes skipped to find a sync byte.
    pub skipped_bytes: u64,
    /// Packets dropped as malformed (transport error flag, bad adaptation
    /// field length).
    pub malformed: u64,
    /// Packets dropped while waiting for the first random-access point.
    pub before_random_access: u64,
}

/// Finds packets and random-access points (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct TsPacker {
    partial: Vec<u8>,
    pat: Option<[u8; TS_PACKET]>,
    pmt_pid: Option<u16>,
    pmt: Option<[u8; TS_PACKET]>,
    video_pid: Option<u16>,
    started: bool,
    unit: Vec<u8>,
    retimer: TsRetimer,
    stats: TsStats,
}

impl TsPacker {
    /// A packer waiting for the first random-access point.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> TsStats {
        self.stats
    }

    /// A new feed takes over: the programme is learnt afresh, and its
    /// timeline continues the last one.
    pub fn new_session(&mut self) {
        let stats = self.stats;
        let mut retimer = std::mem::take(&mut self.retimer);
        retimer.new_session();
        *self = TsPacker {
            stats,
            retimer,
            ..TsPacker::default()
        };
    }

    /// Takes the next bytes of the stream; `emit(unit, rap)` gets each
    /// packet (or random-access group).
    pub fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while !bytes.is_empty() {
            if self.partial.is_empty() {
                // Fast path: whole packets straight from the input.
                if bytes[0] == SYNC && bytes.len() >= TS_PACKET {
                    let (p, rest) = bytes.split_at(TS_PACKET);
                    let mut packet = [0u8; TS_PACKET];
                    packet.copy_from_slice(p);
                    self.packet(&packet, &mut emit);
                    bytes = rest;
                    continue;
                }
                if bytes[0] != SYNC {
                    let skip = bytes.iter().position(|&b| b == SYNC).unwrap_or(bytes.len());
                    self.stats.skipped_bytes += skip as u64;
                    bytes = &bytes[skip..];
                    continue;
                }
            }
            let take = (TS_PACKET - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == TS_PACKET {
                let mut packet = [0u8; TS_PACKET];
                packet.copy_from_slice(&self.partial);
                self.partial.clear();
                self.packet(&packet, &mut emit);
            }
        }
    }

    fn packet(&mut self, p: &[u8; TS_PACKET], emit: &mut impl FnMut(&[u8], bool)) {
        if p[1] & 0x80 != 0 {
            self.stats.malformed += 1;
            return;
        }
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let start = p[1] & 0x40 != 0;
        let afc = (p[3] >> 4) & 0x3;
        let mut payload_at = 4;
        let mut random_access = false;
        if afc & 0x2 != 0 {
            let len = usize::from(p[4]);
            if 5 + len > TS_PACKET {
                self.stats.malformed += 1;
                return;
            }
            random_access = len > 0 && p[5] & 0x40 != 0;
            payload_at = 5 + len;
        }
        let payload = if afc & 0x1 != 0 {
            &p[payload_at..]
        } else {
            &[][..]
        };
        if pid == 0 && start {
            self.pat = Some(*p);
            self.pmt_pid = section(payload).and_then(pat_pmt_pid);
        } else if Some(pid) == self.pmt_pid && start {
            self.pmt = Some(*p);
            self.video_pid = section(payload).and_then(pmt_video_pid);
        }
        let rap = start && random_access && Some(pid) == self.video_pid;
        if rap {
            self.started = true;
            self.stats.random_access_points += 1;
            self.unit.clear();
            for mut packet in [self.pat, self.pmt, Some(*p)].into_iter().flatten() {
                self.retimer.retime(&mut packet);
                self.unit.extend_from_slice(&packet);
            }
            self.stats.packets += 1;
            emit(&self.unit, true);
        } else if self.started {
            self.stats.packets += 1;
            let mut packet = *p;
            self.retimer.retime(&mut packet);
            emit(&packet, false);
        } else {
            self.stats.before_random_access += 1;
        }
    }
}

/// The PSI section of a payload that starts one: after the pointer field,
/// cut to its section length.
fn section(payload: &[u8]) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    let len = usize::from(u16::from_be_bytes([*s.get(1)?, *s.get(2)?]) & 0x0FFF);
    s.get(..3 + len)
}

/// The PMT PID of the first programme in a PAT section.
fn pat_pmt_pid(s: &[u8]) -> Option<u16> {
    // 8 bytes of header, 4 of CRC at the end, 4 per programme.
    let body = s.get(8..s.len().checked_sub(4)?)?;
    body.chunks_exact(4)
        .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| u16::from_be_bytes([e[2], e[3]]) & 0x1FFF)
}

/// The PID of the first video elementary stream in a PMT section (H.264,
/// HEVC, MPEG-2 or MPEG-1 video).
fn pmt_video_pid(s: &[u8]) -> Option<u16> {
    let info_len = usize::from(u16::from_be_bytes([*s.get(10)?, *s.get(11)?]) & 0x0FFF);
    let mut es = s.get(12 + info_len..s.len().checked_sub(4)?)?;
    while es.len() >= 5 {
        let stream_type = es[0];
        let pid = u16::from_be_bytes([es[1], es[2]]) & 0x1FFF;
        let es_info = usize::from(u16::from_be_bytes([es[3], es[4]]) & 0x0FFF);
        if matches!(stream_type, 0x01 | 0x02 | 0x1B | 0x24) {
            return Some(pid);
        }
        es = es.get(5 + es_info..)?;
    }
    None
}

/// Hand-made MPEG-TS packets for the media tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{SYNC, TS_PACKET};

    /// A packet of `pid` carrying `payload`, starting a unit if `start`,
    /// with the random-access indicator set if `rap`.
    pub(crate) fn packet(pid: u16, start: bool, rap: bool, payload: &[u8]) -> [u8; TS_PACKET] {
        let mut p = [0xFFu8; TS_PACKET];
        p[0] = SYNC;
        p[1] = ((pid >> 8) as u8 & 0x1F) | if start { 0x40 } else { 0 };
        p[2] = pid as u8;
        if rap {
            p[3] = 0x30;
            p[4] = 1;
            p[5] = 0x40;
            p[6..6 + payload.len()].copy_from_slice(payload);
        } else {
            p[3] = 0x10;
            p[4..4 + payload.len()].copy_from_slice(payload);
        }
        p
    }

    /// A PAT naming the PMT on PID 0x1000.
    pub(crate) fn pat() -> [u8; TS_PACKET] {
        // pointer 0; table 0, section length 13; tsid 1; version; section
        // 0/0; programme 1 -> PMT PID 0x1000; CRC (unchecked).
        packet(
            0,
            true,
            false,
            &[
                0, 0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 1, 2, 3, 4,
            ],
        )
    }

    /// A PMT naming AAC on PID 0x101 and H.264 on PID 0x100.
    pub(crate) fn pmt() -> [u8; TS_PACKET] {
        // table 2, section length 23; programme 1; PCR PID 0x100; no
        // programme info; AAC (0x0F) on 0x101, H.264 (0x1B) on 0x100.
        packet(
            0x1000,
            true,
            false,
            &[
                0, 0x02, 0xB0, 23, 0, 1, 0xC1, 0, 0, 0xE1, 0x00, 0xF0, 0x00, 0x0F, 0xE1, 0x01,
                0xF0, 0x00, 0x1B, 0xE1, 0x00, 0xF0, 0x00, 1, 2, 3, 4,
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{packet, pat, pmt};
    use super::*;
    use proptest::prelude::*;

    fn run(bytes: &[u8]) -> (Vec<(Vec<u8>, bool)>, TsStats) {
        let mut t = TsPacker::new();
        let mut out = Vec::new();
        t.push(bytes, |u, rap| out.push((u.to_vec(), rap)));
        (out, t.stats())
    }

    #[test]
    fn key_frames_become_random_access_groups_with_the_tables() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&pat());
        stream.extend_from_slice(&pmt());
        stream.extend_from_slice(&packet(0x100, false, false, &[1]));
        stream.extend_from_slice(&packet(0x101, true, true, &[2]));
        stream.extend_from_slice(&packet(0x100, true, true, &[3]));
        stream.extend_from_slice(&packet(0x101, true, false, &[4]));
        let (out, stats) = run(&stream);
        assert_eq!(out.len(), 2);
        assert!(out[0].1);
        assert_eq!(out[0].0.len(), 3 * TS_PACKET);
        assert_eq!(&out[0].0[..TS_PACKET], &pat()[..]);
        assert_eq!(&out[0].0[TS_PACKET..2 * TS_PACKET], &pmt()[..]);
        assert!(!out[1].1);
        assert_eq!(
            stats.before_random_access, 4,
            "PAT, PMT, and two before the key frame"
        );
    }

    #[test]
    fn garbage_is_skipped_and_split_packets_are_joined() {
        let mut stream = vec![0x00, 0x12, 0x34];
        stream.extend_from_slice(&pat());
        stream.extend_from_slice(&pmt());
        stream.extend_from_slice(&packet(0x100, true, true, &[3]));
        stream.extend_from_slice(&packet(0x100, false, false, &[5]));
        let mut t = TsPacker::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(100) {
            t.push(chunk, |u, rap| out.push((u.len(), rap)));
        }
        assert_eq!(out, vec![(3 * TS_PACKET, true), (TS_PACKET, false)]);
        assert_eq!(t.stats().skipped_bytes, 3);
    }

    #[test]
    fn transport_errors_are_counted_and_dropped() {
        let mut bad = packet(0x100, true, true, &[1]);
        bad[1] |= 0x80;
        let (out, stats) = run(&bad);
        assert!(out.is_empty());
        assert_eq!(stats.malformed, 1);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_and_units_are_whole_packets(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut t = TsPacker::new();
            t.push(&bytes, |u, _| assert_eq!(u.len() % TS_PACKET, 0));
        }
    }
}
