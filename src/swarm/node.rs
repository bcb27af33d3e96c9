//! One node of a swarm, whatever its role: tracker, source, viewer peer or
//! relay.

use std::net::SocketAddr;

use rand::rngs::SmallRng;

use crate::relay::ControlPlane;
use crate::roles::{Node, Peer, Source, Time, Tracker, Transmit};

/// A tracker, a source or a peer.
pub enum SwarmNode {
    /// The tracker.
    Tracker(Box<Tracker<SmallRng>>),
    /// The source.
    Source(Box<Source>),
    /// A viewer peer.
    Peer(Box<Peer>),
    /// A super-peer relay: the relay-mode control plane with the
    /// forwarding core inline (as on a kernel socket).
    Relay(Box<ControlPlane>),
}

impl SwarmNode {
    /// The peer state machine, for a peer or the source.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            SwarmNode::Peer(p) => Some(p),
            SwarmNode::Relay(r) => Some(r.peer()),
            SwarmNode::Source(s) => Some(s.peer()),
            SwarmNode::Tracker(_) => None,
        }
    }

    /// The viewer peer, if this is one.
    pub fn viewer(&self) -> Option<&Peer> {
        match self {
            SwarmNode::Peer(p) => Some(p),
            _ => None,
        }
    }

    /// The viewer peer, mutably.
    pub fn viewer_mut(&mut self) -> Option<&mut Peer> {
        match self {
            SwarmNode::Peer(p) => Some(p),
            _ => None,
        }
    }

    /// The relay, if this is one.
    pub fn relay(&self) -> Option<&Peer> {
        match self {
            SwarmNode::Relay(r) => Some(r.peer()),
            _ => None,
        }
    }

    /// The relay's control plane, if this is a relay.
    pub fn relay_plane(&self) -> Option<&ControlPlane> {
        match self {
            SwarmNode::Relay(r) => Some(r),
            _ => None,
        }
    }

    /// The tracker, if this is it.
    pub fn tracker(&self) -> Option<&Tracker<SmallRng>> {
        match self {
            SwarmNode::Tracker(t) => Some(t),
            _ => None,
        }
    }

    /// The source, if this is it.
    pub fn source(&self) -> Option<&Source> {
        match self {
            SwarmNode::Source(s) => Some(s),
            _ => None,
        }
    }

    /// The source, mutably.
    pub fn source_mut(&mut self) -> Option<&mut Source> {
        match self {
            SwarmNode::Source(s) => Some(s),
            _ => None,
        }
    }
}

impl Node for SwarmNode {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        match self {
            SwarmNode::Tracker(t) => t.handle_datagram(now, from, datagram),
            SwarmNode::Source(s) => s.handle_datagram(now, from, datagram),
            SwarmNode::Peer(p) => p.handle_datagram(now, from, datagram),
            SwarmNode::Relay(r) => r.handle_datagram(now, from, datagram),
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        match self {
            SwarmNode::Tracker(t) => t.handle_timeout(now),
            SwarmNode::Source(s) => s.handle_timeout(now),
            SwarmNode::Peer(p) => p.handle_timeout(now),
            SwarmNode::Relay(r) => r.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            SwarmNode::Tracker(t) => t.poll_transmit(),
            SwarmNode::Source(s) => s.poll_transmit(),
            SwarmNode::Peer(p) => p.poll_transmit(),
            SwarmNode::Relay(r) => r.poll_transmit(),
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        match self {
            SwarmNode::Tracker(t) => t.poll_timeout(),
            SwarmNode::Source(s) => s.poll_timeout(),
            SwarmNode::Peer(p) => p.poll_timeout(),
            SwarmNode::Relay(r) => r.poll_timeout(),
        }
    }

    fn leave(&mut self, now: Time) {
        match self {
            SwarmNode::Tracker(t) => t.leave(now),
            SwarmNode::Source(s) => s.leave(now),
            SwarmNode::Peer(p) => p.leave(now),
            SwarmNode::Relay(r) => r.leave(now),
        }
    }
}
