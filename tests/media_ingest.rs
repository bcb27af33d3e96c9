//! The source's ingests as a user meets them, `clubcast source` run as a
//! process. Bad input at the RTMP port (garbage, a handshake that never
//! finishes, a push in a codec the stream cannot carry) ends that
//! connection with a log line that says why, and the source stays up and
//! takes a proper push afterwards. Malformed MPEG-TS over UDP is skipped
//! and counted. MPEG-TS piped into `--stdin` becomes blocks. Debian's
//! ffmpeg makes the pushes and the piped stream (without it: a failure
//! under `CI=true`, else `SKIPPED`).

#[path = "support/process.rs"]
mod process;

use process::Kid;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");

fn have_ffmpeg(test: &str) -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: ffmpeg is needed (scripts/install-deps.sh installs it); CI=true, so this is a failure");
    }
    if !ok {
        eprintln!("SKIPPED {test}: ffmpeg is not installed");
    }
    ok
}

/// Lines of a child's stream, as they come.
fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits up to `secs` for a line containing `want`; returns it.
fn wait_for(rx: &Receiver<String>, want: &str, secs: u64, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(want) {
                    return line;
                }
            }
            Err(_) => panic!(
                "no line with {want:?} within {secs} s; saw:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// The stream key the tests' sources take.
const KEY: &str = "s3cret-key";

/// Runs ffmpeg pushing `seconds` of test pattern with video codec `vcodec`
/// to `addr` with the stream key `key`.
fn push_with(addr: &str, key: &str, vcodec: &str, seconds: u32) -> std::process::ExitStatus {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "quiet", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"])
        .args([
            "-t",
            &seconds.to_string(),
            "-c:v",
            vcodec,
            "-an",
            "-g",
            "10",
        ])
        .args(["-f", "flv", &format!("rtmp://{addr}/live/{key}")])
        .stdin(Stdio::null())
        .status()
        .expect("run ffmpeg")
}

/// [`push_with`] the right key.
fn push(addr: &str, vcodec: &str, seconds: u32) -> std::process::ExitStatus {
    push_with(addr, KEY, vcodec, seconds)
}

/// A running `clubcast source` and its temporary directory.
struct Source {
    kid: Kid,
    dir: PathBuf,
}

impl Source {
    /// Makes a key in a fresh temporary directory named after `tag` and
    /// starts the source on it with the `feed` flags, standard input from
    /// `stdin`. Returns it with the lines of its stdout and stderr.
    fn start(
        tag: &str,
        feed: &[&str],
        stdin: Stdio,
    ) -> (Source, Receiver<String>, Receiver<String>) {
        let dir = std::env::temp_dir().join(format!("clubcast-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = dir.join("source.key");
        assert!(Command::new(BIN)
            .args(["keygen", "--out"])
            .arg(&key)
            .output()
            .expect("keygen")
            .status
            .success());
        let mut kid = Kid(Command::new(BIN)
            .args(["source", "--key"])
            .arg(&key)
            .args(["--tracker", "127.0.0.1:9", "--listen", "127.0.0.1:0"])
            .args(feed)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clubcast source"));
        let out = lines(kid.0.stdout.take().expect("stdout"));
        let err = lines(kid.0.stderr.take().expect("stderr"));
        (Source { kid, dir }, out, err)
    }

    /// True while the process runs.
    fn alive(&mut self) -> bool {
        self.kid.0.try_wait().expect("poll").is_none()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The number after `key ` in a status line (0 if none).
fn field(line: &str, key: &str) -> u64 {
    line.split(&format!("{key} "))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A source taking RTMP with the stream key [`KEY`] for `seconds`: the
/// source, its stdout and stderr lines, the address it listens on, and
/// the stdout lines read so far.
fn rtmp_source(
    tag: &str,
    seconds: &str,
) -> (
    Source,
    Receiver<String>,
    Receiver<String>,
    String,
    Vec<String>,
) {
    let (source, out, err) = Source::start(
        tag,
        &[
            "--rtmp-listen",
            "127.0.0.1:0",
            "--stream-key",
            KEY,
            "--duration",
            seconds,
        ],
        Stdio::null(),
    );
    let mut seen = Vec::new();
    let listening = wait_for(&out, "rtmp: listening on", 10, &mut seen);
    let addr = listening
        .split_whitespace()
        .nth(3)
        .expect("an address")
        .to_string();
    (source, out, err, addr, seen)
}

#[test]
fn bad_rtmp_clients_are_cut_off_and_the_source_stays_up() {
    if !have_ffmpeg("bad_rtmp_clients_are_cut_off_and_the_source_stays_up") {
        return;
    }
    let (mut source, out, err, addr, mut seen_out) = rtmp_source("rtmp-bad", "30");
    let (out, err) = (&out, &err);
    let mut seen_err = Vec::new();

    // Garbage instead of a handshake.
    let mut c = TcpStream::connect(&addr).expect("connect");
    c.write_all(&[0xAB; 200]).expect("write");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    let line = wait_for(err, "disconnected", 5, &mut seen_err);
    assert!(line.contains("handshake failed"), "{line}");

    // A handshake that never finishes: C0 and a part of C1.
    let started = Instant::now();
    let mut c = TcpStream::connect(&addr).expect("connect");
    c.write_all(&[3]).expect("write");
    c.write_all(&[0; 100]).expect("write");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = c.read_to_end(&mut sink);
    let line = wait_for(err, "disconnected", 10, &mut seen_err);
    assert!(line.contains("handshake not completed"), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "cut off in time"
    );

    // Sorenson H.263 (FLV codec id 2): the stream carries only H.264.
    push(&addr, "flv1", 3);
    let line = wait_for(err, "disconnected", 10, &mut seen_err);
    assert!(line.contains("unsupported video codec id 2"), "{line}");

    // The source is still up and takes a proper push.
    assert!(source.alive(), "the source died");
    let status = push(&addr, "libx264", 3);
    assert!(status.success(), "a good push failed: {status}");
    wait_for(out, "rtmp: publisher started", 5, &mut seen_out);
    // Its media gets in: the status line's ingest bytes grow past 10 kB.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bytes = 0u64;
    while bytes <= 10_000 && Instant::now() < deadline {
        let line = wait_for(out, "ingest sessions", 10, &mut seen_out);
        bytes = field(&line, " bytes");
    }
    assert!(
        bytes > 10_000,
        "ingest took {bytes} bytes:\n{}",
        seen_out.join("\n")
    );
    assert!(source.alive(), "the source died");
}

/// Publishing is authenticated and the listener cannot be exhausted: a push
/// with the wrong stream key is refused with a reason; 4,000 idle
/// connections from 4,000 addresses cost the source less than 50 MiB and
/// no thread (the listener holds as many as its cap and closes the rest
/// at once, counted), and meanwhile the real publisher gets in; a second
/// publisher cannot take over.
#[test]
fn only_the_stream_key_publishes_and_idle_connections_cost_little() {
    if !have_ffmpeg("only_the_stream_key_publishes_and_idle_connections_cost_little") {
        return;
    }
    let (mut source, out, err, addr, mut seen_out) = rtmp_source("rtmp-key", "40");
    let (out, err) = (&out, &err);
    let mut seen_err = Vec::new();
    let pid = source.kid.0.id();
    let rss = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };

    // The wrong key: refused, with the reason.
    let status = push_with(&addr, "guess", "libx264", 2);
    let line = wait_for(err, "disconnected", 10, &mut seen_err);
    assert!(line.contains("wrong stream key"), "{line}");
    let _ = status;

    // 4,000 idle connections, each from its own address.
    let threads = || std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    let (before, threads_before) = (rss(), threads());
    let target: std::net::SocketAddr = addr.parse().expect("address");
    let mut idle = Vec::new();
    for i in 0..4_000u32 {
        let ip = [127, 1, (i / 250) as u8, (i % 250 + 1) as u8];
        if let Some(c) = connect_from(ip, target) {
            idle.push(c);
        }
    }
    assert!(idle.len() >= 3_900, "only {} connected", idle.len());
    thread::sleep(Duration::from_millis(500));
    let grown_kib = rss().saturating_sub(before);
    let grown_threads = threads().saturating_sub(threads_before);
    assert!(
        grown_kib < 50 * 1024,
        "4,000 idle connections cost {grown_kib} KiB"
    );
    assert_eq!(grown_threads, 0, "idle connections took threads");
    // The real publisher gets in meanwhile.
    let publisher = thread::spawn({
        let addr = addr.clone();
        move || push(&addr, "libx264", 6)
    });
    wait_for(out, "rtmp: publisher started", 10, &mut seen_out);
    // A second publisher, even with the key, cannot take over.
    push(&addr, "libx264", 2);
    let line = wait_for(err, "another publisher is live", 10, &mut seen_err);
    assert!(line.contains("refused"), "{line}");
    assert!(publisher.join().expect("publisher").success());
    // The status lines count what was refused (the newest one says most).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    while field(&line, "rtmp-publishers-refused") < 2 && Instant::now() < deadline {
        line = wait_for(out, "rtmp-connections-refused", 10, &mut seen_out);
    }
    let closed =
        field(&line, "rtmp-connections-refused") + field(&line, "rtmp-connections-evicted");
    assert!(closed >= 3_700, "{line}");
    assert!(field(&line, "rtmp-publishers-refused") >= 2, "{line}");
    println!(
        "4,000 idle RTMP connections: source RSS grew {grown_kib} KiB, threads grew {grown_threads}"
    );
    drop(idle);
    assert!(source.alive(), "the source died");
}

/// A TCP connection to `to` from `ip` (port chosen by the kernel).
fn connect_from(ip: [u8; 4], to: std::net::SocketAddr) -> Option<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(ip[0], ip[1], ip[2], ip[3], 0),
    )
    .ok()?;
    let std::net::SocketAddr::V4(to) = to else {
        return None;
    };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to)).ok()?;
    Some(TcpStream::from(fd))
}

/// MPEG-TS over UDP: garbage is skipped to the next sync byte and counted,
/// a packet flagged with a transport error is dropped and counted, and the
/// source stays up. Needs no ffmpeg.
#[test]
fn malformed_mpeg_ts_is_skipped_and_counted() {
    let (mut source, out, _err) = Source::start(
        "ts-bad",
        &["--udp-ts-listen", "127.0.0.1:0", "--duration", "15"],
        Stdio::null(),
    );
    let out = &out;
    let mut seen = Vec::new();
    let listening = wait_for(out, "mpeg-ts: listening on udp://", 10, &mut seen);
    let addr = listening
        .rsplit("udp://")
        .next()
        .expect("an address")
        .to_string();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    // 100 bytes with no sync byte, then a packet with the transport error
    // flag set.
    socket.send_to(&[0x11; 100], &addr).expect("send");
    let mut bad = [0xFFu8; 188];
    bad[0] = 0x47;
    bad[1] = 0x80;
    socket.send_to(&bad, &addr).expect("send");
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut skipped, mut malformed) = (0, 0);
    while (skipped < 100 || malformed < 1) && Instant::now() < deadline {
        let line = wait_for(out, "ingest sessions", 5, &mut seen);
        skipped = field(&line, "ts-skipped-bytes");
        malformed = field(&line, "ts-malformed");
    }
    assert_eq!((skipped, malformed), (100, 1), "{}", seen.join("\n"));
    assert!(source.alive(), "the source died");
}

/// MPEG-TS piped into `clubcast source --stdin` becomes signed blocks.
#[test]
fn mpeg_ts_on_stdin_becomes_blocks() {
    if !have_ffmpeg("mpeg_ts_on_stdin_becomes_blocks") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("clubcast-ts-feed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ts = dir.join("feed.ts");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25",
            "-t",
            "4",
        ])
        .args([
            "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-f", "mpegts",
        ])
        .arg(&ts)
        .status()
        .expect("run ffmpeg");
    assert!(made.success());
    let feed = std::fs::File::open(&ts).expect("the TS file");
    let fed = std::fs::metadata(&ts).expect("size").len();
    let (mut source, out, _err) =
        Source::start("ts-stdin", &["--stdin", "--duration", "4"], feed.into());
    let out = &out;
    let mut seen = Vec::new();
    let line = wait_for(out, "t=2s", 10, &mut seen);
    let number = |key: &str| field(&line, key);
    assert_eq!(number("bytes"), fed, "every byte of the pipe taken: {line}");
    assert!(
        number("blocks") * 900 >= fed * 9 / 10,
        "blocks for the stream: {line}"
    );
    assert_eq!(number("ts-malformed"), 0, "{line}");
    let _ = source.kid.0.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
