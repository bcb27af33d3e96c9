//! `clubcast keygen`: write a new source key and print its stream id.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::auth::SourceKey;

/// Arguments of `clubcast keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// File to create for the secret key (mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Creates the key file and prints the stream id on stdout.
pub fn run(args: &Args) -> Result<ExitCode, String> {
    let key = SourceKey::generate().map_err(|e| e.to_string())?;
    key.write_new(&args.out).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote source key to {} (keep it secret); its stream id, for peers:",
        args.out.display()
    );
    println!("{}", key.stream_id());
    Ok(ExitCode::SUCCESS)
}
