//! `clubcast demo`: a whole swarm on loopback in one command.
//!
//! Starts a tracker, a source with a synthetic feed and N peers, each on
//! its own 127.0.0.1 socket, spread over one driver thread per core. Prints
//! progress once a second and a summary table at the end, and can write the
//! summary as one JSON object for scripts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::auth::SourceKey;
use crate::io::clock;
use crate::swarm::loopback::Shard;
use crate::swarm::SwarmSummary;

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
    /// Put a super-peer relay (kernel UDP) into the swarm, serving every
    /// club.
    #[arg(long)]
    relay: bool,
    /// Uploads per club the relay accepts.
    #[arg(long, default_value_t = 64)]
    relay_uploads_per_club: usize,
    /// Seed for the roles' random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
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

/// Runs the demo.
pub fn run(args: &Args) -> Result<ExitCode, String> {
    let threads = args
        .threads
        .unwrap_or_else(|| thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, args.peers.max(1));
    let key = SourceKey::generate().map_err(|e| e.to_string())?;
    let stream = key.stream_id();
    let err = |e: std::io::Error| format!("cannot set up loopback sockets: {e}");
    let mut shards: Vec<Shard> = (0..threads)
        .map(|_| Shard::new())
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
            args.bitrate_kbps * 1000,
            args.seed + 1,
        )
        .map_err(err)?;
    let relay = if args.relay {
        Some(
            shards[0]
                .add_relay(stream, tracker, args.relay_uploads_per_club, args.seed + 7)
                .map_err(err)?,
        )
    } else {
        None
    };
    for i in 0..args.peers {
        shards[i % threads]
            .add_peer(stream, tracker, args.seed * 1_000_003 + i as u64 + 2)
            .map_err(err)?;
    }
    println!(
        "clubcast demo: tracker {tracker}, source and {} peers on loopback, {} clubs, {} kbit/s, {} s, {threads} threads",
        args.peers, args.clubs, args.bitrate_kbps, args.duration
    );
    println!("stream id {stream}");
    if let Some(addr) = relay {
        println!("relay on {addr} (kernel UDP), serving every club");
    }

    let started = Instant::now();
    let start_time = clock::now();
    let end = started + Duration::from_secs(args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let board: Arc<Mutex<Vec<Progress>>> = Arc::new(Mutex::new(vec![Progress::default(); threads]));
    let handles: Vec<_> = shards
        .into_iter()
        .enumerate()
        .map(|(i, mut shard)| {
            let stop = Arc::clone(&stop);
            let board = Arc::clone(&board);
            thread::spawn(move || -> std::io::Result<Shard> {
                while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                    let slice = (Instant::now() + Duration::from_millis(250)).min(end);
                    shard.run_until(slice, &stop)?;
                    if let Ok(mut b) = board.lock() {
                        b[i] = progress_of(&shard);
                    }
                }
                Ok(shard)
            })
        })
        .collect();

    let mut next_report = started + Duration::from_secs(1);
    while Instant::now() < end {
        thread::sleep(next_report.saturating_duration_since(Instant::now()));
        next_report += Duration::from_secs(1);
        if let Ok(b) = board.lock() {
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
    }
    stop.store(true, Ordering::Relaxed);
    let mut shards = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(shard)) => shards.push(shard),
            Ok(Err(e)) => return Err(format!("driver failed: {e}")),
            Err(_) => return Err("a driver thread panicked".into()),
        }
    }
    let now = clock::now();
    let elapsed = (now.0.saturating_sub(start_time.0)) as f64 / 1e6;
    let source = shards.iter().find_map(Shard::source_peer);
    let summary = SwarmSummary::of(
        shards.iter().flat_map(|s| s.peers().map(|(_, p)| p)),
        source,
        now,
        elapsed,
        args.bitrate_kbps,
    );
    print_table(&summary);
    if let Some(r) = shards.iter().find_map(Shard::relay_peer) {
        let st = r.stats();
        println!(
            "  relay             {} uploads, {} blocks in, {} blocks out",
            r.connections().uploads.len(),
            st.unique_blocks,
            st.blocks_out
        );
    }
    let json = summary.to_json();
    println!("{json}");
    if let Some(path) = &args.summary_json {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
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
