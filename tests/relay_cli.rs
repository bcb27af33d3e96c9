//! `clubcast relay` as an operator runs it: separate processes for the
//! tracker, source, relay and peers, each in its own network namespace of
//! `scripts/netns-topology.sh` (one Ethernet segment, a bridge), the relay
//! with `--io xdp` on two queues of its link. Transmit packet steering on
//! the bridge's port towards the relay maps CPU 0 to queue 0 and CPU 1 to
//! queue 1, and the source runs on CPU 1 and the peers on CPU 0, so both
//! workers get blocks, and the same block reaches both queues (the
//! source's copy and a peer's push): each must be fanned out once. Also
//! the backend choice: `--io xdp` fails with a clear
//! error where AF_XDP cannot start, and `--io auto` falls back to kernel UDP
//! and says why.
//!
//! Needs root. Without it the tests fail under `CI=true` and otherwise
//! print `SKIPPED` and return. Namespaces get a prefix unique to this
//! process and are removed on drop, failure included; every child is ended
//! by its PID.

#[path = "support/keygen.rs"]
mod keygen;
#[path = "support/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use netns::privileged;

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");

/// The topology of `scripts/netns-topology.sh`, torn down on drop.
struct Topology {
    prefix: String,
}

impl Topology {
    /// `peers` peers, and `queues` queues on the relay's link.
    fn up(peers: usize, tag: &str, queues: usize) -> Topology {
        let prefix = format!("{tag}{}", std::process::id() % 10_000);
        let topo = Topology { prefix };
        let out = topo.script(&["up", &peers.to_string(), &topo.prefix, &queues.to_string()]);
        assert!(
            out.status.success(),
            "netns-topology.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        topo
    }

    fn script(&self, args: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/netns-topology.sh");
        Command::new("bash")
            .arg(script)
            .args(args)
            .output()
            .expect("run netns-topology.sh")
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Transmit packet steering on the bridge's port towards the relay:
    /// frames sent from CPU i leave on queue i, and so arrive on the
    /// relay's queue i.
    fn steer_relay_queues_by_cpu(&self, queues: usize) {
        let port = format!("{}-lr", self.prefix);
        for q in 0..queues {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns("lan"), "sh", "-c"])
                .arg(format!(
                    "echo {:x} > /sys/class/net/{port}/queues/tx-{q}/xps_cpus",
                    1u64 << q
                ))
                .output()
                .expect("set xps_cpus");
            assert!(
                out.status.success(),
                "xps_cpus: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts `clubcast ARGS` in namespace `name`, output to `log`.
    fn spawn(&self, name: &str, args: &[&str], log: &Path) -> Kid {
        self.spawn_on(name, None, args, log)
    }

    /// [`Topology::spawn`], on CPU `cpu` if given (taskset).
    fn spawn_on(&self, name: &str, cpu: Option<usize>, args: &[&str], log: &Path) -> Kid {
        let file = std::fs::File::create(log).expect("log file");
        let err = file.try_clone().expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(name)]);
        if let Some(cpu) = cpu {
            cmd.args(["taskset", "-c", &cpu.to_string()]);
        }
        let child = cmd
            .arg(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start clubcast in a namespace");
        Kid(Some(child))
    }

    /// Runs `clubcast ARGS` in namespace `name` to the end.
    fn run(&self, name: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(name), BIN])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run clubcast in a namespace")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = self.script(&["down", &self.prefix]);
    }
}

/// A child process, killed by its PID on drop if still running.
struct Kid(Option<Child>);

impl Kid {
    fn wait(mut self) -> bool {
        self.0
            .take()
            .and_then(|mut c| c.wait().ok())
            .is_some_and(|s| s.success())
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn logs_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clubcast-relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log directory");
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The number after `key ` in `line`.
fn field(line: &str, key: &str) -> Option<f64> {
    let rest = line.split(&format!("{key} ")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn relay_command_on_af_xdp_serves_peers_in_other_namespaces() {
    if !privileged(
        "relay_command_on_af_xdp_serves_peers_in_other_namespaces",
        "needs root for network namespaces, XDP and AF_XDP",
    ) {
        return;
    }
    // Two queues need two CPUs to steer by; with one, one queue.
    let two = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if !two && std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI machines have 2 cores; this one has fewer");
    }
    let queues = if two { 2 } else { 1 };
    let topo = Topology::up(3, "cl", queues);
    topo.steer_relay_queues_by_cpu(queues);
    let (source_cpu, peer_cpu) = if two {
        (Some(1), Some(0))
    } else {
        (None, None)
    };
    let dir = logs_dir();
    let (key, sid) = keygen::keygen(BIN, &dir.join("source.key"));
    let tracker = "10.77.0.2:7000";
    let t = topo.spawn(
        "src",
        &[
            "tracker",
            "--listen",
            tracker,
            "--stream-id",
            &sid,
            "--duration",
            "12",
        ],
        &dir.join("tracker.log"),
    );
    let relay_log = dir.join("relay.log");
    let r = topo.spawn(
        "relay",
        &[
            "relay",
            "--io",
            "xdp",
            "--listen",
            "10.77.0.1:7100",
            "--stream-id",
            &sid,
            "--tracker",
            tracker,
            "--xdp-mode",
            "drv",
            "--bind",
            "copy",
            "--queues",
            &queues.to_string(),
            "--batch",
            "64",
            "--metrics",
            "127.0.0.1:9464",
            "--duration",
            "11",
        ],
        &relay_log,
    );
    std::thread::sleep(Duration::from_millis(500));
    let s = topo.spawn_on(
        "src",
        source_cpu,
        &[
            "source",
            "--key",
            &key,
            "--tracker",
            tracker,
            "--listen",
            "10.77.0.2:7001",
            "--synthetic-kbps",
            "2000",
            "--duration",
            "10",
        ],
        &dir.join("source.log"),
    );
    let peers: Vec<Kid> = (1..=3)
        .map(|i| {
            topo.spawn_on(
                &format!("peer{i}"),
                peer_cpu,
                &[
                    "peer",
                    "--stream-id",
                    &sid,
                    "--tracker",
                    tracker,
                    "--listen",
                    &format!("10.77.0.{}:7200", 10 + i),
                    "--duration",
                    "8",
                ],
                &dir.join(format!("peer{i}.log")),
            )
        })
        .collect();
    // Scrape the relay's metrics from inside its namespace (bash /dev/tcp).
    std::thread::sleep(Duration::from_secs(6));
    let scrape = Command::new("ip")
        .args(["netns", "exec", &topo.ns("relay"), "bash", "-c"])
        .arg("exec 3<>/dev/tcp/127.0.0.1/9464; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
        .output()
        .expect("scrape the relay");
    let metrics = String::from_utf8_lossy(&scrape.stdout).to_string();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    assert!(
        metric("clubcast_relay_xdp_redirected_total") > 100.0,
        "{metrics}"
    );
    assert!(metric("clubcast_relay_subscribers") >= 3.0, "{metrics}");
    // The gate's defences are exported. Nobody attacks this swarm, so no
    // uploader's BLOCK ever lacked its tag (blocks from a connection just
    // dropped may still meet the unknown-sender check).
    assert!(
        metric("clubcast_relay_xdp_dropped_unknown_sender_total") >= 0.0,
        "{metrics}"
    );
    assert_eq!(
        metric("clubcast_relay_xdp_dropped_wrong_tag_total"),
        0.0,
        "{metrics}"
    );
    assert!(metric("clubcast_relay_uplinked_total") > 100.0, "{metrics}");
    assert!(
        metric("clubcast_relay_worker_tx_frames_total") > 100.0,
        "{metrics}"
    );
    assert!(
        metric("clubcast_relay_worker_latency_seconds_count") > 100.0,
        "{metrics}"
    );
    // Every counter of the workers' rings and forwarding core is exported,
    // summed over the workers.
    let stats = clubcast::relay::WorkerStats::default();
    let names = stats.named().into_iter().chain(stats.forward.named());
    for (name, _, _) in names {
        let value = metric(&format!("clubcast_relay_worker_{name}_total"));
        assert!(
            value >= 0.0,
            "clubcast_relay_worker_{name}_total: {metrics}"
        );
    }
    assert!(
        metric("clubcast_relay_worker_copies_total")
            >= metric("clubcast_relay_worker_blocks_forwarded_total")
            && metric("clubcast_relay_worker_blocks_forwarded_total") > 10.0,
        "{metrics}"
    );
    assert_eq!(
        metric("clubcast_relay_worker_forged_total"),
        0.0,
        "{metrics}"
    );
    // And what the workers' verifiers did: they passed every block they
    // forwarded, checked each batch's signature once, rejected none.
    let verifier = |name: &str| metric(&format!("clubcast_relay_worker_verifier_{name}_total"));
    for (name, _, _) in clubcast::auth::VerifierStats::default().named() {
        assert!(
            verifier(name) >= 0.0,
            "no worker verifier {name}: {metrics}"
        );
    }
    assert!(
        verifier("passed") >= metric("clubcast_relay_worker_blocks_forwarded_total"),
        "{metrics}"
    );
    assert!(
        verifier("signatures_checked") > 0.0 && verifier("signatures_checked") < verifier("passed"),
        "{metrics}"
    );
    assert_eq!(verifier("rejected"), 0.0, "{metrics}");
    let p99 = metric("clubcast_relay_worker_latency_seconds{quantile=\"0.99\"}");
    assert!(p99 > 0.0 && p99 < 1.0, "{metrics}");
    let peers_ok: Vec<bool> = peers.into_iter().map(Kid::wait).collect();
    let (s_ok, r_ok, t_ok) = (s.wait(), r.wait(), t.wait());
    let relay = read(&relay_log);
    eprintln!("relay log:\n{relay}");
    assert!(r_ok && s_ok && t_ok, "every role exits cleanly");
    assert!(peers_ok.iter().all(|ok| *ok), "every peer exits cleanly");
    assert!(relay.contains("relay blocks on xdp"), "{relay}");
    assert!(relay.contains("XDP native (drv), bind copy"), "{relay}");
    let workers: Vec<&str> = relay
        .lines()
        .filter(|l| l.starts_with("worker q"))
        .collect();
    assert_eq!(workers.len(), queues, "one worker a queue:\n{relay}");
    let sum = |key: &str| -> f64 {
        workers
            .iter()
            .map(|w| field(w, key).unwrap_or_else(|| panic!("{key} in {w}")))
            .sum()
    };
    let (forwarded, tx) = (sum("forwarded"), sum("tx"));
    assert!(forwarded > 500.0 && tx >= forwarded, "{relay}");
    for w in &workers {
        assert!(
            field(w, "rx").is_some_and(|rx| rx > 100.0),
            "every queue gets blocks: {w}"
        );
    }
    // Each block fanned out once: by one worker, at most once.
    let unique = relay
        .lines()
        .filter_map(|l| field(l, "blocks in"))
        .fold(0.0, f64::max);
    assert!(
        forwarded <= unique,
        "{forwarded} fan-outs of {unique} blocks:\n{relay}"
    );
    if queues > 1 {
        assert!(
            sum("claimed-elsewhere") > 0.0,
            "a block reached both queues: {relay}"
        );
    }
    let served = relay
        .lines()
        .filter_map(|l| field(l, "subscriptions to"))
        .fold(0.0, f64::max);
    assert!(served >= 3.0, "the relay served {served} of 3 peers");
    for i in 1..=3 {
        let log = read(&dir.join(format!("peer{i}.log")));
        let last = log
            .lines()
            .rfind(|l| l.contains("continuity"))
            .unwrap_or_else(|| panic!("peer {i} reported nothing:\n{log}"));
        let continuity = field(last, "continuity").expect("continuity");
        let played = field(last, "played").expect("played");
        assert!(continuity >= 0.99 && played > 1000.0, "peer {i}: {last}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn relay_backend_choice_is_explicit() {
    if !privileged(
        "relay_backend_choice_is_explicit",
        "needs root for network namespaces",
    ) {
        return;
    }
    let topo = Topology::up(1, "io", 1);
    let sid = "11".repeat(32);
    let common = [
        "relay",
        "--listen",
        "10.77.0.1:7100",
        "--stream-id",
        &sid,
        "--tracker",
        "10.77.0.2:7000",
        "--duration",
        "1",
    ];
    // The preflight reads the veth: its driver, native XDP (veth has it,
    // and no AF_XDP zero-copy), and what the relay would use; with no
    // stream id or tracker needed.
    let out = topo.run("relay", &["relay", "--check", "--listen", "10.77.0.1:7100"]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    for want in [
        "driver           veth",
        "XDP              native yes, redirect yes, AF_XDP zero-copy no",
        "MTU              1500",
        "would use        RX queues 0..0",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    // An advice line per problem, and the exit code says so.
    let advice = text.lines().filter(|l| l.starts_with("advice: ")).count();
    assert_eq!(out.status.success(), advice == 0, "{text}");
    let out = topo.run(
        "relay",
        &[
            "relay",
            "--check",
            "--interface",
            "nosuch0",
            "--bind",
            "zero-copy",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("advice: name an existing interface"));
    // No such interface: --io xdp is an error that names it.
    let mut args = common.to_vec();
    args.extend(["--io", "xdp", "--interface", "nosuch0"]);
    let out = topo.run("relay", &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--io xdp must fail: {err}");
    assert!(
        err.contains("nosuch0"),
        "the error names the interface: {err}"
    );
    // --io auto falls back to kernel UDP and says why.
    let mut args = common.to_vec();
    args.extend(["--io", "auto", "--interface", "nosuch0"]);
    let out = topo.run("relay", &args);
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("falls back to kernel UDP"), "{err}");
    assert!(text.contains("relay blocks on udp"), "{text}");
    // AF_XDP with preferred busy polling, a spinning worker pinned to core
    // 1, starts on the veth and runs.
    let mut args = common.to_vec();
    args.extend([
        "--io",
        "xdp",
        "--busy-poll-us",
        "20",
        "--idle",
        "spin",
        "--cores",
        "1",
    ]);
    let out = topo.run("relay", &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("relay blocks on xdp"), "{text}");
    assert!(text.contains("worker q0:"), "{text}");
    // A ring size that is not a power of two is refused, not rounded.
    let mut args = common.to_vec();
    args.extend(["--io", "xdp", "--rx-ring", "1000"]);
    let out = topo.run("relay", &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("power"), "{err}");
}
