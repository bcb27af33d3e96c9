//! Prometheus metrics: a text exposition of a node's counters over HTTP.
//!
//! [`Exposition`] writes counters and gauges in the Prometheus text format
//! (version 0.0.4); [`peer_metrics`] writes a peer's (or a relay's, or the
//! source's) counters, playback figures and connection counts into one.
//! [`MetricsServer`] serves the latest exposition at `/metrics` from a
//! thread of its own: the node's loop hands it a fresh text now and then
//! ([`MetricsServer::publish`]), so a scrape never touches the node and
//! never waits for it.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hdrhistogram::Histogram;
use tiny_http::{Header, Response, Server};

use crate::io::udp::UdpStats;
use crate::roles::peer::traversal::NatType;
use crate::roles::{Peer, Tracker};

/// Prometheus text exposition being written.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    fn metric(&mut self, kind: &str, name: &str, help: &str, value: f64) {
        self.head(kind, name, help);
        let _ = writeln!(self.text, "{name} {value}");
    }

    fn head(&mut self, kind: &str, name: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// A counter (a total that only grows).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.metric("counter", name, help, value as f64);
    }

    /// Every counter of a struct declared with `counters!` (its `named()`),
    /// each as `{prefix}_{name}_total` with its help text.
    pub fn counters<'a>(
        &mut self,
        prefix: &str,
        named: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    ) {
        for (name, help, value) in named {
            self.counter(&format!("{prefix}_{name}_total"), help, value);
        }
    }

    /// A gauge (a value that goes up and down).
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.metric("gauge", name, help, value);
    }

    /// A counter with one label: `name{label="key"} value` for each
    /// `(key, value)`.
    pub fn labelled_counter(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(String, u64)],
    ) {
        self.labelled("counter", name, help, label, values);
    }

    /// A gauge with one label, written like [`Self::labelled_counter`].
    pub fn labelled_gauge(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(String, u64)],
    ) {
        self.labelled("gauge", name, help, label, values);
    }

    fn labelled(
        &mut self,
        kind: &str,
        name: &str,
        help: &str,
        label: &str,
        values: &[(String, u64)],
    ) {
        self.head(kind, name, help);
        for (key, value) in values {
            let _ = writeln!(self.text, "{name}{{{label}=\"{key}\"}} {value}");
        }
    }

    /// A histogram of `values` (in the unit of `bounds`) over the upper
    /// bucket bounds `bounds`, ascending; `+Inf` is added.
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], values: &[f64]) {
        self.head("histogram", name, help);
        for b in bounds {
            let n = values.iter().filter(|v| **v <= *b).count();
            let _ = writeln!(self.text, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {}", values.len());
        let _ = writeln!(self.text, "{name}_sum {}", values.iter().sum::<f64>());
        let _ = writeln!(self.text, "{name}_count {}", values.len());
    }

    /// A summary of a latency histogram recorded in nanoseconds, in
    /// seconds: the 0.5, 0.99 and 0.999 quantiles, the sum and the count.
    pub fn latency_summary(&mut self, name: &str, help: &str, ns: &Histogram<u64>) {
        self.head("summary", name, help);
        for (q, at) in [("0.5", 0.5), ("0.99", 0.99), ("0.999", 0.999)] {
            let v = ns.value_at_quantile(at) as f64 / 1e9;
            let _ = writeln!(self.text, "{name}{{quantile=\"{q}\"}} {v}");
        }
        let sum = ns.mean() * ns.len() as f64 / 1e9;
        let _ = writeln!(self.text, "{name}_sum {sum}");
        let _ = writeln!(self.text, "{name}_count {}", ns.len());
    }

    /// The text.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// Upper bounds of the start-up histogram's buckets, seconds.
const STARTUP_BUCKETS_S: &[f64] = &[0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0];

/// Writes a socket driver's counters as `clubcast_udp_*` metrics.
pub fn udp_metrics(s: &UdpStats, out: &mut Exposition) {
    out.counters("clubcast_udp", s.named());
}

/// Writes the tracker's counters as `clubcast_tracker_*` metrics, with the
/// peers it lists.
pub fn tracker_metrics<R: rand::Rng>(tracker: &Tracker<R>, out: &mut Exposition) {
    out.gauge(
        "clubcast_tracker_peers",
        "peers listed",
        tracker.peer_count() as f64,
    );
    out.counters("clubcast_tracker", tracker.stats().named());
}

/// Writes `peer`'s counters and figures as `clubcast_peer_*` metrics.
pub fn peer_metrics(peer: &Peer, out: &mut Exposition) {
    let s = peer.stats();
    // Every counter of the peer, named where it is declared (`PeerStats`).
    out.counters("clubcast_peer", s.named());
    out.counters("clubcast_peer_verifier", peer.verifier_stats().named());
    let p = peer.playout_stats();
    out.counter(
        "clubcast_peer_played_on_time_total",
        "blocks played when due",
        p.on_time,
    );
    out.counter(
        "clubcast_peer_played_late_total",
        "blocks played after a freeze",
        p.late,
    );
    out.counter(
        "clubcast_peer_skipped_total",
        "blocks skipped at playback",
        p.skipped,
    );
    out.counter(
        "clubcast_peer_freezes_total",
        "playback freezes on a missing block ([0062])",
        p.freezes,
    );
    out.counter(
        "clubcast_peer_missed_total",
        "blocks due while not playing (late start, stopped)",
        p.missed,
    );
    out.gauge(
        "clubcast_peer_continuity",
        "blocks played on time over blocks due since the peer started (0 before it plays)",
        p.continuity(),
    );
    let startup = peer
        .playback_started_at()
        .map(|t| t.0.saturating_sub(peer.started_at().0) as f64 / 1e6);
    out.histogram(
        "clubcast_peer_startup_seconds",
        "time from the peer's start to its first block played",
        STARTUP_BUCKETS_S,
        startup.as_slice(),
    );
    out.gauge(
        "clubcast_peer_uplink_estimate_bps",
        "what the uplink is estimated to carry, bit/s (0 while no limit was seen)",
        peer.uplink_bps().unwrap_or(0.0),
    );
    out.gauge(
        "clubcast_peer_upload_bps",
        "what the peer sent over the last half second, bit/s",
        peer.upload_bps(),
    );
    out.gauge(
        "clubcast_peer_repairs_pending",
        "blocks wanted for repair now",
        peer.repairs_pending() as f64,
    );
    let c = peer.connections();
    out.gauge(
        "clubcast_peer_downloads",
        "download connections",
        c.downloads.len() as f64,
    );
    out.gauge(
        "clubcast_peer_uploads",
        "upload connections",
        c.uploads.len() as f64,
    );
    out.gauge(
        "clubcast_peer_nat_type",
        "the router in front of the peer: 0 unknown, 1 public, 2 endpoint-independent, 3 symmetric",
        peer.nat_type().gauge() as f64,
    );
    // The peer's uploads under its own reachability class: summed over
    // a swarm by `reach`, what each class carries.
    let own = peer.nat_type();
    let by_reach: Vec<(String, u64)> = [
        NatType::Unknown,
        NatType::Public,
        NatType::EndpointIndependent,
        NatType::Symmetric,
    ]
    .iter()
    .map(|t| {
        let n = if *t == own { c.uploads.len() as u64 } else { 0 };
        (t.name().to_string(), n)
    })
    .collect();
    out.labelled_gauge(
        "clubcast_peer_uploads_by_reach",
        "upload connections, under the peer's reachability class (sum by reach for a swarm)",
        "reach",
        &by_reach,
    );
    let clubs: Vec<(String, u64)> = peer
        .club_blocks()
        .iter()
        .enumerate()
        .map(|(club, n)| (club.to_string(), *n))
        .collect();
    out.labelled_counter(
        "clubcast_peer_club_blocks_total",
        "fresh verified blocks received, per club (a missing club lags)",
        "club",
        &clubs,
    );
    let skipped: Vec<(String, u64)> = peer
        .club_skipped()
        .iter()
        .enumerate()
        .map(|(club, n)| (club.to_string(), *n))
        .collect();
    out.labelled_counter(
        "clubcast_peer_club_skipped_total",
        "blocks playback skipped, per club",
        "club",
        &skipped,
    );
    out.gauge(
        "clubcast_peer_banned",
        "peers on the ban list",
        peer.bans().len() as f64,
    );
    let d = peer.delays_us();
    out.gauge(
        "clubcast_peer_block_delay_p50_seconds",
        "median delay from the source's batch time to a block's arrival",
        d.value_at_quantile(0.5) as f64 / 1e6,
    );
    out.gauge(
        "clubcast_peer_block_delay_p99_seconds",
        "99th percentile of that delay",
        d.value_at_quantile(0.99) as f64 / 1e6,
    );
}

/// Serves the latest exposition at `/metrics` (see the module
/// documentation).
pub struct MetricsServer {
    server: Arc<Server>,
    latest: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Listens on `addr`.
    pub fn start(addr: SocketAddr) -> io::Result<Self> {
        let server = Server::http(addr).map_err(|e| io::Error::other(e.to_string()))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the metrics server has no IP address"))?;
        let server = Arc::new(server);
        let latest = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, latest, stop) =
                (Arc::clone(&server), Arc::clone(&latest), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("metrics-{addr}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200))
                        else {
                            continue;
                        };
                        let response = if request.url().split('?').next() == Some("/metrics") {
                            let text = latest.lock().map(|t| t.clone()).unwrap_or_default();
                            Response::from_string(text)
                                .with_header(header("Content-Type", "text/plain; version=0.0.4"))
                        } else {
                            Response::from_string("not found: metrics are at /metrics\n")
                                .with_status_code(404)
                        };
                        let _ = request.respond(response);
                    }
                })?
        };
        Ok(MetricsServer {
            server,
            latest,
            stop,
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces what scrapes get.
    pub fn publish(&self, exposition: Exposition) {
        if let Ok(mut t) = self.latest.lock() {
            *t = exposition.into_text();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| unreachable!("constant ASCII header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines_follow_the_text_format() {
        let mut e = Exposition::new();
        e.counter("clubcast_x_total", "an x", 3);
        e.gauge("clubcast_y", "a y", 0.5);
        assert_eq!(
            e.into_text(),
            "# HELP clubcast_x_total an x\n# TYPE clubcast_x_total counter\nclubcast_x_total 3\n\
             # HELP clubcast_y a y\n# TYPE clubcast_y gauge\nclubcast_y 0.5\n"
        );
    }

    #[test]
    fn a_latency_summary_is_in_seconds_with_quantiles_sum_and_count() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
        for _ in 0..99 {
            h.record(1_000_000).expect("in range"); // 1 ms
        }
        h.record(2_000_000_000).expect("in range"); // 2 s
        let mut e = Exposition::new();
        e.latency_summary("clubcast_l_seconds", "an l", &h);
        let text = e.into_text();
        let value = |key: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{key} in {text}"))
        };
        assert!(
            text.starts_with("# HELP clubcast_l_seconds an l\n# TYPE clubcast_l_seconds summary\n")
        );
        assert!((value("clubcast_l_seconds{quantile=\"0.5\"}") - 0.001).abs() < 1e-5);
        assert!((value("clubcast_l_seconds{quantile=\"0.999\"}") - 2.0).abs() < 0.01);
        assert!((value("clubcast_l_seconds_sum") - 2.099).abs() < 0.01);
        assert_eq!(value("clubcast_l_seconds_count"), 100.0);
    }

    #[test]
    fn a_scrape_gets_the_latest_exposition() {
        use std::io::{Read, Write};
        let server = MetricsServer::start(([127, 0, 0, 1], 0).into()).expect("listen");
        let mut e = Exposition::new();
        e.counter("clubcast_test_total", "a test", 7);
        server.publish(e);
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(server.addr()).expect("connect");
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .expect("write");
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        };
        let text = get("/metrics");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("text/plain; version=0.0.4"), "{text}");
        assert!(text.contains("\nclubcast_test_total 7\n"), "{text}");
        assert!(get("/other").starts_with("HTTP/1.1 404"));
    }
}
