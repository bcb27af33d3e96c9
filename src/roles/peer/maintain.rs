//! A peer's housekeeping, run every tick: tracker join and heartbeats,
//! keep-alives (with a report of the download) and the timeouts of [0053],
//! the gap rule's verdicts ([0052]), ban parole ([0055]), CONNECTs sent
//! again, keeping the connection targets of [0026]-[0028] (which also
//! carries out the replacement rules of [0056]-[0058]), loss repair
//! requests, the uplink estimate and the shedding of uploads it cannot
//! carry, playback, and the quality check of [0063] with its back-off.
//! Every timeout is a multiple of a measured round trip, with a floor.

use std::net::SocketAddr;

use rand::Rng;

use super::pacer::UploadFeedback;
use super::playout::Played;
use super::quality::backoff_ms;
use super::traversal::NatType;
use super::{Mode, Peer, PeerEvent};
use super::{PlayedBlock, PLAYED_MAX};
use crate::roles::Time;
use crate::wire::{
    ClubList, Connect, Direction, DropReason, Heartbeat, Join, JoinRole, KeepAlive, Message, Ping,
    Request, DELAY_UNKNOWN, REQUEST_MAX_SEQS,
};

/// Blocks over which playback measures media time per block.
const PACE_WINDOW: u64 = 512;

/// Fewest blocks that measurement needs.
const PACE_MIN_SPAN: u64 = 64;

/// A connection request awaiting its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub request_id: u32,
    pub to: SocketAddr,
    pub club: u16,
    pub direction: Direction,
    /// When it was first sent.
    pub sent: Time,
    /// Sends so far.
    pub attempts: u8,
    /// When to send it again or give it up.
    pub deadline: Time,
}

/// How long a given-up CONNECT is remembered for its late ACCEPT, us.
const GIVEN_UP_US: u64 = 10_000_000;

/// Given-up CONNECTs remembered at most.
const GIVEN_UP_MAX: usize = 64;

/// A peer list that led to no download for this long is asked for again, us.
const LIST_USEFUL_US: u64 = 5_000_000;

/// Floor of every round-trip based timeout, us.
const RTO_FLOOR_US: u64 = 200_000;

/// Missing blocks due within this long are asked for, us.
const REPAIR_LOOKAHEAD_US: u64 = 1_000_000;

/// A missing block younger than this (in media time behind the newest)
/// may still be on the way, us.
const REPAIR_MIN_AGE_US: u64 = 250_000;

/// REQUESTs sent per tick at most.
const REQUESTS_PER_TICK: usize = 8;

/// A pacer backlog whose oldest send waited this long means the uplink
/// cannot carry the uploads it has, us.
const SHED_BACKLOG_US: u64 = 300_000;

/// An upload whose receiver sent no KEEPALIVE for this long (three
/// keep-alive intervals) may be gone: a replacement is sought, us.
const QUIET_UPLOAD_US: u64 = 750_000;

/// Uploads are shed at most this often, us.
const SHED_EVERY_US: u64 = 1_000_000;

/// Unanswered JOINs before the peer reports the tracker silent: down,
/// unreachable, or serving another stream. JOINs go 250 ms apart at
/// first, doubling to one a second, so a lost JOIN or PEER_LIST costs a
/// quarter second, and the report comes about three seconds in.
const TRACKER_SILENT_AFTER: u32 = 5;

/// First wait before a JOIN is sent again, us.
const JOIN_RETRY_US: u64 = 250_000;

/// Longest wait between JOINs, us.
const JOIN_RETRY_MAX_US: u64 = 1_000_000;

/// Unknown-club contacts pinged per tick.
const DISCOVERY_PINGS_PER_TICK: usize = 16;

/// Pings per club and tick while looking for a connection.
const CLUB_PINGS_PER_TICK: usize = 4;

/// A download runs this long from a public uploader before it may move
/// to one behind a router, µs (see `hand_over_from_public`).
const HANDOVER_AFTER_US: u64 = 5_000_000;

/// At most one download begins to move off a public uploader per this
/// long, µs.
const HANDOVER_EVERY_US: u64 = 1_000_000;

/// Members behind routers pinged when a handover finds none fresh.
const HANDOVER_PINGS: usize = 2;

/// A club with no fresh block for this long, while others come, is
/// missing, µs.
const CLUB_MISSING_US: u64 = 1_000_000;

impl Peer {
    pub(super) fn tick(&mut self, now: Time) {
        self.talk_to_tracker(now);
        if now.0 >= self.last_ban_sweep.0 + self.cfg.ban_sweep_ms * 1000 {
            self.last_ban_sweep = now;
            self.bans.sweep(&mut self.rng);
        }
        self.keepalives_and_timeouts(now);
        self.resend_or_give_up(now);
        if self.joined {
            self.ask_tracker_again(now);
            self.discover(now);
            self.keep_targets(now);
        }
        self.control_uplink(now);
        if self.cfg.mode == Mode::Peer {
            self.play(now);
            self.ask_for_repairs(now);
            self.check_quality(now);
            self.notice_missing_clubs(now);
        }
        if let Some(newest) = self.store.newest().and_then(|n| self.store.source_time(n)) {
            self.store
                .forget_older_than(Time(newest.0.saturating_sub(self.cfg.store_ms * 1000)));
        }
    }

    /// A list that led to no download in `LIST_USEFUL_US` (its addresses
    /// gone, or planted by someone flooding the tracker) is asked for again:
    /// the tracker answers a JOIN of a listed peer with a fresh sample.
    fn ask_tracker_again(&mut self, now: Time) {
        if self.cfg.mode == Mode::Source
            || self.cfg.tracker.is_none()
            || !self.conns.downloads.is_empty()
            || now.0 < self.last_list.0 + LIST_USEFUL_US
            || self
                .last_join_sent
                .is_some_and(|t| now.0 < t.0 + LIST_USEFUL_US)
        {
            return;
        }
        self.last_join_sent = Some(now);
        self.stats.lists_asked_again += 1;
        self.send_join();
    }

    /// How long a download may carry no block before it is silent
    /// ([0053]): `silence_ms` or `silence_intervals` club intervals,
    /// whichever is longer (`first_block_ms` before the rate is known).
    fn silence_floor_us(&self) -> u64 {
        let club_interval = self.block_us * u64::from(self.club_count);
        if club_interval == 0 {
            self.cfg.first_block_ms * 1000
        } else {
            (self.cfg.silence_ms * 1000).max(self.cfg.silence_intervals * club_interval)
        }
    }

    /// No fresh block for this long means the feed paused (or this peer's
    /// link stalled): half the silence limit.
    pub(super) fn pause_us(&self) -> u64 {
        self.silence_floor_us() / 2
    }

    /// The retransmission timeout towards `to`: from its measured round
    /// trip, or `connect_timeout_ms` while none is known.
    pub(super) fn rto_us(&self, to: &SocketAddr) -> u64 {
        self.contacts
            .get(to)
            .and_then(|c| c.rtt)
            .map_or(self.cfg.connect_timeout_ms * 1000, |r| {
                r.rto_us(RTO_FLOOR_US)
            })
    }

    /// A CONNECT unanswered by its deadline is sent again, with the
    /// timeout doubled; after `connect_attempts` sends the peer is likely
    /// gone: its PONG is forgotten and it is not chosen again for a while.
    fn resend_or_give_up(&mut self, now: Time) {
        self.given_up
            .retain(|p| now.0 < p.deadline.0.saturating_add(GIVEN_UP_US));
        let due: Vec<usize> = (0..self.pending.len())
            .filter(|&i| now >= self.pending[i].deadline)
            .collect();
        for &i in due.iter().rev() {
            let mut p = self.pending[i];
            if p.attempts >= self.cfg.connect_attempts.max(1) {
                self.pending.swap_remove(i);
                let c = self.contacts.entry(p.to, now);
                c.pong = None;
                c.refused_until = now.plus_ms(5_000);
                p.deadline = now;
                if self.given_up.len() >= GIVEN_UP_MAX {
                    self.given_up.pop_front();
                }
                self.given_up.push_back(p);
                continue;
            }
            let wait = self.rto_us(&p.to) << p.attempts.min(6);
            p.attempts += 1;
            p.deadline = Time(now.0 + wait);
            self.pending[i] = p;
            self.stats.connect_retries += 1;
            self.send_connect(&p);
        }
    }

    /// Sends the CONNECT of `p`, with `p.to`'s token.
    pub(super) fn send_connect(&mut self, p: &Pending) {
        let clubs = self.clubs.clone();
        let token = self.token_for(p.to);
        self.send(
            p.to,
            &Message::Connect(Connect {
                request_id: p.request_id,
                direction: p.direction,
                club: p.club,
                block_tag: self.block_tag(p.to),
                clubs: ClubList::Items(&clubs),
                token,
            }),
        );
    }

    /// Sends JOIN to the tracker, with its token.
    pub(super) fn send_join(&mut self) {
        let Some(tracker) = self.cfg.tracker else {
            return;
        };
        let role = match self.cfg.mode {
            Mode::Peer => JoinRole::Viewer,
            Mode::Source => JoinRole::Source,
            Mode::Relay => JoinRole::Relay,
        };
        let token = self.token_for(tracker);
        let join = Message::Join(Join {
            stream: self.tag,
            peer_id: self.cfg.peer_id,
            max_peers: self.cfg.tracker_peers,
            role,
            token,
            local: self.cfg.local_addr,
        });
        self.send(tracker, &join);
    }

    /// Sends a PING, with `to`'s token.
    pub(super) fn send_ping(&mut self, to: SocketAddr, nonce: u32, club: u16) {
        let token = self.token_for(to);
        self.send(to, &Message::Ping(Ping { nonce, club, token }));
    }

    fn talk_to_tracker(&mut self, now: Time) {
        let Some(tracker) = self.cfg.tracker else {
            return;
        };
        if !self.joined {
            let wait =
                (JOIN_RETRY_US << self.joins_sent.saturating_sub(1).min(8)).min(JOIN_RETRY_MAX_US);
            if self.last_join_sent.is_none_or(|t| now.0 >= t.0 + wait) {
                self.last_join_sent = Some(now);
                self.joins_sent += 1;
                if self.joins_sent == TRACKER_SILENT_AFTER + 1 {
                    self.events.push_back(PeerEvent::TrackerSilent { tracker });
                }
                self.send_join();
            }
            return;
        }
        if now.0 >= self.last_heartbeat.0 + self.heartbeat_ms * 1000 {
            self.last_heartbeat = now;
            let clubs = self.clubs.clone();
            let hb = Message::Heartbeat(Heartbeat {
                stream: self.tag,
                peer_id: self.cfg.peer_id,
                clubs: ClubList::Items(&clubs),
            });
            self.send(tracker, &hb);
        }
    }

    fn keepalives_and_timeouts(&mut self, now: Time) {
        let keepalive = self.cfg.keepalive_ms * 1000;
        // Silence is judged against the club's block rate ([0053]): a
        // foreign download carries one block per club interval, so a few
        // missed intervals, four round trips and at least `silence_ms` mean
        // the uploader is gone; the blocks missed meanwhile are repaired
        // from other peers. A connection that has carried nothing yet gets
        // `first_block_ms`, since a new uploader may still be joining.
        let silence_floor = self.silence_floor_us();
        let first_block = self.cfg.first_block_ms * 1000;
        let reorder = self.cfg.reorder_ms * 1000;
        // A download is silent only while the stream is live here: when no
        // fresh block came from anywhere for half the silence limit, the
        // feed itself paused (or this peer's own link stalled), and its
        // uploaders are not to blame; nor are they for the silence before
        // the stream came back.
        let stream_live = self
            .last_fresh
            .is_some_and(|t| now.0 < t.0 + self.pause_us());
        let live_since = self.live_since;
        let mut to_send = Vec::new();
        let mut to_ping = Vec::new();
        let mut silent = Vec::new();
        let mut gaps = Vec::new();
        let rtos: Vec<u64> = self
            .conns
            .downloads
            .iter()
            .map(|d| self.rto_us(&d.from))
            .collect();
        for (d, rto) in self.conns.downloads.iter_mut().zip(rtos) {
            d.gaps.expire(now, reorder.max(4 * d.owd.jitter_us()));
            if d.gaps.congested() {
                gaps.push((d.from, d.club));
                continue;
            }
            if now.0 >= d.keepalive_sent.0 + keepalive {
                d.keepalive_sent = now;
                let queuing = d.owd.queuing_us(now).map_or(DELAY_UNKNOWN, |q| {
                    u16::try_from(q / 1000).unwrap_or(DELAY_UNKNOWN - 1)
                });
                to_send.push((
                    d.from,
                    Message::KeepAlive(KeepAlive {
                        club: d.club,
                        received: d.received,
                        queue_delay_ms: queuing,
                        tag: d.tag,
                    }),
                ));
            }
            // Foreign downloads carry every block of their club; in-club
            // ones may be quiet under HAVE, so there only a peer that sends
            // nothing at all (not even a PONG) counts as silent.
            let last = if d.in_club {
                self.contacts.get(&d.from).map_or(d.last_block, |c| c.heard)
            } else {
                d.last_block.max(live_since)
            };
            let silence = silence_floor.max(4 * rto);
            let limit = if d.last_seq.is_none() {
                first_block.max(silence)
            } else {
                silence
            };
            if now.0 >= last.0 + limit && (d.in_club || stream_live) {
                silent.push((d.from, d.club));
            } else if d.in_club && now.0 >= last.0 + silence / 2 {
                to_ping.push(d.from);
            }
        }
        for (to, msg) in to_send {
            self.send(to, &msg);
        }
        for to in to_ping {
            self.send_ping(to, 0, 0);
        }
        for (from, club) in silent {
            self.drop_connection(from, club, Direction::Download, DropReason::Silence);
        }
        for (from, club) in gaps {
            self.drop_connection(from, club, Direction::Download, DropReason::SequenceGap);
        }
        // An upload's receiver keeps it with a KEEPALIVE every
        // `keepalive_ms`; it is gone after `keepalive_timeout_ms`, four
        // round trips and two keep-alive intervals, whichever is longest.
        let stale: Vec<(SocketAddr, u16)> = self
            .conns
            .uploads
            .iter()
            .filter(|u| {
                let timeout = (self.cfg.keepalive_timeout_ms * 1000)
                    .max(4 * self.rto_us(&u.to) + 2 * keepalive);
                now.0 >= u.keepalive.0 + timeout
            })
            .map(|u| (u.to, u.club))
            .collect();
        for (to, club) in stale {
            self.drop_connection(to, club, Direction::Upload, DropReason::KeepAliveTimeout);
        }
    }

    /// Runs the uplink estimate on what the downloaders reported, and
    /// sheds an upload when the uplink cannot carry them all: out-of-club
    /// first, then in-club ones above the fewest a club needs ([0048]).
    fn control_uplink(&mut self, now: Time) {
        for u in &mut self.conns.uploads {
            u.sent_history.record(now, u.sent);
        }
        if self.pacer.period_over(now) {
            let feedback: Vec<UploadFeedback> = self
                .conns
                .uploads
                .iter_mut()
                .map(|u| u.take_feedback())
                .collect();
            self.pacer.control(now, &feedback, self.backlogged);
            self.backlogged = false;
        }
        self.shed_if_overloaded(now);
    }

    /// True when the uplink cannot carry the sends queued for it: the
    /// oldest has waited longer than `SHED_BACKLOG_US`.
    pub(super) fn uplink_saturated(&self) -> bool {
        self.pacer.rate_bps().is_some()
            && self
                .sends
                .fronts()
                .any(|item| self.now.0 > item.queued.0 + SHED_BACKLOG_US)
    }

    /// When the uplink is saturated, sheds uploads until what they carry
    /// (a club's share of the stream each) fits nine tenths of the
    /// estimate: out-of-club ones first, at random, then in-club ones of
    /// clubs that keep more than the fewest they need.
    fn shed_if_overloaded(&mut self, now: Time) {
        if !self.uplink_saturated() || now.0 < self.last_shed.0 + SHED_EVERY_US {
            return;
        }
        let Some(rate) = self.pacer.rate_bps() else {
            return;
        };
        self.last_shed = now;
        let club_bps = f64::from(self.bitrate_kbps) * 1000.0 / f64::from(self.club_count.max(1));
        let fits = ((0.9 * rate / club_bps.max(1.0)) as usize).max(1);
        let mut excess = self.conns.uploads.len().saturating_sub(fits).max(1);
        while excess > 0 {
            let out_of_club: Vec<(SocketAddr, u16)> = self
                .conns
                .uploads
                .iter()
                .filter(|u| !u.in_club)
                .map(|u| (u.to, u.club))
                .collect();
            let victim = if out_of_club.is_empty() {
                let min = self.cfg.in_club_min;
                let crowded: Vec<(SocketAddr, u16)> = self
                    .conns
                    .uploads
                    .iter()
                    .filter(|u| u.in_club && self.conns.in_club_uploads_of(u.club) > min)
                    .map(|u| (u.to, u.club))
                    .collect();
                (!crowded.is_empty()).then(|| crowded[self.rng.random_range(0..crowded.len())])
            } else {
                Some(out_of_club[self.rng.random_range(0..out_of_club.len())])
            };
            let Some((to, club)) = victim else {
                return;
            };
            self.drop_connection(to, club, Direction::Upload, DropReason::Shed);
            excess -= 1;
        }
    }

    /// Sends a REQUEST for the wanted blocks whose ask time came, each to
    /// a peer this peer has a connection with: the download of its club
    /// first, then the others in turn with each ask, so a peer that lacks
    /// it is not asked twice in a row.
    fn ask_for_repairs(&mut self, now: Time) {
        let due = self.repair.due(now, REQUESTS_PER_TICK * REQUEST_MAX_SEQS);
        if due.is_empty() {
            return;
        }
        let c = u64::from(self.club_count);
        let peers = self.conns.peers();
        if peers.is_empty() {
            return;
        }
        let mut batches: Vec<(SocketAddr, Vec<u64>)> = Vec::new();
        for (seq, want) in due {
            let club = (seq % c) as u16;
            let first = self
                .conns
                .downloads
                .iter()
                .find(|d| d.club == club && d.last_seq.is_some_and(|l| l >= seq))
                .map(|d| d.from);
            let to = match (want.asked, first) {
                (0, Some(f)) => f,
                (k, _) => {
                    let start = first
                        .and_then(|f| peers.iter().position(|p| *p == f))
                        .unwrap_or(0);
                    peers[(start + usize::from(k)) % peers.len()]
                }
            };
            let retry = self.rto_us(&to);
            self.repair.asked(seq, now, retry);
            self.stats.repair_asked += 1;
            match batches
                .iter_mut()
                .find(|(a, v)| *a == to && v.len() < REQUEST_MAX_SEQS)
            {
                Some((_, v)) => v.push(seq),
                None => batches.push((to, vec![seq])),
            }
        }
        for (to, seqs) in batches.into_iter().take(REQUESTS_PER_TICK) {
            self.stats.repair_requests += 1;
            self.send(
                to,
                &Message::Request(Request {
                    block_tag: self.block_tag(to),
                    seqs: crate::wire::SeqList::Items(&seqs),
                }),
            );
        }
    }

    /// Pings contacts whose clubs are unknown, a few per tick.
    fn discover(&mut self, now: Time) {
        let fresh = self.cfg.pong_fresh_ms * 1000;
        let mut targets: Vec<SocketAddr> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.pong.is_none() && c.clubs.is_empty())
            .filter(|(_, c)| c.pinged.is_none_or(|t| now.0 >= t.0 + fresh))
            .map(|(a, _)| *a)
            .collect();
        targets.sort_unstable();
        targets.truncate(DISCOVERY_PINGS_PER_TICK);
        let club = self.clubs.first().copied().unwrap_or(0);
        for to in targets {
            self.ping(now, to, club);
        }
    }

    pub(super) fn ping(&mut self, now: Time, to: SocketAddr, club: u16) {
        self.punch_if_unanswered(now, to);
        let nonce = self.fresh_id();
        let c = self.contacts.entry(to, now);
        c.pinged = Some(now);
        c.ping_nonce = nonce;
        c.ping_club = club;
        self.send_ping(to, nonce, club);
    }

    /// A club with no fresh block for `CLUB_MISSING_US` while others come
    /// is missing: reported once, and `keep_targets` wants a second
    /// download of it until a block comes.
    fn notice_missing_clubs(&mut self, now: Time) {
        let flowing = self
            .last_fresh
            .is_some_and(|t| now.0 < t.0 + CLUB_MISSING_US / 4);
        if !flowing {
            return;
        }
        for club in 0..self.club_seen.len() {
            let (last, missing) = self.club_seen[club];
            if !missing && now.0 >= last.0 + CLUB_MISSING_US {
                self.club_seen[club].1 = true;
                self.stats.clubs_missing += 1;
                self.events
                    .push_back(PeerEvent::ClubMissing { club: club as u16 });
            }
        }
    }

    /// True while `club` is missing (see `notice_missing_clubs`).
    pub(super) fn club_missing(&self, club: u16) -> bool {
        self.club_seen
            .get(usize::from(club))
            .is_some_and(|(_, missing)| *missing)
    }

    fn pending_for(&self, club: u16, direction: Direction) -> usize {
        self.pending
            .iter()
            .filter(|p| p.club == club && p.direction == direction)
            .count()
    }

    /// Opens connections until each target is met ([0026]-[0028]). A
    /// dropped connection is replaced the same way ([0056]-[0058]): a
    /// foreign download always, an in-club one when below the minimum.
    fn keep_targets(&mut self, now: Time) {
        if self.cfg.mode == Mode::Source {
            // The source keeps two uploads in every club ([0029]); one
            // whose receiver has gone quiet does not count (see
            // `live_in_club_uploads_of`).
            for club in 0..self.club_count {
                let have = self.live_in_club_uploads_of(club, now)
                    + self.pending_for(club, Direction::Upload);
                if have < self.cfg.source_uploads {
                    self.try_connect(now, club, Direction::Upload);
                }
            }
            return;
        }
        if self.cfg.mode == Mode::Relay {
            // A relay plays nothing: it keeps in-club downloads of the
            // clubs it serves and waits for peers to come for uploads.
            for i in 0..self.clubs.len() {
                let club = self.clubs[i];
                let have =
                    self.conns.downloads_of(club) + self.pending_for(club, Direction::Download);
                if have < self.cfg.in_club_min {
                    self.try_connect(now, club, Direction::Download);
                }
            }
            return;
        }
        for club in 0..self.club_count {
            let own = self.in_club(club);
            let want_down = match (own, self.club_missing(club)) {
                (true, _) => self.cfg.in_club_min,
                (false, false) => 1,
                (false, true) => 2,
            };
            let have_down =
                self.conns.downloads_of(club) + self.pending_for(club, Direction::Download);
            if have_down < want_down {
                self.try_connect(now, club, Direction::Download);
            } else if !own && have_down == 1 {
                self.hand_over_from_public(now, club);
            }
            if own {
                let have_up = self.live_in_club_uploads_of(club, now)
                    + self.pending_for(club, Direction::Upload);
                if have_up < self.cfg.in_club_min {
                    self.try_connect(now, club, Direction::Upload);
                }
            }
        }
    }

    /// In-club uploads of `club` whose receiver sent a KEEPALIVE lately.
    /// One quiet for `QUIET_UPLOAD_US` may be gone (a peer that left
    /// without a word) or only stalled: it is kept until its timeout, but
    /// a replacement is sought meanwhile, so a club's blocks do not wait
    /// for that timeout to reach anyone.
    fn live_in_club_uploads_of(&self, club: u16, now: Time) -> usize {
        self.conns
            .uploads
            .iter()
            .filter(|u| u.club == club && u.in_club)
            .filter(|u| now.0 < u.keepalive.0 + QUIET_UPLOAD_US)
            .count()
    }

    fn try_connect(&mut self, now: Time, club: u16, direction: Direction) {
        let fresh_since = Time(now.0.saturating_sub(self.cfg.pong_fresh_ms * 1000));
        let conns = &self.conns;
        let pending = &self.pending;
        let bans = &self.bans;
        let free = |a: &SocketAddr| {
            !pending.iter().any(|p| p.to == *a && p.club == club)
                && match direction {
                    Direction::Download => !conns
                        .downloads
                        .iter()
                        .any(|d| d.from == *a && d.club == club),
                    Direction::Upload => {
                        !conns.uploads.iter().any(|u| u.to == *a && u.club == club)
                    }
                }
        };
        // Peers off the ban list first; a banned peer only when no other
        // will do ([0039]: lower priority, so a small club is never cut off).
        let how = self.cfg.choice;
        // An uploader should have room for one club's share of the stream.
        let need = match direction {
            Direction::Download => self.bitrate_kbps / u32::from(self.club_count.max(1)),
            Direction::Upload => 0,
        };
        // Downloads leave public uploaders to those behind symmetric
        // routers, who can reach no one else, when another will do.
        let spare_public = direction == Direction::Download
            && self.cfg.mode == Mode::Peer
            && self.nat_type() != NatType::Symmetric;
        // Banned peers only on a second pass, which the source never makes.
        let passes: &[bool] = if self.cfg.mode == Mode::Source {
            &[false]
        } else {
            &[false, true]
        };
        let mut chosen = None;
        for &banned_too in passes {
            chosen = self.contacts.choose(
                club,
                now,
                fresh_since,
                how,
                need,
                spare_public,
                &mut self.rng,
                |a| (banned_too || !bans.is_banned(a)) && free(a),
            );
            if chosen.is_some() {
                break;
            }
        }
        match chosen {
            Some(to) => self.connect(now, to, club, direction),
            None => self.look_for_members(now, club),
        }
    }

    /// Sends a CONNECT to `to` for `club` in `direction` and waits for
    /// its answer.
    fn connect(&mut self, now: Time, to: SocketAddr, club: u16, direction: Direction) {
        let request_id = self.fresh_id();
        let deadline = Time(now.0 + self.rto_us(&to));
        let p = Pending {
            request_id,
            to,
            club,
            direction,
            sent: now,
            attempts: 1,
            deadline,
        };
        self.pending.push(p);
        self.stats.connects += 1;
        self.send_connect(&p);
    }

    /// Public uploaders are the only ones peers behind symmetric routers
    /// can reach. A peer that can reach others moves the one download of
    /// a foreign club off a public uploader, once it has run a while, when
    /// a fresh member behind a router has room: it asks the new uploader
    /// first and drops the public one when accepted (`on_accept`), so the
    /// club never goes without.
    fn hand_over_from_public(&mut self, now: Time, club: u16) {
        if self.cfg.mode != Mode::Peer
            || self.nat_type() == NatType::Symmetric
            || now.0 < self.last_handover.0 + HANDOVER_EVERY_US
            || self.pending_for(club, Direction::Download) > 0
        {
            return;
        }
        let contacts = &self.contacts;
        let public = |a: &SocketAddr| contacts.get(a).is_some_and(|c| c.public);
        let Some(d) = self.conns.downloads.iter().find(|d| d.club == club) else {
            return;
        };
        if !public(&d.from) || now.0 < d.since.0 + HANDOVER_AFTER_US {
            return;
        }
        let fresh_since = Time(now.0.saturating_sub(self.cfg.pong_fresh_ms * 1000));
        let need = self.bitrate_kbps / u32::from(self.club_count.max(1));
        let bans = &self.bans;
        let pending = &self.pending;
        let chosen = contacts.choose(
            club,
            now,
            fresh_since,
            self.cfg.choice,
            need,
            true,
            &mut self.rng,
            |a| {
                !public(a)
                    && !bans.is_banned(a)
                    && !pending.iter().any(|p| p.to == *a && p.club == club)
            },
        );
        self.last_handover = now;
        if let Some(to) = chosen {
            self.connect(now, to, club, Direction::Download);
            return;
        }
        // None fresh: ping members behind routers (punching where they
        // stay silent), so one may be chosen next time.
        let stale: Vec<SocketAddr> = contacts
            .members(club)
            .filter(|(a, c)| !c.public && !bans.is_banned(a))
            .filter(|(_, c)| c.pinged.is_none_or(|t| now.0 >= t.0 + HANDOVER_EVERY_US))
            .map(|(a, _)| *a)
            .take(HANDOVER_PINGS)
            .collect();
        for to in stale {
            self.ping(now, to, club);
        }
    }

    /// No fresh candidate: ping known members of `club` that have not
    /// answered lately ([0038]), or ask around for members ([0032]).
    fn look_for_members(&mut self, now: Time, club: u16) {
        let retry = 1_000_000;
        let mut stale: Vec<SocketAddr> = self
            .contacts
            .members(club)
            .filter(|(_, c)| c.pinged.is_none_or(|t| now.0 >= t.0 + retry))
            .map(|(a, _)| *a)
            .collect();
        // Members heard from lately; departed peers linger in the book.
        let alive_since = now.0.saturating_sub(self.cfg.pong_fresh_ms * 1000);
        let known = self
            .contacts
            .members(club)
            .filter(|(a, c)| c.heard.0 >= alive_since && !self.bans.is_banned(a))
            .count();
        stale.sort_unstable();
        stale.truncate(CLUB_PINGS_PER_TICK);
        for to in stale {
            self.ping(now, to, club);
        }
        if known < 2 * self.cfg.in_club_max {
            self.query_club(now, club);
        }
    }

    fn play(&mut self, now: Time) {
        // Pace by the source's clock when enough blocks are held (media
        // blocks differ in size, so the bit rate alone misjudges them),
        // else by the bit rate the blocks carry.
        if let Some(us) = self.store.time_per_block(PACE_WINDOW, PACE_MIN_SPAN) {
            self.block_us = us;
        }
        if self.block_us == 0 {
            return;
        }
        self.want_missing_near_their_play_time(now);
        let was_started = self.playout.started_at().is_some();
        let mut first = None;
        let c = u64::from(self.club_count);
        let downloads = &self.conns.downloads;
        let pending = &self.pending;
        let repair = &self.repair;
        // A missing block may still come while some download of its club
        // has not yet moved past it (or one is being opened), or while it
        // is being repaired; otherwise waiting for it only delays playback.
        let awaited = |seq: u64| {
            let club = seq % c;
            repair.is_wanted(seq)
                || downloads
                    .iter()
                    .any(|d| u64::from(d.club) == club && d.last_seq.is_none_or(|l| l < seq))
                || pending
                    .iter()
                    .any(|p| p.direction == Direction::Download && u64::from(p.club) == club)
        };
        let floor = self.arrival_lag.base(now).unwrap_or(0);
        let emit = self.cfg.emit_played;
        let store = &self.store;
        let played = &mut self.played;
        let clubs = usize::from(self.club_count.max(1));
        if self.club_skipped.len() < clubs {
            self.club_skipped.resize(clubs, 0);
        }
        let club_skipped = &mut self.club_skipped;
        self.playout
            .advance(now, self.block_us, floor, store, awaited, |p| {
                if first.is_none() {
                    first = Some(p);
                }
                if let Played::Skipped(seq) = p {
                    if let Some(n) = club_skipped.get_mut((seq % clubs as u64) as usize) {
                        *n += 1;
                    }
                }
                if emit {
                    if played.len() >= PLAYED_MAX {
                        played.pop_front();
                    }
                    played.push_back(match p {
                        Played::OnTime(seq) | Played::Late(seq) => PlayedBlock {
                            seq,
                            payload: store.get(seq).map(|b| b.payload.clone()),
                        },
                        Played::Skipped(seq) => PlayedBlock { seq, payload: None },
                    });
                }
            });
        if !was_started {
            if let Some(Played::OnTime(seq) | Played::Late(seq) | Played::Skipped(seq)) = first {
                self.events.push_back(PeerEvent::PlaybackStarted { seq });
            }
        }
        if let Some(next) = self.playout.next_seq() {
            self.store
                .forget_below(next.saturating_sub(self.cfg.keep_played));
            self.repair.forget_below(next);
            self.stats.repair_given_up = self.repair.given_up();
        }
    }

    /// Wants, for repair, the blocks missing from the next
    /// `REPAIR_LOOKAHEAD_US` of playback (or, before it starts, from the
    /// start buffer behind the newest block) that are older than the newest
    /// block by `REPAIR_MIN_AGE_US` of media: paths through the swarm
    /// differ by tens of ms, so younger ones may still be on the way, and
    /// older ones were lost, or HAVE kept every in-club neighbour from
    /// sending them.
    fn want_missing_near_their_play_time(&mut self, now: Time) {
        let Some(newest) = self.store.newest() else {
            return;
        };
        let block_us = self.block_us.max(1);
        let ahead = (REPAIR_LOOKAHEAD_US / block_us).clamp(1, 4096);
        let young = (REPAIR_MIN_AGE_US / block_us).max(u64::from(self.club_count));
        // Before playback starts, the start buffer's worth behind the
        // newest block, so that holes do not hold the start back.
        let start_buffer = self.cfg.playout.start_buffer_us / block_us;
        let next = match self.playout.next_seq() {
            Some(next) => next,
            None => newest
                .saturating_sub(start_buffer + young)
                .max(self.store.oldest().unwrap_or(0)),
        };
        let end = next.saturating_add(ahead).min(newest.saturating_sub(young));
        for seq in next..end {
            if !self.store.has(seq) {
                self.repair.want(seq, now, now);
            }
        }
    }

    fn check_quality(&mut self, now: Time) {
        let s = self.playout.stats();
        let stream_bps = f64::from(self.bitrate_kbps) * 1000.0;
        let st = &self.stats;
        let totals = super::quality::QualityTotals {
            bad: s.skipped + s.freezes,
            uploaded: st.block_payload_out,
            hostile: st.forged_rejected
                + st.blocks_from_banned
                + st.blocks_wrong_tag
                + st.signature_checks_refused
                + st.malformed
                + st.wrong_stream
                + st.wrong_club
                + st.tokens_failed
                + st.unsolicited_answers
                + st.retries_ignored,
        };
        match self
            .quality
            .check(now, totals, stream_bps, self.pacer.rate_bps())
        {
            super::quality::Verdict::Healthy => {}
            super::quality::Verdict::Stop => self.fail_gracefully(now),
            super::quality::Verdict::Excused => self.stats.quality_windows_excused += 1,
        }
    }

    /// Drops every connection with reason Leaving (the DROPs queued for
    /// sending), forgets pending requests and queued block sends.
    pub(super) fn drop_everything(&mut self) {
        let downloads: Vec<(SocketAddr, u16)> = self
            .conns
            .downloads
            .iter()
            .map(|d| (d.from, d.club))
            .collect();
        let uploads: Vec<(SocketAddr, u16)> =
            self.conns.uploads.iter().map(|u| (u.to, u.club)).collect();
        for (from, club) in downloads {
            self.drop_connection(from, club, Direction::Download, DropReason::Leaving);
        }
        for (to, club) in uploads {
            self.drop_connection(to, club, Direction::Upload, DropReason::Leaving);
        }
        self.pending.clear();
        self.sends = super::scheduler::SendScheduler::new(16_384, self.cfg.in_club_run);
    }

    /// Stops all download and upload activity ([0063]) until a back-off
    /// that doubles with each failure in a row has passed.
    fn fail_gracefully(&mut self, now: Time) {
        self.drop_everything();
        self.failures += 1;
        self.stats.graceful_failures += 1;
        self.resume_at = Some(now.plus_ms(backoff_ms(self.failures)));
        self.playout.stop(now);
        self.failed = true;
        self.events.push_back(PeerEvent::GracefulFailure);
    }

    /// Comes back after a graceful failure's back-off: connections are
    /// made afresh and playback buffers again; blocks that fell due while
    /// stopped count as missed.
    pub(super) fn resume(&mut self, now: Time) {
        self.failed = false;
        self.resume_at = None;
        self.quality = super::quality::QualityMonitor::new(self.cfg.quality, now);
        self.next_tick = now;
        self.events.push_back(PeerEvent::Resumed);
    }
}
