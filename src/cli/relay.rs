//! `clubcast relay`: a super-peer relay, with its BLOCKs on AF_XDP or on
//! the kernel socket.
//!
//! `--io xdp` starts the AF_XDP data plane (steering program, one pinned
//! worker per queue) under the control plane and fails if it cannot;
//! `--io udp` runs the same relay on its kernel socket alone; `--io auto`
//! (the default) tries AF_XDP and falls back to kernel UDP with a log line
//! that says why. Every knob of the data plane is a flag. A status line
//! comes every second; the workers' counters come when the relay stops.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::auth::StreamId;
use crate::io::clock;
use crate::relay::worker::{IdlePolicy, WorkerConfig, DEFAULT_BATCH};
use crate::relay::xsk::{DEFAULT_FRAME_SIZE, DEFAULT_RING_SIZE};
use crate::relay::{
    BindMode, FanoutLimits, RelayNode, StartError, XdpDataPlane, XdpMode, XdpOptions, XskConfig,
};
use crate::roles::{PeerConfig, PeerEvent};

use super::relay_check;
use super::roles::{bind_announced, drive, metrics_server, os_rng, publish_metrics, random_id};
use crate::metrics::Exposition;

/// Which backend carries the relay's BLOCKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoChoice {
    /// AF_XDP, or an error if it cannot start.
    Xdp,
    /// The kernel UDP socket.
    Udp,
    /// AF_XDP if it starts, else kernel UDP (said in the log).
    Auto,
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachChoice {
    /// Native (driver) mode.
    Drv,
    /// Generic (skb) mode.
    Skb,
    /// Native if supported, else generic.
    Auto,
}

/// AF_XDP bind mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BindChoice {
    /// Copy mode (works everywhere, veth included).
    Copy,
    /// Zero-copy (needs driver support).
    ZeroCopy,
    /// Zero-copy if supported, else copy.
    Auto,
}

/// What an idle worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdleChoice {
    /// Spin (a dedicated core).
    Spin,
    /// Yield the CPU.
    Yield,
    /// Sleep until frames arrive (at most 1 ms).
    Wait,
}

/// Arguments of `clubcast relay`.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The stream id to relay (64 hex digits).
    #[arg(long, required_unless_present = "check")]
    stream_id: Option<StreamId>,
    /// The tracker's address.
    #[arg(long, required_unless_present = "check")]
    tracker: Option<SocketAddr>,
    /// Check the interface (driver, queues, XDP and zero-copy support,
    /// offloads, MTU, huge pages) and what the relay would use, print
    /// advice, and exit: 0 when nothing needs fixing.
    #[arg(long)]
    check: bool,
    /// Address to listen on (the control socket; BLOCKs to its port go to
    /// the AF_XDP workers).
    #[arg(long, default_value = "0.0.0.0:7100")]
    listen: SocketAddr,
    /// Clubs to serve (comma-separated; default: every club).
    #[arg(long, value_delimiter = ',')]
    clubs: Option<Vec<u16>>,
    /// Clubs in the swarm; must match the tracker's.
    #[arg(long, default_value_t = 12)]
    club_count: u16,
    /// Peers per club the relay uploads to before it trims.
    #[arg(long, default_value_t = 64)]
    peers_per_club: usize,
    /// Backend for BLOCKs.
    #[arg(long, value_enum, default_value_t = IoChoice::Auto)]
    io: IoChoice,
    /// Interface the BLOCKs arrive on (default: the one holding the
    /// --listen address).
    #[arg(long)]
    interface: Option<String>,
    /// RX queues to serve, one worker each (queues FIRST..FIRST+N, see
    /// --first-queue).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// First RX queue served (the queues the NIC steers the relay port to;
    /// `tuning/` sets that up).
    #[arg(long, default_value_t = 0)]
    first_queue: u32,
    /// Cores to pin the workers to, one per queue (comma-separated;
    /// default: worker i on core i+1, leaving core 0 to the control
    /// plane, when there is more than one core).
    #[arg(long, value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = AttachChoice::Drv)]
    xdp_mode: AttachChoice,
    /// AF_XDP bind mode.
    #[arg(long, value_enum, default_value_t = BindChoice::Auto)]
    bind: BindChoice,
    /// UMEM frame size in bytes (a power of two, at least 2048).
    #[arg(long, default_value_t = DEFAULT_FRAME_SIZE)]
    frame_size: u32,
    /// RX and fill ring entries, and UMEM frames for receiving.
    #[arg(long, default_value_t = DEFAULT_RING_SIZE)]
    rx_ring: u32,
    /// TX and completion ring entries, and UMEM frames for sending.
    #[arg(long, default_value_t = DEFAULT_RING_SIZE)]
    tx_ring: u32,
    /// Map each UMEM in 2 MiB huge pages (reserve them: `tuning/`).
    #[arg(long)]
    huge_pages: bool,
    /// RX frames a worker takes per loop.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch: usize,
    /// Preferred busy polling, microseconds (0: off).
    #[arg(long, default_value_t = 0)]
    busy_poll_us: u32,
    /// What an idle worker does.
    #[arg(long, value_enum, default_value_t = IdleChoice::Wait)]
    idle: IdleChoice,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    duration: Option<u64>,
}

impl RelayArgs {
    fn xdp_options(&self, ifname: String) -> XdpOptions {
        let first = self.first_queue;
        let queues: Vec<u32> = (first..first.saturating_add(self.queues.max(1))).collect();
        let cores = self.cores.clone().unwrap_or_else(|| {
            let n = core_affinity::get_core_ids().map_or(1, |c| c.len());
            if n > 1 {
                (0..queues.len()).map(|i| (i + 1) % n).collect()
            } else {
                Vec::new()
            }
        });
        XdpOptions {
            ifname,
            queues,
            cores,
            attach: match self.xdp_mode {
                AttachChoice::Drv => XdpMode::Native,
                AttachChoice::Skb => XdpMode::Generic,
                AttachChoice::Auto => XdpMode::Auto,
            },
            xsk: XskConfig {
                frame_size: self.frame_size,
                rx_frames: self.rx_ring,
                tx_frames: self.tx_ring,
                rx_ring: self.rx_ring,
                tx_ring: self.tx_ring,
                fill_ring: self.rx_ring,
                comp_ring: self.tx_ring,
                bind_mode: match self.bind {
                    BindChoice::Copy => BindMode::Copy,
                    BindChoice::ZeroCopy => BindMode::ZeroCopy,
                    BindChoice::Auto => BindMode::Auto,
                },
                need_wakeup: true,
                huge_pages: self.huge_pages,
            },
            worker: WorkerConfig {
                batch: self.batch,
                idle: match self.idle {
                    IdleChoice::Spin => IdlePolicy::Spin,
                    IdleChoice::Yield => IdlePolicy::Yield,
                    IdleChoice::Wait => IdlePolicy::Wait,
                },
                ..WorkerConfig::default()
            },
            busy_poll_us: self.busy_poll_us,
            uplink_slots: crate::relay::uplink::DEFAULT_UPLINK_SLOTS,
        }
    }
}

/// The interface that holds `ip` in this network namespace.
fn interface_of(ip: IpAddr) -> Result<String, String> {
    if ip.is_unspecified() {
        return Err("--listen is a wildcard address; name the interface with --interface".into());
    }
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing interfaces: {e}"))?;
    for a in addrs {
        let held = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        if held == Some(ip) {
            return Ok(a.interface_name);
        }
    }
    Err(format!(
        "no interface holds {ip}; name one with --interface"
    ))
}

/// Starts the AF_XDP relay, or says why it cannot.
fn start_xdp(
    args: &RelayArgs,
    pc: PeerConfig,
    local: SocketAddr,
) -> Result<(RelayNode, XdpDataPlane), String> {
    let ifname = match &args.interface {
        Some(name) => name.clone(),
        None => interface_of(local.ip())?,
    };
    let opts = args.xdp_options(ifname.clone());
    let limits = FanoutLimits {
        max_subscribers_per_club: args.peers_per_club.max(1),
        ..FanoutLimits::default()
    };
    let (node, plane) = RelayNode::xdp(
        pc,
        clock::now(),
        os_rng()?,
        local,
        &opts,
        limits,
        crate::relay::control::DEFAULT_REFRESH_MS,
    )
    .map_err(|e: StartError| format!("AF_XDP on {ifname}: {e}"))?;
    println!(
        "relay data plane: AF_XDP on {ifname}, {} queue(s), XDP {}, bind {}, cores {:?}",
        opts.queues.len(),
        plane.attach_mode().map_or("?".into(), |m| m.to_string()),
        plane.bind_mode(),
        opts.cores
    );
    Ok((node, plane))
}

/// Runs a super-peer relay (or, with `--check`, its preflight).
pub fn run(args: &RelayArgs) -> Result<ExitCode, String> {
    if args.check {
        let ifname = match &args.interface {
            Some(name) => name.clone(),
            None => interface_of(args.listen.ip())?,
        };
        return Ok(relay_check::run(&relay_check::Plan {
            ifname,
            first_queue: args.first_queue,
            queues: args.queues,
            cores: args.cores.clone().unwrap_or_default(),
            attach: format!("{:?}", args.xdp_mode).to_lowercase(),
            bind: match args.bind {
                BindChoice::Copy => "copy",
                BindChoice::ZeroCopy => "zero-copy",
                BindChoice::Auto => "auto",
            }
            .into(),
            frame_size: args.frame_size,
            huge_pages: args.huge_pages,
        }));
    }
    let (Some(stream_id), Some(tracker)) = (args.stream_id, args.tracker) else {
        return Err("give --stream-id and --tracker".into());
    };
    let mut pc = PeerConfig::new(stream_id, Some(tracker));
    pc.clubs = args.clubs.clone();
    pc.club_count = args.club_count.max(1);
    pc.relay_uploads = args.peers_per_club.max(1);
    pc.peer_id = random_id()?;
    let socket = bind_announced(args.listen, "relay", stream_id, tracker)?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    pc.local_addr = super::roles::local_address(&socket, tracker);
    let (node, plane) = match args.io {
        IoChoice::Udp => (RelayNode::kernel(pc, clock::now(), os_rng()?), None),
        IoChoice::Xdp => {
            let (node, plane) = start_xdp(args, pc, local)?;
            (node, Some(plane))
        }
        IoChoice::Auto => match start_xdp(args, pc.clone(), local) {
            Ok((node, plane)) => (node, Some(plane)),
            Err(why) => {
                tracing::warn!(
                    "relay falls back to kernel UDP: {why} (--io xdp makes this an error)"
                );
                (RelayNode::kernel(pc, clock::now(), os_rng()?), None)
            }
        },
    };
    println!("relay blocks on {}", node.io());
    let metrics = metrics_server(args.metrics)?;
    drive(
        socket,
        node,
        args.duration,
        Duration::from_millis(100),
        |n| {
            while let Some(event) = n.poll_event() {
                match event {
                    PeerEvent::TrackerSilent { tracker } => tracing::warn!(
                        %tracker,
                        "no answer from the tracker at {tracker} for stream {}: is it running, and serving this --stream-id?",
                        stream_id
                    ),
                    PeerEvent::WrongStream { seen } => tracing::error!(
                        "blocks arrive signed for another stream (tag {}), not {}; check --stream-id",
                        hex::encode(seen.0),
                        stream_id
                    ),
                    _ => {}
                }
            }
        },
        |n, t, udp| {
            status_line(n, t);
            publish_metrics(metrics.as_ref(), n.peer(), udp, |e| {
                relay_metrics(n, plane.as_ref(), e)
            });
        },
    )?;
    if let Some(plane) = plane {
        for r in plane.stop() {
            let s = r.stats;
            println!(
                "worker q{}: rx {} forwarded {} tx {} forged {} duplicates {} claimed-elsewhere {} uplinked {} (dropped {}) tx-ring-full {} no-free-frame {} latency p50 {:.1} us p99 {:.1} us pinned {}",
                r.queue,
                s.rx_frames,
                s.forward.forwarded_blocks,
                s.tx_frames,
                s.forward.forged,
                s.forward.duplicates,
                s.forward.claimed_elsewhere,
                s.forward.uplinked,
                s.forward.uplink_dropped,
                s.tx_ring_full,
                s.forward.no_free_buffer,
                r.latency.p50_ns as f64 / 1000.0,
                r.latency.p99_ns as f64 / 1000.0,
                r.pinned
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The relay's own metrics: its control plane's counters, every counter
/// of its forwarding core (`clubcast_relay_inline_*` when the control
/// plane runs it, `clubcast_relay_worker_*` summed over the AF_XDP
/// workers) and its steering program's counters.
fn relay_metrics(node: &RelayNode, plane: Option<&XdpDataPlane>, e: &mut Exposition) {
    let c = node.plane();
    let cs = c.stats();
    e.gauge(
        "clubcast_relay_subscribers",
        "distinct peers in the fan-out tables",
        c.subscribers() as f64,
    );
    e.gauge(
        "clubcast_relay_subscriptions",
        "subscriptions in the fan-out tables",
        cs.subscriptions as f64,
    );
    e.gauge(
        "clubcast_relay_unresolved",
        "uploads left out: next hop not resolved yet",
        cs.unresolved as f64,
    );
    e.gauge(
        "clubcast_relay_ipv6_skipped",
        "uploads left out of the fan-out tables: IPv6 receivers (the control plane sends them their blocks)",
        cs.ipv6_skipped as f64,
    );
    e.gauge(
        "clubcast_relay_over_limit",
        "uploads left out of the fan-out tables: over the table's limits",
        cs.over_limit as f64,
    );
    e.counter(
        "clubcast_relay_workers_gone_total",
        "fan-out table publications that found a worker gone",
        cs.workers_gone,
    );
    e.counter(
        "clubcast_relay_tables_published_total",
        "fan-out tables published",
        cs.tables_published,
    );
    e.counter(
        "clubcast_relay_uplinked_total",
        "verified blocks the workers reported",
        cs.uplinked,
    );
    e.counter(
        "clubcast_relay_uplink_dropped_total",
        "reports dropped for want of a slot",
        c.uplink_dropped(),
    );
    e.counter(
        "clubcast_relay_blocks_unconnected_total",
        "BLOCKs to the inline core from addresses with no connection, dropped unchecked",
        cs.blocks_unconnected,
    );
    e.counter(
        "clubcast_relay_blocks_wrong_tag_total",
        "BLOCKs to the inline core without their sender's block tag, dropped unchecked",
        cs.blocks_wrong_tag,
    );
    if let Some(f) = c.inline_stats() {
        e.counters("clubcast_relay_inline", f.named());
    }
    if let Some(v) = c.inline_verifier_stats() {
        e.counters("clubcast_relay_inline_verifier", v.named());
    }
    if let Some(plane) = plane {
        let w = plane.worker_stats();
        e.counters(
            "clubcast_relay_worker",
            w.named().into_iter().chain(w.forward.named()),
        );
        e.counters(
            "clubcast_relay_worker_verifier",
            plane.worker_verifier_stats().named(),
        );
        e.latency_summary(
            "clubcast_relay_worker_latency_seconds",
            "ingress to TX submit of forwarded blocks, per worker batch",
            &plane.worker_latency(),
        );
    }
    if let Some(Ok(steer)) = plane.map(XdpDataPlane::steer_counters) {
        e.counter(
            "clubcast_relay_xdp_redirected_total",
            "BLOCKs steered into AF_XDP sockets",
            steer.redirected,
        );
        e.counter(
            "clubcast_relay_xdp_passed_total",
            "frames the XDP program passed to the kernel",
            steer.passed(),
        );
        e.counter(
            "clubcast_relay_xdp_dropped_unknown_sender_total",
            "BLOCKs the XDP sender gate dropped: not from one of the relay's uploaders",
            steer.dropped_unknown_sender,
        );
        e.counter(
            "clubcast_relay_xdp_dropped_wrong_tag_total",
            "BLOCKs the XDP sender gate dropped: an uploader's address without its block tag",
            steer.dropped_wrong_tag,
        );
    }
}

/// One status line.
fn status_line(node: &RelayNode, t: u64) {
    let p = node.peer();
    let st = p.stats();
    let mut line = format!(
        "t={t}s io {} clubs {} down {} up {} blocks in {} out {} forged {}",
        node.io(),
        p.clubs().len(),
        p.connections().downloads.len(),
        p.connections().uploads.len(),
        st.unique_blocks,
        st.blocks_out,
        st.forged_rejected
    );
    if let Some(c) = node.control() {
        let cs = c.stats();
        line.push_str(&format!(
            " fanout {} subscriptions to {} peers (unresolved {}) uplinked {}",
            cs.subscriptions,
            c.subscribers(),
            cs.unresolved,
            cs.uplinked
        ));
    }
    println!("{line}");
}
