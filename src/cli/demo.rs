//! `clubcast demo`: a whole swarm in one command.
//!
//! Starts a tracker, a source with a synthetic feed and N peers, each on
//! its own socket, spread over one driver thread per core, and with
//! `--relay` a super-peer relay. Prints progress once a second and a
//! summary table at the end, and can write the summary as one JSON object
//! for scripts. Without a relay, or with `--relay-io udp`, everything runs
//! on 127.0.0.1 and the relay on kernel UDP. With an AF_XDP relay (the
//! default when run as root) the relay gets a network namespace of its
//! own and the swarm another, joined by a veth pair (`swarm::netns`): the
//! steering program sits on the relay's veth end in native mode, and the
//! relay's BLOCKs go through its AF_XDP worker; the peers know the relay
//! from the start (bootstrap) as well as through the tracker.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::auth::{SourceKey, StreamId};
use crate::io::clock;
use crate::io::udp::UdpDriver;
use crate::relay::{
    has_bpf_privileges, BindMode, FanoutLimits, RelayNode, WorkerReport, XdpOptions,
};
use crate::roles::PeerConfig;
use crate::swarm::loopback::Shard;
use crate::swarm::netns::{add_veth, bring_up, NamespaceThread};
use crate::swarm::SwarmSummary;

use super::demo_media::{push_testsrc, MediaSource, MediaSummary, ShardMedia};
use super::roles::Latency;
use crate::media::IngestPump;

/// The relay's veth end, in the relay's namespace.
const RELAY_IF: &str = "ccdemo-r0";
/// The swarm's veth end, in the swarm's namespace.
const SWARM_IF: &str = "ccdemo-s0";
const RELAY_MAC: [u8; 6] = [0x02, 0xcc, 0xde, 0, 0, 1];
const SWARM_MAC: [u8; 6] = [0x02, 0xcc, 0xde, 0, 0, 2];
const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 84, 0, 1);
const SWARM_IP: Ipv4Addr = Ipv4Addr::new(10, 84, 0, 2);
const RELAY_PORT: u16 = 7100;

/// Which backend the demo's relay runs its BLOCKs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayIo {
    /// AF_XDP in a network namespace of its own (needs root).
    Xdp,
    /// Kernel UDP on loopback.
    Udp,
    /// AF_XDP when run as root, else kernel UDP on loopback (said so).
    Auto,
}

/// The stream key of the demo's RTMP listener (it listens on loopback
/// only, unless `--rtmp-listen` says otherwise).
pub const DEMO_STREAM_KEY: &str = "demo";

/// Arguments of `clubcast demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Viewer peers to start.
    #[arg(long, default_value_t = 30)]
    peers: usize,
    /// Seconds to stream.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Bit rate of the synthetic feed, in kbit/s.
    #[arg(long, default_value_t = 2000)]
    bitrate_kbps: u64,
    /// Clubs in the swarm (the seed's default is 12).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=1024))]
    clubs: u16,
    /// Also write the summary as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Driver threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Put a super-peer relay into the swarm, serving every club.
    #[arg(long)]
    relay: bool,
    /// The relay's backend for BLOCKs.
    #[arg(long, value_enum, default_value_t = RelayIo::Auto)]
    relay_io: RelayIo,
    /// Uploads per club the relay accepts.
    #[arg(long, default_value_t = 64)]
    relay_uploads_per_club: usize,
    /// Seed for the roles' random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Take an RTMP push (OBS, ffmpeg) on this address instead of the
    /// synthetic feed; peers serve HTTP-FLV.
    #[arg(long, group = "feed", value_name = "ADDR")]
    rtmp_listen: Option<SocketAddr>,
    /// Take MPEG-TS over UDP on this address instead of the synthetic
    /// feed; peers serve MPEG-TS.
    #[arg(long, group = "feed", value_name = "ADDR")]
    udp_ts_listen: Option<SocketAddr>,
    /// Push a test pattern with Debian's ffmpeg for the whole run (over
    /// RTMP, or MPEG-TS with --udp-ts-listen).
    #[arg(long, value_enum)]
    media: Option<MediaSource>,
    /// With a media feed, peer i serves http://127.0.0.1:(P+i)/stream.
    #[arg(long, default_value_t = 18080, value_name = "P")]
    http_base_port: u16,
    /// Peers that join late, after --late-after seconds.
    #[arg(long, default_value_t = 0)]
    late_peers: usize,
    /// When the late peers join, in seconds from the start.
    #[arg(long, default_value_t = 10)]
    late_after: u64,
    /// How far behind the source the peers play (see `clubcast peer`).
    #[arg(long, value_enum, default_value_t = Latency::Normal)]
    latency: Latency,
}

impl Args {
    /// True when the source takes a real feed.
    fn media(&self) -> bool {
        self.rtmp_listen.is_some() || self.udp_ts_listen.is_some() || self.media.is_some()
    }
}

/// What a shard reports once per slice, for the progress line.
#[derive(Debug, Clone, Default)]
struct Progress {
    peers: usize,
    playing: usize,
    continuity: Vec<f64>,
    blocks_published: Option<u64>,
    connections: usize,
}

fn progress_of(shard: &Shard) -> Progress {
    let mut p = Progress {
        blocks_published: shard.source_blocks(),
        ..Progress::default()
    };
    for (_, peer) in shard.peers() {
        p.peers += 1;
        if peer.playback_started_at().is_some() {
            p.playing += 1;
            p.continuity.push(peer.playout_stats().continuity());
        }
        p.connections += peer.connections().downloads.len();
    }
    p
}

/// What the AF_XDP relay did, for the summary.
struct RelayReport {
    /// Most distinct peers in its fan-out table at once.
    subscribers_max: usize,
    /// Clubs in its fan-out table then.
    clubs: usize,
    /// Verified blocks its control plane took.
    blocks_in: u64,
    /// Copies its control plane sent on the kernel socket (catch-up).
    kernel_out: u64,
    /// The workers' counters.
    workers: Vec<WorkerReport>,
    /// How the steering program was attached.
    attach: String,
    /// How the AF_XDP socket was bound.
    bind: BindMode,
}

/// Where the swarm runs and with which relay.
enum Layout {
    /// Everything on 127.0.0.1; the relay, if any, on kernel UDP.
    Loopback,
    /// Relay on AF_XDP in its own namespace, swarm in another.
    Namespaces,
}

/// Runs the demo.
pub fn run(args: &Args) -> Result<ExitCode, String> {
    let layout = match (args.relay, args.relay_io) {
        (false, _) | (true, RelayIo::Udp) => Layout::Loopback,
        (true, _) if args.media() => {
            println!("relay on kernel UDP on loopback: a media demo keeps every peer on 127.0.0.1, where players reach them");
            Layout::Loopback
        }
        (true, RelayIo::Xdp) if !has_bpf_privileges() => {
            return Err("--relay-io xdp needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) for XDP, AF_XDP and network namespaces; use --relay-io udp".into())
        }
        (true, RelayIo::Xdp) => Layout::Namespaces,
        (true, RelayIo::Auto) if has_bpf_privileges() => Layout::Namespaces,
        (true, RelayIo::Auto) => {
            println!("relay on kernel UDP on loopback: its AF_XDP data plane needs root (CAP_BPF, CAP_NET_ADMIN), which this run lacks");
            Layout::Loopback
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, args.peers.max(1));
    let key = SourceKey::generate().map_err(|e| e.to_string())?;
    let stream = key.stream_id();
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let (shards, relay_thread) = match layout {
        Layout::Loopback => {
            let shards =
                build_shards(ShardArgs::of(args), threads, key, Ipv4Addr::LOCALHOST, None)?;
            (shards, None)
        }
        Layout::Namespaces => {
            let (tx, rx) = mpsc::channel();
            let shard_args = ShardArgs::of(args);
            let relay = thread::spawn(move || relay_namespace(shard_args, threads, key, end, tx));
            match rx.recv() {
                Ok(Ok(shards)) => (shards, Some(relay)),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(match relay.join() {
                        Ok(Err(e)) => e,
                        _ => "the relay's namespace thread stopped early".into(),
                    })
                }
            }
        }
    };
    let tracker = shards[0].tracker_addr();
    let where_ = match layout {
        Layout::Loopback => "on loopback".to_string(),
        Layout::Namespaces => format!("in a network namespace ({SWARM_IP})"),
    };
    println!(
        "clubcast demo: tracker {}, source and {} peers {where_}, {} clubs, {} kbit/s, {} s, {threads} threads",
        tracker.map_or("?".into(), |t| t.to_string()),
        args.peers, args.clubs, args.bitrate_kbps, args.duration
    );
    println!("stream id {stream}");
    if let Some(addr) = shards.iter().find_map(Shard::relay_addr) {
        println!("relay on {addr} (kernel UDP), serving every club");
    }
    if relay_thread.is_some() {
        println!(
            "relay on {RELAY_IP}:{RELAY_PORT} in its own network namespace, BLOCKs on AF_XDP ({RELAY_IF}, veth to the swarm), serving every club"
        );
    }

    let (media, mut pusher) = if args.media() {
        let (media, pusher) = start_media(args, &shards)?;
        (Some(media), pusher)
    } else {
        (None, None)
    };
    let start_time = clock::now();
    let late = LatePeers {
        count: args.late_peers,
        at: started + Duration::from_secs(args.late_after),
        first_seed: args.seed * 1_000_003 + args.peers as u64 + 2,
        first_port: args.http_base_port.saturating_add(args.peers as u16),
        stream,
        tracker: tracker.ok_or("the demo has no tracker")?,
        emit_played: args.media(),
        latency: args.latency,
    };
    let outcome = run_shards(shards, media, late, started, end);
    if let Some(child) = &mut pusher {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (shards, media) = outcome?;
    let relay = match relay_thread {
        Some(h) => Some(
            h.join()
                .map_err(|_| "the relay thread panicked".to_string())??,
        ),
        None => None,
    };
    let now = clock::now();
    let elapsed = (now.0.saturating_sub(start_time.0)) as f64 / 1e6;
    let source = shards.iter().find_map(Shard::source_peer);
    let summary = SwarmSummary::of(
        shards.iter().flat_map(|s| s.peers().map(|(_, p)| p)),
        source,
        elapsed,
        args.bitrate_kbps,
    );
    print_table(&summary);
    if let Some(r) = shards.iter().find_map(Shard::relay_peer) {
        let st = r.stats();
        println!(
            "  relay             {} uploads, {} blocks in, {} blocks out (kernel UDP)",
            r.connections().uploads.len(),
            st.unique_blocks,
            st.blocks_out
        );
    }
    if let Some(r) = &relay {
        print_relay(r);
    }
    let media_json = media.as_ref().map(|m| {
        let m = MediaSummary::of(m);
        println!(
            "  players           {} media blocks played out, {} skipped, {} players dropped as too slow; glass-to-glass p50 {:.0} ms p99 {:.0} ms",
            m.blocks,
            m.skipped,
            m.dropped_slow,
            m.latency.value_at_quantile(0.5) as f64 / 1000.0,
            m.latency.value_at_quantile(0.99) as f64 / 1000.0
        );
        m.to_json()
    });
    let json = summary.to_json();
    if let Some(m) = media_json {
        println!("{m}");
    }
    println!("{json}");
    if let Some(path) = &args.summary_json {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The settings `build_shards` needs, copyable into a thread.
#[derive(Debug, Clone, Copy)]
struct ShardArgs {
    peers: usize,
    bitrate_kbps: u64,
    clubs: u16,
    relay: bool,
    relay_uploads_per_club: usize,
    seed: u64,
    /// A real feed: no synthetic one, and peers keep what they play.
    media: bool,
    latency: Latency,
}

impl ShardArgs {
    fn of(args: &Args) -> Self {
        ShardArgs {
            peers: args.peers,
            bitrate_kbps: args.bitrate_kbps,
            clubs: args.clubs,
            relay: args.relay,
            relay_uploads_per_club: args.relay_uploads_per_club,
            seed: args.seed,
            media: args.media(),
            latency: args.latency,
        }
    }
}

/// The tracker, the source, the peers (and, on loopback, the kernel-UDP
/// relay), spread over `threads` shards bound to `ip`. Peers also know
/// `bootstrap` from the start.
fn build_shards(
    args: ShardArgs,
    threads: usize,
    key: SourceKey,
    ip: Ipv4Addr,
    bootstrap: Option<SocketAddr>,
) -> Result<Vec<Shard>, String> {
    let stream = key.stream_id();
    let err = |e: std::io::Error| format!("cannot set up sockets on {ip}: {e}");
    let mut shards: Vec<Shard> = (0..threads)
        .map(|_| Shard::bound_to(IpAddr::V4(ip)))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let tracker = shards[0]
        .add_tracker(stream, args.clubs, args.seed)
        .map_err(err)?;
    shards[0]
        .add_source(
            key,
            tracker,
            args.clubs,
            if args.media {
                0
            } else {
                args.bitrate_kbps * 1000
            },
            args.seed + 1,
        )
        .map_err(err)?;
    if args.relay && bootstrap.is_none() {
        shards[0]
            .add_relay(stream, tracker, args.relay_uploads_per_club, args.seed + 7)
            .map_err(err)?;
    }
    for i in 0..args.peers {
        let mut pc = PeerConfig::new(stream, Some(tracker));
        pc.bootstrap.extend(bootstrap);
        pc.emit_played = args.media;
        pc.playout = args.latency.playout();
        shards[i % threads]
            .add_peer_with(pc, args.seed * 1_000_003 + i as u64 + 2)
            .map_err(err)?;
    }
    Ok(shards)
}

/// The relay's namespace thread: makes the veth pair and the swarm's
/// namespace, builds the shards there and hands them over `shards_tx`,
/// then runs the AF_XDP relay until `end`.
fn relay_namespace(
    args: ShardArgs,
    threads: usize,
    key: SourceKey,
    end: Instant,
    shards_tx: mpsc::Sender<Result<Vec<Shard>, String>>,
) -> Result<RelayReport, String> {
    let stream = key.stream_id();
    let relay_addr = SocketAddr::V4(SocketAddrV4::new(RELAY_IP, RELAY_PORT));
    let setup = || -> Result<(NamespaceThread, Vec<Shard>), String> {
        crate::swarm::netns::enter_private_netns()
            .map_err(|e| format!("cannot make a network namespace: {e}"))?;
        add_veth(RELAY_IF, RELAY_MAC, SWARM_IF, SWARM_MAC)?;
        bring_up(RELAY_IF, [RELAY_IP])?;
        let (ns, shards) = NamespaceThread::start(SWARM_IF, move || {
            bring_up(SWARM_IF, [SWARM_IP])?;
            build_shards(args, threads, key, SWARM_IP, Some(relay_addr))
        })?;
        Ok((ns, shards?))
    };
    let (swarm_ns, shards) = match setup() {
        Ok(made) => made,
        Err(e) => {
            let _ = shards_tx.send(Err(e.clone()));
            return Err(e);
        }
    };
    let relay = start_relay(stream, shards[0].tracker_addr(), &args);
    let (mut driver, id, plane) = match relay {
        Ok(r) => r,
        Err(e) => {
            let _ = shards_tx.send(Err(e.clone()));
            return Err(e);
        }
    };
    if shards_tx.send(Ok(shards)).is_err() {
        return Err("the demo stopped".into());
    }
    let mut best = (0usize, 0usize);
    let stop = AtomicBool::new(false);
    while Instant::now() < end {
        let slice = (Instant::now() + Duration::from_millis(250)).min(end);
        driver
            .run_until(slice, &stop)
            .map_err(|e| format!("relay driver failed: {e}"))?;
        if let Some(c) = driver.node(id).and_then(RelayNode::control) {
            best = best.max((c.subscribers(), c.clubs_served()));
        }
    }
    let node = driver
        .remove(id)
        .ok_or("the relay vanished from its driver")?;
    let attach = plane.attach_mode().map_or("?".into(), |m| m.to_string());
    let bind = plane.bind_mode();
    let workers = plane.stop();
    drop(swarm_ns);
    let st = node.peer().stats();
    Ok(RelayReport {
        subscribers_max: best.0,
        clubs: best.1,
        blocks_in: st.unique_blocks,
        kernel_out: st.blocks_out,
        workers,
        attach,
        bind,
    })
}

/// Binds the relay's control socket and starts its AF_XDP data plane.
fn start_relay(
    stream: StreamId,
    tracker: Option<SocketAddr>,
    args: &ShardArgs,
) -> Result<
    (
        UdpDriver<RelayNode>,
        crate::io::udp::NodeId,
        crate::relay::XdpDataPlane,
    ),
    String,
> {
    let socket = UdpSocket::bind((RELAY_IP, RELAY_PORT))
        .map_err(|e| format!("cannot bind the relay on {RELAY_IP}:{RELAY_PORT}: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let uploads_per_club = args.relay_uploads_per_club.max(1);
    let mut pc = PeerConfig::new(stream, tracker);
    pc.club_count = args.clubs;
    pc.relay_uploads = uploads_per_club;
    pc.peer_id = args.seed + 7;
    pc.local_addr = Some(local);
    let opts = XdpOptions::veth(RELAY_IF);
    let limits = FanoutLimits {
        max_subscribers_per_club: uploads_per_club,
        ..FanoutLimits::default()
    };
    let (node, plane) = RelayNode::xdp(
        pc,
        clock::now(),
        SmallRng::seed_from_u64(args.seed + 7),
        local,
        &opts,
        limits,
        crate::relay::control::DEFAULT_REFRESH_MS,
    )
    .map_err(|e| format!("cannot start the AF_XDP relay on {RELAY_IF}: {e}"))?;
    let mut driver = UdpDriver::new().map_err(|e| e.to_string())?;
    let id = driver.add(socket, node).map_err(|e| e.to_string())?;
    Ok((driver, id, plane))
}

/// Peers that join late, added by the last shard's thread.
#[derive(Debug, Clone, Copy)]
struct LatePeers {
    count: usize,
    at: Instant,
    first_seed: u64,
    first_port: u16,
    stream: StreamId,
    tracker: SocketAddr,
    emit_played: bool,
    latency: Latency,
}

/// Starts the source's ingest and every peer's stream, and ffmpeg for
/// `--media testsrc`.
fn start_media(
    args: &Args,
    shards: &[Shard],
) -> Result<(Vec<ShardMedia>, Option<std::process::Child>), String> {
    let threads = shards.len();
    let block_bytes = shards
        .iter()
        .find_map(Shard::source)
        .map(crate::roles::Source::block_bytes)
        .ok_or("the demo has no source")?;
    let default_rtmp = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let pump = match (args.rtmp_listen, args.udp_ts_listen) {
        (_, Some(addr)) => IngestPump::udp_ts(addr, block_bytes)
            .map_err(|e| format!("cannot listen for MPEG-TS on UDP {addr}: {e}"))?,
        (rtmp, None) => {
            let addr = rtmp.unwrap_or(default_rtmp);
            IngestPump::rtmp(addr, DEMO_STREAM_KEY, block_bytes)
                .map_err(|e| format!("cannot listen for RTMP on {addr}: {e}"))?
        }
    };
    let feed_addr = pump.local_addr();
    match (args.udp_ts_listen, feed_addr) {
        (Some(_), Some(a)) => println!("media: MPEG-TS over udp://{a} (push with ffmpeg ... -f mpegts udp://{a}?pkt_size=1316)"),
        (None, Some(a)) => println!("media: RTMP on rtmp://{a}/live/{DEMO_STREAM_KEY} (push from OBS, or ffmpeg ... -f flv rtmp://{a}/live/{DEMO_STREAM_KEY})"),
        _ => {}
    }
    let mut media: Vec<ShardMedia> = (0..threads).map(|_| ShardMedia::default()).collect();
    media[0].pump = Some(pump);
    for (s, shard) in shards.iter().enumerate() {
        let ids: Vec<_> = shard.peers().map(|(id, _)| id).collect();
        for (k, id) in ids.into_iter().enumerate() {
            let i = k * threads + s;
            let port = args.http_base_port.saturating_add(i as u16);
            media[s].serve(id, port, args.latency.segment_target_us())?;
        }
    }
    let last = args.http_base_port as usize + args.peers.saturating_sub(1);
    println!(
        "players: peer i at http://127.0.0.1:({}+i)/stream, i = 0..{} (http://127.0.0.1:{}/stream .. http://127.0.0.1:{last}/stream){}",
        args.http_base_port,
        args.peers,
        args.http_base_port,
        if args.late_peers > 0 {
            format!("; {} late peer(s) from port {} after {} s", args.late_peers, last + 1, args.late_after)
        } else {
            String::new()
        }
    );
    let pusher = match args.media {
        Some(MediaSource::Testsrc) => {
            let (rtmp, udp) = match args.udp_ts_listen {
                Some(_) => (None, feed_addr),
                None => (feed_addr, None),
            };
            Some(push_testsrc(rtmp, udp, args.duration)?)
        }
        None => None,
    };
    Ok((media, pusher))
}

/// Runs every shard on its own thread until `end`, printing a progress
/// line once a second; returns the shards and their media.
fn run_shards(
    shards: Vec<Shard>,
    media: Option<Vec<ShardMedia>>,
    late: LatePeers,
    started: Instant,
    end: Instant,
) -> Result<(Vec<Shard>, Option<Vec<ShardMedia>>), String> {
    let threads = shards.len();
    let with_media = media.is_some();
    let mut media: Vec<Option<ShardMedia>> = match media {
        Some(m) => m.into_iter().map(Some).collect(),
        None => (0..threads).map(|_| None).collect(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let board: Arc<Mutex<Vec<Progress>>> = Arc::new(Mutex::new(vec![Progress::default(); threads]));
    // Media wants the source fed and the players served every few ms.
    let step = Duration::from_millis(if with_media { 5 } else { 250 });
    let handles: Vec<_> = shards
        .into_iter()
        .enumerate()
        .map(|(i, mut shard)| {
            let stop = Arc::clone(&stop);
            let board = Arc::clone(&board);
            let mut media = media[i].take();
            let mut late = (i + 1 == threads && late.count > 0).then_some(late);
            thread::spawn(move || -> Result<(Shard, Option<ShardMedia>), String> {
                let mut next_board = Instant::now();
                while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                    let slice = (Instant::now() + step).min(end);
                    shard
                        .run_until(slice, &stop)
                        .map_err(|e| format!("driver failed: {e}"))?;
                    if let Some(m) = &mut media {
                        m.service(&mut shard, clock::now().0);
                    }
                    if late.is_some_and(|l| Instant::now() >= l.at) {
                        if let Some(l) = late.take() {
                            add_late_peers(&mut shard, media.as_mut(), &l)?;
                        }
                    }
                    if Instant::now() >= next_board {
                        next_board = Instant::now() + Duration::from_millis(250);
                        if let Ok(mut b) = board.lock() {
                            b[i] = progress_of(&shard);
                        }
                    }
                }
                Ok((shard, media))
            })
        })
        .collect();

    let mut next_report = started + Duration::from_secs(1);
    while Instant::now() < end {
        thread::sleep(next_report.saturating_duration_since(Instant::now()));
        next_report += Duration::from_secs(1);
        if let Ok(b) = board.lock() {
            print_progress(&b, started);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut shards = Vec::new();
    let mut medias = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((shard, m))) => {
                shards.push(shard);
                medias.extend(m);
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a driver thread panicked".into()),
        }
    }
    Ok((shards, with_media.then_some(medias)))
}

/// Adds the late peers to `shard`.
fn add_late_peers(
    shard: &mut Shard,
    media: Option<&mut ShardMedia>,
    late: &LatePeers,
) -> Result<(), String> {
    let mut media = media;
    for j in 0..late.count {
        let mut pc = PeerConfig::new(late.stream, Some(late.tracker));
        pc.emit_played = late.emit_played;
        pc.playout = late.latency.playout();
        let id = shard
            .add_peer_with(pc, late.first_seed + j as u64)
            .map_err(|e| format!("cannot add a late peer: {e}"))?;
        if let Some(m) = media.as_deref_mut() {
            let at = m.serve(
                id,
                late.first_port.saturating_add(j as u16),
                late.latency.segment_target_us(),
            )?;
            println!("late peer {j} joined; it serves http://{at}/stream");
        } else {
            println!("late peer {j} joined");
        }
    }
    Ok(())
}

/// One progress line from the shards' reports.
fn print_progress(b: &[Progress], started: Instant) {
    let peers: usize = b.iter().map(|p| p.peers).sum();
    let playing: usize = b.iter().map(|p| p.playing).sum();
    let cont: Vec<f64> = b
        .iter()
        .flat_map(|p| p.continuity.iter().copied())
        .collect();
    let min = cont.iter().copied().fold(1.0, f64::min);
    let mean = if cont.is_empty() {
        0.0
    } else {
        cont.iter().sum::<f64>() / cont.len() as f64
    };
    let blocks = b.iter().find_map(|p| p.blocks_published).unwrap_or(0);
    let conns: usize = b.iter().map(|p| p.connections).sum();
    println!(
        "t={:>3}s  blocks {blocks:>6}  playing {playing:>4}/{peers:<4}  continuity min {min:.4} mean {mean:.4}  downloads {conns}",
        started.elapsed().as_secs()
    );
}

/// The AF_XDP relay's lines of the summary.
fn print_relay(r: &RelayReport) {
    println!(
        "  relay (AF_XDP)    {} peers in its fan-out over {} clubs at most, {} blocks in, {} catch-up copies on the kernel socket; XDP {}, bind {}",
        r.subscribers_max, r.clubs, r.blocks_in, r.kernel_out, r.attach, r.bind
    );
    for w in &r.workers {
        let s = &w.stats;
        println!(
            "  relay worker q{}   {} frames in, {} blocks fanned out as {} copies, {} forged dropped, {} duplicates; latency p50 {:.1} us p99 {:.1} us",
            w.queue,
            s.rx_frames,
            s.forward.forwarded_blocks,
            s.tx_frames,
            s.forward.forged,
            s.forward.duplicates,
            w.latency.p50_ns as f64 / 1000.0,
            w.latency.p99_ns as f64 / 1000.0
        );
    }
}

fn print_table(s: &SwarmSummary) {
    println!();
    println!(
        "summary ({} peers, {} clubs, {} kbit/s, {:.1} s)",
        s.peers, s.clubs, s.bitrate_kbps, s.duration_s
    );
    println!(
        "  continuity        min {:.4}   mean {:.4}",
        s.continuity_min, s.continuity_mean
    );
    println!(
        "  startup           p50 {:.0} ms   max {:.0} ms",
        s.startup_ms_p50, s.startup_ms_max
    );
    println!(
        "  delay             p50 {:.1} ms   p99 {:.1} ms",
        s.delay_ms_p50, s.delay_ms_p99
    );
    println!("  duplicate ratio   {:.3}", s.dup_ratio);
    println!(
        "  control overhead  {:.2}% of block bytes",
        s.control_overhead * 100.0
    );
    println!("  forged rejected   {}", s.forged_rejected);
    println!(
        "  repair            {:.2}% of the stream",
        s.repair_overhead * 100.0
    );
    println!(
        "  drops             {:.2} per peer and minute ({} for delay), {} bans",
        s.drops_per_peer_min, s.delay_drops, s.bans_added
    );
    if let Some(kib) = peak_rss_kib() {
        println!(
            "  peak RSS          {:.1} MiB (whole process)",
            kib as f64 / 1024.0
        );
    }
}

/// The process's peak resident set size (`VmHWM`), where procfs has it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
