//! The peer ([0026]-[0039], [0046]-[0063]) as a sans-IO state machine.
//!
//! A peer joins through the tracker, sits in two clubs, keeps two or three
//! upload and download connections inside each, one download from every
//! other club, verifies every block before it plays or forwards it, pushes
//! its clubs' blocks with HAVE suppression, runs congestion control with a
//! ban list, and plays the stream in order. The source runs the same state
//! machine in `Mode::Source`: it sits in every club, only uploads, and keeps
//! two uploads per club. A super-peer relay runs it in `Mode::Relay`.
//! Rooms: `contacts` (address book and choice), `rtt` (round trips and
//! the timeouts made of them), `conns` (connection tables), `delay`
//! (one-way delay against its own floor), `gaps` (the gap rule on rates),
//! `bans`, `scheduler` (upload order), `pacer` (upload that fits the
//! uplink), `repair` (lost blocks asked for again), `store` (held blocks),
//! `playout`, `quality`, `validation` (address-validation tokens), and the
//! handlers in `control`, `blocks` and `maintain`. Every judgement of delay compares times stamped on one
//! clock only, so peers whose clocks disagree by a minute play as well as
//! any.

pub mod bans;
mod blocks;
pub mod conns;
pub mod contacts;
mod control;
pub mod delay;
pub mod gaps;
mod maintain;
pub mod pacer;
pub mod playout;
pub mod quality;
pub mod repair;
pub mod rtt;
pub mod scheduler;
pub mod store;
pub mod traversal;
mod validation;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::Rng;

use self::bans::BanList;
use self::conns::Connections;
use self::contacts::{Choice, Contacts};
use self::delay::OneWayDelay;
use self::pacer::{PacerConfig, UplinkPacer};
use self::playout::{Playout, PlayoutConfig, PlayoutStats};
use self::quality::{QualityMonitor, QualityRule};
use self::repair::RepairQueue;
use self::scheduler::SendScheduler;
use self::store::BlockStore;
use super::token::TokenKey;
use super::{Node, Outbox, Time, Transmit};
use crate::auth::{BatchVerifier, ProofLedger, StreamId, Trust, VerifierStats};
use crate::counters::counters;
use crate::forward::{ParkedBlocks, PARKED_MAX};
use crate::roles::TokenBucket;
use crate::wire::{DropReason, Message, StreamTag, Token};

/// Whether the state machine is a viewer peer, the stream's source or a
/// super-peer relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A viewer: two clubs, downloads everything, plays.
    Peer,
    /// The source: every club, uploads only ([0029]).
    Source,
    /// A super-peer: sits in the clubs it serves (all by default), keeps
    /// in-club downloads of each and accepts many uploads per club; plays
    /// nothing.
    Relay,
}

/// Peer settings; `PeerConfig::new` gives the seed's defaults.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The stream (public key) to play.
    pub stream: StreamId,
    /// The tracker to join through; `None` to rely on `bootstrap`.
    pub tracker: Option<SocketAddr>,
    /// The address this peer's socket has on its own network, when known:
    /// announced to the tracker, so peers behind the same router reach it
    /// there, and compared with what others see to tell a public peer.
    pub local_addr: Option<SocketAddr>,
    /// Peers to contact without a tracker.
    pub bootstrap: Vec<SocketAddr>,
    /// Viewer or source.
    pub mode: Mode,
    /// Clubs to sit in instead of the tracker's recommendation.
    pub clubs: Option<Vec<u16>>,
    /// Club count when no tracker tells it.
    pub club_count: u16,
    /// Random id sent to the tracker.
    pub peer_id: u64,
    /// Fewest in-club uploads and downloads per club ([0026]: 2).
    pub in_club_min: usize,
    /// Most in-club uploads and downloads per club ([0026]: 3).
    pub in_club_max: usize,
    /// Uploads per club at the source ([0029]: 2).
    pub source_uploads: usize,
    /// Source only: downloaders from outside a club that has no member
    /// yet (a small swarm) that the source serves directly.
    pub source_outsiders: usize,
    /// Uploads per club a relay accepts before it trims.
    pub relay_uploads: usize,
    /// Peers asked of the tracker.
    pub tracker_peers: u16,
    /// KEEPALIVE interval on downloads, ms ([0053]).
    pub keepalive_ms: u64,
    /// An upload whose receiver sent no KEEPALIVE for this long (and for
    /// four round trips plus two keep-alive intervals, if longer) is
    /// dropped ([0053]); a stall of a second costs no connection.
    pub keepalive_timeout_ms: u64,
    /// A download with no block for `silence_intervals` club intervals,
    /// four round trips and at least this many ms is dropped ([0053]);
    /// in-club downloads, which HAVE may keep quiet, count any datagram
    /// instead. Blocks missed meanwhile are repaired from other peers.
    pub silence_ms: u64,
    /// Club intervals (the time between two blocks of one club) of silence
    /// that drop a download.
    pub silence_intervals: u64,
    /// Grace for a new download's first block, in ms.
    pub first_block_ms: u64,
    /// A skipped block on a foreign download that has not followed within
    /// this many ms (or four jitters, if longer) is lost ([0052]); shorter
    /// skips are reordering.
    pub reorder_ms: u64,
    /// Queuing-delay threshold written into forwarded blocks ([0051]): a
    /// download whose one-way delay stays this far above its own floor for
    /// a second is dropped.
    pub delay_threshold_ms: u32,
    /// A PONG younger than this is reused rather than pinging again
    /// ([0038]).
    pub pong_fresh_ms: u64,
    /// A CONNECT to a peer whose round trip is not known yet is sent again
    /// after this long (else after its retransmission timeout), and given
    /// up after `connect_attempts` sends.
    pub connect_timeout_ms: u64,
    /// Sends of one CONNECT before it is given up.
    pub connect_attempts: u8,
    /// Housekeeping period.
    pub tick_ms: u64,
    /// Ban sweep period ([0055]: 5 s).
    pub ban_sweep_ms: u64,
    /// Each sweep frees a banned peer with probability 1/this ([0055]: 8).
    pub ban_parole_one_in: u32,
    /// How a connection target is picked ([0033]-[0035]).
    pub choice: Choice,
    /// In-club sends before one out-of-club send ([0048]: 9).
    pub in_club_run: u32,
    /// Most time a fresh in-club push waits before it goes, ms: half the
    /// round trip to its receiver, at least `PUSH_HOLD_MIN_US`, at most
    /// this. A receiver that got the block meanwhile says HAVE first, and
    /// the push is left out ([0047]); 0 pushes at once.
    pub push_hold_max_ms: u64,
    /// Most blocks held. Blocks go by age first (see `PeerConfig::new`);
    /// 16384 blocks hold a minute at 2 Mbit/s.
    pub store_blocks: usize,
    /// Blocks older than this on the source's timeline than the newest are
    /// forgotten, ms: twice the most play delay and a second, so the store
    /// covers the whole play-delay range.
    pub store_ms: u64,
    /// Blocks kept behind the playback position, for catch-up.
    pub keep_played: u64,
    /// Blocks sent to a new downloader from the store ([0056]).
    pub catch_up_blocks: usize,
    /// Blocks of its club sent to a downloader that holds nothing yet
    /// (a newcomer), so its start buffer fills at once.
    pub join_catch_up_blocks: usize,
    /// Batches kept verified.
    pub verify_window: usize,
    /// Playback timing ([0060]-[0062]).
    pub playout: PlayoutConfig,
    /// Quality measure and graceful failure ([0063]).
    pub quality: QualityRule,
    /// Uplink estimate and pacing.
    pub pacer: PacerConfig,
    /// Most datagrams queued for sending.
    pub outbox: usize,
    /// Keep the payload of every block played, and a marker for every
    /// block skipped, for a media output to take with
    /// [`Peer::poll_played`] (at most `PLAYED_MAX` wait; older ones go).
    pub emit_played: bool,
    /// Relay only: a data plane outside the state machine (the AF_XDP
    /// workers) copies every fresh block to the IPv4 uploads of its club,
    /// so the state machine stores, announces and serves catch-up, and
    /// pushes fresh blocks itself only to IPv6 uploads.
    pub external_fanout: bool,
}

impl PeerConfig {
    /// The seed's defaults for a viewer of `stream` joining via `tracker`.
    pub fn new(stream: StreamId, tracker: Option<SocketAddr>) -> Self {
        PeerConfig {
            stream,
            tracker,
            local_addr: None,
            bootstrap: Vec::new(),
            mode: Mode::Peer,
            clubs: None,
            club_count: 12,
            peer_id: 0,
            in_club_min: 2,
            in_club_max: 3,
            source_uploads: 2,
            source_outsiders: 16,
            relay_uploads: 64,
            tracker_peers: 60,
            keepalive_ms: 250,
            keepalive_timeout_ms: 3_000,
            silence_ms: 2_000,
            silence_intervals: 6,
            first_block_ms: 2_000,
            reorder_ms: 300,
            delay_threshold_ms: 1_000,
            pong_fresh_ms: 5_000,
            connect_timeout_ms: 1_000,
            connect_attempts: 3,
            tick_ms: 20,
            ban_sweep_ms: 5_000,
            ban_parole_one_in: 8,
            choice: Choice::WeightedByUploads,
            in_club_run: 9,
            push_hold_max_ms: 40,
            store_blocks: 16_384,
            store_ms: 9_000,
            keep_played: 256,
            catch_up_blocks: 64,
            join_catch_up_blocks: 32,
            verify_window: 64,
            playout: PlayoutConfig::default(),
            quality: QualityRule::default(),
            pacer: PacerConfig::default(),
            outbox: 8_192,
            external_fanout: false,
            emit_played: false,
        }
    }
}

counters! {
    /// Counters of one peer.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct PeerStats {
        /// BLOCK datagrams received.
        blocks_in as "blocks_received",
        /// Payload bytes of BLOCKs received, duplicates included.
        block_payload_in as "block_payload_received",
        /// Bytes of BLOCK datagrams received.
        block_bytes_in as "block_bytes_received",
        /// Bytes of other datagrams received.
        control_bytes_in as "control_bytes_received",
        /// Verified blocks seen for the first time.
        unique_blocks as "blocks_unique",
        /// Payload bytes of verified blocks seen for the first time.
        unique_payload as "unique_payload_bytes",
        /// Verified blocks already held.
        duplicates as "blocks_duplicate",
        /// Blocks that failed authentication (never played or forwarded).
        forged_rejected as "blocks_forged",
        /// Blocks that could not be checked yet (parked, not counted as forged).
        unverifiable as "blocks_unverifiable",
        /// Blocks of batches older than the verification window.
        stale as "blocks_stale",
        /// Blocks for another stream.
        wrong_stream as "blocks_wrong_stream",
        /// Blocks whose club is not their sequence number modulo the club count.
        wrong_club as "blocks_wrong_club",
        /// Datagrams that did not parse.
        malformed as "malformed",
        /// BLOCK datagrams sent.
        blocks_out as "blocks_sent",
        /// Bytes of BLOCK datagrams sent.
        block_bytes_out as "block_bytes_sent",
        /// Payload bytes of BLOCKs sent.
        block_payload_out as "block_payload_sent",
        /// Bytes of other datagrams sent.
        control_bytes_out as "control_bytes_sent",
        /// Downloads dropped for delay ([0051]).
        dropped_delay as "drops_delay",
        /// Downloads dropped for a sequence gap ([0052]).
        dropped_gap as "drops_gap",
        /// Downloads dropped for silence ([0053]).
        dropped_silence as "drops_silence",
        /// Uploads dropped for missing keep-alives ([0053]).
        dropped_keepalive as "drops_keepalive",
        /// Connections trimmed after an accepted request overshot ([0059]).
        dropped_trimmed as "drops_trimmed",
        /// Downloads dropped for forged blocks.
        dropped_forged as "drops_forged",
        /// Uploads shed because the uplink could not carry them.
        dropped_shed as "drops_shed",
        /// Peers put on the ban list ([0054]).
        bans_added as "bans_added",
        /// CONNECTs sent (first sends).
        connects as "connects",
        /// CONNECTs sent again after their timeout.
        connect_retries as "connect_retries",
        /// ACCEPTs that came after their CONNECT was given up.
        late_accepts as "late_accepts",
        /// Requests (PING, CLUB_PEERS_REQUEST, CONNECT) that carried a valid
        /// address-validation token and were served.
        requests_validated as "requests_validated",
        /// RETRYs sent: requests from addresses not validated, answered with a
        /// token only (validation tokens issued).
        retries_sent as "validation_tokens_issued",
        /// Requests whose token did not check (expired, for another address,
        /// or forged).
        tokens_failed as "validation_tokens_failed",
        /// RETRYs taken: the request asked again with the token.
        retries_received as "retries_taken",
        /// RETRYs for nothing outstanding, ignored.
        retries_ignored as "retries_ignored",
        /// Answers (PONG, CLUB_PEERS) to nothing this peer asked, ignored.
        unsolicited_answers as "unsolicited_answers",
        /// BITFIELDs that came within a second of the last catch-up on their
        /// upload: their holdings noted, nothing resent.
        catch_ups_refused as "catch_ups_refused",
        /// JOINs sent again because the peer list led to no download for 5 s.
        lists_asked_again as "lists_asked_again",
        /// BLOCKs from banned addresses with no connection, dropped unjudged.
        blocks_from_banned as "blocks_from_banned",
        /// BLOCKs without the block tag this peer gave their sender's address,
        /// dropped unjudged: spoofed, or from an address never given one.
        blocks_wrong_tag as "blocks_wrong_tag",
        /// DROPs, KEEPALIVEs, HAVEs and BITFIELDs without their connection's
        /// tag, ignored: spoofed under a neighbour's address, or about a
        /// connection already gone.
        control_wrong_tag as "control_wrong_tag",
        /// BLOCKs dropped unjudged because the signature check they needed was
        /// over budget (all checks, or those for strangers).
        signature_checks_refused as "signature_checks_refused",
        /// Datagrams the outbox could not take.
        send_drops as "send_drops",
        /// Queued forwards dropped for waiting longer than a block is useful.
        send_stale as "send_stale",
        /// Queued forwards whose block or proof was no longer held.
        unforwardable as "unforwardable",
        /// Queued in-club pushes left out because the receiver said HAVE
        /// while they waited ([0047]).
        have_suppressed as "have_suppressed",
        /// REQUEST datagrams sent (loss repair).
        repair_requests as "repair_requests",
        /// Blocks asked for in them.
        repair_asked as "repair_asked",
        /// Blocks asked for that then arrived.
        repaired as "repaired",
        /// Blocks wanted that were given up (asked too often, or played past).
        repair_given_up as "repair_given_up",
        /// Blocks sent in answer to REQUESTs.
        repair_blocks_sent as "repair_blocks_sent",
        /// Bytes of BLOCK datagrams sent in answer to REQUESTs.
        repair_bytes_sent as "repair_bytes_sent",
        /// Blocks asked of this peer and not sent: not held, over the
        /// requester's budget, or asked by a peer with no connection.
        repair_refused as "repair_refused",
        /// Graceful failures ([0063]).
        graceful_failures as "graceful_failures",
        /// PUNCH_REQUESTs sent for contacts that did not answer a PING.
        punches_requested as "punches_requested",
        /// Contacts that answered a PING after a PUNCH_REQUEST for them.
        punches_succeeded as "punches_succeeded",
        /// PUNCHes from the tracker answered with a PING.
        punches_answered as "punches_answered",
        /// PUNCHes ignored: not from the tracker, or for an address pinged
        /// for a punch lately.
        punches_ignored as "punches_ignored",
        /// Times a club went missing for a second while others came.
        clubs_missing as "clubs_missing",
        /// Out-of-club downloads moved from a public uploader to one behind a
        /// router, leaving public uploaders to peers behind symmetric routers.
        handovers as "handovers",
        /// Quality windows that would have stopped the peer but were excused:
        /// the peer was under attack then ([0063]).
        quality_windows_excused as "quality_windows_excused",
    }
}

/// Something a driver may want to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// The tracker answered; the peer sits in these clubs.
    Joined {
        /// The clubs.
        clubs: Vec<u16>,
        /// Clubs in the swarm.
        club_count: u16,
    },
    /// Playback began at this sequence number.
    PlaybackStarted {
        /// First sequence number played.
        seq: u64,
    },
    /// The tracker has not answered five JOINs (about three seconds): it
    /// is down, unreachable,
    /// or serves another stream (a tracker ignores JOINs for streams it
    /// does not serve).
    TrackerSilent {
        /// The tracker asked.
        tracker: SocketAddr,
    },
    /// Blocks arrive signed for another stream: nothing will play.
    WrongStream {
        /// The stream tag the blocks carry.
        seen: StreamTag,
    },
    /// The quality measure fell below what this peer's uploads justify:
    /// it stopped all activity ([0063]) for a back-off.
    GracefulFailure,
    /// The back-off after a graceful failure passed: the peer takes part
    /// again.
    Resumed,
    /// No block of `club` came for a second while other clubs' did: the
    /// peer looks for another way in (a second download of it).
    ClubMissing {
        /// The club.
        club: u16,
    },
}

/// A block waiting to be forwarded.
#[derive(Debug, Clone, Copy)]
struct SendItem {
    to: SocketAddr,
    /// The block tag the receiver gave this peer.
    tag: u64,
    seq: u64,
    /// When it was queued.
    queued: Time,
    /// Not sent before this (a fresh in-club push waits for HAVEs).
    due: Time,
    /// An answer to a REQUEST.
    repair: bool,
}

/// The peer (or source) state machine.
pub struct Peer {
    cfg: PeerConfig,
    tag: StreamTag,
    rng: SmallRng,
    started: Time,
    now: Time,
    clubs: Vec<u16>,
    club_count: u16,
    joined: bool,
    failed: bool,
    last_join_sent: Option<Time>,
    /// When the tracker's last PEER_LIST came.
    last_list: Time,
    joins_sent: u32,
    heartbeat_ms: u64,
    last_heartbeat: Time,
    contacts: Contacts,
    conns: Connections,
    bans: BanList,
    last_ban_sweep: Time,
    pending: Vec<maintain::Pending>,
    club_query_sent: HashMap<u16, Time>,
    /// Recent CLUB_PEERS_REQUESTs: id, club, when.
    club_queries: VecDeque<(u32, u16, Time)>,
    token_key: TokenKey,
    /// Signature checks allowed, all senders.
    all_signatures: TokenBucket,
    /// Signature checks allowed for senders with no connection.
    stranger_signatures: TokenBucket,
    /// Tokens other nodes gave this peer.
    tokens: BTreeMap<SocketAddr, Token>,
    verifier: BatchVerifier,
    ledgers: HashMap<SocketAddr, ProofLedger>,
    store: BlockStore,
    sends: SendScheduler<SendItem>,
    parked: ParkedBlocks,
    outbox: Outbox,
    pacer: UplinkPacer,
    /// Block sends waited for the pacer since the last control period.
    backlogged: bool,
    last_shed: Time,
    /// When a download last began to move off a public uploader.
    last_handover: Time,
    repair: RepairQueue,
    repair_budgets: BTreeMap<SocketAddr, TokenBucket>,
    /// CONNECTs given up lately, so a late ACCEPT can be taken or undone.
    given_up: VecDeque<maintain::Pending>,
    /// How far the source's batch times lag the local clock: its floor
    /// ties playback to the source's timeline ([0061]).
    arrival_lag: OneWayDelay,
    /// Failures in a row, and when a stopped peer resumes ([0063]).
    failures: u32,
    resume_at: Option<Time>,
    playout: Playout,
    block_us: u64,
    bitrate_kbps: u32,
    quality: QualityMonitor,
    delays_us: Histogram<u64>,
    events: VecDeque<PeerEvent>,
    played: VecDeque<PlayedBlock>,
    /// When the last fresh block came (from any connection).
    last_fresh: Option<Time>,
    /// When fresh blocks started coming again after the last pause.
    live_since: Time,
    stats: PeerStats,
    next_tick: Time,
    /// What others see of this peer's address; whom punches made it ping.
    traversal: traversal::Traversal,
    /// Fresh verified blocks per club.
    club_blocks: Vec<u64>,
    /// Blocks skipped by playback, per club.
    club_skipped: Vec<u64>,
    /// When a fresh block of each club last came, and whether the club is
    /// missing now.
    club_seen: Vec<(Time, bool)>,
}

/// Signature checks a peer makes a second at most: a stream's batches need
/// about 16 a second at 2 Mbit/s (16 blocks of 1 KiB a batch), each checked
/// once; the budget leaves room for 12 times that, and a forged flood gets
/// no more than about 10 ms of CPU a second out of it.
const SIGNATURES_PER_S: f64 = 200.0;

/// Checks that may come at once: two seconds' worth, for a catch-up or the
/// backlog of a link that stalled.
const SIGNATURES_BURST: f64 = 400.0;

/// Signature checks a second for blocks from addresses with no connection
/// (genuine ones hardly ever come so).
const STRANGER_SIGNATURES_PER_S: f64 = 10.0;

/// Checks for strangers that may come at once.
const STRANGER_SIGNATURES_BURST: f64 = 10.0;

/// Blocks played and not yet taken that a peer keeps for its media output.
pub const PLAYED_MAX: usize = 4096;

/// Blocks wanted for repair at most.
const REPAIR_WANTED_MAX: usize = 2048;

/// One block the playback clock released, for a media output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayedBlock {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload; `None` if it was skipped.
    pub payload: Option<Vec<u8>>,
}

impl Peer {
    /// A peer started at `now`, drawing randomness from `rng`.
    pub fn new(cfg: PeerConfig, now: Time, rng: SmallRng) -> Self {
        let tag = StreamTag::of_key(&cfg.stream.to_bytes());
        let clubs = match cfg.mode {
            Mode::Source => (0..cfg.club_count).collect(),
            Mode::Relay => cfg
                .clubs
                .clone()
                .unwrap_or_else(|| (0..cfg.club_count).collect()),
            Mode::Peer => cfg.clubs.clone().unwrap_or_default(),
        };
        let joined = cfg.tracker.is_none();
        let mut rng = rng;
        let token_key = TokenKey::new(rng.random());
        let mut peer = Peer {
            tag,
            rng,
            started: now,
            now,
            club_count: cfg.club_count.max(1),
            clubs,
            joined,
            failed: false,
            last_join_sent: None,
            last_list: now,
            joins_sent: 0,
            heartbeat_ms: 5_000,
            last_heartbeat: now,
            contacts: Contacts::new(4096),
            conns: Connections::default(),
            bans: BanList::new(1024, cfg.ban_parole_one_in),
            last_ban_sweep: now,
            pending: Vec::new(),
            club_query_sent: HashMap::new(),
            club_queries: VecDeque::new(),
            token_key,
            all_signatures: TokenBucket::new(SIGNATURES_PER_S, SIGNATURES_BURST, now),
            stranger_signatures: TokenBucket::new(
                STRANGER_SIGNATURES_PER_S,
                STRANGER_SIGNATURES_BURST,
                now,
            ),
            tokens: BTreeMap::new(),
            verifier: BatchVerifier::new(cfg.stream, cfg.verify_window),
            ledgers: HashMap::new(),
            store: BlockStore::new(cfg.store_blocks),
            sends: SendScheduler::new(16_384, cfg.in_club_run),
            parked: ParkedBlocks::new(PARKED_MAX),
            outbox: Outbox::new(cfg.outbox),
            pacer: UplinkPacer::new(cfg.pacer, now),
            backlogged: false,
            last_shed: now,
            last_handover: now,
            repair: RepairQueue::new(REPAIR_WANTED_MAX),
            repair_budgets: BTreeMap::new(),
            given_up: VecDeque::new(),
            arrival_lag: OneWayDelay::new(),
            failures: 0,
            resume_at: None,
            playout: Playout::new(cfg.playout, now),
            block_us: 0,
            bitrate_kbps: 0,
            quality: QualityMonitor::new(cfg.quality, now),
            delays_us: Histogram::new(2).expect("2 significant figures are valid"),
            events: VecDeque::new(),
            played: VecDeque::new(),
            last_fresh: None,
            live_since: now,
            stats: PeerStats::default(),
            next_tick: now,
            traversal: traversal::Traversal::default(),
            club_blocks: Vec::new(),
            club_skipped: Vec::new(),
            club_seen: Vec::new(),
            cfg,
        };
        for addr in peer.cfg.bootstrap.clone() {
            peer.contacts.entry(addr, now);
        }
        peer
    }

    /// Fresh verified blocks received so far, per club (index = club): a
    /// club missing from a peer's stream shows as a count that lags.
    pub fn club_blocks(&self) -> &[u64] {
        &self.club_blocks
    }

    /// Blocks playback skipped so far, per club (index = club): a club the
    /// peer does not get shows here.
    pub fn club_skipped(&self) -> &[u64] {
        &self.club_skipped
    }

    /// Counters so far.
    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// The block verifier's counters: signatures checked and trusted.
    pub fn verifier_stats(&self) -> VerifierStats {
        self.verifier.stats()
    }

    /// Playback counters.
    pub fn playout_stats(&self) -> PlayoutStats {
        self.playout.stats()
    }

    /// The block tag this peer gives `addr` (5.16 of `docs/PROTOCOL.md`):
    /// what it wants on every BLOCK from `addr`, and hands it in CONNECT,
    /// ACCEPT and REQUEST.
    pub fn block_tag(&self, addr: SocketAddr) -> u64 {
        self.conns
            .downloads
            .iter()
            .find(|d| d.from == addr)
            .map_or_else(|| self.token_key.block_tag(addr), |d| d.tag)
    }

    /// The tag of this peer's connection with `other` in `club` that goes
    /// `direction` from this peer's side: the block tag the downloader
    /// gave the uploader, which DROP, KEEPALIVE, HAVE and BITFIELD carry
    /// (5.12-5.15 of `docs/PROTOCOL.md`). For a download that is the tag
    /// this peer gives `other` (known even once the download is gone);
    /// for an upload, the one `other` gave, while the upload lasts.
    pub fn connection_tag(
        &self,
        other: SocketAddr,
        club: u16,
        direction: crate::wire::Direction,
    ) -> Option<u64> {
        match direction {
            crate::wire::Direction::Download => Some(self.block_tag(other)),
            crate::wire::Direction::Upload => self
                .conns
                .uploads
                .iter()
                .find(|u| u.to == other && u.club == club)
                .map(|u| u.tag),
        }
    }

    /// Whether `tag` is the tag of this peer's connection with `from` in
    /// `club` going `direction` from this peer's side; counts it when not.
    fn tag_matches(
        &mut self,
        from: SocketAddr,
        club: u16,
        direction: crate::wire::Direction,
        tag: u64,
    ) -> bool {
        let ok = self.connection_tag(from, club, direction) == Some(tag);
        if !ok {
            self.stats.control_wrong_tag += 1;
        }
        ok
    }

    /// The stream this peer plays.
    pub fn stream(&self) -> StreamId {
        self.cfg.stream
    }

    /// The latest time this peer has been told, on its own clock.
    pub fn now(&self) -> Time {
        self.now
    }

    /// When this peer was started.
    pub fn started_at(&self) -> Time {
        self.started
    }

    /// When playback began.
    pub fn playback_started_at(&self) -> Option<Time> {
        self.playout.started_at()
    }

    /// Source-to-ready delay of every fresh block, in microseconds.
    pub fn delays_us(&self) -> &Histogram<u64> {
        &self.delays_us
    }

    /// The clubs this peer sits in.
    pub fn clubs(&self) -> &[u16] {
        &self.clubs
    }

    /// The connection tables.
    pub fn connections(&self) -> &Connections {
        &self.conns
    }

    /// The ban list.
    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    /// The held blocks.
    pub fn store(&self) -> &BlockStore {
        &self.store
    }

    /// True while stopped after a graceful failure ([0063]).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// The uplink estimate, bit/s (`None` while no limit was seen).
    pub fn uplink_bps(&self) -> Option<f64> {
        self.pacer.rate_bps()
    }

    /// What this peer sent over the pacer's last period, bit/s.
    pub fn upload_bps(&self) -> f64 {
        self.pacer.send_rate_bps()
    }

    /// Blocks wanted for repair now.
    pub fn repairs_pending(&self) -> usize {
        self.repair.len()
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// The next block played (or skipped), in order, when the peer was
    /// made with `emit_played`.
    pub fn poll_played(&mut self) -> Option<PlayedBlock> {
        self.played.pop_front()
    }

    /// Clubs in the swarm.
    pub fn club_count(&self) -> u16 {
        self.club_count
    }

    /// In-club uploads per club above which an accepted request trims one
    /// ([0026], [0029], [0059]).
    fn upload_cap(&self) -> usize {
        match self.cfg.mode {
            Mode::Peer => self.cfg.in_club_max,
            Mode::Source => self.cfg.source_uploads,
            Mode::Relay => self.cfg.relay_uploads,
        }
    }

    /// True when `club` is one of this peer's clubs.
    fn in_club(&self, club: u16) -> bool {
        self.clubs.contains(&club)
    }

    /// Queues a control message, counting its bytes.
    fn send(&mut self, to: SocketAddr, msg: &Message<'_>) {
        match self.outbox.push(to, msg) {
            Some(len) => {
                self.stats.control_bytes_out += len as u64;
                self.pacer.on_sent(len);
            }
            None => self.stats.send_drops += 1,
        }
    }

    /// Bans `addr`, counting it when it was not banned yet.
    fn ban(&mut self, addr: SocketAddr) {
        if self.bans.ban(addr) {
            self.stats.bans_added += 1;
        }
    }

    /// Drops a connection this peer initiates dropping: tells the other
    /// side and, for congestion reasons, bans it ([0054]).
    fn drop_connection(
        &mut self,
        other: SocketAddr,
        club: u16,
        direction: crate::wire::Direction,
        reason: DropReason,
    ) {
        let Some(tag) = self.connection_tag(other, club, direction) else {
            return;
        };
        let removed = match direction {
            crate::wire::Direction::Download => self.conns.remove_download(other, club),
            crate::wire::Direction::Upload => self.conns.remove_upload(other, club),
        };
        if !removed {
            return;
        }
        let counter = match reason {
            DropReason::Delay => Some(&mut self.stats.dropped_delay),
            DropReason::SequenceGap => Some(&mut self.stats.dropped_gap),
            DropReason::Silence => Some(&mut self.stats.dropped_silence),
            DropReason::KeepAliveTimeout => Some(&mut self.stats.dropped_keepalive),
            DropReason::Trimmed => Some(&mut self.stats.dropped_trimmed),
            DropReason::Forged => Some(&mut self.stats.dropped_forged),
            DropReason::Shed => Some(&mut self.stats.dropped_shed),
            DropReason::Leaving | DropReason::NoSuchConnection => None,
        };
        if let Some(c) = counter {
            *c += 1;
        }
        if matches!(
            reason,
            DropReason::Delay
                | DropReason::SequenceGap
                | DropReason::Silence
                | DropReason::KeepAliveTimeout
                | DropReason::Forged
        ) {
            self.ban(other);
        }
        self.send(
            other,
            &Message::Drop(crate::wire::Drop {
                direction,
                club,
                reason,
                tag,
            }),
        );
        if !self.conns.involves(other) {
            self.ledgers.remove(&other);
            self.repair_budgets.remove(&other);
        }
    }
}

impl Peer {
    /// Takes a datagram `from` sent that a verifier of this process already
    /// passed (a relay worker's report to its control plane): handled as
    /// [`Node::handle_datagram`] would, except that a BLOCK's batch
    /// signature is not checked again.
    pub fn handle_verified(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        self.receive(now, from, datagram, Trust::Verified);
    }

    fn receive(&mut self, now: Time, from: SocketAddr, datagram: &[u8], trust: Trust) {
        self.now = self.now.max(now);
        if self.failed {
            return;
        }
        // Only known contacts are refreshed: a datagram from an address
        // nobody validated teaches this peer nothing.
        if let Some(c) = self.contacts.get_mut(&from) {
            c.heard = now;
        }
        match Message::parse(datagram) {
            Ok(Message::Block(block)) => {
                self.stats.block_bytes_in += datagram.len() as u64;
                self.on_block(now, from, &block, trust);
            }
            Ok(msg) => {
                self.stats.control_bytes_in += datagram.len() as u64;
                self.on_control(now, from, &msg);
            }
            Err(_) => self.stats.malformed += 1,
        }
        self.flush_sends();
    }
}

impl Node for Peer {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        self.receive(now, from, datagram, Trust::Check);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        if self.failed && self.resume_at.is_some_and(|t| now >= t) {
            self.resume(now);
        }
        if self.failed {
            return;
        }
        if now < self.next_tick {
            // A held push fell due.
            self.flush_sends();
            return;
        }
        self.next_tick = now.plus_ms(self.cfg.tick_ms);
        self.tick(now);
        self.flush_sends();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Time> {
        if self.failed {
            return self.resume_at;
        }
        // The pacer, not the hold, keeps a due push waiting: the tick
        // wakes it then.
        let held = self
            .sends
            .fronts()
            .map(|i| i.due)
            .filter(|due| *due > self.now)
            .min();
        Some(held.map_or(self.next_tick, |due| due.min(self.next_tick)))
    }

    /// DROPs every connection (reason Leaving) and goes quiet for good:
    /// no tick, no reconnection.
    fn leave(&mut self, now: Time) {
        self.now = self.now.max(now);
        self.drop_everything();
        self.failed = true;
        self.resume_at = None;
    }
}
