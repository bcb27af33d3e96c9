//! One RTMP publisher connection as a sans-IO state machine.
//!
//! [`RtmpSession`] takes the bytes a client sent and returns the bytes to
//! send back and the [`Ingest`] events for the source: first the RTMP
//! handshake, then an `rml_rtmp` server session (the chunk stream and its
//! commands). It owns the publishing rules: only a publish with the
//! source's stream key (compared in constant time) is accepted, and only
//! while no other publisher is live (the caller's `live` flag, shared by
//! every connection of one listener). Anything wrong with the client
//! (garbage, a failed handshake, a protocol error, a codec the stream
//! cannot carry, a refused publish) ends the session with an [`Ended`]
//! that says why. No socket, clock or thread lives here, so the fuzz
//! target drives exactly what the listener runs.

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

use super::flv;
use super::rtmp::Ingest;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// One line for the log.
    pub reason: String,
    /// True when the end is a refused publish (wrong key, or another
    /// publisher live), for the counters.
    pub refused_publisher: bool,
}

impl Ended {
    fn error(reason: impl Into<String>) -> Self {
        Ended {
            reason: reason.into(),
            refused_publisher: false,
        }
    }

    fn refused(reason: impl Into<String>) -> Self {
        Ended {
            reason: reason.into(),
            refused_publisher: true,
        }
    }
}

enum Stage {
    Handshake(Box<Handshake>),
    Session(Box<ServerSession>),
}

/// One client connection's protocol state.
pub struct RtmpSession {
    stage: Stage,
    key: blake3::Hash,
    published: bool,
}

impl std::fmt::Debug for RtmpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpSession")
            .field("handshake_done", &self.handshake_done())
            .field("published", &self.published)
            .finish()
    }
}

impl RtmpSession {
    /// A session waiting for the client's handshake; `key` is the BLAKE3
    /// digest of the source's stream key.
    pub fn new(key: blake3::Hash) -> Self {
        RtmpSession {
            stage: Stage::Handshake(Box::new(Handshake::new(PeerType::Server))),
            key,
            published: false,
        }
    }

    /// True once the handshake is over.
    pub fn handshake_done(&self) -> bool {
        matches!(self.stage, Stage::Session(_))
    }

    /// True while this session is the live publisher.
    pub fn published(&self) -> bool {
        self.published
    }

    /// Takes `bytes` from the client. What must be sent back is appended
    /// to `out`, what the source gets to `events`. `live` is true while
    /// some session of the listener publishes. An `Err` ends the session;
    /// call [`RtmpSession::close`] then.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        live: &mut bool,
        out: &mut Vec<u8>,
        events: &mut Vec<Ingest>,
    ) -> Result<(), Ended> {
        let input = match &mut self.stage {
            Stage::Handshake(handshake) => match guarded(|| handshake.process_bytes(bytes))? {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    out.extend_from_slice(&response_bytes);
                    return Ok(());
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    out.extend_from_slice(&response_bytes);
                    let (server, results) = ServerSession::new(ServerSessionConfig::new())
                        .map_err(|e| Ended::error(format!("session setup failed: {e:?}")))?;
                    self.stage = Stage::Session(Box::new(server));
                    self.run(results, live, out, events)?;
                    remaining_bytes
                }
                Err(e) => {
                    return Err(Ended::error(format!(
                        "handshake failed (not an RTMP client?): {e:?}"
                    )))
                }
            },
            Stage::Session(_) => bytes.to_vec(),
        };
        if input.is_empty() {
            return Ok(());
        }
        let Stage::Session(server) = &mut self.stage else {
            return Ok(());
        };
        let results = guarded(|| server.handle_input(&input))?
            .map_err(|e| Ended::error(format!("protocol error: {e:?}")))?;
        self.run(results, live, out, events)
    }

    /// Ends the session: if it was the live publisher, `live` is cleared
    /// and the source gets a `Stopped` event with `why`.
    pub fn close(&mut self, why: &str, live: &mut bool) -> Option<Ingest> {
        if !self.published {
            return None;
        }
        self.published = false;
        *live = false;
        Some(Ingest::Stopped(why.to_string()))
    }

    /// Works off session results until none are left.
    fn run(
        &mut self,
        mut pending: Vec<ServerSessionResult>,
        live: &mut bool,
        out: &mut Vec<u8>,
        events: &mut Vec<Ingest>,
    ) -> Result<(), Ended> {
        let Stage::Session(server) = &mut self.stage else {
            return Ok(());
        };
        while !pending.is_empty() {
            for result in std::mem::take(&mut pending) {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => {
                        out.extend_from_slice(&packet.bytes);
                    }
                    ServerSessionResult::RaisedEvent(event) => {
                        pending.extend(on_event(
                            server,
                            event,
                            &self.key,
                            &mut self.published,
                            live,
                            events,
                        )?);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// Runs `rml_rtmp` on client bytes. Some inputs make it panic (an AMF0
/// command with fewer than three values, found by the `rtmp_session` fuzz
/// target); that ends the one session, never the listener.
fn guarded<T>(parse: impl FnOnce() -> T) -> Result<T, Ended> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).map_err(|_| {
        Ended::error("protocol error: input the RTMP parser cannot take (a malformed message)")
    })
}

/// Handles one session event; returns what the session wants sent.
fn on_event(
    server: &mut ServerSession,
    event: ServerSessionEvent,
    key: &blake3::Hash,
    published: &mut bool,
    live: &mut bool,
    events: &mut Vec<Ingest>,
) -> Result<Vec<ServerSessionResult>, Ended> {
    let refuse = |server: &mut ServerSession, id: u32, why: &str| {
        server
            .reject_request(id, "NetStream.Publish.BadName", why)
            .map_err(|e| Ended::error(format!("refusing a request failed: {e:?}")))
    };
    match event {
        ServerSessionEvent::ConnectionRequested { request_id, .. } => server
            .accept_request(request_id)
            .map_err(|e| Ended::error(format!("accepting the connection failed: {e:?}"))),
        ServerSessionEvent::PublishStreamRequested {
            request_id,
            app_name,
            stream_key,
            ..
        } => {
            // blake3::Hash compares in constant time.
            if blake3::hash(stream_key.as_bytes()) != *key {
                refuse(server, request_id, "wrong stream key")?;
                return Err(Ended::refused(format!(
                    "refused: wrong stream key for app `{app_name}` (push to rtmp://HOST:PORT/APP/KEY with the source's key)"
                )));
            }
            if *published || *live {
                refuse(server, request_id, "another publisher is live")?;
                return Err(Ended::refused(
                    "refused: another publisher is live on this source",
                ));
            }
            *published = true;
            *live = true;
            events.push(Ingest::Started(app_name));
            server
                .accept_request(request_id)
                .map_err(|e| Ended::error(format!("accepting the publish failed: {e:?}")))
        }
        ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
            refuse(server, request_id, "this source only takes a publish")?;
            Err(Ended::error(
                "refused: a player asked to play; players connect to a peer's HTTP /stream",
            ))
        }
        ServerSessionEvent::VideoDataReceived {
            data, timestamp, ..
        } if *published => {
            flv::check_video(&data).map_err(|e| Ended::error(e.to_string()))?;
            events.push(Ingest::Video(timestamp.value, data.to_vec()));
            Ok(Vec::new())
        }
        ServerSessionEvent::AudioDataReceived {
            data, timestamp, ..
        } if *published => {
            flv::check_audio(&data).map_err(|e| Ended::error(e.to_string()))?;
            events.push(Ingest::Audio(timestamp.value, data.to_vec()));
            Ok(Vec::new())
        }
        ServerSessionEvent::PublishStreamFinished { .. } => {
            Err(Ended::error("the publisher stopped publishing"))
        }
        _ => Ok(Vec::new()),
    }
}

/// A publisher that talks to an [`RtmpSession`] in memory, for the tests
/// and the fuzz target: it runs the handshake, connects and publishes,
/// then sends audio and video messages.
#[cfg(any(test, fuzzing))]
pub mod test_publisher {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    use rml_rtmp::time::RtmpTimestamp;

    use super::{Ended, Ingest, RtmpSession};

    /// A connected publisher.
    pub struct Publisher {
        client: ClientSession,
    }

    /// Runs the handshake, a connect to `app` and a publish with `key`
    /// against `server`. `Err` is how the server ended the session, or a
    /// client-side failure.
    pub fn publish(
        server: &mut RtmpSession,
        live: &mut bool,
        app: &str,
        key: &str,
        events: &mut Vec<Ingest>,
    ) -> Result<Publisher, Ended> {
        let fail = |e: &dyn std::fmt::Debug| Ended::error(format!("client: {e:?}"));
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| fail(&e))?;
        let mut answer = Vec::new();
        server.feed(&c0c1, live, &mut answer, events)?;
        let c2 = match handshake.process_bytes(&answer).map_err(|e| fail(&e))? {
            HandshakeProcessResult::InProgress { response_bytes }
            | HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
        };
        answer.clear();
        server.feed(&c2, live, &mut answer, events)?;
        let (mut client, _) =
            ClientSession::new(ClientSessionConfig::new()).map_err(|e| fail(&e))?;
        let mut to_server = vec![client
            .request_connection(app.to_string())
            .map_err(|e| fail(&e))?];
        for _ in 0..16 {
            for result in std::mem::take(&mut to_server) {
                if let ClientSessionResult::OutboundResponse(packet) = result {
                    server.feed(&packet.bytes, live, &mut answer, events)?;
                }
            }
            let results = client
                .handle_input(&std::mem::take(&mut answer))
                .map_err(|e| fail(&e))?;
            for result in results {
                match result {
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestAccepted,
                    ) => {
                        to_server.push(
                            client
                                .request_publishing(key.to_string(), PublishRequestType::Live)
                                .map_err(|e| fail(&e))?,
                        );
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::PublishRequestAccepted,
                    ) => {
                        return Ok(Publisher { client });
                    }
                    other => to_server.push(other),
                }
            }
        }
        Err(Ended::error("client: the publish was never accepted"))
    }

    impl Publisher {
        /// The bytes of one video (`video`) or audio message at `ms`.
        pub fn message(&mut self, video: bool, ms: u32, body: &[u8]) -> Result<Vec<u8>, Ended> {
            let at = RtmpTimestamp::new(ms);
            let sent = if video {
                self.client
                    .publish_video_data(body.to_vec().into(), at, false)
            } else {
                self.client
                    .publish_audio_data(body.to_vec().into(), at, false)
            };
            match sent {
                Ok(ClientSessionResult::OutboundResponse(packet)) => Ok(packet.bytes),
                other => Err(Ended::error(format!("client: {other:?}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_publisher::publish;
    use super::*;

    const KEY: &str = "the-key";

    #[test]
    fn the_key_publishes_and_media_comes_through() {
        let mut server = RtmpSession::new(blake3::hash(KEY.as_bytes()));
        let (mut live, mut events, mut out) = (false, Vec::new(), Vec::new());
        let mut publisher =
            publish(&mut server, &mut live, "live", KEY, &mut events).expect("publishes");
        assert!(live && server.published());
        assert_eq!(events, vec![Ingest::Started("live".into())]);
        events.clear();
        let video = publisher
            .message(true, 40, &[0x17, 0, 1, 2])
            .expect("video");
        let audio = publisher.message(false, 41, &[0xAF, 1, 9]).expect("audio");
        server
            .feed(&video, &mut live, &mut out, &mut events)
            .expect("video in");
        server
            .feed(&audio, &mut live, &mut out, &mut events)
            .expect("audio in");
        assert_eq!(
            events,
            vec![
                Ingest::Video(40, vec![0x17, 0, 1, 2]),
                Ingest::Audio(41, vec![0xAF, 1, 9])
            ]
        );
        assert_eq!(
            server.close("gone", &mut live),
            Some(Ingest::Stopped("gone".into()))
        );
        assert!(!live);
    }

    #[test]
    fn a_wrong_key_and_a_second_publisher_are_refused() {
        let key = blake3::hash(KEY.as_bytes());
        let (mut live, mut events) = (false, Vec::new());
        let mut wrong = RtmpSession::new(key);
        let ended = publish(&mut wrong, &mut live, "live", "guess", &mut events).err();
        assert!(ended
            .as_ref()
            .is_some_and(|e| e.refused_publisher && e.reason.contains("wrong stream key")));
        assert!(!live && events.is_empty());
        let mut first = RtmpSession::new(key);
        publish(&mut first, &mut live, "live", KEY, &mut events).expect("first publishes");
        let mut second = RtmpSession::new(key);
        let ended = publish(&mut second, &mut live, "live", KEY, &mut events).err();
        assert!(
            ended.is_some_and(
                |e| e.refused_publisher && e.reason.contains("another publisher is live")
            )
        );
        assert!(live && first.published() && !second.published());
        assert_eq!(second.close("x", &mut live), None);
        assert!(live, "closing a refused session leaves the live one live");
    }

    #[test]
    fn garbage_and_an_unsupported_codec_end_the_session() {
        let key = blake3::hash(KEY.as_bytes());
        let (mut live, mut events, mut out) = (false, Vec::new(), Vec::new());
        let mut junk = RtmpSession::new(key);
        let ended = junk.feed(&[0x47; 3000], &mut live, &mut out, &mut events);
        assert!(ended.is_err_and(|e| e.reason.contains("handshake failed")));
        let mut server = RtmpSession::new(key);
        let mut publisher =
            publish(&mut server, &mut live, "live", KEY, &mut events).expect("publishes");
        let vp6 = publisher.message(true, 0, &[0x14, 0, 0]).expect("video");
        let ended = server.feed(&vp6, &mut live, &mut out, &mut events);
        assert!(ended.is_err());
    }

    /// An AMF0 command message with one value (a chunk on stream 3,
    /// message type 20) panics inside `rml_rtmp`; the session ends with a
    /// reason instead, and the live publisher elsewhere is untouched.
    #[test]
    fn a_command_the_parser_panics_on_ends_only_that_session() {
        let key = blake3::hash(KEY.as_bytes());
        let (mut live, mut events, mut out) = (false, Vec::new(), Vec::new());
        let mut publisher = RtmpSession::new(key);
        publish(&mut publisher, &mut live, "live", KEY, &mut events).expect("publishes");
        let mut attacker = RtmpSession::new(key);
        let mut hs = rml_rtmp::handshake::Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().expect("c0c1");
        attacker
            .feed(&c0c1, &mut live, &mut out, &mut events)
            .expect("s0s1s2");
        let c2 = match hs.process_bytes(&out).expect("c2") {
            HandshakeProcessResult::InProgress { response_bytes }
            | HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
        };
        out.clear();
        attacker
            .feed(&c2, &mut live, &mut out, &mut events)
            .expect("handshake");
        // fmt 0, csid 3; time 0; length 8; type 20; stream 0; then one
        // AMF0 string "connect" and nothing else.
        let mut chunk = vec![0x03, 0, 0, 0, 0, 0, 10, 20, 0, 0, 0, 0];
        chunk.extend_from_slice(&[0x02, 0, 7]);
        chunk.extend_from_slice(b"connect");
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let ended = attacker.feed(&chunk, &mut live, &mut out, &mut events);
        std::panic::set_hook(prev);
        assert!(ended.is_err_and(|e| e.reason.contains("cannot take")));
        assert!(live && publisher.published());
    }
}
