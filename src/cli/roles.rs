//! `clubcast tracker`, `clubcast source` and `clubcast peer`: one role per
//! process on a UDP socket, with a status line every second; the helpers
//! here also run `clubcast relay` (`super::relay`). SIGTERM or SIGINT makes
//! a role DROP its connections (reason Leaving), send that, and exit.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use sd_notify::NotifyState;

use crate::auth::{SourceKey, StreamId};
use crate::io::clock;
use crate::io::udp::{UdpDriver, UdpStats};
use crate::media::{IngestPump, PeerStream};
use crate::metrics::{peer_metrics, tracker_metrics, udp_metrics, Exposition, MetricsServer};
use crate::roles::peer::playout::PlayoutConfig;
use crate::roles::{
    Node, Peer, PeerConfig, PeerEvent, Source, SourceConfig, Tracker, TrackerConfig,
};
use crate::wire::StreamTag;

/// Arguments of `clubcast tracker`.
#[derive(Debug, clap::Args)]
pub struct TrackerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7000")]
    listen: SocketAddr,
    /// The stream id (64 hex digits, from `clubcast keygen`).
    #[arg(long)]
    stream_id: StreamId,
    /// Clubs in the swarm ([0022]: 12).
    #[arg(long, default_value_t = 12)]
    clubs: u16,
    /// Heartbeat interval announced to peers, ms; silence for three
    /// intervals removes a peer ([0015]).
    #[arg(long, default_value_t = 5_000)]
    heartbeat_ms: u32,
    /// Most peers listed in one answer ([0016]).
    #[arg(long, default_value_t = 100)]
    max_listed: u16,
    /// Most peers listed from one IP address.
    #[arg(long, default_value_t = 512)]
    max_per_address: usize,
    /// Most peers listed from one IPv4 /24 or IPv6 /48.
    #[arg(long, default_value_t = 2_048)]
    max_per_prefix: usize,
    /// JOINs answered per second from one IP address.
    #[arg(long, default_value_t = 50.0)]
    joins_per_address: f64,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    duration: Option<u64>,
}

/// Arguments of `clubcast source`.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Source key file (from `clubcast keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The tracker's address.
    #[arg(long)]
    tracker: SocketAddr,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Clubs in the swarm; must match the tracker's.
    #[arg(long, default_value_t = 12)]
    clubs: u16,
    /// Blocks per signed batch (1 to 64; the seed suggests 12).
    #[arg(long, default_value_t = crate::auth::DEFAULT_BATCH_BLOCKS)]
    batch_blocks: usize,
    /// Uploads the source keeps in each club ([0029]: 2).
    #[arg(long, default_value_t = 2)]
    uploads_per_club: usize,
    /// Take an RTMP push (OBS, ffmpeg `-f flv rtmp://ADDR/live/KEY`) on
    /// this address: H.264 video, AAC or MP3 audio; peers serve HTTP-FLV.
    #[arg(long, group = "feed", value_name = "ADDR")]
    rtmp_listen: Option<SocketAddr>,
    /// The stream key a publisher must push with (the last part of the
    /// RTMP URL; OBS: Settings > Stream > Stream Key). Default: a random
    /// key, printed at start. Also read from `CLUBCAST_STREAM_KEY`.
    #[arg(long, value_name = "KEY")]
    stream_key: Option<String>,
    /// Take MPEG-TS over UDP (ffmpeg `-f mpegts udp://ADDR`) on this
    /// address; peers serve MPEG-TS.
    #[arg(long, group = "feed", value_name = "ADDR")]
    udp_ts_listen: Option<SocketAddr>,
    /// Read MPEG-TS from standard input (ffmpeg `-f mpegts -`).
    #[arg(long, group = "feed")]
    stdin: bool,
    /// Feed a synthetic stream of this many kbit/s (raw bytes, for tests
    /// and benches: peers have nothing to serve to players).
    #[arg(long, group = "feed")]
    synthetic_kbps: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    duration: Option<u64>,
}

/// How far behind the source viewers play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Latency {
    /// A play delay of 1.5 to 4 s and HLS segments of about 2 s: room to
    /// repair losses and ride out slow uploaders.
    Normal,
    /// A play delay of 0.6 to 1.5 s and segments of about 1 s, for
    /// viewers on good networks: glass-to-glass about a second, but less
    /// time to repair a loss.
    Low,
}

impl Latency {
    /// The playback settings.
    pub fn playout(self) -> PlayoutConfig {
        match self {
            Latency::Normal => PlayoutConfig::default(),
            Latency::Low => PlayoutConfig::low_latency(),
        }
    }

    /// What HLS segments aim at, µs.
    pub fn segment_target_us(self) -> u64 {
        match self {
            Latency::Normal => 2_000_000,
            Latency::Low => 1_000_000,
        }
    }
}

/// Arguments of `clubcast peer`.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// The stream id to play (64 hex digits); blocks signed by any other
    /// key are rejected.
    #[arg(long)]
    stream_id: StreamId,
    /// The tracker's address.
    #[arg(long)]
    tracker: SocketAddr,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Sit in these clubs instead of the tracker's recommendation
    /// (comma-separated).
    #[arg(long, value_delimiter = ',')]
    clubs: Option<Vec<u16>>,
    /// In-club uploads and downloads to keep per club, at least ([0026]).
    #[arg(long, default_value_t = 2)]
    in_club_min: usize,
    /// In-club uploads and downloads per club, at most ([0026]).
    #[arg(long, default_value_t = 3)]
    in_club_max: usize,
    /// Queuing delay (one-way delay above the connection's own floor,
    /// lasting a second) above which a download is dropped, ms ([0051]).
    #[arg(long, default_value_t = 1_000)]
    delay_threshold_ms: u32,
    /// Serve the stream at http://ADDR: a page that plays it in the
    /// browser (/), HLS (/live.m3u8), and /stream for players (VLC, mpv,
    /// ffplay): HTTP-FLV for an RTMP source, MPEG-TS otherwise.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// How far behind the source to play: `low` trims the play delay to
    /// about a second for viewers on good networks.
    #[arg(long, value_enum, default_value_t = Latency::Normal)]
    latency: Latency,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Write the same metrics to FILE once a second (for scripts and
    /// benches that cannot reach the peer's address).
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    duration: Option<u64>,
}

/// A generator seeded from the operating system.
pub(super) fn os_rng() -> Result<SmallRng, String> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| format!("no random seed: {e}"))?;
    Ok(SmallRng::seed_from_u64(u64::from_le_bytes(seed)))
}

fn bind(addr: SocketAddr) -> Result<UdpSocket, String> {
    UdpSocket::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Starts the metrics endpoint if asked for, and says where it is.
pub(super) fn metrics_server(addr: Option<SocketAddr>) -> Result<Option<MetricsServer>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let server =
        MetricsServer::start(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    println!("metrics: http://{}/metrics", server.addr());
    Ok(Some(server))
}

/// Publishes `peer`'s metrics (and `more`'s) to `server`, if there is one.
pub(super) fn publish_metrics(
    server: Option<&MetricsServer>,
    peer: &Peer,
    udp: &UdpStats,
    more: impl FnOnce(&mut Exposition),
) {
    if let Some(server) = server {
        let mut e = Exposition::new();
        peer_metrics(peer, &mut e);
        udp_metrics(udp, &mut e);
        more(&mut e);
        server.publish(e);
    }
}

/// A random stream key: 32 hex digits.
fn random_key() -> Result<String, String> {
    let mut seed = [0u8; 16];
    getrandom::fill(&mut seed).map_err(|e| format!("no random seed: {e}"))?;
    Ok(seed.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random id for the tracker to tell this node's restarts apart.
pub(super) fn random_id() -> Result<u64, String> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| format!("no random seed: {e}"))?;
    Ok(u64::from_le_bytes(seed))
}

/// Binds `listen` and says what now runs there.
pub(super) fn bind_announced(
    listen: SocketAddr,
    what: &str,
    stream: StreamId,
    tracker: SocketAddr,
) -> Result<UdpSocket, String> {
    let socket = bind(listen)?;
    println!(
        "{what} on {} for stream {stream}, tracker {tracker}",
        socket.local_addr().map_err(|e| e.to_string())?
    );
    Ok(socket)
}

/// The address `socket` has on its own network, as peers behind the same
/// router reach it: its bound address, or for a wildcard bind the source
/// address the kernel picks towards `toward` (a connected probe socket;
/// nothing is sent). `None` when neither is known.
pub(super) fn local_address(socket: &UdpSocket, toward: SocketAddr) -> Option<SocketAddr> {
    let bound = socket.local_addr().ok()?;
    if !bound.ip().is_unspecified() {
        return Some(bound);
    }
    let probe = UdpSocket::bind(SocketAddr::new(bound.ip(), 0)).ok()?;
    probe.connect(toward).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    Some(SocketAddr::new(ip, bound.port()))
}

/// Runs `node` on `socket` until `duration` passes, calling `between`
/// after every slice of `slice` and `report` once a second, with the
/// seconds run and the socket's counters.
pub(super) fn drive<N: Node>(
    socket: UdpSocket,
    node: N,
    duration: Option<u64>,
    slice: Duration,
    mut between: impl FnMut(&mut N),
    mut report: impl FnMut(&mut N, u64, &UdpStats),
) -> Result<(), String> {
    let mut driver = UdpDriver::new().map_err(|e| e.to_string())?;
    let id = driver.add(socket, node).map_err(|e| e.to_string())?;
    let stop = stop_flag()?;
    let start = Instant::now();
    let end = duration.map(|d| start + Duration::from_secs(d));
    let mut next_report = start + Duration::from_secs(1);
    // Under systemd (Type=notify): ready now, and a watchdog ping from
    // this loop at half the watchdog's interval. Outside it, nothing.
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut next_ping = start;
    loop {
        let now = Instant::now();
        if let Some(every) = watchdog.filter(|_| now >= next_ping) {
            next_ping = now + every;
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        }
        if stop.load(Ordering::Relaxed) {
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
            // Goodbyes, and a moment to send them.
            if let Some(node) = driver.node_mut(id) {
                node.leave(clock::now());
                between(node);
            }
            driver
                .run_until(now + LEAVE_FLUSH, &AtomicBool::new(false))
                .map_err(|e| e.to_string())?;
            tracing::info!("stopped by a signal; left cleanly");
            return Ok(());
        }
        if end.is_some_and(|e| now >= e) {
            return Ok(());
        }
        let until = (now + slice).min(end.unwrap_or(now + slice));
        driver.run_until(until, &stop).map_err(|e| e.to_string())?;
        let Some(node) = driver.node_mut(id) else {
            return Err("the node disappeared from its driver".into());
        };
        between(node);
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            let udp = driver.stats_with_kernel_drops();
            if let Some(node) = driver.node_mut(id) {
                report(node, start.elapsed().as_secs(), &udp);
            }
        }
    }
}

/// How long a leaving role keeps sending its goodbyes.
const LEAVE_FLUSH: Duration = Duration::from_millis(100);

/// The flag SIGTERM and SIGINT set (registered on the first call): the
/// role then leaves cleanly and the process exits.
pub(super) fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(Arc::clone(f));
    }
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&flag))
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(Arc::clone(FLAG.get_or_init(|| flag)))
}

/// Runs a tracker.
pub fn run_tracker(args: &TrackerArgs) -> Result<ExitCode, String> {
    let mut cfg = TrackerConfig::new(StreamTag::of_key(&args.stream_id.to_bytes()));
    cfg.clubs = args.clubs.max(1);
    cfg.heartbeat_ms = args.heartbeat_ms.max(100);
    cfg.expiry_ms = cfg.heartbeat_ms.saturating_mul(3);
    cfg.max_listed = args.max_listed;
    cfg.max_per_address = args.max_per_address.max(1);
    cfg.max_per_prefix = args.max_per_prefix.max(1);
    cfg.joins_per_address_s = args.joins_per_address.max(0.1);
    let socket = bind(args.listen)?;
    println!(
        "tracker on {} for stream {}, {} clubs",
        socket.local_addr().map_err(|e| e.to_string())?,
        args.stream_id,
        cfg.clubs
    );
    let metrics = metrics_server(args.metrics)?;
    let tracker = Tracker::new(cfg, os_rng()?);
    drive(
        socket,
        tracker,
        args.duration,
        Duration::from_secs(1),
        |_| {},
        |t, s, udp| {
            let st = t.stats();
            let mut line = format!("t={s}s peers {}", t.peer_count());
            for (name, _, value) in st.named() {
                line.push_str(&format!(" {} {value}", name.replace('_', "-")));
            }
            println!("{line}");
            if let Some(server) = &metrics {
                let mut e = Exposition::new();
                tracker_metrics(t, &mut e);
                udp_metrics(udp, &mut e);
                server.publish(e);
            }
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the source.
pub fn run_source(args: &SourceArgs) -> Result<ExitCode, String> {
    if !args.stdin
        && args.synthetic_kbps.is_none()
        && args.rtmp_listen.is_none()
        && args.udp_ts_listen.is_none()
    {
        return Err(
            "give the feed: --rtmp-listen ADDR, --udp-ts-listen ADDR, --stdin or --synthetic-kbps K"
                .into(),
        );
    }
    let key = SourceKey::load(&args.key).map_err(|e| e.to_string())?;
    let stream = key.stream_id();
    let mut pc = PeerConfig::new(stream, Some(args.tracker));
    pc.club_count = args.clubs.max(1);
    pc.source_uploads = args.uploads_per_club.max(1);
    let sc = SourceConfig {
        batch_blocks: args.batch_blocks,
        synthetic_bps: args.synthetic_kbps.map(|k| k * 1000),
        ..SourceConfig::default()
    };
    pc.peer_id = random_id()?;
    let socket = bind_announced(args.listen, "source", stream, args.tracker)?;
    pc.local_addr = local_address(&socket, args.tracker);
    let source = Source::new(key, sc, pc, clock::now(), os_rng()?);
    let block_bytes = source.block_bytes();
    let pump = if let Some(addr) = args.rtmp_listen {
        // From the environment too, so the key stays out of `ps`.
        let given = args
            .stream_key
            .clone()
            .or_else(|| std::env::var("CLUBCAST_STREAM_KEY").ok());
        let key = match &given {
            Some(k) if !k.is_empty() => k.clone(),
            Some(_) => return Err("the stream key must not be empty".into()),
            None => random_key()?,
        };
        let pump = IngestPump::rtmp(addr, &key, block_bytes)
            .map_err(|e| format!("cannot listen for RTMP on {addr}: {e}"))?;
        let at = pump.local_addr().map_or(addr, |a| a);
        match given {
            Some(_) => println!("rtmp: listening on {at} (push to rtmp://{at}/live/ with your stream key)"),
            None => println!("rtmp: listening on {at}; push to rtmp://{at}/live/{key} (a random stream key; set one with --stream-key)"),
        }
        Some(pump)
    } else if let Some(addr) = args.udp_ts_listen {
        let pump = IngestPump::udp_ts(addr, block_bytes)
            .map_err(|e| format!("cannot listen for MPEG-TS on UDP {addr}: {e}"))?;
        println!(
            "mpeg-ts: listening on udp://{}",
            pump.local_addr().map_or(addr, |a| a)
        );
        Some(pump)
    } else if args.stdin {
        Some(IngestPump::pipe_ts(spawn_stdin_reader(), block_bytes))
    } else {
        None
    };
    // Both callbacks below use the pump, one at a time.
    let pump = std::cell::RefCell::new(pump);
    let metrics = metrics_server(args.metrics)?;
    drive(
        socket,
        source,
        args.duration,
        Duration::from_millis(5),
        |s| {
            if let Some(pump) = pump.borrow_mut().as_mut() {
                let now = clock::now();
                pump.pump(now.0, |payload| s.push_block(now, &payload));
            }
        },
        |s, t, udp| {
            let st = s.peer().stats();
            publish_metrics(metrics.as_ref(), s.peer(), udp, |e| {
                e.counter(
                    "clubcast_source_blocks_published_total",
                    "blocks cut, signed and sent",
                    s.blocks_published(),
                );
                e.gauge(
                    "clubcast_source_bitrate_bps",
                    "the source's bit-rate estimate ([0044])",
                    s.bitrate_estimate(),
                );
                if let Some(p) = pump.borrow().as_ref() {
                    let i = p.stats();
                    e.counter(
                        "clubcast_ingest_bytes_total",
                        "media bytes taken in",
                        i.bytes,
                    );
                    e.counter(
                        "clubcast_ingest_sessions_total",
                        "ingest sessions begun",
                        i.sessions,
                    );
                    e.counter(
                        "clubcast_ingest_refused_total",
                        "messages the packer refused",
                        i.refused,
                    );
                    e.counter(
                        "clubcast_ingest_ts_malformed_total",
                        "MPEG-TS packets dropped as malformed",
                        i.ts.malformed,
                    );
                    if let Some(r) = p.rtmp_counters() {
                        e.counter(
                            "clubcast_rtmp_connections_refused_total",
                            "RTMP connections closed at once: over the listener's caps",
                            r.connections_refused.load(Ordering::Relaxed),
                        );
                        e.counter(
                            "clubcast_rtmp_connections_evicted_total",
                            "idle RTMP connections closed to make room for a new one at the cap",
                            r.connections_evicted.load(Ordering::Relaxed),
                        );
                        e.counter(
                            "clubcast_rtmp_publishers_refused_total",
                            "RTMP publishes refused: a wrong stream key, or another publisher live",
                            r.publishers_refused.load(Ordering::Relaxed),
                        );
                    }
                }
            });
            let ingest = pump.borrow().as_ref().map_or(String::new(), |p| {
                let i = p.stats();
                let rtmp = p.rtmp_counters().map_or(String::new(), |r| {
                    format!(
                        " rtmp-connections-refused {} rtmp-connections-evicted {} rtmp-publishers-refused {}",
                        r.connections_refused.load(Ordering::Relaxed),
                        r.connections_evicted.load(Ordering::Relaxed),
                        r.publishers_refused.load(Ordering::Relaxed)
                    )
                });
                format!(
                    " ingest sessions {} bytes {} refused {} ts-skipped-bytes {} ts-malformed {}{rtmp}",
                    i.sessions, i.bytes, i.refused, i.ts.skipped_bytes, i.ts.malformed
                )
            });
            println!(
                "t={t}s blocks {} estimate {:.0} kbit/s uploads {} sent {} blocks{ingest}",
                s.blocks_published(),
                s.bitrate_estimate() / 1000.0,
                s.peer().connections().uploads.len(),
                st.blocks_out
            );
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Reads standard input on a thread, handing chunks over a channel.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::sync_channel(256);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Runs a viewer peer.
pub fn run_peer(args: &PeerArgs) -> Result<ExitCode, String> {
    let mut pc = PeerConfig::new(args.stream_id, Some(args.tracker));
    pc.clubs = args.clubs.clone();
    pc.in_club_min = args.in_club_min.max(1);
    pc.in_club_max = args.in_club_max.max(pc.in_club_min);
    pc.delay_threshold_ms = args.delay_threshold_ms;
    pc.peer_id = random_id()?;
    let socket = bind_announced(args.listen, "peer", args.stream_id, args.tracker)?;
    pc.local_addr = local_address(&socket, args.tracker);
    pc.emit_played = args.http.is_some();
    pc.playout = args.latency.playout();
    let peer = Peer::new(pc, clock::now(), os_rng()?);
    let players = match args.http {
        Some(addr) => {
            let s = PeerStream::start(addr, args.latency.segment_target_us())
                .map_err(|e| format!("cannot serve HTTP on {addr}: {e}"))?;
            println!(
                "players: http://{0}/ (browser), http://{0}/live.m3u8 (HLS), http://{0}/stream",
                s.addr()
            );
            Some(s)
        }
        None => None,
    };
    let slice = if players.is_some() { 10 } else { 100 };
    // Both callbacks below use the players, one at a time.
    let players = std::cell::RefCell::new(players);
    let metrics = metrics_server(args.metrics)?;
    drive(
        socket,
        peer,
        args.duration,
        Duration::from_millis(slice),
        |p| {
            if let Some(s) = players.borrow_mut().as_mut() {
                s.service(p, clock::now().0);
            }
            while let Some(event) = p.poll_event() {
                match event {
                    PeerEvent::Joined { clubs, club_count } => {
                        println!("joined: clubs {clubs:?} of {club_count}")
                    }
                    PeerEvent::PlaybackStarted { seq } => println!("playback started at block {seq}"),
                    PeerEvent::WrongStream { seen } => tracing::error!(
                        "blocks arrive signed for another stream (tag {}), not {}: nothing will play; check --stream-id",
                        hex::encode(seen.0),
                        args.stream_id
                    ),
                    PeerEvent::TrackerSilent { tracker } => tracing::warn!(
                        %tracker,
                        "no answer from the tracker at {tracker} for stream {}: is it running, and serving this --stream-id?",
                        args.stream_id
                    ),
                    PeerEvent::GracefulFailure => tracing::warn!(
                        "swarm quality too low for what this peer's uplink carries; stopped all activity for a back-off ([0063])"
                    ),
                    PeerEvent::Resumed => tracing::info!("back-off over; taking part again"),
                    PeerEvent::ClubMissing { club } => tracing::warn!(
                        club,
                        "no block of club {club} for a second while other clubs come; looking for another way in"
                    ),
                }
            }
        },
        |p, t, udp| {
            let st = p.stats();
            let ps = p.playout_stats();
            if let Some(path) = &args.metrics_file {
                let mut e = Exposition::new();
                peer_metrics(p, &mut e);
                udp_metrics(udp, &mut e);
                let tmp = path.with_extension("tmp");
                // Written whole, then renamed: a reader never sees half.
                let written =
                    std::fs::write(&tmp, e.into_text()).and_then(|()| std::fs::rename(&tmp, path));
                if let Err(err) = written {
                    tracing::warn!("cannot write {}: {err}", path.display());
                }
            }
            publish_metrics(metrics.as_ref(), p, udp, |e| {
                if let Some(s) = players.borrow().as_ref() {
                    let o = s.stats();
                    let l = s.output().latency();
                    e.gauge(
                        "clubcast_players",
                        "players connected",
                        s.output().players() as f64,
                    );
                    e.counter(
                        "clubcast_players_dropped_slow_total",
                        "players dropped as too slow",
                        o.dropped_slow,
                    );
                    e.gauge(
                        "clubcast_glass_to_glass_p99_seconds",
                        "99th percentile from ingest to this peer's HTTP output",
                        l.value_at_quantile(0.99) as f64 / 1e6,
                    );
                }
            });
            let media = players.borrow().as_ref().map_or(String::new(), |s| {
                let o = s.stats();
                let l = s.output().latency();
                format!(
                    " players {} dropped-slow {} glass-to-glass p50 {} ms p99 {} ms",
                    s.output().players(),
                    o.dropped_slow,
                    l.value_at_quantile(0.5) / 1000,
                    l.value_at_quantile(0.99) / 1000
                )
            });
            println!(
                "t={t}s clubs {:?} down {} up {} blocks {} dup {} forged {} played {} skipped {} continuity {:.4}{media}",
                p.clubs(),
                p.connections().downloads.len(),
                p.connections().uploads.len(),
                st.unique_blocks,
                st.duplicates,
                st.forged_rejected,
                ps.on_time + ps.late,
                ps.skipped,
                ps.continuity()
            );
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
