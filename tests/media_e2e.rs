//! Real media end to end, with Debian's ffmpeg as streamer and player.
//!
//! `clubcast demo` runs a tracker, a source and 20 peers on loopback, with
//! one more peer joining 10 s late; ffmpeg pushes a 30 s H.264/AAC test
//! pattern (320x240, 25 fps, one key frame a second) into the source, over
//! RTMP in one test and as MPEG-TS over UDP in the other. A player records
//! every peer's `/stream` from the moment the peer serves it. Then, for every
//! recording: `ffmpeg -v error -i FILE -f null -` prints nothing, and
//! ffprobe counts at least 97% of the video frames the peer should have
//! played (all 750 for the early peers; for the late one, those from its
//! first frame on). The late peer's output begins with a key frame, within
//! 3 s of its joining. The demo's glass-to-glass figures (ingest to HTTP
//! output) are printed. A feed that stops and comes back (over RTMP, and
//! as MPEG-TS) plays on at every peer, cleanly decoded, and an MPEG-TS
//! recording's continuity counters never break across the restart.
//!
//! Needs ffmpeg and ffprobe: without them the tests fail under `CI=true`
//! and otherwise print `SKIPPED` and return. They run one at a time (each
//! keeps both cores busy) on ports derived from the process id.

#[path = "support/process.rs"]
mod process;

use process::Kid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clubcast::cli::push_testsrc;

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");
const PEERS: usize = 20;
const PUSH_SECONDS: u64 = 30;
const FPS: u64 = 25;
const DEMO_SECONDS: u64 = 40;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// True if ffmpeg and ffprobe run; under `CI=true` their absence fails.
fn have_ffmpeg(test: &str) -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: ffmpeg and ffprobe are needed (scripts/install-deps.sh installs them); CI=true, so this is a failure");
    }
    eprintln!("SKIPPED {test}: ffmpeg or ffprobe is not installed");
    false
}

/// What one player recorded.
#[derive(Debug)]
struct Recording {
    file: PathBuf,
    content_type: String,
    bytes: usize,
    connected: Instant,
    first_byte: Option<Instant>,
}

/// Records `http://127.0.0.1:port/stream` into `file` until the stream
/// ends; a plain HTTP/1.1 client that takes chunked or closed-delimited
/// bodies.
fn record(port: u16, file: PathBuf) -> Result<Recording, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    };
    let connected = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("{addr}: {}", line.trim()));
    }
    let first_byte = Some(Instant::now());
    let (mut content_type, mut chunked) = (String::new(), false);
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-type:") {
            content_type = v.trim().to_string();
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                break;
            }
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            if r.read_exact(&mut body[at..]).is_err() {
                body.truncate(at);
                break;
            }
            line.clear();
            let _ = r.read_line(&mut line);
        }
    } else {
        let _ = r.read_to_end(&mut body);
    }
    std::fs::write(&file, &body).map_err(|e| e.to_string())?;
    Ok(Recording {
        file,
        content_type,
        bytes: body.len(),
        connected,
        first_byte,
    })
}

/// ffprobe's video frame count of `file`.
fn frames(file: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    // MPEG-TS lists the stream under its programme too: take the first.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// (key frame?, pts seconds) of the first video frame of `file`.
fn first_frame(file: &Path) -> (bool, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
        ])
        .args([
            "-show_entries",
            "frame=key_frame,pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.lines().next().unwrap_or("").split(',');
    let key = f.next() == Some("1");
    let pts = f
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(f64::NAN);
    (key, pts)
}

/// Packets of an MPEG-TS `file` whose continuity counter neither repeats
/// nor follows the last one of their PID (packets without payload aside).
fn continuity_breaks(file: &Path) -> usize {
    let bytes = std::fs::read(file).expect("read the recording");
    let mut last = [None::<u8>; 8192];
    let mut breaks = 0;
    for p in bytes.chunks_exact(188) {
        let pid = (usize::from(p[1] & 0x1F) << 8) | usize::from(p[2]);
        if p[3] & 0x10 == 0 {
            continue;
        }
        let cc = p[3] & 0x0F;
        if last[pid].is_some_and(|l| cc != l && cc != (l + 1) & 0x0F) {
            breaks += 1;
        }
        last[pid] = Some(cc);
    }
    breaks
}

/// What ffmpeg prints decoding `file` at `-v error` (empty: clean).
fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The first HTTP port of a test: below the ephemeral range (32768 up),
/// so no outgoing connection holds one, and apart for each process.
fn base_port(offset: u16) -> u16 {
    20_000 + (std::process::id() % 200) as u16 * 60 + offset
}

enum Ingest {
    Rtmp,
    UdpTs,
}

impl Ingest {
    /// The demo's flag for this feed.
    fn flag(&self) -> &'static str {
        match self {
            Ingest::Rtmp => "--rtmp-listen",
            Ingest::UdpTs => "--udp-ts-listen",
        }
    }

    /// ffmpeg pushing `seconds` of the demo's 320x240 H.264/AAC test
    /// pattern (one key frame a second) to `feed`.
    fn push(&self, feed: &str, seconds: u64) -> Child {
        let at: SocketAddr = feed.parse().expect("the feed's address");
        let (rtmp, udp) = match self {
            Ingest::Rtmp => (Some(at), None),
            Ingest::UdpTs => (None, Some(at)),
        };
        push_testsrc(rtmp, udp, seconds).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The feed's address in the demo's `media:` line.
    fn feed_in(line: &str) -> Option<String> {
        line.split_whitespace()
            .find_map(|w| {
                w.strip_prefix("rtmp://")
                    .or_else(|| w.strip_prefix("udp://"))
            })
            .and_then(|a| a.split('/').next())
            .map(str::to_string)
    }
}

/// An empty temporary folder for this process's recordings, named by `tag`.
fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clubcast-media-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts `clubcast demo` taking `ingest` on an ephemeral port, peer i
/// serving HTTP on `base` + i, with `args` besides; returns it and its
/// standard output.
fn start_demo(ingest: &Ingest, base: u16, args: &[&str]) -> (Kid, std::process::ChildStdout) {
    let mut demo = Kid(Command::new(BIN)
        .arg("demo")
        .args(args)
        .args([
            ingest.flag(),
            "127.0.0.1:0",
            "--http-base-port",
            &base.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start clubcast demo"));
    let stdout = demo.0.stdout.take().expect("demo stdout");
    (demo, stdout)
}

fn run(test: &str, ingest: Ingest, port_offset: u16) {
    if !have_ffmpeg(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = base_port(port_offset);
    let dir = fresh_dir(&port_offset.to_string());
    let (peers, duration) = (PEERS.to_string(), DEMO_SECONDS.to_string());
    let (mut demo, stdout) = start_demo(
        &ingest,
        base,
        &[
            "--peers",
            &peers,
            "--duration",
            &duration,
            "--late-peers",
            "1",
            "--late-after",
            "10",
            "--threads",
            "2",
        ],
    );
    let (lines_tx, lines) = mpsc::channel::<(Instant, String)>();
    let echo = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let mut next_line = |want: &str| -> (Instant, String) {
        loop {
            let (at, line) = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!(
                        "the demo never printed {want:?}; it printed:\n{}",
                        log.join("\n")
                    )
                });
            log.push(line.clone());
            if line.contains(want) {
                return (at, line);
            }
        }
    };
    let (_, media_line) = next_line("media: ");
    let feed = Ingest::feed_in(&media_line).expect("the feed's address");
    let players: Vec<JoinHandle<Result<Recording, String>>> = (0..PEERS)
        .map(|i| {
            let file = dir.join(format!("peer{i}"));
            let port = base + i as u16;
            thread::spawn(move || record(port, file))
        })
        .collect();
    let mut push = Kid(ingest.push(&feed, PUSH_SECONDS));
    let (joined, late_line) = next_line("late peer 0 joined");
    let late_port: u16 = late_line
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("the late peer's port");
    let late = {
        let file = dir.join("late");
        thread::spawn(move || record(late_port, file))
    };
    let pushed = push.0.wait().expect("ffmpeg push");
    assert!(pushed.success(), "ffmpeg push failed: {pushed}");
    let (_, json) = next_line("\"glass_to_glass_ms_p50\"");
    let (_, summary) = next_line("\"continuity_min\"");
    let status = demo.0.wait().expect("demo");
    assert!(status.success(), "the demo failed: {status}");
    let _ = echo.join();
    eprintln!("{test}: {json}\n{test}: {summary}");

    let mut early_first = f64::NAN;
    let mut early_frames = 0;
    for (i, p) in players.into_iter().enumerate() {
        let r = p
            .join()
            .expect("player thread")
            .unwrap_or_else(|e| panic!("peer {i}: {e}"));
        let want_type = match ingest {
            Ingest::Rtmp => "video/x-flv",
            Ingest::UdpTs => "video/mp2t",
        };
        assert_eq!(r.content_type, want_type, "peer {i}");
        let errors = decode_errors(&r.file);
        assert!(
            errors.is_empty(),
            "peer {i}: ffmpeg -v error printed:\n{errors}"
        );
        let n = frames(&r.file);
        let (key, pts) = first_frame(&r.file);
        eprintln!(
            "{test}: peer {i}: {} bytes, {n} frames, first frame key {key} at {pts:.2} s",
            r.bytes
        );
        assert!(key, "peer {i} starts with a key frame");
        assert!(
            n * 100 >= PUSH_SECONDS * FPS * 97,
            "peer {i} decoded {n} of {} frames",
            PUSH_SECONDS * FPS
        );
        if i == 0 {
            early_first = pts;
            early_frames = n;
        }
    }
    let r = late
        .join()
        .expect("late player")
        .expect("late peer's stream");
    let errors = decode_errors(&r.file);
    assert!(
        errors.is_empty(),
        "late peer: ffmpeg -v error printed:\n{errors}"
    );
    let n = frames(&r.file);
    let (key, pts) = first_frame(&r.file);
    let start = r.first_byte.expect("a first byte").duration_since(joined);
    let should = early_frames.saturating_sub(((pts - early_first) * FPS as f64).round() as u64);
    eprintln!(
        "{test}: late peer: {n} frames of {should} from its first frame (key {key} at {pts:.2} s), first byte {:.2} s after joining (player connected {:.2} s after)",
        start.as_secs_f64(),
        r.connected.duration_since(joined).as_secs_f64()
    );
    assert!(key, "the late peer starts at a key frame");
    assert!(
        start <= Duration::from_secs(3),
        "the late peer started {start:?} after joining"
    );
    assert!(
        n * 100 >= should * 97,
        "the late peer decoded {n} of {should} frames"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rtmp_push_plays_on_every_peer() {
    run("rtmp_push_plays_on_every_peer", Ingest::Rtmp, 0);
}

#[test]
fn mpeg_ts_over_udp_plays_on_every_peer() {
    run("mpeg_ts_over_udp_plays_on_every_peer", Ingest::UdpTs, 30);
}

/// Pushes `seconds` of test pattern to `feed` and waits for ffmpeg.
fn push_again(ingest: &Ingest, feed: &str, seconds: u64) {
    let status = ingest.push(feed, seconds).wait().expect("run ffmpeg");
    assert!(status.success(), "ffmpeg push failed: {status}");
}

/// Sends `request` to `port` and returns the status line.
fn status_of(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line.trim().to_string()
}

/// A publisher that stops and comes back 3 s later: the peers play on
/// without a restart, and each recording decodes cleanly with (nearly)
/// every frame of both pushes. Meanwhile a player that never reads sits on
/// peer 0 and wrong requests hit peer 2: neither disturbs anything.
fn comes_back(test: &str, ingest: Ingest, port_offset: u16) {
    if !have_ffmpeg(test) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = base_port(port_offset);
    let dir = fresh_dir(&format!("again-{port_offset}"));
    let (mut demo, stdout) = start_demo(
        &ingest,
        base,
        &["--peers", "3", "--duration", "24", "--threads", "1"],
    );
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let feed = lines
        .by_ref()
        .find_map(|l| Ingest::feed_in(&l))
        .expect("the feed's address");
    // The peers serve HTTP once the demo lists them.
    lines
        .by_ref()
        .find(|l| l.starts_with("players:"))
        .expect("the players line");
    let players: Vec<_> = (0..2u16)
        .map(|i| {
            let file = dir.join(format!("peer{i}"));
            thread::spawn(move || record(base + i, file))
        })
        .collect();
    // A player that asks and then never reads.
    let mut stalled = TcpStream::connect(("127.0.0.1", base)).expect("connect");
    stalled
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert!(status_of(base + 2, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").contains(" 404"));
    assert!(status_of(
        base + 2,
        "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .contains(" 405"));
    push_again(&ingest, &feed, 7);
    thread::sleep(Duration::from_secs(3));
    push_again(&ingest, &feed, 7);
    let rest: Vec<String> = lines.collect();
    let status = demo.0.wait().expect("demo");
    assert!(status.success(), "the demo failed: {status}");
    let summary = rest
        .iter()
        .find(|l| l.contains("\"continuity_min\""))
        .expect("summary");
    eprintln!("{test}: {summary}");
    for (i, p) in players.into_iter().enumerate() {
        let r = p
            .join()
            .expect("player")
            .unwrap_or_else(|e| panic!("peer {i}: {e}"));
        let errors = decode_errors(&r.file);
        assert!(
            errors.is_empty(),
            "peer {i}: ffmpeg -v error printed:\n{errors}"
        );
        let n = frames(&r.file);
        eprintln!("{test}: peer {i}: {n} frames of 350 over both pushes");
        assert!(n * 100 >= 350 * 97, "peer {i} decoded {n} of 350 frames");
        if matches!(ingest, Ingest::UdpTs) {
            let breaks = continuity_breaks(&r.file);
            assert_eq!(breaks, 0, "peer {i}: continuity counters broke");
        }
    }
    drop(stalled);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_rtmp_publisher_that_comes_back_plays_on() {
    comes_back(
        "an_rtmp_publisher_that_comes_back_plays_on",
        Ingest::Rtmp,
        55,
    );
}

#[test]
fn an_mpeg_ts_feed_that_comes_back_plays_on() {
    comes_back(
        "an_mpeg_ts_feed_that_comes_back_plays_on",
        Ingest::UdpTs,
        57,
    );
}
