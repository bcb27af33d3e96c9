//! The impaired-network rig on real sockets and processes (root: it builds
//! network namespaces; under CI=true a missing privilege is a failure):
//! each impairment does what it says, and a swarm of real processes on it
//! repairs its losses and plays.

#[path = "support/netns.rs"]
mod netns;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clubcast::sim::Scenario;
use clubcast::swarm::netbench::{self, NetBenchConfig};
use clubcast::swarm::rig::{NetRig, Uplink};

const BIN: &str = env!("CARGO_BIN_EXE_clubcast");

macro_rules! require_privileges {
    ($name:literal) => {
        if !netns::privileged(
            $name,
            "network namespaces need root (run `sudo -E cargo test --test network_rig`)",
        ) {
            return;
        }
    };
}

/// One rig at a time: the timing checks must not share the CPUs with a
/// swarm of processes.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("clubcast-rig-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Host 1 sends 2000 numbered datagrams, one a millisecond, to host 0
/// through an uplink with 10% loss and 30 ms +- 10 ms of delay: about a
/// tenth are lost, every one that arrives took 30 to 40 ms (plus the
/// path), and some overtook others.
#[test]
fn loss_delay_and_jitter_are_applied_on_the_uplink() {
    require_privileges!("loss_delay_and_jitter_are_applied_on_the_uplink");
    let _one = one_at_a_time();
    let mut rig = NetRig::new(2, &scratch("udp")).expect("rig");
    let up = Uplink {
        delay_us: 30_000,
        jitter_us: 10_000,
        loss: 0.10,
        ..Uplink::default()
    };
    rig.set_uplink(1, &up).expect("uplink");
    rig.start(1).expect("delay queue");
    let to: SocketAddr = (rig.hosts()[0].addr, 9000).into();
    let sink = rig
        .in_host(0, move || UdpSocket::bind(to).expect("bind in host 0"))
        .expect("host 0");
    let receiver = std::thread::spawn(move || {
        sink.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = sink.recv(&mut buf) {
            if n >= 16 {
                let seq = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
                let sent = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
                got.push((seq, start.elapsed().as_micros() as u64, sent));
            }
        }
        (got, start)
    });
    let base = Instant::now();
    rig.in_host(1, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind in host 1");
        for seq in 0..2000u64 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&seq.to_be_bytes());
            b[8..].copy_from_slice(&(base.elapsed().as_micros() as u64).to_be_bytes());
            let _ = s.send_to(&b, to);
            std::thread::sleep(Duration::from_millis(1));
        }
    })
    .expect("host 1");
    let (got, start) = receiver.join().expect("receiver");
    let offset = start.duration_since(base).as_micros() as i64;
    let lost = 2000 - got.len();
    assert!((120..=300).contains(&lost), "{lost} of 2000 lost");
    let mut reordered = 0;
    for w in got.windows(2) {
        if w[1].0 < w[0].0 {
            reordered += 1;
        }
    }
    for (seq, at, sent) in &got {
        let delay = *at as i64 + offset - *sent as i64;
        assert!(
            (29_000..60_000).contains(&delay),
            "datagram {seq} took {delay} us"
        );
    }
    assert!(reordered > 50, "{reordered} reordered");
    assert!(
        rig.lost() >= lost as u64,
        "the router counted {} drops",
        rig.lost()
    );
    assert!(rig.delayed() >= got.len() as u64);
}

/// An upload limit holds a sender to its rate: 2 Mbit/s offered through a
/// 1 Mbit/s uplink arrives at about 1 Mbit/s.
#[test]
fn an_upload_limit_holds_the_rate() {
    require_privileges!("an_upload_limit_holds_the_rate");
    let _one = one_at_a_time();
    let mut rig = NetRig::new(2, &scratch("rate")).expect("rig");
    let up = Uplink {
        rate_bps: Some(1_000_000),
        queue_us: 200_000,
        ..Uplink::default()
    };
    rig.set_uplink(1, &up).expect("uplink");
    let to: SocketAddr = (rig.hosts()[0].addr, 9001).into();
    let sink = rig
        .in_host(0, move || UdpSocket::bind(to).expect("bind"))
        .expect("host 0");
    let receiver = std::thread::spawn(move || {
        sink.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut bytes = 0usize;
        let mut first = None;
        let mut last = Instant::now();
        let mut buf = [0u8; 1500];
        while let Ok(n) = sink.recv(&mut buf) {
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            bytes += n;
        }
        (bytes, first.map(|f| last.duration_since(f)))
    });
    rig.in_host(1, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        // 2 Mbit/s for 3 s: 1000-byte datagrams every 4 ms.
        for _ in 0..750 {
            let _ = s.send_to(&[7u8; 1000], to);
            std::thread::sleep(Duration::from_millis(4));
        }
    })
    .expect("host 1");
    let (bytes, span) = receiver.join().expect("receiver");
    let secs = span.expect("something arrived").as_secs_f64();
    let mbps = bytes as f64 * 8.0 / secs / 1e6;
    assert!((0.85..1.15).contains(&mbps), "{mbps:.3} Mbit/s arrived");
}

/// A host's processes run with its clock offset (faketime), and an outage
/// drops everything both ways until it ends.
#[test]
fn clock_offsets_and_outages_apply_to_one_host() {
    require_privileges!("clock_offsets_and_outages_apply_to_one_host");
    let _one = one_at_a_time();
    let dir = scratch("clock");
    let mut rig = NetRig::new(2, &dir).expect("rig");
    rig.set_clock_offset(1, 30);
    rig.spawn(
        1,
        "date",
        std::path::Path::new("/bin/date"),
        &["+%s".to_string()],
    )
    .expect("date");
    rig.wait_all(Duration::from_secs(5));
    let shown: i64 = std::fs::read_to_string(dir.join("date.log"))
        .expect("log")
        .trim()
        .parse()
        .expect("seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    assert!(
        (shown - now - 30).abs() <= 2,
        "host clock {shown}, ours {now}"
    );

    let to: SocketAddr = (rig.hosts()[0].addr, 9002).into();
    let sink = rig
        .in_host(0, move || UdpSocket::bind(to).expect("bind"))
        .expect("host 0");
    sink.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let send = |rig: &NetRig| {
        rig.in_host(1, move || {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            let _ = s.send_to(b"ping", to);
        })
        .expect("host 1")
    };
    let mut buf = [0u8; 16];
    rig.outage(1, true).expect("down");
    send(&rig);
    assert!(
        sink.recv(&mut buf).is_err(),
        "a datagram crossed the outage"
    );
    rig.outage(1, false).expect("up");
    send(&rig);
    assert_eq!(sink.recv(&mut buf).ok(), Some(4));
}

/// Twelve peers for 20 s at 2 Mbit/s, each behind an uplink with 2% loss
/// and 40 ms +- 15 ms of delay (with a relay on AF_XDP when `relay`).
fn twelve_peers_through_loss_and_jitter(dir: &str, relay: bool) -> netbench::RigSummary {
    let cfg = NetBenchConfig {
        scenario: Scenario::Loss2Jitter,
        peers: 12,
        duration_s: 20,
        kbps: 2000,
        binary: BIN.into(),
        dir: scratch(dir),
        seed: 3 + u64::from(relay),
        relay,
    };
    let s = netbench::run(&cfg).expect("the run");
    println!("{}", s.to_json());
    s
}

/// Twelve peers as real processes, each behind an uplink with 2% loss and
/// 40 ms +- 15 ms of delay, play a 2 Mbit/s stream for 20 s: the rig really
/// lost and delayed their datagrams, the peers repaired what was lost, and
/// every one played.
#[test]
fn a_swarm_of_processes_plays_through_loss_and_jitter() {
    require_privileges!("a_swarm_of_processes_plays_through_loss_and_jitter");
    let _one = one_at_a_time();
    let s = twelve_peers_through_loss_and_jitter("swarm", false);
    assert_eq!(s.peers, 12);
    assert!(s.lost > 1_000, "{}", s.to_json());
    assert!(s.delayed > 50_000, "{}", s.to_json());
    assert!(s.repair_overhead > 0.0, "{}", s.to_json());
    assert!(s.continuity_min >= 0.99, "{}", s.to_json());
    assert!(s.startup_ms_max <= 2_000.0, "{}", s.to_json());
    assert_eq!(s.graceful_failures, 0);
}

/// The same impaired swarm with a super-peer relay on AF_XDP (copy mode,
/// on its host's veth) on a clean uplink: the viewers find it through the
/// tracker, its data plane verifies and fans out blocks to them while
/// their own uplinks lose and delay what they send, nothing it forwards is
/// forged, and every viewer plays.
#[test]
fn an_af_xdp_relay_serves_a_swarm_through_loss_and_jitter() {
    require_privileges!("an_af_xdp_relay_serves_a_swarm_through_loss_and_jitter");
    let _one = one_at_a_time();
    let s = twelve_peers_through_loss_and_jitter("relay", true);
    let relay = s.relay.expect("the relay's figures");
    assert!(s.lost > 500, "{}", s.to_json());
    assert!(relay.subscribers >= 6, "{}", s.to_json());
    assert!(relay.blocks_forwarded > 1_000, "{}", s.to_json());
    assert!(relay.copies > relay.blocks_forwarded, "{}", s.to_json());
    assert_eq!(relay.forged, 0, "{}", s.to_json());
    assert!(s.continuity_min >= 0.99, "{}", s.to_json());
    assert_eq!(s.graceful_failures, 0);
}
