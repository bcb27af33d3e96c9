//! Whole swarms in the in-memory network, under the impairments of the
//! real internet.
//!
//! [`SimSwarm`] puts a tracker, a source with a synthetic feed and viewer
//! peers on a [`Network`], each peer with an [`Impairment`] of its own:
//! its uplink (latency, jitter, loss, upload capacity), its clock offset
//! and an outage. [`Scenario`] names the conditions the swarm is judged
//! under, the same ones the namespace rig applies to real processes
//! (`scripts/bench-network.sh`), so a seed replays a run of any of them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::{LinkProfile, NatId, NatKind, Network, NodeId};
use crate::auth::SourceKey;
use crate::roles::{Peer, PeerConfig, Source, SourceConfig, Time, Tracker, TrackerConfig};
use crate::swarm::{SwarmNode, SwarmSummary};
use crate::wire::StreamTag;

/// Every node's clock runs this far ahead of the network's, so that a
/// clock skewed backwards never reaches 0.
pub const BASE_CLOCK_US: i64 = 1_000_000_000;

/// What one peer suffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Its uplink.
    pub link: LinkProfile,
    /// Its clock against the source's, in microseconds.
    pub clock_offset_us: i64,
    /// An outage of its link: (start, length), network time and ms.
    pub outage: Option<(Time, u64)>,
}

impl Impairment {
    /// A peer on `link` with a right clock and no outage.
    pub fn link(link: LinkProfile) -> Self {
        Impairment {
            link,
            clock_offset_us: 0,
            outage: None,
        }
    }
}

/// A named set of conditions for a swarm: what every peer's uplink and
/// clock suffer ([`Scenario::impairment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 10 ms one-way, no loss.
    Clean,
    /// 5% random loss on every peer's uplink.
    Loss5,
    /// 2% loss and 40 ms +- 15 ms of delay (so datagrams reorder).
    Loss2Jitter,
    /// Every third peer's upload limited to 1 Mbit/s, with a 200 ms queue.
    SlowThird,
    /// Every third peer's clock 30 s ahead or behind, alternately.
    SkewedClocks,
    /// One peer's link goes down for 1 s at a third of the run.
    Outage,
}

impl Scenario {
    /// Every scenario, in the order the bench prints them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Clean,
        Scenario::Loss5,
        Scenario::Loss2Jitter,
        Scenario::SlowThird,
        Scenario::SkewedClocks,
        Scenario::Outage,
    ];

    /// The scenario's name, as the bench prints it.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::Loss5 => "loss5",
            Scenario::Loss2Jitter => "loss2_jitter40",
            Scenario::SlowThird => "slow_third_1mbit",
            Scenario::SkewedClocks => "clocks_30s",
            Scenario::Outage => "outage_1s",
        }
    }

    /// The scenario named `name`.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What peer `i` suffers in a run of `duration_s` seconds.
    pub fn impairment(self, i: usize, duration_s: f64) -> Impairment {
        let clean = LinkProfile::with_latency_ms(10);
        let third = i % 3 == 2;
        match self {
            Scenario::Clean => Impairment::link(clean),
            Scenario::Loss5 => Impairment::link(clean.loss(0.05)),
            Scenario::Loss2Jitter => {
                Impairment::link(LinkProfile::with_latency_ms(25).jitter_ms(30).loss(0.02))
            }
            Scenario::SlowThird if third => {
                // 1 Mbit/s; 200 ms of queue, as a home router's buffer.
                Impairment::link(clean.upload(125_000, 25_000))
            }
            Scenario::SkewedClocks if third => Impairment {
                clock_offset_us: if i % 6 == 2 { 30_000_000 } else { -30_000_000 },
                ..Impairment::link(clean)
            },
            Scenario::Outage if i == 0 => Impairment {
                outage: Some((Time((duration_s / 3.0 * 1e6) as u64), 1_000)),
                ..Impairment::link(clean)
            },
            Scenario::SlowThird | Scenario::SkewedClocks | Scenario::Outage => {
                Impairment::link(clean)
            }
        }
    }
}

fn addr(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 4000)
}

/// The private address of the `n`-th node added, behind some router.
fn private_addr(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + n)), 4000)
}

const TRACKER: u32 = 1;
const SOURCE: u32 = 2;

/// A tracker, a source and viewer peers on one simulated network.
pub struct SimSwarm {
    /// The network; reach nodes through it.
    pub net: Network<SwarmNode>,
    /// The source.
    pub source: NodeId,
    /// The tracker.
    pub tracker: NodeId,
    /// The viewer peers, in order of addition.
    pub peers: Vec<NodeId>,
    key_seed: [u8; 32],
    next_addr: u32,
    outages: Vec<(NodeId, Time, u64)>,
    bitrate_kbps: u64,
    profile: LinkProfile,
    /// Routers added.
    nats: u32,
}

impl SimSwarm {
    /// A swarm of `seed` streaming `bitrate_bps`, its tracker and source on
    /// `profile`.
    pub fn new(seed: u64, bitrate_bps: u64, profile: LinkProfile) -> Self {
        let key_seed = [seed as u8; 32];
        let key = SourceKey::from_seed(&key_seed);
        let stream = key.stream_id();
        let mut net = Network::new(seed);
        let tracker = Tracker::new(
            TrackerConfig::new(StreamTag::of_key(&stream.to_bytes())),
            SmallRng::seed_from_u64(seed),
        );
        let tracker = net.add(
            addr(TRACKER),
            profile,
            SwarmNode::Tracker(Box::new(tracker)),
        );
        net.set_clock_offset(tracker, BASE_CLOCK_US);
        let mut pc = PeerConfig::new(stream, Some(addr(TRACKER)));
        pc.peer_id = 2;
        pc.local_addr = Some(addr(SOURCE));
        let sc = SourceConfig {
            synthetic_bps: Some(bitrate_bps),
            ..SourceConfig::default()
        };
        let start = Time(BASE_CLOCK_US as u64);
        let source = Source::new(key, sc, pc, start, SmallRng::seed_from_u64(seed + 1));
        let source = net.add(addr(SOURCE), profile, SwarmNode::Source(Box::new(source)));
        net.set_clock_offset(source, BASE_CLOCK_US);
        SimSwarm {
            net,
            source,
            tracker,
            peers: Vec::new(),
            key_seed,
            next_addr: 100,
            outages: Vec::new(),
            bitrate_kbps: bitrate_bps / 1000,
            profile,
            nats: 0,
        }
    }

    /// Restarts the tracker: the old one goes with everything it knew, and
    /// a fresh one (a new token key, an empty list) takes its address.
    pub fn restart_tracker(&mut self, seed: u64) {
        self.net.remove(self.tracker);
        let stream = self.source_key().stream_id();
        let tracker = Tracker::new(
            TrackerConfig::new(StreamTag::of_key(&stream.to_bytes())),
            SmallRng::seed_from_u64(seed),
        );
        self.tracker = self.net.add(
            addr(TRACKER),
            self.profile,
            SwarmNode::Tracker(Box::new(tracker)),
        );
        self.net.set_clock_offset(self.tracker, BASE_CLOCK_US);
    }

    /// The stream's source key (to sign blocks as the source would).
    pub fn source_key(&self) -> SourceKey {
        SourceKey::from_seed(&self.key_seed)
    }

    /// The address of the `n`-th node added (the tracker is 1, the source
    /// 2, a relay 3, peers from 100).
    pub fn addr(n: u32) -> SocketAddr {
        addr(n)
    }

    /// Adds a super-peer relay (the relay-mode control plane with its
    /// forwarding core inline, as on a kernel socket) at address 3, on the
    /// swarm's link profile.
    pub fn add_relay(&mut self) -> NodeId {
        let stream = self.source_key().stream_id();
        let mut pc = PeerConfig::new(stream, Some(addr(TRACKER)));
        pc.peer_id = 3;
        pc.local_addr = Some(addr(3));
        let now = Time(self.net.now().0.saturating_add_signed(BASE_CLOCK_US));
        let relay = crate::relay::inline_plane(pc, now, SmallRng::seed_from_u64(3));
        let id = self
            .net
            .add(addr(3), self.profile, SwarmNode::Relay(Box::new(relay)));
        self.net.set_clock_offset(id, BASE_CLOCK_US);
        id
    }

    /// The peer settings a new viewer gets.
    pub fn peer_config(&self) -> PeerConfig {
        let stream = SourceKey::from_seed(&self.key_seed).stream_id();
        let mut pc = PeerConfig::new(stream, Some(addr(TRACKER)));
        pc.peer_id = u64::from(self.next_addr);
        pc
    }

    /// Adds a viewer with `cfg` suffering `imp`; it starts now.
    pub fn add_peer_with(&mut self, cfg: PeerConfig, imp: Impairment) -> NodeId {
        self.add_viewer(cfg, imp, None)
    }

    /// Adds a home router of `kind`; the `n`-th has the public address
    /// 203.0.113.(n + 1).
    pub fn add_nat(&mut self, kind: NatKind) -> NatId {
        self.nats += 1;
        let ip = Ipv4Addr::new(203, 0, 113, self.nats as u8);
        self.net.add_nat(IpAddr::V4(ip), kind)
    }

    /// Adds a viewer with the default settings behind router `nat`, at a
    /// private address in 192.168.0.0/16 (port 4000), suffering `imp`.
    pub fn add_peer_behind(&mut self, nat: NatId, imp: Impairment) -> NodeId {
        let cfg = self.peer_config();
        self.add_viewer(cfg, imp, Some(nat))
    }

    /// Adds a viewer with `cfg` behind router `nat` (see
    /// [`SimSwarm::add_peer_behind`]).
    pub fn add_peer_behind_with(&mut self, nat: NatId, cfg: PeerConfig, imp: Impairment) -> NodeId {
        self.add_viewer(cfg, imp, Some(nat))
    }

    fn add_viewer(&mut self, mut cfg: PeerConfig, imp: Impairment, nat: Option<NatId>) -> NodeId {
        let at = match nat {
            None => addr(self.next_addr),
            Some(_) => private_addr(self.next_addr),
        };
        cfg.local_addr.get_or_insert(at);
        let offset = BASE_CLOCK_US + imp.clock_offset_us;
        let now = Time(self.net.now().0.saturating_add_signed(offset));
        let peer = Peer::new(cfg, now, SmallRng::seed_from_u64(u64::from(self.next_addr)));
        let node = SwarmNode::Peer(Box::new(peer));
        let id = match nat {
            None => self.net.add(at, imp.link, node),
            Some(nat) => match self.net.add_behind(nat, at, imp.link, node) {
                Ok(id) => id,
                Err(_) => panic!("no room behind router {nat:?} at {at}"),
            },
        };
        self.net.set_clock_offset(id, offset);
        if let Some((at, ms)) = imp.outage {
            self.outages.push((id, at, ms));
        }
        self.next_addr += 1;
        self.peers.push(id);
        id
    }

    /// Adds a viewer with the default settings suffering `imp`.
    pub fn add_peer(&mut self, imp: Impairment) -> NodeId {
        let cfg = self.peer_config();
        self.add_peer_with(cfg, imp)
    }

    /// Runs until network time `t`, starting the outages that fall due.
    pub fn run_until(&mut self, t: Time) {
        loop {
            let next = self
                .outages
                .iter()
                .filter(|(_, at, _)| *at <= t)
                .map(|(_, at, _)| *at)
                .min();
            let Some(at) = next else {
                break;
            };
            self.net.run_until(at);
            let due: Vec<(NodeId, Time, u64)> = self
                .outages
                .iter()
                .copied()
                .filter(|(_, a, _)| *a == at)
                .collect();
            self.outages.retain(|(_, a, _)| *a != at);
            for (id, at, ms) in due {
                self.net.set_outage(id, at.plus_ms(ms));
            }
        }
        self.net.run_until(t);
    }

    /// The summary of the viewers `ids` over a run of `duration_s`.
    pub fn summary(&self, ids: &[NodeId], duration_s: f64) -> SwarmSummary {
        let peers = ids
            .iter()
            .filter_map(|id| self.net.get(*id))
            .filter_map(|n| n.viewer());
        let source = self.net.get(self.source).and_then(|n| n.peer());
        SwarmSummary::of(peers, source, duration_s, self.bitrate_kbps)
    }

    /// Runs `scenario` with `peers` viewers for `duration_s` seconds from
    /// `seed` and summarises every viewer.
    pub fn run_scenario(
        scenario: Scenario,
        seed: u64,
        peers: usize,
        duration_s: f64,
        bitrate_bps: u64,
    ) -> (SimSwarm, SwarmSummary) {
        let mut swarm = SimSwarm::new(seed, bitrate_bps, LinkProfile::with_latency_ms(10));
        for i in 0..peers {
            swarm.add_peer(scenario.impairment(i, duration_s));
        }
        swarm.run_until(Time((duration_s * 1e6) as u64));
        let ids = swarm.peers.clone();
        let s = swarm.summary(&ids, duration_s);
        (swarm, s)
    }
}
