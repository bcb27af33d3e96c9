//! The data path of a peer: receiving, checking and forwarding blocks
//! ([0046]-[0052]).
//!
//! A block is verified before anything else is done with it; a forged one
//! is counted, never stored, played or forwarded, and costs its sender the
//! connection. A genuine block on a download feeds the delay and gap rules.
//! A fresh block of one of this peer's clubs is announced with HAVE to the
//! in-club peers it downloads from and queued for every upload of that club
//! whose receiver has not said HAVE; a block of another club is only played
//! ([0050]). Queued sends are built at drain time with the proof hashes and
//! signature the receiver lacks ([0049]). A block that cannot be checked yet
//! because the datagram carrying the hashes it builds on is late is parked
//! briefly and checked again when more of its batch is verified.

use std::net::SocketAddr;

use super::scheduler::Lane;
use super::store::StoredBlock;
use super::{Mode, Peer, PeerEvent, SendItem};
use crate::auth::AuthError;
use crate::roles::Time;
use crate::wire::{BatchSignature, Block, Direction, DropReason, Message};

/// Blocks kept while they wait for the hashes they build on.
const PARKED_MAX: usize = 64;

/// How long a parked block waits, in microseconds.
const PARKED_US: u64 = 500_000;

/// Blocks of another stream tolerated before the peer reports it.
const WRONG_STREAM_REPORT: u64 = 20;

impl Peer {
    pub(super) fn on_block(&mut self, now: Time, from: SocketAddr, block: &Block<'_>) {
        self.stats.blocks_in += 1;
        self.stats.block_payload_in += block.payload.len() as u64;
        if block.stream != self.tag {
            self.stats.wrong_stream += 1;
            if self.stats.unique_blocks == 0 && self.stats.wrong_stream == WRONG_STREAM_REPORT {
                self.events
                    .push_back(PeerEvent::WrongStream { seen: block.stream });
            }
            return;
        }
        let c = u64::from(self.club_count);
        if u64::from(block.club) != block.seq % c {
            self.stats.wrong_club += 1;
            return;
        }
        if self.cfg.mode == Mode::Source {
            return;
        }
        let verified = match self.verifier.verify(block) {
            Ok(v) => v,
            Err(AuthError::MissingProof | AuthError::MissingSignature) => {
                // Not a forgery: the datagram that carried the hashes it
                // builds on is late or lost. Park it for a moment.
                self.park(now, from, block);
                return;
            }
            Err(AuthError::BatchTooOld { .. }) => {
                self.stats.stale += 1;
                return;
            }
            Err(_) => {
                // Verify before forward: a forgery is never kept, and its
                // sender is banned and loses the connection it came on.
                self.stats.forged_rejected += 1;
                self.bans.ban(from);
                if self.conns.download(from, block.club).is_some() {
                    self.drop_connection(from, block.club, Direction::Download, DropReason::Forged);
                }
                return;
            }
        };
        self.congestion_checks(now, from, block);
        if !verified.fresh || self.store.has(block.seq) {
            self.stats.duplicates += 1;
            return;
        }
        self.accept_block(now, from, block, Time(verified.batch_timestamp_us));
        self.retry_parked(now, block.batch);
    }

    /// Keeps a copy of a block that cannot be checked yet, bounded in
    /// number and age.
    fn park(&mut self, now: Time, from: SocketAddr, block: &Block<'_>) {
        self.stats.unverifiable += 1;
        let mut buf = [0u8; crate::wire::MAX_DATAGRAM];
        let Ok(len) = block.encode(&mut buf) else {
            return;
        };
        if self.parked.len() >= PARKED_MAX {
            self.parked.pop_front();
        }
        self.parked
            .push_back((now, from, block.batch, buf[..len].to_vec()));
    }

    /// Checks parked blocks of `batch` again, now that more of its tree is
    /// known; forgets parked blocks older than `PARKED_US`. One that still
    /// lacks hashes stays parked (with its first park time): the block
    /// that brings them may come next.
    fn retry_parked(&mut self, now: Time, batch: u64) {
        self.parked.retain(|(t, ..)| now.0 < t.0 + PARKED_US);
        // Each block verified may complete the proof of another: go round
        // until a pass verifies nothing (at most one pass a parked block).
        let mut progress = true;
        while progress && self.parked.iter().any(|(_, _, b, _)| *b == batch) {
            progress = false;
            let (retry, keep): (Vec<_>, Vec<_>) =
                self.parked.drain(..).partition(|(_, _, b, _)| *b == batch);
            self.parked.extend(keep);
            for (parked_at, from, batch, bytes) in retry {
                let Ok(Message::Block(block)) = Message::parse(&bytes) else {
                    continue;
                };
                match self.verifier.verify(&block) {
                    Ok(v) => {
                        progress = true;
                        self.stats.unverifiable = self.stats.unverifiable.saturating_sub(1);
                        if v.fresh && !self.store.has(block.seq) {
                            self.accept_block(now, from, &block, Time(v.batch_timestamp_us));
                        } else {
                            self.stats.duplicates += 1;
                        }
                    }
                    Err(AuthError::MissingProof | AuthError::MissingSignature) => {
                        self.parked.push_back((parked_at, from, batch, bytes));
                    }
                    Err(_) => {
                        self.stats.unverifiable = self.stats.unverifiable.saturating_sub(1);
                        self.stats.forged_rejected += 1;
                    }
                }
            }
        }
    }

    /// The delay and gap bookkeeping of a download ([0051]-[0052]).
    fn congestion_checks(&mut self, now: Time, from: SocketAddr, block: &Block<'_>) {
        let c = u64::from(self.club_count);
        let Some(d) = self.conns.download(from, block.club) else {
            return;
        };
        d.last_block = now;
        // Every block of a foreign club comes on its one download, so a
        // skipped sequence number means a lost block, unless it is merely
        // reordered and follows within the window (see `maintain`). In-club,
        // HAVE legitimately skips blocks.
        if !d.in_club {
            if let Some((g, since)) = d.gap {
                if g == block.seq {
                    // The awaited block came: watch the next hole, if any,
                    // from the time the first was seen.
                    let last = d.last_seq.unwrap_or(g);
                    let store = &self.store;
                    let next = (1..)
                        .map(|k| g + k * c)
                        .take_while(|s| *s < last)
                        .find(|s| !store.has(*s));
                    d.gap = next.map(|s| (s, since));
                }
            }
            if d.gap.is_none() && d.last_seq.is_some_and(|l| block.seq > l + c) {
                d.gap = d.last_seq.map(|l| (l + c, now));
            }
        }
        d.last_seq = Some(d.last_seq.map_or(block.seq, |l| l.max(block.seq)));
        let delay_ms = now.0.saturating_sub(block.sent_at_us) / 1000;
        if delay_ms > u64::from(block.delay_threshold_ms) {
            self.drop_connection(from, block.club, Direction::Download, DropReason::Delay);
        }
    }

    /// Stores a fresh verified block, announces it and queues it onwards.
    fn accept_block(&mut self, now: Time, from: SocketAddr, block: &Block<'_>, source_time: Time) {
        self.stats.unique_blocks += 1;
        self.stats.unique_payload += block.payload.len() as u64;
        self.last_fresh = Some(now);
        if block.bitrate_kbps > 0 {
            self.bitrate_kbps = block.bitrate_kbps;
            self.block_us = block.payload.len() as u64 * 8_000 / u64::from(block.bitrate_kbps);
        }
        self.store
            .insert(block.seq, StoredBlock::of(block, source_time));
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
            self.sends.push(lane, SendItem { to: u.to, seq });
        }
    }

    /// Builds and queues every waiting send, in the 9:1 order ([0048]).
    pub(super) fn flush_sends(&mut self) {
        while let Some((_, item)) = self.sends.pop() {
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
                }
                None => self.stats.send_drops += 1,
            }
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
