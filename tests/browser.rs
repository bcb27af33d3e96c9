//! Viewers in a real browser, and HLS read by ffmpeg: `clubcast demo`
//! streams a test pattern (over RTMP, or as MPEG-TS over UDP) to three
//! peers and a fourth that joins 10 s late. Headless Chromium (through
//! playwright-core, `tests/browser/play.js`) opens the page of the first
//! peer and, once it joins, of the late one: each page's video must
//! advance by at least 10 s of media with no media error and no page
//! error. Meanwhile `ffprobe` must find H.264 and AAC in the second peer's
//! `/live.m3u8`, and `ffmpeg -v error` must read 20 s of it without a
//! word.
//!
//! `scripts/browser-deps.sh` installs Chromium, Node.js and
//! playwright-core when missing. If it cannot, the test fails under
//! `CI=true` and is skipped (with the reason printed) elsewhere. The two
//! feeds run one after the other: each takes both cores' worth of ffmpeg,
//! peers and browser.

#[path = "support/process.rs"]
mod process;

use process::Kid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");

/// One feed at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// playwright-core's node_modules, installed if need be; `None` (after
/// saying why) when it cannot be had outside CI.
fn browser_deps() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/browser-deps.sh"))
        .stdin(Stdio::null())
        .output();
    let why = match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            if let Some(dir) = text.lines().last() {
                return Some(PathBuf::from(dir.trim()));
            }
            "scripts/browser-deps.sh printed nothing".to_string()
        }
        Ok(o) => format!(
            "scripts/browser-deps.sh failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("cannot run bash: {e}"),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the browser test needs Chromium and playwright-core: {why}");
    }
    eprintln!("SKIPPED browser test: {why}");
    None
}

/// A free TCP port with three more after it, as far as a bind can tell.
fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let base = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if base == 0 || base > u16::MAX - n {
            continue;
        }
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} free ports in a row");
}

/// What `play.js` said of one page.
#[derive(Debug)]
struct PageRun {
    line: String,
    advanced_s: f64,
    clean: bool,
}

/// Watches `url` in Chromium for `seconds` on a thread of its own.
fn watch(modules: &Path, url: String, seconds: u64) -> thread::JoinHandle<PageRun> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play.js");
    let modules = modules.to_path_buf();
    thread::spawn(move || {
        let out = Command::new("node")
            .arg(&script)
            .arg(seconds.to_string())
            .arg(&url)
            .env("NODE_PATH", &modules)
            .stdin(Stdio::null())
            .output()
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let line = stdout
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "play.js printed no result for {url}: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_string();
        let advanced_s = line
            .split("\"advanced_s\":")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let clean = line.contains("\"media_error\":null") && line.contains("\"page_errors\":[]");
        PageRun {
            line,
            advanced_s,
            clean,
        }
    })
}

/// The body of `GET path` from 127.0.0.1:`port`, if it answers 200.
fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Reads 20 s of peer `port`'s HLS with ffmpeg, once its playlist lists
/// three segments (where a live player starts), and probes it: returns
/// what ffmpeg printed at level `error` and the codecs ffprobe found.
fn read_hls(port: u16) -> thread::JoinHandle<(String, String)> {
    thread::spawn(move || {
        for _ in 0..60 {
            if get(port, "/live.m3u8").is_some_and(|p| p.matches("#EXTINF").count() >= 3) {
                break;
            }
            thread::sleep(Duration::from_millis(500));
        }
        let playlist = format!("http://127.0.0.1:{port}/live.m3u8");
        let read = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i", &playlist])
            .args(["-t", "20", "-f", "null", "-"])
            .output()
            .expect("ffmpeg runs");
        let mut errors = String::from_utf8_lossy(&read.stderr).to_string();
        if !read.status.success() {
            errors.push_str(&format!("ffmpeg exited with {}", read.status));
        }
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=codec_name"])
            .args(["-of", "csv=p=0", &playlist])
            .output()
            .expect("ffprobe runs");
        (errors, String::from_utf8_lossy(&probe.stdout).to_string())
    })
}

fn plays_in_the_browser(udp_ts: bool) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let modules = browser_deps();
    let base = free_ports(4);
    let mut args = vec![
        "demo".to_string(),
        "--media".into(),
        "testsrc".into(),
        "--peers".into(),
        "3".into(),
        "--late-peers".into(),
        "1".into(),
        "--late-after".into(),
        "10".into(),
        "--duration".into(),
        "50".into(),
        "--http-base-port".into(),
        base.to_string(),
    ];
    if udp_ts {
        args.extend(["--udp-ts-listen".into(), "127.0.0.1:0".into()]);
    }
    let mut demo = Kid(Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts"));
    let (tx, lines) = mpsc::channel();
    let stdout = demo.0.stdout.take().expect("piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut log = Vec::new();
    let mut wait_for = |want: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the demo never printed {want:?}:\n{}", log.join("\n")));
            log.push(line.clone());
            if line.contains(want) {
                return line;
            }
        }
    };
    wait_for("players: ");
    let early = modules
        .as_ref()
        .map(|m| watch(m, format!("http://127.0.0.1:{base}/"), 35));
    let hls = read_hls(base + 1);
    let late_line = wait_for("late peer 0 joined");
    let late_url = late_line
        .split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/stream"))
        .map(|host| format!("http://{host}/"))
        .expect("the late peer's address");
    let late = modules.as_ref().map(|m| watch(m, late_url, 30));
    let (errors, codecs) = hls.join().expect("ffmpeg thread");
    let feed = if udp_ts { "MPEG-TS" } else { "RTMP" };
    assert!(
        errors.trim().is_empty(),
        "{feed}: ffmpeg read the HLS with errors:\n{errors}"
    );
    let codecs: Vec<&str> = codecs.lines().map(str::trim).collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "{feed}: ffprobe found {codecs:?}"
    );
    for (who, page) in [("first peer", early), ("late peer", late)] {
        let Some(page) = page else {
            continue;
        };
        let r = page.join().expect("browser thread");
        eprintln!("{feed} {who}: {}", r.line);
        assert!(r.clean, "{feed} {who}: {}", r.line);
        assert!(r.advanced_s >= 10.0, "{feed} {who}: {}", r.line);
    }
}

#[test]
fn an_rtmp_feed_plays_in_the_browser_for_early_and_late_viewers() {
    plays_in_the_browser(false);
}

#[test]
fn an_mpeg_ts_feed_plays_in_the_browser_for_early_and_late_viewers() {
    plays_in_the_browser(true);
}
