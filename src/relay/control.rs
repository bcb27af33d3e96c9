//! The relay's control plane: the peer state machine in relay mode,
//! steering the forwarding core that copies the blocks.
//!
//! [`ControlPlane`] is a [`Node`] wrapping a relay-mode [`Peer`] built with
//! `external_fanout`: every control message reaches the state machine, and
//! the BLOCKs the forwarding core (`crate::forward::BlockForwarder`)
//! verified come through the [`Uplink`], so the state machine keeps its
//! store, HAVE announcements, catch-up sends and connection rules, while
//! the core does the fan-out. The core runs either in the AF_XDP workers
//! (the steering program passes all but BLOCKs to the kernel socket) or
//! inline, for the relay on a kernel socket and in the simulator
//! ([`ControlPlane::inline`]): there the BLOCKs that reach the node go to
//! the core, and its copies leave through the node's own transmits. Every
//! `refresh_ms` it turns the peer's uploads into a [`FanoutTable`] (club to
//! next-hop MAC, address and the receiver's HAVE board, so the core skips
//! what a receiver holds) and, when it changed, publishes it, so a peer
//! that connects is served within a refresh and one that vanishes (its
//! upload times out) is dropped from the fan-out without touching the
//! others. Next hops come from an injected [`NextHops`]: the kernel's
//! neighbour table for AF_XDP, none needed otherwise. Uploads whose next
//! hop is not resolved yet are left out of the table and counted; so are
//! uploads to IPv6 peers, which the state machine serves itself.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use super::fanout::{
    fanout_channel, FanoutLimits, FanoutPublisher, FanoutTable, FanoutUpdates, PublishError,
    Subscriber, DEFAULT_CHANNEL_DEPTH,
};
use super::frame::MacAddr;
use super::next_hops::{AnyNextHop, NextHops};
use super::sender_filter::SenderFilter;
use super::uplink::{Uplink, DEFAULT_UPLINK_SLOTS};
use crate::auth::verifier::DEFAULT_WINDOW;
use crate::forward::BlockForwarder;
use crate::io::mem::DatagramQueue;
use crate::roles::{Node, Peer, Time, Transmit};
use crate::wire::{block_tag, parse_header, MessageType};

/// Default period of the fan-out refresh, in milliseconds.
pub const DEFAULT_REFRESH_MS: u64 = 20;

/// Period of the uplink drain, in microseconds.
const DRAIN_US: u64 = 1_000;

/// Copies the inline forwarding core may hold before the node sends
/// them.
const INLINE_QUEUE: usize = 65_536;

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
    /// BLOCKs to the inline core from addresses with no connection to the
    /// relay: dropped before any check (a validated uploader sends the
    /// relay its blocks; anyone else is a stranger or a spoofer).
    pub blocks_unconnected: u64,
    /// BLOCKs to the inline core from a connected address without the
    /// block tag the relay gave it: spoofed, dropped before any check.
    pub blocks_wrong_tag: u64,
}

/// The forwarding core on the node's own thread: for the relay on a
/// kernel socket and in the simulator.
struct InlineCore {
    fwd: BlockForwarder,
    copies: DatagramQueue,
    updates: FanoutUpdates,
}

/// The relay's control plane (see the module documentation).
pub struct ControlPlane {
    peer: Peer,
    uplink: Uplink,
    publishers: Vec<FanoutPublisher>,
    /// A table a worker had no room for yet, per worker.
    unsent: Vec<Option<Arc<FanoutTable>>>,
    hops: Box<dyn NextHops + Send>,
    inline: Option<InlineCore>,
    limits: FanoutLimits,
    refresh_us: u64,
    /// The subscriptions of the newest table (club, receiver, next hop,
    /// the receiver's block tag), sorted.
    published: Vec<(u16, SocketAddrV4, MacAddr, u64)>,
    /// The uploads to serve (club, receiver, its block tag), sorted.
    wanted: Vec<(u16, SocketAddrV4, u64)>,
    now: Time,
    next_refresh: Time,
    stats: ControlStats,
    /// The data plane's sender filter, on AF_XDP.
    senders: Option<Box<dyn SenderFilter>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("inline", &self.inline.is_some())
            .field("workers", &self.publishers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A control plane running `peer` (relay mode, `external_fanout`), fed
    /// by `uplink`, steering the workers behind `publishers` (next hops
    /// from `hops`), refreshing their tables every `refresh_ms`.
    pub fn new(
        peer: Peer,
        uplink: Uplink,
        publishers: Vec<FanoutPublisher>,
        hops: Box<dyn NextHops + Send>,
        limits: FanoutLimits,
        refresh_ms: u64,
    ) -> Self {
        let unsent = vec![None; publishers.len()];
        ControlPlane {
            peer,
            uplink,
            publishers,
            unsent,
            hops,
            inline: None,
            limits,
            refresh_us: refresh_ms.max(1) * 1000,
            published: Vec::new(),
            wanted: Vec::new(),
            now: Time(0),
            next_refresh: Time(0),
            stats: ControlStats::default(),
            senders: None,
        }
    }

    /// Keeps `filter` equal to the relay's uploaders (the senders it
    /// downloads from), so the data plane drops BLOCKs from anyone else.
    pub fn with_sender_filter(mut self, filter: Box<dyn SenderFilter>) -> Self {
        self.senders = Some(filter);
        self
    }

    /// Hands the sender filter the relay's uploaders now, each with the
    /// block tag the relay gave it.
    fn sync_senders(&mut self) {
        if let Some(filter) = self.senders.as_mut() {
            let allowed: BTreeMap<SocketAddrV4, u64> = self
                .peer
                .connections()
                .downloads
                .iter()
                .filter_map(|d| match d.from {
                    SocketAddr::V4(a) => Some((a, d.tag)),
                    SocketAddr::V6(_) => None,
                })
                .collect();
            filter.allow_only(&allowed);
        }
    }

    /// A relay whose forwarding core runs inline, on the node's own
    /// transmits: on a kernel socket, or in the simulator. `peer` is put
    /// in relay mode with `external_fanout` (the core serves its IPv4
    /// uploads).
    pub fn inline(peer: Peer, limits: FanoutLimits, refresh_ms: u64) -> Self {
        let (uplink, sender) = Uplink::new(DEFAULT_UPLINK_SLOTS);
        let (publisher, updates) = fanout_channel(DEFAULT_CHANNEL_DEPTH);
        let mut fwd = BlockForwarder::new(peer.stream(), DEFAULT_WINDOW);
        fwd.set_uplink(sender);
        let mut plane = ControlPlane::new(
            peer,
            uplink,
            vec![publisher],
            Box::new(AnyNextHop),
            limits,
            refresh_ms,
        );
        plane.inline = Some(InlineCore {
            fwd,
            copies: DatagramQueue::new(INLINE_QUEUE),
            updates,
        });
        plane
    }

    /// The inline forwarding core's counters, if it runs inline.
    pub fn inline_stats(&self) -> Option<crate::forward::ForwardStats> {
        self.inline.as_ref().map(|c| c.fwd.stats())
    }

    /// The inline forwarding core's verifier counters, if it runs inline.
    pub fn inline_verifier_stats(&self) -> Option<crate::auth::VerifierStats> {
        self.inline.as_ref().map(|c| c.fwd.verifier_stats())
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

    /// Feeds the verified blocks the workers reported to the state machine,
    /// which records their hashes but does not check their signatures again.
    fn drain_uplink(&mut self, now: Time) {
        let peer = &mut self.peer;
        let n = self
            .uplink
            .drain(|from, bytes| peer.handle_verified(now, SocketAddr::V4(from), bytes));
        self.stats.uplinked += n as u64;
    }

    /// Rebuilds the fan-out table from the uploads and publishes it if it
    /// changed (or a worker still lacks the last one).
    fn refresh(&mut self, now: Time) {
        self.sync_senders();
        self.wanted.clear();
        let mut ipv6 = 0u64;
        for u in &self.peer.connections().uploads {
            match u.to {
                SocketAddr::V4(a) => self.wanted.push((u.club, a, u.tag)),
                SocketAddr::V6(_) => ipv6 += 1,
            }
        }
        self.wanted.sort_unstable();
        self.wanted.dedup();
        let ips: Vec<_> = self.wanted.iter().map(|(_, a, _)| *a.ip()).collect();
        self.hops.refresh(&ips, now);
        let mut next = Vec::with_capacity(self.wanted.len());
        let mut unresolved = 0u64;
        for &(club, addr, tag) in &self.wanted {
            match self.hops.mac(*addr.ip()) {
                Some(mac) => next.push((club, addr, mac, tag)),
                None => unresolved += 1,
            }
        }
        self.stats.unresolved = unresolved;
        self.stats.ipv6_skipped = ipv6;
        if next != self.published {
            let mut builder = FanoutTable::builder(self.limits);
            builder.swarm_clubs(self.peer.club_count());
            let mut over = 0u64;
            let uploads = &self.peer.connections().uploads;
            for &(club, addr, mac, tag) in &next {
                // The upload's HAVEs, so the workers skip what it holds.
                let have = uploads
                    .iter()
                    .find(|u| u.club == club && u.to == SocketAddr::V4(addr))
                    .map(|u| u.have.board());
                let subscriber = Subscriber {
                    mac,
                    addr,
                    tag,
                    have,
                };
                if builder.add(club, subscriber).is_err() {
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
}

impl Node for ControlPlane {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        self.now = self.now.max(now);
        if let (Some(core), SocketAddr::V4(v4)) = (self.inline.as_mut(), from) {
            let is_block = parse_header(datagram).is_ok_and(|(t, _)| t == MessageType::Block);
            if is_block {
                if !self.peer.connections().is_connected(from) {
                    self.stats.blocks_unconnected += 1;
                    return;
                }
                if block_tag(datagram) != Some(self.peer.block_tag(from)) {
                    self.stats.blocks_wrong_tag += 1;
                    return;
                }
                if let Some(table) = core.updates.latest() {
                    core.fwd.set_table(table);
                }
                core.fwd.handle(v4, datagram, now.0, &mut core.copies);
                // What the core verified reaches the state machine at once.
                self.drain_uplink(now);
                return;
            }
        }
        self.peer.handle_datagram(now, from, datagram);
        // A connection made or dropped changes who may send BLOCKs.
        self.sync_senders();
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
        if let Some(core) = self.inline.as_mut() {
            while let Some((to, bytes)) = core.copies.pop() {
                if let Some(t) = Transmit::new(to, &bytes) {
                    return Some(t);
                }
            }
        }
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

    fn leave(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.peer.leave(now);
        // No connection left: the data plane forwards to no one.
        self.sync_senders();
    }
}
