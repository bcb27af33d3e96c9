//! Any bytes from an RTMP client, through the handshake and the chunk
//! stream (the first byte picks how): the session never panics, never
//! queues an unbounded answer, and passes on only media the stream can
//! carry. With an odd first byte a real publisher first completes the
//! handshake, connects and publishes with the key, so the fuzzed bytes
//! reach the chunk stream of a live publish. `rml_rtmp` panics on some
//! inputs; the session catches those and ends (tested in the crate), so
//! here a panic from within `rml_rtmp` or `rml_amf0` is let through to that
//! catch, and any other panic is a crash.
#![no_main]

use clubcast::media::flv;
use clubcast::media::rtmp_session::test_publisher::publish;
use clubcast::media::rtmp_session::RtmpSession;
use clubcast::media::Ingest;
use libfuzzer_sys::fuzz_target;
use std::sync::Once;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        let crash = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The panic site is often core's (a slice index); the stack
            // says whose call it was.
            let stack = std::backtrace::Backtrace::force_capture().to_string();
            let in_parser = stack.contains("rml_rtmp::") || stack.contains("rml_amf0::");
            if !in_parser {
                crash(info);
            }
        }));
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut server = RtmpSession::new(blake3::hash(b"key"));
    let (mut live, mut events, mut out) = (false, Vec::new(), Vec::new());
    if mode & 1 == 1 {
        assert!(
            publish(&mut server, &mut live, "live", "key", &mut events).is_ok(),
            "a real publisher with the key was refused"
        );
    }
    // Bytes arrive in pieces, as TCP cuts them.
    let piece = usize::from(mode >> 1).max(1) * 8;
    for bytes in rest.chunks(piece) {
        out.clear();
        if server.feed(bytes, &mut live, &mut out, &mut events).is_err() {
            break;
        }
        assert!(out.len() <= 64 * 1024, "a {} byte answer", out.len());
    }
    for event in &events {
        match event {
            Ingest::Video(_, body) => assert!(flv::check_video(body).is_ok()),
            Ingest::Audio(_, body) => assert!(flv::check_audio(body).is_ok()),
            Ingest::Started(_) | Ingest::Stopped(_) => {}
        }
    }
    assert_eq!(live, server.published());
});
