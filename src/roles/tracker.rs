//! The tracker ([0015]-[0016], [0030]-[0031]) as a sans-IO state machine.
//!
//! It keeps the swarm's peer list: address and port (the datagram's source),
//! the peer's clubs, and an expiry pushed forward by every heartbeat.
//! A JOIN adds the peer and is answered with a PEER_LIST: a random partial
//! list of other peers that fits one datagram, the club count, and two
//! recommended clubs from a shuffled list refilled when empty. Peers whose
//! heartbeat stops are removed on the next sweep. The table is bounded; a
//! join beyond the bound, a datagram for another stream, and anything that
//! is not a tracker message are counted and dropped. Only an address that
//! has shown it receives at its source address is listed: a JOIN without
//! the tracker's token for it is answered with a RETRY carrying one
//! (`super::token`), and a HEARTBEAT from an address not on the list adds
//! nothing and gets a RETRY, so a peer the tracker forgot joins again.
//! One IP address, and one prefix (IPv4 /24, IPv6 /48), may hold only so
//! many entries, and JOINs from one address are answered at a bounded
//! rate; each refusal is counted.
//!
//! The tracker is also the rendezvous point for peers behind NAT
//! (`crate::wire::Punch`): it tells each joiner the address it sees it
//! at, lists a peer behind the joiner's own router (the same public IP)
//! by the local address that peer announced, since home routers rarely
//! hairpin, and for the first `PUNCHES_PER_LIST` listed peers that may sit
//! behind a router it sends a PUNCH naming the joiner, so they PING it and
//! open their mappings towards it. A listed peer may ask for the same with
//! a PUNCH_REQUEST, at a bounded rate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use rand::seq::index;
use rand::Rng;

use super::token::TokenKey;
use super::{ClubRecommender, Node, Outbox, Time, Transmit};
use crate::counters::counters;
use crate::wire::{
    AddrList, ClubList, Heartbeat, Join, JoinRole, Message, MessageType, PeerList, Punch,
    PunchRequest, Retry, StreamTag,
};

/// Bytes a PEER_LIST has for addresses: the datagram budget less the
/// header (3), stream tag (8), club count (2), two recommended clubs (1 + 4),
/// heartbeat interval (4), the address count (1) and the observed address
/// (at most 19).
const PEER_LIST_ROOM: usize = crate::wire::MAX_DATAGRAM - 3 - 8 - 2 - 5 - 4 - 1 - 19;

/// Listed peers that may sit behind a router and get a PUNCH naming the
/// joiner, per JOIN.
pub const PUNCHES_PER_LIST: usize = 24;

/// PUNCH_REQUESTs served per second from one IP address (a burst of twice
/// that).
pub const PUNCH_REQUESTS_PER_S: f64 = 20.0;

/// Tracker settings.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// The stream this tracker serves.
    pub stream: StreamTag,
    /// Clubs in the swarm (seed: 12, [0022]).
    pub clubs: u16,
    /// Clubs recommended to each joining peer (seed: 2, [0030]).
    pub clubs_per_peer: usize,
    /// Heartbeat interval announced to peers, in milliseconds.
    pub heartbeat_ms: u32,
    /// A peer silent for this long is removed ([0015]).
    pub expiry_ms: u32,
    /// Most peers listed in one answer.
    pub max_listed: u16,
    /// Most peers kept; joins beyond this are dropped and counted.
    pub max_peers: usize,
    /// Most peers kept from one IP address (a household behind NAT has a
    /// few; a loopback demo may have hundreds).
    pub max_per_address: usize,
    /// Most peers kept from one prefix: an IPv4 /24 or an IPv6 /48.
    pub max_per_prefix: usize,
    /// JOINs answered per second from one IP address (a burst of twice
    /// that); more get nothing.
    pub joins_per_address_s: f64,
    /// Most datagrams queued for sending.
    pub outbox: usize,
}

impl TrackerConfig {
    /// The seed's defaults for `stream`: 12 clubs, 2 per peer, a heartbeat
    /// every 5 s, removal after 15 s of silence.
    pub fn new(stream: StreamTag) -> Self {
        TrackerConfig {
            stream,
            clubs: 12,
            clubs_per_peer: 2,
            heartbeat_ms: 5_000,
            expiry_ms: 15_000,
            max_listed: 100,
            max_peers: 100_000,
            max_per_address: 512,
            max_per_prefix: 2_048,
            joins_per_address_s: 50.0,
            outbox: 4096,
        }
    }
}

counters! {
    /// Tracker counters.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct TrackerStats {
        /// JOINs answered.
        joins as "joins",
        /// Heartbeats accepted.
        heartbeats as "heartbeats",
        /// Peers removed for silence.
        expired as "expired",
        /// Datagrams that did not parse.
        malformed as "malformed",
        /// Datagrams for another stream.
        wrong_stream as "wrong_stream",
        /// Well-formed messages a tracker does not handle.
        unexpected as "unexpected",
        /// Joins dropped because the table was full (`max_peers`).
        full as "joins_table_full",
        /// RETRYs sent: JOINs without a valid token, and HEARTBEATs from
        /// addresses not listed (validation tokens issued).
        retries_sent as "retries_sent",
        /// JOINs whose token did not check.
        tokens_failed as "tokens_failed",
        /// HEARTBEATs from addresses not listed (not added).
        heartbeats_unknown as "heartbeats_unknown",
        /// JOINs refused: their IP address holds `max_per_address` entries.
        address_full as "joins_address_full",
        /// JOINs refused: their prefix holds `max_per_prefix` entries.
        prefix_full as "joins_prefix_full",
        /// JOINs left unanswered over their address's rate.
        rate_limited as "joins_rate_limited",
        /// PUNCHes sent: for lists handed out and for PUNCH_REQUESTs.
        punches_sent as "punches_sent",
        /// PUNCH_REQUESTs refused: a bad token, an asker or target not listed,
        /// a target with no router in front of it, or over the asker's rate.
        punch_requests_refused as "punch_requests_refused",
    }
}

#[derive(Debug, Clone)]
struct PeerRecord {
    clubs: [u16; 2],
    club_count: usize,
    expires: Time,
    /// Position in `Tracker::order`.
    slot: usize,
    /// The address the peer announced on its own network.
    local: Option<SocketAddr>,
}

impl PeerRecord {
    /// True unless the peer said its socket has the very address the
    /// tracker sees: then no router stands in front of it.
    fn may_be_behind_nat(&self, seen: SocketAddr) -> bool {
        self.local != Some(seen)
    }
}

/// The tracker state machine.
pub struct Tracker<R> {
    cfg: TrackerConfig,
    rng: R,
    peers: HashMap<SocketAddr, PeerRecord>,
    order: Vec<SocketAddr>,
    /// Club recommendations for joiners behind a router (0) and public
    /// ones (1).
    recommenders: [ClubRecommender; 2],
    outbox: Outbox,
    next_sweep: Option<Time>,
    stats: TrackerStats,
    token_key: TokenKey,
    /// Entries per IP address and per prefix.
    per_address: HashMap<IpAddr, usize>,
    per_prefix: HashMap<IpAddr, usize>,
    /// JOIN budget per IP address: tokens and when last filled (bounded:
    /// the emptiest-used entries go when full).
    join_budget: HashMap<IpAddr, (f64, Time)>,
    /// PUNCH_REQUEST budget per IP address, the same way.
    punch_budget: HashMap<IpAddr, (f64, Time)>,
}

/// IP addresses whose JOIN budget is kept.
const JOIN_BUDGETS_MAX: usize = 65_536;

/// The prefix an address is counted in: its /24 (IPv4) or /48 (IPv6).
fn prefix_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            IpAddr::from([o[0], o[1], o[2], 0])
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// Takes one token from `ip`'s budget in `budgets` (`rate` a second, a
/// burst of twice that) at `now`. The map is bounded: when full, budgets
/// that are full again (they hold nothing) are forgotten, and a new
/// address gets nothing while none is.
fn take_from(budgets: &mut HashMap<IpAddr, (f64, Time)>, rate: f64, now: Time, ip: IpAddr) -> bool {
    let burst = 2.0 * rate;
    if !budgets.contains_key(&ip) && budgets.len() >= JOIN_BUDGETS_MAX {
        budgets.retain(|_, (tokens, last)| {
            *tokens + now.0.saturating_sub(last.0) as f64 / 1e6 * rate < burst
        });
        if budgets.len() >= JOIN_BUDGETS_MAX {
            return false;
        }
    }
    let (tokens, last) = budgets.entry(ip).or_insert((burst, now));
    *tokens = (*tokens + now.0.saturating_sub(last.0) as f64 / 1e6 * rate).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

impl<R: Rng> Tracker<R> {
    /// A tracker with no peers.
    pub fn new(cfg: TrackerConfig, mut rng: R) -> Self {
        Tracker {
            token_key: TokenKey::new(rng.random()),
            per_address: HashMap::new(),
            per_prefix: HashMap::new(),
            join_budget: HashMap::new(),
            punch_budget: HashMap::new(),
            recommenders: [
                ClubRecommender::new(cfg.clubs),
                ClubRecommender::new(cfg.clubs),
            ],
            outbox: Outbox::new(cfg.outbox),
            cfg,
            rng,
            peers: HashMap::new(),
            order: Vec::new(),
            next_sweep: None,
            stats: TrackerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Peers in the list.
    pub fn peer_count(&self) -> usize {
        self.order.len()
    }

    /// True when `addr` is in the list.
    pub fn has_peer(&self, addr: SocketAddr) -> bool {
        self.peers.contains_key(&addr)
    }

    /// The clubs `addr` last reported, if it is listed.
    pub fn clubs_of(&self, addr: SocketAddr) -> Option<&[u16]> {
        self.peers.get(&addr).map(|p| &p.clubs[..p.club_count])
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_sweep
    }

    /// Feeds one received datagram.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        match Message::parse(datagram) {
            Ok(Message::Join(join)) => self.on_join(now, from, &join),
            Ok(Message::Heartbeat(hb)) => self.on_heartbeat(now, from, &hb),
            Ok(Message::PunchRequest(req)) => self.on_punch_request(now, from, &req),
            Ok(_) => self.stats.unexpected += 1,
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// Removes peers whose heartbeat stopped ([0015]).
    pub fn handle_timeout(&mut self, now: Time) {
        let mut i = 0;
        while i < self.order.len() {
            let addr = self.order[i];
            if self.peers.get(&addr).is_some_and(|p| p.expires <= now) {
                self.remove(addr);
                self.stats.expired += 1;
            } else {
                i += 1;
            }
        }
        self.next_sweep =
            (!self.order.is_empty()).then(|| now.plus_ms(u64::from(self.cfg.heartbeat_ms)));
    }

    /// Takes one JOIN from `ip`'s budget at `now`.
    fn take_join(&mut self, now: Time, ip: IpAddr) -> bool {
        take_from(&mut self.join_budget, self.cfg.joins_per_address_s, now, ip)
    }

    fn remove(&mut self, addr: SocketAddr) {
        if let Some(rec) = self.peers.remove(&addr) {
            for (map, key) in [
                (&mut self.per_address, addr.ip()),
                (&mut self.per_prefix, prefix_of(addr.ip())),
            ] {
                if let Some(n) = map.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        map.remove(&key);
                    }
                }
            }
            self.order.swap_remove(rec.slot);
            if let Some(moved) = self.order.get(rec.slot) {
                if let Some(m) = self.peers.get_mut(moved) {
                    m.slot = rec.slot;
                }
            }
        }
    }

    /// Adds or refreshes `from`; false (and counted) when the table, its
    /// address or its prefix is full.
    fn upsert(&mut self, now: Time, from: SocketAddr, clubs: &[u16]) -> bool {
        let expires = now.plus_ms(u64::from(self.cfg.expiry_ms));
        let mut club_arr = [0u16; 2];
        let club_count = clubs.len().min(2);
        club_arr[..club_count].copy_from_slice(&clubs[..club_count]);
        if let Some(rec) = self.peers.get_mut(&from) {
            rec.expires = expires;
            if club_count > 0 {
                rec.clubs = club_arr;
                rec.club_count = club_count;
            }
            return true;
        }
        if self.order.len() >= self.cfg.max_peers {
            self.stats.full += 1;
            return false;
        }
        let (ip, prefix) = (from.ip(), prefix_of(from.ip()));
        if self.per_address.get(&ip).copied().unwrap_or(0) >= self.cfg.max_per_address {
            self.stats.address_full += 1;
            return false;
        }
        if self.per_prefix.get(&prefix).copied().unwrap_or(0) >= self.cfg.max_per_prefix {
            self.stats.prefix_full += 1;
            return false;
        }
        *self.per_address.entry(ip).or_insert(0) += 1;
        *self.per_prefix.entry(prefix).or_insert(0) += 1;
        self.peers.insert(
            from,
            PeerRecord {
                clubs: club_arr,
                club_count,
                expires,
                slot: self.order.len(),
                local: None,
            },
        );
        self.order.push(from);
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.plus_ms(u64::from(self.cfg.heartbeat_ms)));
        }
        true
    }

    fn on_join(&mut self, now: Time, from: SocketAddr, join: &Join) {
        if join.stream != self.cfg.stream {
            self.stats.wrong_stream += 1;
            return;
        }
        if !self.token_key.check(from, &join.token, now) {
            if !join.token.is_none() {
                self.stats.tokens_failed += 1;
            }
            self.retry(now, from);
            return;
        }
        if !self.take_join(now, from.ip()) {
            self.stats.rate_limited += 1;
            return;
        }
        // Peers listed: a random sample of the others, as many as the joiner
        // asked for, the configured cap and one datagram allow ([0016]).
        let want = usize::from(join.max_peers.min(self.cfg.max_listed));
        let others = self.order.len() - usize::from(self.peers.contains_key(&from));
        let mut listed = Vec::with_capacity(want.min(others));
        let mut room = PEER_LIST_ROOM;
        let sample = index::sample(
            &mut self.rng,
            self.order.len(),
            self.order.len().min(want + 1),
        );
        // A peer behind the joiner's own router is listed by its local
        // address (routers rarely hairpin); one that may sit behind another
        // router gets a PUNCH naming the joiner, the first few at least.
        let mut punch = Vec::new();
        for i in sample {
            let seen = self.order[i];
            let Some(rec) = self.peers.get(&seen) else {
                continue;
            };
            let addr = match rec.local {
                Some(local) if seen.ip() == from.ip() => local,
                _ => seen,
            };
            let size = if addr.is_ipv4() { 7 } else { 19 };
            if seen == from || listed.len() >= want.min(255) || size > room {
                continue;
            }
            room -= size;
            listed.push(addr);
            if addr == seen && rec.may_be_behind_nat(seen) && punch.len() < PUNCHES_PER_LIST {
                punch.push(seen);
            }
        }
        // Only viewers take clubs from the recommendation list: the source
        // and relays sit in clubs of their own and must not unbalance it.
        let mut recommended = [0u16; 8];
        // Public joiners and those behind routers each get a list of
        // their own, so every club gets its share of both, and no club's
        // outside viewers depend on public uploaders alone.
        let public = join.local == Some(from);
        let n = if join.role == JoinRole::Viewer {
            self.recommenders[usize::from(public)].next(
                self.cfg.clubs_per_peer.min(2),
                &mut self.rng,
                &mut recommended,
            )
        } else {
            0
        };
        if !self.upsert(now, from, &[]) {
            return; // counted by the bound that refused it
        }
        if let Some(rec) = self.peers.get_mut(&from) {
            rec.local = join.local;
        }
        self.stats.joins += 1;
        let reply = Message::PeerList(PeerList {
            stream: self.cfg.stream,
            club_count: self.cfg.clubs,
            recommended: ClubList::Items(&recommended[..n]),
            heartbeat_ms: self.cfg.heartbeat_ms,
            peers: AddrList::Items(&listed),
            observed: Some(from),
        });
        self.outbox.push(from, &reply);
        for target in punch {
            self.punch(target, from);
        }
    }

    /// A listed peer asks the tracker to have `req.target` open its way to
    /// it: the target gets a PUNCH naming the asker (by its local address
    /// when both sit behind one router).
    fn on_punch_request(&mut self, now: Time, from: SocketAddr, req: &PunchRequest) {
        if req.stream != self.cfg.stream {
            self.stats.wrong_stream += 1;
            return;
        }
        if !self.token_key.check(from, &req.token, now) {
            // A stale token: the RETRY for a JOIN gives the peer a new one.
            self.stats.punch_requests_refused += 1;
            self.retry(now, from);
            return;
        }
        // A target that said it sits behind no router needs no punch: a
        // PING to it that went unanswered was lost.
        let listed = self.peers.contains_key(&from)
            && self
                .peers
                .get(&req.target)
                .is_some_and(|t| t.may_be_behind_nat(req.target));
        if !listed
            || req.target == from
            || !take_from(&mut self.punch_budget, PUNCH_REQUESTS_PER_S, now, from.ip())
        {
            self.stats.punch_requests_refused += 1;
            return;
        }
        let asker = match self.peers.get(&from).and_then(|r| r.local) {
            Some(local) if req.target.ip() == from.ip() => local,
            _ => from,
        };
        self.punch(req.target, asker);
    }

    /// Sends `target` a PUNCH naming `peer`.
    fn punch(&mut self, target: SocketAddr, peer: SocketAddr) {
        self.stats.punches_sent += 1;
        let msg = Message::Punch(Punch {
            stream: self.cfg.stream,
            peer,
        });
        self.outbox.push(target, &msg);
    }

    fn on_heartbeat(&mut self, now: Time, from: SocketAddr, hb: &Heartbeat<'_>) {
        if hb.stream != self.cfg.stream {
            self.stats.wrong_stream += 1;
            return;
        }
        let mut clubs = [0u16; 2];
        let mut n = 0;
        for c in hb.clubs.iter().filter(|c| *c < self.cfg.clubs).take(2) {
            clubs[n] = c;
            n += 1;
        }
        // A heartbeat from a peer the tracker does not know (say, after a
        // tracker restart) adds nothing: the RETRY makes a real peer join
        // again, with its token.
        if !self.peers.contains_key(&from) {
            self.stats.heartbeats_unknown += 1;
            self.retry(now, from);
            return;
        }
        if self.upsert(now, from, &clubs[..n]) {
            self.stats.heartbeats += 1;
        }
    }

    /// Answers `from` with a RETRY for a JOIN, carrying its token.
    fn retry(&mut self, now: Time, from: SocketAddr) {
        self.stats.retries_sent += 1;
        let token = self.token_key.mint(from, now);
        self.outbox.push(
            from,
            &Message::Retry(Retry {
                token,
                request: MessageType::Join,
                request_id: 0,
            }),
        );
    }
}

impl<R: Rng> Node for Tracker<R> {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        Tracker::handle_datagram(self, now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Time) {
        Tracker::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        Tracker::poll_transmit(self)
    }

    fn poll_timeout(&self) -> Option<Time> {
        Tracker::poll_timeout(self)
    }
}
