//! The swarm on an impaired network of real processes, one JSON line per
//! scenario.
//!
//! Run through `scripts/bench-network.sh` (root: it builds network
//! namespaces). Each scenario of [`Scenario::ALL`] (or those named on the
//! command line) runs a tracker, a source and `--peers` peers, each peer in
//! a namespace of its own whose uplink, clock and link suffer what the
//! scenario gives it, for `--duration` seconds at `--kbps`; the line holds
//! the figures read from the peers' metrics (see `RigSummary`). With
//! `--relay` a relay on AF_XDP joins each scenario on a clean uplink, and
//! the line adds what its data plane forwarded.

use std::path::PathBuf;
use std::process::ExitCode;

use clubcast::sim::Scenario;
use clubcast::swarm::netbench::{self, NetBenchConfig};

fn main() -> ExitCode {
    let mut peers = 24;
    let mut duration_s = 60;
    let mut kbps = 2000;
    let mut names = Vec::new();
    let mut relay = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Option<u64> {
            let v = args.next().and_then(|v| v.parse().ok());
            if v.is_none() {
                eprintln!("bench_network: {what} needs a number");
            }
            v
        };
        match a.as_str() {
            "--peers" => match num("--peers") {
                Some(v) => peers = v as usize,
                None => return ExitCode::from(2),
            },
            "--duration" => match num("--duration") {
                Some(v) => duration_s = v,
                None => return ExitCode::from(2),
            },
            "--kbps" => match num("--kbps") {
                Some(v) => kbps = v,
                None => return ExitCode::from(2),
            },
            "--relay" => relay = true,
            name => match Scenario::from_name(name) {
                Some(s) => names.push(s),
                None => {
                    let all: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    eprintln!("bench_network: unknown scenario {name}; one of {all:?}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    if names.is_empty() {
        names = Scenario::ALL.to_vec();
    }
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/clubcast");
    let mut failed = false;
    for (k, scenario) in names.into_iter().enumerate() {
        let dir = std::env::temp_dir().join(format!(
            "clubcast-netbench-{}-{}",
            std::process::id(),
            scenario.name()
        ));
        let cfg = NetBenchConfig {
            scenario,
            peers,
            duration_s,
            kbps,
            binary: binary.clone(),
            dir: dir.clone(),
            seed: k as u64 + 1,
            relay,
        };
        match netbench::run(&cfg) {
            Ok(s) => println!("{}", s.to_json()),
            Err(e) => {
                eprintln!(
                    "bench_network: {}: {e} (logs in {})",
                    scenario.name(),
                    dir.display()
                );
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
