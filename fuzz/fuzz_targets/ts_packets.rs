//! Any byte stream as MPEG-TS ingest: the packer never panics and emits
//! only whole 188-byte packets (a random-access group is several).
#![no_main]

use clubcast::media::TsPacker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut p = TsPacker::new();
    for chunk in data.chunks(97) {
        p.push(chunk, |packets, _| {
            assert!(!packets.is_empty() && packets.len() % 188 == 0);
        });
    }
});
