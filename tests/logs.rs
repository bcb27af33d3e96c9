//! Log lines: `tracing` events on standard error, readable by default and
//! one JSON object per line with `--log-format json`. A relay told to use
//! an interface that does not exist falls back to kernel UDP and says so.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");

/// What the relay wrote to standard error in `format`.
fn relay_stderr(format: &str) -> String {
    let sid = "00".repeat(32);
    let out = Command::new(BIN)
        .args(["relay", "--stream-id", &sid, "--tracker", "127.0.0.1:9"])
        .args(["--listen", "127.0.0.1:0", "--interface", "nosuch0"])
        .args(["--duration", "1", "--log-format", format])
        .stdin(Stdio::null())
        .output()
        .expect("the relay runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn events_are_logged_as_text_or_json() {
    let human = relay_stderr("human");
    let line = human
        .lines()
        .find(|l| l.contains("falls back to kernel UDP"))
        .unwrap_or_else(|| panic!("no fallback line in:\n{human}"));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no colour when not on a terminal: {line:?}"
    );
    let json = relay_stderr("json");
    let line = json
        .lines()
        .find(|l| l.contains("falls back to kernel UDP"))
        .unwrap_or_else(|| panic!("no fallback line in:\n{json}"));
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    for key in [
        "\"timestamp\":",
        "\"level\":\"WARN\"",
        "\"fields\":{\"message\":",
    ] {
        assert!(line.contains(key), "no {key} in {line}");
    }
    // Every line is an object: nothing else reaches standard error.
    assert!(json.lines().all(|l| l.starts_with('{')), "{json}");
}
