//! `clubcast simulate`: a whole swarm in the deterministic in-memory
//! network, under one of the named impairment scenarios, for a seed.
//!
//! The run is a pure function of its arguments: the same seed prints the
//! same summary, byte for byte, in any process on any machine, so a
//! surprising figure can be replayed and studied. It needs no privilege
//! and no network.

use std::process::ExitCode;

use crate::sim::{Scenario, SimSwarm};

/// Arguments of `clubcast simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The conditions: clean, loss5, loss2_jitter40, slow_third_1mbit,
    /// clocks_30s or outage_1s.
    #[arg(long, default_value = "clean")]
    scenario: String,
    /// The seed every random choice follows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Viewer peers.
    #[arg(long, default_value_t = 24)]
    peers: usize,
    /// Simulated seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// The synthetic stream's rate, kbit/s.
    #[arg(long, default_value_t = 2000)]
    bitrate_kbps: u64,
}

/// Runs the swarm and prints its summary as one JSON line.
pub fn run(args: &Args) -> Result<ExitCode, String> {
    let scenario = Scenario::from_name(&args.scenario).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        format!(
            "unknown --scenario {:?}: one of {}",
            args.scenario,
            names.join(", ")
        )
    })?;
    if !(args.duration > 0.0 && args.duration <= 3_600.0) {
        return Err(format!(
            "--duration {} must be above 0 and at most 3600 s",
            args.duration
        ));
    }
    let (_, summary) = SimSwarm::run_scenario(
        scenario,
        args.seed,
        args.peers,
        args.duration,
        args.bitrate_kbps.saturating_mul(1000),
    );
    println!("{}", summary.to_json());
    Ok(ExitCode::SUCCESS)
}
