//! The relay's forwarding decision for one received BLOCK datagram: judge
//! it, claim it among the relay's workers, report it to the control plane,
//! and copy it, with its signature and whole proof path, to every
//! subscriber of its club that has not said it holds it.
//!
//! [`BlockForwarder`] is policy only. Moving the bytes is a [`CopySink`]'s
//! job: UMEM frames and TX rings on AF_XDP (`crate::relay::xdp_io`),
//! `sendmmsg` on a kernel socket (`crate::io::udp_batch`), a queue of
//! datagrams in memory (`crate::io::mem`); each copy carries the block tag
//! its subscriber gave the relay. Each block's copies are flushed as soon
//! as they are made, so a block goes out as soon as it verifies, not after
//! the rest of its receive batch. A burst of datagrams that holds a whole
//! batch in leaf order is verified with one contiguous hash first
//! ([`BlockForwarder::handle_burst`]); a forged block is never forwarded
//! either way. A burst that starts several new batches has their
//! signatures checked together first, which is cheaper than one by one
//! (`BlockForwarder::check_signatures_ahead`). A block that would cost a signature
//! check (its batch is not verified yet) takes a token from a budget
//! first, so even an uploader that forges (the XDP sender gate lets its
//! tagged blocks through) costs a bounded share of the worker. Everything is
//! allocated in [`BlockForwarder::new`]; handling a datagram allocates
//! nothing.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use super::{judge, misplaced, verdict_of, ForwardStats, ParkedBlocks, Verdict, PARKED_MAX};
use crate::auth::sigbatch::MAX_SIGNATURES;
use crate::auth::{AuthError, BatchVerifier, StreamId, Trust, MAX_BATCH_BLOCKS};
use crate::io::packet::Datagram;
use crate::relay::claims::ForwardClaims;
use crate::relay::fanout::{FanoutTable, Subscriber};
use crate::relay::uplink::UplinkSender;
use crate::roles::{Time, TokenBucket};
use crate::wire::{Block, Message, StreamTag, MAX_DATAGRAM};

/// Signature checks a forwarder makes a second at most. A check costs about
/// 45 us, so this is at most a fifth of a core, and about twice what one
/// worker needs at its full rate (35,000 blocks a second of 16-block
/// batches is 2,200 checks).
pub const SIGNATURE_CHECKS_PER_S: f64 = 4_000.0;

/// Signature checks a forwarder may make at once, after a quiet spell.
pub const SIGNATURE_CHECKS_BURST: f64 = 1_000.0;

/// Why a copy could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyError {
    /// No free buffer: this copy and the rest of the block's are dropped.
    NoBuffer,
    /// The buffer could not hold the datagram: this copy is skipped.
    TooLarge,
}

/// Where a block's copies go: the mechanism under the forwarder.
pub trait CopySink {
    /// A new datagram is to be copied: prepare what every copy shares.
    fn begin(&mut self, datagram: &[u8]);
    /// One copy of the datagram given to [`CopySink::begin`] towards `to`,
    /// carrying `to`'s block tag (`to.tag`) in place of the datagram's.
    fn copy(&mut self, to: &Subscriber, datagram: &[u8]) -> Result<(), CopyError>;
    /// The block's copies are all made: send them now. `parked_us` is how
    /// long the block waited parked before it verified (0 for one of the
    /// datagrams being received), so a latency record can count it.
    fn flush(&mut self, parked_us: u64);
    /// A check that takes long (a signature) comes next: send every copy
    /// made so far now, so that earlier blocks' copies do not wait behind
    /// it. Nothing to do for a sink whose `flush` always sends.
    fn send_pending(&mut self) {}
}

/// When a block is acted on: now, and how long it waited parked before
/// (0 for a block of the datagrams being received), which the latency
/// record of its copies counts.
#[derive(Debug, Clone, Copy)]
struct When {
    now_us: u64,
    parked_us: u64,
}

/// The forwarding decision of one relay worker; see the module comment.
pub struct BlockForwarder {
    tag: StreamTag,
    verifier: BatchVerifier,
    table: Arc<FanoutTable>,
    template: Box<[u8; MAX_DATAGRAM]>,
    uplink: Option<UplinkSender>,
    claims: Option<Arc<ForwardClaims>>,
    parked: ParkedBlocks,
    signatures: TokenBucket,
    stats: ForwardStats,
}

impl BlockForwarder {
    /// A forwarder for `stream`, keeping `window` batches verified, with an
    /// empty fan-out table.
    pub fn new(stream: StreamId, window: usize) -> Self {
        BlockForwarder {
            tag: StreamTag::of_key(&stream.to_bytes()),
            verifier: BatchVerifier::new(stream, window),
            table: Arc::new(FanoutTable::empty()),
            template: Box::new([0u8; MAX_DATAGRAM]),
            uplink: None,
            claims: None,
            parked: ParkedBlocks::new(PARKED_MAX),
            signatures: TokenBucket::new(SIGNATURE_CHECKS_PER_S, SIGNATURE_CHECKS_BURST, Time(0)),
            stats: ForwardStats::default(),
        }
    }

    /// Reports every verified block to the control plane through `uplink`.
    pub fn set_uplink(&mut self, uplink: UplinkSender) {
        self.uplink = Some(uplink);
    }

    /// Fans out only the blocks it is first to claim in `claims`.
    pub fn set_claims(&mut self, claims: Arc<ForwardClaims>) {
        self.claims = Some(claims);
    }

    /// Uses `table` from now on (the old one is freed here if no one else
    /// holds it).
    pub fn set_table(&mut self, table: Arc<FanoutTable>) {
        self.table = table;
    }

    /// The fan-out table in use.
    pub fn table(&self) -> &Arc<FanoutTable> {
        &self.table
    }

    /// The counters so far.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// The verifier's counters so far.
    pub fn verifier_stats(&self) -> crate::auth::VerifierStats {
        self.verifier.stats()
    }

    /// Handles one datagram `payload` that `from` sent to the relay's port
    /// at `now_us`; returns true when copies of it went to `sink`.
    pub fn handle(
        &mut self,
        from: SocketAddrV4,
        payload: &[u8],
        now_us: u64,
        sink: &mut impl CopySink,
    ) -> bool {
        match self.parse(payload) {
            Some(block) => self.handle_block(from, payload, &block, now_us, sink),
            None => false,
        }
    }

    /// Handles the datagrams of one receive burst in order, at `now_us`;
    /// returns how many of them were copied to `sink`. A run of them that
    /// is one whole batch in leaf order (as a source sends it) is verified
    /// with one contiguous hash, many chunks at a time, before its blocks
    /// are acted on in turn; every other datagram is handled as by
    /// [`BlockForwarder::handle`]. Blocks that carry their proofs end the
    /// same either way; the whole batch also proves blocks whose own proof
    /// hashes are missing or wrong, which alone would wait or fail.
    pub fn handle_burst(
        &mut self,
        burst: &[Datagram<'_>],
        now_us: u64,
        sink: &mut impl CopySink,
    ) -> usize {
        self.check_signatures_ahead(burst, now_us, sink);
        let mut copied = 0;
        let mut at = 0;
        while let Some(gram) = burst.get(at) {
            let Some(block) = self.parse(gram.payload) else {
                at += 1;
                continue;
            };
            if let Some((taken, sent)) = self.handle_whole_batch(&block, &burst[at..], now_us, sink)
            {
                at += taken;
                copied += sent;
                continue;
            }
            copied += usize::from(self.handle_block(gram.from, gram.payload, &block, now_us, sink));
            at += 1;
        }
        copied
    }

    /// When the burst starts several batches whose signatures are still
    /// to check, checks them together (cheaper than one by one), paying a
    /// signature token for each: their blocks then verify without a
    /// signature check of their own. Blocks of the burst wait for this
    /// check, not only those of the first batch; it is skipped when the
    /// burst has fewer than two such batches or the budget has not a token
    /// for each. Counts nothing: each datagram is counted when handled.
    fn check_signatures_ahead(
        &mut self,
        burst: &[Datagram<'_>],
        now_us: u64,
        sink: &mut impl CopySink,
    ) {
        if burst.len() < 2 {
            return; // one datagram starts one batch at most
        }
        let mut firsts = [None; MAX_SIGNATURES];
        let mut n = 0;
        for gram in burst {
            if n == MAX_SIGNATURES {
                break;
            }
            let Ok(Message::Block(block)) = Message::parse(gram.payload) else {
                continue;
            };
            let new_batch = firsts[..n]
                .iter()
                .flatten()
                .all(|b: &Block<'_>| b.batch != block.batch);
            if new_batch
                && block.signature.is_some()
                && self.in_place(&block)
                && self.verifier.needs_signature(&block)
            {
                firsts[n] = Some(block);
                n += 1;
            }
        }
        if n < 2 || !self.signatures.take(Time(now_us), n as f64) {
            return;
        }
        sink.send_pending();
        self.verifier
            .check_signatures_ahead(firsts[..n].iter().flatten());
    }

    /// `payload` as a BLOCK; `None`, counted, when it is another message
    /// or none.
    fn parse<'a>(&mut self, payload: &'a [u8]) -> Option<Block<'a>> {
        match Message::parse(payload) {
            Ok(Message::Block(block)) => Some(block),
            Ok(_) => {
                self.stats.not_block += 1;
                None
            }
            Err(_) => {
                self.stats.malformed_block += 1;
                None
            }
        }
    }

    /// Whether `block` is of this stream and in the club its sequence
    /// number puts it in (what [`judge`] checks before authentication).
    fn in_place(&self, block: &Block<'_>) -> bool {
        misplaced(self.tag, self.table.swarm_clubs(), block).is_none()
    }

    /// When `run` starts with the whole batch of `first` (its first
    /// datagram, parsed) in leaf order, each block of this stream and its
    /// right club, and the batch verifies as one contiguous input: acts on
    /// each block and returns the datagrams taken and how many were copied.
    /// Otherwise `None`, with nothing recorded but a signature token spent
    /// on a batch that failed (its blocks are then handled one by one).
    fn handle_whole_batch(
        &mut self,
        first: &Block<'_>,
        run: &[Datagram<'_>],
        now_us: u64,
        sink: &mut impl CopySink,
    ) -> Option<(usize, usize)> {
        let count = usize::from(first.count);
        if first.index != 0 || !(2..=MAX_BATCH_BLOCKS).contains(&count) || run.len() < count {
            return None;
        }
        if !self.in_place(first) {
            return None;
        }
        let mut blocks = [*first; MAX_BATCH_BLOCKS];
        for (i, (slot, gram)) in blocks.iter_mut().zip(run).enumerate().take(count).skip(1) {
            let Ok(Message::Block(block)) = Message::parse(gram.payload) else {
                return None;
            };
            if usize::from(block.index) != i || block.batch != first.batch || !self.in_place(&block)
            {
                return None;
            }
            *slot = block;
        }
        let blocks = &blocks[..count];
        if self.verifier.needs_signature(first) {
            if !self.signatures.take(Time(now_us), 1.0) {
                return None;
            }
            sink.send_pending();
        }
        let mut results = [Err(AuthError::NotCompleteBatch); MAX_BATCH_BLOCKS];
        self.verifier
            .verify_complete(blocks, &mut results[..count])
            .ok()?;
        let at = When {
            now_us,
            parked_us: 0,
        };
        let mut copied = 0;
        let mut fresh = false;
        for ((block, gram), result) in blocks.iter().zip(run).zip(results) {
            let verdict = verdict_of(result);
            fresh |= matches!(verdict, Verdict::Fresh(_));
            copied += usize::from(self.act(verdict, gram.from, gram.payload, block, at, sink));
        }
        if fresh && !self.parked.is_empty() {
            self.retry_parked(first.batch, now_us, sink);
        }
        Some((count, copied))
    }

    /// Handles `block`, parsed from `payload`, which `from` sent at
    /// `now_us`: true when copies of it went to `sink`.
    fn handle_block(
        &mut self,
        from: SocketAddrV4,
        payload: &[u8],
        block: &Block<'_>,
        now_us: u64,
        sink: &mut impl CopySink,
    ) -> bool {
        if self.verifier.needs_signature(block) {
            if !self.signatures.take(Time(now_us), 1.0) {
                self.stats.signature_checks_refused += 1;
                return false;
            }
            sink.send_pending();
        }
        let clubs = self.table.swarm_clubs();
        let verdict = judge(&mut self.verifier, self.tag, clubs, block, Trust::Check);
        if verdict == Verdict::Unverifiable {
            // Not a forgery: the hashes it builds on are late or lost.
            self.stats.unverifiable += 1;
            self.parked
                .park(now_us, SocketAddr::V4(from), block.batch, payload);
            return false;
        }
        let at = When {
            now_us,
            parked_us: 0,
        };
        let sent = self.act(verdict, from, payload, block, at, sink);
        if matches!(verdict, Verdict::Fresh(_)) && !self.parked.is_empty() {
            self.retry_parked(block.batch, now_us, sink);
        }
        sent
    }

    /// Acts on the verdict of a block that could be judged: fans a fresh
    /// one out (if this worker claims it), reports a duplicate, counts the
    /// rest. True when copies of it went to `sink`.
    fn act(
        &mut self,
        verdict: Verdict,
        from: SocketAddrV4,
        payload: &[u8],
        block: &Block<'_>,
        at: When,
        sink: &mut impl CopySink,
    ) -> bool {
        let stats = &mut self.stats;
        match verdict {
            Verdict::Fresh(_) => {
                if self.claims.as_ref().is_some_and(|c| !c.claim(block.seq)) {
                    stats.claimed_elsewhere += 1;
                    report(self.uplink.as_ref(), stats, from, payload);
                    return false;
                }
            }
            Verdict::Duplicate(_) => {
                stats.duplicates += 1;
                // The sender still counts as alive to the control plane.
                report(self.uplink.as_ref(), stats, from, payload);
                return false;
            }
            other => {
                *match other {
                    Verdict::WrongStream => &mut stats.wrong_stream,
                    Verdict::WrongClub => &mut stats.wrong_club,
                    Verdict::Stale => &mut stats.stale,
                    Verdict::Unverifiable => &mut stats.unverifiable,
                    _ => &mut stats.forged,
                } += 1;
                return false;
            }
        }
        self.fan_out(from, block, at, sink)
    }

    /// Judges the parked blocks of `batch` again now that more of its tree
    /// is known, and acts on each that can be judged: a block that verifies
    /// late still goes out. It then counts under its final outcome only.
    fn retry_parked(&mut self, batch: u64, now_us: u64, sink: &mut impl CopySink) {
        let mut parked = std::mem::take(&mut self.parked);
        parked.expire(now_us);
        parked.retry(batch, |parked_at_us, from, datagram, block| {
            let clubs = self.table.swarm_clubs();
            let verdict = judge(&mut self.verifier, self.tag, clubs, block, Trust::Check);
            if verdict != Verdict::Unverifiable {
                self.stats.unverifiable = self.stats.unverifiable.saturating_sub(1);
                if matches!(verdict, Verdict::Fresh(_) | Verdict::Duplicate(_)) {
                    self.stats.verified_late += 1;
                }
                if let SocketAddr::V4(from) = from {
                    let at = When {
                        now_us,
                        parked_us: now_us.saturating_sub(parked_at_us),
                    };
                    self.act(verdict, from, datagram, block, at, sink);
                }
            }
            verdict
        });
        self.parked = parked;
    }

    /// Reports a verified fresh block and copies it to every subscriber of
    /// its club but its sender and those that said they hold it.
    fn fan_out(
        &mut self,
        from: SocketAddrV4,
        block: &Block<'_>,
        at: When,
        sink: &mut impl CopySink,
    ) -> bool {
        let table = Arc::clone(&self.table);
        let subscribers = table.subscribers(block.club);
        if subscribers.is_empty() && self.uplink.is_none() {
            self.stats.no_subscribers += 1;
            return false;
        }
        // Receivers may hold none of the batch's authentication data, so
        // every copy carries the signature and the whole path.
        let Some(proof) = self.verifier.forwarding_proof(block.batch, block.index) else {
            self.stats.no_forward_proof += 1;
            return false;
        };
        let out = proof.full_block(block, at.now_us);
        let Ok(len) = out.encode(&mut self.template[..]) else {
            self.stats.template_errors += 1;
            return false;
        };
        let sent = self.copy_out(from, block.seq, at.parked_us, subscribers, len, sink);
        // The control plane gets the block after its copies left, whole
        // (so it can serve it with proofs) but with the hop fields it came
        // with, so its delay rule sees this download's real delay.
        if self.uplink.is_some() {
            let original = proof.full_block(block, block.sent_at_us);
            match original.encode(&mut self.template[..]) {
                Ok(len) => report(
                    self.uplink.as_ref(),
                    &mut self.stats,
                    from,
                    &self.template[..len],
                ),
                Err(_) => self.stats.template_errors += 1,
            }
        }
        sent
    }

    /// Copies the datagram of the first `len` template bytes (block `seq`,
    /// parked `parked_us` before, from `from`) to each of `subscribers` but
    /// its sender and those that said they hold it; true when a copy went
    /// to `sink`.
    fn copy_out(
        &mut self,
        from: SocketAddrV4,
        seq: u64,
        parked_us: u64,
        subscribers: &[Subscriber],
        len: usize,
        sink: &mut impl CopySink,
    ) -> bool {
        if subscribers.is_empty() {
            self.stats.no_subscribers += 1;
            return false;
        }
        let datagram = &self.template[..len];
        sink.begin(datagram);
        let mut made = 0u64;
        for (i, subscriber) in subscribers.iter().enumerate() {
            if subscriber.addr == from {
                continue; // it has the block: it sent it
            }
            if subscriber.holds(seq) {
                self.stats.have_suppressed += 1;
                continue;
            }
            match sink.copy(subscriber, datagram) {
                Ok(()) => made += 1,
                Err(CopyError::NoBuffer) => {
                    self.stats.no_free_buffer += (subscribers.len() - i) as u64;
                    break;
                }
                Err(CopyError::TooLarge) => self.stats.template_errors += 1,
            }
        }
        self.stats.copies += made;
        if made > 0 {
            self.stats.forwarded_blocks += 1;
            sink.flush(parked_us);
            true
        } else {
            self.stats.unsent_blocks += 1;
            false
        }
    }
}

/// Hands `datagram` to `uplink`, if there is one, counting the outcome.
fn report(
    uplink: Option<&UplinkSender>,
    stats: &mut ForwardStats,
    from: SocketAddrV4,
    datagram: &[u8],
) {
    if let Some(uplink) = uplink {
        if uplink.send(from, datagram) {
            stats.uplinked += 1;
        } else {
            stats.uplink_dropped += 1;
        }
    }
}
