//! Elias-gamma run-length bit fields ([0056]): hand-derived vectors,
//! round trips, and rejection of every non-canonical coding.

use clubcast::wire::bitfield::{decode, encode, get_bit, packed_len, set_bit, validate};
use proptest::prelude::*;

/// Packs a string of '0'/'1' into MSB-first bytes.
fn bits(s: &str) -> (Vec<u8>, usize) {
    let mut out = vec![0u8; packed_len(s.len())];
    for (i, c) in s.chars().enumerate() {
        if c == '1' {
            set_bit(&mut out, i);
        }
    }
    (out, s.len())
}

fn coded(s: &str) -> (bool, Vec<u8>) {
    let (b, n) = bits(s);
    let mut out = vec![0u8; 64];
    let (first, len) = encode(&b, n, &mut out).expect("room");
    out.truncate(len);
    (first, out)
}

// Gamma codes derived by hand: 1 -> 1, 2 -> 010, 3 -> 011, 4 -> 00100,
// 5 -> 00101, 9 -> 0001001, 17 -> 000010001.

#[test]
fn runs_3_2_1_1_pack_into_0x6b() {
    // 1110010: first 1, runs 3,2,1,1 -> 011 010 1 1 -> 0110 1011.
    assert_eq!(coded("1110010"), (true, vec![0x6B]));
}

#[test]
fn single_run_of_one_bit_is_a_lone_one() {
    // 0: run 1 -> "1", padded -> 1000 0000.
    assert_eq!(coded("0"), (false, vec![0x80]));
}

#[test]
fn run_of_nine_then_run_of_five() {
    // 000000000 11111: runs 9,5 -> 0001001 00101 -> 0001 0010 0101 0000.
    assert_eq!(coded("00000000011111"), (false, vec![0x12, 0x50]));
}

#[test]
fn run_of_seventeen_crosses_bytes() {
    // seventeen 1s: 000010001 -> 0000 1000 1000 0000.
    assert_eq!(coded(&"1".repeat(17)), (true, vec![0x08, 0x80]));
}

#[test]
fn alternating_bits_are_all_ones() {
    // 10101010: eight runs of 1 -> 1111 1111.
    assert_eq!(coded("10101010"), (true, vec![0xFF]));
}

#[test]
fn empty_field_has_no_bytes() {
    assert_eq!(coded(""), (false, vec![]));
    assert!(validate(&[], 0).is_ok());
    assert!(validate(&[0x80], 0).is_err());
}

#[test]
fn non_canonical_codings_are_rejected() {
    assert!(validate(&[0x6B], 7).is_ok());
    // 1000 0001: run 1 for a 1-bit field, then a set padding bit.
    assert!(validate(&[0x81], 1).is_err());
    // A whole extra byte after the last run.
    assert!(validate(&[0x6B, 0x00], 7).is_err());
    // A run longer than the field: run 3 for a 2-bit field.
    assert!(validate(&[0x60], 2).is_err());
    // Cut off: 0001 0010 announces run 9 then needs more bits for 5 bits.
    assert!(validate(&[0x12], 14).is_err());
    // Forty zero bits: a gamma prefix too long to be a run.
    assert!(validate(&[0, 0, 0, 0, 0, 0x80], 100).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_field_round_trips(data in prop::collection::vec(any::<u8>(), 0..200), drop in 0usize..8) {
        let nbits = (data.len() * 8).saturating_sub(drop);
        let mut runs = vec![0u8; 2 * data.len() * 8 + 8];
        let (first, len) = encode(&data, nbits, &mut runs).expect("room");
        validate(&runs[..len], nbits).expect("own encoding is canonical");
        let mut back = vec![0xAAu8; packed_len(nbits)];
        decode(first, &runs[..len], nbits, &mut back).expect("decodes");
        for i in 0..nbits {
            prop_assert_eq!(get_bit(&back, i), get_bit(&data, i));
        }
        if nbits % 8 != 0 {
            prop_assert_eq!(back[nbits / 8] & (0xFF >> (nbits % 8)), 0);
        }
    }

    #[test]
    fn arbitrary_runs_never_panic(runs in prop::collection::vec(any::<u8>(), 0..64), nbits in 0usize..70000) {
        let mut out = vec![0u8; packed_len(nbits)];
        let _ = decode(true, &runs, nbits, &mut out);
        let _ = validate(&runs, nbits);
    }

    #[test]
    fn too_small_output_is_an_error(data in prop::collection::vec(any::<u8>(), 1..50)) {
        let nbits = data.len() * 8;
        let mut runs = vec![0u8; 1];
        // One byte holds at most 8 runs of 1; longer fields may not fit,
        // which must be an error, not a panic.
        let _ = encode(&data, nbits, &mut runs);
    }
}
