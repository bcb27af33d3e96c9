//! Any block payload: the media header parser never panics, and a header
//! it accepts writes back to the bytes it read.
#![no_main]

use clubcast::media::MediaHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, rest)) = MediaHeader::parse(data) {
        let bytes = header.to_bytes();
        assert_eq!(&data[..bytes.len()], &bytes[..]);
        assert_eq!(rest.len(), data.len() - bytes.len());
    }
});
