//! The peer's HTTP endpoint: the stream for players and browsers.
//!
//! [`HttpServer::start`] listens on an address with `tiny_http` and answers
//! each request on its own thread, at most [`MAX_REQUESTS`] at once (one
//! more gets 503 at once). Routes:
//! - `GET /stream`: registers a bounded queue with the peer's
//!   [`super::MediaOutput`] (through [`HttpServer::accept`], which the
//!   peer's loop calls) and waits for the stream to start; the response
//!   then carries the container's Content-Type and streams the queue's
//!   bytes with chunked encoding until the player leaves or the peer drops
//!   it. When no media comes within `start_timeout` the player gets 503.
//!   The number of players is bounded; one more gets 503 at once.
//! - `GET /live.m3u8` and `GET /seg/<n>.ts`: HLS ([`super::hls`]); a
//!   segment that does not exist or has expired gets 404, a playlist
//!   before the first segment 503.
//! - `GET /`: a page that plays the HLS stream and shows the peer's
//!   health, refreshed each second from `GET /status.json`, which the
//!   peer's loop publishes ([`HttpServer::publish_status`]). The page's
//!   script is part of the page, inside the binary.
//!
//! Anything else gets 404 or 405. Nothing a request does reaches the
//! peer's loop except a registration, which never blocks it; HLS and
//! status are read under a lock held only to copy out an `Arc` or a
//! string, never while writing to a client. Closing the server (once the
//! output has let go of the queues) waits, for at most [`DRAIN`], until
//! every player has been written what was queued for it, so that a stream
//! ends whole when its peer stops.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use super::hls::HlsSegmenter;
use super::output::{Chunk, MediaOutput};

/// Chunks queued per player: about four seconds of a 2 Mbit/s stream, or
/// a whole group since a random-access point plus some.
pub const PLAYER_QUEUE: usize = 1024;

/// Most players at once.
pub const MAX_PLAYERS: usize = 64;

/// Most requests answered at once (each holds a thread).
pub const MAX_REQUESTS: usize = 256;

/// The page at `/`.
const PAGE: &str = include_str!("page.html");

/// What the server shares with the peer's loop besides registrations.
#[derive(Debug, Clone)]
pub struct Site {
    /// The HLS segments.
    pub hls: Arc<Mutex<HlsSegmenter>>,
    /// The latest `/status.json`.
    pub status: Arc<Mutex<String>>,
}

/// Longest a closing server waits for its players to be written what was
/// queued for them.
pub const DRAIN: Duration = Duration::from_millis(1_500);

/// The HTTP endpoint of one peer.
pub struct HttpServer {
    server: Arc<Server>,
    registrations: Receiver<SyncSender<Chunk>>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Requests being answered (threads alive).
    busy: Arc<AtomicUsize>,
    addr: SocketAddr,
    status: Arc<Mutex<String>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Listens on `addr`, serving HLS from `hls`; a player waits at most
    /// `start_timeout` for the stream to begin.
    pub fn start(
        addr: SocketAddr,
        start_timeout: Duration,
        hls: Arc<Mutex<HlsSegmenter>>,
    ) -> io::Result<Self> {
        let server = Server::http(addr).map_err(|e| io::Error::other(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the HTTP server has no IP address"))?;
        let server = Arc::new(server);
        let (reg_tx, registrations) = mpsc::sync_channel(MAX_PLAYERS);
        let stop = Arc::new(AtomicBool::new(false));
        let players = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(Mutex::new(String::from("{}")));
        let site = Site {
            hls,
            status: Arc::clone(&status),
        };
        let thread = {
            let (server, stop, busy) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&busy));
            thread::Builder::new()
                .name(format!("http-{addr}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200))
                        else {
                            continue;
                        };
                        if busy.load(Ordering::Acquire) >= MAX_REQUESTS {
                            let _ = request.respond(text(503, "too many requests\n"));
                            continue;
                        }
                        let (reg_tx, players) = (reg_tx.clone(), Arc::clone(&players));
                        let site = site.clone();
                        let answering = Busy::enter(&busy);
                        let _ =
                            thread::Builder::new()
                                .name("http-request".into())
                                .spawn(move || {
                                    serve(request, &reg_tx, &players, &site, start_timeout);
                                    drop(answering);
                                });
                    }
                })?
        };
        Ok(HttpServer {
            server,
            registrations,
            thread: Some(thread),
            stop,
            busy,
            addr,
            status,
        })
    }

    /// Sets what `/status.json` answers.
    pub fn publish_status(&self, json: String) {
        if let Ok(mut s) = self.status.lock() {
            *s = json;
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Hands every player that asked since the last call to `output`.
    pub fn accept(&self, output: &mut MediaOutput) {
        while let Ok(tx) = self.registrations.try_recv() {
            output.add_player(tx);
        }
    }

    /// Stops taking requests, turns away the players still waiting for a
    /// start, and waits at most `within` for the others to be written what
    /// is queued for them (their queues must have been let go of, or they
    /// never end). Returns how many were still being written at the
    /// deadline. Dropping the server does the same within [`DRAIN`].
    pub fn close(mut self, within: Duration) -> usize {
        self.shut(within)
    }

    fn shut(&mut self, within: Duration) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        while self.registrations.try_recv().is_ok() {}
        let deadline = Instant::now() + within;
        loop {
            let left = self.busy.load(Ordering::Acquire);
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shut(DRAIN);
        }
    }
}

/// One request being answered, counted while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(count))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers one request.
fn serve(
    request: Request,
    reg_tx: &SyncSender<SyncSender<Chunk>>,
    players: &AtomicUsize,
    site: &Site,
    start_timeout: Duration,
) {
    if !matches!(request.method(), Method::Get | Method::Head) {
        let _ = request.respond(text(405, "only GET and HEAD\n"));
        return;
    }
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let body = |content_type: &str, bytes: Vec<u8>| {
        Response::from_data(bytes)
            .with_header(header("Content-Type", content_type))
            .with_header(header("Cache-Control", "no-cache"))
    };
    let _ = match path.as_str() {
        "/stream" => return stream(request, reg_tx, players, start_timeout),
        "/" | "/index.html" => request.respond(body("text/html; charset=utf-8", PAGE.into())),
        "/status.json" => {
            let json = site.status.lock().map(|s| s.clone()).unwrap_or_default();
            request.respond(body("application/json", json.into_bytes()))
        }
        "/live.m3u8" => match site.hls.lock().ok().and_then(|h| h.playlist()) {
            Some(p) => request.respond(body("application/vnd.apple.mpegurl", p.into_bytes())),
            None => request.respond(text(503, "no stream yet: no segment is ready\n")),
        },
        _ => {
            let seg = path
                .strip_prefix("/seg/")
                .and_then(|s| s.strip_suffix(".ts"))
                .and_then(|n| n.parse::<u64>().ok())
                .and_then(|n| site.hls.lock().ok().and_then(|h| h.segment(n)));
            match seg {
                Some(bytes) => {
                    let len = bytes.len();
                    request.respond(Response::new(
                        StatusCode(200),
                        vec![header("Content-Type", "video/mp2t")],
                        io::Cursor::new(bytes),
                        Some(len),
                        None,
                    ))
                }
                None => request.respond(text(404, "not found\n")),
            }
        }
    };
}

/// Streams the played stream to one player until it leaves.
fn stream(
    request: Request,
    reg_tx: &SyncSender<SyncSender<Chunk>>,
    players: &AtomicUsize,
    start_timeout: Duration,
) {
    if players.fetch_add(1, Ordering::AcqRel) >= MAX_PLAYERS {
        players.fetch_sub(1, Ordering::AcqRel);
        let _ = request.respond(text(503, "too many players on this peer\n"));
        return;
    }
    let (tx, rx) = mpsc::sync_channel(PLAYER_QUEUE);
    let container = if reg_tx.try_send(tx).is_err() {
        None
    } else {
        match rx.recv_timeout(start_timeout) {
            Ok(Chunk::Start(c)) => Some(c),
            Ok(Chunk::Bytes(_))
            | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    };
    let Some(container) = container else {
        players.fetch_sub(1, Ordering::AcqRel);
        let _ = request.respond(text(503, "no stream yet: the peer has no media to play\n"));
        return;
    };
    let headers = vec![
        header("Content-Type", container.content_type()),
        header("Cache-Control", "no-cache"),
    ];
    let body = QueueReader {
        rx,
        chunk: None,
        pos: 0,
    };
    let response = Response::new(StatusCode(200), headers, body, None, None);
    // Returns when the player leaves or the peer drops it.
    let _ = request.respond(response);
    players.fetch_sub(1, Ordering::AcqRel);
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| unreachable!("constant ASCII header"))
}

fn text(status: u16, body: &str) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain"))
}

/// A player's queue as a byte stream: ends when the peer drops the sender.
struct QueueReader {
    rx: Receiver<Chunk>,
    chunk: Option<Arc<[u8]>>,
    pos: usize,
}

impl Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.chunk {
                if self.pos < chunk.len() {
                    let n = buf.len().min(chunk.len() - self.pos);
                    buf[..n].copy_from_slice(&chunk[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok(Chunk::Bytes(b)) => {
                    self.chunk = Some(b);
                    self.pos = 0;
                }
                Ok(Chunk::Start(_)) => {}
                Err(_) => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::flv::FILE_HEADER;
    use crate::media::header::{Container, MediaHeader};
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// An FLV media block of `len` bytes of `fill`.
    fn block(rap: bool, fill: u8, len: usize) -> Vec<u8> {
        let mut b = MediaHeader {
            container: Container::Flv,
            rap,
            restart: false,
            ingest_us: 0,
        }
        .to_bytes()
        .to_vec();
        b.resize(b.len() + len, fill);
        b
    }

    /// A server with one player connected to `output`; the player's socket.
    fn one_player(output: &mut MediaOutput) -> (HttpServer, TcpStream) {
        let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), DRAIN, output.hls())
            .expect("listen on loopback");
        let mut s = TcpStream::connect(server.addr()).expect("connect");
        s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("request");
        let deadline = Instant::now() + Duration::from_secs(5);
        while output.players() == 0 && Instant::now() < deadline {
            server.accept(output);
            thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(output.players(), 1, "the player registered");
        (server, s)
    }

    /// The body of a chunked response.
    fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
        let start = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let (mut at, mut body) = (start, Vec::new());
        loop {
            let eol = at + raw[at..].windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&raw[at..eol]).ok()?, 16).ok()?;
            if size == 0 {
                return Some(body);
            }
            body.extend_from_slice(raw.get(eol + 2..eol + 2 + size)?);
            at = eol + 4 + size;
        }
    }

    #[test]
    fn closing_waits_until_each_player_has_its_stream_whole() {
        let mut output = MediaOutput::new();
        let (server, mut s) = one_player(&mut output);
        // 4 MiB: far more than the socket buffers hold.
        for i in 0..64u8 {
            output.play(0, Some(&block(i == 0, i, 64 << 10)));
        }
        let reader = thread::spawn(move || {
            let mut raw = Vec::new();
            let mut buf = [0u8; 16 << 10];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return raw,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
                thread::sleep(Duration::from_micros(200));
            }
        });
        drop(output);
        assert_eq!(server.close(DRAIN), 0, "every player was written out");
        let raw = reader.join().expect("reader");
        let body = dechunk(&raw).expect("a whole chunked body");
        assert_eq!(&body[..FILE_HEADER.len()], &FILE_HEADER);
        assert_eq!(body.len(), FILE_HEADER.len() + 64 * (64 << 10));
        assert!(body.ends_with(&[63u8; 64 << 10]));
    }

    /// Status line and body of `GET path`.
    fn get(server: &HttpServer, path: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(server.addr()).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("response");
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let status = String::from_utf8_lossy(&raw[..end])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        (status, raw.get(end + 4..).unwrap_or(&[]).to_vec())
    }

    #[test]
    fn hls_the_page_and_status_are_served_and_unknown_segments_get_404() {
        let mut output = MediaOutput::with_segment_target(1_000_000);
        let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), DRAIN, output.hls())
            .expect("listen on loopback");
        let (status, _) = get(&server, "/live.m3u8");
        assert!(status.contains(" 503"), "no segment yet: {status}");
        let (status, page) = get(&server, "/");
        assert!(status.contains(" 200"), "{status}");
        assert!(String::from_utf8_lossy(&page).contains("<video"));
        server.publish_status("{\"continuity\":1}".into());
        let (_, status_json) = get(&server, "/status.json");
        assert_eq!(status_json, b"{\"continuity\":1}");
        // Three seconds of a TS feed, a random-access block each second.
        for i in 0..30u64 {
            let mut b = MediaHeader {
                container: Container::Ts,
                rap: i % 10 == 0,
                restart: false,
                ingest_us: i * 100_000,
            }
            .to_bytes()
            .to_vec();
            b.extend_from_slice(&[0x47; 188]);
            output.play(0, Some(&b));
        }
        let (status, playlist) = get(&server, "/live.m3u8");
        assert!(status.contains(" 200"), "{status}");
        assert!(String::from_utf8_lossy(&playlist).contains("seg/1.ts"));
        let (status, seg) = get(&server, "/seg/1.ts");
        assert!(status.contains(" 200"), "{status}");
        assert_eq!(seg.len(), 10 * 188);
        for missing in [
            "/seg/2.ts",
            "/seg/99.ts",
            "/seg/x.ts",
            "/seg/-1.ts",
            "/nothing",
        ] {
            let (status, _) = get(&server, missing);
            assert!(status.contains(" 404"), "{missing}: {status}");
        }
    }

    #[test]
    fn stalled_hls_clients_hold_neither_the_output_nor_other_requests() {
        let mut output = MediaOutput::with_segment_target(1_000_000);
        let server = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), DRAIN, output.hls())
            .expect("listen on loopback");
        // Segments of 8 MiB: far more than socket buffers hold.
        let play = |output: &mut MediaOutput, from: u64, to: u64| {
            for i in from..to {
                let mut b = MediaHeader {
                    container: Container::Ts,
                    rap: i % 2 == 0,
                    restart: false,
                    ingest_us: i * 500_000,
                }
                .to_bytes()
                .to_vec();
                b.extend_from_slice(&[0x47; 4 << 20]);
                output.play(0, Some(&b));
            }
        };
        play(&mut output, 0, 6);
        // Clients that ask for a segment and never read.
        let stalled: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut s = TcpStream::connect(server.addr()).expect("connect");
                s.write_all(b"GET /seg/0.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                    .expect("request");
                s
            })
            .collect();
        thread::sleep(Duration::from_millis(200));
        // The output plays on at once, and others are answered.
        let t = Instant::now();
        play(&mut output, 6, 12);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let (status, playlist) = get(&server, "/live.m3u8");
        assert!(status.contains(" 200"), "{status}");
        assert!(String::from_utf8_lossy(&playlist).contains("seg/4.ts"));
        drop(stalled);
    }

    #[test]
    fn closing_gives_up_on_a_stalled_player_at_the_deadline() {
        let mut output = MediaOutput::new();
        let (server, _never_read) = one_player(&mut output);
        for i in 0..64u8 {
            output.play(0, Some(&block(i == 0, i, 64 << 10)));
        }
        drop(output);
        let t = Instant::now();
        assert_eq!(server.close(Duration::from_millis(300)), 1);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
