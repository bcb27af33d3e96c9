//! The data path of a peer: receiving, checking and forwarding blocks
//! ([0046]-[0052]).
//!
//! A block is taken only with the block tag this peer gave its sender's
//! address (so an off-path spoofer's is dropped before it costs a check
//! or gets the real sender banned), and verified before anything else is
//! done with it; a forged one
//! is counted, never stored, played or forwarded, and costs its sender the
//! connection. A genuine block on a download feeds the delay and gap rules,
//! and the blocks it shows missing are wanted for repair. A fresh block of
//! one of this peer's clubs is announced with HAVE to the in-club peers it
//! downloads from and queued for every upload of that club whose receiver
//! has not said HAVE; a block of another club is only played ([0050]).
//! Queued sends leave as the uplink pacer allows, in the 9:1 order, and
//! are built at drain time with the proof hashes and signature the
//! receiver lacks ([0049]); one that waited longer than a block is useful
//! is dropped and counted. A block that cannot be checked yet because the
//! datagram carrying the hashes it builds on is late or lost is parked,
//! checked again when more of its batch is verified, and asked for again
//! whole if that does not come soon. A REQUEST is answered from the store,
//! within the requester's budget, with each block's whole proof.

use std::net::SocketAddr;

use super::scheduler::Lane;
use super::store::StoredBlock;
use super::{Mode, Peer, PeerEvent, SendItem};
use crate::auth::Trust;
use crate::forward::{judge, Verdict};
use crate::roles::Time;
use crate::roles::TokenBucket;
use crate::wire::{BatchSignature, Block, Direction, DropReason, Message, Request};

/// A parked block is asked for again, whole, after this long, us: the
/// datagram with its hashes was probably lost, not only late.
const PARKED_ASK_US: u64 = 100_000;

/// A queued forward older than this is dropped, us: by then the receiver
/// has it from elsewhere or will ask for it.
const SEND_QUEUE_MAX_US: u64 = 1_000_000;

/// Least time a fresh in-club push waits for a HAVE, µs.
const PUSH_HOLD_MIN_US: u64 = 1_000;

/// Least wait before a hole is asked for, us.
const REPAIR_WAIT_MIN_US: u64 = 30_000;

/// Tokens the pacer must hold for the next block (a full datagram).
const PACE_UNIT: usize = crate::wire::MAX_DATAGRAM;

/// Burst of a requester's repair budget, in seconds of the stream.
const REPAIR_BURST_S: f64 = 0.5;

/// Blocks of another stream tolerated before the peer reports it.
const WRONG_STREAM_REPORT: u64 = 20;

impl Peer {
    pub(super) fn on_block(
        &mut self,
        now: Time,
        from: SocketAddr,
        block: &Block<'_>,
        trust: Trust,
    ) {
        self.stats.blocks_in += 1;
        self.stats.block_payload_in += block.payload.len() as u64;
        if self.cfg.mode == Mode::Source {
            return;
        }
        // A data plane that checked the tag hands blocks on as verified.
        if trust == Trust::Check && block.tag != self.block_tag(from) {
            self.stats.blocks_wrong_tag += 1;
            return;
        }
        if !self.may_check(now, from, block, trust) {
            return;
        }
        let verified = match judge(&mut self.verifier, self.tag, self.club_count, block, trust) {
            Verdict::Fresh(v) | Verdict::Duplicate(v) => v,
            Verdict::WrongStream => {
                self.stats.wrong_stream += 1;
                if self.stats.unique_blocks == 0 && self.stats.wrong_stream == WRONG_STREAM_REPORT {
                    self.events
                        .push_back(PeerEvent::WrongStream { seen: block.stream });
                }
                return;
            }
            Verdict::WrongClub => {
                self.stats.wrong_club += 1;
                return;
            }
            Verdict::Unverifiable => {
                // Not a forgery: the datagram that carried the hashes it
                // builds on is late or lost. Park it for a moment.
                self.park(now, from, block);
                return;
            }
            Verdict::Stale => {
                self.stats.stale += 1;
                return;
            }
            Verdict::Forged => {
                // Verify before forward: a forgery is never kept, and its
                // sender is banned and loses the connection it came on.
                self.stats.forged_rejected += 1;
                self.ban(from);
                if self.conns.download(from, block.club).is_some() {
                    self.drop_connection(from, block.club, Direction::Download, DropReason::Forged);
                }
                return;
            }
        };
        self.congestion_checks(now, from, block);
        self.got_wanted(block.seq);
        if !verified.fresh || self.store.has(block.seq) {
            self.stats.duplicates += 1;
            return;
        }
        self.accept_block(now, from, block, Time(verified.batch_timestamp_us));
        self.retry_parked(now, block.batch);
    }

    /// Whether `block` from `from` may be judged now. A block from a banned
    /// address with no connection here is dropped unjudged; one that would
    /// cost a signature check (a batch not verified yet) takes a token from
    /// the budget of all checks, and, from an address with no connection,
    /// from the small budget strangers share. So a flood of forged blocks
    /// with fresh batch numbers costs a bounded number of checks a second,
    /// and genuine blocks refused meanwhile come again through repair.
    fn may_check(&mut self, now: Time, from: SocketAddr, block: &Block<'_>, trust: Trust) -> bool {
        let connected = self.conns.is_connected(from);
        if !connected && self.bans.is_banned(&from) {
            self.stats.blocks_from_banned += 1;
            return false;
        }
        if trust == Trust::Verified || !self.verifier.needs_signature(block) {
            return true;
        }
        let allowed = (connected || self.stranger_signatures.take(now, 1.0))
            && self.all_signatures.take(now, 1.0);
        if !allowed {
            self.stats.signature_checks_refused += 1;
        }
        allowed
    }

    /// `seq` is here: it is no longer wanted; count a repair if it was
    /// asked for.
    fn got_wanted(&mut self, seq: u64) {
        if self.repair.got(seq).is_some_and(|w| w.asked > 0) {
            self.stats.repaired += 1;
        }
    }

    /// Keeps a copy of a block that cannot be checked yet (see
    /// [`crate::forward::ParkedBlocks`]) and wants it whole if its hashes
    /// do not come soon.
    fn park(&mut self, now: Time, from: SocketAddr, block: &Block<'_>) {
        self.stats.unverifiable += 1;
        let mut buf = [0u8; crate::wire::MAX_DATAGRAM];
        let Ok(len) = block.encode(&mut buf) else {
            return;
        };
        self.parked.park(now.0, from, block.batch, &buf[..len]);
        // If the hashes do not come soon, the datagram carrying them was
        // lost ([0049] assumes delivery): ask for the block whole.
        self.repair
            .want(block.seq, now, Time(now.0 + PARKED_ASK_US));
    }

    /// Checks parked blocks of `batch` again, now that more of its tree is
    /// known. One that verifies counts for its download as of when it
    /// arrived; one that still lacks hashes stays parked.
    fn retry_parked(&mut self, now: Time, batch: u64) {
        let mut parked = std::mem::take(&mut self.parked);
        parked.expire(now.0);
        parked.retry(batch, |parked_at, from, _, block| {
            let verdict = judge(
                &mut self.verifier,
                self.tag,
                self.club_count,
                block,
                Trust::Check,
            );
            if verdict != Verdict::Unverifiable {
                self.stats.unverifiable = self.stats.unverifiable.saturating_sub(1);
            }
            match verdict {
                Verdict::Fresh(v) | Verdict::Duplicate(v) => {
                    self.congestion_checks(Time(parked_at), from, block);
                    self.got_wanted(block.seq);
                    if v.fresh && !self.store.has(block.seq) {
                        self.accept_block(now, from, block, Time(v.batch_timestamp_us));
                    } else {
                        self.stats.duplicates += 1;
                    }
                }
                Verdict::Unverifiable => {}
                Verdict::Stale => self.stats.stale += 1,
                Verdict::Forged | Verdict::WrongStream | Verdict::WrongClub => {
                    self.stats.forged_rejected += 1;
                }
            }
            verdict
        });
        self.parked = parked;
    }

    /// The delay and gap bookkeeping of a download ([0051]-[0052]). The
    /// blocks a foreign download skipped and this peer lacks are holes,
    /// wanted for repair; they count against the connection unless they
    /// were skipped over a silence. The delay rule compares the download's
    /// one-way delay with its own floor, so the clocks' offset cancels.
    fn congestion_checks(&mut self, now: Time, from: SocketAddr, block: &Block<'_>) {
        let c = u64::from(self.club_count);
        let stall_us = self.stall_us();
        let wait_us = self.repair_wait_us(from, block.club);
        let Some(d) = self.conns.download(from, block.club) else {
            return;
        };
        let quiet_us = now.0.saturating_sub(d.last_block.0);
        d.last_block = d.last_block.max(now);
        d.received = d.received.wrapping_add(1);
        d.owd.sample(now, block.sent_at_us);
        let mut holes = Vec::new();
        // Every block of a foreign club comes on its one download, so a
        // skipped sequence number is a lost or reordered block. In-club,
        // HAVE legitimately skips blocks.
        if !d.in_club {
            if let Some(last) = d.last_seq.filter(|l| block.seq > l + c) {
                let counted = quiet_us < stall_us;
                let store = &self.store;
                for seq in (last + c..block.seq).step_by(c as usize).take(256) {
                    if !store.has(seq) {
                        d.gaps.hole(seq, now, counted);
                        holes.push(seq);
                    }
                }
            }
            d.gaps.delivered(block.seq);
        }
        d.last_seq = Some(d.last_seq.map_or(block.seq, |l| l.max(block.seq)));
        let threshold_us = u64::from(block.delay_threshold_ms) * 1000;
        let delayed = d.owd.queuing_us(now).is_some_and(|q| q > threshold_us);
        for seq in holes {
            self.repair.want(seq, now, Time(now.0 + wait_us));
        }
        if delayed {
            self.drop_connection(from, block.club, Direction::Download, DropReason::Delay);
        }
    }

    /// A download silent for this long before a block came skipped its
    /// holes over a stall, not a loss: four club intervals, at least
    /// `reorder_ms`.
    pub(super) fn stall_us(&self) -> u64 {
        let club_interval = self.block_us * u64::from(self.club_count);
        (4 * club_interval).max(self.cfg.reorder_ms * 1000)
    }

    /// How long a hole on the download from `from` of `club` waits before
    /// it is asked for: twice the path's jitter (it may only be reordered),
    /// at least `REPAIR_WAIT_MIN_US`.
    fn repair_wait_us(&mut self, from: SocketAddr, club: u16) -> u64 {
        let jitter = self
            .conns
            .download(from, club)
            .map_or(0, |d| d.owd.jitter_us());
        (2 * jitter).max(REPAIR_WAIT_MIN_US)
    }

    /// Stores a fresh verified block, announces it and queues it onwards.
    fn accept_block(&mut self, now: Time, from: SocketAddr, block: &Block<'_>, source_time: Time) {
        self.stats.unique_blocks += 1;
        self.stats.unique_payload += block.payload.len() as u64;
        let club = (block.seq % u64::from(self.club_count.max(1))) as usize;
        if self.club_blocks.len() < usize::from(self.club_count) {
            self.club_blocks.resize(usize::from(self.club_count), 0);
            self.club_seen
                .resize(usize::from(self.club_count), (now, false));
        }
        if let Some(n) = self.club_blocks.get_mut(club) {
            *n += 1;
        }
        if let Some(seen) = self.club_seen.get_mut(club) {
            *seen = (now, false);
        }
        // The first fresh block after a pause of the feed (or of this
        // peer's own link) restarts every download's silence clock.
        if self
            .last_fresh
            .is_none_or(|t| now.0 >= t.0 + self.pause_us())
        {
            self.live_since = now;
        }
        self.last_fresh = Some(now);
        if block.bitrate_kbps > 0 {
            self.bitrate_kbps = block.bitrate_kbps;
            self.block_us = block.payload.len() as u64 * 8_000 / u64::from(block.bitrate_kbps);
        }
        self.store
            .insert(block.seq, StoredBlock::of(block, source_time));
        self.arrival_lag.sample(now, source_time.0);
        // Clamp: a histogram record fails only above its range.
        let _ = self
            .delays_us
            .record(now.0.saturating_sub(source_time.0).max(1));
        if self.in_club(block.club) {
            self.announce_have(block.club, block.seq, from);
            self.queue_forwards(block.club, block.seq, from);
        }
    }

    /// Queues `seq` for every upload of `club` whose receiver lacks it. A
    /// relay with an external data plane leaves the IPv4 receivers to it
    /// (the AF_XDP workers speak IPv4) and sends only to IPv6 ones.
    pub(super) fn queue_forwards(&mut self, club: u16, seq: u64, except: SocketAddr) {
        let external = self.cfg.external_fanout && self.cfg.mode == Mode::Relay;
        for u in &self.conns.uploads {
            if u.club != club || u.to == except || u.have.contains(seq) {
                continue;
            }
            if external && u.to.is_ipv4() {
                continue;
            }
            let lane = if u.in_club {
                Lane::InClub
            } else {
                Lane::OutOfClub
            };
            let hold = if u.in_club && self.cfg.mode == Mode::Peer {
                self.push_hold_us(u.to)
            } else {
                0
            };
            self.sends.push(
                lane,
                SendItem {
                    to: u.to,
                    tag: u.tag,
                    seq,
                    queued: self.now,
                    due: Time(self.now.0 + hold),
                    repair: false,
                },
            );
        }
    }

    /// How long a fresh in-club push to `to` waits for a HAVE: half the
    /// round trip (the time a HAVE sent as the block arrived there takes to
    /// come), within `PUSH_HOLD_MIN_US` and the configured most. The
    /// source and a relay push at once: no one has the block before them.
    fn push_hold_us(&self, to: SocketAddr) -> u64 {
        let max = self.cfg.push_hold_max_ms * 1_000;
        let half_rtt = self
            .contacts
            .get(&to)
            .and_then(|c| c.rtt)
            .map_or(PUSH_HOLD_MIN_US, |r| r.srtt_us() / 2);
        half_rtt.clamp(PUSH_HOLD_MIN_US.min(max), max)
    }

    /// Whether the receiver of `to`'s upload of `seq`'s club said it holds
    /// `seq`.
    fn receiver_has(&mut self, to: SocketAddr, seq: u64) -> bool {
        let club = (seq % u64::from(self.club_count)) as u16;
        self.conns
            .upload(to, club)
            .is_some_and(|u| u.have.contains(seq))
    }

    /// Builds and queues the waiting sends the uplink pacer allows, in the
    /// 9:1 order ([0048]). Fresh in-club pushes wait until they are due,
    /// and go only if their receiver has not said HAVE meanwhile ([0047]).
    pub(super) fn flush_sends(&mut self) {
        loop {
            if self.sends.is_empty() {
                return;
            }
            if !self.pacer.may_send(self.now, PACE_UNIT) {
                self.backlogged = true;
                return;
            }
            let now = self.now;
            let Some((lane, item)) = self.sends.pop_ready(|i| i.due <= now) else {
                return;
            };
            if lane == Lane::InClub && !item.repair && self.receiver_has(item.to, item.seq) {
                self.stats.have_suppressed += 1;
                continue;
            }
            if self.now.0 > item.queued.0 + SEND_QUEUE_MAX_US {
                self.stats.send_stale += 1;
                continue;
            }
            let Some(stored) = self.store.get(item.seq) else {
                self.stats.unforwardable += 1;
                continue;
            };
            let Some(proof) = self.verifier.forwarding_proof(stored.batch, stored.index) else {
                self.stats.unforwardable += 1;
                continue;
            };
            let ledger = self.ledgers.entry(item.to).or_default();
            let plan = ledger.plan(stored.batch, stored.count, stored.index);
            let block = Block {
                tag: item.tag,
                stream: self.tag,
                seq: item.seq,
                club: (item.seq % u64::from(self.club_count)) as u16,
                sent_at_us: self.now.0,
                delay_threshold_ms: self.cfg.delay_threshold_ms,
                bitrate_kbps: self.bitrate_kbps,
                batch: stored.batch,
                index: stored.index,
                count: stored.count,
                signature: plan.signature.then_some(BatchSignature {
                    timestamp_us: proof.timestamp_us,
                    signature: &proof.signature,
                }),
                proof: &proof.siblings[..plan.hashes.min(proof.depth)],
                payload: &stored.payload,
            };
            match self.outbox.push(item.to, &Message::Block(block)) {
                Some(len) => {
                    self.stats.blocks_out += 1;
                    self.stats.block_bytes_out += len as u64;
                    self.stats.block_payload_out += stored.payload.len() as u64;
                    self.pacer.on_sent(len);
                    if item.repair {
                        self.stats.repair_blocks_sent += 1;
                        self.stats.repair_bytes_sent += len as u64;
                    }
                    let club = block.club;
                    if let Some(u) = self.conns.upload(item.to, club) {
                        u.sent = u.sent.wrapping_add(1);
                    }
                }
                None => self.stats.send_drops += 1,
            }
        }
    }

    /// A REQUEST for blocks this peer may hold ([0049] repair). Only a
    /// peer with a connection to this one is answered, at most at the
    /// stream's own rate; each block goes with its whole proof (the ledger
    /// forgets the batch: the requester may have lost the hashes).
    pub(super) fn on_request(&mut self, now: Time, from: SocketAddr, req: &Request<'_>) {
        if !self.conns.involves(from) {
            self.stats.repair_refused += req.seqs.len() as u64;
            return;
        }
        let rate = f64::from(self.bitrate_kbps.max(64)) * 125.0;
        let budget = self
            .repair_budgets
            .entry(from)
            .or_insert_with(|| TokenBucket::new(rate, rate * REPAIR_BURST_S, now));
        budget.set_rate(rate, rate * REPAIR_BURST_S);
        let mut granted = Vec::new();
        for seq in req.seqs.iter() {
            let Some(stored) = self.store.get(seq) else {
                self.stats.repair_refused += 1;
                continue;
            };
            if !budget.take(now, stored.payload.len() as f64) {
                self.stats.repair_refused += 1;
                continue;
            }
            granted.push((seq, stored.batch));
        }
        let ledger = self.ledgers.entry(from).or_default();
        for &(_, batch) in &granted {
            ledger.forget(batch);
        }
        for (seq, _) in granted {
            self.sends.push(
                Lane::InClub,
                SendItem {
                    to: from,
                    tag: req.block_tag,
                    seq,
                    queued: now,
                    due: now,
                    repair: true,
                },
            );
        }
    }

    /// Takes a block this node originated (the source): it is verified
    /// like any other, stored, and queued to the uploads of its club.
    pub fn publish(&mut self, now: Time, block: &Block<'_>, bitrate_kbps: u32) {
        self.now = self.now.max(now);
        self.bitrate_kbps = bitrate_kbps;
        let Ok(verified) = self.verifier.verify(block) else {
            self.stats.forged_rejected += 1;
            return;
        };
        if !verified.fresh || self.store.has(block.seq) {
            return;
        }
        self.store.insert(
            block.seq,
            StoredBlock::of(block, Time(verified.batch_timestamp_us)),
        );
        let me: SocketAddr = ([0, 0, 0, 0], 0).into();
        self.queue_forwards(block.club, block.seq, me);
        self.flush_sends();
    }
}
