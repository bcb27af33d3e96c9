//! Swarms on real loopback UDP sockets, one socket per role: a steady
//! 60-peer swarm, and the same swarm under churn.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clubcast::auth::SourceKey;
use clubcast::io::udp::NodeId;
use clubcast::swarm::loopback::Shard;
use clubcast::swarm::SwarmSummary;

const BITRATE_BPS: u64 = 2_000_000;

/// The swarms run one at a time: each keeps a core busy with real-time
/// work, and two at once on a two-core machine would measure the machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

struct Run {
    shard: Shard,
    stream: clubcast::auth::StreamId,
    tracker: std::net::SocketAddr,
    started: Instant,
    next_seed: u64,
}

impl Run {
    fn new(peers: usize, seed: u8) -> Run {
        let key = SourceKey::from_seed(&[seed; 32]);
        let stream = key.stream_id();
        let mut shard = Shard::new().expect("driver");
        let tracker = shard.add_tracker(stream, 12, 1).expect("tracker socket");
        shard
            .add_source(key, tracker, 12, BITRATE_BPS, 2)
            .expect("source socket");
        let mut run = Run {
            shard,
            stream,
            tracker,
            started: Instant::now(),
            next_seed: 100,
        };
        for _ in 0..peers {
            run.add_peer();
        }
        run
    }

    fn add_peer(&mut self) -> NodeId {
        self.next_seed += 1;
        self.shard
            .add_peer(self.stream, self.tracker, self.next_seed)
            .expect("peer socket")
    }

    fn run_to(&mut self, secs: f64) {
        let stop = AtomicBool::new(false);
        let deadline = self.started + Duration::from_secs_f64(secs);
        self.shard.run_until(deadline, &stop).expect("driver runs");
    }

    fn summary(&self, ids: &[NodeId]) -> SwarmSummary {
        let peers = self
            .shard
            .peers()
            .filter(|(id, _)| ids.contains(id))
            .map(|(_, p)| p);
        SwarmSummary::of(
            peers,
            self.shard.source_peer(),
            self.started.elapsed().as_secs_f64(),
            BITRATE_BPS / 1000,
        )
    }

    fn ids(&self) -> Vec<NodeId> {
        self.shard.peers().map(|(id, _)| id).collect()
    }
}

/// Tracker + source + 60 peers, 2 Mbit/s for 20 s, every role on its own
/// socket.
#[test]
fn sixty_peers_stream_two_megabits_for_twenty_seconds() {
    let _one = exclusive();
    let mut run = Run::new(60, 7);
    run.run_to(20.0);
    let s = run.summary(&run.ids());
    println!("{}", s.to_json());
    assert_eq!(s.peers, 60);
    assert!(s.continuity_min >= 0.995, "{}", s.to_json());
    assert!(s.startup_ms_max <= 2000.0, "{}", s.to_json());
    assert!(s.dup_ratio <= 1.25, "{}", s.to_json());
    assert_eq!(s.forged_rejected, 0, "{}", s.to_json());
}

/// A quarter of the peers leave abruptly at 8 s and as many join: the
/// survivors keep playing and the newcomers start within 2 s.
#[test]
fn swarm_survives_a_quarter_of_its_peers_leaving() {
    let _one = exclusive();
    let mut run = Run::new(60, 8);
    run.run_to(8.0);
    let all = run.ids();
    let (leaving, survivors) = all.split_at(15);
    for id in leaving {
        assert!(run.shard.remove_peer(*id).is_some());
    }
    let newcomers: Vec<NodeId> = (0..15).map(|_| run.add_peer()).collect();
    run.run_to(20.0);
    let s = run.summary(survivors);
    println!("survivors {}", s.to_json());
    assert_eq!(s.peers, 45);
    assert!(s.continuity_min >= 0.99, "{}", s.to_json());
    let n = run.summary(&newcomers);
    println!("newcomers {}", n.to_json());
    assert_eq!(n.peers, 15);
    assert!(n.startup_ms_max <= 2000.0, "{}", n.to_json());
    assert!(n.continuity_min >= 0.99, "{}", n.to_json());
}
