//! Any Elias-gamma run coding: decoding never panics, and a field that
//! decodes encodes back to the same runs (each field has one coding; the
//! first-bit flag of an empty field says nothing and is not compared, a
//! case the first long run found).
#![no_main]

use clubcast::wire::bitfield;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, u16, Vec<u8>)| {
    let (first, nbits, runs) = input;
    let nbits = usize::from(nbits % 4096);
    let mut bits = vec![0u8; bitfield::packed_len(nbits)];
    if bitfield::decode(first, &runs, nbits, &mut bits).is_err() {
        return;
    }
    let mut again = vec![0u8; 2 * nbits + 8];
    let (f, len) = bitfield::encode(&bits, nbits, &mut again).expect("a decoded field encodes");
    assert_eq!(&again[..len], &runs[..]);
    if nbits > 0 {
        assert_eq!(f, first);
    }
});
