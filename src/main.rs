//! The `clubcast` command: see `clubcast --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    clubcast::cli::main()
}
