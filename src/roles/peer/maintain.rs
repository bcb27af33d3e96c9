//! A peer's housekeeping, run every tick: tracker join and heartbeats,
//! keep-alives and the timeouts of [0053], ban parole ([0055]), keeping the
//! connection targets of [0026]-[0028] (which also carries out the
//! replacement rules of [0056]-[0058]), playback, and the quality check of
//! [0063].

use std::net::SocketAddr;

use super::playout::Played;
use super::{Mode, Peer, PeerEvent};
use super::{PlayedBlock, PLAYED_MAX};

/// Blocks over which playback measures media time per block.
const PACE_WINDOW: u64 = 512;

/// Fewest blocks that measurement needs.
const PACE_MIN_SPAN: u64 = 64;
use crate::roles::Time;
use crate::wire::{
    ClubList, Connect, Direction, DropReason, Heartbeat, Join, JoinRole, KeepAlive, Message, Ping,
};

/// A connection request awaiting its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub request_id: u32,
    pub to: SocketAddr,
    pub club: u16,
    pub direction: Direction,
    pub sent: Time,
}

/// Unanswered JOINs (one a second) before the peer reports the tracker
/// silent: down, unreachable, or serving another stream.
const TRACKER_SILENT_AFTER: u32 = 3;

/// Unknown-club contacts pinged per tick.
const DISCOVERY_PINGS_PER_TICK: usize = 16;

/// Pings per club and tick while looking for a connection.
const CLUB_PINGS_PER_TICK: usize = 4;

impl Peer {
    pub(super) fn tick(&mut self, now: Time) {
        self.talk_to_tracker(now);
        if now.0 >= self.last_ban_sweep.0 + self.cfg.ban_sweep_ms * 1000 {
            self.last_ban_sweep = now;
            self.bans.sweep(&mut self.rng);
        }
        self.keepalives_and_timeouts(now);
        // An unanswered CONNECT means the peer is likely gone: forget its
        // PONG and do not choose it again for a while.
        let timeout = self.cfg.connect_timeout_ms * 1000;
        let expired: Vec<SocketAddr> = self
            .pending
            .iter()
            .filter(|p| now.0 >= p.sent.0 + timeout)
            .map(|p| p.to)
            .collect();
        self.pending.retain(|p| now.0 < p.sent.0 + timeout);
        for addr in expired {
            let c = self.contacts.entry(addr, now);
            c.pong = None;
            c.refused_until = now.plus_ms(5_000);
        }
        if self.joined {
            self.discover(now);
            self.keep_targets(now);
        }
        if self.cfg.mode == Mode::Peer {
            self.play(now);
            self.check_quality(now);
        }
    }

    fn talk_to_tracker(&mut self, now: Time) {
        let Some(tracker) = self.cfg.tracker else {
            return;
        };
        if !self.joined {
            if self.last_join_sent.is_none_or(|t| now.0 >= t.0 + 1_000_000) {
                self.last_join_sent = Some(now);
                self.joins_sent += 1;
                if self.joins_sent == TRACKER_SILENT_AFTER + 1 {
                    self.events.push_back(PeerEvent::TrackerSilent { tracker });
                }
                let role = match self.cfg.mode {
                    Mode::Peer => JoinRole::Viewer,
                    Mode::Source => JoinRole::Source,
                    Mode::Relay => JoinRole::Relay,
                };
                let join = Message::Join(Join {
                    stream: self.tag,
                    peer_id: self.cfg.peer_id,
                    max_peers: self.cfg.tracker_peers,
                    role,
                });
                self.send(tracker, &join);
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
        // missed intervals (but never less than `silence_ms`) mean the
        // uploader is gone. A connection that has carried nothing yet gets
        // `first_block_ms`, since a new uploader may still be joining.
        let club_interval = self.block_us * u64::from(self.club_count);
        let silence = if club_interval == 0 {
            self.cfg.first_block_ms * 1000
        } else {
            (self.cfg.silence_ms * 1000).max(self.cfg.silence_intervals * club_interval)
        };
        let first_block = self.cfg.first_block_ms * 1000;
        let reorder = self.cfg.reorder_ms * 1000;
        // A download is silent only while the stream is live: when no
        // fresh block came from anywhere for half the silence limit, the
        // feed itself paused (or has not begun), and its uploaders are not
        // to blame.
        let stream_live = self.last_fresh.is_some_and(|t| now.0 < t.0 + silence / 2);
        let mut to_send = Vec::new();
        let mut silent = Vec::new();
        let mut gaps = Vec::new();
        for d in &mut self.conns.downloads {
            if d.gap.is_some_and(|(_, since)| now.0 >= since.0 + reorder) {
                gaps.push((d.from, d.club));
                continue;
            }
            if now.0 >= d.keepalive_sent.0 + keepalive {
                d.keepalive_sent = now;
                to_send.push((d.from, d.club));
            }
            // Foreign downloads carry every block of their club; in-club
            // ones may be quiet under HAVE, so there only a peer that sends
            // nothing at all (not even a PONG) counts as silent.
            let last = if d.in_club {
                self.contacts.get(&d.from).map_or(d.last_block, |c| c.heard)
            } else {
                d.last_block
            };
            let limit = if d.last_seq.is_none() {
                first_block.max(silence)
            } else {
                silence
            };
            if now.0 >= last.0 + limit && (d.in_club || stream_live) {
                silent.push((d.from, d.club));
            } else if d.in_club && now.0 >= last.0 + silence / 2 {
                to_send.push((d.from, u16::MAX));
            }
        }
        for (to, club) in to_send {
            let msg = if club == u16::MAX {
                Message::Ping(Ping { nonce: 0, club: 0 })
            } else {
                Message::KeepAlive(KeepAlive { club })
            };
            self.send(to, &msg);
        }
        for (from, club) in silent {
            self.drop_connection(from, club, Direction::Download, DropReason::Silence);
        }
        for (from, club) in gaps {
            self.drop_connection(from, club, Direction::Download, DropReason::SequenceGap);
        }
        let timeout = self.cfg.keepalive_timeout_ms * 1000;
        let stale: Vec<(SocketAddr, u16)> = self
            .conns
            .uploads
            .iter()
            .filter(|u| now.0 >= u.keepalive.0 + timeout)
            .map(|u| (u.to, u.club))
            .collect();
        for (to, club) in stale {
            self.drop_connection(to, club, Direction::Upload, DropReason::KeepAliveTimeout);
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

    fn ping(&mut self, now: Time, to: SocketAddr, club: u16) {
        self.contacts.entry(to, now).pinged = Some(now);
        let nonce = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.send(to, &Message::Ping(Ping { nonce, club }));
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
            // The source keeps two uploads in every club ([0029]).
            for club in 0..self.club_count {
                let have =
                    self.conns.in_club_uploads_of(club) + self.pending_for(club, Direction::Upload);
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
            let want_down = if own { self.cfg.in_club_min } else { 1 };
            let have_down =
                self.conns.downloads_of(club) + self.pending_for(club, Direction::Download);
            if have_down < want_down {
                self.try_connect(now, club, Direction::Download);
            }
            if own {
                let have_up =
                    self.conns.in_club_uploads_of(club) + self.pending_for(club, Direction::Upload);
                if have_up < self.cfg.in_club_min {
                    self.try_connect(now, club, Direction::Upload);
                }
            }
        }
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
        let mut chosen = self
            .contacts
            .choose(club, now, fresh_since, how, &mut self.rng, |a| {
                !bans.is_banned(a) && free(a)
            });
        if chosen.is_none() && self.cfg.mode != Mode::Source {
            chosen = self
                .contacts
                .choose(club, now, fresh_since, how, &mut self.rng, free);
        }
        match chosen {
            Some(to) => {
                self.next_request_id = self.next_request_id.wrapping_add(1);
                let request_id = self.next_request_id;
                self.pending.push(Pending {
                    request_id,
                    to,
                    club,
                    direction,
                    sent: now,
                });
                let clubs = self.clubs.clone();
                self.stats.connects += 1;
                self.send(
                    to,
                    &Message::Connect(Connect {
                        request_id,
                        direction,
                        club,
                        clubs: ClubList::Items(&clubs),
                    }),
                );
            }
            None => self.look_for_members(now, club),
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
        let was_started = self.playout.started_at().is_some();
        let mut first = None;
        let c = u64::from(self.club_count);
        let downloads = &self.conns.downloads;
        let pending = &self.pending;
        // A missing block may still come while some download of its club
        // has not yet moved past it (or one is being opened); otherwise
        // waiting for it only delays playback.
        let awaited = |seq: u64| {
            let club = seq % c;
            downloads
                .iter()
                .any(|d| u64::from(d.club) == club && d.last_seq.is_none_or(|l| l < seq))
                || pending
                    .iter()
                    .any(|p| p.direction == Direction::Download && u64::from(p.club) == club)
        };
        let emit = self.cfg.emit_played;
        let store = &self.store;
        let played = &mut self.played;
        self.playout
            .advance(now, self.block_us, store, awaited, |p| {
                if first.is_none() {
                    first = Some(p);
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
        }
    }

    fn check_quality(&mut self, now: Time) {
        let s = self.playout.stats();
        let stream_bps = f64::from(self.bitrate_kbps) * 1000.0;
        if self.quality.check(
            now,
            s.skipped + s.freezes,
            self.stats.block_payload_out,
            stream_bps,
        ) {
            self.fail_gracefully();
        }
    }

    /// Stops all download and upload activity ([0063]).
    fn fail_gracefully(&mut self) {
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
        self.failed = true;
        self.events.push_back(PeerEvent::GracefulFailure);
    }
}
