//! Any datagram: the parser never panics, and what it accepts encodes
//! back to the same bytes and parses to the same message.
#![no_main]

use clubcast::wire::{Message, MAX_DATAGRAM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = msg.encode(&mut buf).expect("a parsed message encodes");
    assert_eq!(&buf[..len], data, "re-encoding differs");
    assert_eq!(Message::parse(&buf[..len]).ok(), Some(msg));
});
