//! `--metrics`: a tracker, a source and a peer as processes on loopback,
//! the source and the peer serving Prometheus metrics; a scrape gets the
//! text format with counters that moved.

#[path = "support/keygen.rs"]
mod keygen;
#[path = "support/process.rs"]
mod process;

use clubcast::auth::VerifierStats;
use clubcast::io::udp::UdpStats;
use clubcast::roles::{PeerStats, TrackerStats};
use process::{free_port, Kid};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");

fn spawn(args: &[&str]) -> Kid {
    Kid(Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clubcast"))
}

/// The body of GET /metrics on `port`, or "" if nothing answers.
fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Checks a verifier's counters, exported under `prefix` in `text`: each
/// is there, it passed at least the `delivered` blocks, checked fewer
/// signatures than it passed blocks (one a batch) but some, and rejected
/// none.
fn verifier_worked(text: &str, prefix: &str, delivered: Option<f64>) {
    let verifier = |name: &str| value(text, &format!("{prefix}_{name}_total"));
    for (name, _, _) in VerifierStats::default().named() {
        assert!(verifier(name).is_some(), "no {prefix}_{name}_total: {text}");
    }
    assert!(verifier("passed") >= delivered, "{text}");
    let checked = verifier("signatures_checked");
    assert!(
        checked > Some(0.0) && checked < verifier("passed"),
        "{text}"
    );
    assert_eq!(verifier("rejected"), Some(0.0), "{text}");
}

/// A tracker and a source of a synthetic 500 kbit/s stream on loopback,
/// for `secs` seconds, the source serving metrics on `source_metrics` if
/// given; its key lives in a temporary directory removed on drop.
struct Stream {
    dir: std::path::PathBuf,
    sid: String,
    tracker: String,
    /// The tracker's metrics port.
    tracker_metrics: u16,
    secs: String,
    _roles: [Kid; 2],
}

impl Stream {
    fn start(tag: &str, secs: u32, source_metrics: Option<u16>) -> Stream {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (key, sid) = keygen::keygen(BIN, &dir.join("source.key"));
        let tracker = format!("127.0.0.1:{}", free_port());
        let secs = secs.to_string();
        let tracker_metrics = free_port();
        let tracker_kid = spawn(&[
            "tracker",
            "--listen",
            &tracker,
            "--stream-id",
            &sid,
            "--metrics",
            &format!("127.0.0.1:{tracker_metrics}"),
            "--duration",
            &secs,
        ]);
        let metrics = source_metrics.map(|port| format!("127.0.0.1:{port}"));
        let mut args = vec![
            "source",
            "--key",
            &key,
            "--tracker",
            &tracker,
            "--listen",
            "127.0.0.1:0",
            "--synthetic-kbps",
            "500",
            "--duration",
            &secs,
        ];
        if let Some(m) = &metrics {
            args.extend(["--metrics", m]);
        }
        let source = spawn(&args);
        Stream {
            dir,
            sid,
            tracker,
            tracker_metrics,
            secs,
            _roles: [tracker_kid, source],
        }
    }
}

impl Stream {
    /// A peer of the stream on loopback, with `extra` arguments.
    fn peer(&self, extra: &[&str]) -> Kid {
        let mut args = vec![
            "peer",
            "--stream-id",
            &self.sid,
            "--tracker",
            &self.tracker,
            "--listen",
            "127.0.0.1:0",
            "--duration",
            &self.secs,
        ];
        args.extend(extra);
        spawn(&args)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn source_and_peer_serve_prometheus_metrics() {
    let source_m = free_port();
    let stream = Stream::start("clubcast-metrics", 20, Some(source_m));
    let peer_m = free_port();
    let _p = stream.peer(&["--metrics", &format!("127.0.0.1:{peer_m}")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut source, mut peer) = (String::new(), String::new());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        source = scrape(source_m);
        peer = scrape(peer_m);
        if value(&peer, "clubcast_peer_played_on_time_total").unwrap_or(0.0) > 100.0 {
            break;
        }
    }
    for text in [&source, &peer] {
        assert!(!text.is_empty(), "a scrape answered");
        for line in text.lines() {
            let ok = line.starts_with("# HELP clubcast_")
                || line.starts_with("# TYPE clubcast_")
                || (line.starts_with("clubcast_")
                    && line
                        .rsplit(' ')
                        .next()
                        .is_some_and(|v| v.parse::<f64>().is_ok()));
            assert!(ok, "not Prometheus text: {line:?}");
        }
    }
    assert!(
        value(&source, "clubcast_source_blocks_published_total").unwrap_or(0.0) > 0.0,
        "{source}"
    );
    assert!(
        value(&source, "clubcast_peer_blocks_sent_total").unwrap_or(0.0) > 0.0,
        "{source}"
    );
    assert!(
        value(&peer, "clubcast_peer_blocks_unique_total").unwrap_or(0.0) > 100.0,
        "{peer}"
    );
    assert!(
        value(&peer, "clubcast_peer_played_on_time_total").unwrap_or(0.0) > 100.0,
        "{peer}"
    );
    assert_eq!(value(&peer, "clubcast_peer_blocks_forged_total"), Some(0.0));
    // Every drop reason, bans, repairs, freezes and send failures have a
    // counter, and start-up a histogram with the one start in it.
    for name in [
        "clubcast_peer_drops_delay_total",
        "clubcast_peer_drops_gap_total",
        "clubcast_peer_drops_silence_total",
        "clubcast_peer_drops_keepalive_total",
        "clubcast_peer_drops_trimmed_total",
        "clubcast_peer_drops_forged_total",
        "clubcast_peer_drops_shed_total",
        "clubcast_peer_handovers_total",
        "clubcast_peer_clubs_missing_total",
        "clubcast_peer_bans_added_total",
        "clubcast_peer_repair_asked_total",
        "clubcast_peer_repaired_total",
        "clubcast_peer_repair_bytes_sent_total",
        "clubcast_peer_freezes_total",
        "clubcast_peer_missed_total",
        "clubcast_peer_send_drops_total",
        "clubcast_udp_send_drops_total",
        "clubcast_udp_send_errors_total",
    ] {
        assert!(value(&peer, name).is_some(), "no {name}");
    }
    // And so does every other counter the peer keeps (relabelled and
    // foreign blocks among them), each under its own name.
    let named = PeerStats::default().named();
    for (name, help, _) in named {
        let metric = format!("clubcast_peer_{name}_total");
        assert!(value(&peer, &metric).is_some(), "no {metric}");
        assert!(
            peer.contains(&format!("# HELP {metric} {help}\n")),
            "{metric} without its help text"
        );
        assert!(!help.is_empty(), "{metric} has an empty help text");
    }
    let mut names: Vec<&str> = named.iter().map(|(n, _, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), PeerStats::NAMED, "two counters share a name");
    for name in [
        "blocks_wrong_club",
        "blocks_wrong_stream",
        "block_payload_sent",
    ] {
        assert!(names.contains(&name), "no {name}");
    }
    // What its verifier did: every block it played passed.
    verifier_worked(
        &peer,
        "clubcast_peer_verifier",
        value(&peer, "clubcast_peer_played_on_time_total"),
    );
    // The socket driver's counters too, traffic and errors alike.
    for (name, _, _) in UdpStats::default().named() {
        let metric = format!("clubcast_udp_{name}_total");
        assert!(value(&peer, &metric).is_some(), "no {metric}");
    }
    assert!(
        value(&peer, "clubcast_udp_datagrams_received_total").unwrap_or(0.0) > 100.0,
        "{peer}"
    );
    // On loopback the tracker sees the peer's own address: it is public,
    // and its uploads are counted under that class alone.
    assert_eq!(value(&peer, "clubcast_peer_nat_type"), Some(1.0));
    let by_reach = |reach: &str| {
        value(
            &peer,
            &format!("clubcast_peer_uploads_by_reach{{reach=\"{reach}\"}}"),
        )
    };
    assert_eq!(
        by_reach("public"),
        value(&peer, "clubcast_peer_uploads"),
        "{peer}"
    );
    for other in ["unknown", "endpoint-independent", "symmetric"] {
        assert_eq!(by_reach(other), Some(0.0), "{peer}");
    }
    assert_eq!(
        value(&peer, "clubcast_peer_startup_seconds_count"),
        Some(1.0)
    );
    let startup = value(&peer, "clubcast_peer_startup_seconds_sum").unwrap_or(0.0);
    assert!(startup > 0.0 && startup < 5.0, "start-up {startup} s");
    assert!(peer.contains("clubcast_peer_startup_seconds_bucket{le=\"+Inf\"} 1"));
    // The tracker lists the source and the peer, and exports every counter
    // it keeps (refusals among them) and its socket's.
    let tracker = scrape(stream.tracker_metrics);
    assert_eq!(
        value(&tracker, "clubcast_tracker_peers"),
        Some(2.0),
        "{tracker}"
    );
    assert!(
        value(&tracker, "clubcast_tracker_joins_total").unwrap_or(0.0) >= 2.0,
        "{tracker}"
    );
    for (name, _, _) in TrackerStats::default().named() {
        let metric = format!("clubcast_tracker_{name}_total");
        assert!(value(&tracker, &metric).is_some(), "no {metric}");
    }
    assert_eq!(
        value(&tracker, "clubcast_tracker_malformed_total"),
        Some(0.0)
    );
    assert!(
        value(&tracker, "clubcast_udp_datagrams_received_total").unwrap_or(0.0) > 0.0,
        "{tracker}"
    );
}

/// The kernel-UDP relay (`--io udp`) exports every counter of the
/// forwarding core its control plane runs, under `clubcast_relay_inline_*`.
#[test]
fn kernel_udp_relay_exports_its_forwarding_core() {
    let stream = Stream::start("clubcast-metrics-relay", 25, None);
    let (sid, tracker) = (stream.sid.as_str(), stream.tracker.as_str());
    let relay_m = free_port();
    let _r = spawn(&[
        "relay",
        "--io",
        "udp",
        "--stream-id",
        sid,
        "--tracker",
        tracker,
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--metrics",
        &format!("127.0.0.1:{relay_m}"),
        "--duration",
        "25",
    ]);
    let _peers: Vec<Kid> = (0..3).map(|_| stream.peer(&[])).collect();
    let forwarded = "clubcast_relay_inline_blocks_forwarded_total";
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut relay = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        relay = scrape(relay_m);
        if value(&relay, forwarded).unwrap_or(0.0) > 50.0 {
            break;
        }
    }
    assert!(value(&relay, forwarded).unwrap_or(0.0) > 50.0, "{relay}");
    for (name, _, _) in clubcast::forward::ForwardStats::default().named() {
        let name = format!("clubcast_relay_inline_{name}_total");
        assert!(value(&relay, &name).is_some(), "no {name}: {relay}");
    }
    assert!(
        value(&relay, "clubcast_relay_inline_copies_total") >= value(&relay, forwarded),
        "{relay}"
    );
    assert_eq!(
        value(&relay, "clubcast_relay_inline_forged_total"),
        Some(0.0)
    );
    // Its core's verifier passed every block it forwarded.
    verifier_worked(
        &relay,
        "clubcast_relay_inline_verifier",
        value(&relay, forwarded),
    );
    // Uploads the fan-out tables leave out, and publications that found a
    // worker gone, are counted too (none here).
    for name in [
        "clubcast_relay_ipv6_skipped",
        "clubcast_relay_over_limit",
        "clubcast_relay_workers_gone_total",
    ] {
        assert_eq!(value(&relay, name), Some(0.0), "{name}: {relay}");
    }
}
