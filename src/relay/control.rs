//! The relay's control plane: the peer state machine in relay mode on the
//! kernel socket, steering the AF_XDP workers.
//!
//! [`ControlPlane`] is a [`Node`] wrapping a relay-mode [`Peer`] built with
//! `external_fanout`: every control message comes through the kernel socket
//! (the steering program passes all but BLOCKs), and the BLOCKs the workers
//! verified come through the [`Uplink`], so the state machine keeps its
//! store, HAVE announcements, catch-up sends and connection rules exactly
//! as on a kernel socket, while the workers do the fan-out. Every
//! `refresh_ms` it turns the peer's uploads into a [`FanoutTable`] (club to
//! next-hop MAC and address, from the kernel's neighbour table) and, when
//! it changed, publishes it to every worker, so a peer that connects is
//! served within a refresh and one that vanishes (its upload times out) is
//! dropped from the fan-out without touching the others. Uploads to
//! addresses the kernel has not resolved yet are left out of the table and
//! counted; so are uploads to IPv6 peers, which the state machine serves
//! itself on the kernel socket. The workers copy a block to every subscriber of
//! its club except its sender: the per-receiver HAVE suppression of the
//! kernel path is not applied on the hot path, so an in-club receiver that
//! already had a block from elsewhere counts the relay's copy as a
//! duplicate.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use super::fanout::{FanoutLimits, FanoutPublisher, FanoutTable, PublishError, Subscriber};
use super::frame::MacAddr;
use super::neighbours::{InterfaceInfo, NeighbourTable};
use super::uplink::Uplink;
use crate::roles::{Node, Peer, Time, Transmit};

/// Default period of the fan-out refresh, in milliseconds.
pub const DEFAULT_REFRESH_MS: u64 = 20;

/// Period of the uplink drain, in microseconds.
const DRAIN_US: u64 = 1_000;

/// Period of a full re-read of the neighbour table, in microseconds (the
/// table is also read whenever a subscriber's MAC is not known).
const NEIGHBOUR_REREAD_US: u64 = 5_000_000;

/// Counters of the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlStats {
    /// Verified blocks taken from the uplink and fed to the state machine.
    pub uplinked: u64,
    /// Fan-out tables published (to all workers).
    pub tables_published: u64,
    /// Subscriptions in the newest table.
    pub subscriptions: u64,
    /// Uploads left out of the newest table: next hop not resolved yet.
    pub unresolved: u64,
    /// Uploads left out of the newest table: IPv6 receivers (the data
    /// plane speaks IPv4; the state machine sends them their blocks).
    pub ipv6_skipped: u64,
    /// Uploads over the table's limits, left out of the newest table.
    pub over_limit: u64,
    /// Publications that found a worker gone.
    pub workers_gone: u64,
}

/// The relay's control plane (see the module documentation).
pub struct ControlPlane {
    peer: Peer,
    uplink: Uplink,
    publishers: Vec<FanoutPublisher>,
    /// A table a worker had no room for yet, per worker.
    unsent: Vec<Option<Arc<FanoutTable>>>,
    iface: InterfaceInfo,
    ifname: String,
    limits: FanoutLimits,
    refresh_us: u64,
    macs: HashMap<Ipv4Addr, MacAddr>,
    macs_read_at: Option<Time>,
    /// The subscriptions of the newest table, sorted.
    published: Vec<(u16, SocketAddrV4, MacAddr)>,
    wanted: Vec<(u16, SocketAddrV4)>,
    now: Time,
    next_refresh: Time,
    stats: ControlStats,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("ifname", &self.ifname)
            .field("workers", &self.publishers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A control plane running `peer` (relay mode, `external_fanout`) on
    /// interface `ifname`, fed by `uplink`, steering the workers behind
    /// `publishers`, refreshing their tables every `refresh_ms`.
    pub fn new(
        peer: Peer,
        uplink: Uplink,
        publishers: Vec<FanoutPublisher>,
        ifname: &str,
        iface: InterfaceInfo,
        limits: FanoutLimits,
        refresh_ms: u64,
    ) -> Self {
        let unsent = vec![None; publishers.len()];
        ControlPlane {
            peer,
            uplink,
            publishers,
            unsent,
            iface,
            ifname: ifname.to_owned(),
            limits,
            refresh_us: refresh_ms.max(1) * 1000,
            macs: HashMap::new(),
            macs_read_at: None,
            published: Vec::new(),
            wanted: Vec::new(),
            now: Time(0),
            next_refresh: Time(0),
            stats: ControlStats::default(),
        }
    }

    /// The relay's state machine.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The relay's state machine, to take its events.
    pub fn peer_mut(&mut self) -> &mut Peer {
        &mut self.peer
    }

    /// The counters so far.
    pub fn stats(&self) -> ControlStats {
        self.stats
    }

    /// Reports the workers could not hand over: no free uplink slot.
    pub fn uplink_dropped(&self) -> u64 {
        self.uplink.dropped()
    }

    /// Distinct receivers in the newest fan-out table.
    pub fn subscribers(&self) -> usize {
        self.subscriber_addrs().len()
    }

    /// The receivers in the newest fan-out table, sorted, each once.
    pub fn subscriber_addrs(&self) -> Vec<SocketAddrV4> {
        let mut addrs: Vec<SocketAddrV4> = self.published.iter().map(|s| s.1).collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }

    /// Distinct clubs in the newest fan-out table.
    pub fn clubs_served(&self) -> usize {
        let mut clubs: Vec<u16> = self.published.iter().map(|s| s.0).collect();
        clubs.dedup();
        clubs.len()
    }

    /// Feeds the verified blocks the workers reported to the state machine.
    fn drain_uplink(&mut self, now: Time) {
        let peer = &mut self.peer;
        let n = self
            .uplink
            .drain(|from, bytes| peer.handle_datagram(now, SocketAddr::V4(from), bytes));
        self.stats.uplinked += n as u64;
    }

    /// Rebuilds the fan-out table from the uploads and publishes it if it
    /// changed (or a worker still lacks the last one).
    fn refresh(&mut self, now: Time) {
        self.wanted.clear();
        let mut ipv6 = 0u64;
        for u in &self.peer.connections().uploads {
            match u.to {
                SocketAddr::V4(a) => self.wanted.push((u.club, a)),
                SocketAddr::V6(_) => ipv6 += 1,
            }
        }
        self.wanted.sort_unstable();
        self.wanted.dedup();
        let stale = self
            .macs_read_at
            .is_none_or(|t| now.0 >= t.0 + NEIGHBOUR_REREAD_US);
        let unknown = self
            .wanted
            .iter()
            .any(|(_, a)| !self.macs.contains_key(a.ip()));
        if stale || unknown {
            self.read_neighbours(now);
        }
        let mut next = Vec::with_capacity(self.wanted.len());
        let mut unresolved = 0u64;
        for &(club, addr) in &self.wanted {
            match self.macs.get(addr.ip()) {
                Some(&mac) => next.push((club, addr, mac)),
                None => unresolved += 1,
            }
        }
        self.stats.unresolved = unresolved;
        self.stats.ipv6_skipped = ipv6;
        if next != self.published {
            let mut builder = FanoutTable::builder(self.limits);
            builder.swarm_clubs(self.peer.club_count());
            let mut over = 0u64;
            for &(club, addr, mac) in &next {
                if builder.add(club, Subscriber { mac, addr }).is_err() {
                    over += 1;
                }
            }
            let table = Arc::new(builder.build());
            self.stats.over_limit = over;
            self.stats.subscriptions = table.subscription_count() as u64;
            self.stats.tables_published += 1;
            self.published = next;
            for slot in &mut self.unsent {
                *slot = Some(Arc::clone(&table));
            }
        }
        self.publish_unsent();
    }

    /// Hands each worker the newest table it has not taken yet.
    fn publish_unsent(&mut self) {
        for (publisher, slot) in self.publishers.iter().zip(&mut self.unsent) {
            let Some(table) = slot.take() else {
                continue;
            };
            match publisher.publish(table) {
                Ok(()) => {}
                Err(PublishError::Full(table)) => *slot = Some(table),
                Err(PublishError::WorkerGone(_)) => self.stats.workers_gone += 1,
            }
        }
    }

    /// Re-reads the next-hop MACs of every wanted receiver.
    fn read_neighbours(&mut self, now: Time) {
        self.macs_read_at = Some(now);
        let Ok(table) = NeighbourTable::read(&self.ifname) else {
            return;
        };
        self.macs.clear();
        for &(_, addr) in &self.wanted {
            if let Some(mac) = table.next_hop(&self.iface, *addr.ip()) {
                self.macs.insert(*addr.ip(), mac);
            }
        }
    }
}

impl Node for ControlPlane {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        self.now = self.now.max(now);
        self.peer.handle_datagram(now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.drain_uplink(now);
        if self.peer.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.handle_timeout(now);
        }
        if now >= self.next_refresh {
            self.next_refresh = Time(now.0 + self.refresh_us);
            self.refresh(now);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.peer.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Time> {
        let drain = Time(self.now.0 + DRAIN_US);
        Some(
            [
                self.peer.poll_timeout(),
                Some(drain),
                Some(self.next_refresh),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(drain),
        )
    }
}
