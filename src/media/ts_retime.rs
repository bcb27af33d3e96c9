//! MPEG-TS timelines that go on across feed restarts.
//!
//! A feed that stops and comes back (a new ffmpeg or OBS session) starts
//! its clocks and continuity counters afresh, so a player would see time go
//! backwards and every stream break. [`TsRetimer`] rewrites each packet the
//! source emits: after [`TsRetimer::new_session`], the first timestamp of
//! the new session (PCR, PTS or DTS) is moved to just after the newest one
//! emitted so far and every later one by the same amount (modulo 2^33, the
//! 90 kHz clock's range), and each PID's continuity counter carries on
//! from its last value. The first session passes unchanged, byte for byte.

use super::ts::TS_PACKET;

/// The 33-bit range of the 90 kHz clock.
const CLOCK_RANGE: u64 = 1 << 33;

/// How far after the newest timestamp so far a new session's first one
/// lands, in 90 kHz ticks (100 ms).
const GAP: u64 = 9_000;

/// PIDs there can be.
const PIDS: usize = 8192;

/// Rewrites timestamps and continuity counters (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct TsRetimer {
    /// Added to this session's timestamps (mod 2^33).
    offset: u64,
    /// Newest timestamp emitted, in ticks.
    newest: Option<u64>,
    /// The session's first timestamp is not known yet.
    rebase: bool,
    /// The session number; a PID whose entry differs is new to it.
    session: u32,
    pid_session: Box<[u32; PIDS]>,
    /// Added to each PID's continuity counter (mod 16).
    cc_offset: Box<[u8; PIDS]>,
    /// Each PID's last continuity counter emitted (0x10: none yet).
    cc_last: Box<[u8; PIDS]>,
}

impl Default for TsRetimer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsRetimer {
    /// A retimer for a first session, which it leaves as it is.
    pub fn new() -> Self {
        TsRetimer {
            offset: 0,
            newest: None,
            rebase: false,
            session: 0,
            pid_session: Box::new([0; PIDS]),
            cc_offset: Box::new([0; PIDS]),
            cc_last: Box::new([0x10; PIDS]),
        }
    }

    /// A new session begins: its timeline and counters are to continue
    /// those emitted so far.
    pub fn new_session(&mut self) {
        self.rebase = self.newest.is_some();
        self.session = self.session.wrapping_add(1);
    }

    /// Rewrites `p`, a packet about to be emitted, in place.
    pub fn retime(&mut self, p: &mut [u8; TS_PACKET]) {
        let pid = (usize::from(p[1] & 0x1F) << 8) | usize::from(p[2]);
        self.continuity(pid, p);
        let afc = (p[3] >> 4) & 0x3;
        let mut payload_at = 4;
        if afc & 0x2 != 0 {
            let len = usize::from(p[4]);
            if 5 + len > TS_PACKET {
                return;
            }
            if len >= 7 && p[5] & 0x10 != 0 {
                self.pcr(&mut p[6..12]);
            }
            payload_at = 5 + len;
        }
        let unit_start = p[1] & 0x40 != 0;
        if afc & 0x1 != 0 && unit_start {
            self.pes(&mut p[payload_at..]);
        }
    }

    fn continuity(&mut self, pid: usize, p: &mut [u8; TS_PACKET]) {
        let cc = p[3] & 0x0F;
        if self.pid_session[pid] != self.session {
            self.pid_session[pid] = self.session;
            if self.cc_last[pid] < 0x10 {
                self.cc_offset[pid] = (self.cc_last[pid] + 1).wrapping_sub(cc) & 0x0F;
            }
        }
        let out = (cc + self.cc_offset[pid]) & 0x0F;
        p[3] = (p[3] & 0xF0) | out;
        self.cc_last[pid] = out;
    }

    /// Moves a timestamp of this session to the output timeline.
    fn shift(&mut self, ticks: u64) -> u64 {
        if self.rebase {
            self.rebase = false;
            let next = self.newest.unwrap_or(0) + GAP;
            self.offset = (next + CLOCK_RANGE - ticks) % CLOCK_RANGE;
        }
        let out = (ticks + self.offset) % CLOCK_RANGE;
        self.newest = Some(match self.newest {
            // Newer if ahead by less than half the range (it wraps).
            Some(n) if (out + CLOCK_RANGE - n) % CLOCK_RANGE >= CLOCK_RANGE / 2 => n,
            _ => out,
        });
        out
    }

    /// A program clock reference: 33 bits of 90 kHz base, 6 reserved
    /// bits, 9 bits of extension.
    fn pcr(&mut self, f: &mut [u8]) {
        let base = (u64::from(f[0]) << 25)
            | (u64::from(f[1]) << 17)
            | (u64::from(f[2]) << 9)
            | (u64::from(f[3]) << 1)
            | u64::from(f[4] >> 7);
        let base = self.shift(base);
        f[0] = (base >> 25) as u8;
        f[1] = (base >> 17) as u8;
        f[2] = (base >> 9) as u8;
        f[3] = (base >> 1) as u8;
        f[4] = (((base & 1) as u8) << 7) | (f[4] & 0x7F);
    }

    /// The PTS and DTS of a PES header at the start of `payload`.
    fn pes(&mut self, payload: &mut [u8]) {
        if payload.len() < 9 || payload[..3] != [0, 0, 1] {
            return;
        }
        // Streams without the optional PES header: program stream map,
        // padding, private stream 2, ECM, EMM, DSM-CC, H.222.1 type E,
        // directory.
        if matches!(
            payload[3],
            0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
        ) {
            return;
        }
        let flags = payload[7] >> 6;
        let fields = match flags {
            0b10 => 1,
            0b11 => 2,
            _ => 0,
        };
        for i in 0..fields {
            if let Some(f) = payload.get_mut(9 + 5 * i..14 + 5 * i) {
                self.timestamp(f);
            }
        }
    }

    /// A 5-byte PES timestamp: 33 bits split 3/15/15 between marker bits.
    fn timestamp(&mut self, f: &mut [u8]) {
        let ts = (u64::from((f[0] >> 1) & 0x07) << 30)
            | (u64::from(f[1]) << 22)
            | (u64::from(f[2] >> 1) << 15)
            | (u64::from(f[3]) << 7)
            | u64::from(f[4] >> 1);
        let ts = self.shift(ts);
        f[0] = (f[0] & 0xF1) | (((ts >> 30) as u8 & 0x07) << 1);
        f[1] = (ts >> 22) as u8;
        f[2] = (f[2] & 0x01) | ((((ts >> 15) & 0x7F) as u8) << 1);
        f[3] = (ts >> 7) as u8;
        f[4] = (f[4] & 0x01) | (((ts & 0x7F) as u8) << 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A video packet with a PCR (if given) and a PES header with PTS and
    /// DTS (if given).
    fn packet(pid: u16, cc: u8, pcr: Option<u64>, pts_dts: Option<(u64, u64)>) -> [u8; TS_PACKET] {
        let mut p = [0xFFu8; TS_PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 | if pts_dts.is_some() { 0x40 } else { 0 };
        p[2] = pid as u8;
        p[3] = 0x30 | cc;
        p[4] = 7;
        p[5] = if pcr.is_some() { 0x10 } else { 0 };
        let base = pcr.unwrap_or(0);
        p[6..11].copy_from_slice(&[
            (base >> 25) as u8,
            (base >> 17) as u8,
            (base >> 9) as u8,
            (base >> 1) as u8,
            ((base & 1) as u8) << 7 | 0x7E,
        ]);
        p[11] = 0x23;
        if let Some((pts, dts)) = pts_dts {
            let pes = &mut p[12..];
            pes[..9].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10]);
            put(&mut pes[9..14], 0x3, pts);
            put(&mut pes[14..19], 0x1, dts);
        }
        p
    }

    fn put(f: &mut [u8], prefix: u8, ts: u64) {
        f[0] = prefix << 4 | ((ts >> 29) as u8 & 0x0E) | 1;
        f[1] = (ts >> 22) as u8;
        f[2] = ((ts >> 14) as u8 & 0xFE) | 1;
        f[3] = (ts >> 7) as u8;
        f[4] = ((ts << 1) as u8) | 1;
    }

    /// (PCR base, PTS, DTS, continuity counter) of a packet made by
    /// [`packet`].
    fn read(p: &[u8; TS_PACKET]) -> (u64, u64, u64, u8) {
        let pcr = (u64::from(p[6]) << 25)
            | (u64::from(p[7]) << 17)
            | (u64::from(p[8]) << 9)
            | (u64::from(p[9]) << 1)
            | u64::from(p[10] >> 7);
        let ts = |f: &[u8]| {
            (u64::from((f[0] >> 1) & 7) << 30)
                | (u64::from(f[1]) << 22)
                | (u64::from(f[2] >> 1) << 15)
                | (u64::from(f[3]) << 7)
                | u64::from(f[4] >> 1)
        };
        (pcr, ts(&p[21..26]), ts(&p[26..31]), p[3] & 0x0F)
    }

    #[test]
    fn a_new_session_continues_the_timeline_and_the_counters() {
        let mut r = TsRetimer::new();
        let first = [
            packet(0x100, 14, Some(100_000), Some((160_000, 150_000))),
            packet(0x100, 15, Some(190_000), Some((250_000, 240_000))),
        ];
        for p in &first {
            let mut q = *p;
            r.retime(&mut q);
            assert_eq!(&q[..], &p[..], "a first session passes unchanged");
        }
        r.new_session();
        let mut a = packet(0x100, 0, Some(126_000), Some((189_000, 180_000)));
        let mut b = packet(0x100, 1, Some(129_600), Some((192_600, 183_600)));
        r.retime(&mut a);
        r.retime(&mut b);
        let (pcr, pts, dts, cc) = read(&a);
        assert_eq!(pcr, 250_000 + GAP, "just after the newest timestamp");
        assert_eq!((pts - pcr, dts - pcr, cc), (63_000, 54_000, 0));
        let (pcr_b, pts_b, dts_b, cc_b) = read(&b);
        assert_eq!(
            (pcr_b - pcr, pts_b - pts, dts_b - dts),
            (3_600, 3_600, 3_600)
        );
        assert_eq!(cc_b, 1, "the counter goes on from 15");
        assert_eq!(b[11], 0x23, "the PCR extension is kept");
        assert_eq!(b[10] & 0x7E, 0x7E, "and its reserved bits");
    }

    #[test]
    fn the_timeline_wraps_at_33_bits() {
        let mut r = TsRetimer::new();
        let mut p = packet(0x100, 0, Some(CLOCK_RANGE - 1_000), None);
        r.retime(&mut p);
        r.new_session();
        let mut q = packet(0x100, 5, Some(126_000), None);
        r.retime(&mut q);
        assert_eq!(read(&q).0, GAP - 1_000);
        assert_eq!(read(&q).3, 1);
    }

    proptest! {
        #[test]
        fn any_packet_passes_a_first_session_unchanged_and_never_panics(
            body in proptest::collection::vec(any::<u8>(), TS_PACKET - 1),
        ) {
            let mut p = [0u8; TS_PACKET];
            p[0] = 0x47;
            p[1..].copy_from_slice(&body);
            let mut r = TsRetimer::new();
            let mut q = p;
            r.retime(&mut q);
            prop_assert_eq!(&q[..], &p[..]);
            r.new_session();
            r.retime(&mut q);
        }
    }
}
