//! The source's RTMP endpoint: OBS or ffmpeg push here.
//!
//! [`RtmpServer::start`] listens on a TCP address; each connection gets a
//! thread that runs the handshake and an `rml_rtmp` server session, within
//! caps: `MAX_CONNECTIONS` at once and `MAX_PER_IP` from one address
//! (more are closed at once, counted), so idle connections cannot pile up
//! threads, and one address cannot fill the listener. Only a publisher
//! with the source's stream key (the last part of the RTMP URL, as OBS and
//! ffmpeg send it; compared in constant time) may publish; any other
//! publish is refused with a reason. One publisher at a time may publish;
//! a second is refused, so a live publisher cannot be replaced. The publisher's audio and video messages go to the source's
//! loop as [`Ingest`] events through a bounded channel (a slow loop slows
//! the publisher down, as TCP does). Whatever goes wrong with a client (a
//! handshake that fails or does not finish in time, garbage, a codec the
//! stream cannot carry, a protocol error, silence) ends that connection with
//! one log line that says why; the listener and the source stay up.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

use super::flv;

/// Events queued from the RTMP threads to the source's loop.
pub const INGEST_QUEUE: usize = 4096;

/// A handshake must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection silent for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 256;

/// Connections served at once from one IP address.
pub const MAX_PER_IP: usize = 8;

/// What the listener refused, for the counters.
#[derive(Debug, Default)]
pub struct RtmpCounters {
    /// Connections closed at once: over `MAX_CONNECTIONS` or `MAX_PER_IP`.
    pub connections_refused: AtomicU64,
    /// Publish requests refused: a wrong stream key, or another publisher
    /// live.
    pub publishers_refused: AtomicU64,
}

/// What a publisher sends, for the source's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// A publisher started (its app name; the key is never logged): a new
    /// session.
    Started(String),
    /// A video message body (an FLV VIDEODATA body) at a time in ms.
    Video(u32, Vec<u8>),
    /// An audio message body (an FLV AUDIODATA body) at a time in ms.
    Audio(u32, Vec<u8>),
    /// The publisher stopped or went away; why.
    Stopped(String),
}

/// The RTMP listener.
#[derive(Debug)]
pub struct RtmpServer {
    addr: SocketAddr,
    events: Receiver<Ingest>,
    counters: Arc<RtmpCounters>,
}

/// What every connection's thread shares.
struct Shared {
    tx: SyncSender<Ingest>,
    publishing: AtomicBool,
    key: blake3::Hash,
    open: Mutex<HashMap<IpAddr, usize>>,
    counters: Arc<RtmpCounters>,
}

impl RtmpServer {
    /// Listens on `addr` for publishers with the stream key `key`.
    pub fn start(addr: SocketAddr, key: &str) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let (tx, events) = mpsc::sync_channel(INGEST_QUEUE);
        let counters = Arc::new(RtmpCounters::default());
        let shared = Arc::new(Shared {
            tx,
            publishing: AtomicBool::new(false),
            key: blake3::hash(key.as_bytes()),
            open: Mutex::new(HashMap::new()),
            counters: Arc::clone(&counters),
        });
        thread::Builder::new()
            .name(format!("rtmp-{addr}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let Some(ip) = stream.peer_addr().ok().map(|a| a.ip()) else {
                        continue;
                    };
                    if !shared.admit(ip) {
                        shared
                            .counters
                            .connections_refused
                            .fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    }
                    let shared = Arc::clone(&shared);
                    let spawned = thread::Builder::new()
                        .name("rtmp-client".into())
                        .stack_size(256 * 1024)
                        .spawn({
                            let shared = Arc::clone(&shared);
                            move || {
                                client(stream, &shared);
                                shared.release(ip);
                            }
                        });
                    if spawned.is_err() {
                        shared.release(ip);
                    }
                }
            })?;
        Ok(RtmpServer {
            addr,
            events,
            counters,
        })
    }

    /// What the listener refused so far.
    pub fn counters(&self) -> &RtmpCounters {
        &self.counters
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next event, if one is waiting.
    pub fn try_event(&self) -> Option<Ingest> {
        self.events.try_recv().ok()
    }
}

impl Shared {
    /// Takes a connection slot for `ip`, if the caps allow.
    fn admit(&self, ip: IpAddr) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let mine = open.entry(ip).or_insert(0);
        if total >= MAX_CONNECTIONS || *mine >= MAX_PER_IP {
            if *mine == 0 {
                open.remove(&ip);
            }
            return false;
        }
        *mine += 1;
        true
    }

    /// Gives back a slot of `ip`.
    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Runs one connection to its end and logs why it ended.
fn client(mut stream: TcpStream, shared: &Shared) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut published = false;
    let why = session(&mut stream, shared, &mut published)
        .err()
        .unwrap_or_else(|| "the publisher closed the connection".into());
    if published {
        shared.publishing.store(false, Ordering::Release);
        let _ = shared.tx.send(Ingest::Stopped(why.clone()));
    }
    eprintln!("clubcast: rtmp {peer}: disconnected: {why}");
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    stream
        .write_all(bytes)
        .map_err(|e| format!("write failed: {e}"))
}

/// Reads into `buf`; `Ok(0)` is a closed connection.
fn read(stream: &mut TcpStream, buf: &mut [u8], what: &str) -> Result<usize, String> {
    match stream.read(buf) {
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!("{what}: nothing received in time"))
        }
        Err(e) => Err(format!("{what}: read failed: {e}")),
    }
}

/// The handshake, then the session until it ends. `Ok` when the client
/// closed the connection.
fn session(stream: &mut TcpStream, shared: &Shared, published: &mut bool) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let deadline = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 16 * 1024];
    let leftover = loop {
        // A deadline for the whole handshake, not per read: a client that
        // trickles bytes is cut off too.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "handshake not completed within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = read(stream, &mut buf, "handshake not completed in time")?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        match handshake.process_bytes(&buf[..n]) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                write_all(stream, &response_bytes)?;
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                write_all(stream, &response_bytes)?;
                break remaining_bytes;
            }
            Err(e) => return Err(format!("handshake failed (not an RTMP client?): {e:?}")),
        }
    };
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let (mut server, results) = ServerSession::new(ServerSessionConfig::new())
        .map_err(|e| format!("session setup failed: {e:?}"))?;
    let mut pending = results;
    let mut input = leftover;
    loop {
        if !input.is_empty() {
            let results = server
                .handle_input(&input)
                .map_err(|e| format!("protocol error: {e:?}"))?;
            pending.extend(results);
            input.clear();
        }
        while !pending.is_empty() {
            let batch = std::mem::take(&mut pending);
            for result in batch {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => {
                        write_all(stream, &packet.bytes)?;
                    }
                    ServerSessionResult::RaisedEvent(event) => {
                        pending.extend(on_event(&mut server, event, shared, published)?);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
        let n = read(stream, &mut buf, "publisher silent")?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&buf[..n]);
    }
}

/// Handles one session event; returns what the session wants sent.
fn on_event(
    server: &mut ServerSession,
    event: ServerSessionEvent,
    shared: &Shared,
    published: &mut bool,
) -> Result<Vec<ServerSessionResult>, String> {
    let tx = &shared.tx;
    let refuse = |server: &mut ServerSession, id: u32, why: &str| {
        server
            .reject_request(id, "NetStream.Publish.BadName", why)
            .map_err(|e| format!("refusing a request failed: {e:?}"))
    };
    match event {
        ServerSessionEvent::ConnectionRequested { request_id, .. } => server
            .accept_request(request_id)
            .map_err(|e| format!("accepting the connection failed: {e:?}")),
        ServerSessionEvent::PublishStreamRequested {
            request_id,
            app_name,
            stream_key,
            ..
        } => {
            // blake3::Hash compares in constant time.
            if blake3::hash(stream_key.as_bytes()) != shared.key {
                shared
                    .counters
                    .publishers_refused
                    .fetch_add(1, Ordering::Relaxed);
                refuse(server, request_id, "wrong stream key")?;
                return Err(format!(
                    "refused: wrong stream key for app `{app_name}` (push to rtmp://HOST:PORT/APP/KEY with the source's key)"
                ));
            }
            if *published || shared.publishing.swap(true, Ordering::AcqRel) {
                shared
                    .counters
                    .publishers_refused
                    .fetch_add(1, Ordering::Relaxed);
                refuse(server, request_id, "another publisher is live")?;
                return Err("refused: another publisher is live on this source".into());
            }
            *published = true;
            tx.send(Ingest::Started(app_name.clone()))
                .map_err(|_| "the source stopped".to_string())?;
            server
                .accept_request(request_id)
                .map_err(|e| format!("accepting the publish failed: {e:?}"))
        }
        ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
            refuse(server, request_id, "this source only takes a publish")?;
            Err("refused: a player asked to play; players connect to a peer's HTTP /stream".into())
        }
        ServerSessionEvent::VideoDataReceived {
            data, timestamp, ..
        } if *published => {
            flv::check_video(&data).map_err(|e| e.to_string())?;
            tx.send(Ingest::Video(timestamp.value, data.to_vec()))
                .map_err(|_| "the source stopped".to_string())?;
            Ok(Vec::new())
        }
        ServerSessionEvent::AudioDataReceived {
            data, timestamp, ..
        } if *published => {
            flv::check_audio(&data).map_err(|e| e.to_string())?;
            tx.send(Ingest::Audio(timestamp.value, data.to_vec()))
                .map_err(|_| "the source stopped".to_string())?;
            Ok(Vec::new())
        }
        ServerSessionEvent::PublishStreamFinished { .. } => {
            Err("the publisher stopped publishing".into())
        }
        _ => Ok(Vec::new()),
    }
}
