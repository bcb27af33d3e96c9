//! FLV to MPEG-TS, for HLS from an RTMP feed.
//!
//! [`FlvToTs`] reads the FLV tags a peer plays (whole or split across
//! blocks) and writes MPEG-TS: H.264 in Annex B form (an access unit
//! delimiter first, SPS and PPS from the decoder configuration before every
//! key frame) on PID 0x100, AAC with ADTS headers (or MP3 as it comes) on
//! PID 0x101, a PAT and PMT before every key frame, and the PCR on the
//! video PID. Times are the FLV milliseconds at 90 kHz, one second ahead so
//! that the PCR, half a second behind the decode time, never goes below
//! zero. A tag it cannot read (a size beyond 8 MiB, a truncated
//! decoder configuration) is counted and skipped; a size beyond the limit
//! loses the tag boundaries, so the muxer waits for [`FlvToTs::reset`]
//! (the next random-access block) before reading on.

use super::flv::TAG_HEADER_LEN;
use super::ts::{SYNC, TS_PACKET};

/// Largest tag body read (a key frame of a very high bit rate stream fits
/// many times over); a larger one loses the tag boundaries.
const MAX_TAG: usize = 8 << 20;

/// PID of the programme map.
const PMT_PID: u16 = 0x1000;
/// PID of the H.264 stream.
const VIDEO_PID: u16 = 0x100;
/// PID of the audio stream.
const AUDIO_PID: u16 = 0x101;
/// Added to every time stamp, ms.
const OFFSET_MS: u64 = 1_000;
/// How far the PCR runs behind the decode time, ms.
const PCR_LEAD_MS: u64 = 500;
/// Time stamps wrap at 33 bits.
const TS_MASK: u64 = (1 << 33) - 1;
/// An access unit delimiter (any slice type).
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];

/// Counters of the muxer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlvTsStats {
    /// Video frames written.
    pub video_frames: u64,
    /// Audio frames written.
    pub audio_frames: u64,
    /// Tags skipped: unreadable, or a codec HLS cannot carry here.
    pub bad_tags: u64,
}

/// H.264 decoder configuration: NAL length size, SPS and PPS.
#[derive(Debug, Clone, Default)]
struct AvcConfig {
    nal_len: usize,
    parameter_sets: Vec<u8>,
}

/// What an ADTS header needs of the AAC configuration.
#[derive(Debug, Clone, Copy)]
struct AacConfig {
    profile: u8,
    freq_index: u8,
    channels: u8,
}

/// The audio of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audio {
    Aac,
    Mp3,
}

/// The muxer (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct FlvToTs {
    buf: Vec<u8>,
    lost: bool,
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    audio: Option<Audio>,
    psi_written: bool,
    cc: [u8; 4],
    stats: FlvTsStats,
}

impl FlvToTs {
    /// A muxer with no configuration yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> FlvTsStats {
        self.stats
    }

    /// Forgets a partial tag: the next bytes begin a tag (a random-access
    /// block, after a skipped one).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.lost = false;
    }

    /// Reads `data`, the next bytes of the FLV tag stream, and appends the
    /// MPEG-TS packets of every tag it completes to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.lost {
            return;
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            if rest.len() < TAG_HEADER_LEN {
                break;
            }
            let size = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
            if size > MAX_TAG {
                self.stats.bad_tags += 1;
                self.lost = true;
                self.buf.clear();
                return;
            }
            let whole = TAG_HEADER_LEN + size + 4;
            if rest.len() < whole {
                break;
            }
            let kind = rest[0] & 0x1F;
            let ms = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
            let body = rest[TAG_HEADER_LEN..TAG_HEADER_LEN + size].to_vec();
            at += whole;
            self.tag(kind, u64::from(ms), &body, out);
        }
        self.buf.drain(..at);
    }

    fn tag(&mut self, kind: u8, ms: u64, body: &[u8], out: &mut Vec<u8>) {
        let ok = match kind {
            8 => self.audio_tag(ms, body, out),
            9 => self.video_tag(ms, body, out),
            _ => true,
        };
        if !ok {
            self.stats.bad_tags += 1;
        }
    }

    fn video_tag(&mut self, ms: u64, body: &[u8], out: &mut Vec<u8>) -> bool {
        if body.len() < 5 || body[0] & 0x0F != 7 {
            return false;
        }
        let key = body[0] >> 4 == 1;
        let data = &body[5..];
        match body[1] {
            0 => match avc_config(data) {
                Some(c) => {
                    self.avc = Some(c);
                    true
                }
                None => false,
            },
            1 => {
                let Some(avc) = &self.avc else {
                    return false;
                };
                // Composition time: a signed 24-bit offset, ms.
                let cts = i64::from(i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8);
                let Some(es) = annex_b(avc, data, key) else {
                    return false;
                };
                let dts = (ms + OFFSET_MS) * 90;
                let pts = (dts as i64 + cts * 90).max(0) as u64;
                if key || !self.psi_written {
                    self.write_psi(out);
                }
                let pes = pes(0xE0, pts, Some(dts), &es);
                let pcr = dts.saturating_sub(PCR_LEAD_MS * 90);
                self.packetize(out, VIDEO_PID, &pes, Some(pcr), key);
                self.stats.video_frames += 1;
                true
            }
            _ => true,
        }
    }

    fn audio_tag(&mut self, ms: u64, body: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(&first) = body.first() else {
            return false;
        };
        let frame = match first >> 4 {
            10 => {
                if body.len() < 2 {
                    return false;
                }
                if body[1] == 0 {
                    return match aac_config(&body[2..]) {
                        Some(c) => {
                            self.aac = Some(c);
                            self.audio = Some(Audio::Aac);
                            true
                        }
                        None => false,
                    };
                }
                let Some(c) = self.aac else {
                    return false;
                };
                let Some(frame) = adts(c, &body[2..]) else {
                    return false;
                };
                frame
            }
            2 => {
                self.audio = Some(Audio::Mp3);
                body[1..].to_vec()
            }
            _ => return false,
        };
        if !self.psi_written {
            self.write_psi(out);
        }
        let pts = (ms + OFFSET_MS) * 90;
        let pes = pes(0xC0, pts, None, &frame);
        // Without video the PCR rides on the audio.
        let pcr = self
            .avc
            .is_none()
            .then(|| pts.saturating_sub(PCR_LEAD_MS * 90));
        self.packetize(out, AUDIO_PID, &pes, pcr, false);
        self.stats.audio_frames += 1;
        true
    }

    /// Writes a PAT and a PMT naming the streams known so far.
    fn write_psi(&mut self, out: &mut Vec<u8>) {
        self.psi_written = true;
        // PAT: programme 1 on PMT_PID.
        let mut pat = vec![0x00, 0xB0, 0, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01];
        pat.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
        self.section(out, 0, 0, pat);
        let pcr_pid = if self.avc.is_some() || self.audio.is_none() {
            VIDEO_PID
        } else {
            AUDIO_PID
        };
        let mut pmt = vec![0x02, 0xB0, 0, 0x00, 0x01, 0xC1, 0x00, 0x00];
        pmt.extend_from_slice(&(0xE000 | pcr_pid).to_be_bytes());
        pmt.extend_from_slice(&[0xF0, 0x00]);
        if self.avc.is_some() {
            pmt.push(0x1B);
            pmt.extend_from_slice(&(0xE000 | VIDEO_PID).to_be_bytes());
            pmt.extend_from_slice(&[0xF0, 0x00]);
        }
        if let Some(audio) = self.audio {
            pmt.push(if audio == Audio::Aac { 0x0F } else { 0x03 });
            pmt.extend_from_slice(&(0xE000 | AUDIO_PID).to_be_bytes());
            pmt.extend_from_slice(&[0xF0, 0x00]);
        }
        self.section(out, PMT_PID, 1, pmt);
    }

    /// One PSI section (its length filled in and its CRC added) in one
    /// packet of `pid`.
    fn section(&mut self, out: &mut Vec<u8>, pid: u16, cc_index: usize, mut s: Vec<u8>) {
        let len = (s.len() - 3 + 4) as u16;
        s[1] = 0xB0 | (len >> 8) as u8;
        s[2] = len as u8;
        let crc = crc32_mpeg(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        let mut pkt = [0xFFu8; TS_PACKET];
        pkt[0] = SYNC;
        pkt[1] = 0x40 | (pid >> 8) as u8;
        pkt[2] = pid as u8;
        pkt[3] = 0x10 | self.next_cc(cc_index);
        pkt[4] = 0; // pointer field
        pkt[5..5 + s.len()].copy_from_slice(&s);
        out.extend_from_slice(&pkt);
    }

    fn next_cc(&mut self, index: usize) -> u8 {
        let cc = self.cc[index];
        self.cc[index] = (cc + 1) & 0x0F;
        cc
    }

    /// Cuts `pes` into packets of `pid`; the first carries the PCR (if
    /// any) and, for a key frame, the random-access indicator.
    fn packetize(&mut self, out: &mut Vec<u8>, pid: u16, pes: &[u8], pcr: Option<u64>, key: bool) {
        let cc_index = if pid == VIDEO_PID { 2 } else { 3 };
        let mut rest = pes;
        let mut first = true;
        while !rest.is_empty() {
            let mut pkt = [0xFFu8; TS_PACKET];
            pkt[0] = SYNC;
            pkt[1] = if first { 0x40 } else { 0 } | (pid >> 8) as u8;
            pkt[2] = pid as u8;
            let pcr_here = if first { pcr } else { None };
            let flags =
                if first && key { 0x40 } else { 0 } | if pcr_here.is_some() { 0x10 } else { 0 };
            // Adaptation field: length byte, flags byte, PCR.
            let mut af = if flags != 0 {
                2 + if pcr_here.is_some() { 6 } else { 0 }
            } else {
                0
            };
            let room = TS_PACKET - 4 - af;
            let n = rest.len().min(room);
            af += room - n; // stuffing
            pkt[3] = if af > 0 { 0x30 } else { 0x10 } | self.next_cc(cc_index);
            if af > 0 {
                pkt[4] = (af - 1) as u8;
                if af > 1 {
                    pkt[5] = flags;
                    if let Some(pcr) = pcr_here {
                        let base = pcr & TS_MASK;
                        pkt[6] = (base >> 25) as u8;
                        pkt[7] = (base >> 17) as u8;
                        pkt[8] = (base >> 9) as u8;
                        pkt[9] = (base >> 1) as u8;
                        pkt[10] = ((base & 1) << 7) as u8 | 0x7E;
                        pkt[11] = 0;
                    }
                }
            }
            pkt[4 + af..].copy_from_slice(&rest[..n]);
            out.extend_from_slice(&pkt);
            rest = &rest[n..];
            first = false;
        }
    }
}

/// The SPS and PPS of an AVCDecoderConfigurationRecord, as Annex B.
fn avc_config(d: &[u8]) -> Option<AvcConfig> {
    let nal_len = usize::from(*d.get(4)? & 0x03) + 1;
    let mut at = 5;
    let mut parameter_sets = Vec::new();
    for mask in [0x1F, 0xFF] {
        let count = *d.get(at)? & mask;
        at += 1;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]));
            let nal = d.get(at + 2..at + 2 + len)?;
            parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            parameter_sets.extend_from_slice(nal);
            at += 2 + len;
        }
    }
    Some(AvcConfig {
        nal_len,
        parameter_sets,
    })
}

/// A frame of length-prefixed NAL units as Annex B: a delimiter first, the
/// parameter sets before a key frame that lacks them, its own delimiters
/// left out.
fn annex_b(avc: &AvcConfig, mut d: &[u8], key: bool) -> Option<Vec<u8>> {
    let mut nals = Vec::new();
    let mut has_sps = false;
    while !d.is_empty() {
        let head = d.get(..avc.nal_len)?;
        let len = head.iter().fold(0usize, |n, b| n << 8 | usize::from(*b));
        let nal = d.get(avc.nal_len..avc.nal_len + len)?;
        d = &d[avc.nal_len + len..];
        match nal.first().map(|b| b & 0x1F) {
            None | Some(9) => continue,
            Some(7) => has_sps = true,
            Some(_) => {}
        }
        nals.push(nal);
    }
    let mut es = AUD.to_vec();
    if key && !has_sps {
        es.extend_from_slice(&avc.parameter_sets);
    }
    for nal in nals {
        es.extend_from_slice(&[0, 0, 0, 1]);
        es.extend_from_slice(nal);
    }
    Some(es)
}

/// Profile, sampling frequency index and channels of an
/// AudioSpecificConfig that ADTS can express.
fn aac_config(d: &[u8]) -> Option<AacConfig> {
    let (a, b) = (*d.first()?, *d.get(1)?);
    let object = a >> 3;
    let freq_index = (a & 0x07) << 1 | b >> 7;
    let channels = (b >> 3) & 0x0F;
    // ADTS has two bits of profile (object type - 1): HE-AAC is carried
    // as its AAC-LC core.
    let profile = match object {
        1..=4 => object - 1,
        5 | 29 => 1,
        _ => return None,
    };
    (freq_index < 13).then_some(AacConfig {
        profile,
        freq_index,
        channels,
    })
}

/// A raw AAC frame with its ADTS header.
fn adts(c: AacConfig, raw: &[u8]) -> Option<Vec<u8>> {
    let len = raw.len() + 7;
    if len >= 1 << 13 {
        return None;
    }
    let mut f = vec![
        0xFF,
        0xF1,
        c.profile << 6 | c.freq_index << 2 | (c.channels >> 2) & 1,
        (c.channels & 3) << 6 | (len >> 11) as u8 & 3,
        (len >> 3) as u8,
        ((len & 7) as u8) << 5 | 0x1F,
        0xFC,
    ];
    f.extend_from_slice(raw);
    Some(f)
}

/// A PES packet of `stream_id` carrying `es` with its PTS (and DTS when
/// it differs). Video gets length 0 (unbounded), as its frames may exceed
/// the 16-bit field.
fn pes(stream_id: u8, pts: u64, dts: Option<u64>, es: &[u8]) -> Vec<u8> {
    let dts = dts.filter(|d| *d != pts);
    let header_data = if dts.is_some() { 10 } else { 5 };
    let len = 3 + header_data + es.len();
    let len_field = if stream_id == 0xE0 || len > 0xFFFF {
        0
    } else {
        len as u16
    };
    let mut p = vec![0, 0, 1, stream_id];
    p.extend_from_slice(&len_field.to_be_bytes());
    p.push(0x80);
    p.push(if dts.is_some() { 0xC0 } else { 0x80 });
    p.push(header_data as u8);
    p.extend_from_slice(&timestamp(if dts.is_some() { 0x3 } else { 0x2 }, pts));
    if let Some(dts) = dts {
        p.extend_from_slice(&timestamp(0x1, dts));
    }
    p.extend_from_slice(es);
    p
}

/// A 33-bit time stamp in the PES header's five bytes, after the 4-bit
/// `prefix`.
fn timestamp(prefix: u8, t: u64) -> [u8; 5] {
    let t = t & TS_MASK;
    [
        prefix << 4 | ((t >> 29) as u8 & 0x0E) | 1,
        (t >> 22) as u8,
        (t >> 14) as u8 | 1,
        (t >> 7) as u8,
        (t << 1) as u8 | 1,
    ]
}

/// CRC-32/MPEG-2 of a PSI section.
fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                crc << 1 ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::write_tag;
    use proptest::prelude::*;

    /// An AVC sequence header with one SPS and one PPS, 4-byte lengths.
    fn avc_header() -> Vec<u8> {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4];
        b.extend_from_slice(&[0x67, 0x64, 0x00, 0x1F]);
        b.extend_from_slice(&[1, 0, 2, 0x68, 0xEE]);
        b
    }

    /// A video frame with one NAL unit of `len` bytes.
    fn frame(key: bool, len: usize) -> Vec<u8> {
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 40];
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b.push(if key { 0x65 } else { 0x41 });
        b.resize(b.len() + len - 1, 0xAB);
        b
    }

    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        write_tag(&mut s, 9, 0, &avc_header());
        write_tag(&mut s, 8, 0, &[0xAF, 0, 0x12, 0x10]);
        write_tag(&mut s, 9, 0, &frame(true, 5_000));
        write_tag(&mut s, 8, 10, &[0xAF, 1, 1, 2, 3]);
        write_tag(&mut s, 9, 40, &frame(false, 300));
        s
    }

    fn packets(ts: &[u8]) -> Vec<&[u8]> {
        ts.chunks(TS_PACKET).collect()
    }

    fn pid(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[1] & 0x1F, p[2]])
    }

    #[test]
    fn a_key_frame_comes_after_a_pat_and_pmt_with_its_parameter_sets() {
        let mut m = FlvToTs::new();
        let mut out = Vec::new();
        m.push(&stream(), &mut out);
        assert_eq!(out.len() % TS_PACKET, 0);
        let p = packets(&out);
        assert!(p.iter().all(|p| p[0] == SYNC));
        assert_eq!((pid(p[0]), pid(p[1]), pid(p[2])), (0, PMT_PID, VIDEO_PID));
        // PAT and PMT check against their CRC (a CRC over a section and its
        // CRC is zero).
        for psi in &p[..2] {
            let len = usize::from(u16::from_be_bytes([psi[6] & 0x0F, psi[7]]));
            assert_eq!(crc32_mpeg(&psi[5..5 + 3 + len]), 0);
        }
        // The key frame's first packet: unit start, PCR and random access.
        assert_eq!(p[2][1] & 0x40, 0x40);
        assert_eq!(p[2][5] & 0x50, 0x50);
        let es = &p[2][4 + 1 + usize::from(p[2][4])..];
        assert_eq!(&es[..4], &[0, 0, 1, 0xE0]);
        let body = &es[9 + usize::from(es[8])..];
        assert_eq!(&body[..6], &AUD);
        assert_eq!(&body[6..14], &[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1F]);
        assert_eq!(m.stats().video_frames, 2);
        assert_eq!(m.stats().audio_frames, 1);
        // The audio frame got an ADTS header: AAC-LC, 44.1 kHz, stereo.
        let audio = p.iter().find(|p| pid(p) == AUDIO_PID).expect("audio");
        let es = &audio[4 + 1 + usize::from(audio[4])..];
        let adts = &es[14..];
        assert_eq!(&adts[..4], &[0xFF, 0xF1, 0x50, 0x80]);
        // Continuity counters run on per PID.
        let video: Vec<u8> = p
            .iter()
            .filter(|p| pid(p) == VIDEO_PID)
            .map(|p| p[3] & 0x0F)
            .collect();
        assert!(video.windows(2).all(|w| w[1] == (w[0] + 1) & 0x0F));
    }

    #[test]
    fn tags_split_anywhere_across_blocks_give_the_same_packets() {
        let s = stream();
        let mut whole = Vec::new();
        FlvToTs::new().push(&s, &mut whole);
        for cut in [1, 11, 12, 500, s.len() - 1] {
            let mut m = FlvToTs::new();
            let mut out = Vec::new();
            m.push(&s[..cut], &mut out);
            m.push(&s[cut..], &mut out);
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn an_impossible_tag_size_waits_for_a_reset() {
        let mut m = FlvToTs::new();
        let mut out = Vec::new();
        m.push(
            &[9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3],
            &mut out,
        );
        assert_eq!(m.stats().bad_tags, 1);
        m.push(&stream(), &mut out);
        assert!(out.is_empty(), "nothing until the reset");
        m.reset();
        m.push(&stream(), &mut out);
        assert_eq!(m.stats().video_frames, 2);
    }

    proptest! {
        /// Any bytes: no panic, whole packets only, and a bounded buffer.
        #[test]
        fn garbage_is_survived(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..8)) {
            let mut m = FlvToTs::new();
            let mut out = Vec::new();
            for c in &chunks {
                m.push(c, &mut out);
                prop_assert!(m.buf.len() <= TAG_HEADER_LEN + MAX_TAG + 4 + c.len());
            }
            prop_assert_eq!(out.len() % TS_PACKET, 0);
        }

        /// A stream of frames of any sizes survives any split.
        #[test]
        fn frames_of_any_size_pass_whole(sizes in proptest::collection::vec(1usize..20_000, 1..6), cut in any::<prop::sample::Index>()) {
            let mut s = Vec::new();
            write_tag(&mut s, 9, 0, &avc_header());
            for (i, n) in sizes.iter().enumerate() {
                write_tag(&mut s, 9, 40 * i as u32, &frame(i == 0, *n));
            }
            let mut whole = Vec::new();
            let mut m = FlvToTs::new();
            m.push(&s, &mut whole);
            prop_assert_eq!(m.stats().video_frames, sizes.len() as u64);
            let cut = cut.index(s.len());
            let mut split = Vec::new();
            let mut m = FlvToTs::new();
            m.push(&s[..cut], &mut split);
            m.push(&s[cut..], &mut split);
            prop_assert_eq!(split, whole);
        }
    }
}
