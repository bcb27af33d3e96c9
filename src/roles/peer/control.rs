//! The peer's answers to control messages: tracker list, club queries,
//! pings, connection requests and their answers, drops, keep-alives (with
//! the downloader's report of the upload), HAVE, BITFIELD and REQUEST
//! ([0030]-[0039], [0046]-[0047], [0053], [0056], [0059]). Answers to PING
//! and CONNECT give round-trip samples (never from a CONNECT sent twice);
//! an ACCEPT that comes after its CONNECT was given up is taken if the
//! connection is still wanted, and undone with a DROP if not.

use std::net::SocketAddr;

use rand::Rng;

use super::conns::Download;
use super::rtt;
use super::scheduler::Lane;
use super::traversal::NatType;
use super::{validation, Mode, Peer, PeerEvent, SendItem};
use crate::roles::Time;
use crate::wire::{
    bitfield, Accept, AddrList, Bitfield, ClubList, ClubPeers, ClubPeersRequest, Connect,
    Direction, DropReason, Have, KeepAlive, Load, Message, MessageType, PeerList, Ping, Pong,
    Refuse, RefuseReason, DELAY_UNKNOWN,
};

/// Round trip assumed for a downloader's report while none was measured,
/// us.
const REPORT_RTT_US: u64 = 100_000;

/// Least time between two catch-ups on one upload, us.
const CATCH_UP_EVERY_US: u64 = 1_000_000;

/// Most addresses in a CLUB_PEERS answer.
const CLUB_PEERS_MAX: usize = 32;

impl Peer {
    pub(super) fn on_control(&mut self, now: Time, from: SocketAddr, msg: &Message<'_>) {
        match msg {
            Message::PeerList(list) => self.on_peer_list(now, from, list),
            Message::ClubPeersRequest(req) => self.on_club_peers_request(from, req),
            Message::ClubPeers(ans) => self.on_club_peers(now, ans),
            Message::Retry(retry) => self.on_retry(now, from, retry),
            Message::Ping(ping) => self.on_ping(now, from, ping),
            Message::Pong(pong) => self.on_pong(now, from, pong),
            Message::Connect(req) => self.on_connect(now, from, req),
            Message::Accept(acc) => self.on_accept(now, from, acc),
            Message::Refuse(refuse) => self.on_refuse(now, from, refuse),
            Message::Drop(drop) => self.on_drop(from, drop),
            Message::KeepAlive(ka) => self.on_keepalive(now, from, ka),
            Message::Have(have) => {
                if let Some(u) = self.conns.upload(from, have.club) {
                    if u.tag == have.tag {
                        u.have.insert(have.seq);
                    } else {
                        self.stats.control_wrong_tag += 1;
                    }
                }
            }
            Message::Bitfield(bf) => self.on_bitfield(from, bf),
            Message::Request(req) => self.on_request(now, from, req),
            Message::Punch(punch) => self.on_punch(now, from, punch),
            Message::Join(_)
            | Message::Heartbeat(_)
            | Message::PunchRequest(_)
            | Message::Block(_) => {
                self.stats.malformed += 1;
            }
        }
    }

    /// A DROP ends one connection. One with reason Leaving says its
    /// sender is going away: once no connection with it remains, it is
    /// forgotten with whatever was pending towards it, so the replacement
    /// `keep_targets` seeks next is never the peer that just left (its
    /// PONG would otherwise stay fresh for seconds and draw the CONNECT to
    /// a dead address, leaving the club without a download until the
    /// CONNECT times out). Should the sender still be there, its next
    /// datagram makes it a contact again. A DROP without the connection's
    /// tag ends nothing: anyone can send one under a neighbour's address.
    fn on_drop(&mut self, from: SocketAddr, drop: &crate::wire::Drop) {
        // The sender's direction: its download is our upload.
        let ours = match drop.direction {
            Direction::Download => Direction::Upload,
            Direction::Upload => Direction::Download,
        };
        if !self.tag_matches(from, drop.club, ours, drop.tag) {
            return;
        }
        match drop.direction {
            Direction::Download => self.conns.remove_upload(from, drop.club),
            Direction::Upload => self.conns.remove_download(from, drop.club),
        };
        if drop.reason == DropReason::Leaving && !self.conns.involves(from) {
            self.contacts.remove(&from);
            self.pending.retain(|p| p.to != from);
        }
    }

    fn on_peer_list(&mut self, now: Time, from: SocketAddr, list: &PeerList<'_>) {
        if Some(from) != self.cfg.tracker || list.stream != self.tag {
            self.stats.malformed += 1;
            return;
        }
        self.heartbeat_ms = u64::from(list.heartbeat_ms).clamp(500, 60_000);
        self.last_list = now;
        self.traversal.tracker_saw(list.observed);
        for addr in list.peers.iter() {
            self.contacts.entry(addr, now);
        }
        if self.joined {
            return;
        }
        self.joined = true;
        self.club_count = list.club_count;
        if self.cfg.mode == Mode::Peer && self.clubs.is_empty() {
            self.clubs = list
                .recommended
                .iter()
                .filter(|c| *c < list.club_count)
                .collect();
            if self.clubs.is_empty() {
                self.clubs.push(self.rng.random_range(0..list.club_count));
            }
        }
        self.events.push_back(PeerEvent::Joined {
            clubs: self.clubs.clone(),
            club_count: self.club_count,
        });
    }

    fn on_club_peers_request(&mut self, from: SocketAddr, req: &ClubPeersRequest) {
        if !self.validated(
            from,
            &req.token,
            MessageType::ClubPeersRequest,
            req.request_id,
        ) {
            return;
        }
        let max = usize::from(req.max_peers).min(CLUB_PEERS_MAX);
        // Connected members first ([0037]), then others known to be in it.
        let mut found: Vec<SocketAddr> = Vec::with_capacity(max);
        let connected = self
            .conns
            .downloads
            .iter()
            .filter(|d| d.club == req.club)
            .map(|d| d.from)
            .chain(
                self.conns
                    .uploads
                    .iter()
                    .filter(|u| u.club == req.club && u.in_club)
                    .map(|u| u.to),
            );
        let known = self.contacts.members(req.club).map(|(a, _)| *a);
        for addr in connected.chain(known) {
            if found.len() >= max {
                break;
            }
            if addr != from && !found.contains(&addr) {
                found.push(addr);
            }
        }
        let answer = Message::ClubPeers(ClubPeers {
            request_id: req.request_id,
            club: req.club,
            peers: AddrList::Items(&found),
        });
        self.send(from, &answer);
    }

    fn on_club_peers(&mut self, now: Time, ans: &ClubPeers<'_>) {
        if self.club_query(now, ans.request_id) != Some(ans.club) {
            self.stats.unsolicited_answers += 1;
            return;
        }
        for addr in ans.peers.iter() {
            let c = self.contacts.entry(addr, now);
            if !c.clubs.contains(&ans.club) && c.pong.is_none() {
                c.clubs.push(ans.club);
            }
        }
    }

    /// This peer's connection counts relative to `club` ([0033]-[0034]).
    pub(super) fn load(&self, club: u16) -> Load {
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        Load {
            uploads_in_club: count(self.conns.uploads.iter().filter(|u| u.club == club).count()),
            uploads_out_of_club: count(
                self.conns.uploads.iter().filter(|u| u.club != club).count(),
            ),
            downloads_in_club: count(self.conns.downloads_of(club)),
            downloads_out_of_club: count(
                self.conns
                    .downloads
                    .iter()
                    .filter(|d| d.club != club)
                    .count(),
            ),
        }
    }

    fn on_ping(&mut self, now: Time, from: SocketAddr, ping: &Ping) {
        if !self.validated(from, &ping.token, MessageType::Ping, ping.nonce) {
            return;
        }
        // A validated prober is a live peer worth knowing.
        self.contacts.entry(from, now).heard = now;
        let clubs = self.clubs.clone();
        let pong = Message::Pong(Pong {
            nonce: ping.nonce,
            club: ping.club,
            load: self.load(ping.club),
            spare_kbps: self.pacer.spare_kbps(),
            clubs: ClubList::Items(&clubs),
            reach: self.nat_type().gauge() as u8,
            observed: Some(from),
        });
        self.send(from, &pong);
        self.reping_if_waiting(now, from);
    }

    fn on_pong(&mut self, now: Time, from: SocketAddr, pong: &Pong<'_>) {
        if pong.nonce == 0 && self.conns.downloads.iter().any(|d| d.from == from) {
            return; // the answer to a liveness probe: hearing it was all
        }
        // Only a contact this peer already knows (from the tracker, a
        // CLUB_PEERS it asked for, or a validated request) is updated: an
        // unsolicited PONG never adds an address to probe.
        let Some(c) = self.contacts.get_mut(&from) else {
            self.stats.unsolicited_answers += 1;
            return;
        };
        c.clubs.clear();
        c.clubs.extend(pong.clubs.iter().take(64));
        c.pong = Some((now, pong.load));
        c.spare_kbps = pong.spare_kbps;
        c.public = pong.reach == NatType::Public.gauge() as u8;
        self.traversal.peer_saw(from, pong.observed);
        self.note_punch_success(from);
        let Some(c) = self.contacts.get_mut(&from) else {
            return;
        };
        if let Some(sent) = c
            .pinged
            .filter(|_| c.ping_nonce == pong.nonce && pong.nonce != 0)
        {
            rtt::record(&mut c.rtt, now.0.saturating_sub(sent.0));
        }
    }

    /// A downloader keeps its connection and reports how it fares
    /// ([0053]); the report feeds the uplink estimate.
    fn on_keepalive(&mut self, now: Time, from: SocketAddr, ka: &KeepAlive) {
        let rtt = self
            .contacts
            .get(&from)
            .and_then(|c| c.rtt)
            .map_or(REPORT_RTT_US, |r| r.srtt_us());
        let Some(u) = self.conns.upload(from, ka.club) else {
            self.no_such_upload(from, ka.club, ka.tag);
            return;
        };
        if u.tag != ka.tag {
            self.stats.control_wrong_tag += 1;
            return;
        }
        u.keepalive = now;
        let queuing =
            (ka.queue_delay_ms != DELAY_UNKNOWN).then(|| u64::from(ka.queue_delay_ms) * 1000);
        u.report(now, rtt, ka.received, queuing);
    }

    fn refuse(&mut self, to: SocketAddr, request_id: u32, reason: RefuseReason) {
        self.send(to, &Message::Refuse(Refuse { request_id, reason }));
    }

    fn on_connect(&mut self, now: Time, from: SocketAddr, req: &Connect<'_>) {
        // No connection, and so no upload, for an address that has not
        // shown it receives at it.
        if !self.validated(from, &req.token, MessageType::Connect, req.request_id) {
            return;
        }
        // A request is allowed even from a banned peer ([0059]); the ban
        // list only steers this peer's own choices ([0039]).
        if !self.in_club(req.club) {
            return self.refuse(from, req.request_id, RefuseReason::NotInClub);
        }
        let initiator_in_club = req.clubs.iter().any(|c| c == req.club);
        {
            let c = self.contacts.entry(from, now);
            c.clubs.clear();
            c.clubs.extend(req.clubs.iter().take(64));
        }
        let accept = Message::Accept(Accept {
            request_id: req.request_id,
            direction: req.direction,
            club: req.club,
            block_tag: self.block_tag(from),
        });
        match req.direction {
            // The initiator downloads: this peer uploads to it.
            Direction::Download => {
                // The source serves `source_uploads` in-club peers per club
                // ([0029]); other clubs get its blocks through the members.
                // A club with no member yet (a small swarm) is served to
                // up to `source_outsiders` outsiders directly, until members
                // come.
                let pending_uploads = self
                    .pending
                    .iter()
                    .filter(|p| p.club == req.club && p.direction == Direction::Upload)
                    .count();
                let in_club = self.conns.in_club_uploads_of(req.club) + pending_uploads;
                let outsiders = self
                    .conns
                    .uploads
                    .iter()
                    .filter(|u| u.club == req.club && !u.in_club)
                    .count();
                let memberless =
                    in_club == 0 && !self.contacts.members(req.club).any(|(a, _)| *a != from);
                let full = if initiator_in_club {
                    in_club >= self.cfg.source_uploads
                } else {
                    !memberless || outsiders >= self.cfg.source_outsiders
                };
                if self.cfg.mode == Mode::Source
                    && full
                    && self.conns.upload(from, req.club).is_none()
                {
                    return self.refuse(from, req.request_id, RefuseReason::Full);
                }
                // An uplink that cannot carry what it has takes no more
                // out-of-club uploads ([0048] keeps in-club first).
                if !initiator_in_club
                    && self.uplink_saturated()
                    && self.conns.upload(from, req.club).is_none()
                {
                    return self.refuse(from, req.request_id, RefuseReason::Full);
                }
                self.conns
                    .add_upload(from, req.club, initiator_in_club, req.block_tag, now);
                self.send(from, &accept);
                if initiator_in_club && self.conns.in_club_uploads_of(req.club) > self.upload_cap()
                {
                    self.trim(req.club, Direction::Upload, from);
                }
            }
            // The initiator uploads: this peer downloads, inside the club.
            Direction::Upload => {
                if !initiator_in_club || self.cfg.mode == Mode::Source {
                    return self.refuse(from, req.request_id, RefuseReason::NotInClub);
                }
                // ACCEPT first: the uploader records the connection on it,
                // and only then can use the BITFIELD that follows.
                self.send(from, &accept);
                if self.conns.download(from, req.club).is_none() {
                    self.add_download(now, from, req.club);
                }
                if self.conns.downloads_of(req.club) > self.cfg.in_club_max {
                    self.trim(req.club, Direction::Download, from);
                }
            }
        }
    }

    /// A download of foreign `club` from `from`, behind a router, was
    /// accepted: downloads of the club from public uploaders are dropped
    /// (see `hand_over_from_public`), unless the club is missing and
    /// wants them all.
    fn release_public_uploaders(&mut self, club: u16, from: SocketAddr) {
        let public =
            |c: &super::contacts::Contacts, a: &SocketAddr| c.get(a).is_some_and(|c| c.public);
        if public(&self.contacts, &from) || self.club_missing(club) {
            return;
        }
        let released: Vec<SocketAddr> = self
            .conns
            .downloads
            .iter()
            .filter(|d| d.club == club && public(&self.contacts, &d.from))
            .map(|d| d.from)
            .collect();
        for to in released {
            self.stats.handovers += 1;
            self.drop_connection(to, club, Direction::Download, DropReason::Trimmed);
        }
    }

    /// Drops one random in-club connection of `club` in `direction`, other
    /// than the one just made with `keep` ([0059]).
    fn trim(&mut self, club: u16, direction: Direction, keep: SocketAddr) {
        let others: Vec<SocketAddr> = match direction {
            Direction::Upload => self
                .conns
                .uploads
                .iter()
                .filter(|u| u.club == club && u.in_club && u.to != keep)
                .map(|u| u.to)
                .collect(),
            Direction::Download => self
                .conns
                .downloads
                .iter()
                .filter(|d| d.club == club && d.from != keep)
                .map(|d| d.from)
                .collect(),
        };
        if others.is_empty() {
            return;
        }
        let victim = others[self.rng.random_range(0..others.len())];
        self.drop_connection(victim, club, direction, DropReason::Trimmed);
    }

    /// Records a new download and tells the uploader which recent blocks of
    /// the club this peer already holds ([0056]).
    pub(super) fn add_download(&mut self, now: Time, from: SocketAddr, club: u16) {
        let in_club = self.in_club(club);
        let tag = self.block_tag(from);
        self.conns
            .downloads
            .push(Download::new(from, tag, club, in_club, now));
        let Some(newest) = self.store.newest() else {
            // Nothing held yet: an empty bit field asks the uploader for
            // its recent blocks of the club, so playback can start at once.
            let empty = Message::Bitfield(Bitfield {
                club,
                start_seq: 0,
                bits: 0,
                first: false,
                tag,
                runs: &[],
            });
            self.send(from, &empty);
            return;
        };
        let c = u64::from(self.club_count);
        // Bit i stands for start + i * club_count: the club's recent blocks.
        let back = (newest % c + c - u64::from(club) % c) % c;
        let Some(newest_of_club) = newest.checked_sub(back) else {
            return;
        };
        let span = (self.cfg.catch_up_blocks as u64).clamp(1, 4096);
        let k = (span - 1).min(newest_of_club / c);
        let start = newest_of_club - k * c;
        let nbits = (k + 1) as usize;
        let mut bits = vec![0u8; bitfield::packed_len(nbits)];
        for i in 0..nbits {
            if self.store.has(start + i as u64 * c) {
                bitfield::set_bit(&mut bits, i);
            }
        }
        let mut runs = vec![0u8; 2 * nbits + 8];
        if let Ok((first, len)) = bitfield::encode(&bits, nbits, &mut runs) {
            let msg = Message::Bitfield(Bitfield {
                club,
                start_seq: start,
                bits: nbits as u16,
                first,
                tag,
                runs: &runs[..len],
            });
            self.send(from, &msg);
        }
    }

    /// `from` acts on a download of `club` from this peer that this peer
    /// does not upload: its DROP crossed a CONNECT (datagrams reorder), or
    /// it was lost. Unless a request of this peer's own to upload to
    /// `from` is under way (its ACCEPT may simply be late), a DROP tells
    /// `from` to find another uploader instead of waiting for blocks that
    /// never come. The DROP carries the tag `from` put on its message (this
    /// peer keeps none for a connection it does not have): `from` takes it
    /// only if it is the tag it gave this peer, so a KEEPALIVE or BITFIELD
    /// spoofed under `from`'s address draws a DROP that `from` ignores.
    fn no_such_upload(&mut self, from: SocketAddr, club: u16, tag: u64) {
        let asking = self
            .pending
            .iter()
            .any(|p| p.to == from && p.club == club && p.direction == Direction::Upload);
        if !asking {
            self.send(
                from,
                &Message::Drop(crate::wire::Drop {
                    direction: Direction::Upload,
                    club,
                    reason: crate::wire::DropReason::NoSuchConnection,
                    tag,
                }),
            );
        }
    }

    /// The answer to a CONNECT of this peer's came: a round-trip sample
    /// when it was sent once.
    fn answered(&mut self, now: Time, from: SocketAddr, p: &super::maintain::Pending) {
        if p.attempts == 1 {
            let c = self.contacts.entry(from, now);
            rtt::record(&mut c.rtt, now.0.saturating_sub(p.sent.0));
        }
    }

    fn on_accept(&mut self, now: Time, from: SocketAddr, acc: &Accept) {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.request_id == acc.request_id && p.to == from)
        else {
            return self.on_late_accept(now, from, acc);
        };
        let p = self.pending.swap_remove(i);
        self.answered(now, from, &p);
        match p.direction {
            Direction::Download => {
                if self.conns.download(from, p.club).is_none() {
                    self.add_download(now, from, p.club);
                }
                if self.in_club(p.club) && self.conns.downloads_of(p.club) > self.cfg.in_club_max {
                    self.trim(p.club, Direction::Download, from);
                }
                if !self.in_club(p.club) {
                    self.release_public_uploaders(p.club, from);
                }
            }
            Direction::Upload => {
                self.conns
                    .add_upload(from, p.club, true, acc.block_tag, now);
                // Requests accepted meanwhile may have filled the club: the
                // answer that overshoots trims like an accepted request
                // does ([0059]).
                if self.conns.in_club_uploads_of(p.club) > self.upload_cap() {
                    self.trim(p.club, Direction::Upload, from);
                }
            }
        }
    }

    /// An ACCEPT for a CONNECT given up: the other side holds the
    /// connection now. Keep it if one is still wanted, else say so with a
    /// DROP rather than leave it waiting for a KEEPALIVE timeout.
    fn on_late_accept(&mut self, now: Time, from: SocketAddr, acc: &Accept) {
        let Some(i) = self
            .given_up
            .iter()
            .position(|p| p.request_id == acc.request_id && p.to == from)
        else {
            return;
        };
        let Some(p) = self.given_up.remove(i) else {
            return;
        };
        self.stats.late_accepts += 1;
        self.contacts.entry(from, now).refused_until = Time(0);
        let wanted = match p.direction {
            Direction::Download => {
                let want = if self.in_club(p.club) {
                    self.cfg.in_club_max
                } else {
                    1
                };
                self.conns.download(from, p.club).is_none()
                    && self.conns.downloads_of(p.club) < want
            }
            Direction::Upload => {
                self.conns.upload(from, p.club).is_none()
                    && self.conns.in_club_uploads_of(p.club) < self.upload_cap()
            }
        };
        if !wanted {
            // The connection its ACCEPT made, from this side.
            let tag = match p.direction {
                Direction::Download => self.block_tag(from),
                Direction::Upload => acc.block_tag,
            };
            self.send(
                from,
                &Message::Drop(crate::wire::Drop {
                    direction: p.direction,
                    club: p.club,
                    reason: DropReason::Trimmed,
                    tag,
                }),
            );
            return;
        }
        match p.direction {
            Direction::Download => self.add_download(now, from, p.club),
            Direction::Upload => self
                .conns
                .add_upload(from, p.club, true, acc.block_tag, now),
        }
    }

    fn on_refuse(&mut self, now: Time, from: SocketAddr, refuse: &Refuse) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.request_id == refuse.request_id && p.to == from)
        {
            let p = self.pending.swap_remove(i);
            self.answered(now, from, &p);
            self.contacts.entry(from, now).refused_until = now.plus_ms(2_000);
        }
    }

    /// A new downloader said which blocks it holds: send it the recent ones
    /// it lacks, and remember the ones it has ([0056]).
    fn on_bitfield(&mut self, from: SocketAddr, bf: &Bitfield<'_>) {
        let c = u64::from(self.club_count);
        let nbits = usize::from(bf.bits).min(self.cfg.catch_up_blocks.max(1) * 4);
        let mut bits = vec![0u8; bitfield::packed_len(usize::from(bf.bits))];
        if bf.decode_into(&mut bits).is_err() {
            self.stats.malformed += 1;
            return;
        }
        let Some(upload) = self.conns.upload(from, bf.club) else {
            self.no_such_upload(from, bf.club, bf.tag);
            return;
        };
        if upload.tag != bf.tag {
            self.stats.control_wrong_tag += 1;
            return;
        }
        let lane = if upload.in_club {
            Lane::InClub
        } else {
            Lane::OutOfClub
        };
        let tag = upload.tag;
        // One catch-up per connection and second: a BITFIELD repeated
        // faster only tells what the receiver holds.
        let now = self.now;
        let resend = upload
            .caught_up
            .is_none_or(|t| now.0 >= t.0 + CATCH_UP_EVERY_US);
        if resend {
            upload.caught_up = Some(now);
        } else {
            self.stats.catch_ups_refused += 1;
        }
        let mut missing = Vec::new();
        let mut limit = self.cfg.catch_up_blocks;
        if bf.bits == 0 {
            // A newcomer holding nothing: its start buffer's worth of the
            // club's newest blocks.
            let club = u64::from(bf.club);
            let from_seq = self.store.newest().map_or(0, |n| {
                n.saturating_sub(self.cfg.join_catch_up_blocks as u64 * c)
            });
            missing.extend(
                self.store
                    .seqs_in(from_seq..u64::MAX)
                    .filter(|s| s % c == club),
            );
            limit = self.cfg.join_catch_up_blocks;
        }
        for i in 0..nbits {
            let seq = bf.start_seq.saturating_add(i as u64 * c);
            if bitfield::get_bit(&bits, i) {
                upload.have.insert(seq);
            } else if self.store.has(seq) {
                missing.push(seq);
            }
        }
        if nbits > 0 {
            // Blocks of the club newer than the receiver's window: it could
            // not name them, and they came here before this upload existed,
            // so no push carried them ([0056]).
            let club = u64::from(bf.club);
            let end = bf.start_seq.saturating_add((nbits as u64 - 1) * c);
            missing.extend(
                self.store
                    .seqs_in(end.saturating_add(1)..u64::MAX)
                    .filter(|s| s % c == club),
            );
        }
        if !resend {
            return;
        }
        let keep = missing.len().saturating_sub(limit);
        for seq in missing.into_iter().skip(keep) {
            self.sends.push(
                lane,
                SendItem {
                    to: from,
                    tag,
                    seq,
                    queued: now,
                    due: now,
                    repair: false,
                },
            );
        }
    }

    /// Sends HAVE for `seq` to the in-club peers this peer downloads `club`
    /// from, except `except` ([0046]).
    pub(super) fn announce_have(&mut self, club: u16, seq: u64, except: SocketAddr) {
        let targets: Vec<(SocketAddr, u64)> = self
            .conns
            .downloads
            .iter()
            .filter(|d| d.club == club && d.in_club && d.from != except)
            .map(|d| (d.from, d.tag))
            .collect();
        for (to, tag) in targets {
            self.send(to, &Message::Have(Have { club, seq, tag }));
        }
    }

    /// Asks peers for members of `club` ([0032], [0037]).
    pub(super) fn query_club(&mut self, now: Time, club: u16) {
        let last = self.club_query_sent.get(&club).copied();
        if last.is_some_and(|t| now.0 < t.0 + 1_000_000) {
            return;
        }
        self.club_query_sent.insert(club, now);
        let mut asked = self.conns.peers();
        if asked.len() < 3 {
            let mut others: Vec<SocketAddr> = self
                .contacts
                .iter()
                .filter(|(a, _)| !self.bans.is_banned(a))
                .map(|(a, _)| *a)
                .collect();
            others.sort_unstable();
            for _ in 0..3 {
                if others.is_empty() {
                    break;
                }
                let i = self.rng.random_range(0..others.len());
                asked.push(others.swap_remove(i));
            }
        }
        let request_id = self.fresh_id();
        if self.club_queries.len() >= validation::CLUB_QUERIES_MAX {
            self.club_queries.pop_front();
        }
        self.club_queries.push_back((request_id, club, now));
        for to in asked.into_iter().take(4) {
            self.send_club_peers_request(to, request_id, club);
        }
    }

    /// Sends a CLUB_PEERS_REQUEST, with `to`'s token.
    pub(super) fn send_club_peers_request(&mut self, to: SocketAddr, request_id: u32, club: u16) {
        let token = self.token_for(to);
        let req = Message::ClubPeersRequest(ClubPeersRequest {
            request_id,
            club,
            max_peers: CLUB_PEERS_MAX as u16,
            token,
        });
        self.send(to, &req);
    }
}
