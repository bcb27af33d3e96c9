//! Swarms on loopback UDP: one socket per role, many roles per thread.
//!
//! A `Shard` is one kernel-UDP driver holding any mix of tracker, source
//! and peers, each on its own socket on one IPv4 address (127.0.0.1
//! unless made with [`Shard::bound_to`], as the relay's network-namespace
//! swarms are). `clubcast demo` runs one shard per core; the integration
//! tests run a single shard and add or remove peers between runs to model
//! churn.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use nix::sys::socket::{setsockopt, sockopt};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::SwarmNode;
use crate::auth::{SourceKey, StreamId};
use crate::io::clock;
use crate::io::udp::{NodeId, UdpDriver};
use crate::roles::{Peer, PeerConfig, Source, SourceConfig, Tracker, TrackerConfig};
use crate::wire::StreamTag;

/// Socket buffer size asked for each role (bursts of a whole batch to many
/// receivers must not overflow the kernel's default).
const SOCKET_BUFFER: usize = 1 << 20;

/// A UDP socket on `ip` with an OS-chosen port and large buffers.
pub fn socket_on(ip: IpAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind((ip, 0))?;
    // Larger buffers are a help, not a need: a refusal is not an error.
    let _ = setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER);
    Ok(socket)
}

/// One driver thread's worth of swarm nodes.
pub struct Shard {
    driver: UdpDriver<SwarmNode>,
    peers: Vec<NodeId>,
    source: Option<NodeId>,
    relay: Option<NodeId>,
    tracker: Option<NodeId>,
    ip: IpAddr,
}

impl Shard {
    /// An empty shard on loopback.
    pub fn new() -> io::Result<Self> {
        Self::bound_to(Ipv4Addr::LOCALHOST.into())
    }

    /// An empty shard whose nodes bind to `ip`.
    pub fn bound_to(ip: IpAddr) -> io::Result<Self> {
        Ok(Shard {
            driver: UdpDriver::new()?,
            peers: Vec::new(),
            source: None,
            relay: None,
            tracker: None,
            ip,
        })
    }

    /// Starts a tracker for `stream`; returns its address.
    pub fn add_tracker(
        &mut self,
        stream: StreamId,
        clubs: u16,
        seed: u64,
    ) -> io::Result<SocketAddr> {
        let mut cfg = TrackerConfig::new(StreamTag::of_key(&stream.to_bytes()));
        cfg.clubs = clubs;
        let tracker = Tracker::new(cfg, SmallRng::seed_from_u64(seed));
        let socket = socket_on(self.ip)?;
        let addr = socket.local_addr()?;
        let id = self
            .driver
            .add(socket, SwarmNode::Tracker(Box::new(tracker)))?;
        self.tracker = Some(id);
        Ok(addr)
    }

    /// Starts the source with a synthetic feed of `bitrate_bps` (0: no
    /// synthetic feed; media comes through `source_mut`).
    pub fn add_source(
        &mut self,
        key: SourceKey,
        tracker: SocketAddr,
        clubs: u16,
        bitrate_bps: u64,
        seed: u64,
    ) -> io::Result<SocketAddr> {
        let mut pc = PeerConfig::new(key.stream_id(), Some(tracker));
        pc.club_count = clubs;
        pc.peer_id = seed;
        let sc = SourceConfig {
            synthetic_bps: (bitrate_bps > 0).then_some(bitrate_bps),
            ..SourceConfig::default()
        };
        let socket = socket_on(self.ip)?;
        let addr = socket.local_addr()?;
        pc.local_addr = Some(addr);
        let source = Source::new(key, sc, pc, clock::now(), SmallRng::seed_from_u64(seed));
        let id = self
            .driver
            .add(socket, SwarmNode::Source(Box::new(source)))?;
        self.source = Some(id);
        Ok(addr)
    }

    /// Starts a viewer peer of `stream` joining through `tracker`.
    pub fn add_peer(
        &mut self,
        stream: StreamId,
        tracker: SocketAddr,
        seed: u64,
    ) -> io::Result<NodeId> {
        self.add_peer_with(PeerConfig::new(stream, Some(tracker)), seed)
    }

    /// Starts a viewer peer configured by `pc` (its `peer_id` becomes
    /// `seed`).
    pub fn add_peer_with(&mut self, mut pc: PeerConfig, seed: u64) -> io::Result<NodeId> {
        pc.peer_id = seed;
        let socket = socket_on(self.ip)?;
        pc.local_addr = Some(socket.local_addr()?);
        let peer = Peer::new(pc, clock::now(), SmallRng::seed_from_u64(seed));
        let id = self.driver.add(socket, SwarmNode::Peer(Box::new(peer)))?;
        self.peers.push(id);
        Ok(id)
    }

    /// Starts a super-peer relay serving every club, accepting up to
    /// `uploads_per_club` peers per club.
    pub fn add_relay(
        &mut self,
        stream: StreamId,
        tracker: SocketAddr,
        uploads_per_club: usize,
        seed: u64,
    ) -> io::Result<SocketAddr> {
        let mut pc = PeerConfig::new(stream, Some(tracker));
        pc.peer_id = seed;
        pc.relay_uploads = uploads_per_club;
        let socket = socket_on(self.ip)?;
        let addr = socket.local_addr()?;
        pc.local_addr = Some(addr);
        let relay = crate::relay::inline_plane(pc, clock::now(), SmallRng::seed_from_u64(seed));
        let id = self.driver.add(socket, SwarmNode::Relay(Box::new(relay)))?;
        self.relay = Some(id);
        Ok(addr)
    }

    /// The tracker's address, if this shard holds the tracker.
    pub fn tracker_addr(&self) -> Option<SocketAddr> {
        self.driver.local_addr(self.tracker?)
    }

    /// The tracker, if this shard holds it.
    pub fn tracker(&self) -> Option<&Tracker<SmallRng>> {
        self.driver.node(self.tracker?)?.tracker()
    }

    /// The kernel-UDP relay's address, if this shard holds one.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.driver.local_addr(self.relay?)
    }

    /// The relay's state machine, if this shard holds one.
    pub fn relay_peer(&self) -> Option<&Peer> {
        self.driver.node(self.relay?)?.relay()
    }

    /// The address node `id` listens on.
    pub fn local_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.driver.local_addr(id)
    }

    /// Stops a peer abruptly: its socket closes, nothing is said.
    pub fn remove_peer(&mut self, id: NodeId) -> Option<SwarmNode> {
        self.peers.retain(|p| *p != id);
        self.driver.remove(id)
    }

    /// Runs every node until `deadline` or until `stop` is set.
    pub fn run_until(&mut self, deadline: Instant, stop: &AtomicBool) -> io::Result<()> {
        self.driver.run_until(deadline, stop)
    }

    /// The viewer peers, with their ids.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, &Peer)> {
        self.peers
            .iter()
            .filter_map(|id| Some((*id, self.driver.node(*id)?.viewer()?)))
    }

    /// The viewer peer `id`, mutably.
    pub fn peer_mut(&mut self, id: NodeId) -> Option<&mut Peer> {
        self.driver.node_mut(id)?.viewer_mut()
    }

    /// The source, if this shard holds it.
    pub fn source(&self) -> Option<&Source> {
        self.driver.node(self.source?)?.source()
    }

    /// The source, mutably, if this shard holds it.
    pub fn source_mut(&mut self) -> Option<&mut Source> {
        self.driver.node_mut(self.source?)?.source_mut()
    }

    /// The source's peer state machine, if this shard holds the source.
    pub fn source_peer(&self) -> Option<&Peer> {
        self.driver.node(self.source?)?.peer()
    }

    /// Blocks the source has published, if this shard holds it.
    pub fn source_blocks(&self) -> Option<u64> {
        self.source().map(Source::blocks_published)
    }

    /// Datagrams and bytes the shard's sockets moved.
    pub fn udp_stats(&self) -> crate::io::udp::UdpStats {
        self.driver.stats()
    }
}
