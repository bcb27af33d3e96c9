//! Any run of played blocks (FLV or MPEG-TS, random-access or not, any
//! bytes, skips between them) into the HLS segmenter and its FLV to
//! MPEG-TS muxer: never a panic, at most six segments kept, every segment
//! the playlist names served, and, for an FLV feed, every segment whole
//! 188-byte packets with the sync byte.
#![no_main]

use clubcast::media::hls::{HlsSegmenter, SEGMENTS_KEPT};
use clubcast::media::{Container, MediaHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut s = HlsSegmenter::new(100_000);
    let mut t = 0u64;
    let mut all_flv = true;
    // Each block: a flags byte, a length byte, then that many bytes.
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let n = (usize::from(*len) * 8).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        t += u64::from(flags >> 3) * 10_000;
        if flags & 4 != 0 {
            s.skip();
            continue;
        }
        all_flv &= flags & 1 == 0;
        let header = MediaHeader {
            container: if flags & 1 == 0 { Container::Flv } else { Container::Ts },
            rap: flags & 2 != 0,
            restart: flags & 0x80 != 0,
            ingest_us: t,
        };
        s.push(&header, body);
    }
    let mut kept = 0;
    if let Some(p) = s.playlist() {
        for line in p.lines().filter(|l| l.starts_with("seg/")) {
            let seq: u64 = line[4..line.len() - 3].parse().expect("a number");
            let seg = s.segment(seq).expect("a listed segment is served");
            if all_flv {
                assert_eq!(seg.len() % 188, 0, "muxed segments are whole packets");
                assert!(seg.chunks(188).all(|p| p[0] == 0x47), "sync bytes");
            }
            kept += 1;
        }
    }
    assert!(kept <= SEGMENTS_KEPT);
});
