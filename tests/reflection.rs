//! No reflection: a live swarm on loopback (tracker, source, a relay on
//! kernel UDP, six peers) is sent every request type from one socket that
//! stands for a victim whose address an attacker spoofs: it never answers
//! a RETRY, as a spoofer that cannot see the answers would not. At every
//! moment the bytes that reached the victim stay within 3 times the bytes
//! sent in its name, for each request type; the figures are printed as a
//! table. (A real requester that does answer the RETRY is served: every
//! other swarm test.)

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clubcast::auth::SourceKey;
use clubcast::swarm::loopback::Shard;
use clubcast::wire::{
    Bitfield, ClubList, ClubPeersRequest, Connect, Direction, Heartbeat, Join, JoinRole, KeepAlive,
    Message, Ping, Request, SeqList, StreamTag, Token, MAX_DATAGRAM,
};

const CLUBS: u16 = 12;

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let len = msg.encode(&mut buf).expect("encodes");
    buf.truncate(len);
    buf
}

/// One request of each kind an attacker can send, by name.
fn requests(tag: StreamTag) -> Vec<(&'static str, Vec<u8>)> {
    let clubs = [0u16, 1];
    let seqs = [1u64, 2, 3, 4, 5, 6, 7, 8];
    vec![
        (
            "PING",
            encode(&Message::Ping(Ping {
                nonce: 7,
                club: 0,
                token: Token::NONE,
            })),
        ),
        (
            "CLUB_PEERS_REQUEST",
            encode(&Message::ClubPeersRequest(ClubPeersRequest {
                request_id: 7,
                club: 0,
                max_peers: 255,
                token: Token::NONE,
            })),
        ),
        (
            "CONNECT (download)",
            encode(&Message::Connect(Connect {
                request_id: 7,
                direction: Direction::Download,
                club: 0,
                block_tag: 1,
                clubs: ClubList::Items(&clubs),
                token: Token::NONE,
            })),
        ),
        (
            "CONNECT (upload)",
            encode(&Message::Connect(Connect {
                request_id: 8,
                direction: Direction::Upload,
                club: 0,
                block_tag: 1,
                clubs: ClubList::Items(&clubs),
                token: Token::NONE,
            })),
        ),
        (
            "KEEPALIVE",
            encode(&Message::KeepAlive(KeepAlive {
                club: 0,
                received: 0,
                queue_delay_ms: 0,
                tag: 1,
            })),
        ),
        (
            "BITFIELD",
            encode(&Message::Bitfield(Bitfield {
                club: 0,
                start_seq: 0,
                bits: 0,
                first: false,
                tag: 1,
                runs: &[],
            })),
        ),
        (
            "REQUEST",
            encode(&Message::Request(Request {
                block_tag: 1,
                seqs: SeqList::Items(&seqs),
            })),
        ),
        (
            "JOIN",
            encode(&Message::Join(Join {
                stream: tag,
                peer_id: 99,
                max_peers: u16::MAX,
                role: JoinRole::Viewer,
                token: Token::NONE,
                local: None,
            })),
        ),
        (
            "HEARTBEAT",
            encode(&Message::Heartbeat(Heartbeat {
                stream: tag,
                peer_id: 99,
                clubs: ClubList::Items(&clubs),
            })),
        ),
    ]
}

#[test]
fn no_request_reflects_more_than_three_times_its_bytes() {
    let key = SourceKey::from_seed(&[41; 32]);
    let stream = key.stream_id();
    let tag = StreamTag::of_key(&stream.to_bytes());
    let mut shard = Shard::new().expect("driver");
    let tracker = shard.add_tracker(stream, CLUBS, 1).expect("tracker");
    let source = shard
        .add_source(key, tracker, CLUBS, 2_000_000, 2)
        .expect("source");
    let relay = shard.add_relay(stream, tracker, 64, 3).expect("relay");
    let mut peers = Vec::new();
    for seed in 0..6 {
        let id = shard.add_peer(stream, tracker, 100 + seed).expect("peer");
        peers.push(shard.local_addr(id).expect("peer address"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let swarm = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            shard.run_until(deadline, &stop).expect("driver runs");
            shard
        })
    };
    // Let the swarm settle: everyone joined, connected and streaming.
    thread::sleep(Duration::from_secs(3));

    let victim = UdpSocket::bind("127.0.0.1:0").expect("victim socket");
    victim.set_nonblocking(true).expect("nonblocking");
    let mut targets: Vec<SocketAddr> = vec![source, relay];
    targets.extend(peers.iter().take(2));
    println!("| request | sent to | bytes sent | bytes back | most back/sent |");
    println!("|---|---|---|---|---|");
    for (name, bytes) in requests(tag) {
        let to: Vec<SocketAddr> = match name {
            "JOIN" | "HEARTBEAT" => vec![tracker],
            _ => targets.clone(),
        };
        let (mut sent, mut back, mut worst) = (0usize, 0usize, 0f64);
        let mut rx = [0u8; 2048];
        let end = Instant::now() + Duration::from_millis(1_500);
        let mut next_send = Instant::now();
        while Instant::now() < end {
            // 200 requests a second to each target for the first second.
            if Instant::now() >= next_send && Instant::now() + Duration::from_millis(500) < end {
                for t in &to {
                    victim.send_to(&bytes, t).expect("send");
                    sent += bytes.len();
                }
                next_send += Duration::from_millis(5);
            }
            while let Ok((n, _)) = victim.recv_from(&mut rx) {
                back += n;
                let ratio = back as f64 / sent.max(1) as f64;
                worst = worst.max(ratio);
                assert!(
                    back <= 3 * sent,
                    "{name}: {back} bytes reached the victim for {sent} sent"
                );
            }
            thread::sleep(Duration::from_micros(500));
        }
        let who = match name {
            "JOIN" | "HEARTBEAT" => "tracker",
            _ => "source, relay, 2 peers",
        };
        println!("| {name} | {who} | {sent} | {back} | {worst:.2} |");
    }
    stop.store(true, Ordering::Relaxed);
    let shard = swarm.join().expect("the swarm thread");
    // The swarm itself kept streaming to its own peers meanwhile.
    let played: Vec<u64> = shard
        .peers()
        .map(|(_, p)| p.stats().unique_blocks)
        .collect();
    assert!(
        played.iter().all(|&n| n > 500),
        "a peer stalled: {played:?}"
    );
    let sp = shard.source_peer().expect("source");
    assert!(sp.stats().retries_sent > 0, "the source issued no token");
}
