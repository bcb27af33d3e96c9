//! Whole swarms in the deterministic in-memory network: a tracker, a
//! source with a synthetic feed and viewer peers, end to end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clubcast::auth::SourceKey;
use clubcast::roles::{Peer, PeerConfig, Source, SourceConfig, Time, Tracker, TrackerConfig};
use clubcast::sim::{LinkProfile, Network, NodeId};
use clubcast::swarm::{SwarmNode, SwarmSummary};
use clubcast::wire::StreamTag;
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn addr(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 4000)
}

struct Swarm {
    net: Network<SwarmNode>,
    source: NodeId,
    peers: Vec<NodeId>,
    key_seed: [u8; 32],
    next_addr: u32,
    profile: LinkProfile,
}

const TRACKER: u32 = 1;
const SOURCE: u32 = 2;

impl Swarm {
    fn new(seed: u64, bitrate_bps: u64, profile: LinkProfile) -> Self {
        let key_seed = [seed as u8; 32];
        let key = SourceKey::from_seed(&key_seed);
        let stream = key.stream_id();
        let mut net = Network::new(seed);
        let tracker = Tracker::new(
            TrackerConfig::new(StreamTag::of_key(&stream.to_bytes())),
            SmallRng::seed_from_u64(seed),
        );
        net.add(
            addr(TRACKER),
            profile,
            SwarmNode::Tracker(Box::new(tracker)),
        );
        let mut pc = PeerConfig::new(stream, Some(addr(TRACKER)));
        pc.peer_id = 2;
        let sc = SourceConfig {
            synthetic_bps: Some(bitrate_bps),
            ..SourceConfig::default()
        };
        let source = Source::new(key, sc, pc, net.now(), SmallRng::seed_from_u64(seed + 1));
        let source = net.add(addr(SOURCE), profile, SwarmNode::Source(Box::new(source)));
        Swarm {
            net,
            source,
            peers: Vec::new(),
            key_seed,
            next_addr: 100,
            profile,
        }
    }

    fn add_peer(&mut self) -> NodeId {
        let stream = SourceKey::from_seed(&self.key_seed).stream_id();
        let mut pc = PeerConfig::new(stream, Some(addr(TRACKER)));
        pc.peer_id = u64::from(self.next_addr);
        let peer = Peer::new(
            pc,
            self.net.now(),
            SmallRng::seed_from_u64(u64::from(self.next_addr)),
        );
        let id = self.net.add(
            addr(self.next_addr),
            self.profile,
            SwarmNode::Peer(Box::new(peer)),
        );
        self.next_addr += 1;
        self.peers.push(id);
        id
    }

    fn summary(&self, ids: &[NodeId], duration_s: f64, kbps: u64) -> SwarmSummary {
        let peers = ids
            .iter()
            .filter_map(|id| self.net.get(*id))
            .filter_map(|n| n.viewer());
        let source = self.net.get(self.source).and_then(|n| n.peer());
        SwarmSummary::of(peers, source, self.net.now(), duration_s, kbps)
    }
}

#[test]
fn thirty_peers_play_a_two_megabit_stream() {
    let mut swarm = Swarm::new(1, 2_000_000, LinkProfile::with_latency_ms(5).jitter_ms(1));
    for _ in 0..30 {
        swarm.add_peer();
    }
    swarm.net.run_until(Time(10_000_000));
    let ids = swarm.peers.clone();
    let s = swarm.summary(&ids, 10.0, 2000);
    println!("{}", s.to_json());
    assert!(s.continuity_min >= 0.99, "{}", s.to_json());
    assert!(s.startup_ms_max <= 2000.0, "{}", s.to_json());
    assert!(s.dup_ratio <= 1.25, "{}", s.to_json());
    assert_eq!(s.forged_rejected, 0);
}
