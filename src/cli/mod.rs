//! The `clubcast` command line: one binary, one subcommand per role or tool.
//!
//! Each subcommand lives in its own file and returns an `ExitCode`; errors
//! are printed as one line a user can act on.

mod config;
mod demo;
mod demo_media;
mod keygen;
mod relay;
mod relay_check;
mod roles;
mod selfcheck;
mod simulate;

use std::process::ExitCode;

pub use demo_media::push_testsrc;

use clap::{Parser, Subcommand};

/// Peer-to-peer live streaming over the club protocol.
#[derive(Debug, Parser)]
#[command(name = "clubcast", version, about, long_about = None, args_override_self = true)]
struct Cli {
    /// Read flags from this TOML file first (keys are flag names; flags
    /// on the command line win). `packaging/config/` has one per role.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Log lines as readable text or as JSON objects (standard error).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole swarm in one process: tracker, source (synthetic feed,
    /// or real media over RTMP or MPEG-TS with players on HTTP), peers and
    /// optionally a relay (AF_XDP in a network namespace as root); print
    /// progress and a summary.
    Demo(demo::Args),
    /// Create a source key and print its stream id.
    Keygen(keygen::Args),
    /// Run the tracker: the swarm's peer list and club recommendations.
    Tracker(roles::TrackerArgs),
    /// Run the source: take a live feed (RTMP push, MPEG-TS over UDP or
    /// stdin), cut it into signed blocks and send them into the clubs.
    Source(roles::SourceArgs),
    /// Run a viewer peer: join two clubs, relay their blocks, play the
    /// stream (to players over HTTP with --http).
    Peer(roles::PeerArgs),
    /// Run a super-peer relay: serve many clubs and many peers per club,
    /// with BLOCKs on AF_XDP (or the kernel socket).
    Relay(relay::RelayArgs),
    /// Sign a synthetic feed with a source key, send it through the wire
    /// format and the verifier, tamper with it, and report.
    Selfcheck(selfcheck::Args),
    /// Run a swarm in the deterministic simulator under a named impairment
    /// scenario; the same seed prints the same summary anywhere.
    Simulate(simulate::Args),
}

/// Parses the arguments and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(message) => {
            eprintln!("clubcast: {message}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(argv);
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Tracker(args) => roles::run_tracker(&args),
        Command::Source(args) => roles::run_source(&args),
        Command::Peer(args) => roles::run_peer(&args),
        Command::Relay(args) => relay::run(&args),
        Command::Selfcheck(args) => selfcheck::run(&args),
        Command::Simulate(args) => simulate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One readable line per event: time, level, message and fields.
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Sends the `tracing` events of every role to standard error in
/// `format`. The roles log events (a fallback, a tracker gone silent, a
/// missing club, a refused publisher), never per datagram; the status
/// line each second stays on standard output.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
