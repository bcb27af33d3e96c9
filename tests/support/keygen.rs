//! A stream key for the tests that run the roles as processes: `clubcast
//! keygen` writes it, and its stream id is read from what keygen prints.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Writes a fresh key to `path` (replacing one left by an earlier run)
/// with the `clubcast` binary `bin`; returns the key path as text and the
/// stream id (64 hex digits).
pub fn keygen(bin: &str, path: &Path) -> (String, String) {
    let _ = std::fs::remove_file(path);
    let out = Command::new(bin)
        .args(["keygen", "--out"])
        .arg(path)
        .output()
        .expect("keygen");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let sid = text
        .split_whitespace()
        .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("a stream id in keygen's output:\n{text}"))
        .to_string();
    let key = path.to_str().expect("a UTF-8 path").to_string();
    (key, sid)
}
