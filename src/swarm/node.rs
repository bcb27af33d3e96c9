//! One node of a swarm, whatever its role: tracker, source, viewer peer or
//! relay.

use std::net::SocketAddr;

use rand::rngs::SmallRng;

use crate::roles::{Node, Peer, Source, Time, Tracker, Transmit};

/// A tracker, a source or a peer.
pub enum SwarmNode {
    /// The tracker.
    Tracker(Box<Tracker<SmallRng>>),
    /// The source.
    Source(Box<Source>),
    /// A viewer peer.
    Peer(Box<Peer>),
    /// A super-peer relay (the peer state machine in relay mode).
    Relay(Box<Peer>),
}

impl SwarmNode {
    /// The peer state machine, for a peer or the source.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            SwarmNode::Peer(p) | SwarmNode::Relay(p) => Some(p),
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
            SwarmNode::Relay(p) => Some(p),
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
            SwarmNode::Peer(p) | SwarmNode::Relay(p) => p.handle_datagram(now, from, datagram),
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        match self {
            SwarmNode::Tracker(t) => t.handle_timeout(now),
            SwarmNode::Source(s) => s.handle_timeout(now),
            SwarmNode::Peer(p) | SwarmNode::Relay(p) => p.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            SwarmNode::Tracker(t) => t.poll_transmit(),
            SwarmNode::Source(s) => s.poll_transmit(),
            SwarmNode::Peer(p) | SwarmNode::Relay(p) => p.poll_transmit(),
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        match self {
            SwarmNode::Tracker(t) => t.poll_timeout(),
            SwarmNode::Source(s) => s.poll_timeout(),
            SwarmNode::Peer(p) | SwarmNode::Relay(p) => p.poll_timeout(),
        }
    }
}
