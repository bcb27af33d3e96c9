//! Getting through home routers: what this peer learns of its own NAT,
//! and UDP hole punching through the tracker (`docs/PROTOCOL.md` 5.19).
//!
//! The tracker's PEER_LIST and every PONG say at which address the
//! answering node sees this peer. Seen by the tracker at the address the
//! peer's socket has, the peer is public; seen at one address by nodes of
//! different IP addresses, it sits behind a router that keeps one mapping
//! for every destination (endpoint-independent: punching works); seen at
//! different ports, behind a router that maps each destination to a port
//! of its own (symmetric: only public peers and relays can be reached,
//! through connections this peer opens itself). A contact that leaves a
//! second PING unanswered may sit behind a router that drops what it did
//! not ask for: the peer asks the tracker for a PUNCH (at most once per
//! contact per `PUNCH_REQUEST_EVERY_US`). A PUNCH from the tracker (from
//! nobody else) makes the peer PING the named peer, at most once per
//! address per `PUNCH_ANSWER_EVERY_US`, which opens this peer's mapping
//! towards it. A validated PING from a contact that has not answered this
//! peer's PING means the way is open now: it is pinged again at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::Peer;
use crate::roles::Time;
use crate::wire::{Message, Punch, PunchRequest};

/// Least time between two PUNCH_REQUESTs for one contact, µs.
pub(super) const PUNCH_REQUEST_EVERY_US: u64 = 5_000_000;

/// Least time between two PINGs a PUNCH makes to one address, µs.
const PUNCH_ANSWER_EVERY_US: u64 = 2_000_000;

/// Addresses a PUNCH was answered for, remembered at most.
const PUNCHED_MAX: usize = 1024;

/// Observers whose view of this peer's address is kept.
const SEEN_MAX: usize = 16;

/// Least time between a PING and a second one that a PING from its
/// target makes, µs.
const REPING_AFTER_US: u64 = 10_000;

/// What a peer knows of the router in front of it (RFC 4787's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatType {
    /// Not known yet.
    Unknown,
    /// No router: the tracker sees the socket's own address.
    Public,
    /// One public port for every destination: hole punching works.
    EndpointIndependent,
    /// A public port per destination: only public nodes can be reached.
    Symmetric,
}

impl NatType {
    /// Its name, for logs and status lines.
    pub fn name(self) -> &'static str {
        match self {
            NatType::Unknown => "unknown",
            NatType::Public => "public",
            NatType::EndpointIndependent => "endpoint-independent",
            NatType::Symmetric => "symmetric",
        }
    }

    /// A number for a gauge: 0 unknown, 1 public, 2 endpoint-independent,
    /// 3 symmetric.
    pub fn gauge(self) -> u64 {
        match self {
            NatType::Unknown => 0,
            NatType::Public => 1,
            NatType::EndpointIndependent => 2,
            NatType::Symmetric => 3,
        }
    }
}

/// How others see this peer, and whom a PUNCH made it ping lately.
#[derive(Debug, Clone, Default)]
pub(super) struct Traversal {
    /// The tracker's view of this peer's address.
    tracker_seen: Option<SocketAddr>,
    /// Other nodes' views, by their IP address.
    seen: BTreeMap<IpAddr, SocketAddr>,
    /// When a PUNCH last made this peer ping an address.
    punched: BTreeMap<SocketAddr, Time>,
}

impl Traversal {
    /// What the views say of the router in front of a socket bound to
    /// `local` (if known).
    pub(super) fn nat_type(&self, local: Option<SocketAddr>) -> NatType {
        let Some(t) = self.tracker_seen else {
            return NatType::Unknown;
        };
        if local == Some(t) {
            return NatType::Public;
        }
        if self
            .seen
            .values()
            .any(|o| o.ip() == t.ip() && o.port() != t.port())
        {
            return NatType::Symmetric;
        }
        if self.seen.values().any(|o| *o == t) {
            return NatType::EndpointIndependent;
        }
        NatType::Unknown
    }

    /// The tracker saw this peer at `addr`.
    pub(super) fn tracker_saw(&mut self, addr: Option<SocketAddr>) {
        if addr.is_some() {
            self.tracker_seen = addr;
        }
    }

    /// The node at `observer` saw this peer at `addr`.
    pub(super) fn peer_saw(&mut self, observer: SocketAddr, addr: Option<SocketAddr>) {
        let Some(addr) = addr else {
            return;
        };
        if !self.seen.contains_key(&observer.ip()) && self.seen.len() >= SEEN_MAX {
            return;
        }
        self.seen.insert(observer.ip(), addr);
    }
}

impl Peer {
    /// What this peer knows of its router.
    pub fn nat_type(&self) -> NatType {
        self.traversal.nat_type(self.cfg.local_addr)
    }

    /// Before a PING to `to`: a contact that left the last PING unanswered
    /// may sit behind a router; ask the tracker to have it punch.
    pub(super) fn punch_if_unanswered(&mut self, now: Time, to: SocketAddr) {
        let Some(tracker) = self.cfg.tracker else {
            return;
        };
        let Some(c) = self.contacts.get_mut(&to) else {
            return;
        };
        let unanswered = c
            .pinged
            .is_some_and(|p| c.pong.is_none_or(|(at, _)| at < p));
        let due = c
            .punch_asked
            .is_none_or(|t| now.0 >= t.0 + PUNCH_REQUEST_EVERY_US);
        if !unanswered || !due || to == tracker {
            return;
        }
        c.punch_asked = Some(now);
        self.stats.punches_requested += 1;
        let token = self.token_for(tracker);
        let req = Message::PunchRequest(PunchRequest {
            stream: self.tag,
            target: to,
            token,
        });
        self.send(tracker, &req);
    }

    /// A PUNCH: from the tracker, it makes this peer PING the named peer.
    pub(super) fn on_punch(&mut self, now: Time, from: SocketAddr, punch: &Punch) {
        if Some(from) != self.cfg.tracker || punch.stream != self.tag {
            self.stats.punches_ignored += 1;
            return;
        }
        let recent = self
            .traversal
            .punched
            .get(&punch.peer)
            .is_some_and(|t| now.0 < t.0 + PUNCH_ANSWER_EVERY_US);
        if recent {
            self.stats.punches_ignored += 1;
            return;
        }
        if self.traversal.punched.len() >= PUNCHED_MAX {
            self.traversal
                .punched
                .retain(|_, t| now.0 < t.0 + PUNCH_ANSWER_EVERY_US);
            if self.traversal.punched.len() >= PUNCHED_MAX {
                self.stats.punches_ignored += 1;
                return;
            }
        }
        self.traversal.punched.insert(punch.peer, now);
        self.stats.punches_answered += 1;
        let club = self.clubs.first().copied().unwrap_or(0);
        self.ping(now, punch.peer, club);
    }

    /// A validated PING from `from`: if this peer's own PING to it is
    /// still unanswered, the way is open now; ping it again.
    pub(super) fn reping_if_waiting(&mut self, now: Time, from: SocketAddr) {
        let waiting = self.contacts.get(&from).and_then(|c| {
            let sent = c.pinged?;
            let answered = c.pong.is_some_and(|(at, _)| at >= sent);
            (!answered && now.0 >= sent.0 + REPING_AFTER_US).then_some(c.ping_club)
        });
        if let Some(club) = waiting {
            self.ping(now, from, club);
        }
    }

    /// A PONG from a contact whose router was asked to punch: the punch
    /// worked.
    pub(super) fn note_punch_success(&mut self, from: SocketAddr) {
        if let Some(c) = self.contacts.get_mut(&from) {
            if c.punch_asked.take().is_some() {
                self.stats.punches_succeeded += 1;
            }
        }
    }
}
