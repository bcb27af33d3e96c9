//! The peer's HTTP endpoint: `/stream` for players.
//!
//! [`HttpServer::start`] listens on an address with `tiny_http` and answers
//! each request on its own thread. `GET /stream` registers a bounded queue
//! with the peer's [`super::MediaOutput`] (through [`HttpServer::accept`],
//! which the peer's loop calls) and waits for the stream to start; the
//! response then carries the container's Content-Type and streams the
//! queue's bytes with chunked encoding until the player leaves or the peer
//! drops it. Anything else gets 404 or 405. When no media comes within
//! `start_timeout` the player gets 503. The number of players is bounded;
//! one more gets 503 at once. Nothing a player does reaches the peer's
//! loop except a registration, which never blocks it.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use super::output::{Chunk, MediaOutput};

/// Chunks queued per player: about four seconds of a 2 Mbit/s stream, or
/// a whole group since a random-access point plus some.
pub const PLAYER_QUEUE: usize = 1024;

/// Most players at once.
pub const MAX_PLAYERS: usize = 64;

/// The HTTP endpoint of one peer.
pub struct HttpServer {
    server: Arc<Server>,
    registrations: Receiver<SyncSender<Chunk>>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Listens on `addr`; a player waits at most `start_timeout` for the
    /// stream to begin.
    pub fn start(addr: SocketAddr, start_timeout: Duration) -> io::Result<Self> {
        let server = Server::http(addr).map_err(|e| io::Error::other(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the HTTP server has no IP address"))?;
        let server = Arc::new(server);
        let (reg_tx, registrations) = mpsc::sync_channel(MAX_PLAYERS);
        let stop = Arc::new(AtomicBool::new(false));
        let players = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("http-{addr}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200))
                        else {
                            continue;
                        };
                        let (reg_tx, players) = (reg_tx.clone(), Arc::clone(&players));
                        let _ = thread::Builder::new()
                            .name("http-player".into())
                            .spawn(move || serve(request, &reg_tx, &players, start_timeout));
                    }
                })?
        };
        Ok(HttpServer {
            server,
            registrations,
            thread: Some(thread),
            stop,
            addr,
        })
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
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request.
fn serve(
    request: Request,
    reg_tx: &SyncSender<SyncSender<Chunk>>,
    players: &AtomicUsize,
    start_timeout: Duration,
) {
    let path = request.url().split('?').next().unwrap_or("");
    if path != "/stream" {
        let _ = request.respond(text(404, "not found: the stream is at /stream\n"));
        return;
    }
    if !matches!(request.method(), Method::Get | Method::Head) {
        let _ = request.respond(text(405, "only GET and HEAD\n"));
        return;
    }
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
