//! The tracker, rule by rule ([0015]-[0016], [0030]-[0031]), driven
//! deterministically: fixed RNG seed, injected time, no sockets.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clubcast::roles::{ClubRecommender, Time, Tracker, TrackerConfig};
use clubcast::wire::{
    ClubList, Heartbeat, Join, JoinRole, Message, PunchRequest, StreamTag, Token,
};
use rand::rngs::SmallRng;
use rand::SeedableRng;

const STREAM: StreamTag = StreamTag(*b"trackert");

/// A time for the rendezvous tests.
const T0: Time = Time(1_000_000);

fn v4(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 4000)
}

fn v6(n: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n)), 4000)
}

fn tracker() -> Tracker<SmallRng> {
    Tracker::new(TrackerConfig::new(STREAM), SmallRng::seed_from_u64(1))
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1232];
    let len = msg.encode(&mut buf).expect("encodes");
    buf.truncate(len);
    buf
}

fn join_with(max_peers: u16, role: JoinRole, token: Token) -> Vec<u8> {
    join_local(max_peers, role, token, None)
}

fn join_local(max_peers: u16, role: JoinRole, token: Token, local: Option<SocketAddr>) -> Vec<u8> {
    encode(&Message::Join(Join {
        stream: STREAM,
        peer_id: 7,
        max_peers,
        role,
        token,
        local,
    }))
}

/// Joins `from` as a real peer does: a JOIN without a token gets a RETRY
/// (no bigger than the JOIN) and nothing else, and the JOIN again with its
/// token is served. Returns the answer to the second JOIN, if any; what
/// else the tracker sent meanwhile must be PUNCHes naming `from`.
fn join_as(
    t: &mut Tracker<SmallRng>,
    now: Time,
    from: SocketAddr,
    max_peers: u16,
    role: JoinRole,
) -> Option<Vec<u8>> {
    join_full(t, now, from, max_peers, role, None).0
}

/// [`join_as`] announcing `local`; also returns whom the tracker sent a
/// PUNCH naming `from`.
fn join_full(
    t: &mut Tracker<SmallRng>,
    now: Time,
    from: SocketAddr,
    max_peers: u16,
    role: JoinRole,
    local: Option<SocketAddr>,
) -> (Option<Vec<u8>>, Vec<(SocketAddr, SocketAddr)>) {
    let first = join_local(max_peers, role, Token::NONE, local);
    t.handle_datagram(now, from, &first);
    let tx = t.poll_transmit().expect("a RETRY");
    assert!(t.poll_transmit().is_none());
    assert_eq!(tx.to, from);
    assert!(
        tx.payload().len() <= first.len(),
        "RETRY bigger than the JOIN"
    );
    let token = match Message::parse(tx.payload()) {
        Ok(Message::Retry(r)) => r.token,
        other => panic!("expected RETRY, got {other:?}"),
    };
    t.handle_datagram(now, from, &join_local(max_peers, role, token, local));
    let mut answer = None;
    let mut punched = Vec::new();
    while let Some(tx) = t.poll_transmit() {
        if tx.to == from {
            assert!(answer.is_none(), "two answers");
            answer = Some(tx.payload().to_vec());
            continue;
        }
        match Message::parse(tx.payload()) {
            Ok(Message::Punch(p)) => punched.push((tx.to, p.peer)),
            other => panic!("to {}: {other:?}", tx.to),
        }
    }
    (answer, punched)
}

fn join(t: &mut Tracker<SmallRng>, now: Time, from: SocketAddr, max_peers: u16) {
    join_as(t, now, from, max_peers, JoinRole::Viewer);
}

fn heartbeat(clubs: &[u16]) -> Vec<u8> {
    encode(&Message::Heartbeat(Heartbeat {
        stream: STREAM,
        peer_id: 7,
        clubs: ClubList::Items(clubs),
    }))
}

/// Sends a JOIN from `from` and returns (peers listed, club count,
/// recommended clubs) of the answer.
fn do_join(
    t: &mut Tracker<SmallRng>,
    now: Time,
    from: SocketAddr,
    max: u16,
) -> (Vec<SocketAddr>, u16, Vec<u16>) {
    let answer = join_as(t, now, from, max, JoinRole::Viewer).expect("an answer");
    match Message::parse(&answer) {
        Ok(Message::PeerList(list)) => {
            assert_eq!(list.stream, STREAM);
            (
                list.peers.iter().collect(),
                list.club_count,
                list.recommended.iter().collect(),
            )
        }
        other => panic!("expected PEER_LIST, got {other:?}"),
    }
}

/// [0015]: a joining peer is added; its heartbeats keep it; silence longer
/// than the expiry removes it.
#[test]
fn heartbeat_keeps_a_peer_and_silence_removes_it() {
    let mut t = tracker();
    do_join(&mut t, Time(0), v4(1), 50);
    do_join(&mut t, Time(0), v4(2), 50);
    assert_eq!(t.peer_count(), 2);
    // Peer 1 beats every 5 s; peer 2 falls silent.
    let mut now = Time(0);
    for _ in 0..6 {
        now = now.plus_ms(5_000);
        t.handle_datagram(now, v4(1), &heartbeat(&[3, 9]));
        t.handle_timeout(now);
    }
    assert!(t.has_peer(v4(1)));
    assert!(!t.has_peer(v4(2)));
    assert_eq!(t.stats().expired, 1);
    assert_eq!(t.clubs_of(v4(1)), Some(&[3u16, 9][..]));
    // A newcomer is no longer told about the silent peer.
    let (listed, _, _) = do_join(&mut t, now, v4(3), 50);
    assert_eq!(listed, vec![v4(1)]);
}

/// [0016]: the list excludes the joiner and is partial: bounded by what
/// the joiner asked for, drawn at random from the whole swarm.
#[test]
fn list_is_a_random_partial_list_of_the_others() {
    let mut t = tracker();
    for n in 0..200 {
        join(&mut t, Time(0), v4(n), 0);
        t.poll_transmit();
    }
    let mut seen = HashSet::new();
    for round in 0..20 {
        let (listed, _, _) = do_join(&mut t, Time(1), v4(1000 + round), 30);
        assert_eq!(listed.len(), 30);
        assert!(!listed.contains(&v4(1000 + round)));
        let unique: HashSet<_> = listed.iter().collect();
        assert_eq!(unique.len(), 30, "no address listed twice");
        seen.extend(listed);
    }
    // Twenty random draws of 30 from 200+ cover most of the swarm.
    assert!(
        seen.len() > 150,
        "only {} distinct peers listed",
        seen.len()
    );
}

/// [0016]: a list never outgrows one datagram, even of IPv6 peers.
#[test]
fn list_fits_one_datagram() {
    let mut t = tracker();
    for n in 0..300 {
        join(&mut t, Time(0), v6(n), 0);
        t.poll_transmit();
    }
    let (listed, _, _) = do_join(&mut t, Time(1), v6(999), u16::MAX);
    // (1232 - 25 - 19 for the observed address) / 19 = 62 IPv6 entries fit.
    assert_eq!(listed.len(), 62);
}

/// [0030]: the answer carries the club count and two distinct recommended
/// clubs below it.
#[test]
fn answer_carries_club_count_and_two_recommended_clubs() {
    let mut t = tracker();
    let (_, clubs, rec) = do_join(&mut t, Time(0), v4(1), 10);
    assert_eq!(clubs, 12);
    assert_eq!(rec.len(), 2);
    assert_ne!(rec[0], rec[1]);
    assert!(rec.iter().all(|c| *c < 12));
}

/// [0031]: recommendations walk a shuffled list of all clubs, two per
/// join, and the list is rebuilt when empty: every six joins cover each of
/// twelve clubs exactly once.
#[test]
fn recommendations_cover_every_club_once_per_pass() {
    let mut t = tracker();
    for pass in 0..5u32 {
        let mut counts = [0u32; 12];
        for j in 0..6 {
            let (_, _, rec) = do_join(&mut t, Time(0), v4(pass * 10 + j), 0);
            for c in rec {
                counts[usize::from(c)] += 1;
            }
        }
        assert_eq!(counts, [1; 12], "pass {pass}");
    }
}

#[test]
fn recommender_orders_differ_between_passes() {
    let mut r = ClubRecommender::new(12);
    let mut rng = SmallRng::seed_from_u64(5);
    let mut pass = |r: &mut ClubRecommender| -> Vec<u16> {
        let mut out = Vec::new();
        for _ in 0..6 {
            let mut two = [0u16; 2];
            assert_eq!(r.next(2, &mut rng, &mut two), 2);
            out.extend(two);
        }
        out
    };
    let a = pass(&mut r);
    let b = pass(&mut r);
    assert_ne!(a, b, "each pass is shuffled anew");
}

#[test]
fn single_club_swarm_recommends_one_club() {
    let mut r = ClubRecommender::new(1);
    let mut rng = SmallRng::seed_from_u64(5);
    let mut out = [9u16; 2];
    assert_eq!(r.next(2, &mut rng, &mut out), 1);
    assert_eq!(out[0], 0);
}

/// Bad input: garbage, another stream, non-tracker messages are counted
/// and dropped without an answer; a heartbeat's out-of-range clubs are
/// ignored.
#[test]
fn bad_input_is_counted_and_dropped() {
    let mut t = tracker();
    t.handle_datagram(Time(0), v4(1), b"\xcc\x01\x01garbage");
    t.handle_datagram(Time(0), v4(1), &[]);
    let other = encode(&Message::Join(Join {
        stream: StreamTag(*b"otherstr"),
        peer_id: 1,
        max_peers: 5,
        role: JoinRole::Viewer,
        token: Token::NONE,
        local: None,
    }));
    t.handle_datagram(Time(0), v4(1), &other);
    let ping = encode(&Message::Ping(clubcast::wire::Ping {
        nonce: 1,
        club: 0,
        token: Token::NONE,
    }));
    t.handle_datagram(Time(0), v4(1), &ping);
    assert!(t.poll_transmit().is_none());
    assert_eq!(t.peer_count(), 0);
    let s = t.stats();
    assert_eq!((s.malformed, s.wrong_stream, s.unexpected), (2, 1, 1));
    join(&mut t, Time(0), v4(2), 5);
    t.handle_datagram(Time(0), v4(2), &heartbeat(&[500, 4]));
    assert_eq!(t.clubs_of(v4(2)), Some(&[4u16][..]));
}

/// Address validation: a JOIN from an address that never shows it receives
/// there (a spoofed one) gets one RETRY no bigger than itself and is never
/// listed; a token minted for another address, or a made-up one, fails and
/// is counted; a HEARTBEAT from an address not listed adds nothing and
/// gets a RETRY, so a real peer the tracker forgot joins again.
#[test]
fn only_addresses_that_answered_a_retry_are_listed() {
    let mut t = tracker();
    let spoofed = join_with(50, JoinRole::Viewer, Token::NONE);
    let mut sent = 0;
    let mut back = 0;
    for n in 0..100 {
        t.handle_datagram(Time(0), v4(n), &spoofed);
        sent += spoofed.len();
        while let Some(tx) = t.poll_transmit() {
            assert!(matches!(
                Message::parse(tx.payload()),
                Ok(Message::Retry(_))
            ));
            back += tx.payload().len();
        }
    }
    assert!(back <= sent, "{back} bytes back for {sent}");
    assert_eq!(t.peer_count(), 0);
    // A token for v4(1) does not admit v4(2).
    t.handle_datagram(Time(0), v4(1), &spoofed);
    let tx = t.poll_transmit().expect("a RETRY");
    let Ok(Message::Retry(r)) = Message::parse(tx.payload()) else {
        panic!("a RETRY")
    };
    t.handle_datagram(Time(0), v4(2), &join_with(50, JoinRole::Viewer, r.token));
    let mut forged = r.token;
    forged.0[15] ^= 1;
    t.handle_datagram(Time(0), v4(1), &join_with(50, JoinRole::Viewer, forged));
    while t.poll_transmit().is_some() {}
    assert_eq!(t.peer_count(), 0);
    assert_eq!(t.stats().tokens_failed, 2);
    // With its own token, v4(1) is in.
    t.handle_datagram(Time(0), v4(1), &join_with(50, JoinRole::Viewer, r.token));
    assert!(matches!(
        t.poll_transmit()
            .map(|tx| Message::parse(tx.payload()).map(|m| m.message_type())),
        Some(Ok(clubcast::wire::MessageType::PeerList))
    ));
    assert_eq!(t.peer_count(), 1);
    // A heartbeat from a stranger: a RETRY, nothing listed.
    t.handle_datagram(Time(0), v4(77), &heartbeat(&[1, 2]));
    assert!(t.poll_transmit().is_some());
    assert_eq!(t.peer_count(), 1);
    assert_eq!(t.stats().heartbeats_unknown, 1);
    assert_eq!(t.stats().retries_sent, 104);
}

/// Bounded table: joins beyond `max_peers` are dropped and counted.
#[test]
fn table_is_bounded() {
    let mut cfg = TrackerConfig::new(STREAM);
    cfg.max_peers = 10;
    let mut t = Tracker::new(cfg, SmallRng::seed_from_u64(2));
    let mut answers = 0;
    for n in 0..25 {
        if join_as(&mut t, Time(0), v4(n), 5, JoinRole::Viewer).is_some() {
            answers += 1;
        }
    }
    assert_eq!(t.peer_count(), 10);
    assert_eq!(t.stats().full, 15);
    assert_eq!(answers, 10);
}

/// [0031]: the source and relays sit in clubs of their own; their joins
/// get no recommendation and leave the viewers' pass untouched.
#[test]
fn source_join_takes_no_recommendation() {
    let mut t = tracker();
    let answer = join_as(&mut t, Time(0), v4(999), 10, JoinRole::Source).expect("an answer");
    match Message::parse(&answer) {
        Ok(Message::PeerList(list)) => assert!(list.recommended.is_empty()),
        other => panic!("expected PEER_LIST, got {other:?}"),
    }
    let mut counts = [0u32; 12];
    for j in 0..6 {
        let (_, _, rec) = do_join(&mut t, Time(0), v4(j), 0);
        for c in rec {
            counts[usize::from(c)] += 1;
        }
    }
    assert_eq!(counts, [1; 12]);
}

/// No one address or prefix fills the list, and JOINs from one address
/// are answered at a bounded rate: with caps of 3 per address and 5 per
/// /24, a sixth address of the /24 is refused, another /24 is not; a
/// seventh JOIN at once from a joined address is left unanswered; every
/// refusal is counted.
#[test]
fn one_address_or_prefix_cannot_fill_the_list() {
    let mut cfg = TrackerConfig::new(STREAM);
    cfg.max_per_address = 3;
    cfg.max_per_prefix = 5;
    cfg.joins_per_address_s = 3.0;
    let mut t = Tracker::new(cfg, SmallRng::seed_from_u64(3));
    let at = |a: u8, b: u8, port: u16| SocketAddr::from(([10, 0, a, b], port));
    for port in 1..=4 {
        join(&mut t, Time(port as u64 * 1_000_000), at(0, 1, port), 5);
    }
    assert_eq!(t.peer_count(), 3, "a fourth port of one address");
    assert_eq!(t.stats().address_full, 1);
    for host in 2..=4 {
        join(&mut t, Time(10_000_000), at(0, host, 1), 5);
    }
    assert_eq!(t.peer_count(), 5, "the /24 is full at 5");
    assert_eq!(t.stats().prefix_full, 1);
    join(&mut t, Time(10_000_000), at(1, 1, 1), 5);
    assert_eq!(t.peer_count(), 6, "another /24 is welcome");
    // A burst of JOINs from one joined address: 6 (twice the rate) answered.
    let mut answered = 0;
    for _ in 0..10 {
        if join_as(&mut t, Time(20_000_000), at(1, 1, 1), 5, JoinRole::Viewer).is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 6);
    assert_eq!(t.stats().rate_limited, 4);
    // A second later three more are answered.
    let mut later = 0;
    for _ in 0..5 {
        if join_as(&mut t, Time(21_000_000), at(1, 1, 1), 5, JoinRole::Viewer).is_some() {
            later += 1;
        }
    }
    assert_eq!(later, 3);
}

/// The tracker tells a joiner where it sees it, punches for it to the
/// listed peers that may sit behind a router (not to one whose announced
/// local address is the one the tracker sees), and lists a peer behind
/// the joiner's own router (same public IP) by its local address.
#[test]
fn joins_learn_their_address_and_natted_peers_are_punched() {
    let mut t = tracker();
    let public = v4(1);
    let natted = SocketAddr::from(([203, 0, 113, 9], 40_000));
    let natted_local = SocketAddr::from(([192, 168, 1, 5], 4000));
    let neighbour = SocketAddr::from(([203, 0, 113, 9], 40_007));
    let neighbour_local = SocketAddr::from(([192, 168, 1, 6], 4000));
    join_full(&mut t, T0, public, 50, JoinRole::Viewer, Some(public));
    join_full(&mut t, T0, natted, 50, JoinRole::Viewer, Some(natted_local));
    let joiner = v4(2);
    let (answer, punched) = join_full(&mut t, T0, joiner, 50, JoinRole::Viewer, Some(joiner));
    let answer = answer.expect("a PEER_LIST");
    let Ok(Message::PeerList(list)) = Message::parse(&answer) else {
        panic!("not a PEER_LIST");
    };
    assert_eq!(list.observed, Some(joiner));
    assert_eq!(
        punched,
        vec![(natted, joiner)],
        "only the peer behind a router"
    );
    // A peer behind the same router as `natted` sees it by its local address
    // and gets no punch for it.
    let (answer, punched) = join_full(
        &mut t,
        T0,
        neighbour,
        50,
        JoinRole::Viewer,
        Some(neighbour_local),
    );
    let answer = answer.expect("a PEER_LIST");
    let Ok(Message::PeerList(list)) = Message::parse(&answer) else {
        panic!("not a PEER_LIST");
    };
    let listed: HashSet<SocketAddr> = list.peers.iter().collect();
    assert!(
        listed.contains(&natted_local) && !listed.contains(&natted),
        "{listed:?}"
    );
    assert!(punched.iter().all(|(to, _)| *to != natted), "{punched:?}");
    assert_eq!(t.stats().punches_sent, 1);
}

/// A PUNCH_REQUEST is served only with the tracker's token, only between
/// listed peers, and at a bounded rate per address; each refusal is
/// counted.
#[test]
fn punch_requests_need_a_token_listed_peers_and_a_budget() {
    let mut t = tracker();
    // b announced no local address: it may sit behind a router.
    let (a, b) = (v4(1), v4(2));
    join_full(&mut t, T0, a, 50, JoinRole::Viewer, Some(a));
    join_full(&mut t, T0, b, 50, JoinRole::Viewer, None);
    let request = |token: Token, target: SocketAddr| {
        encode(&Message::PunchRequest(PunchRequest {
            stream: STREAM,
            target,
            token,
        }))
    };
    // No token: a RETRY for a JOIN, nothing for the target.
    t.handle_datagram(T0, a, &request(Token::NONE, b));
    let tx = t.poll_transmit().expect("a RETRY");
    assert_eq!(tx.to, a);
    let Ok(Message::Retry(retry)) = Message::parse(tx.payload()) else {
        panic!("not a RETRY");
    };
    assert!(t.poll_transmit().is_none());
    // With it: b is told to ping a.
    t.handle_datagram(T0, a, &request(retry.token, b));
    let tx = t.poll_transmit().expect("a PUNCH");
    assert_eq!(tx.to, b);
    assert!(matches!(Message::parse(tx.payload()), Ok(Message::Punch(p)) if p.peer == a));
    // A target nobody listed gets nothing, nor one that said it sits
    // behind no router (b asking about a).
    t.handle_datagram(T0, a, &request(retry.token, v4(99)));
    assert!(t.poll_transmit().is_none());
    let b_token = {
        t.handle_datagram(T0, b, &request(Token::NONE, a));
        let tx = t.poll_transmit().expect("a RETRY");
        match Message::parse(tx.payload()) {
            Ok(Message::Retry(r)) => r.token,
            other => panic!("{other:?}"),
        }
    };
    t.handle_datagram(T0, b, &request(b_token, a));
    assert!(t.poll_transmit().is_none());
    // The budget: 2 s worth at once, then nothing more at that instant.
    let mut served = 1;
    for _ in 0..200 {
        t.handle_datagram(T0, a, &request(retry.token, b));
        while t.poll_transmit().is_some() {
            served += 1;
        }
    }
    assert_eq!(served, 40, "a burst of two seconds' worth");
    assert_eq!(t.stats().punch_requests_refused, 1 + 1 + 1 + 1 + 161);
}
