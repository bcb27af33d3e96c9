//! A deterministic in-memory network that runs sans-IO roles.
//!
//! Nodes (anything implementing [`Node`]) sit at made-up socket addresses,
//! each with a [`LinkProfile`] for its outgoing traffic: a serialization
//! queue of limited upload capacity and length, then loss, latency and
//! uniform jitter. One event queue, ordered by (time, insertion number),
//! carries both deliveries and node timers, and one seeded RNG makes every
//! random choice, so a seed replays the same run event for event. Datagram
//! buffers live in a reused pool and the queue holds only small keys, so a
//! running network allocates nothing per event once warm. Nothing a node
//! does (sending to itself, to nobody, or asking for a timer in the past)
//! can make the network panic.
//!
//! Two impairments sit on the node rather than the link: a clock offset
//! (the node is handed times shifted by it, and its timers are shifted
//! back, so nodes disagree about the time as real machines do) and an
//! outage (while it lasts, every datagram to or from the node is lost, as
//! when a home link or Wi-Fi stalls).
//!
//! A node may sit behind a home router ([`Nat`], added with
//! [`Network::add_nat`] and [`Network::add_behind`]) at a private address:
//! what it sends to the public side leaves translated to the router's
//! address and a mapped port, what comes to that port gets in only as the
//! router's filtering allows, and nodes behind one router reach each other
//! by their private addresses, which mean nothing from anywhere else.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::nat::{Nat, NatKind, NatStats};
use crate::roles::{Node, Time, Transmit};

/// The handle of a node in a [`Network`]. Handles are never reused: a
/// removed node's handle stays dead even when another node takes its
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u32);

impl NodeId {
    /// The position of the node in order of addition, from 0.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a node's outgoing datagrams travel.
///
/// A datagram first waits in the node's upload queue (when
/// `upload_bytes_per_s` is set), then is lost with probability `loss`, and
/// otherwise arrives `latency_us` plus a uniform draw from
/// `[0, jitter_us]` after it has left the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfile {
    /// One-way delay, in microseconds.
    pub latency_us: u64,
    /// Largest extra delay, in microseconds, drawn uniformly per datagram
    /// (so datagrams can overtake each other).
    pub jitter_us: u64,
    /// Probability, from 0 to 1, that a datagram is lost (values outside
    /// the range and NaN are clamped; NaN counts as 0).
    pub loss: f64,
    /// Upload capacity in bytes per second; `None` sends instantly.
    /// `Some(0)` drops everything as queue overflow.
    pub upload_bytes_per_s: Option<u64>,
    /// Most bytes waiting in the upload queue, the new datagram included;
    /// a datagram that would exceed this is dropped. Only applies with an
    /// upload capacity.
    pub queue_limit_bytes: u64,
}

impl LinkProfile {
    /// A perfect link: no delay, no loss, no capacity limit.
    pub const IDEAL: LinkProfile = LinkProfile {
        latency_us: 0,
        jitter_us: 0,
        loss: 0.0,
        upload_bytes_per_s: None,
        queue_limit_bytes: u64::MAX,
    };

    /// A lossless, unlimited link with `ms` milliseconds of one-way delay.
    pub fn with_latency_ms(ms: u64) -> Self {
        LinkProfile {
            latency_us: ms.saturating_mul(1000),
            ..Self::IDEAL
        }
    }

    /// This profile with up to `ms` milliseconds of jitter.
    pub fn jitter_ms(self, ms: u64) -> Self {
        LinkProfile {
            jitter_us: ms.saturating_mul(1000),
            ..self
        }
    }

    /// This profile with loss probability `loss`.
    pub fn loss(self, loss: f64) -> Self {
        LinkProfile { loss, ..self }
    }

    /// This profile with an upload capacity of `bytes_per_s` and a queue of
    /// at most `queue_limit_bytes`.
    pub fn upload(self, bytes_per_s: u64, queue_limit_bytes: u64) -> Self {
        LinkProfile {
            upload_bytes_per_s: Some(bytes_per_s),
            queue_limit_bytes,
            ..self
        }
    }
}

impl Default for LinkProfile {
    /// [`LinkProfile::IDEAL`].
    fn default() -> Self {
        Self::IDEAL
    }
}

/// Network-wide counters, in datagrams unless named in bytes.
///
/// Every datagram a node sends ends up in exactly one of `delivered`,
/// `lost`, `queue_dropped`, `outage_dropped`, `nat_dropped`, `to_unknown`,
/// `to_removed`, or is still in flight: `sent == delivered + lost +
/// queue_dropped + outage_dropped + nat_dropped + to_unknown + to_removed +
/// in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams nodes handed to the network.
    pub sent: u64,
    /// Bytes nodes handed to the network.
    pub bytes_sent: u64,
    /// Datagrams handed to their destination.
    pub delivered: u64,
    /// Bytes handed to their destination.
    pub bytes_delivered: u64,
    /// Datagrams lost on the link.
    pub lost: u64,
    /// Datagrams dropped because the sender's upload queue was full.
    pub queue_dropped: u64,
    /// Datagrams for an address no node has ever had while they were on the
    /// way.
    pub to_unknown: u64,
    /// Datagrams whose destination was removed while they were on the way.
    pub to_removed: u64,
    /// Datagrams lost because their sender or receiver was in an outage.
    pub outage_dropped: u64,
    /// Datagrams a router dropped (filtered on the way in, sent to its own
    /// public address from behind it) or that went to a private address
    /// from outside its router.
    pub nat_dropped: u64,
    /// Datagrams placed with [`Network::inject`] (not counted in `sent`).
    pub injected: u64,
    /// Timer calls made into nodes.
    pub timeouts: u64,
}

/// Per-node counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams the node sent.
    pub sent: u64,
    /// Bytes the node sent.
    pub bytes_sent: u64,
    /// Datagrams the node received (injected ones included).
    pub received: u64,
    /// Bytes the node received (injected ones included).
    pub bytes_received: u64,
    /// Of the datagrams sent, those lost on the link.
    pub lost: u64,
    /// Of the datagrams sent, those dropped by a full upload queue.
    pub queue_dropped: u64,
    /// Datagrams sent or due to arrive while the node's link was down.
    pub outage_dropped: u64,
    /// Timer calls made into the node.
    pub timeouts: u64,
}

/// What an event does.
#[derive(Debug, Clone, Copy)]
enum EventKind {
    /// Deliver the datagram in packet slot `.0`.
    Deliver(u32),
    /// Timer of `node`, valid while the node's timer generation is `gen`.
    Timer { node: u32, gen: u32 },
}

/// An entry of the event queue, ordered so the max-heap pops the earliest
/// time first and, within one time, the earliest inserted.
#[derive(Debug, Clone, Copy)]
struct Event {
    at: Time,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A datagram on the way.
struct Packet {
    from: SocketAddr,
    /// The node at the destination address when it was sent.
    dest: Option<NodeId>,
    transmit: Transmit,
}

/// A node with its place on the network.
struct Slot<N> {
    node: N,
    link: Link,
    /// Generation of the valid timer event; older ones are ignored.
    timer_gen: u32,
    /// Time of the valid pending timer event, if any.
    timer_at: Option<Time>,
    /// Waiting to be synced after outside access through `node_mut`.
    dirty: bool,
    /// Added to the network's time to give the node's own.
    clock_offset_us: i64,
}

/// A network time as a node with `offset_us` sees it (saturating at 0).
fn local(t: Time, offset_us: i64) -> Time {
    Time(t.0.saturating_add_signed(offset_us))
}

/// A node's time (with `offset_us`) on the network's clock (saturating).
fn global(t: Time, offset_us: i64) -> Time {
    Time(t.0.saturating_add_signed(offset_us.saturating_neg()))
}

/// A node's outgoing side and counters (split from the node so routing can
/// borrow it alongside the node).
struct Link {
    addr: SocketAddr,
    profile: LinkProfile,
    /// When the upload queue empties, in nanoseconds.
    busy_until_ns: u64,
    /// While the network's time is before this, the node's link is down.
    down_until: Time,
    /// The router the node sits behind, if any.
    nat: Option<u32>,
    stats: NodeStats,
}

/// Everything but the nodes: clock, RNG, event queue, datagram pool.
struct Core {
    now: Time,
    rng: SmallRng,
    seq: u64,
    events: BinaryHeap<Event>,
    packets: Vec<Option<Packet>>,
    free_packets: Vec<u32>,
    addrs: HashMap<SocketAddr, NodeId>,
    nats: Vec<Nat>,
    /// Routers by public address.
    nat_ips: HashMap<IpAddr, u32>,
    /// Private addresses, with their router.
    behind: HashMap<SocketAddr, u32>,
    stats: NetStats,
}

impl Core {
    fn push(&mut self, at: Time, kind: EventKind) {
        let seq = self.seq;
        self.seq += 1;
        self.events.push(Event { at, seq, kind });
    }

    fn store(&mut self, packet: Packet) -> u32 {
        match self.free_packets.pop() {
            Some(i) => {
                self.packets[i as usize] = Some(packet);
                i
            }
            None => {
                self.packets.push(Some(packet));
                (self.packets.len() - 1) as u32
            }
        }
    }

    /// Takes one datagram from the node behind `link` into the network.
    fn route(&mut self, link: &mut Link, transmit: Transmit) {
        let len = transmit.payload().len() as u64;
        self.stats.sent += 1;
        self.stats.bytes_sent += len;
        link.stats.sent += 1;
        link.stats.bytes_sent += len;
        if self.now < link.down_until {
            self.stats.outage_dropped += 1;
            link.stats.outage_dropped += 1;
            return;
        }
        let p = link.profile;

        let depart = match p.upload_bytes_per_s {
            None => self.now,
            Some(0) => {
                self.stats.queue_dropped += 1;
                link.stats.queue_dropped += 1;
                return;
            }
            Some(cap) => {
                let now_ns = self.now.0.saturating_mul(1000);
                let start = link.busy_until_ns.max(now_ns);
                let waiting = u128::from(start - now_ns) * u128::from(cap) / 1_000_000_000;
                if waiting + u128::from(len) > u128::from(p.queue_limit_bytes) {
                    self.stats.queue_dropped += 1;
                    link.stats.queue_dropped += 1;
                    return;
                }
                let busy = (u128::from(len) * 1_000_000_000).div_ceil(u128::from(cap));
                let end = start.saturating_add(u64::try_from(busy).unwrap_or(u64::MAX));
                link.busy_until_ns = end;
                Time(end.div_ceil(1000))
            }
        };

        let loss = if p.loss.is_nan() {
            0.0
        } else {
            p.loss.clamp(0.0, 1.0)
        };
        if loss > 0.0 && self.rng.random::<f64>() < loss {
            self.stats.lost += 1;
            link.stats.lost += 1;
            return;
        }
        let jitter = if p.jitter_us > 0 {
            self.rng.random_range(0..=p.jitter_us)
        } else {
            0
        };
        let at = Time(depart.0.saturating_add(p.latency_us).saturating_add(jitter));
        let Some((from, dest)) = self.path(link, transmit.to) else {
            self.stats.nat_dropped += 1;
            return;
        };
        let slot = self.store(Packet {
            from,
            dest,
            transmit,
        });
        self.push(at, EventKind::Deliver(slot));
    }
}

impl Core {
    /// Where a datagram from the node behind `link` to `to` comes from, as
    /// the receiver sees it, and the node it reaches (`None` for an
    /// address nobody has); `None` when a router drops it.
    fn path(&mut self, link: &Link, to: SocketAddr) -> Option<(SocketAddr, Option<NodeId>)> {
        let now = self.now;
        let mine = link.nat;
        // Translated on the way out, unless it stays behind the router.
        let leave = |core: &mut Core| match mine {
            Some(n) => core.nats[n as usize].outbound(now, link.addr, to),
            None => link.addr,
        };
        if let Some(&router) = self.nat_ips.get(&to.ip()) {
            if mine == Some(router) {
                self.nats[router as usize].drop_hairpin();
                return None;
            }
            let from = leave(self);
            let private = self.nats[router as usize].inbound(now, to.port(), from)?;
            return Some((from, self.addrs.get(&private).copied()));
        }
        match self.behind.get(&to).copied() {
            Some(router) if mine == Some(router) => Some((link.addr, self.addrs.get(&to).copied())),
            Some(_) => None,
            None => Some((leave(self), self.addrs.get(&to).copied())),
        }
    }
}

/// A router's handle in a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(u32);

/// A deterministic in-memory network of sans-IO nodes.
///
/// Add nodes with [`Network::add`], advance time with
/// [`Network::run_until`], and look at nodes and counters in between. Time
/// starts at 0 and only moves inside `run_until` and [`Network::step`].
pub struct Network<N: Node> {
    slots: Vec<Option<Slot<N>>>,
    core: Core,
    dirty: Vec<u32>,
    live: usize,
}

impl<N: Node> Network<N> {
    /// An empty network at time 0 whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        Network {
            slots: Vec::new(),
            core: Core {
                now: Time(0),
                rng: SmallRng::seed_from_u64(seed),
                seq: 0,
                events: BinaryHeap::new(),
                packets: Vec::new(),
                free_packets: Vec::new(),
                addrs: HashMap::new(),
                nats: Vec::new(),
                nat_ips: HashMap::new(),
                behind: HashMap::new(),
                stats: NetStats::default(),
            },
            dirty: Vec::new(),
            live: 0,
        }
    }

    /// The current time.
    pub fn now(&self) -> Time {
        self.core.now
    }

    /// Adds `node` at `addr` with `profile` for its outgoing traffic. The
    /// node starts now: what it has queued to send leaves now, and its
    /// timer is armed from [`Node::poll_timeout`].
    ///
    /// # Panics
    /// When another node already has `addr` (see [`Network::try_add`]).
    pub fn add(&mut self, addr: SocketAddr, profile: LinkProfile, node: N) -> NodeId {
        match self.try_add(addr, profile, node) {
            Ok(id) => id,
            Err(_) => panic!("address {addr} is already on the network"),
        }
    }

    /// Like [`Network::add`], but hands the node back when `addr` is taken.
    pub fn try_add(
        &mut self,
        addr: SocketAddr,
        profile: LinkProfile,
        node: N,
    ) -> Result<NodeId, N> {
        self.place(addr, None, profile, node)
    }

    /// Adds a home router with public address `public_ip` (which no node
    /// may have) that maps as `kind` says.
    pub fn add_nat(&mut self, public_ip: IpAddr, kind: NatKind) -> NatId {
        let id = self.core.nats.len() as u32;
        self.core.nats.push(Nat::new(public_ip, kind));
        self.core.nat_ips.insert(public_ip, id);
        NatId(id)
    }

    /// Adds `node` behind router `nat` at the private address `private`
    /// (unique on the network). Hands the node back when `private` is
    /// taken or `nat` unknown.
    pub fn add_behind(
        &mut self,
        nat: NatId,
        private: SocketAddr,
        profile: LinkProfile,
        node: N,
    ) -> Result<NodeId, N> {
        if nat.0 as usize >= self.core.nats.len() {
            return Err(node);
        }
        let id = self.place(private, Some(nat.0), profile, node)?;
        self.core.behind.insert(private, nat.0);
        Ok(id)
    }

    /// What router `nat` did so far.
    pub fn nat_stats(&self, nat: NatId) -> Option<NatStats> {
        self.core.nats.get(nat.0 as usize).map(Nat::stats)
    }

    /// The public address of router `nat`.
    pub fn nat_ip(&self, nat: NatId) -> Option<IpAddr> {
        self.core.nats.get(nat.0 as usize).map(Nat::public_ip)
    }

    fn place(
        &mut self,
        addr: SocketAddr,
        nat: Option<u32>,
        profile: LinkProfile,
        node: N,
    ) -> Result<NodeId, N> {
        if self.core.addrs.contains_key(&addr) {
            return Err(node);
        }
        self.flush_dirty();
        let Ok(index) = u32::try_from(self.slots.len()) else {
            return Err(node);
        };
        let id = NodeId(index);
        self.slots.push(Some(Slot {
            node,
            link: Link {
                addr,
                profile,
                busy_until_ns: 0,
                down_until: Time(0),
                nat,
                stats: NodeStats::default(),
            },
            timer_gen: 0,
            timer_at: None,
            dirty: false,
            clock_offset_us: 0,
        }));
        self.core.addrs.insert(addr, id);
        self.live += 1;
        self.sync(index, false);
        Ok(id)
    }

    /// Takes a node off the network at once, as if it crashed. Datagrams on
    /// the way to it are dropped when they arrive and counted in
    /// [`NetStats::to_removed`]; those it sent are still delivered. Returns
    /// `None` when `id` was already removed.
    pub fn remove(&mut self, id: NodeId) -> Option<N> {
        let slot = self.slots.get_mut(id.index())?.take()?;
        self.core.addrs.remove(&slot.link.addr);
        self.core.behind.remove(&slot.link.addr);
        self.live -= 1;
        Some(slot.node)
    }

    /// Changes the profile of a node's outgoing link from now on (what is
    /// already in its upload queue keeps its departure time). False when
    /// `id` was removed.
    pub fn set_profile(&mut self, id: NodeId, profile: LinkProfile) -> bool {
        match self.slots.get_mut(id.index()).and_then(Option::as_mut) {
            Some(slot) => {
                slot.link.profile = profile;
                true
            }
            None => false,
        }
    }

    /// Shifts node `id`'s clock by `offset_us` from the network's (from
    /// now on; its pending timer is re-armed on its own clock). A node's
    /// time saturates at 0, so give every node of a run a common positive
    /// offset before skewing some of them backwards. False when `id` was
    /// removed.
    pub fn set_clock_offset(&mut self, id: NodeId, offset_us: i64) -> bool {
        match self.slots.get_mut(id.index()).and_then(Option::as_mut) {
            Some(slot) => {
                slot.clock_offset_us = offset_us;
                slot.timer_at = None;
                self.sync(id.0, false);
                true
            }
            None => false,
        }
    }

    /// Takes node `id`'s link down from now until `until` (network time):
    /// what it sends and what arrives for it meanwhile is lost and counted
    /// in `outage_dropped`. Its timers still run. False when `id` was
    /// removed.
    pub fn set_outage(&mut self, id: NodeId, until: Time) -> bool {
        match self.slots.get_mut(id.index()).and_then(Option::as_mut) {
            Some(slot) => {
                slot.link.down_until = until;
                true
            }
            None => false,
        }
    }

    /// The node `id`.
    ///
    /// # Panics
    /// When `id` was removed (see [`Network::get`]).
    pub fn node(&self, id: NodeId) -> &N {
        self.get(id).expect("node was removed from the network")
    }

    /// The node `id`, mutably. What it queues to send leaves, and a changed
    /// timer is armed, at the current time when the network next runs.
    ///
    /// # Panics
    /// When `id` was removed (see [`Network::get_mut`]).
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        self.get_mut(id).expect("node was removed from the network")
    }

    /// The node `id`, or `None` when it was removed.
    pub fn get(&self, id: NodeId) -> Option<&N> {
        Some(&self.slots.get(id.index())?.as_ref()?.node)
    }

    /// The node `id` mutably, or `None` when it was removed; see
    /// [`Network::node_mut`].
    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut N> {
        let slot = self.slots.get_mut(id.index())?.as_mut()?;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(id.0);
        }
        Some(&mut slot.node)
    }

    /// The node at `addr`, if any.
    pub fn id_of(&self, addr: SocketAddr) -> Option<NodeId> {
        self.core.addrs.get(&addr).copied()
    }

    /// The address of node `id`, or `None` when it was removed.
    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        Some(self.slots.get(id.index())?.as_ref()?.link.addr)
    }

    /// The nodes on the network, in order of addition.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, SocketAddr, &N)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (NodeId(i as u32), s.link.addr, &s.node)))
    }

    /// The nodes on the network mutably, in order of addition; each is
    /// synced as with [`Network::node_mut`].
    pub fn nodes_mut(&mut self) -> impl Iterator<Item = (NodeId, SocketAddr, &mut N)> + '_ {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(s) = s.as_mut() {
                if !s.dirty {
                    s.dirty = true;
                    self.dirty.push(i as u32);
                }
            }
        }
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            s.as_mut()
                .map(|s| (NodeId(i as u32), s.link.addr, &mut s.node))
        })
    }

    /// Nodes on the network.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no node is on the network.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Network-wide counters.
    pub fn stats(&self) -> NetStats {
        self.core.stats
    }

    /// Counters of node `id`, or `None` when it was removed.
    pub fn node_stats(&self, id: NodeId) -> Option<NodeStats> {
        Some(self.slots.get(id.index())?.as_ref()?.link.stats)
    }

    /// Datagrams on the way.
    pub fn in_flight(&self) -> usize {
        self.core.packets.len() - self.core.free_packets.len()
    }

    /// When the next event is due, if any (it may be a timer that turns out
    /// to have nothing to do).
    pub fn next_event(&self) -> Option<Time> {
        self.core.events.peek().map(|e| e.at)
    }

    /// Hands `bytes` from `from` to the node at `to` now, before returning,
    /// bypassing links and counters of senders: for forged or malformed
    /// input in tests. Any length is allowed. False (and nothing happens)
    /// when no node has `to`.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) -> bool {
        self.flush_dirty();
        let Some(id) = self.core.addrs.get(&to).copied() else {
            return false;
        };
        let Some(slot) = self.slots.get_mut(id.index()).and_then(Option::as_mut) else {
            return false;
        };
        self.core.stats.injected += 1;
        slot.link.stats.received += 1;
        slot.link.stats.bytes_received += bytes.len() as u64;
        let now = local(self.core.now, slot.clock_offset_us);
        slot.node.handle_datagram(now, from, bytes);
        self.sync(id.0, false);
        true
    }

    /// Runs every event due up to and including `t`, then sets the clock
    /// to `t` (it never goes back). Events that come due at or before `t`
    /// while running are run too: with zero latency, nodes that answer each
    /// other forever keep this from returning.
    pub fn run_until(&mut self, t: Time) {
        self.flush_dirty();
        while self.core.events.peek().is_some_and(|e| e.at <= t) {
            self.step_one();
        }
        self.core.now = self.core.now.max(t);
    }

    /// Runs for `us` microseconds from now.
    pub fn run_for_us(&mut self, us: u64) {
        self.run_until(Time(self.core.now.0.saturating_add(us)));
    }

    /// Runs the next event alone, moving the clock to it; returns its
    /// time, or `None` when nothing is scheduled.
    pub fn step(&mut self) -> Option<Time> {
        self.flush_dirty();
        if self.core.events.is_empty() {
            return None;
        }
        self.step_one();
        Some(self.core.now)
    }

    fn step_one(&mut self) {
        let Some(ev) = self.core.events.pop() else {
            return;
        };
        self.core.now = self.core.now.max(ev.at);
        match ev.kind {
            EventKind::Deliver(p) => self.deliver(p),
            EventKind::Timer { node, gen } => self.fire(node, gen),
        }
    }

    fn deliver(&mut self, p: u32) {
        let Some(packet) = self.core.packets.get_mut(p as usize).and_then(Option::take) else {
            return;
        };
        self.core.free_packets.push(p);
        let alive = |id: NodeId, slots: &[Option<Slot<N>>]| {
            slots.get(id.index()).is_some_and(|s| s.is_some())
        };
        // The node seen at send time if it is still there; otherwise
        // whoever has the address now (a node may have taken it since).
        let target = match packet.dest {
            Some(id) if alive(id, &self.slots) => Some(id),
            _ => self.core.addrs.get(&packet.transmit.to).copied(),
        };
        let Some(id) = target else {
            if packet.dest.is_some() {
                self.core.stats.to_removed += 1;
            } else {
                self.core.stats.to_unknown += 1;
            }
            return;
        };
        let Some(slot) = self.slots.get_mut(id.index()).and_then(Option::as_mut) else {
            self.core.stats.to_unknown += 1;
            return;
        };
        if self.core.now < slot.link.down_until {
            self.core.stats.outage_dropped += 1;
            slot.link.stats.outage_dropped += 1;
            return;
        }
        let bytes = packet.transmit.payload();
        let len = bytes.len() as u64;
        self.core.stats.delivered += 1;
        self.core.stats.bytes_delivered += len;
        slot.link.stats.received += 1;
        slot.link.stats.bytes_received += len;
        let now = local(self.core.now, slot.clock_offset_us);
        slot.node.handle_datagram(now, packet.from, bytes);
        self.sync(id.0, false);
    }

    fn fire(&mut self, index: u32, gen: u32) {
        let now = self.core.now;
        let Some(slot) = self.slots.get_mut(index as usize).and_then(Option::as_mut) else {
            return;
        };
        if slot.timer_gen != gen {
            return;
        }
        slot.timer_at = None;
        let now = local(now, slot.clock_offset_us);
        let fired = match slot.node.poll_timeout() {
            Some(t) if t <= now => {
                self.core.stats.timeouts += 1;
                slot.link.stats.timeouts += 1;
                slot.node.handle_timeout(now);
                true
            }
            // Moved later since the event was queued: re-armed below.
            _ => false,
        };
        self.sync(index, fired);
    }

    /// Drains node `index`'s transmits into the network and re-arms its
    /// timer. After a timeout call a deadline not in the future is pushed
    /// to the next microsecond, so a node cannot spin at one instant.
    fn sync(&mut self, index: u32, after_timeout: bool) {
        let Some(slot) = self.slots.get_mut(index as usize).and_then(Option::as_mut) else {
            return;
        };
        while let Some(t) = slot.node.poll_transmit() {
            self.core.route(&mut slot.link, t);
        }
        let now = self.core.now;
        let Some(want) = slot.node.poll_timeout() else {
            // A pending event may stay: it finds nothing due and lapses.
            return;
        };
        let want = global(want, slot.clock_offset_us);
        let at = if after_timeout && want <= now {
            Time(now.0.saturating_add(1))
        } else {
            want.max(now)
        };
        // One pending event per node: a later deadline is reached through
        // the pending earlier event (which re-arms when it finds nothing
        // due); only an earlier one needs a new event.
        if slot.timer_at.is_some_and(|pending| pending <= at) {
            return;
        }
        slot.timer_gen = slot.timer_gen.wrapping_add(1);
        slot.timer_at = Some(at);
        let gen = slot.timer_gen;
        self.core.push(at, EventKind::Timer { node: index, gen });
    }

    /// Syncs the nodes touched through `node_mut`, in the order touched.
    fn flush_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            if let Some(slot) = self.slots.get_mut(i as usize).and_then(Option::as_mut) {
                slot.dirty = false;
            }
            self.sync(i, false);
        }
        dirty.clear();
        self.dirty = dirty;
    }
}

impl<N: Node> std::fmt::Debug for Network<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("now", &self.core.now)
            .field("nodes", &self.live)
            .field("events", &self.core.events.len())
            .field("in_flight", &self.in_flight())
            .field("stats", &self.core.stats)
            .finish()
    }
}
