//! SIGTERM: every role leaves cleanly and exits within 2 s. A tracker, a
//! source fed a test pattern by ffmpeg (MPEG-TS on its standard input), a
//! relay on kernel UDP and four peers run as processes on loopback. Peer 0 serves a player at `/stream`; a SIGTERM to it ends the
//! player's response whole (the last chunk is written) and the process
//! exits with success within 2 s. Then the relay goes the same way. The
//! three peers left must keep playing unchanged: no block skipped since
//! the departures, so their continuity does not fall. Last, a peer, the source and the
//! tracker each exit within 2 s of their SIGTERM.

#[path = "support/keygen.rs"]
mod keygen;
#[path = "support/process.rs"]
mod process;

use process::{free_port, Kid};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");

impl Kid {
    /// Sends SIGTERM; returns how long the process took to exit, and
    /// whether it exited with success.
    fn term(&mut self) -> (Duration, bool) {
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM");
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                eprintln!(
                    "pid {}: exited {:?} after SIGTERM",
                    self.0.id(),
                    sent.elapsed()
                );
                return (sent.elapsed(), status.success());
            }
            if sent.elapsed() > Duration::from_secs(10) {
                return (sent.elapsed(), false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn spawn(args: &[&str]) -> Kid {
    Kid(Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clubcast"))
}

/// A metric's value in the file a peer writes with `--metrics-file`.
fn metric(file: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn every_role_leaves_within_two_seconds_of_sigterm() {
    let dir = std::env::temp_dir().join(format!("clubcast-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (key, sid) = keygen::keygen(BIN, &dir.join("source.key"));
    let tracker = format!("127.0.0.1:{}", free_port());
    let mut t = spawn(&["tracker", "--listen", &tracker, "--stream-id", &sid]);
    // A test pattern as MPEG-TS on the source's standard input.
    let mut ffmpeg = Kid(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc=size=320x240:rate=25", "-f", "lavfi"])
        .args(["-i", "sine=frequency=440", "-t", "60", "-c:v", "libx264"])
        .args([
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-b:v",
            "800k",
            "-c:a",
            "aac",
        ])
        .args(["-f", "mpegts", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts"));
    let feed = ffmpeg.0.stdout.take().expect("piped");
    let mut s = Kid(Command::new(BIN)
        .args(["source", "--key", &key, "--tracker", &tracker])
        .args(["--listen", "127.0.0.1:0", "--stdin"])
        .stdin(Stdio::from(feed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the source"));
    let mut relay = spawn(&[
        "relay",
        "--stream-id",
        &sid,
        "--tracker",
        &tracker,
        "--listen",
        "127.0.0.1:0",
        "--io",
        "udp",
    ]);
    let http = free_port();
    let files: Vec<PathBuf> = (0..4).map(|i| dir.join(format!("peer{i}.prom"))).collect();
    let mut peers: Vec<Kid> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let file = file.to_str().expect("UTF-8 path");
            let mut args = vec![
                "peer",
                "--stream-id",
                &sid,
                "--tracker",
                &tracker,
                "--listen",
                "127.0.0.1:0",
                "--metrics-file",
                file,
            ];
            let addr = format!("127.0.0.1:{http}");
            if i == 0 {
                args.extend(["--http", &addr]);
            }
            spawn(&args)
        })
        .collect();
    // Wait until every peer plays, and a player is connected to peer 0.
    let deadline = Instant::now() + Duration::from_secs(20);
    while files
        .iter()
        .any(|f| metric(f, "clubcast_peer_played_on_time_total").unwrap_or(0.0) < 200.0)
    {
        assert!(Instant::now() < deadline, "the peers never played");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut player = TcpStream::connect(("127.0.0.1", http)).expect("the player connects");
    player
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    player
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = [0u8; 512];
    let n = player.read(&mut head).expect("the response begins");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    std::thread::sleep(Duration::from_secs(2));
    let skipped_before: Vec<f64> = files[1..]
        .iter()
        .map(|f| metric(f, "clubcast_peer_skipped_total").unwrap_or(f64::NAN))
        .collect();
    let continuity_before: Vec<f64> = files[1..]
        .iter()
        .map(|f| metric(f, "clubcast_peer_continuity").unwrap_or(0.0))
        .collect();

    // Peer 0 with its player, then the relay.
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = player.read_to_end(&mut rest);
        rest
    });
    let (took, ok) = peers[0].term();
    assert!(ok, "peer 0 exited with failure");
    assert!(took < Duration::from_secs(2), "peer 0 took {took:?}");
    let rest = reader.join().expect("reader");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "the player's stream did not end whole ({} bytes after the head)",
        rest.len()
    );
    let (took, ok) = relay.term();
    assert!(
        ok && took < Duration::from_secs(2),
        "the relay took {took:?} (ok {ok})"
    );

    // The others play on.
    std::thread::sleep(Duration::from_secs(5));
    for (i, f) in files.iter().enumerate().skip(1) {
        let c = metric(f, "clubcast_peer_continuity").unwrap_or(0.0);
        let skipped = metric(f, "clubcast_peer_skipped_total").unwrap_or(f64::NAN);
        eprintln!(
            "peer {i}: continuity {:.4} before the departures, {c:.4} after; skipped {} before, {skipped} after",
            continuity_before[i - 1],
            skipped_before[i - 1]
        );
        // Unchanged: not one block more skipped, so continuity cannot
        // fall (a start-up on a loaded machine may have cost a block or
        // two before).
        assert!(
            c >= continuity_before[i - 1],
            "peer {i}: continuity fell to {c}"
        );
        assert_eq!(
            skipped,
            skipped_before[i - 1],
            "peer {i} skipped blocks after the departures"
        );
    }
    for (who, kid) in [
        ("peer 1", &mut peers[1]),
        ("source", &mut s),
        ("tracker", &mut t),
    ] {
        let (took, ok) = kid.term();
        assert!(ok, "{who} exited with failure");
        assert!(took < Duration::from_secs(2), "{who} took {took:?}");
    }
    drop(ffmpeg);
    let _ = std::fs::remove_dir_all(&dir);
}
