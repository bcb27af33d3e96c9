//! The peer and source, rule by rule ([0026]-[0029], [0032]-[0063]),
//! driven deterministically: fixed RNG seeds, injected time, real signed
//! blocks, no sockets. Each test feeds encoded datagrams to the state
//! machine (or runs a small swarm in the in-memory network) and checks
//! what comes out against one paragraph of the seed.
//!
//! The tracker's rules ([0015]-[0016], [0030]-[0031]) live in
//! `tests/tracker.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clubcast::auth::signer::HopFields;
use clubcast::auth::{BatchSigner, BatchVerifier, ProofPlan, SignedBatch, SourceKey};
use clubcast::roles::bitrate::BitrateEstimator;
use clubcast::roles::peer::bans::BanList;
use clubcast::roles::peer::contacts::{Choice, Contacts};
use clubcast::roles::peer::playout::{Played, Playout, PlayoutConfig};
use clubcast::roles::peer::quality::{QualityMonitor, QualityRule, QualityTotals, Verdict};
use clubcast::roles::peer::scheduler::{Lane, SendScheduler};
use clubcast::roles::peer::store::{BlockStore, StoredBlock};
use clubcast::roles::{
    Node, Peer, PeerConfig, PeerEvent, Source, SourceConfig, Time, Tracker, TrackerConfig,
};
use clubcast::sim::{LinkProfile, Network, NodeId};
use clubcast::swarm::SwarmNode;
use clubcast::wire::{
    bitfield, parse_header, set_block_tag, Accept, AddrList, Bitfield, Block, ClubList, ClubPeers,
    ClubPeersRequest, Connect, Direction, Drop, DropReason, Have, KeepAlive, Load, Message,
    MessageType, Ping, Pong, RefuseReason, Request, SeqList, StreamTag, Token, MAX_DATAGRAM,
    SPARE_UNLIMITED, VERSION,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

// ---- Fixtures ----------------------------------------------------------------

/// Clubs in the swarm ([0022]).
const C: u16 = 12;

/// Seed of the stream's signing key.
const KEY_SEED: [u8; 32] = [42; 32];

/// A start time far enough from 0 that blocks can claim older timestamps.
const T0: Time = Time(100_000_000);

fn addr(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 4000)
}

/// The address a stranger (here: the source) sends blocks from.
fn stranger() -> SocketAddr {
    addr(9_999)
}

fn key() -> SourceKey {
    SourceKey::from_seed(&KEY_SEED)
}

fn tag() -> StreamTag {
    StreamTag::of_key(&key().stream_id().to_bytes())
}

fn ms(n: u64) -> u64 {
    n * 1000
}

fn at(t: Time, ms_after: u64) -> Time {
    t.plus_ms(ms_after)
}

/// A viewer in `clubs`, joined without a tracker.
fn config(clubs: &[u16]) -> PeerConfig {
    let mut cfg = PeerConfig::new(key().stream_id(), None);
    cfg.clubs = Some(clubs.to_vec());
    cfg.club_count = C;
    cfg.peer_id = 1;
    // The rules below see a push as soon as it is queued; the hold that
    // waits for HAVEs has its own test.
    cfg.push_hold_max_ms = 0;
    cfg
}

fn peer_with(cfg: PeerConfig) -> Peer {
    Peer::new(cfg, T0, SmallRng::seed_from_u64(7))
}

/// The usual subject: a viewer in clubs 0 and 1.
fn peer() -> Peer {
    peer_with(config(&[0, 1]))
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let len = msg.encode(&mut buf).expect("encodes");
    buf.truncate(len);
    buf
}

/// One datagram a node sent.
struct Out {
    to: SocketAddr,
    at: Time,
    bytes: Vec<u8>,
}

impl Out {
    fn msg(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("nodes send well-formed datagrams")
    }

    fn block(&self) -> Option<Block<'_>> {
        match self.msg() {
            Message::Block(b) => Some(b),
            _ => None,
        }
    }

    fn is_block(&self) -> bool {
        self.block().is_some()
    }

    fn connect(&self) -> Option<Connect<'_>> {
        match self.msg() {
            Message::Connect(c) => Some(c),
            _ => None,
        }
    }

    fn drop_msg(&self) -> Option<Drop> {
        match self.msg() {
            Message::Drop(d) => Some(d),
            _ => None,
        }
    }

    fn have(&self) -> Option<Have> {
        match self.msg() {
            Message::Have(h) => Some(h),
            _ => None,
        }
    }

    fn is_ping(&self) -> bool {
        matches!(self.msg(), Message::Ping(_))
    }
}

/// Everything `node` has queued, stamped with `now`.
fn drain(node: &mut impl Node, now: Time) -> Vec<Out> {
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        out.push(Out {
            to: t.to,
            at: now,
            bytes: t.payload().to_vec(),
        });
    }
    out
}

/// Delivers `msg` from `from` at `now` and returns what the node answers.
/// A request answered with a RETRY is sent again with the token, as a
/// real requester does; what the node answered to both comes back, the
/// RETRY left out.
fn deliver(node: &mut impl Node, now: Time, from: SocketAddr, msg: &Message<'_>) -> Vec<Out> {
    node.handle_datagram(now, from, &encode(msg));
    let mut out = drain(node, now);
    let token = out.iter().find_map(|o| match o.msg() {
        Message::Retry(r) if o.to == from => Some(r.token),
        _ => None,
    });
    let Some(token) = token else {
        return out;
    };
    out.retain(|o| !matches!(o.msg(), Message::Retry(_)));
    let again = match msg {
        Message::Ping(m) => Message::Ping(Ping { token, ..*m }),
        Message::Connect(m) => Message::Connect(Connect { token, ..*m }),
        Message::ClubPeersRequest(m) => Message::ClubPeersRequest(ClubPeersRequest { token, ..*m }),
        other => panic!("a RETRY for {other:?}"),
    };
    node.handle_datagram(now, from, &encode(&again));
    out.extend(drain(node, now));
    out
}

/// Tells the peer `from`'s load as a PONG does, after `from` made itself
/// known with a validated PING (an unsolicited PONG teaches nothing).
fn tell(node: &mut impl Node, now: Time, from: SocketAddr, msg: &Message<'_>) -> Vec<Out> {
    let ping = Message::Ping(Ping {
        nonce: 0,
        club: 0,
        token: Token::NONE,
    });
    deliver(node, now, from, &ping);
    deliver(node, now, from, msg)
}

/// Delivers raw bytes and returns the answer. A BLOCK goes as its sender
/// would send it: with the block tag the peer gave `from` (see
/// `spoofed_blocks_without_the_tag_are_dropped_unchecked` for one without).
fn deliver_raw(node: &mut Peer, now: Time, from: SocketAddr, bytes: &[u8]) -> Vec<Out> {
    let mut bytes = bytes.to_vec();
    if parse_header(&bytes).is_ok_and(|(t, _)| t == MessageType::Block) {
        set_block_tag(&mut bytes, node.block_tag(from));
    }
    node.handle_datagram(now, from, &bytes);
    drain(node, now)
}

/// Runs the node's timer every `step_ms` from `from` (inclusive) to `to`
/// (exclusive) and returns all it sent, stamped.
fn run(node: &mut impl Node, from: Time, to: Time, step_ms: u64) -> Vec<Out> {
    let mut out = Vec::new();
    let mut now = from;
    while now < to {
        node.handle_timeout(now);
        out.extend(drain(node, now));
        now = now.plus_ms(step_ms);
    }
    out
}

/// The tag of a node's connection with `other` in `club` going `ours` from
/// the node's side (0 when there is none): what the other end puts on its
/// DROP, KEEPALIVE, HAVE and BITFIELD about it.
trait ConnTag {
    fn tag_of(&self, other: SocketAddr, club: u16, ours: Direction) -> u64;
}

impl ConnTag for Peer {
    fn tag_of(&self, other: SocketAddr, club: u16, ours: Direction) -> u64 {
        self.connection_tag(other, club, ours).unwrap_or(0)
    }
}

impl ConnTag for Source {
    fn tag_of(&self, other: SocketAddr, club: u16, ours: Direction) -> u64 {
        self.peer().tag_of(other, club, ours)
    }
}

/// Like [`run`], but before every timer call each `(addr, club)` of
/// `keepers` sends the node a KEEPALIVE for `club`, as a live downloader
/// does ([0053]).
fn run_keeping(
    node: &mut (impl Node + ConnTag),
    from: Time,
    to: Time,
    step_ms: u64,
    keepers: &[(SocketAddr, u16)],
) -> Vec<Out> {
    let mut out = Vec::new();
    let mut now = from;
    while now < to {
        for (a, club) in keepers {
            let tag = node.tag_of(*a, *club, Direction::Upload);
            out.extend(deliver(
                node,
                now,
                *a,
                &Message::KeepAlive(KeepAlive::bare(*club, tag)),
            ));
        }
        node.handle_timeout(now);
        out.extend(drain(node, now));
        now = now.plus_ms(step_ms);
    }
    out
}

/// The block tag test node `addr` gives the peer, as a downloader would.
fn downloader_tag(addr: SocketAddr) -> u64 {
    0xd0_0000_0000 | u64::from(addr.port())
}

fn clubs_msg(clubs: &[u16]) -> ClubList<'_> {
    ClubList::Items(clubs)
}

/// `from` asks the peer to upload `club` to it; returns the answer.
fn connect_as_downloader(
    p: &mut impl Node,
    now: Time,
    from: SocketAddr,
    club: u16,
    their_clubs: &[u16],
) -> Vec<Out> {
    let req = Message::Connect(Connect {
        request_id: 1,
        direction: Direction::Download,
        club,
        block_tag: downloader_tag(from),
        clubs: clubs_msg(their_clubs),
        token: Token::NONE,
    });
    deliver(p, now, from, &req)
}

/// `from` offers to upload `club` to the peer; returns the answer.
fn connect_as_uploader(
    p: &mut impl Node,
    now: Time,
    from: SocketAddr,
    club: u16,
    their_clubs: &[u16],
) -> Vec<Out> {
    let req = Message::Connect(Connect {
        request_id: 2,
        direction: Direction::Upload,
        club,
        block_tag: downloader_tag(from),
        clubs: clubs_msg(their_clubs),
        token: Token::NONE,
    });
    deliver(p, now, from, &req)
}

fn assert_accepted(out: &[Out], to: SocketAddr) {
    assert!(
        out.iter()
            .any(|o| o.to == to && matches!(o.msg(), Message::Accept(_))),
        "no ACCEPT to {to}"
    );
}

fn pong(clubs: &[u16], uploads: u16) -> Message<'_> {
    Message::Pong(Pong {
        nonce: 0,
        club: clubs[0],
        load: Load {
            uploads_in_club: uploads,
            ..Load::default()
        },
        spare_kbps: SPARE_UNLIMITED,
        clubs: ClubList::Items(clubs),
        reach: 0,
        observed: None,
    })
}

/// Answers every CONNECT in `out` addressed to `from` with an ACCEPT.
fn accept_connects(p: &mut Peer, now: Time, from: SocketAddr, out: &[Out]) -> Vec<Out> {
    let mut answers = Vec::new();
    for o in out.iter().filter(|o| o.to == from) {
        if let Some(c) = o.connect() {
            let acc = Message::Accept(Accept {
                request_id: c.request_id,
                direction: c.direction,
                club: c.club,
                block_tag: downloader_tag(from),
            });
            answers.extend(deliver(p, now, from, &acc));
        }
    }
    answers
}

/// Makes the peer open a download of foreign `club` from `from` the way
/// the protocol does: `from` is known by a PONG, the peer's tick sends a
/// CONNECT, `from` accepts. Returns the time after the tick.
fn open_foreign_download(p: &mut Peer, now: Time, from: SocketAddr, club: u16) -> Time {
    tell(p, now, from, &pong(&[club], 0));
    p.handle_timeout(now);
    let out = drain(p, now);
    let connects: Vec<&Out> = out
        .iter()
        .filter(|o| {
            o.to == from
                && o.connect()
                    .is_some_and(|c| c.club == club && c.direction == Direction::Download)
        })
        .collect();
    assert_eq!(connects.len(), 1, "one CONNECT for club {club} to {from}");
    accept_connects(p, now, from, &out);
    assert!(
        p.connections()
            .downloads
            .iter()
            .any(|d| d.from == from && d.club == club && !d.in_club),
        "download of club {club} from {from} is open"
    );
    now.plus_ms(20)
}

/// An upload's KEEPALIVE timeout towards a peer whose round trip is not
/// known: the longest of the configured timeout and four retransmission
/// timeouts (`connect_timeout_ms` while no round trip is known) plus two
/// keep-alive intervals.
fn keepalive_timeout_unknown_rtt(cfg: &PeerConfig) -> u64 {
    cfg.keepalive_timeout_ms
        .max(4 * cfg.connect_timeout_ms + 2 * cfg.keepalive_ms)
}

fn drops_to(out: &[Out], to: SocketAddr) -> Vec<(Time, Drop)> {
    out.iter()
        .filter(|o| o.to == to)
        .filter_map(|o| o.drop_msg().map(|d| (o.at, d)))
        .collect()
}

fn block_seqs_to(out: &[Out], to: SocketAddr) -> Vec<u64> {
    out.iter()
        .filter(|o| o.to == to)
        .filter_map(|o| o.block().map(|b| b.seq))
        .collect()
}

// ---- Signed blocks -------------------------------------------------------------

/// Signs the stream in batches of `per_batch` blocks on demand and hands
/// out BLOCK datagrams carrying the signature and the whole proof, as the
/// source sends a receiver's first block of a batch.
struct Feed {
    signer: BatchSigner,
    per_batch: u64,
    payload_len: usize,
    /// Signed timestamp of batch b: `ts_base + b * ts_step`.
    ts_base: u64,
    ts_step: u64,
    batches: HashMap<u64, SignedBatch>,
}

impl Feed {
    fn new(per_batch: u64, payload_len: usize, ts_base: Time, ts_step_us: u64) -> Self {
        Feed::with_key(&KEY_SEED, per_batch, payload_len, ts_base, ts_step_us)
    }

    fn with_key(
        seed: &[u8; 32],
        per_batch: u64,
        payload_len: usize,
        ts_base: Time,
        ts_step_us: u64,
    ) -> Self {
        Feed {
            signer: BatchSigner::new(SourceKey::from_seed(seed)),
            per_batch,
            payload_len,
            ts_base: ts_base.0,
            ts_step: ts_step_us,
            batches: HashMap::new(),
        }
    }

    fn payload(seq: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seq.wrapping_mul(31) as usize + i * 7) as u8)
            .collect()
    }

    fn signed(&mut self, seq: u64) -> &SignedBatch {
        let b = seq / self.per_batch;
        let (per, len, ts) = (
            self.per_batch,
            self.payload_len,
            self.ts_base + b * self.ts_step,
        );
        let signer = &self.signer;
        self.batches.entry(b).or_insert_with(|| {
            let payloads: Vec<Vec<u8>> = (b * per..(b + 1) * per)
                .map(|s| Feed::payload(s, len))
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            signer.sign(b, b * per, ts, &refs).expect("valid batch")
        })
    }

    /// Block `seq` with the given hop fields and a full proof.
    fn block_with(&mut self, seq: u64, hop: HopFields) -> Vec<u8> {
        let index = (seq % self.per_batch) as u16;
        let full = ProofPlan {
            signature: true,
            hashes: usize::MAX,
        };
        let block = self.signed(seq).block(index, full, hop);
        encode(&Message::Block(block))
    }

    /// Block `seq` of club `seq mod C`, sent at `sent_at` with a 2 s delay
    /// threshold and `kbps` as the source's bit-rate estimate.
    fn block(&mut self, seq: u64, sent_at: Time, kbps: u32) -> Vec<u8> {
        self.block_with(
            seq,
            HopFields {
                club: (seq % u64::from(C)) as u16,
                sent_at_us: sent_at.0,
                delay_threshold_ms: 2_000,
                bitrate_kbps: kbps,
            },
        )
    }
}

/// A play delay in the middle of the target range ([0061]).
fn mid_delay_us() -> u64 {
    let cfg = PlayoutConfig::default();
    (cfg.min_delay_us + cfg.max_delay_us) / 2
}

/// A feed in the normal delay range: batches of 60 blocks of 200 bytes,
/// signed a normal play delay before `T0`.
fn feed() -> Feed {
    Feed::new(60, 200, Time(T0.0 - mid_delay_us()), 0)
}

/// Checks that `blocks` (in arrival order, for one receiver) all verify
/// with a fresh verifier as fresh blocks: the omitted signatures and hashes
/// were really given earlier.
fn assert_verifiable_in_order(blocks: &[Vec<u8>]) {
    let mut v = BatchVerifier::new(key().stream_id(), 64);
    for bytes in blocks {
        let Ok(Message::Block(b)) = Message::parse(bytes) else {
            panic!("not a block");
        };
        let r = v.verify(&b);
        assert!(
            r.is_ok_and(|r| r.fresh),
            "block {} does not verify: {r:?}",
            b.seq
        );
    }
}

// ---- [0032]-[0038]: finding members and choosing among them ---------------------

/// [0032]: a peer that must connect in a club of which it knows no member
/// asks peers from its list with CLUB_PEERS_REQUEST; the members it is
/// told of are then pinged ([0033], [0038]).
#[test]
fn peer_without_known_members_asks_for_club_peers_then_pings_them() {
    let (a, b) = (addr(1), addr(2));
    let mut cfg = config(&[0, 1]);
    cfg.bootstrap = vec![a, b];
    let mut p = peer_with(cfg);
    p.handle_timeout(T0);
    let out = drain(&mut p, T0);
    let asked = |club: u16, to: SocketAddr| {
        out.iter().any(|o| {
            o.to == to
                && matches!(o.msg(), Message::ClubPeersRequest(r) if r.club == club && r.max_peers > 0)
        })
    };
    for club in [0, 1, 7] {
        assert!(asked(club, a) && asked(club, b), "club {club} not asked");
    }
    assert!(
        !out.iter().any(|o| o.connect().is_some()),
        "no CONNECT without a known member"
    );
    // A answers with two members of club 7: they get a PING for club 7.
    let (m1, m2) = (addr(71), addr(72));
    let members = [m1, m2];
    let request_id = out
        .iter()
        .find_map(|o| match o.msg() {
            Message::ClubPeersRequest(r) if o.to == a && r.club == 7 => Some(r.request_id),
            _ => None,
        })
        .expect("club 7 asked of A");
    let answer = Message::ClubPeers(ClubPeers {
        request_id,
        club: 7,
        peers: AddrList::Items(&members),
    });
    deliver(&mut p, at(T0, 5), a, &answer);
    let out = run(&mut p, at(T0, 20), at(T0, 40), 20);
    for m in members {
        assert!(
            out.iter()
                .any(|o| o.to == m && matches!(o.msg(), Message::Ping(Ping { club: 7, .. }))),
            "member {m} of club 7 not pinged"
        );
    }
    // A PONG from one makes it the CONNECT target for club 7.
    deliver(&mut p, at(T0, 45), m1, &pong(&[7, 8], 0));
    let out = run(&mut p, at(T0, 60), at(T0, 80), 20);
    assert!(out.iter().any(|o| o.to == m1
        && o.connect()
            .is_some_and(|c| c.club == 7 && c.direction == Direction::Download)));
}

/// [0037]: a peer already in the swarm sends its CLUB_PEERS_REQUEST to the
/// peers it has connections with, not to other peers it merely knows.
#[test]
fn connected_peer_asks_its_connections_for_club_members() {
    let (a, b, c, z) = (addr(1), addr(2), addr(3), addr(26));
    let mut cfg = config(&[0, 1]);
    cfg.bootstrap = vec![z];
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_uploader(&mut p, T0, a, 0, &[0, 2]), a);
    assert_accepted(&connect_as_downloader(&mut p, T0, b, 0, &[0, 3]), b);
    assert_accepted(&connect_as_downloader(&mut p, T0, c, 1, &[1, 4]), c);
    p.handle_timeout(T0);
    let out = drain(&mut p, T0);
    let asked: BTreeSet<SocketAddr> = out
        .iter()
        .filter(|o| matches!(o.msg(), Message::ClubPeersRequest(r) if r.club == 7))
        .map(|o| o.to)
        .collect();
    assert_eq!(asked, BTreeSet::from([a, b, c]));
}

/// [0032], [0037]: a peer answers CLUB_PEERS_REQUEST with the members of
/// the club it knows, those it is connected to first, and never lists the
/// requester.
#[test]
fn club_peers_answer_lists_connected_members_first_never_the_requester() {
    let (down, up, requester) = (addr(1), addr(2), addr(3));
    let (known1, known2, other_club) = (addr(4), addr(5), addr(6));
    let mut p = peer();
    assert_accepted(&connect_as_uploader(&mut p, T0, down, 0, &[0, 2]), down);
    assert_accepted(&connect_as_downloader(&mut p, T0, up, 0, &[0, 3]), up);
    assert_accepted(
        &connect_as_downloader(&mut p, T0, requester, 0, &[0, 4]),
        requester,
    );
    tell(&mut p, T0, known1, &pong(&[0, 5], 1));
    tell(&mut p, T0, known2, &pong(&[6, 0], 1));
    tell(&mut p, T0, other_club, &pong(&[9, 10], 1));
    let ask = |max: u16| {
        Message::ClubPeersRequest(ClubPeersRequest {
            request_id: 77,
            club: 0,
            max_peers: max,
            token: Token::NONE,
        })
    };
    let out = deliver(&mut p, at(T0, 1), requester, &ask(32));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, requester);
    let Message::ClubPeers(ans) = out[0].msg() else {
        panic!("expected CLUB_PEERS, got {:?}", out[0].msg());
    };
    assert_eq!((ans.request_id, ans.club), (77, 0));
    let listed: Vec<SocketAddr> = ans.peers.iter().collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(
        listed[..2].iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([down, up]),
        "connected members come first: {listed:?}"
    );
    assert_eq!(
        listed[2..].iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([known1, known2])
    );
    // Bounded by the request: the two connected members only.
    let out = deliver(&mut p, at(T0, 2), requester, &ask(2));
    let Message::ClubPeers(ans) = out[0].msg() else {
        panic!("expected CLUB_PEERS");
    };
    assert_eq!(
        ans.peers.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([down, up])
    );
}

fn contacts_with(loads: &[(SocketAddr, Load)], club: u16) -> Contacts {
    let mut book = Contacts::new(64);
    for (a, load) in loads {
        let c = book.entry(*a, T0);
        c.clubs = vec![club];
        c.pong = Some((T0, *load));
    }
    book
}

fn uploads(in_club: u16, out_of_club: u16) -> Load {
    Load {
        uploads_in_club: in_club,
        uploads_out_of_club: out_of_club,
        downloads_in_club: 7,
        downloads_out_of_club: 7,
    }
}

/// [0033], [0035]: the target is drawn at random weighted by the total
/// uploads each candidate reported, a count of 0 weighing as 1: a peer
/// with 9 uploads is chosen about 9 times as often as one with none.
#[test]
fn choice_is_weighted_by_reported_uploads_zero_counting_as_one() {
    let (busy, idle, some) = (addr(1), addr(2), addr(3));
    let book = contacts_with(&[(busy, uploads(4, 5)), (idle, uploads(0, 0))], 3);
    let mut rng = SmallRng::seed_from_u64(33);
    let mut counts: HashMap<SocketAddr, u32> = HashMap::new();
    const DRAWS: u32 = 100_000;
    for _ in 0..DRAWS {
        let a = book
            .choose(
                3,
                T0,
                T0,
                Choice::WeightedByUploads,
                0,
                false,
                &mut rng,
                |_| true,
            )
            .expect("a candidate");
        *counts.entry(a).or_default() += 1;
    }
    let ratio = f64::from(counts[&busy]) / f64::from(counts[&idle]);
    assert!((8.6..9.4).contains(&ratio), "busy/idle = {ratio:.3}");
    // Three candidates weighing 9, 1 and 2 (out-of-club uploads count too).
    let book = contacts_with(
        &[
            (busy, uploads(4, 5)),
            (idle, uploads(0, 0)),
            (some, uploads(0, 2)),
        ],
        3,
    );
    let mut counts: HashMap<SocketAddr, u32> = HashMap::new();
    for _ in 0..DRAWS {
        let a = book
            .choose(
                3,
                T0,
                T0,
                Choice::WeightedByUploads,
                0,
                false,
                &mut rng,
                |_| true,
            )
            .expect("a candidate");
        *counts.entry(a).or_default() += 1;
    }
    for (a, w) in [(busy, 9.0), (idle, 1.0), (some, 2.0)] {
        let share = f64::from(counts[&a]) / f64::from(DRAWS);
        assert!(
            (share - w / 12.0).abs() < 0.01,
            "{a}: share {share:.4}, expected {:.4}",
            w / 12.0
        );
    }
}

/// [0034]: with the least-loaded rule the target is drawn only among the
/// candidates reporting the fewest uploads, uniformly.
#[test]
fn least_loaded_choice_picks_only_among_the_minimum() {
    let (a, b, c, d) = (addr(1), addr(2), addr(3), addr(4));
    let book = contacts_with(
        &[
            (a, uploads(1, 1)),
            (b, uploads(0, 2)),
            (c, uploads(3, 0)),
            (d, uploads(2, 5)),
        ],
        4,
    );
    let mut rng = SmallRng::seed_from_u64(34);
    let mut counts: HashMap<SocketAddr, u32> = HashMap::new();
    for _ in 0..10_000 {
        let x = book
            .choose(4, T0, T0, Choice::LeastLoaded, 0, false, &mut rng, |_| true)
            .expect("a candidate");
        *counts.entry(x).or_default() += 1;
    }
    assert_eq!(
        counts.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([a, b])
    );
    assert!(counts[&a] > 4_500 && counts[&b] > 4_500, "{counts:?}");
}

/// [0036], [0038]: a PONG is stored and reused: while it is fresh the peer
/// connects without pinging again, for one connection and for the next in
/// another club of the same peer.
#[test]
fn fresh_pong_is_reused_without_a_new_ping() {
    let x = addr(5);
    let mut p = peer();
    tell(&mut p, T0, x, &pong(&[5, 6], 0));
    let out = run(&mut p, at(T0, 1_000), at(T0, 1_020), 20);
    let to_x: Vec<&Out> = out.iter().filter(|o| o.to == x).collect();
    let clubs: BTreeSet<u16> = to_x
        .iter()
        .filter_map(|o| o.connect())
        .filter(|c| c.direction == Direction::Download)
        .map(|c| c.club)
        .collect();
    assert_eq!(clubs, BTreeSet::from([5, 6]));
    assert!(
        !to_x.iter().any(|o| o.is_ping()),
        "pinged despite a fresh PONG"
    );
}

/// [0038]: a PONG older than the freshness period is not trusted: the peer
/// pings the member again and connects once the new PONG is in.
#[test]
fn stale_pong_triggers_a_ping_before_connecting() {
    let x = addr(5);
    let mut p = peer();
    let fresh_ms = PeerConfig::new(key().stream_id(), None).pong_fresh_ms;
    tell(&mut p, T0, x, &pong(&[5], 0));
    let late = at(T0, fresh_ms + 1_000);
    let out = run(&mut p, late, at(late, 20), 20);
    let to_x: Vec<&Out> = out.iter().filter(|o| o.to == x).collect();
    assert!(
        to_x.iter()
            .any(|o| matches!(o.msg(), Message::Ping(Ping { club: 5, .. }))),
        "no PING to a member with a stale PONG"
    );
    assert!(!to_x.iter().any(|o| o.connect().is_some()));
    deliver(&mut p, at(late, 30), x, &pong(&[5], 0));
    let out = run(&mut p, at(late, 40), at(late, 60), 20);
    assert!(out
        .iter()
        .any(|o| o.to == x && o.connect().is_some_and(|c| c.club == 5)));
}

// ---- [0039], [0054], [0055]: the ban list ------------------------------------

/// [0039], [0053], [0054]: the peer that drops a connection for congestion
/// (here: an upload whose receiver sent no KEEPALIVE) bans the other side,
/// and while any other member of a club is available the banned peer is
/// not chosen, however many uploads it reports.
#[test]
fn congestion_drop_bans_and_banned_peer_is_not_chosen_over_others() {
    let (y, z) = (addr(5), addr(6));
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000; // no parole during the test
    let timeout = keepalive_timeout_unknown_rtt(&cfg);
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_downloader(&mut p, T0, y, 0, &[0, 5]), y);
    let out = run(&mut p, T0, at(T0, timeout + 100), 20);
    let drops = drops_to(&out, y);
    assert_eq!(drops.len(), 1, "one DROP to the silent receiver");
    assert_eq!(
        (drops[0].1.direction, drops[0].1.club, drops[0].1.reason),
        (Direction::Upload, 0, DropReason::KeepAliveTimeout)
    );
    assert!(p.bans().is_banned(&y));
    let now = at(T0, timeout + 200);
    assert!(p.connections().uploads.is_empty() && p.connections().downloads.is_empty());
    // Y and Z sit in six foreign clubs; Y reports 50 uploads, Z none, so
    // a choice blind to the ban would pick Y about 50 times in 51.
    let clubs = [5, 6, 7, 8, 9, 10];
    tell(&mut p, now, y, &pong(&clubs, 50));
    tell(&mut p, now, z, &pong(&clubs, 0));
    p.handle_timeout(at(now, 20));
    let out = drain(&mut p, at(now, 20));
    assert!(
        !out.iter().any(|o| o.to == y && o.connect().is_some()),
        "CONNECT sent to a banned peer while another member was available"
    );
    let to_z: BTreeSet<u16> = out
        .iter()
        .filter(|o| o.to == z)
        .filter_map(|o| o.connect().map(|c| c.club))
        .collect();
    assert_eq!(to_z, BTreeSet::from(clubs));
}

/// A peer that says it is Leaving is not asked again: the download it
/// carried is replaced by another member at the next tick, although the
/// leaver's PONG is still fresh and reports fifty times the uploads
/// (a choice blind to its departure would pick it about 50 times in 51
/// and wait out a CONNECT to a dead address).
#[test]
fn download_from_a_leaving_peer_is_replaced_by_another_member() {
    let (x, z) = (addr(5), addr(6));
    let mut p = peer();
    let now = open_foreign_download(&mut p, T0, x, 5);
    tell(&mut p, now, x, &pong(&[5], 50));
    tell(&mut p, now, z, &pong(&[5], 0));
    let left = Message::Drop(Drop {
        direction: Direction::Upload,
        club: 5,
        reason: DropReason::Leaving,
        tag: p.tag_of(x, 5, Direction::Download),
    });
    deliver(&mut p, at(now, 10), x, &left);
    assert_eq!(p.connections().downloads_of(5), 0);
    let out = run(&mut p, at(now, 10), at(now, 200), 20);
    assert!(
        !out.iter().any(|o| o.to == x && o.connect().is_some()),
        "CONNECT sent to the peer that left"
    );
    assert_eq!(connects_for(&out, 5, Direction::Download), vec![z]);
}

/// [0054]: only the initiator of a drop bans; the peer told of a drop by
/// the other side does not ban it.
#[test]
fn peer_told_of_a_congestion_drop_does_not_ban() {
    let w = addr(5);
    let mut p = peer();
    assert_accepted(&connect_as_downloader(&mut p, T0, w, 0, &[0, 5]), w);
    let drop = Message::Drop(Drop {
        direction: Direction::Download,
        club: 0,
        reason: DropReason::Delay,
        tag: p.tag_of(w, 0, Direction::Upload),
    });
    deliver(&mut p, at(T0, 10), w, &drop);
    assert!(p.connections().uploads.is_empty(), "upload forgotten");
    assert!(!p.bans().is_banned(&w));
}

/// [0055]: every sweep each banned peer leaves the list with probability
/// 1/8.
#[test]
fn ban_parole_frees_about_one_in_eight_per_sweep() {
    let mut bans = BanList::new(100_000, 8);
    for n in 0..20_000 {
        bans.ban(addr(n));
    }
    assert_eq!(bans.len(), 20_000);
    let mut rng = SmallRng::seed_from_u64(55);
    let (mut exposed, mut left) = (0usize, 0usize);
    for sweep in 0..10 {
        let before = bans.len();
        bans.sweep(&mut rng);
        let gone = before - bans.len();
        let share = gone as f64 / before as f64;
        assert!(
            (0.10..0.15).contains(&share),
            "sweep {sweep}: {share:.4} of the banned left"
        );
        exposed += before;
        left += gone;
    }
    let share = left as f64 / exposed as f64;
    assert!((share - 0.125).abs() < 0.004, "overall {share:.4}");
    // Nobody leaves without a sweep.
    let n = bans.len();
    assert!((0..20_000).filter(|i| bans.is_banned(&addr(*i))).count() == n);
}

// ---- [0026]-[0029]: connection targets in a running swarm --------------------

const TRACKER: u32 = 1;
const SOURCE: u32 = 2;

struct Swarm {
    net: Network<SwarmNode>,
    source: NodeId,
    peers: Vec<NodeId>,
}

/// A tracker, a source at `kbps` and `n` viewers on 5 ms links.
fn swarm(seed: u64, n: u32, kbps: u64) -> Swarm {
    let profile = LinkProfile::with_latency_ms(5).jitter_ms(1);
    let mut net = Network::new(seed);
    let tracker = Tracker::new(TrackerConfig::new(tag()), SmallRng::seed_from_u64(seed));
    net.add(
        addr(TRACKER),
        profile,
        SwarmNode::Tracker(Box::new(tracker)),
    );
    let mut pc = PeerConfig::new(key().stream_id(), Some(addr(TRACKER)));
    pc.peer_id = 2;
    let sc = SourceConfig {
        synthetic_bps: Some(kbps * 1000),
        ..SourceConfig::default()
    };
    let source = Source::new(key(), sc, pc, net.now(), SmallRng::seed_from_u64(seed + 1));
    let source = net.add(addr(SOURCE), profile, SwarmNode::Source(Box::new(source)));
    let mut peers = Vec::new();
    for i in 0..n {
        let a = 100 + i;
        let mut pc = PeerConfig::new(key().stream_id(), Some(addr(TRACKER)));
        pc.peer_id = u64::from(a);
        let p = Peer::new(
            pc,
            net.now(),
            SmallRng::seed_from_u64(seed * 1000 + u64::from(a)),
        );
        peers.push(net.add(addr(a), profile, SwarmNode::Peer(Box::new(p))));
    }
    Swarm { net, source, peers }
}

/// [0026]-[0028]: once joined, every peer strives for 2 in-club downloads
/// and 2 in-club uploads in each of its two clubs and one download from
/// every other club: sampled every 50 ms over 3 s of a running swarm, a
/// peer is short of a target only briefly (while a dropped connection is
/// being replaced), and all targets are met most of the time.
#[test]
fn joined_peers_open_two_in_club_connections_each_way_and_one_per_foreign_club() {
    let mut s = swarm(26, 24, 400);
    // Longest run of consecutive short samples, and short samples in all,
    // per (peer, club, what).
    let mut runs: BTreeMap<(usize, u16, &str), (u32, u32, u32)> = BTreeMap::new();
    let samples = 60;
    for step in 0..samples {
        s.net.run_until(Time(3_000_000 + u64::from(step) * 50_000));
        for id in &s.peers {
            let p = s.net.node(*id).viewer().expect("viewer");
            assert_eq!(p.clubs().len(), 2, "{id:?} sits in two clubs");
            let conns = p.connections();
            for club in 0..C {
                let down = conns.downloads_of(club);
                let checks: Vec<(&str, bool)> = if p.clubs().contains(&club) {
                    assert!(conns
                        .downloads
                        .iter()
                        .filter(|d| d.club == club)
                        .all(|d| d.in_club));
                    vec![
                        ("in-club downloads", down < 2),
                        ("in-club uploads", conns.in_club_uploads_of(club) < 2),
                    ]
                } else {
                    vec![("foreign download", down != 1)]
                };
                for (what, short) in checks {
                    let e = runs.entry((id.index(), club, what)).or_default();
                    if short {
                        e.0 += 1;
                        e.1 = e.1.max(e.0);
                        e.2 += 1;
                    } else {
                        e.0 = 0;
                    }
                }
            }
        }
    }
    // 1 s: a connect timeout plus a tick or two.
    let long: Vec<_> = runs.iter().filter(|(_, r)| r.1 > 20).collect();
    assert!(long.is_empty(), "short of a target for over 1 s: {long:?}");
    let total: u32 = runs.values().map(|r| r.2).sum();
    let checked = runs.len() as u32 * samples;
    assert!(
        f64::from(total) < 0.02 * f64::from(checked),
        "{total} of {checked} samples short of a target"
    );
}

/// [0029]: in a running swarm the source opens (at least) the 2 uploads
/// it strives for in every club, and downloads nothing.
#[test]
fn source_opens_two_uploads_in_every_club() {
    let mut s = swarm(29, 24, 400);
    s.net.run_until(Time(4_000_000));
    let src = s.net.node(s.source).source().expect("source");
    let conns = src.peer().connections();
    for club in 0..C {
        let n = conns.uploads.iter().filter(|u| u.club == club).count();
        assert!(n >= 2, "club {club}: {n} uploads");
    }
    assert!(conns.downloads.is_empty(), "the source only uploads");
}

/// [0029]: the source accepts two in-club download requests per club and
/// refuses a third as Full; it refuses out-of-club requests.
#[test]
fn source_refuses_a_third_upload_in_a_club() {
    let (mut src, _) = source_with_receivers(C, 12, 100);
    let out = connect_as_downloader(&mut src, T0, addr(3_000), 0, &[0, 1]);
    assert!(out.iter().any(|o| o.to == addr(3_000)
        && matches!(o.msg(), Message::Refuse(r) if r.reason == RefuseReason::Full)));
    let out = connect_as_downloader(&mut src, T0, addr(3_001), 1, &[4, 5]);
    assert!(out.iter().any(|o| o.to == addr(3_001)
        && matches!(o.msg(), Message::Refuse(r) if r.reason == RefuseReason::Full)));
    let conns = src.peer().connections();
    for club in 0..C {
        assert_eq!(conns.in_club_uploads_of(club), 2, "club {club}");
    }
    assert_eq!(conns.uploads.len(), 2 * usize::from(C));
}

/// [0029]: the source's own upload requests count toward its two uploads
/// per club. With a CONNECT(Upload, 0) pending to X, download requests of
/// members of club 0 are accepted only while in-club uploads plus pending
/// stay within 2 (the rest refused as Full); when X then accepts, the
/// source holds at most 2 uploads in club 0, any extra dropped with
/// DROP(Trimmed).
#[test]
fn source_never_holds_more_than_two_uploads_in_a_club() {
    let x = addr(7);
    let requesters = [addr(21), addr(22)];
    let mut pc = PeerConfig::new(key().stream_id(), None);
    pc.club_count = C;
    let mut src = Source::new(
        key(),
        SourceConfig::default(),
        pc,
        T0,
        SmallRng::seed_from_u64(29),
    );
    tell(&mut src, T0, x, &pong(&[0], 0));
    src.handle_timeout(T0);
    let asked = drain(&mut src, T0);
    let connects: Vec<(SocketAddr, Direction, u16)> = asked
        .iter()
        .filter_map(|o| o.connect().map(|c| (o.to, c.direction, c.club)))
        .collect();
    assert_eq!(connects, vec![(x, Direction::Upload, 0)]);
    let pending = 1;
    // R1 and R2, members of club 0, ask for club 0 while X has not answered.
    let mut accepted = 0;
    for r in requesters {
        let out = connect_as_downloader(&mut src, at(T0, 5), r, 0, &[0, 3]);
        let answers: Vec<Message<'_>> = out.iter().filter(|o| o.to == r).map(Out::msg).collect();
        assert_eq!(answers.len(), 1, "{r}: one answer, got {answers:?}");
        match &answers[0] {
            Message::Accept(_) => accepted += 1,
            Message::Refuse(f) => assert_eq!(f.reason, RefuseReason::Full, "{r}"),
            other => panic!("{r}: answered {other:?}"),
        }
    }
    assert!(
        accepted + pending <= 2,
        "{accepted} accepted with {pending} pending"
    );
    assert_eq!(
        src.peer().connections().in_club_uploads_of(0),
        accepted,
        "every accepted request is an upload"
    );
    // X accepts.
    let mut out = Vec::new();
    for c in asked.iter().filter(|o| o.to == x).filter_map(Out::connect) {
        let acc = Message::Accept(Accept {
            request_id: c.request_id,
            direction: c.direction,
            club: c.club,
            block_tag: downloader_tag(x),
        });
        out.extend(deliver(&mut src, at(T0, 10), x, &acc));
    }
    let drops: Vec<(SocketAddr, Drop)> = out
        .iter()
        .filter_map(|o| o.drop_msg().map(|d| (o.to, d)))
        .collect();
    for (to, d) in &drops {
        assert_eq!(
            (d.direction, d.club, d.reason),
            (Direction::Upload, 0, DropReason::Trimmed),
            "DROP to {to}"
        );
    }
    let conns = src.peer().connections();
    let held = conns.uploads.iter().filter(|u| u.club == 0).count();
    assert!(held <= 2, "{held} uploads in club 0");
    assert_eq!(
        held,
        (accepted + 1).min(2),
        "only the extra is dropped ({} DROPs)",
        drops.len()
    );
    assert_eq!(drops.len(), accepted + 1 - held);
    assert!(conns.downloads.is_empty(), "the source only uploads");
}

// ---- [0059]: trimming after an accepted request ---------------------------------

/// [0026], [0059]: a peer accepts an in-club request that takes it above
/// 3 connections of that direction in the club, then drops one of the
/// others with DROP(Trimmed), without banning it; out-of-club uploads do
/// not count.
#[test]
fn overshooting_in_club_request_trims_one_other_connection() {
    let mut p = peer();
    // Uploads: three in-club receivers and one of another club.
    let receivers = [addr(1), addr(2), addr(3)];
    for r in receivers {
        assert_accepted(&connect_as_downloader(&mut p, T0, r, 0, &[0, 4]), r);
    }
    let foreign = addr(9);
    assert_accepted(
        &connect_as_downloader(&mut p, T0, foreign, 0, &[5, 6]),
        foreign,
    );
    assert_eq!(p.connections().in_club_uploads_of(0), 3);
    assert_eq!(
        p.stats().dropped_trimmed,
        0,
        "out-of-club upload trims nothing"
    );
    let newcomer = addr(4);
    let out = connect_as_downloader(&mut p, at(T0, 1), newcomer, 0, &[0, 7]);
    assert_accepted(&out, newcomer);
    let trims: Vec<(SocketAddr, Drop)> = out
        .iter()
        .filter_map(|o| o.drop_msg().map(|d| (o.to, d)))
        .collect();
    assert_eq!(trims.len(), 1, "one connection trimmed");
    let (victim, d) = trims[0];
    assert!(receivers.contains(&victim), "an older one is trimmed");
    assert_eq!(
        (d.direction, d.club, d.reason),
        (Direction::Upload, 0, DropReason::Trimmed)
    );
    let conns = p.connections();
    assert_eq!(conns.in_club_uploads_of(0), 3);
    assert!(conns.uploads.iter().any(|u| u.to == newcomer));
    assert!(conns.uploads.iter().any(|u| u.to == foreign));
    assert!(!conns.uploads.iter().any(|u| u.to == victim && u.club == 0));
    assert!(!p.bans().is_banned(&victim), "a trimmed peer is not banned");

    // Downloads the same way.
    let uploaders = [addr(11), addr(12), addr(13)];
    for u in uploaders {
        assert_accepted(&connect_as_uploader(&mut p, at(T0, 2), u, 1, &[1, 4]), u);
    }
    let out = connect_as_uploader(&mut p, at(T0, 3), addr(14), 1, &[1, 8]);
    assert_accepted(&out, addr(14));
    let trims: Vec<(SocketAddr, Drop)> = out
        .iter()
        .filter_map(|o| o.drop_msg().map(|d| (o.to, d)))
        .collect();
    assert_eq!(trims.len(), 1);
    assert!(uploaders.contains(&trims[0].0));
    assert_eq!(
        (trims[0].1.direction, trims[0].1.club, trims[0].1.reason),
        (Direction::Download, 1, DropReason::Trimmed)
    );
    assert_eq!(p.connections().downloads_of(1), 3);
    assert!(!p.bans().is_banned(&trims[0].0));
    assert_eq!(p.stats().dropped_trimmed, 2);
}

/// The one CONNECT a single tick sends, which must go to `to` for club 0
/// in `direction`.
fn sole_connect_to(out: &[Out], to: SocketAddr, direction: Direction) {
    let connects: Vec<(SocketAddr, Direction, u16)> = out
        .iter()
        .filter_map(|o| o.connect().map(|c| (o.to, c.direction, c.club)))
        .collect();
    assert_eq!(connects, vec![(to, direction, 0)], "one CONNECT, to {to}");
}

/// The DROPs in `out`, with their addressee.
fn all_drops(out: &[Out]) -> Vec<(SocketAddr, Drop)> {
    out.iter()
        .filter_map(|o| o.drop_msg().map(|d| (o.to, d)))
        .collect()
}

/// [0026], [0059]: a peer's own request that is answered after requests
/// of others filled the club overshoots just the same: the ACCEPT that
/// takes the peer above 3 in-club connections of a direction trims one of
/// the others with DROP(Trimmed), never the one just accepted, and bans
/// nobody. Downloads first, then uploads.
#[test]
fn accepted_answer_that_overshoots_trims_one_other_connection() {
    let e = addr(4);
    let others = [addr(1), addr(2), addr(3)];

    // Downloads: the peer asks E to upload club 0 to it.
    let mut p = peer();
    tell(&mut p, T0, e, &pong(&[0], 0));
    p.handle_timeout(T0);
    let asked = drain(&mut p, T0);
    sole_connect_to(&asked, e, Direction::Download);
    // Meanwhile A, B and C offer uploads and are taken: 3 downloads.
    for x in others {
        let out = connect_as_uploader(&mut p, at(T0, 5), x, 0, &[0, 4]);
        assert_accepted(&out, x);
        assert!(all_drops(&out).is_empty(), "trimmed at 3 downloads");
    }
    assert_eq!(p.connections().downloads_of(0), 3);
    // E's ACCEPT makes 4: one of A, B, C goes.
    let out = accept_connects(&mut p, at(T0, 10), e, &asked);
    let drops = all_drops(&out);
    assert_eq!(drops.len(), 1, "one connection trimmed: {drops:?}");
    let (victim, d) = drops[0];
    assert!(others.contains(&victim), "trimmed {victim}, not A/B/C");
    assert_eq!(
        (d.direction, d.club, d.reason),
        (Direction::Download, 0, DropReason::Trimmed)
    );
    let conns = p.connections();
    assert_eq!(conns.downloads_of(0), 3);
    assert!(conns.downloads.iter().all(|d| d.club != 0 || d.in_club));
    assert!(conns.downloads.iter().any(|d| d.from == e && d.club == 0));
    assert!(!conns.downloads.iter().any(|d| d.from == victim));
    assert!(p.bans().is_empty(), "a trimmed peer is not banned");
    assert_eq!(p.stats().dropped_trimmed, 1);

    // Uploads the same way. Two downloads already in club 0 leave only an
    // upload to ask E for.
    let mut p = peer();
    for x in [addr(11), addr(12)] {
        assert_accepted(&connect_as_uploader(&mut p, T0, x, 0, &[0, 4]), x);
    }
    tell(&mut p, T0, e, &pong(&[0], 0));
    p.handle_timeout(T0);
    let asked = drain(&mut p, T0);
    sole_connect_to(&asked, e, Direction::Upload);
    for x in others {
        let out = connect_as_downloader(&mut p, at(T0, 5), x, 0, &[0, 4]);
        assert_accepted(&out, x);
        assert!(all_drops(&out).is_empty(), "trimmed at 3 uploads");
    }
    assert_eq!(p.connections().in_club_uploads_of(0), 3);
    let out = accept_connects(&mut p, at(T0, 10), e, &asked);
    let drops = all_drops(&out);
    assert_eq!(drops.len(), 1, "one connection trimmed: {drops:?}");
    let (victim, d) = drops[0];
    assert!(others.contains(&victim), "trimmed {victim}, not A/B/C");
    assert_eq!(
        (d.direction, d.club, d.reason),
        (Direction::Upload, 0, DropReason::Trimmed)
    );
    let conns = p.connections();
    assert_eq!(conns.in_club_uploads_of(0), 3);
    assert!(conns.uploads.iter().any(|u| u.to == e && u.club == 0));
    assert!(!conns.uploads.iter().any(|u| u.to == victim));
    assert!(p.bans().is_empty(), "a trimmed peer is not banned");
    assert_eq!(p.stats().dropped_trimmed, 1);
}

// ---- [0040]-[0045]: the source ---------------------------------------------------

/// A source of `clubs` clubs with `batch` blocks per batch and blocks of
/// `payload` bytes, whose uploads are two receivers per club (receiver i of
/// club c at `addr(1000 + 10 c + i)`).
fn source_with_receivers(
    clubs: u16,
    batch: usize,
    payload: usize,
) -> (Source, Vec<(SocketAddr, u16)>) {
    let mut pc = PeerConfig::new(key().stream_id(), None);
    pc.club_count = clubs;
    let sc = SourceConfig {
        batch_blocks: batch,
        payload_bytes: payload,
        ..SourceConfig::default()
    };
    let mut src = Source::new(key(), sc, pc, T0, SmallRng::seed_from_u64(40));
    let mut receivers = Vec::new();
    for club in 0..clubs {
        for i in 0..2 {
            let r = addr(1_000 + 10 * u32::from(club) + i);
            let out = connect_as_downloader(&mut src, T0, r, club, &[club, (club + 1) % clubs]);
            assert_accepted(&out, r);
            receivers.push((r, club));
        }
    }
    (src, receivers)
}

fn media(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// [0040], [0043]: the source cuts the feed into equal blocks numbered
/// 0, 1, 2, ..., assigns block n to club n mod C, and sends each block to
/// its two uploads in that club and to nobody else.
#[test]
fn source_assigns_block_n_to_club_n_mod_c_and_numbers_consecutively() {
    let (mut src, receivers) = source_with_receivers(C, 12, 400);
    let feed = media(48 * 400);
    src.push_media(T0, &feed);
    let out = drain(&mut src, T0);
    let mut payloads: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut sent_to: BTreeMap<u64, BTreeSet<SocketAddr>> = BTreeMap::new();
    for o in &out {
        let Some(b) = o.block() else { continue };
        assert_eq!(u64::from(b.club), b.seq % u64::from(C), "block {}", b.seq);
        assert_eq!(b.payload.len(), 400);
        let club = u32::from(b.club);
        assert!(
            o.to == addr(1_000 + 10 * club) || o.to == addr(1_001 + 10 * club),
            "block {} of club {club} sent to {}",
            b.seq,
            o.to
        );
        payloads.insert(b.seq, b.payload.to_vec());
        sent_to.entry(b.seq).or_default().insert(o.to);
    }
    assert_eq!(
        payloads.keys().copied().collect::<Vec<_>>(),
        (0..48).collect::<Vec<_>>()
    );
    assert!(
        sent_to.values().all(|s| s.len() == 2),
        "each block to both uploads"
    );
    let joined: Vec<u8> = payloads.into_values().flatten().collect();
    assert_eq!(joined, feed, "blocks are the feed in order");
    assert_eq!(src.blocks_published(), 48);
    assert_eq!(src.next_seq(), 48);
    assert_eq!(receivers.len(), 24);
}

/// [0041], [0042], [0049]: one signature covers a batch, and the source
/// sends it to a receiver only with that receiver's first block of the
/// batch; later blocks carry only the proof hashes the receiver lacks. The
/// receiver can verify every block in arrival order.
#[test]
fn source_sends_the_signature_once_per_receiver_per_batch() {
    let (mut src, receivers) = source_with_receivers(4, 16, 300);
    src.push_media(T0, &media(64 * 300));
    let out = drain(&mut src, T0);
    for (r, _) in receivers {
        let mine: Vec<&Out> = out.iter().filter(|o| o.to == r && o.is_block()).collect();
        assert_eq!(mine.len(), 16, "{r}: 4 blocks of each of 4 batches");
        let mut seen_batches = BTreeSet::new();
        for o in &mine {
            let b = o.block().expect("block");
            let depth = 4; // 16 leaves
            if seen_batches.insert(b.batch) {
                assert!(
                    b.signature.is_some(),
                    "{r}: first block of batch {} unsigned",
                    b.batch
                );
                assert_eq!(b.proof.len(), depth);
            } else {
                assert!(
                    b.signature.is_none(),
                    "{r}: signature repeated in batch {}",
                    b.batch
                );
                assert!(b.proof.len() < depth, "{r}: full proof repeated");
            }
        }
        assert_eq!(seen_batches.len(), 4);
        let bytes: Vec<Vec<u8>> = mine.iter().map(|o| o.bytes.clone()).collect();
        assert_verifiable_in_order(&bytes);
    }
}

/// [0049]: a forwarding peer keeps the same per-receiver record: the
/// signature goes with the first block of a batch it forwards to a
/// receiver, never again, and the hashes it already gave are left out.
#[test]
fn forwarding_peer_sends_the_signature_once_per_receiver_per_batch() {
    let u = addr(5);
    let mut p = peer();
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 3]), u);
    let mut f = Feed::new(48, 200, T0, 0);
    let mut forwarded = Vec::new();
    for seq in [0u64, 12, 24, 36, 48, 60] {
        let now = at(T0, seq);
        let out = deliver_raw(&mut p, now, stranger(), &f.block(seq, now, 0));
        forwarded.extend(out.into_iter().filter(|o| o.to == u && o.is_block()));
    }
    let seqs: Vec<u64> = forwarded
        .iter()
        .filter_map(|o| o.block().map(|b| b.seq))
        .collect();
    assert_eq!(seqs, vec![0, 12, 24, 36, 48, 60]);
    let signed: Vec<bool> = forwarded
        .iter()
        .filter_map(|o| o.block().map(|b| b.signature.is_some()))
        .collect();
    assert_eq!(signed, vec![true, false, false, false, true, false]);
    let proofs: Vec<usize> = forwarded
        .iter()
        .filter_map(|o| o.block().map(|b| b.proof.len()))
        .collect();
    assert_eq!(proofs[0], 6, "48 leaves: full path of 6");
    assert!(proofs[1..4].iter().all(|&n| n < 6), "{proofs:?}");
    // The forwarder writes its own hop fields ([0051]).
    let b = forwarded[1].block().expect("block");
    assert_eq!(b.sent_at_us, at(T0, 12).0);
    assert_eq!(b.delay_threshold_ms, config(&[0]).delay_threshold_ms);
    let bytes: Vec<Vec<u8>> = forwarded.iter().map(|o| o.bytes.clone()).collect();
    assert_verifiable_in_order(&bytes);
}

/// [0044], [0045]: the bit-rate estimate takes a rise at once and a fall
/// by 0.6 of the difference per interval, so it falls asymptotically.
#[test]
fn bitrate_estimate_rises_at_once_and_falls_by_sixty_percent_of_a_drop() {
    let mut e = BitrateEstimator::new(1_000_000, 0.6, 0.0);
    let mut step = |bytes: usize| {
        e.record(bytes);
        e.end_interval()
    };
    let close = |got: f64, want: f64| (got - want).abs() < 1e-6;
    let got = step(125_000); // 1 Mbit/s measured
    assert!(close(got, 1_000_000.0), "{got}");
    let got = step(25_000); // 200 kbit/s: falls by 0.6 * 800 k
    assert!(close(got, 520_000.0), "{got}");
    let got = step(0); // 0: falls by 0.6 * 520 k
    assert!(close(got, 208_000.0), "{got}");
    let got = step(0);
    assert!(close(got, 83_200.0), "{got}");
    let got = step(250_000); // 2 Mbit/s: rises at once
    assert!(close(got, 2_000_000.0), "{got}");
    assert_eq!(e.estimate_kbps(), 2_000);
}

/// [0044], [0045]: every block the source sends carries its current
/// estimate, computed from the blocks of the interval just ended.
#[test]
fn source_blocks_carry_the_decaying_bitrate_estimate() {
    let (mut src, receivers) = source_with_receivers(C, 12, 500);
    let kbps_of = |out: &[Out]| -> BTreeSet<u32> {
        out.iter()
            .filter_map(|o| o.block().map(|b| b.bitrate_kbps))
            .collect()
    };
    // The receivers keep their downloads alive ([0053]).
    let tick = |src: &mut Source, now: Time| {
        run_keeping(src, now, at(now, 1), 1, &receivers);
    };
    src.push_media(T0, &media(24 * 500)); // 96 kbit in the first second
    drain(&mut src, T0);
    tick(&mut src, at(T0, 500));
    tick(&mut src, at(T0, 1_000));
    assert!((src.bitrate_estimate() - 96_000.0).abs() < 1e-6);
    src.push_media(at(T0, 1_500), &media(12 * 500)); // 48 kbit in the second
    let out = drain(&mut src, at(T0, 1_500));
    assert_eq!(kbps_of(&out), BTreeSet::from([96]));
    tick(&mut src, at(T0, 1_500));
    tick(&mut src, at(T0, 2_000));
    // 96 - 0.6 * (96 - 48) = 67.2
    assert!((src.bitrate_estimate() - 67_200.0).abs() < 1e-6);
    src.push_media(at(T0, 2_500), &media(12 * 500));
    let out = drain(&mut src, at(T0, 2_500));
    assert_eq!(kbps_of(&out), BTreeSet::from([67]));
}

// ---- [0046]-[0050]: pushing blocks inside and across clubs -----------------------

/// [0046]: a peer that verifies a fresh block of its club sends HAVE to
/// the in-club peers it downloads that club from, except the sender, and
/// to nobody else; a duplicate or a foreign block is not announced.
#[test]
fn fresh_in_club_block_is_announced_with_have_to_other_download_peers() {
    let (a, b, u) = (addr(1), addr(2), addr(3));
    let mut p = peer();
    assert_accepted(&connect_as_uploader(&mut p, T0, a, 0, &[0, 4]), a);
    assert_accepted(&connect_as_uploader(&mut p, T0, b, 0, &[0, 5]), b);
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 6]), u);
    let mut f = feed();
    let now = at(T0, 10);
    let out = deliver_raw(&mut p, now, a, &f.block(12, now, 0));
    let haves: Vec<(SocketAddr, Have)> = out
        .iter()
        .filter_map(|o| o.have().map(|h| (o.to, h)))
        .collect();
    let tag = p.tag_of(b, 0, Direction::Download);
    assert_eq!(
        haves,
        vec![(
            b,
            Have {
                club: 0,
                seq: 12,
                tag
            }
        )]
    );
    // The same block again, from B: no second HAVE.
    let out = deliver_raw(&mut p, now, b, &f.block(12, now, 0));
    assert!(!out.iter().any(|o| o.have().is_some()));
    // A block of club 1 (the peer's other club, no downloads there): none.
    let out = deliver_raw(&mut p, now, a, &f.block(13, now, 0));
    assert!(!out.iter().any(|o| o.have().is_some()));
    // From a peer that is no download: both download peers hear of it.
    let out = deliver_raw(&mut p, now, stranger(), &f.block(24, now, 0));
    let to: BTreeSet<SocketAddr> = out
        .iter()
        .filter(|o| {
            let tag = p.tag_of(o.to, 0, Direction::Download);
            o.have()
                == Some(Have {
                    club: 0,
                    seq: 24,
                    tag,
                })
        })
        .map(|o| o.to)
        .collect();
    assert_eq!(to, BTreeSet::from([a, b]));
}

/// 5.12: a DROP, HAVE or KEEPALIVE under a downloader's address without
/// the connection's tag (an off-path spoofer cannot know it) changes
/// nothing and is counted; the same messages with the tag act.
#[test]
fn control_messages_without_the_connection_tag_change_nothing() {
    let u = addr(1);
    let mut p = peer();
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 4]), u);
    let right = p.tag_of(u, 0, Direction::Upload);
    let wrong = right ^ 0x8000;
    let drop = |tag| {
        Message::Drop(Drop {
            direction: Direction::Download,
            club: 0,
            reason: DropReason::Leaving,
            tag,
        })
    };
    let have = |seq, tag| Message::Have(Have { club: 0, seq, tag });
    let mut f = feed();
    let now = at(T0, 10);
    deliver(&mut p, now, u, &drop(wrong));
    assert_eq!(p.connections().uploads.len(), 1, "ended by a spoofed DROP");
    deliver(&mut p, now, u, &have(0, wrong));
    let out = deliver_raw(&mut p, now, stranger(), &f.block(0, now, 0));
    assert_eq!(
        block_seqs_to(&out, u),
        vec![0],
        "held back by a spoofed HAVE"
    );
    let lie = KeepAlive {
        club: 0,
        received: 0,
        queue_delay_ms: 60_000,
        tag: wrong,
    };
    let out = deliver(&mut p, now, u, &Message::KeepAlive(lie));
    assert!(drops_to(&out, u).is_empty());
    assert_eq!(p.stats().control_wrong_tag, 3);
    // With the tag: the HAVE holds the block back, the DROP ends the upload.
    deliver(&mut p, now, u, &have(12, right));
    let out = deliver_raw(&mut p, now, stranger(), &f.block(12, now, 0));
    assert!(block_seqs_to(&out, u).is_empty(), "sent despite HAVE");
    deliver(&mut p, now, u, &drop(right));
    assert!(p.connections().uploads.is_empty());
    assert_eq!(p.stats().control_wrong_tag, 3);
}

/// [0047]: the peer forwards a block of its club to each in-club upload,
/// except one whose receiver said HAVE for it.
#[test]
fn upload_peer_that_said_have_is_not_sent_the_block() {
    let (u1, u2) = (addr(1), addr(2));
    let mut p = peer();
    assert_accepted(&connect_as_downloader(&mut p, T0, u1, 0, &[0, 4]), u1);
    assert_accepted(&connect_as_downloader(&mut p, T0, u2, 0, &[0, 5]), u2);
    let mut f = feed();
    let now = at(T0, 10);
    let out = deliver_raw(&mut p, now, stranger(), &f.block(0, now, 0));
    assert_eq!(block_seqs_to(&out, u1), vec![0]);
    assert_eq!(block_seqs_to(&out, u2), vec![0]);
    let tag = p.tag_of(u1, 0, Direction::Upload);
    deliver(
        &mut p,
        now,
        u1,
        &Message::Have(Have {
            club: 0,
            seq: 12,
            tag,
        }),
    );
    let out = deliver_raw(&mut p, now, stranger(), &f.block(12, now, 0));
    assert!(block_seqs_to(&out, u1).is_empty(), "sent despite HAVE");
    assert_eq!(block_seqs_to(&out, u2), vec![12]);
    let out = deliver_raw(&mut p, now, stranger(), &f.block(24, now, 0));
    assert_eq!(block_seqs_to(&out, u1), vec![24]);
    assert_eq!(block_seqs_to(&out, u2), vec![24]);
    // The sender itself is never sent its own block back.
    let out = deliver_raw(&mut p, now, u1, &f.block(36, now, 0));
    assert!(block_seqs_to(&out, u1).is_empty());
    assert_eq!(block_seqs_to(&out, u2), vec![36]);
}

/// Forged floods are cheap to refuse: a block from an address with no
/// connection that would cost a signature check (a batch not verified
/// yet) takes a token from a small budget strangers share (10 a second),
/// a forger is banned and its next blocks are dropped unjudged, and a
/// connected uploader's genuine blocks still go through meanwhile.
#[test]
fn forged_blocks_from_strangers_get_a_bounded_number_of_signature_checks() {
    let mut p = peer();
    let up = addr(5);
    assert_accepted(&connect_as_uploader(&mut p, T0, up, 0, &[0, 5]), up);
    // One block per batch: each needs a signature check.
    let mut f = Feed::new(1, 200, T0, 1_000);
    let forged = |f: &mut Feed, seq: u64| {
        let mut b = f.block(seq, T0, 0);
        let last = b.len() - 1;
        b[last] ^= 1;
        b
    };
    for i in 0..100u64 {
        deliver_raw(&mut p, T0, addr(1_000 + i as u32), &forged(&mut f, i));
    }
    let s = p.stats();
    assert_eq!(s.forged_rejected, 10, "{s:?}");
    assert_eq!(s.signature_checks_refused, 90, "{s:?}");
    // A forger is banned: what it sends next is dropped unjudged.
    deliver_raw(&mut p, T0, addr(1_000), &forged(&mut f, 200));
    assert_eq!(p.stats().blocks_from_banned, 1);
    assert_eq!(p.stats().forged_rejected, 10);
    // The uploader's genuine blocks are checked and kept all along.
    for seq in 300..320u64 {
        deliver_raw(&mut p, T0, up, &f.block(seq, T0, 0));
    }
    assert_eq!(p.stats().unique_blocks, 20);
    // A second later strangers have ten checks again.
    let later = at(T0, 1_000);
    for i in 0..20u64 {
        deliver_raw(
            &mut p,
            later,
            addr(2_000 + i as u32),
            &forged(&mut f, 400 + i),
        );
    }
    assert_eq!(p.stats().forged_rejected, 20);
}

/// [0056] catch-up, bounded: a BITFIELD on an upload resends what the
/// receiver misses once a second at most; more BITFIELDs meanwhile only
/// tell what it holds.
#[test]
fn a_bitfield_catch_up_is_resent_once_a_second_per_connection() {
    let d = addr(7);
    let mut p = peer();
    let mut f = feed();
    for seq in (0..240u64).step_by(12) {
        deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, 0));
    }
    assert_accepted(&connect_as_downloader(&mut p, T0, d, 0, &[0, 4]), d);
    let empty = Message::Bitfield(Bitfield {
        club: 0,
        start_seq: 0,
        bits: 0,
        first: false,
        tag: p.tag_of(d, 0, Direction::Upload),
        runs: &[],
    });
    let first = run_deliver(&mut p, at(T0, 10), d, &empty);
    assert!(first >= 10, "catch-up resent {first}");
    for k in 0..5 {
        let again = run_deliver(&mut p, at(T0, 20 + k * 100), d, &empty);
        assert_eq!(again, 0, "resent again within a second");
    }
    assert_eq!(p.stats().catch_ups_refused, 5);
    let later = run_deliver(&mut p, at(T0, 1_200), d, &empty);
    assert!(later >= 10, "nothing resent a second later");
}

/// Delivers `msg` and counts the BLOCKs the peer then sends to `from`.
fn run_deliver(p: &mut Peer, now: Time, from: SocketAddr, msg: &Message<'_>) -> usize {
    let mut out = deliver(p, now, from, msg);
    p.handle_timeout(now);
    out.extend(drain(p, now));
    block_seqs_to(&out, from).len()
}

/// A peer list that leads nowhere (its addresses never answer: gone, or
/// planted by a tracker flood) is asked for again after 5 s without a
/// download, and not more often.
#[test]
fn a_useless_peer_list_is_asked_for_again() {
    let tracker = addr(900);
    let mut cfg = config(&[0, 1]);
    cfg.tracker = Some(tracker);
    let mut p = peer_with(cfg);
    let planted: Vec<SocketAddr> = (0..20).map(|i| addr(5_000 + i)).collect();
    let list = Message::PeerList(clubcast::wire::PeerList {
        stream: tag(),
        club_count: C,
        recommended: ClubList::Items(&[0, 1]),
        heartbeat_ms: 5_000,
        peers: AddrList::Items(&planted),
        observed: None,
    });
    deliver(&mut p, T0, tracker, &list);
    let joins = |out: &[Out]| {
        out.iter()
            .filter(|o| o.to == tracker && matches!(o.msg(), Message::Join(_)))
            .map(|o| o.at)
            .collect::<Vec<Time>>()
    };
    let out = run(&mut p, T0, at(T0, 4_900), 20);
    assert!(joins(&out).is_empty(), "asked again too soon");
    let out = run(&mut p, at(T0, 4_900), at(T0, 9_900), 20);
    let asked = joins(&out);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0] >= at(T0, 5_000), "{asked:?}");
    assert_eq!(p.stats().lists_asked_again, 1);
    // Still nothing: once more 5 s later.
    let out = run(&mut p, at(T0, 9_900), at(T0, 10_200), 20);
    assert_eq!(joins(&out).len(), 1);
}

/// [0047] on a real network: a fresh in-club push waits half a round trip
/// (at least 1 ms) for a HAVE from its receiver, and goes only without
/// one; the peer's timer wakes it for the push.
#[test]
fn in_club_push_waits_half_a_round_trip_for_have() {
    let (u1, u2) = (addr(1), addr(2));
    let mut cfg = config(&[0, 1]);
    cfg.push_hold_max_ms = 40;
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_downloader(&mut p, T0, u1, 0, &[0, 4]), u1);
    assert_accepted(&connect_as_downloader(&mut p, T0, u2, 0, &[0, 5]), u2);
    let mut f = feed();
    let now = at(T0, 10);
    // Housekeeping ran just now: the next tick is 20 ms away.
    p.handle_timeout(now);
    drain(&mut p, now);
    let out = deliver_raw(&mut p, now, stranger(), &f.block(0, now, 0));
    assert!(block_seqs_to(&out, u1).is_empty(), "pushed at once");
    assert!(block_seqs_to(&out, u2).is_empty(), "pushed at once");
    // No round trip is known: the hold is the least, 1 ms.
    let due = Time(now.0 + 1_000);
    assert_eq!(p.poll_timeout(), Some(due));
    // U1 got the block elsewhere and says so within the hold.
    let tag = p.tag_of(u1, 0, Direction::Upload);
    deliver(
        &mut p,
        Time(now.0 + 500),
        u1,
        &Message::Have(Have {
            club: 0,
            seq: 0,
            tag,
        }),
    );
    p.handle_timeout(due);
    let out = drain(&mut p, due);
    assert!(block_seqs_to(&out, u1).is_empty(), "sent despite HAVE");
    assert_eq!(block_seqs_to(&out, u2), vec![0]);
    assert_eq!(p.stats().have_suppressed, 1);
}

/// [0048]: in-club sends go first, but after 9 in a row one out-of-club
/// send goes, so out-of-club uploads never starve.
#[test]
fn scheduler_sends_one_out_of_club_after_nine_in_club() {
    let mut s: SendScheduler<u32> = SendScheduler::new(100, 9);
    for i in 0..20 {
        assert!(s.push(Lane::InClub, i));
    }
    for i in 100..105 {
        assert!(s.push(Lane::OutOfClub, i));
    }
    let mut order = Vec::new();
    while let Some((lane, item)) = s.pop() {
        assert_eq!(lane == Lane::OutOfClub, item >= 100);
        order.push(item);
    }
    let mut want: Vec<u32> = (0..9).collect();
    want.push(100);
    want.extend(9..18);
    want.push(101);
    want.extend([18, 19, 102, 103, 104]);
    assert_eq!(order, want);
    assert!(s.is_empty());
}

/// [0050]: a block of a club the peer is not in is played but never
/// forwarded, and not announced.
#[test]
fn foreign_club_block_is_never_forwarded() {
    let (u, o, f) = (addr(1), addr(2), addr(3));
    let mut p = peer();
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 4]), u);
    assert_accepted(&connect_as_downloader(&mut p, T0, o, 0, &[5, 6]), o);
    let now = open_foreign_download(&mut p, T0, f, 5);
    let mut fd = feed();
    let out = deliver_raw(&mut p, now, f, &fd.block(5, now, 0));
    assert!(p.store().has(5), "foreign block kept for playback");
    assert_eq!(p.stats().unique_blocks, 1);
    assert!(!out.iter().any(|o| o.is_block()), "foreign block forwarded");
    assert!(
        !out.iter().any(|o| o.have().is_some()),
        "foreign block announced"
    );
    assert_eq!(p.stats().blocks_out, 0);
    // A block of club 0 reaches both uploads, so they work.
    let out = deliver_raw(&mut p, now, stranger(), &fd.block(0, now, 0));
    assert_eq!(block_seqs_to(&out, u), vec![0]);
    assert_eq!(block_seqs_to(&out, o), vec![0]);
}

// ---- [0051]-[0053]: congestion control --------------------------------------------

/// [0051], [0054], judged against the connection's own floor: a download
/// whose one-way delay stays above the lowest it has had by more than the
/// threshold the blocks carry, for a whole second, is dropped with
/// DROP(Delay) and its sender banned. The clocks' offset cancels out: an
/// uploader whose clock is a minute off is never dropped for it, and one
/// block that comes late drops nothing.
#[test]
fn lasting_delay_above_the_floor_drops_the_download_and_bans_the_sender() {
    let (a, b) = (addr(1), addr(2));
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_uploader(&mut p, T0, a, 0, &[0, 4]), a);
    assert_accepted(&connect_as_uploader(&mut p, T0, b, 0, &[0, 5]), b);
    let mut f = feed();
    let hop = |sent_at_us: u64| HopFields {
        club: 0,
        sent_at_us,
        delay_threshold_ms: 500,
        bitrate_kbps: 0,
    };
    let mut out = Vec::new();
    // Two seconds of blocks every 50 ms: A's clock is a minute ahead and
    // B's a minute behind, each 20 ms away; one of A's blocks is 900 ms late.
    let mut seq = 0;
    let mut now = T0;
    for i in 0..40u64 {
        let late = if i == 20 { ms(900) } else { 0 };
        let sent_a = now.0 + ms(60_000) - ms(20) - late;
        out.extend(deliver_raw(&mut p, now, a, &f.block_with(seq, hop(sent_a))));
        let sent_b = now.0 - ms(60_000) - ms(20);
        out.extend(deliver_raw(
            &mut p,
            now,
            b,
            &f.block_with(seq + 12, hop(sent_b)),
        ));
        seq += 24;
        now = at(now, 50);
    }
    assert!(
        drops_to(&out, a).is_empty(),
        "A dropped for its clock or one late block"
    );
    assert!(drops_to(&out, b).is_empty(), "B dropped for its clock");
    // From now on A's blocks take 600 ms more: dropped once that has
    // lasted a second, not before.
    let slow_from = now;
    let mut dropped = None;
    for _ in 0..40u64 {
        let sent_a = now.0 + ms(60_000) - ms(620);
        let o = deliver_raw(&mut p, now, a, &f.block_with(seq, hop(sent_a)));
        if let Some((t, d)) = drops_to(&o, a).first() {
            dropped = Some((*t, *d));
            break;
        }
        seq += 12;
        now = at(now, 50);
    }
    let (when, d) = dropped.expect("A dropped for a lasting delay");
    assert_eq!(
        (d.direction, d.club, d.reason),
        (Direction::Download, 0, DropReason::Delay)
    );
    assert!(
        when.0 >= slow_from.0 + ms(1_000),
        "dropped before the delay lasted a second"
    );
    assert!(when.0 <= slow_from.0 + ms(1_300), "dropped late");
    assert!(!p.connections().downloads.iter().any(|d| d.from == a));
    assert!(p.bans().is_banned(&a));
    assert!(!p.bans().is_banned(&b));
    assert_eq!(p.stats().dropped_delay, 1);
}

/// Club-5 blocks every `CLUB_INTERVAL_MS` at 160 kbit/s of 200-byte blocks
/// (10 ms per block, 12 clubs).
const CLUB_INTERVAL_MS: u64 = 120;
const KBPS: u32 = 160;

/// [0052] on rates: a block missing from a foreign download is asked for
/// again (REQUEST) from the uploader once the path's reorder allowance has
/// passed, and a single loss never drops the connection; losing a quarter
/// of the club's blocks over the window does, with DROP(SequenceGap) and a
/// ban.
#[test]
fn a_lost_block_is_repaired_and_only_a_high_loss_rate_drops_the_download() {
    let f = addr(3);
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let mut p = peer_with(cfg);
    let start = open_foreign_download(&mut p, T0, f, 5);
    let mut fd = feed();
    let mut out = Vec::new();
    let mut now = start;
    // Blocks 5, 17, 41 (29 lost), then on.
    let mut seq = 5;
    let mut asked_29 = None;
    for _ in 0..30 {
        if seq != 29 {
            out.extend(deliver_raw(&mut p, now, f, &fd.block(seq, now, KBPS)));
        }
        for o in run(&mut p, now, at(now, CLUB_INTERVAL_MS), 10) {
            if o.to == f && requested(&o).contains(&29) && asked_29.is_none() {
                asked_29 = Some(o.at);
            }
            out.push(o);
        }
        seq += 12;
        now = at(now, CLUB_INTERVAL_MS);
    }
    let revealed = at(start, 3 * CLUB_INTERVAL_MS);
    let asked = asked_29.expect("block 29 asked for again");
    assert!(
        asked >= revealed && asked <= at(revealed, 100),
        "asked at {asked:?}"
    );
    assert!(drops_to(&out, f).is_empty(), "dropped for one loss");
    // Now a third of the blocks go missing.
    let mut dropped = None;
    for i in 0..80 {
        if i % 3 != 0 {
            out.extend(deliver_raw(&mut p, now, f, &fd.block(seq, now, KBPS)));
        }
        let o = run(&mut p, now, at(now, CLUB_INTERVAL_MS), 10);
        if let Some(d) = drops_to(&o, f).first() {
            dropped = Some(d.1);
            break;
        }
        seq += 12;
        now = at(now, CLUB_INTERVAL_MS);
    }
    let d = dropped.expect("dropped for a high loss rate");
    assert_eq!(
        (d.direction, d.club, d.reason),
        (Direction::Download, 5, DropReason::SequenceGap)
    );
    assert!(p.bans().is_banned(&f));
    assert_eq!(p.stats().dropped_gap, 1);
}

/// The sequence numbers a REQUEST in `o` asks for.
fn requested(o: &Out) -> Vec<u64> {
    match o.msg() {
        Message::Request(r) => r.seqs.iter().collect(),
        _ => Vec::new(),
    }
}

/// [0052]: a block that is merely reordered (it follows within the reorder
/// window) does not drop the download.
#[test]
fn reordered_block_on_foreign_download_is_tolerated() {
    let f = addr(3);
    let mut p = peer();
    let start = open_foreign_download(&mut p, T0, f, 5);
    let reorder = config(&[0]).reorder_ms;
    let mut fd = feed();
    let mut out = Vec::new();
    let mut now = start;
    // 5, 17, 41, 29 (late by less than the window), then in order.
    let order = [5u64, 17, 41, 29, 53, 65, 77, 89, 101, 113, 125, 137];
    for (i, seq) in order.into_iter().enumerate() {
        let t = if seq == 29 { at(now, reorder / 2) } else { now };
        out.extend(deliver_raw(&mut p, t, f, &fd.block(seq, t, KBPS)));
        if seq != 29 {
            out.extend(run(&mut p, now, at(now, CLUB_INTERVAL_MS), 20));
            now = at(now, CLUB_INTERVAL_MS);
        }
        assert!(
            drops_to(&out, f).is_empty(),
            "dropped after block #{i} ({seq})"
        );
    }
    assert!(p
        .connections()
        .downloads
        .iter()
        .any(|d| d.from == f && d.club == 5));
    assert_eq!(p.stats().dropped_gap, 0);
    assert_eq!(p.stats().unique_blocks, order.len() as u64);
}

/// Runs the peer's timer every 10 ms from `start` (inclusive) to `end`
/// (exclusive), delivering from `f` each block of `schedule`, given as
/// (ms after `start`, sequence number), just before the tick of its time.
fn feed_foreign(
    p: &mut Peer,
    f: SocketAddr,
    fd: &mut Feed,
    start: Time,
    end: Time,
    schedule: &[(u64, u64)],
) -> Vec<Out> {
    let mut out = Vec::new();
    let mut now = start;
    while now < end {
        for (off, seq) in schedule {
            if at(start, *off) == now {
                out.extend(deliver_raw(p, now, f, &fd.block(*seq, now, KBPS)));
            }
        }
        p.handle_timeout(now);
        out.extend(drain(p, now));
        now = now.plus_ms(10);
    }
    out
}

/// [0052]: a jump over several blocks of a foreign club leaves several
/// holes, and each is watched and asked for. Blocks 5, then 41 (17 and 29
/// missing): after the repair wait both go in a REQUEST to the uploader;
/// 17 then arrives (merely late) and 29 is asked for again elsewhere,
/// while nothing is dropped. A block that arrives before the wait is not
/// asked for at all.
#[test]
fn every_missing_block_on_a_foreign_download_is_asked_for() {
    let f = addr(3);
    let cfg = config(&[0, 1]);
    let hole = 3 * CLUB_INTERVAL_MS;
    let flowing = [
        (0, 5),
        (hole, 41),
        (hole + CLUB_INTERVAL_MS, 53),
        (hole + 2 * CLUB_INTERVAL_MS, 65),
        (hole + 3 * CLUB_INTERVAL_MS, 77),
        (hole + 4 * CLUB_INTERVAL_MS, 89),
        (hole + 5 * CLUB_INTERVAL_MS, 101),
    ];
    let end_ms = hole + 6 * CLUB_INTERVAL_MS;

    // 17 comes 150 ms late, 29 never.
    let mut p = peer_with(cfg.clone());
    let start = open_foreign_download(&mut p, T0, f, 5);
    let mut fd = feed();
    let mut schedule = flowing.to_vec();
    schedule.push((hole + 150, 17));
    let out = feed_foreign(&mut p, f, &mut fd, start, at(start, end_ms), &schedule);
    assert!(p.store().has(17), "the late block is taken");
    let seen = at(start, hole);
    let first: Vec<&Out> = out.iter().filter(|o| !requested(o).is_empty()).collect();
    assert!(!first.is_empty(), "nothing asked for");
    assert_eq!(first[0].to, f, "first asked of the club's uploader");
    // (Blocks of clubs with no download yet are wanted too, for the start.)
    let of_club_5 = |o: &Out| -> Vec<u64> {
        requested(o)
            .into_iter()
            .filter(|s| s % u64::from(C) == 5)
            .collect()
    };
    let first: Vec<&Out> = first
        .into_iter()
        .filter(|o| !of_club_5(o).is_empty())
        .collect();
    assert_eq!(of_club_5(first[0]), vec![17, 29]);
    assert!(
        first[0].at > seen && first[0].at <= at(seen, 60),
        "{:?}",
        first[0].at
    );
    assert!(
        first.iter().skip(1).all(|o| !of_club_5(o).contains(&17)),
        "17 asked again after it came"
    );
    assert!(drops_to(&out, f).is_empty(), "{:?}", drops_to(&out, f));
    assert_eq!(p.stats().dropped_gap, 0);
    assert!(!p.bans().is_banned(&f));

    // Both follow within 20 ms: nothing is asked.
    let mut p = peer_with(cfg);
    let start = open_foreign_download(&mut p, T0, f, 5);
    let mut fd = feed();
    let mut schedule = flowing.to_vec();
    schedule.extend([(hole + 10, 17), (hole + 20, 29)]);
    let out = feed_foreign(&mut p, f, &mut fd, start, at(start, end_ms), &schedule);
    assert!(
        out.iter()
            .all(|o| !requested(o).iter().any(|s| s % u64::from(C) == 5)),
        "asked for a reordered block"
    );
    assert!(p.store().has(17) && p.store().has(29));
    assert_eq!(p.stats().unique_blocks, schedule.len() as u64);
}

/// Relay with an external data plane: the AF_XDP workers copy fresh
/// blocks to its IPv4 uploads, so the state machine pushes them only to
/// its IPv6 uploads (which the workers cannot reach).
#[test]
fn relay_with_a_data_plane_pushes_only_to_ipv6_uploads() {
    let mut cfg = config(&[]);
    cfg.mode = clubcast::roles::Mode::Relay;
    cfg.clubs = Some(vec![5]);
    cfg.external_fanout = true;
    let mut p = peer_with(cfg);
    let v4 = addr(20);
    let v6 = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 4000);
    for who in [v4, v6] {
        let out = connect_as_downloader(&mut p, T0, who, 5, &[5]);
        assert_accepted(&out, who);
    }
    drain(&mut p, T0);
    let mut fd = feed();
    let now = at(T0, 10);
    let mut out = deliver_raw(&mut p, now, stranger(), &fd.block(5, now, 2_000));
    out.extend(run(&mut p, now, at(now, 100), 10));
    assert_eq!(
        block_seqs_to(&out, v6),
        vec![5],
        "pushed to the IPv6 upload"
    );
    assert!(
        block_seqs_to(&out, v4).is_empty(),
        "the data plane serves IPv4"
    );
    assert_eq!(p.stats().unique_blocks, 1);
}

/// [0053]: when the whole stream pauses (the feed stopped; no fresh block
/// from anywhere), foreign downloads are not blamed: none is dropped for
/// silence, and blocks flow on them again when the feed comes back.
#[test]
fn a_feed_pause_drops_no_download() {
    let f = addr(3);
    let mut p = peer_with(config(&[0, 1]));
    let start = open_foreign_download(&mut p, T0, f, 5);
    let mut fd = feed();
    let mut now = start;
    for i in 0..12u64 {
        deliver_raw(&mut p, now, f, &fd.block(5 + 12 * i, now, KBPS));
        run(&mut p, now, at(now, CLUB_INTERVAL_MS), 10);
        now = at(now, CLUB_INTERVAL_MS);
    }
    let out = run(&mut p, now, at(now, 10_000), 10);
    assert!(drops_to(&out, f).is_empty(), "dropped during a feed pause");
    assert_eq!(p.stats().dropped_silence, 0);
    assert!(p
        .connections()
        .downloads
        .iter()
        .any(|d| d.from == f && d.club == 5));
}

/// [0053]: a download sends KEEPALIVE to its uploader every keepalive
/// period; a foreign download whose blocks stop is dropped with
/// DROP(Silence), not before `silence_ms`, and the uploader is banned.
#[test]
fn silent_foreign_download_is_dropped_and_downloads_send_keepalives() {
    let f = addr(3);
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let (keepalive, silence) = (cfg.keepalive_ms, cfg.silence_ms);
    let mut p = peer_with(cfg);
    let start = open_foreign_download(&mut p, T0, f, 5);
    let mut fd = feed();
    let mut out = Vec::new();
    let mut now = start;
    for i in 0..12u64 {
        out.extend(deliver_raw(
            &mut p,
            now,
            f,
            &fd.block(5 + 12 * i, now, KBPS),
        ));
        out.extend(run(&mut p, now, at(now, CLUB_INTERVAL_MS), 10));
        now = at(now, CLUB_INTERVAL_MS);
    }
    assert!(drops_to(&out, f).is_empty(), "dropped while blocks flow");
    let keepalives: Vec<Time> = out
        .iter()
        .filter(|o| o.to == f && matches!(o.msg(), Message::KeepAlive(KeepAlive { club: 5, .. })))
        .map(|o| o.at)
        .collect();
    assert!(keepalives.len() >= 2, "{} KEEPALIVEs", keepalives.len());
    for w in keepalives.windows(2) {
        let gap = (w[1].0 - w[0].0) / 1000;
        assert!(
            (keepalive..=keepalive + 20).contains(&gap),
            "KEEPALIVEs {gap} ms apart"
        );
    }
    let last_block = Time(now.0 - ms(CLUB_INTERVAL_MS));
    // The stream goes on through another club's download: only f is quiet.
    let g = addr(4);
    let mut out = Vec::new();
    now = open_foreign_download(&mut p, now, g, 6);
    let end = at(last_block, 5_000);
    let mut k = 0;
    while now < end {
        out.extend(deliver_raw(
            &mut p,
            now,
            g,
            &fd.block(6 + 12 * (20 + k), now, KBPS),
        ));
        out.extend(run(&mut p, now, at(now, CLUB_INTERVAL_MS), 10));
        now = at(now, CLUB_INTERVAL_MS);
        k += 1;
    }
    let drops = drops_to(&out, f);
    assert_eq!(drops.len(), 1, "silent download dropped within 5 s");
    let (when, d) = drops[0];
    assert_eq!(
        (d.direction, d.club, d.reason),
        (Direction::Download, 5, DropReason::Silence)
    );
    assert!(
        when.0 >= last_block.0 + ms(silence),
        "dropped before silence_ms"
    );
    assert!(p.bans().is_banned(&f));
    assert_eq!(p.stats().dropped_silence, 1);
}

/// [0053], [0054]: an upload is kept while its receiver sends KEEPALIVE
/// and dropped with DROP(KeepAliveTimeout), banning the receiver, once
/// none has come for the timeout.
#[test]
fn upload_without_keepalive_is_dropped() {
    let u = addr(3);
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let timeout = keepalive_timeout_unknown_rtt(&cfg);
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 4]), u);
    let mut out = Vec::new();
    let mut now = T0;
    let last_keepalive = at(T0, 2 * timeout);
    while now < last_keepalive {
        out.extend(run(&mut p, now, at(now, timeout / 2), 20));
        now = at(now, timeout / 2);
        let tag = p.tag_of(u, 0, Direction::Upload);
        out.extend(deliver(
            &mut p,
            now,
            u,
            &Message::KeepAlive(KeepAlive::bare(0, tag)),
        ));
    }
    assert!(drops_to(&out, u).is_empty(), "dropped despite KEEPALIVEs");
    assert_eq!(p.connections().uploads.len(), 1);
    let out = run(
        &mut p,
        at(last_keepalive, timeout / 2),
        at(last_keepalive, timeout + 100),
        20,
    );
    let drops = drops_to(&out, u);
    assert_eq!(drops.len(), 1);
    let (when, d) = drops[0];
    assert_eq!(
        (d.direction, d.club, d.reason),
        (Direction::Upload, 0, DropReason::KeepAliveTimeout)
    );
    assert!(when.0 >= last_keepalive.0 + ms(timeout));
    assert!(p.connections().uploads.is_empty());
    assert!(p.bans().is_banned(&u));
    assert_eq!(p.stats().dropped_keepalive, 1);
}

// ---- [0056]-[0058]: replacing dropped connections --------------------------------

/// [0056]: when a foreign download is dropped the peer replaces it with a
/// download from another member of that club, and tells the new uploader
/// with a BITFIELD which recent blocks of the club it already holds.
#[test]
fn dropped_foreign_download_is_replaced_and_told_the_held_blocks() {
    let (f1, f2) = (addr(3), addr(4));
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let mut p = peer_with(cfg);
    let start = open_foreign_download(&mut p, T0, f1, 5);
    let mut fd = feed();
    // F1 carries 5 and 29, then only every other block: the loss rate
    // drops it ([0052]).
    let mut out = Vec::new();
    let mut t = start;
    let mut seq = 5;
    while drops_to(&out, f1).is_empty() && t < at(start, 20_000) {
        if seq != 17 && (seq < 29 || seq % 24 == 5) {
            out.extend(deliver_raw(&mut p, t, f1, &fd.block(seq, t, KBPS)));
        }
        // F2 stays fresh in the book.
        tell(&mut p, t, f2, &pong(&[5], 0));
        out.extend(run(&mut p, t, at(t, CLUB_INTERVAL_MS), 20));
        seq += 12;
        t = at(t, CLUB_INTERVAL_MS);
    }
    // Less than a connect timeout: F2 has not yet had the time to answer,
    // so no fallback to the banned F1 is due.
    out.extend(run(&mut p, t, at(t, 500), 20));
    assert_eq!(drops_to(&out, f1).len(), 1, "F1 dropped");
    let dropped_at = drops_to(&out, f1)[0].0;
    let connects: Vec<(Time, u32)> = out
        .iter()
        .filter(|o| o.to == f2)
        .filter_map(|o| {
            o.connect()
                .filter(|c| c.club == 5 && c.direction == Direction::Download)
                .map(|c| (o.at, c.request_id))
        })
        .collect();
    assert!(!connects.is_empty(), "no replacement CONNECT to F2");
    assert!(
        connects[0].0 >= dropped_at,
        "F2 asked before F1 was dropped"
    );
    assert!(!out.iter().any(|o| o.to == f1 && o.connect().is_some()));
    let acc = Message::Accept(Accept {
        request_id: connects[0].1,
        direction: Direction::Download,
        club: 5,
        block_tag: downloader_tag(f2),
    });
    let now = at(t, 500);
    let out = deliver(&mut p, now, f2, &acc);
    assert!(p
        .connections()
        .downloads
        .iter()
        .any(|d| d.from == f2 && d.club == 5));
    let bfs: Vec<&Out> = out
        .iter()
        .filter(|o| o.to == f2 && matches!(o.msg(), Message::Bitfield(_)))
        .collect();
    assert_eq!(bfs.len(), 1, "one BITFIELD to the new uploader");
    let Message::Bitfield(bf) = bfs[0].msg() else {
        unreachable!()
    };
    assert_eq!(bf.club, 5);
    let held = bitfield_bits(&bf);
    assert_eq!(held.get(&5), Some(&true), "{held:?}");
    assert_eq!(held.get(&17), Some(&false), "{held:?}");
    assert_eq!(held.get(&29), Some(&true), "{held:?}");
    assert!(held.keys().all(|s| s % u64::from(C) == 5));
}

/// [0056]: an uploader told by a new downloader's BITFIELD which recent
/// blocks it holds sends it exactly the held blocks it lacks: those the
/// bit field names as missing, and those newer than its window, which the
/// downloader could not name (they reached the uploader before the
/// connection existed, so no push carries them).
#[test]
fn uploader_sends_a_new_downloader_only_the_blocks_its_bitfield_lacks() {
    let d = addr(8);
    let mut p = peer();
    let mut f = Feed::new(48, 200, T0, 0);
    for seq in [0u64, 12, 24, 36, 48, 60] {
        deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, 0));
    }
    let now = at(T0, 100);
    assert_accepted(&connect_as_downloader(&mut p, now, d, 0, &[5, 6]), d);
    let mut bits = vec![0u8; 1];
    bitfield::set_bit(&mut bits, 0); // has 0
    bitfield::set_bit(&mut bits, 2); // has 24
    let mut runs = [0u8; 16];
    let (first, len) = bitfield::encode(&bits, 4, &mut runs).expect("encodes");
    let bf = Message::Bitfield(Bitfield {
        club: 0,
        start_seq: 0,
        bits: 4,
        first,
        tag: p.tag_of(d, 0, Direction::Upload),
        runs: &runs[..len],
    });
    let out = deliver(&mut p, now, d, &bf);
    let sent: Vec<Vec<u8>> = out
        .iter()
        .filter(|o| o.to == d && o.is_block())
        .map(|o| o.bytes.clone())
        .collect();
    assert_eq!(block_seqs_to(&out, d), vec![12, 36, 48, 60]);
    assert_verifiable_in_order(&sent);
    // New blocks of the club then flow as usual.
    let out = deliver_raw(&mut p, now, stranger(), &f.block(72, now, 0));
    assert_eq!(block_seqs_to(&out, d), vec![72]);
}

/// Decodes a BITFIELD into (sequence number, held) pairs.
fn bitfield_bits(bf: &Bitfield<'_>) -> BTreeMap<u64, bool> {
    let mut bits = vec![0u8; bitfield::packed_len(usize::from(bf.bits))];
    bf.decode_into(&mut bits).expect("valid bit field");
    (0..usize::from(bf.bits))
        .map(|i| {
            (
                bf.start_seq + i as u64 * u64::from(C),
                bitfield::get_bit(&bits, i),
            )
        })
        .collect()
}

/// [0056]: a download opened by the other side (an in-club upload offer)
/// is answered with ACCEPT and then a BITFIELD of the club's recent blocks
/// the peer holds.
#[test]
fn new_in_club_download_is_accepted_then_told_the_held_blocks() {
    let a = addr(1);
    let mut p = peer();
    let mut f = feed();
    for seq in [0u64, 24, 25] {
        deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, 0));
    }
    let out = connect_as_uploader(&mut p, at(T0, 10), a, 0, &[0, 4]);
    let to_a: Vec<&Out> = out.iter().filter(|o| o.to == a).collect();
    assert_eq!(to_a.len(), 2, "ACCEPT and BITFIELD");
    assert!(matches!(to_a[0].msg(), Message::Accept(_)), "ACCEPT first");
    let Message::Bitfield(bf) = to_a[1].msg() else {
        panic!("expected BITFIELD, got {:?}", to_a[1].msg());
    };
    assert_eq!(bf.club, 0);
    let held = bitfield_bits(&bf);
    assert_eq!(held, BTreeMap::from([(0, true), (12, false), (24, true)]));
}

fn connects_for(out: &[Out], club: u16, direction: Direction) -> Vec<SocketAddr> {
    out.iter()
        .filter(|o| {
            o.connect()
                .is_some_and(|c| c.club == club && c.direction == direction)
        })
        .map(|o| o.to)
        .collect()
}

/// [0057]: an in-club download that is dropped is replaced only when fewer
/// than the 2 wanted remain.
#[test]
fn in_club_download_is_replaced_only_below_two() {
    let (a, b, c, e) = (addr(1), addr(2), addr(3), addr(4));
    let mut p = peer();
    for x in [a, b, c] {
        assert_accepted(&connect_as_uploader(&mut p, T0, x, 0, &[0, 6]), x);
    }
    // E, a fresh member of club 0, takes the peer's upload requests.
    tell(&mut p, T0, e, &pong(&[0], 0));
    let out = run(&mut p, T0, at(T0, 100), 20);
    accept_connects(&mut p, at(T0, 100), e, &out);
    assert!(connects_for(&out, 0, Direction::Download).is_empty());
    let keep_e = [(e, 0)];
    let left = |tag| {
        Message::Drop(Drop {
            direction: Direction::Upload,
            club: 0,
            reason: DropReason::Leaving,
            tag,
        })
    };
    let tag = p.tag_of(a, 0, Direction::Download);
    deliver(&mut p, at(T0, 200), a, &left(tag));
    assert_eq!(p.connections().downloads_of(0), 2);
    let out = run_keeping(&mut p, at(T0, 200), at(T0, 700), 20, &keep_e);
    assert!(
        connects_for(&out, 0, Direction::Download).is_empty(),
        "replaced although 2 remain"
    );
    let tag = p.tag_of(b, 0, Direction::Download);
    deliver(&mut p, at(T0, 700), b, &left(tag));
    assert_eq!(p.connections().downloads_of(0), 1);
    let out = run_keeping(&mut p, at(T0, 700), at(T0, 1_200), 20, &keep_e);
    assert_eq!(
        connects_for(&out, 0, Direction::Download).first(),
        Some(&e),
        "no replacement with 1 left"
    );
}

/// [0058]: the uploading side replaces a dropped in-club upload only when
/// fewer than the 2 wanted remain, and never replaces an upload to a peer
/// of another club.
#[test]
fn in_club_upload_is_replaced_only_below_two_foreign_never() {
    let (u1, u2, u3, o, e) = (addr(1), addr(2), addr(3), addr(9), addr(4));
    let mut p = peer();
    for u in [u1, u2, u3] {
        assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 6]), u);
    }
    assert_accepted(&connect_as_downloader(&mut p, T0, o, 0, &[7, 8]), o);
    // E, a fresh member of club 0, takes the peer's download requests.
    tell(&mut p, T0, e, &pong(&[0], 0));
    let out = run(&mut p, T0, at(T0, 100), 20);
    accept_connects(&mut p, at(T0, 100), e, &out);
    assert!(connects_for(&out, 0, Direction::Upload).is_empty());
    let left = |tag| {
        Message::Drop(Drop {
            direction: Direction::Download,
            club: 0,
            reason: DropReason::Leaving,
            tag,
        })
    };
    // The receivers send KEEPALIVEs while connected ([0053]).
    let mut keepers = vec![(u1, 0), (u2, 0), (u3, 0), (o, 0)];
    let mut quiet = Vec::new();
    for (i, gone) in [o, u3].into_iter().enumerate() {
        let t = at(T0, 200 + 500 * i as u64);
        let tag = p.tag_of(gone, 0, Direction::Upload);
        deliver(&mut p, t, gone, &left(tag));
        keepers.retain(|(a, _)| *a != gone);
        quiet.extend(run_keeping(&mut p, t, at(t, 500), 20, &keepers));
    }
    assert_eq!(p.connections().in_club_uploads_of(0), 2);
    assert!(
        connects_for(&quiet, 0, Direction::Upload).is_empty(),
        "replaced although 2 in-club uploads remain"
    );
    let tag = p.tag_of(u2, 0, Direction::Upload);
    deliver(&mut p, at(T0, 1_200), u2, &left(tag));
    keepers.retain(|(a, _)| *a != u2);
    let out = run_keeping(&mut p, at(T0, 1_200), at(T0, 1_700), 20, &keepers);
    assert_eq!(
        connects_for(&out, 0, Direction::Upload).first(),
        Some(&e),
        "no replacement with 1 in-club upload left"
    );
}

// ---- [0060]-[0062]: playback -------------------------------------------------------

fn stored(source_time: Time) -> StoredBlock {
    StoredBlock {
        payload: vec![0; 8],
        batch: 0,
        index: 0,
        count: 1,
        source_time,
    }
}

/// 100 ms of media per block: one second is 10 blocks.
const BLOCK_US: u64 = 100_000;

/// A store of blocks `seqs`, block k produced by the source at
/// `src0 + k * BLOCK_US`.
fn store_of(seqs: impl IntoIterator<Item = u64>, src0: Time) -> BlockStore {
    let mut s = BlockStore::new(4096);
    for k in seqs {
        s.insert(k, stored(Time(src0.0 + k * BLOCK_US)));
    }
    s
}

/// Advances `play` every 10 ms from `from` to `to` (exclusive), returning
/// what it played with the time.
fn play(play: &mut Playout, store: &BlockStore, from: Time, to: Time) -> Vec<(Time, Played)> {
    let mut out = Vec::new();
    let mut now = from;
    while now < to {
        play.advance(now, BLOCK_US, 0, store, |_| true, |p| out.push((now, p)));
        now = now.plus_ms(10);
    }
    out
}

/// [0060]: a peer starts playing only once it holds one second of media
/// with at most a tenth of it missing (holes are repaired while it plays,
/// so scattered loss does not hold the start back), from the first block
/// of that run.
#[test]
fn playback_starts_after_one_second_of_nearly_whole_media() {
    let mut p = peer();
    // 500-byte blocks at 40 kbit/s: 100 ms each; 5 and 6 missing.
    let mut f = Feed::new(60, 500, Time(T0.0 - mid_delay_us()), 0);
    let mut now = T0;
    for seq in (0..5).chain(7..10) {
        deliver_raw(&mut p, now, stranger(), &f.block(seq, now, 40));
    }
    for _ in 0..20 {
        p.handle_timeout(now);
        drain(&mut p, now);
        now = now.plus_ms(20);
    }
    assert_eq!(
        p.playback_started_at(),
        None,
        "started on a second of media with two holes"
    );
    assert!(!std::iter::from_fn(|| p.poll_event())
        .any(|e| matches!(e, PeerEvent::PlaybackStarted { .. })));
    deliver_raw(&mut p, now, stranger(), &f.block(5, now, 40));
    p.handle_timeout(now);
    let events: Vec<PeerEvent> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(
        events.contains(&PeerEvent::PlaybackStarted { seq: 0 }),
        "{events:?}"
    );
    assert_eq!(p.playback_started_at(), Some(now));
}

/// [0060]: blocks are played in sequence order whatever order they
/// arrived in.
#[test]
fn blocks_are_played_in_sequence_order() {
    let src0 = Time(T0.0 - mid_delay_us());
    let mut store = BlockStore::new(4096);
    let mut order: Vec<u64> = (0..30).collect();
    // A fixed shuffle.
    for i in 0..order.len() {
        order.swap(i, (i * 7 + 3) % 30);
    }
    assert_ne!(order, (0..30).collect::<Vec<_>>());
    for seq in &order {
        store.insert(*seq, stored(Time(src0.0 + seq * BLOCK_US)));
    }
    let mut p = Playout::new(PlayoutConfig::default(), T0);
    // 30 blocks of 100 ms: the last is due 2.9 s after the start.
    let played: Vec<Played> = play(&mut p, &store, T0, at(T0, 2_950))
        .into_iter()
        .map(|(_, x)| x)
        .collect();
    assert_eq!(played, (0..30).map(Played::OnTime).collect::<Vec<_>>());
}

/// [0061]: playback runs faster when the play delay is above the maximum
/// of the range, slower below its minimum, and at normal speed inside.
#[test]
fn playback_speeds_up_above_max_delay_and_slows_below_min() {
    let cfg = PlayoutConfig::default();
    let played_in_one_second = |delay_us: u64| {
        let store = store_of(0..40, Time(T0.0 - delay_us));
        let mut p = Playout::new(cfg, T0);
        let out = play(&mut p, &store, T0, at(T0, 1_000));
        (out.len(), p.speed())
    };
    let (normal, speed) = played_in_one_second((cfg.min_delay_us + cfg.max_delay_us) / 2);
    assert_eq!(speed, 1.0);
    assert_eq!(normal, 10);
    let (fast, speed) = played_in_one_second(cfg.max_delay_us + 1_000_000);
    assert!(speed > 1.0, "speed {speed} above the range");
    assert!(fast > normal, "{fast} blocks vs {normal}");
    let (slow, speed) = played_in_one_second(cfg.min_delay_us / 4);
    assert!(speed < 1.0, "speed {speed} below the range");
    assert!(slow < normal, "{slow} blocks vs {normal}");
}

/// [0062]: a block missing when due freezes playback; if it arrives within
/// `max_freeze` it is played (late) and playback goes on from there.
#[test]
fn missing_block_freezes_then_plays_late() {
    let cfg = PlayoutConfig::default();
    let src0 = Time(T0.0 - mid_delay_us());
    let mut store = store_of((0..12).chain(13..30), src0);
    let mut p = Playout::new(cfg, T0);
    let out = play(&mut p, &store, T0, at(T0, 1_250));
    assert_eq!(
        out.iter().map(|(_, x)| *x).collect::<Vec<_>>(),
        (0..12).map(Played::OnTime).collect::<Vec<_>>()
    );
    assert_eq!(p.stats().freezes, 1, "frozen on the missing block");
    let arrival = at(T0, 1_250 + cfg.max_freeze_us / 2_000);
    let out = play(&mut p, &store, at(T0, 1_250), arrival);
    assert!(out.is_empty(), "nothing played while frozen: {out:?}");
    store.insert(12, stored(Time(src0.0 + 12 * BLOCK_US)));
    let out = play(&mut p, &store, arrival, at(arrival, 500));
    assert_eq!(out[0].1, Played::Late(12));
    assert!(out[0].0 >= arrival && out[0].0 <= at(arrival, 10));
    assert_eq!(out[1].1, Played::OnTime(13));
    assert_eq!(p.stats().skipped, 0);
    assert_eq!(p.stats().late, 1);
}

/// [0062]: a missing block that does not arrive within `max_freeze` is
/// skipped; the freeze never lasts longer.
#[test]
fn missing_block_is_skipped_after_max_freeze() {
    let cfg = PlayoutConfig::default();
    let store = store_of((0..12).chain(13..30), Time(T0.0 - mid_delay_us()));
    let mut p = Playout::new(cfg, T0);
    // 12 is skipped 300 ms late, so 29 is due at 3.1 s and 30 at 3.2 s.
    let out = play(&mut p, &store, T0, at(T0, 3_150));
    let seqs: Vec<Played> = out.iter().map(|(_, x)| *x).collect();
    let mut want: Vec<Played> = (0..12).map(Played::OnTime).collect();
    want.push(Played::Skipped(12));
    want.extend((13..30).map(Played::OnTime));
    assert_eq!(seqs, want);
    let due_12 = out[11].0 .0 + BLOCK_US; // one block after 11
    let skipped_at = out[12].0 .0;
    let frozen_us = skipped_at - due_12;
    assert!(
        frozen_us >= cfg.max_freeze_us && frozen_us <= cfg.max_freeze_us + 10_000,
        "froze {frozen_us} us"
    );
    assert_eq!(p.stats().freezes, 1);
    assert_eq!(p.stats().skipped, 1);
}

/// [0060]-[0061]: a newcomer whose catch-up reaches further back than the
/// most play delay starts the least play delay behind the newest block,
/// not at the oldest block it holds.
#[test]
fn a_newcomer_starts_near_the_live_edge() {
    let cfg = PlayoutConfig::default();
    // Ten seconds of blocks, the newest just made.
    let src0 = Time(T0.0 - 100 * BLOCK_US);
    let store = store_of(0..100, src0);
    let mut p = Playout::new(cfg, T0);
    let out = play(&mut p, &store, T0, at(T0, 50));
    let first = match out.first() {
        Some((_, Played::OnTime(seq))) => *seq,
        other => panic!("first played {other:?}"),
    };
    let behind_us = (99 - first) * BLOCK_US;
    assert!(
        behind_us <= cfg.min_delay_us && behind_us + BLOCK_US > cfg.min_delay_us,
        "started at block {first}, {behind_us} us behind the newest"
    );
    // A store within the delay range still starts at its first block.
    let store = store_of(0..30, src0);
    let mut p = Playout::new(cfg, T0);
    let out = play(&mut p, &store, T0, at(T0, 50));
    assert_eq!(out.first().map(|(_, x)| *x), Some(Played::OnTime(0)));
}

/// [0060]-[0062]: a block newer than any held is not missing but not made
/// yet (the feed paused): playback waits without a freeze or a skip, buffers
/// again from there after a start buffer's worth of waiting, and plays on
/// when the feed comes back.
#[test]
fn a_paused_feed_is_waited_for_not_skipped() {
    let cfg = PlayoutConfig::default();
    let src0 = Time(T0.0 - mid_delay_us());
    let mut store = store_of(0..15, src0);
    let mut p = Playout::new(cfg, T0);
    let out = play(&mut p, &store, T0, at(T0, 5_000));
    assert_eq!(out.len(), 15, "everything held is played");
    assert_eq!((p.stats().freezes, p.stats().skipped), (0, 0));
    // The feed comes back 4 s later: blocks 15.. arrive.
    for k in 15..40 {
        store.insert(k, stored(Time(src0.0 + k * BLOCK_US + 4_000_000)));
    }
    let out = play(&mut p, &store, at(T0, 5_000), at(T0, 9_000));
    let seqs: Vec<Played> = out.iter().map(|(_, x)| *x).collect();
    assert_eq!(seqs, (15..40).map(Played::OnTime).collect::<Vec<_>>());
    assert_eq!((p.stats().freezes, p.stats().skipped), (0, 0));
    assert_eq!(p.stats().continuity(), 1.0);
}

// ---- [0063]: quality and graceful failure ------------------------------------------

/// Counters for the quality check: `bad` skips and freezes, `uploaded`
/// bytes, no hostile datagrams.
fn totals(bad: u64, uploaded: u64) -> QualityTotals {
    QualityTotals {
        bad,
        uploaded,
        hostile: 0,
    }
}

/// [0063]: each level of skips and freezes per window comes with an
/// upload threshold; the peer must stop when it uploaded less.
#[test]
fn quality_monitor_applies_the_upload_threshold_of_the_level_reached() {
    let rule = QualityRule::default();
    let window = rule.window_ms;
    let stream_bps = 1_000_000.0;
    // Bytes that make `share` of the stream rate over one window.
    let bytes = |share: f64| (share * stream_bps * window as f64 / 1000.0 / 8.0).ceil() as u64;
    let [worst, mild] = rule.levels;
    // An uplink that carries nothing more than it sent.
    let cap = Some(0.0);
    let check = |bad: u64, up: u64| {
        let mut m = QualityMonitor::new(rule, T0);
        assert_eq!(
            m.check(at(T0, window - 1), totals(bad, up), stream_bps, cap),
            Verdict::Healthy,
            "window not over"
        );
        m.check(at(T0, window), totals(bad, up), stream_bps, cap) == Verdict::Stop
    };
    assert!(!check(mild.bad_events - 1, 0), "below every level");
    assert!(check(mild.bad_events, 0));
    assert!(check(mild.bad_events, bytes(mild.min_upload_share) - 1));
    assert!(!check(mild.bad_events, bytes(mild.min_upload_share)));
    assert!(check(worst.bad_events, bytes(mild.min_upload_share)));
    assert!(!check(worst.bad_events, bytes(worst.min_upload_share)));
    // Windows are separate: a bad window after a good one counts alone.
    let mut m = QualityMonitor::new(rule, T0);
    let good = m.check(at(T0, window), totals(0, bytes(1.0)), stream_bps, cap);
    assert_eq!(good, Verdict::Healthy);
    let bad = totals(mild.bad_events, bytes(1.0));
    assert_eq!(
        m.check(at(T0, 2 * window), bad, stream_bps, cap),
        Verdict::Stop
    );
}

/// [0063] kept to its intent: a peer that uploads little only because
/// nobody asked for more (its uplink never showed a limit, or carries the
/// threshold) is healthy and never stops, however poor the quality.
#[test]
fn quality_rule_never_stops_a_peer_whose_uplink_has_room() {
    let rule = QualityRule::default();
    let stream_bps = 1_000_000.0;
    let [worst, _] = rule.levels;
    let need = worst.min_upload_share * stream_bps;
    let end = at(T0, rule.window_ms);
    for capacity in [None, Some(need), Some(10.0 * need)] {
        let mut m = QualityMonitor::new(rule, T0);
        let verdict = m.check(end, totals(worst.bad_events * 10, 0), stream_bps, capacity);
        assert_eq!(
            verdict,
            Verdict::Healthy,
            "stopped with capacity {capacity:?}"
        );
    }
    let mut m = QualityMonitor::new(rule, T0);
    let verdict = m.check(
        end,
        totals(worst.bad_events, 0),
        stream_bps,
        Some(need - 1.0),
    );
    assert_eq!(verdict, Verdict::Stop);
}

/// [0063] under attack: a window with `attack_datagrams` hostile
/// datagrams or more is excused however bad it was, one with fewer is
/// not, and the count is per window.
#[test]
fn quality_rule_excuses_a_window_under_attack() {
    let rule = QualityRule::default();
    let window = rule.window_ms;
    let [worst, _] = rule.levels;
    let cap = Some(0.0);
    let with_hostile = |bad: u64, hostile: u64| QualityTotals {
        bad,
        uploaded: 0,
        hostile,
    };
    let mut m = QualityMonitor::new(rule, T0);
    let attacked = with_hostile(worst.bad_events, rule.attack_datagrams);
    assert_eq!(
        m.check(at(T0, window), attacked, 1e6, cap),
        Verdict::Excused
    );
    // The next window: as bad, but only one hostile datagram more.
    let next = with_hostile(2 * worst.bad_events, rule.attack_datagrams + 1);
    assert_eq!(m.check(at(T0, 2 * window), next, 1e6, cap), Verdict::Stop);
    // Hostile traffic alone never stops a healthy peer.
    let mut m = QualityMonitor::new(rule, T0);
    let calm = with_hostile(0, 10 * rule.attack_datagrams);
    assert_eq!(m.check(at(T0, window), calm, 1e6, cap), Verdict::Healthy);
}

/// The [0063] scenario: a peer with an in-club download A, a foreign
/// download F, an in-club upload U (and `extra_uploads` out-of-club
/// uploads for clubs 0 and 1) gets 10 blocks, then block 150: playback
/// starts and then skips 140 blocks. Its receivers report `queue_delay_ms`
/// of queuing in their KEEPALIVEs (500 ms: the uplink is congested, and
/// what it carries is what it sent). Returns the peer, what it sent and
/// the connected addresses. `hostile` garbage datagrams from a stranger
/// come in the same window.
fn quality_scenario(
    extra_uploads: u32,
    queue_delay_ms: u16,
    hostile: u32,
) -> (Peer, Vec<Out>, [SocketAddr; 3]) {
    let (a, f, u) = (addr(1), addr(3), addr(2));
    let mut cfg = config(&[0, 1]);
    cfg.quality.window_ms = 2_000;
    // The stream is 40 kbit/s here: let the uplink estimate go that low.
    cfg.pacer.min_bps = 1_000.0;
    // A block missing when due is skipped at once.
    cfg.playout.max_freeze_us = 0;
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_uploader(&mut p, T0, a, 0, &[0, 4]), a);
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 4]), u);
    for i in 0..extra_uploads {
        let o = addr(50 + i);
        for club in [0, 1] {
            assert_accepted(&connect_as_downloader(&mut p, T0, o, club, &[7, 8]), o);
        }
    }
    let mut now = open_foreign_download(&mut p, T0, f, 5);
    // 500-byte blocks at 40 kbit/s (100 ms each), signed 20 s ago: far
    // behind, so the missing blocks are skipped at once ([0062]).
    let mut fd = Feed::new(60, 500, Time(T0.0 - 20_000_000), 0);
    let mut out = Vec::new();
    for seq in (0..10).chain([150]) {
        let from = if seq == 5 { f } else { stranger() };
        out.extend(deliver_raw(&mut p, now, from, &fd.block(seq, now, 40)));
    }
    for _ in 0..hostile {
        out.extend(deliver_raw(&mut p, now, stranger(), &[0xEE; 48]));
    }
    // Receivers keep their downloads alive ([0053]); A, the uploader,
    // is heard from now and then.
    let mut keepers = vec![(u, 0)];
    for i in 0..extra_uploads {
        keepers.extend([(addr(50 + i), 0), (addr(50 + i), 1)]);
    }
    let end = at(T0, 2_500);
    while now < end {
        if (now.0 - T0.0).is_multiple_of(200_000) {
            for (r, club) in &keepers {
                let ka = KeepAlive {
                    club: *club,
                    received: 0,
                    queue_delay_ms,
                    tag: p.tag_of(*r, *club, Direction::Upload),
                };
                out.extend(deliver(&mut p, now, *r, &Message::KeepAlive(ka)));
            }
            out.extend(deliver(
                &mut p,
                now,
                a,
                &Message::Ping(Ping {
                    nonce: 1,
                    club: 0,
                    token: Token::NONE,
                }),
            ));
        }
        p.handle_timeout(now);
        out.extend(drain(&mut p, now));
        now = now.plus_ms(10);
    }
    (p, out, [a, f, u])
}

/// [0063] under attack: the same skips, but in a window in which the
/// peer took a flood of garbage, do not stop it: the window is excused
/// and counted, and the peer keeps every connection.
#[test]
fn skips_during_a_flood_do_not_stop_the_peer() {
    let (mut p, out, [a, _, u]) = quality_scenario(0, 500, 200);
    assert!(p.playout_stats().skipped >= 100);
    let events: Vec<PeerEvent> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(!events.contains(&PeerEvent::GracefulFailure), "{events:?}");
    assert!(!p.has_failed());
    assert!(p.stats().malformed >= 200);
    assert!(p.stats().quality_windows_excused >= 1);
    assert!(
        out.iter().all(|o| o.drop_msg().is_none()),
        "a connection was dropped"
    );
    let conns = p.connections();
    assert!(conns.downloads.iter().any(|d| d.from == a && d.club == 0));
    assert!(conns.uploads.iter().any(|x| x.to == u && x.club == 0));
}

/// [0063]: with many skips in a window, little upload and an uplink that
/// cannot carry more, the peer stops all activity: it reports
/// GracefulFailure, sends DROP(Leaving) on every connection, and sends
/// nothing until its back-off has passed; then it takes part again.
#[test]
fn peer_with_many_skips_and_little_upload_stops_then_comes_back() {
    let (mut p, out, [a, f, u]) = quality_scenario(0, 500, 0);
    assert!(p.playout_stats().skipped >= 100);
    let events: Vec<PeerEvent> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(events.contains(&PeerEvent::GracefulFailure), "{events:?}");
    assert!(p.has_failed());
    let leaving: BTreeSet<(SocketAddr, u8, u16)> = out
        .iter()
        .filter_map(|o| {
            o.drop_msg()
                .filter(|d| d.reason == DropReason::Leaving)
                .map(|d| (o.to, d.direction as u8, d.club))
        })
        .collect();
    assert_eq!(
        leaving,
        BTreeSet::from([
            (a, Direction::Download as u8, 0),
            (f, Direction::Download as u8, 5),
            (u, Direction::Upload as u8, 0),
        ])
    );
    assert!(p.connections().downloads.is_empty() && p.connections().uploads.is_empty());
    // Nothing more goes out, whatever comes in, until the back-off ends.
    let now = at(T0, 3_000);
    let mut fd = Feed::new(60, 500, Time(T0.0 - 20_000_000), 0);
    assert!(deliver_raw(&mut p, now, a, &fd.block(151, now, 40)).is_empty());
    assert!(connect_as_downloader(&mut p, now, addr(77), 0, &[0, 3]).is_empty());
    assert!(run(&mut p, now, at(now, 1_000), 20).is_empty());
    let resume = p.poll_timeout().expect("a time to come back");
    let backoff_ms = (resume.0 - now.0) / 1000;
    assert!(
        (5_000..=10_000).contains(&backoff_ms),
        "back-off {backoff_ms} ms"
    );
    assert!(run(&mut p, at(now, 1_000), Time(resume.0 - 1), 20).is_empty());
    // Back: it reports so, and is answered again.
    tell(&mut p, resume, addr(9), &pong(&[7], 0));
    p.handle_timeout(resume);
    let events: Vec<PeerEvent> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(events.contains(&PeerEvent::Resumed), "{events:?}");
    assert!(!p.has_failed());
    assert!(!connect_as_downloader(&mut p, resume, addr(78), 0, &[0, 3]).is_empty());
    assert_eq!(p.stats().graceful_failures, 1);
}

/// [0063] kept to its intent: the same skips and the same little upload,
/// but the receivers see no queue, so the uplink could carry more: the
/// peer uploads little only because little was asked of it, and carries
/// on.
#[test]
fn peer_with_many_skips_and_little_upload_but_room_on_its_uplink_carries_on() {
    let (mut p, out, _) = quality_scenario(0, 0, 0);
    assert!(p.playout_stats().skipped >= 100);
    let events: Vec<PeerEvent> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(!events.contains(&PeerEvent::GracefulFailure), "{events:?}");
    assert!(!p.has_failed());
    assert!(!out.iter().any(|o| o
        .drop_msg()
        .is_some_and(|d| d.reason == DropReason::Leaving)));
}

/// [0063]: the same skips with enough upload (a quarter of the bit rate
/// at this level) do not stop the peer.
#[test]
fn peer_with_many_skips_and_enough_upload_carries_on() {
    let (mut p, out, _) = quality_scenario(4, 500, 0);
    assert!(p.playout_stats().skipped >= 100);
    assert!(p.stats().block_payload_out >= 4_000);
    let events: Vec<PeerEvent> = std::iter::from_fn(|| p.poll_event()).collect();
    assert!(!events.contains(&PeerEvent::GracefulFailure), "{events:?}");
    assert!(!p.has_failed());
    assert!(!out.iter().any(|o| o
        .drop_msg()
        .is_some_and(|d| d.reason == DropReason::Leaving)));
}

// ---- Bad input ------------------------------------------------------------------------

/// Garbage of every length is counted as malformed, answered with nothing,
/// and leaves the peer working.
#[test]
fn garbage_datagrams_are_counted_and_ignored() {
    let mut p = peer();
    let mut rng = SmallRng::seed_from_u64(99);
    let mut n = 0;
    for len in 0..MAX_DATAGRAM + 10 {
        let bytes: Vec<u8> = (0..len).map(|_| rand::Rng::random(&mut rng)).collect();
        assert!(deliver_raw(&mut p, T0, addr(66), &bytes).is_empty());
        n += 1;
    }
    // Right header, garbage body, for every message type.
    for ty in [0x01u8, 0x02, 0x10, 0x12, 0x13, 0x20, 0x23, 0x30, 0x31, 0x40] {
        let bytes = [0xCC, VERSION, ty, 0xFF, 0xFF];
        assert!(deliver_raw(&mut p, T0, addr(66), &bytes).is_empty());
        n += 1;
    }
    assert_eq!(p.stats().malformed, n);
    assert_eq!(p.stats().unique_blocks, 0);
    let mut f = feed();
    deliver_raw(&mut p, T0, stranger(), &f.block(0, T0, 0));
    assert_eq!(p.stats().unique_blocks, 1);
}

/// A block cut short does not parse: counted as malformed, not stored.
#[test]
fn truncated_block_is_malformed() {
    let mut p = peer();
    let mut f = feed();
    let bytes = f.block(0, T0, 0);
    for cut in [1, 10, 100, bytes.len() - 1] {
        deliver_raw(&mut p, T0, stranger(), &bytes[..bytes.len() - cut]);
    }
    assert_eq!(p.stats().malformed, 4);
    assert_eq!(p.stats().blocks_in, 0);
    assert!(!p.store().has(0));
}

/// Byte offset of the payload in an encoded block.
fn payload_offset(bytes: &[u8]) -> usize {
    let Ok(Message::Block(b)) = Message::parse(bytes) else {
        panic!("not a block");
    };
    bytes.len() - b.payload.len()
}

/// [0046], design principle 4: a block that fails authentication (one
/// payload bit flipped) is counted, never stored, played or forwarded, and
/// costs its sender the download; the genuine block is then accepted.
#[test]
fn forged_block_is_rejected_and_drops_the_connection() {
    let (a, b, u) = (addr(1), addr(2), addr(3));
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_uploader(&mut p, T0, a, 0, &[0, 4]), a);
    assert_accepted(&connect_as_uploader(&mut p, T0, b, 0, &[0, 5]), b);
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 6]), u);
    let mut f = feed();
    let genuine = f.block(0, T0, 0);
    let mut forged = genuine.clone();
    let off = payload_offset(&forged);
    forged[off + 3] ^= 0x10;
    let out = deliver_raw(&mut p, T0, a, &forged);
    assert_eq!(p.stats().forged_rejected, 1);
    assert!(!p.store().has(0));
    assert!(!out.iter().any(|o| o.is_block() || o.have().is_some()));
    let drops = drops_to(&out, a);
    assert_eq!(drops.len(), 1);
    assert_eq!(
        (drops[0].1.direction, drops[0].1.club, drops[0].1.reason),
        (Direction::Download, 0, DropReason::Forged)
    );
    assert!(!p.connections().downloads.iter().any(|d| d.from == a));
    // The forgery did not poison the batch: the genuine block passes.
    let out = deliver_raw(&mut p, T0, b, &genuine);
    assert!(p.store().has(0));
    assert_eq!(block_seqs_to(&out, u), vec![0]);
    // Its copy to U carries the block tag U gave in its CONNECT.
    let to_u: Vec<u64> = out
        .iter()
        .filter(|o| o.to == u)
        .filter_map(|o| o.block().map(|b| b.tag))
        .collect();
    assert_eq!(to_u, vec![downloader_tag(u)]);
    // Once the batch is known, a forged later block fails on its hashes.
    let mut forged = f.block(12, T0, 0);
    let off = payload_offset(&forged);
    forged[off] ^= 0x01;
    let out = deliver_raw(&mut p, T0, b, &forged);
    assert_eq!(p.stats().forged_rejected, 2);
    assert!(!p.store().has(12));
    assert!(!out.iter().any(|o| o.is_block()));
    assert_eq!(drops_to(&out, b).len(), 1);
    assert_eq!(p.stats().dropped_forged, 2);
    // Nothing forged is ever played.
    assert_eq!(p.stats().unique_blocks, 1);
}

/// 5.16: a BLOCK under an uploader's address without the block tag the
/// peer gave that address (an off-path spoofer cannot know it) is dropped
/// before anything else: no signature check, no ban, no DROP, and the
/// uploader keeps its connection, even when the spoofed blocks are
/// forged. The uploader's own blocks, with the tag, still pass, and its
/// CONNECT and ACCEPT carried that tag.
#[test]
fn spoofed_blocks_without_the_tag_are_dropped_unchecked() {
    let (a, u) = (addr(1), addr(3));
    let mut p = peer_with(config(&[0, 1]));
    let out = connect_as_uploader(&mut p, T0, a, 0, &[0, 4]);
    let told: Vec<u64> = out
        .iter()
        .filter(|o| o.to == a)
        .filter_map(|o| match o.msg() {
            Message::Accept(acc) => Some(acc.block_tag),
            _ => None,
        })
        .collect();
    assert_eq!(told, vec![p.block_tag(a)], "the ACCEPT hands A its tag");
    assert_ne!(p.block_tag(a), p.block_tag(u), "a tag per address");
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 6]), u);
    let mut f = feed();
    let mut checks = 0;
    for seq in (0..2_000u64).step_by(12) {
        // A forgery of a new batch each time, under A's address, with
        // every tag but A's.
        let mut spoofed = f.block(seq, T0, 0);
        let off = payload_offset(&spoofed);
        spoofed[off] ^= 0x01;
        let wrong = p.block_tag(a).wrapping_add(1 + seq);
        set_block_tag(&mut spoofed, wrong);
        p.handle_datagram(T0, a, &spoofed);
        let out = drain(&mut p, T0);
        assert!(out.is_empty(), "nothing answers a spoofed block");
        checks += 1;
    }
    let st = p.stats();
    assert_eq!(st.blocks_wrong_tag, checks);
    assert_eq!(
        (
            st.forged_rejected,
            st.signature_checks_refused,
            st.dropped_forged
        ),
        (0, 0, 0)
    );
    assert!(p.connections().downloads.iter().any(|d| d.from == a));
    assert_eq!(p.store().len(), 0, "nothing spoofed is stored");
    // A's genuine block, with its tag, is taken and forwarded to U.
    let out = deliver_raw(&mut p, at(T0, 10), a, &f.block(2_004, T0, 0));
    assert!(p.store().has(2_004));
    assert_eq!(block_seqs_to(&out, u), vec![2_004]);
}

/// A replayed genuine block is a duplicate: counted, not stored, announced,
/// forwarded or played twice.
#[test]
fn replayed_block_counts_as_duplicate_and_is_not_played_twice() {
    let u = addr(3);
    let mut p = peer();
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 0, &[0, 6]), u);
    let mut f = Feed::new(60, 500, Time(T0.0 - mid_delay_us()), 0);
    let mut forwarded = 0;
    for seq in 0..12 {
        let out = deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, 40));
        forwarded += block_seqs_to(&out, u).len();
    }
    for _ in 0..5 {
        let out = deliver_raw(&mut p, T0, addr(4), &f.block(0, T0, 40));
        forwarded += block_seqs_to(&out, u).len();
    }
    assert_eq!(p.stats().duplicates, 5);
    assert_eq!(p.stats().unique_blocks, 12);
    assert_eq!(forwarded, 1, "block 0 forwarded once");
    run(&mut p, T0, at(T0, 1_300), 20);
    let s = p.playout_stats();
    assert_eq!(s.on_time, 12, "{s:?}");
}

/// Blocks of another stream are counted as wrong_stream and never stored;
/// after 20 with nothing valid the peer reports WrongStream once.
#[test]
fn wrong_stream_blocks_are_reported_after_twenty() {
    let other_seed = [9u8; 32];
    let other = StreamTag::of_key(&SourceKey::from_seed(&other_seed).stream_id().to_bytes());
    let mut f = Feed::with_key(&other_seed, 60, 200, T0, 0);
    let mut p = peer();
    for seq in 0..19 {
        deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, 0));
    }
    assert_eq!(p.poll_event(), None, "reported before 20");
    deliver_raw(&mut p, T0, stranger(), &f.block(19, T0, 0));
    assert_eq!(p.poll_event(), Some(PeerEvent::WrongStream { seen: other }));
    for seq in 20..40 {
        deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, 0));
    }
    assert_eq!(p.poll_event(), None, "reported twice");
    assert_eq!(p.stats().wrong_stream, 40);
    assert!(p.store().is_empty());
    // A peer that already has valid blocks does not report.
    let mut q = peer();
    deliver_raw(&mut q, T0, stranger(), &feed().block(0, T0, 0));
    for seq in 0..25 {
        deliver_raw(&mut q, T0, stranger(), &f.block(seq, T0, 0));
    }
    assert_eq!(q.stats().wrong_stream, 25);
    assert!(
        std::iter::from_fn(|| q.poll_event()).all(|e| !matches!(e, PeerEvent::WrongStream { .. }))
    );
}

/// [0040]: a genuinely signed block whose club field is not its sequence
/// number modulo the club count is rejected before anything else.
#[test]
fn block_in_the_wrong_club_is_rejected() {
    let u = addr(3);
    let mut p = peer();
    assert_accepted(&connect_as_downloader(&mut p, T0, u, 1, &[1, 6]), u);
    let mut f = feed();
    let hop = HopFields {
        club: 1, // block 0 belongs to club 0
        sent_at_us: T0.0,
        delay_threshold_ms: 2_000,
        bitrate_kbps: 0,
    };
    let out = deliver_raw(&mut p, T0, stranger(), &f.block_with(0, hop));
    assert_eq!(p.stats().wrong_club, 1);
    assert!(!p.store().has(0));
    assert!(out.is_empty());
    assert_eq!(p.stats().unique_blocks, 0);
}

/// A block of a batch older than the verification window is counted as
/// stale: not forged (nobody is banned), not stored, not played.
#[test]
fn block_older_than_the_verification_window_is_stale() {
    let mut p = peer();
    // Batches of 16 blocks: block 16 * 70 puts the window at batch 70.
    let mut f = Feed::new(16, 200, Time(T0.0 - mid_delay_us()), 0);
    deliver_raw(&mut p, T0, stranger(), &f.block(16 * 70, T0, 40));
    deliver_raw(&mut p, T0, addr(5), &f.block(3, T0, 40));
    let s = p.stats();
    assert_eq!(s.stale, 1);
    assert_eq!(s.forged_rejected, 0);
    assert_eq!(s.unique_blocks, 1);
    assert!(!p.store().has(3));
    assert!(!p.bans().is_banned(&addr(5)));
}

// ---- Datagrams that cross: reordering between two peers ----------------------------

/// A block parked because the hashes it builds on are late stays parked
/// when a later block of its batch still does not bring them, and is taken
/// once the one that does arrives: three blocks of one batch arriving in
/// the reverse of the order their proofs build on are all kept.
#[test]
fn parked_blocks_wait_for_every_block_their_proof_needs() {
    let mut p = peer();
    let mut f = Feed::new(4, 200, Time(T0.0 - mid_delay_us()), 0);
    let hop = |seq: u64| HopFields {
        club: (seq % u64::from(C)) as u16,
        sent_at_us: T0.0,
        delay_threshold_ms: 2_000,
        bitrate_kbps: 0,
    };
    let block = |f: &mut Feed, seq: u64, signature: bool, hashes: usize| {
        let b = f
            .signed(seq)
            .block((seq % 4) as u16, ProofPlan { signature, hashes }, hop(seq));
        encode(&Message::Block(b))
    };
    // Block 2 names no hash: it needs leaf 3 (block 3) and node 0-1 (block
    // 0). Block 3 names leaf 2: it needs node 0-1. Block 0 has it all.
    let b2 = block(&mut f, 2, false, 0);
    let b3 = block(&mut f, 3, false, 1);
    let b0 = block(&mut f, 0, true, usize::MAX);
    deliver_raw(&mut p, T0, stranger(), &b2);
    deliver_raw(&mut p, at(T0, 1), stranger(), &b3);
    assert_eq!(p.stats().unverifiable, 2, "both parked");
    deliver_raw(&mut p, at(T0, 2), stranger(), &b0);
    for seq in [0, 2, 3] {
        assert!(p.store().has(seq), "block {seq} kept");
    }
    assert_eq!(p.stats().unique_blocks, 3);
    assert_eq!(p.stats().unverifiable, 0);
    assert_eq!(p.stats().forged_rejected, 0);
}

/// A downloader whose DROP crossed its new CONNECT holds a download the
/// uploader no longer has. Its next KEEPALIVE or BITFIELD gets a DROP
/// (`NoSuchConnection`) at once, so it looks for another uploader instead
/// of waiting for blocks that never come.
#[test]
fn keepalive_or_bitfield_for_an_upload_not_held_gets_a_drop() {
    let mut p = peer();
    let d = addr(20);
    assert_accepted(&connect_as_downloader(&mut p, T0, d, 0, &[0, 5]), d);
    // The new CONNECT came first (the upload stands), then the old DROP.
    assert_accepted(&connect_as_downloader(&mut p, at(T0, 1), d, 0, &[0, 5]), d);
    let old_drop = Message::Drop(Drop {
        direction: Direction::Download,
        club: 0,
        reason: DropReason::SequenceGap,
        tag: p.tag_of(d, 0, Direction::Upload),
    });
    deliver(&mut p, at(T0, 2), d, &old_drop);
    assert!(p.connections().uploads.iter().all(|u| u.to != d));
    // D puts the tag of its download on them; the DROP echoes it, as the
    // uploader keeps none for a connection it does not have.
    let d_tag = 0x5eed_u64;
    let bitfield = Message::Bitfield(Bitfield {
        club: 0,
        start_seq: 0,
        bits: 0,
        first: false,
        tag: d_tag,
        runs: &[],
    });
    for (i, msg) in [Message::KeepAlive(KeepAlive::bare(0, d_tag)), bitfield]
        .iter()
        .enumerate()
    {
        let out = deliver(&mut p, at(T0, 3 + i as u64), d, msg);
        let drops = drops_to(&out, d);
        assert_eq!(drops.len(), 1, "{i}: one DROP");
        assert_eq!(
            (
                drops[0].1.direction,
                drops[0].1.club,
                drops[0].1.reason,
                drops[0].1.tag
            ),
            (Direction::Upload, 0, DropReason::NoSuchConnection, d_tag)
        );
    }
    // A KEEPALIVE on an upload that stands gets none.
    let e = addr(21);
    assert_accepted(&connect_as_downloader(&mut p, at(T0, 5), e, 1, &[1, 5]), e);
    let tag = p.tag_of(e, 1, Direction::Upload);
    let out = deliver(
        &mut p,
        at(T0, 6),
        e,
        &Message::KeepAlive(KeepAlive::bare(1, tag)),
    );
    assert!(drops_to(&out, e).is_empty());
}

/// The downloader's side of the same: on that DROP it forgets the download
/// and, at its next tick, asks another member of the club.
#[test]
fn a_no_such_connection_drop_ends_the_download_and_another_is_sought() {
    let mut p = peer();
    let (u, v) = (addr(30), addr(31));
    let now = open_foreign_download(&mut p, T0, u, 4);
    tell(&mut p, now, v, &pong(&[4], 0));
    let gone = Message::Drop(Drop {
        direction: Direction::Upload,
        club: 4,
        reason: DropReason::NoSuchConnection,
        tag: p.tag_of(u, 4, Direction::Download),
    });
    deliver(&mut p, now, u, &gone);
    assert!(p.connections().downloads.iter().all(|d| d.club != 4));
    assert!(!p.bans().is_banned(&u), "not a congestion drop");
    let out = run(&mut p, now, at(now, 100), 10);
    assert!(
        out.iter().any(|o| o
            .connect()
            .is_some_and(|c| c.club == 4 && c.direction == Direction::Download)),
        "a new CONNECT for club 4"
    );
}

/// Loss repair cannot be turned into a fire hose: a REQUEST from an
/// address with no connection gets nothing, and a connected peer asking
/// over and over for everything it can name is answered with at most the
/// stream's own rate (plus half a second of burst).
#[test]
fn repair_requests_are_answered_within_the_stream_rate_and_only_to_connections() {
    let mut p = peer();
    // 200 blocks of 200 bytes at 160 kbit/s: 10 ms of media each.
    let mut f = Feed::new(60, 200, Time(T0.0 - mid_delay_us()), 0);
    for seq in 0..200 {
        deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, KBPS));
    }
    let seqs: Vec<u64> = (0..32).collect();
    let req = Message::Request(Request {
        block_tag: downloader_tag(addr(66)),
        seqs: SeqList::Items(&seqs),
    });
    let stranger_asks = deliver(&mut p, T0, addr(66), &req);
    assert!(block_seqs_to(&stranger_asks, addr(66)).is_empty());
    assert!(p.stats().repair_refused >= 32);
    // A connected downloader asks for 32 blocks every 10 ms for 5 s.
    let d = addr(67);
    assert_accepted(&connect_as_downloader(&mut p, T0, d, 0, &[0, 5]), d);
    let mut bytes = 0usize;
    let mut now = T0;
    for k in 0..500u64 {
        let seqs: Vec<u64> = (0..32).map(|i| (k * 32 + i) % 200).collect();
        let req = Message::Request(Request {
            block_tag: downloader_tag(d) + k,
            seqs: SeqList::Items(&seqs),
        });
        for o in deliver(&mut p, now, d, &req).iter().filter(|o| o.to == d) {
            if let Some(b) = o.block() {
                assert_eq!(
                    b.tag,
                    downloader_tag(d) + k,
                    "the answer carries the asked tag"
                );
                bytes += b.payload.len();
            }
        }
        now = now.plus_ms(10);
        p.handle_timeout(now);
        drain(&mut p, now);
    }
    let cap = f64::from(KBPS) * 125.0 * (5.0 + 0.5);
    assert!(bytes > 0, "nothing answered");
    assert!(
        (bytes as f64) <= cap,
        "{bytes} payload bytes in 5 s, cap {cap}"
    );
    assert!(p.stats().repair_refused > 0);
}

/// A downloader that lies in its KEEPALIVEs (nothing arrived, a minute of
/// queuing) among honest ones does not make the uploader throttle, shed
/// or drop anyone.
#[test]
fn a_lying_downloader_cannot_throttle_its_uploader() {
    let mut p = peer();
    let honest: Vec<SocketAddr> = (0..4).map(|i| addr(70 + i)).collect();
    let liar = addr(80);
    for (i, d) in honest.iter().chain([&liar]).enumerate() {
        let club = if i % 2 == 0 { 0 } else { 1 };
        assert_accepted(&connect_as_downloader(&mut p, T0, *d, club, &[club, 7]), *d);
    }
    let mut f = feed();
    let mut now = T0;
    let mut sent = [0u32; 5];
    for step in 0..300u64 {
        // A block of club 0 or 1 every 10 ms, to every upload of its club.
        let seq = step * 12 + step % 2;
        for o in deliver_raw(&mut p, now, stranger(), &f.block(seq, now, KBPS)) {
            if let Some(i) = honest.iter().chain([&liar]).position(|d| *d == o.to) {
                sent[i] += u32::from(o.is_block());
            }
        }
        if step % 25 == 0 {
            for (i, d) in honest.iter().enumerate() {
                let club = if i % 2 == 0 { 0 } else { 1 };
                let ka = KeepAlive {
                    club,
                    received: sent[i],
                    queue_delay_ms: 2,
                    tag: p.tag_of(*d, club, Direction::Upload),
                };
                deliver(&mut p, now, *d, &Message::KeepAlive(ka));
            }
            let lie = KeepAlive {
                club: 0,
                received: 0,
                queue_delay_ms: 60_000,
                tag: p.tag_of(liar, 0, Direction::Upload),
            };
            deliver(&mut p, now, liar, &Message::KeepAlive(lie));
        }
        now = now.plus_ms(10);
        p.handle_timeout(now);
        let out = drain(&mut p, now);
        assert!(
            out.iter().all(|o| o.drop_msg().is_none()),
            "a drop at {step}"
        );
    }
    assert_eq!(p.uplink_bps(), None, "throttled by one liar");
    assert_eq!(p.connections().uploads.len(), 5);
}

/// A peer that lies about its clock (BLOCK send times all over the place)
/// can only get its own download dropped: the delay rule compares each
/// connection with its own floor, so the honest uploader beside it is
/// never dropped or banned.
#[test]
fn a_lying_clock_costs_only_the_liar_its_connection() {
    let (honest, liar) = (addr(1), addr(2));
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let mut p = peer_with(cfg);
    assert_accepted(&connect_as_uploader(&mut p, T0, honest, 0, &[0, 4]), honest);
    assert_accepted(&connect_as_uploader(&mut p, T0, liar, 0, &[0, 5]), liar);
    let mut f = feed();
    let hop = |sent_at_us: u64| HopFields {
        club: 0,
        sent_at_us,
        delay_threshold_ms: 1_000,
        bitrate_kbps: 0,
    };
    let mut now = T0;
    let mut rng = SmallRng::seed_from_u64(5);
    for i in 0..100u64 {
        let seq = i * 12;
        deliver_raw(&mut p, now, honest, &f.block_with(seq, hop(now.0 - ms(20))));
        let wild = now
            .0
            .wrapping_add(rng.random_range(0..ms(120_000)))
            .wrapping_sub(ms(60_000));
        deliver_raw(&mut p, now, liar, &f.block_with(seq, hop(wild)));
        now = at(now, 30);
    }
    assert!(p.connections().downloads.iter().any(|d| d.from == honest));
    assert!(!p.bans().is_banned(&honest));
}

/// Timers from measurements: a CONNECT unanswered by its timeout (1 s
/// while no round trip is known) is sent again with the same request id,
/// the timeout doubled, three sends in all; an ACCEPT that comes after the
/// request was given up is still taken while the connection is wanted, and
/// undone with a DROP when it is not, so the other side holds no upload
/// nobody reads.
#[test]
fn an_unanswered_connect_is_sent_again_and_a_late_accept_is_taken_or_undone() {
    let cfg = config(&[0, 1]);
    let timeout = cfg.connect_timeout_ms;
    let mut p = peer_with(cfg);
    let (f, g, h) = (addr(3), addr(4), addr(5));
    tell(&mut p, T0, f, &pong(&[5], 0));
    tell(&mut p, T0, g, &pong(&[6], 0));
    // Sent at 0, 1 s and 3 s; given up at 7 s.
    let gave_up = at(T0, 7 * timeout + 100);
    let out = run(&mut p, T0, gave_up, 10);
    let sends = |to: SocketAddr, club: u16| -> Vec<(Time, u32)> {
        out.iter()
            .filter(|o| o.to == to)
            .filter_map(|o| {
                o.connect()
                    .filter(|c| c.club == club)
                    .map(|c| (o.at, c.request_id))
            })
            .collect()
    };
    let to_f = sends(f, 5);
    assert_eq!(to_f.len(), 3, "{to_f:?}");
    assert!(to_f.iter().all(|s| s.1 == to_f[0].1), "one request id");
    let gaps: Vec<u64> = to_f
        .windows(2)
        .map(|w| (w[1].0 .0 - w[0].0 .0) / 1000)
        .collect();
    assert!((timeout..timeout + 30).contains(&gaps[0]), "{gaps:?}");
    assert!(
        (2 * timeout..2 * timeout + 30).contains(&gaps[1]),
        "{gaps:?}"
    );
    assert_eq!(p.stats().connect_retries, 4);
    let to_g = sends(g, 6);
    assert_eq!(to_g.len(), 3, "{to_g:?}");
    // Club 6 gets a download from H meanwhile.
    let now = open_foreign_download(&mut p, gave_up, h, 6);
    let late = |id: u32, club: u16| {
        Message::Accept(Accept {
            request_id: id,
            direction: Direction::Download,
            club,
            block_tag: 1,
        })
    };
    // F's ACCEPT: club 5 still has no download, so it is taken.
    let out = deliver(&mut p, now, f, &late(to_f[0].1, 5));
    assert!(p
        .connections()
        .downloads
        .iter()
        .any(|d| d.from == f && d.club == 5));
    assert!(out
        .iter()
        .any(|o| o.to == f && matches!(o.msg(), Message::Bitfield(_))));
    // G's ACCEPT: club 6 has its download, so G is told to drop it.
    let out = deliver(&mut p, now, g, &late(to_g[0].1, 6));
    assert!(!p.connections().downloads.iter().any(|d| d.from == g));
    let drops = drops_to(&out, g);
    assert_eq!(drops.len(), 1);
    assert_eq!(
        (drops[0].1.direction, drops[0].1.club, drops[0].1.reason),
        (Direction::Download, 6, DropReason::Trimmed)
    );
    assert_eq!(p.stats().late_accepts, 2);
}

/// The store covers the whole play-delay range whatever the bit rate: at
/// 1000 blocks a second (8 Mbit/s of 1 KiB blocks) a peer holds five
/// seconds of blocks that came at once (more than the most play delay),
/// where a store of 1024 blocks held one.
#[test]
fn the_store_covers_the_play_delay_range_at_a_high_bit_rate() {
    let mut p = peer();
    let max_delay_ms = PlayoutConfig::default().max_delay_us / 1000;
    // From an uploader (a stranger's blocks get few signature checks).
    assert_accepted(
        &connect_as_uploader(&mut p, T0, stranger(), 0, &[0, 5]),
        stranger(),
    );
    // 5 s of blocks, 1 ms apart on the source's timeline.
    let mut f = Feed::new(60, 200, T0, 60_000);
    for seq in 0..5_000u64 {
        deliver_raw(&mut p, T0, stranger(), &f.block(seq, T0, 8_000));
    }
    let held = p.store().len() as u64;
    assert!(
        held >= max_delay_ms,
        "{held} blocks held, {max_delay_ms} ms of them needed"
    );
    assert_eq!(held, 5_000);
    // Playback then starts the least play delay behind the newest block
    // and lets go only of what lies before that (and what it keeps
    // played): the range ahead of it stays whole.
    p.handle_timeout(T0);
    drain(&mut p, T0);
    let min_delay_blocks = PlayoutConfig::default().min_delay_us / 1000;
    assert!(p.store().len() as u64 >= min_delay_blocks);
    assert!((4_999 - min_delay_blocks..5_000).all(|s| p.store().has(s)));
}

/// [0053] across a feed pause: when the feed stops for longer than the
/// silence limit and comes back, a download that has not carried a block
/// of the new run yet is not silent; its silence counts from the return.
/// One that stays quiet after the return is dropped.
#[test]
fn a_feed_pause_does_not_make_downloads_silent_when_it_ends() {
    let (f1, f2) = (addr(3), addr(4));
    let mut cfg = config(&[0, 1]);
    cfg.ban_sweep_ms = 3_600_000;
    let silence = cfg.silence_ms;
    let mut p = peer_with(cfg);
    let now = open_foreign_download(&mut p, T0, f1, 5);
    let now = open_foreign_download(&mut p, now, f2, 6);
    let mut fd = feed();
    let mut out = Vec::new();
    let mut t = now;
    // A second of blocks on both, then a pause of twice the silence limit.
    for k in 0..10u64 {
        out.extend(deliver_raw(&mut p, t, f1, &fd.block(5 + 12 * k, t, KBPS)));
        out.extend(deliver_raw(&mut p, t, f2, &fd.block(6 + 12 * k, t, KBPS)));
        out.extend(run(&mut p, t, at(t, CLUB_INTERVAL_MS), 20));
        t = at(t, CLUB_INTERVAL_MS);
    }
    out.extend(run(&mut p, t, at(t, 2 * silence), 20));
    t = at(t, 2 * silence);
    // The feed is back on F1 first; F2 follows after most of a silence.
    let back = t;
    let mut k = 10u64;
    while t < at(back, silence - 300) {
        out.extend(deliver_raw(&mut p, t, f1, &fd.block(5 + 12 * k, t, KBPS)));
        out.extend(run(&mut p, t, at(t, CLUB_INTERVAL_MS), 20));
        t = at(t, CLUB_INTERVAL_MS);
        k += 1;
    }
    out.extend(deliver_raw(&mut p, t, f2, &fd.block(6 + 12 * k, t, KBPS)));
    assert!(drops_to(&out, f1).is_empty() && drops_to(&out, f2).is_empty());
    // Now F2 stays quiet while F1 carries on: F2 is silent.
    let quiet_from = t;
    while t < at(quiet_from, silence + 500) {
        k += 1;
        out.extend(deliver_raw(&mut p, t, f1, &fd.block(5 + 12 * k, t, KBPS)));
        out.extend(run(&mut p, t, at(t, CLUB_INTERVAL_MS), 20));
        t = at(t, CLUB_INTERVAL_MS);
    }
    assert!(drops_to(&out, f1).is_empty());
    let drops = drops_to(&out, f2);
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert_eq!(drops[0].1.reason, DropReason::Silence);
}

// ---- NAT traversal (docs/PROTOCOL.md 5.19, 10.11) ----------------------------------

/// A PUNCH from the tracker makes the peer PING the named peer once; the
/// same PUNCH again within 2 s, or one from anyone else, is ignored and
/// counted.
#[test]
fn a_punch_from_the_tracker_makes_one_ping() {
    let tracker = addr(500);
    let mut cfg = config(&[0, 1]);
    cfg.tracker = Some(tracker);
    let mut p = peer_with(cfg);
    drain(&mut p, T0);
    let asker = addr(42);
    let punch = Message::Punch(clubcast::wire::Punch {
        stream: tag(),
        peer: asker,
    });
    let pings_to = |out: &[Out], to: SocketAddr| {
        out.iter()
            .filter(|o| o.to == to && matches!(o.msg(), Message::Ping(_)))
            .count()
    };
    let out = deliver(&mut p, T0, tracker, &punch);
    assert_eq!(pings_to(&out, asker), 1);
    let out = deliver(&mut p, at(T0, 500), tracker, &punch);
    assert_eq!(pings_to(&out, asker), 0, "a second PUNCH within 2 s");
    let out = deliver(&mut p, at(T0, 600), stranger(), &punch);
    assert_eq!(pings_to(&out, asker), 0, "a PUNCH not from the tracker");
    let s = p.stats();
    assert_eq!((s.punches_answered, s.punches_ignored), (1, 2));
    let out = deliver(&mut p, at(T0, 2_100), tracker, &punch);
    assert_eq!(pings_to(&out, asker), 1, "again after 2 s");
}

/// A contact that left a PING unanswered is pinged again only after the
/// tracker was asked for a PUNCH; a PONG from it then counts the punch as
/// a success. A PONG says where the answering node saw this peer.
#[test]
fn an_unanswered_ping_asks_the_tracker_for_a_punch() {
    let tracker = addr(500);
    let mut cfg = config(&[0, 1]);
    cfg.tracker = Some(tracker);
    cfg.local_addr = Some(addr(7));
    let mut p = peer_with(cfg);
    let far = addr(43);
    let listed = [far];
    let list = Message::PeerList(clubcast::wire::PeerList {
        stream: tag(),
        club_count: C,
        recommended: ClubList::Items(&[0, 1]),
        heartbeat_ms: 5_000,
        peers: AddrList::Items(&listed),
        observed: Some(addr(7)),
    });
    let mut now = T0;
    let mut out = deliver(&mut p, now, tracker, &list);
    let mut requests = 0;
    while now < at(T0, 12_000) {
        now = now.plus_ms(10);
        p.handle_timeout(now);
        out.extend(drain(&mut p, now));
    }
    for o in &out {
        if let Message::PunchRequest(r) = o.msg() {
            assert_eq!((o.to, r.target), (tracker, far));
            requests += 1;
        }
    }
    assert!(requests >= 1, "no PUNCH_REQUEST for a silent contact");
    assert!(requests <= 3, "{requests} PUNCH_REQUESTs in 12 s");
    assert_eq!(
        p.nat_type(),
        clubcast::roles::peer::traversal::NatType::Public
    );
    // The contact answers at last.
    let nonce = out
        .iter()
        .rev()
        .find_map(|o| match o.msg() {
            Message::Ping(ping) if o.to == far => Some(ping.nonce),
            _ => None,
        })
        .expect("a PING to the contact");
    let pong = Message::Pong(Pong {
        nonce,
        club: 0,
        load: Load::default(),
        spare_kbps: SPARE_UNLIMITED,
        clubs: ClubList::Items(&[0, 1]),
        reach: 2,
        observed: Some(addr(7)),
    });
    deliver(&mut p, now, far, &pong);
    assert_eq!(p.stats().punches_succeeded, 1);
}
