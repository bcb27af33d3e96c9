//! The source's RTMP endpoint: OBS or ffmpeg push here.
//!
//! [`RtmpServer::start`] listens on a TCP address and serves every
//! connection from one thread, with non-blocking sockets on one `mio`
//! poll: an idle connection costs a socket and a small [`RtmpSession`],
//! never a thread. Caps still bound what piles up: `MAX_PER_IP` from one
//! address (more are closed at once) and `MAX_CONNECTIONS` at once (a new
//! connection then takes the place of the one silent longest that is not
//! publishing, so idle connections cannot lock the publisher out; both
//! counted), a handshake must finish within `HANDSHAKE_TIMEOUT`, a silent
//! connection is closed after `IDLE_TIMEOUT`, and a client that does not
//! read its answers is closed once `MAX_PENDING_OUT` bytes wait for it.
//! The protocol (handshake, chunk stream, the stream key, one live
//! publisher at a time) is [`RtmpSession`]'s. The publisher's audio and
//! video messages go to the source's loop as [`Ingest`] events through a
//! bounded channel (a slow loop slows the publisher down, as TCP does).
//! Whatever goes wrong with a client ends that connection with one log
//! line that says why; the listener and the source stay up.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::rtmp_session::{Ended, RtmpSession};

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

/// Bytes that may wait for a client that does not read; more close it.
const MAX_PENDING_OUT: usize = 1 << 20;

/// How often deadlines are checked when nothing happens.
const SWEEP: Duration = Duration::from_millis(250);

/// The listener's token; connections count up from 0.
const LISTENER: Token = Token(usize::MAX);

/// What the listener refused, for the counters.
#[derive(Debug, Default)]
pub struct RtmpCounters {
    /// Connections closed at once: over `MAX_PER_IP`, or over
    /// `MAX_CONNECTIONS` with every held connection active.
    pub connections_refused: AtomicU64,
    /// Connections closed to make room at `MAX_CONNECTIONS`: the one
    /// silent longest that is not publishing.
    pub connections_evicted: AtomicU64,
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

impl RtmpServer {
    /// Listens on `addr` for publishers with the stream key `key`.
    pub fn start(addr: SocketAddr, key: &str) -> io::Result<Self> {
        let mut listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let (tx, events) = mpsc::sync_channel(INGEST_QUEUE);
        let counters = Arc::new(RtmpCounters::default());
        let mut lp = Listener {
            poll,
            listener,
            conns: HashMap::new(),
            per_ip: HashMap::new(),
            next_token: 0,
            live: false,
            key: blake3::hash(key.as_bytes()),
            tx,
            counters: Arc::clone(&counters),
            buf: vec![0u8; 16 * 1024],
        };
        thread::Builder::new()
            .name(format!("rtmp-{addr}"))
            .spawn(move || lp.run())?;
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

/// One client connection.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    session: RtmpSession,
    /// Bytes not yet written.
    out: Vec<u8>,
    /// When the connection is closed unless it makes progress.
    deadline: Instant,
    /// When it last sent something.
    last_heard: Instant,
    /// True while WRITABLE interest is registered.
    wants_write: bool,
}

/// The listener's loop state, owned by its thread.
struct Listener {
    poll: Poll,
    listener: TcpListener,
    conns: HashMap<usize, Conn>,
    per_ip: HashMap<IpAddr, usize>,
    next_token: usize,
    /// True while some connection publishes.
    live: bool,
    key: blake3::Hash,
    tx: SyncSender<Ingest>,
    counters: Arc<RtmpCounters>,
    buf: Vec<u8>,
}

impl Listener {
    /// Serves until the source goes away.
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(SWEEP)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("rtmp listener stopped: {e}");
                return;
            }
            for event in events.iter() {
                if event.token() == LISTENER {
                    self.accept();
                } else if let Err(why) = self.serve(event.token().0) {
                    self.close(event.token().0, &why);
                }
            }
            self.sweep();
        }
    }

    /// Accepts every waiting connection the caps allow.
    fn accept(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            if !self.admit(peer.ip()) {
                self.counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let token = self.next_token;
            self.next_token = self.next_token.wrapping_add(1) % LISTENER.0;
            let _ = stream.set_nodelay(true);
            if self
                .poll
                .registry()
                .register(&mut stream, Token(token), Interest::READABLE)
                .is_err()
            {
                self.release(peer.ip());
                continue;
            }
            self.conns.insert(
                token,
                Conn {
                    stream,
                    peer,
                    session: RtmpSession::new(self.key),
                    out: Vec::new(),
                    deadline: Instant::now() + HANDSHAKE_TIMEOUT,
                    last_heard: Instant::now(),
                    wants_write: false,
                },
            );
        }
    }

    /// Reads what a connection sent, runs its session and writes the
    /// answers. An `Err` says why the connection must close.
    fn serve(&mut self, token: usize) -> Result<(), String> {
        let Some(conn) = self.conns.get_mut(&token) else {
            return Ok(());
        };
        let mut ingest = Vec::new();
        let mut result = Ok(());
        loop {
            match conn.stream.read(&mut self.buf) {
                Ok(0) => {
                    result = Err(if conn.session.handshake_done() {
                        "the publisher closed the connection".to_string()
                    } else {
                        "closed during the handshake".to_string()
                    });
                    break;
                }
                Ok(n) => {
                    conn.last_heard = Instant::now();
                    let before = conn.session.handshake_done();
                    let fed = conn.session.feed(
                        &self.buf[..n],
                        &mut self.live,
                        &mut conn.out,
                        &mut ingest,
                    );
                    if let Err(Ended {
                        reason,
                        refused_publisher,
                    }) = fed
                    {
                        if refused_publisher {
                            self.counters
                                .publishers_refused
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        result = Err(reason);
                        break;
                    }
                    if before || conn.session.handshake_done() {
                        conn.deadline = Instant::now() + IDLE_TIMEOUT;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(format!("read failed: {e}"));
                    break;
                }
            }
        }
        for event in ingest {
            if self.tx.send(event).is_err() {
                return Err("the source stopped".into());
            }
        }
        // Answers go out even when the session ended (a refusal says why).
        flush(conn)?;
        if conn.out.len() > MAX_PENDING_OUT {
            return Err("the client does not read its answers".into());
        }
        let wants_write = !conn.out.is_empty();
        if wants_write != conn.wants_write {
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(&mut conn.stream, Token(token), interest)
                .map_err(|e| format!("poll failed: {e}"))?;
            conn.wants_write = wants_write;
        }
        result
    }

    /// Closes connections whose deadline passed.
    fn sweep(&mut self) {
        let now = Instant::now();
        let mut late: Vec<(usize, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, c)| (*t, c.session.handshake_done()))
            .collect();
        late.sort_unstable();
        for (token, shaken) in late {
            let why = if shaken {
                format!("publisher silent for {} s", IDLE_TIMEOUT.as_secs())
            } else {
                format!(
                    "handshake not completed within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )
            };
            self.close(token, &why);
        }
    }

    /// Closes a connection and logs why.
    fn close(&mut self, token: usize, why: &str) {
        if let Some(peer) = self.shut(token, why) {
            tracing::info!("rtmp {peer}: disconnected: {why}");
        }
    }

    /// Closes a connection without a log line; returns whom it served.
    fn shut(&mut self, token: usize, why: &str) -> Option<SocketAddr> {
        let mut conn = self.conns.remove(&token)?;
        if let Some(stopped) = conn.session.close(why, &mut self.live) {
            let _ = self.tx.send(stopped);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        self.release(conn.peer.ip());
        Some(conn.peer)
    }

    /// Takes a connection slot for `ip`, if the caps allow; at
    /// `MAX_CONNECTIONS`, closes the connection silent longest that is not
    /// publishing to make room.
    fn admit(&mut self, ip: IpAddr) -> bool {
        let mine = self.per_ip.get(&ip).copied().unwrap_or(0);
        if mine >= MAX_PER_IP {
            return false;
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            let quietest = self
                .conns
                .iter()
                .filter(|(_, c)| !c.session.published())
                .min_by_key(|(t, c)| (c.last_heard, **t))
                .map(|(t, _)| *t);
            let Some(token) = quietest else {
                return false;
            };
            self.counters
                .connections_evicted
                .fetch_add(1, Ordering::Relaxed);
            // Counted, not logged: a connection flood must not flood the log.
            self.shut(token, "closed to make room: silent longest at the cap");
        }
        self.per_ip.insert(ip, mine + 1);
        true
    }

    /// Gives back a slot of `ip`.
    fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// Writes what waits for a connection, as far as the socket takes it.
fn flush(conn: &mut Conn) -> Result<(), String> {
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(0) => return Err("write failed: the connection closed".into()),
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write failed: {e}")),
        }
    }
    Ok(())
}
