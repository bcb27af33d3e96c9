//! A named impairment [`Scenario`] run on real processes: a tracker and a
//! source on one host of a [`NetRig`], each peer on a host of its own with
//! the uplink, clock and outage the scenario gives it (the same
//! [`Scenario::impairment`] the simulator applies), and the figures of the
//! run read from the peers' metrics files.
//!
//! With [`NetBenchConfig::relay`] a super-peer relay joins on a host of
//! its own with a clean uplink, its BLOCKs on AF_XDP (`--io xdp`, copy
//! mode): the viewers find it through the tracker as they find each other,
//! and its data plane's figures are read from its metrics endpoint before
//! it stops.
//!
//! `examples/bench_network.rs` (`scripts/bench-network.sh`) runs every
//! scenario and prints one [`RigSummary`] JSON line each; the rig test runs
//! a short one in CI.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::rig::{NetRig, RigError, Uplink};
use crate::auth::SourceKey;
use crate::sim::{Impairment, Scenario};

/// What to run.
#[derive(Debug, Clone)]
pub struct NetBenchConfig {
    /// The conditions.
    pub scenario: Scenario,
    /// Viewer peers.
    pub peers: usize,
    /// Seconds the peers run.
    pub duration_s: u64,
    /// The synthetic stream's rate, kbit/s.
    pub kbps: u64,
    /// The `clubcast` binary.
    pub binary: PathBuf,
    /// Where keys, metrics files and logs go.
    pub dir: PathBuf,
    /// Seed of the delay queue's jitter.
    pub seed: u64,
    /// Adds a relay on AF_XDP (see the module documentation).
    pub relay: bool,
}

/// What the relay's data plane did, from its metrics at the run's end.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RelayFigures {
    /// Verified fresh blocks its AF_XDP workers fanned out.
    pub blocks_forwarded: u64,
    /// Copies its workers put on their TX rings.
    pub copies: u64,
    /// Blocks its workers dropped as forged.
    pub forged: u64,
    /// Receivers in its fan-out tables.
    pub subscribers: u64,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RigSummary {
    /// The scenario's name.
    pub scenario: &'static str,
    /// Peers whose figures were read.
    pub peers: usize,
    /// Lowest continuity (0 for a peer that never played).
    pub continuity_min: f64,
    /// Mean continuity.
    pub continuity_mean: f64,
    /// Longest start-up, ms (the whole run for a peer that never started).
    pub startup_ms_max: f64,
    /// Block payload received over unique payload.
    pub dup_ratio: f64,
    /// Repair bytes sent over unique payload.
    pub repair_overhead: f64,
    /// Congestion drops per peer and minute.
    pub drops_per_peer_min: f64,
    /// Drops for delay ([0051]), over all peers.
    pub delay_drops: u64,
    /// Bans added, over all peers.
    pub bans_added: u64,
    /// Graceful failures ([0063]), over all peers.
    pub graceful_failures: u64,
    /// Datagrams the rig dropped as random loss.
    pub lost: u64,
    /// Datagrams the rig's delay queue held.
    pub delayed: u64,
    /// The relay's figures, when the run had one (a run whose relay's
    /// metrics cannot be read is an error).
    pub relay: Option<RelayFigures>,
}

impl RigSummary {
    /// The summary as one JSON object.
    pub fn to_json(&self) -> String {
        let relay = self.relay.map_or(String::new(), |r| {
            format!(
                ",\"relay_blocks_forwarded\":{},\"relay_copies\":{},\"relay_forged\":{},\"relay_subscribers\":{}",
                r.blocks_forwarded, r.copies, r.forged, r.subscribers
            )
        });
        format!(
            "{{\"scenario\":\"{}\",\"peers\":{},\"continuity_min\":{:.4},\"continuity_mean\":{:.4},\"startup_ms_max\":{:.0},\"dup_ratio\":{:.3},\"repair_overhead\":{:.4},\"drops_per_peer_min\":{:.2},\"bans_added\":{},\"delay_drops\":{},\"graceful_failures\":{},\"rig_lost\":{},\"rig_delayed\":{}{relay}}}",
            self.scenario,
            self.peers,
            self.continuity_min,
            self.continuity_mean,
            self.startup_ms_max,
            self.dup_ratio,
            self.repair_overhead,
            self.drops_per_peer_min,
            self.bans_added,
            self.delay_drops,
            self.graceful_failures,
            self.lost,
            self.delayed
        )
    }
}

/// A host's uplink for a simulated impairment.
pub fn uplink_of(imp: &Impairment) -> Uplink {
    let l = imp.link;
    Uplink {
        delay_us: l.latency_us,
        jitter_us: l.jitter_us,
        loss: if l.loss.is_nan() { 0.0 } else { l.loss },
        rate_bps: l.upload_bytes_per_s.map(|b| b * 8),
        queue_us: l
            .upload_bytes_per_s
            .filter(|b| *b > 0)
            .map_or(0, |b| l.queue_limit_bytes.saturating_mul(1_000_000) / b),
    }
}

/// The `name value` lines of a Prometheus text file (labelled samples and
/// comments left out).
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

const TRACKER_PORT: u16 = 7000;
const SOURCE_PORT: u16 = 7001;
const PEER_PORT: u16 = 7100;
const RELAY_PORT: u16 = 7200;
/// The relay's metrics endpoint, on its host's loopback.
const RELAY_METRICS: &str = "127.0.0.1:9464";

/// Runs `cfg` and summarises it.
pub fn run(cfg: &NetBenchConfig) -> Result<RigSummary, RigError> {
    let io = |what: String| move |source| RigError::Io { what, source };
    std::fs::create_dir_all(&cfg.dir).map_err(io(format!("create {}", cfg.dir.display())))?;
    let relay_host = cfg.relay.then_some(cfg.peers + 1);
    let mut rig = NetRig::new(
        cfg.peers + 1 + usize::from(cfg.relay),
        &cfg.dir.join("logs"),
    )?;
    let secs = cfg.duration_s as f64;
    let origin = Scenario::Clean.impairment(usize::MAX, secs);
    rig.set_uplink(0, &uplink_of(&origin))?;
    if let Some(host) = relay_host {
        rig.set_uplink(host, &uplink_of(&origin))?;
    }
    let mut outages = Vec::new();
    for i in 0..cfg.peers {
        let imp = cfg.scenario.impairment(i, secs);
        rig.set_uplink(i + 1, &uplink_of(&imp))?;
        rig.set_clock_offset(i + 1, imp.clock_offset_us / 1_000_000);
        if let Some((at, ms)) = imp.outage {
            outages.push((
                i + 1,
                Duration::from_micros(at.0),
                Duration::from_millis(ms),
            ));
        }
    }
    rig.start(cfg.seed)?;

    let key_path = cfg.dir.join("source.key");
    let _ = std::fs::remove_file(&key_path);
    let key = SourceKey::generate().map_err(|e| RigError::Key(e.to_string()))?;
    key.write_new(&key_path)
        .map_err(|e| RigError::Key(e.to_string()))?;
    let stream = key.stream_id().to_string();
    let origin_ip = rig.hosts()[0].addr;
    let tracker = format!("{origin_ip}:{TRACKER_PORT}");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let lasting = (cfg.duration_s + 5).to_string();
    rig.spawn(
        0,
        "tracker",
        &cfg.binary,
        &s(&[
            "tracker",
            "--listen",
            &tracker,
            "--stream-id",
            &stream,
            "--duration",
            &lasting,
        ]),
    )?;
    let key_arg = key_path.to_string_lossy().to_string();
    rig.spawn(
        0,
        "source",
        &cfg.binary,
        &s(&[
            "source",
            "--key",
            &key_arg,
            "--tracker",
            &tracker,
            "--listen",
            &format!("{origin_ip}:{SOURCE_PORT}"),
            "--synthetic-kbps",
            &cfg.kbps.to_string(),
            "--duration",
            &lasting,
        ]),
    )?;
    if let Some(host) = relay_host {
        let ip: Ipv4Addr = rig.hosts()[host].addr;
        rig.spawn(
            host,
            "relay",
            &cfg.binary,
            &s(&[
                "relay",
                "--io",
                "xdp",
                "--interface",
                "eth0",
                "--xdp-mode",
                "drv",
                "--bind",
                "copy",
                "--listen",
                &format!("{ip}:{RELAY_PORT}"),
                "--stream-id",
                &stream,
                "--tracker",
                &tracker,
                "--metrics",
                RELAY_METRICS,
                "--duration",
                &lasting,
            ]),
        )?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let mut files = Vec::new();
    for i in 0..cfg.peers {
        let host = i + 1;
        let ip: Ipv4Addr = rig.hosts()[host].addr;
        let file = cfg.dir.join(format!("peer{i}.prom"));
        let _ = std::fs::remove_file(&file);
        rig.spawn(
            host,
            &format!("peer{i}"),
            &cfg.binary,
            &s(&[
                "peer",
                "--stream-id",
                &stream,
                "--tracker",
                &tracker,
                "--listen",
                &format!("{ip}:{PEER_PORT}"),
                "--duration",
                &cfg.duration_s.to_string(),
                "--metrics-file",
                &file.to_string_lossy(),
            ]),
        )?;
        files.push(file);
    }
    outages.sort_by_key(|o| o.1);
    for (host, at, len) in outages {
        sleep_until(start + at);
        rig.outage(host, true)?;
        sleep_until(start + at + len);
        rig.outage(host, false)?;
    }
    sleep_until(start + Duration::from_secs(cfg.duration_s));
    let relay = match relay_host {
        Some(host) => Some(
            relay_figures(&rig.hosts()[host].netns).map_err(|e| RigError::Io {
                what: "read the relay's metrics".into(),
                source: e,
            })?,
        ),
        None => None,
    };
    rig.wait_all(Duration::from_secs(10));
    let (lost, delayed) = (rig.lost(), rig.delayed());
    drop(rig);
    Ok(RigSummary {
        relay,
        ..summarise(cfg, &files, lost, delayed)
    })
}

/// Reads the relay's data-plane figures from its metrics endpoint, from a
/// thread that enters the relay host's namespace.
fn relay_figures(netns: &str) -> std::io::Result<RelayFigures> {
    use std::io::{Read, Write};
    let netns = netns.to_string();
    let text = std::thread::spawn(move || -> std::io::Result<String> {
        super::delay_queue::enter_netns(&netns).map_err(std::io::Error::other)?;
        let mut conn = std::net::TcpStream::connect(RELAY_METRICS)?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: relay\r\n\r\n")?;
        let mut text = String::new();
        conn.take(1 << 20).read_to_string(&mut text)?;
        Ok(text)
    })
    .join()
    .map_err(|_| std::io::Error::other("the metrics reader panicked"))??;
    let m = parse_metrics(&text);
    let get = |n: &str| m.get(n).copied().unwrap_or(0.0) as u64;
    if !m.contains_key("clubcast_relay_worker_tx_frames_total") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no AF_XDP worker figures in the relay's metrics",
        ));
    }
    Ok(RelayFigures {
        blocks_forwarded: get("clubcast_relay_worker_blocks_forwarded_total"),
        copies: get("clubcast_relay_worker_tx_frames_total"),
        forged: get("clubcast_relay_worker_forged_total"),
        subscribers: get("clubcast_relay_subscribers"),
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Reduces the peers' metrics files to a summary; a peer whose file is
/// missing counts as one that never played.
fn summarise(cfg: &NetBenchConfig, files: &[PathBuf], lost: u64, delayed: u64) -> RigSummary {
    let mut continuity = Vec::new();
    let mut startup_ms_max: f64 = 0.0;
    let (mut payload, mut unique, mut repair) = (0.0, 0.0, 0.0);
    let (mut drops, mut delay_drops, mut bans, mut failures) = (0.0, 0.0, 0.0, 0.0);
    let whole_ms = cfg.duration_s as f64 * 1000.0;
    for f in files {
        let m = read_metrics(f);
        let get = |n: &str| m.get(&format!("clubcast_{n}")).copied().unwrap_or(0.0);
        continuity.push(get("peer_continuity"));
        let started = get("peer_startup_seconds_count") > 0.0;
        startup_ms_max = startup_ms_max.max(if started {
            get("peer_startup_seconds_sum") * 1000.0
        } else {
            whole_ms
        });
        payload += get("peer_block_payload_received_total");
        unique += get("peer_unique_payload_bytes_total");
        repair += get("peer_repair_bytes_sent_total");
        drops += get("peer_drops_silence_total")
            + get("peer_drops_delay_total")
            + get("peer_drops_gap_total")
            + get("peer_drops_keepalive_total");
        delay_drops += get("peer_drops_delay_total");
        bans += get("peer_bans_added_total");
        failures += get("peer_graceful_failures_total");
    }
    let n = continuity.len();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    RigSummary {
        scenario: cfg.scenario.name(),
        peers: n,
        continuity_min: continuity.iter().copied().fold(1.0, f64::min),
        continuity_mean: if n == 0 {
            0.0
        } else {
            continuity.iter().sum::<f64>() / n as f64
        },
        startup_ms_max,
        dup_ratio: ratio(payload, unique),
        repair_overhead: ratio(repair, unique),
        drops_per_peer_min: ratio(drops, n as f64) / (cfg.duration_s as f64 / 60.0),
        delay_drops: delay_drops as u64,
        bans_added: bans as u64,
        graceful_failures: failures as u64,
        lost,
        delayed,
        relay: None,
    }
}

fn read_metrics(path: &Path) -> HashMap<String, f64> {
    std::fs::read_to_string(path)
        .map(|t| parse_metrics(&t))
        .unwrap_or_default()
}
