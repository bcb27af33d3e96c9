//! Any run of RTMP audio and video message bodies (as a publisher sends
//! them): the FLV packer never panics, and every unit it emits is whole
//! FLV tags (an 11-byte header, the body its length field names, and a
//! 4-byte previous-tag size that matches).
#![no_main]

use clubcast::media::flv::FlvPacker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut packer = FlvPacker::new();
    let mut ts = 0u32;
    // Each message: a kind byte, a length byte, then that many body bytes.
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        ts = ts.wrapping_add(u32::from(*kind >> 2));
        let check = |unit: &[u8], _rap: bool| {
            let mut at = 0;
            while at < unit.len() {
                assert!(unit.len() - at >= 15, "a cut tag");
                let size = usize::from(unit[at + 1]) << 16
                    | usize::from(unit[at + 2]) << 8
                    | usize::from(unit[at + 3]);
                let end = at + 11 + size;
                assert!(end + 4 <= unit.len(), "a tag past the unit");
                let prev = u32::from_be_bytes([unit[end], unit[end + 1], unit[end + 2], unit[end + 3]]);
                assert_eq!(prev as usize, 11 + size);
                at = end + 4;
            }
        };
        let _ = if kind & 1 == 0 {
            packer.video(ts, body, check)
        } else {
            packer.audio(ts, body, check)
        };
    }
});
