//! Wire format: every message round-trips, and no input panics the parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clubcast::wire::{
    bitfield, block_tag, set_block_tag, Accept, AddrList, BatchSignature, Bitfield, Block,
    ClubList, ClubPeers, ClubPeersRequest, Connect, Direction, Drop, DropReason, Have, Heartbeat,
    Join, JoinRole, KeepAlive, Load, Message, MessageType, PeerList, Ping, Pong, Punch,
    PunchRequest, Refuse, RefuseReason, Request, Retry, SeqList, StreamTag, Token, WireError,
    MAX_DATAGRAM, MAX_PAYLOAD, REQUEST_MAX_SEQS, VERSION,
};
use proptest::prelude::*;

/// Owned inputs from which a borrowed `Message` is built.
#[derive(Debug, Clone)]
struct Owned {
    kind: u8,
    tag: [u8; 8],
    n: [u64; 4],
    clubs: Vec<u16>,
    addrs: Vec<SocketAddr>,
    bytes: Vec<u8>,
    sig: Option<(u64, [u8; 64])>,
    proof: Vec<[u8; 32]>,
    bits: Vec<u8>,
    nbits: usize,
    runs: Vec<u8>,
    seqs: Vec<u64>,
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        0u8..19,
        any::<[u8; 8]>(),
        any::<[u64; 4]>(),
        prop::collection::vec(any::<u16>(), 0..20),
        prop::collection::vec(addr(), 0..40),
        prop::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD),
        prop::option::of((any::<u64>(), prop::array::uniform32(any::<u8>()))),
        prop::collection::vec(any::<[u8; 32]>(), 0..6),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<u64>(), 0..=REQUEST_MAX_SEQS),
    )
        .prop_map(
            |(kind, tag, n, clubs, addrs, bytes, sig, proof, bits, seqs)| {
                let nbits = bits.len() * 8 - (n[3] as usize % 8).min(bits.len() * 8);
                let mut runs = vec![0u8; 1024];
                let (_, len) = bitfield::encode(&bits, nbits, &mut runs).expect("room for runs");
                runs.truncate(len);
                let sig = sig.map(|(ts, half)| {
                    let mut s = [0u8; 64];
                    s[..32].copy_from_slice(&half);
                    s[32..].copy_from_slice(&half);
                    (ts, s)
                });
                Owned {
                    kind,
                    tag,
                    n,
                    clubs,
                    addrs,
                    bytes,
                    sig,
                    proof,
                    bits,
                    nbits,
                    runs,
                    seqs,
                }
            },
        )
}

fn build(o: &Owned) -> Message<'_> {
    let [a, b, c, _] = o.n;
    let stream = StreamTag(o.tag);
    let direction = if a & 1 == 0 {
        Direction::Download
    } else {
        Direction::Upload
    };
    let clubs = ClubList::Items(&o.clubs);
    let mut t = [0u8; Token::LEN];
    t[..8].copy_from_slice(&o.tag);
    t[8..].copy_from_slice(&o.n[2].to_be_bytes());
    let token = Token(t);
    match o.kind {
        0 => Message::Join(Join {
            stream,
            peer_id: a,
            max_peers: b as u16,
            role: [JoinRole::Viewer, JoinRole::Source, JoinRole::Relay][c as usize % 3],
            token,
            local: o.addrs.first().copied(),
        }),
        1 => Message::PeerList(PeerList {
            stream,
            club_count: (b as u16).max(1),
            recommended: clubs,
            heartbeat_ms: c as u32,
            peers: AddrList::Items(&o.addrs),
            observed: o.addrs.last().copied(),
        }),
        2 => Message::Heartbeat(Heartbeat {
            stream,
            peer_id: a,
            clubs,
        }),
        3 => Message::ClubPeersRequest(ClubPeersRequest {
            request_id: a as u32,
            club: b as u16,
            max_peers: c as u16,
            token,
        }),
        4 => Message::ClubPeers(ClubPeers {
            request_id: a as u32,
            club: b as u16,
            peers: AddrList::Items(&o.addrs),
        }),
        5 => Message::Ping(Ping {
            nonce: a as u32,
            club: b as u16,
            token,
        }),
        6 => Message::Pong(Pong {
            nonce: a as u32,
            club: b as u16,
            load: Load {
                uploads_in_club: c as u16,
                uploads_out_of_club: (c >> 16) as u16,
                downloads_in_club: (c >> 32) as u16,
                downloads_out_of_club: (c >> 48) as u16,
            },
            spare_kbps: (a >> 32) as u32,
            clubs,
            reach: (c >> 8) as u8,
            observed: o.addrs.get(1).copied(),
        }),
        7 => Message::Connect(Connect {
            request_id: a as u32,
            direction,
            club: b as u16,
            block_tag: c,
            clubs,
            token,
        }),
        8 => Message::Accept(Accept {
            request_id: a as u32,
            direction,
            club: b as u16,
            block_tag: c,
        }),
        9 => Message::Refuse(Refuse {
            request_id: a as u32,
            reason: [
                RefuseReason::Full,
                RefuseReason::Banned,
                RefuseReason::NotInClub,
                RefuseReason::ShuttingDown,
            ][b as usize % 4],
        }),
        10 => Message::Drop(Drop {
            direction,
            club: b as u16,
            reason: [
                DropReason::Delay,
                DropReason::SequenceGap,
                DropReason::Silence,
                DropReason::KeepAliveTimeout,
                DropReason::Trimmed,
                DropReason::Leaving,
                DropReason::Forged,
                DropReason::NoSuchConnection,
                DropReason::Shed,
            ][c as usize % 9],
            tag: a,
        }),
        11 => Message::KeepAlive(KeepAlive {
            club: a as u16,
            received: b as u32,
            queue_delay_ms: c as u16,
            tag: c.rotate_left(17) ^ b,
        }),
        12 => Message::Have(Have {
            club: a as u16,
            seq: b,
            tag: c,
        }),
        13 => Message::Bitfield(Bitfield {
            club: a as u16,
            start_seq: b,
            bits: o.nbits as u16,
            first: o.nbits > 0 && bitfield::get_bit(&o.bits, 0),
            tag: c,
            runs: &o.runs,
        }),
        14 => Message::Request(Request {
            block_tag: a,
            seqs: SeqList::Items(&o.seqs),
        }),
        15 => Message::Retry(Retry {
            token,
            request: [
                MessageType::Join,
                MessageType::Ping,
                MessageType::Connect,
                MessageType::ClubPeersRequest,
            ][b as usize % 4],
            request_id: c as u32,
        }),
        16 => Message::PunchRequest(PunchRequest {
            stream,
            target: o
                .addrs
                .first()
                .copied()
                .unwrap_or(SocketAddr::from(([1, 2, 3, 4], 5))),
            token,
        }),
        17 => Message::Punch(Punch {
            stream,
            peer: o
                .addrs
                .last()
                .copied()
                .unwrap_or(SocketAddr::from(([4, 3, 2, 1], 5))),
        }),
        _ => {
            let count = (b as u16).max(1);
            let index = (c as u16) % count;
            Message::Block(Block {
                tag: a ^ c,
                stream,
                seq: a.max(u64::from(index)),
                club: b as u16,
                sent_at_us: c,
                delay_threshold_ms: a as u32,
                bitrate_kbps: b as u32,
                batch: c >> 3,
                index,
                count,
                signature: o.sig.as_ref().map(|(ts, s)| BatchSignature {
                    timestamp_us: *ts,
                    signature: s,
                }),
                proof: &o.proof,
                payload: &o.bytes[..o.bytes.len().min(Block::max_payload(o.proof.len()))],
            })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips(o in owned()) {
        let msg = build(&o);
        let mut buf = [0u8; 4096];
        match msg.encode(&mut buf) {
            Ok(len) => {
                prop_assert!(len <= MAX_DATAGRAM);
                let parsed = Message::parse(&buf[..len]);
                prop_assert_eq!(parsed, Ok(msg));
            }
            // Only a list too long for the datagram budget may fail.
            Err(e) => prop_assert!(matches!(e, WireError::OverBudget { .. }), "{e:?}"),
        }
    }

    #[test]
    fn truncated_messages_are_errors(o in owned(), cut in any::<prop::sample::Index>()) {
        let msg = build(&o);
        let mut buf = [0u8; 4096];
        if let Ok(len) = msg.encode(&mut buf) {
            let cut = cut.index(len);
            prop_assert!(Message::parse(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1400)) {
        let _ = Message::parse(&data);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        ty in prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23, 0x24, 0x30,
            0x31, 0x40,
        ]),
        body in prop::collection::vec(any::<u8>(), 0..1229),
    ) {
        let mut data = vec![0xCC, VERSION, ty];
        data.extend_from_slice(&body);
        let _ = Message::parse(&data);
    }

    #[test]
    fn encoding_into_a_small_buffer_fails_cleanly(o in owned(), room in 0usize..64) {
        let msg = build(&o);
        let mut buf = vec![0u8; room];
        if let Ok(len) = msg.encode(&mut buf) {
            prop_assert!(len <= room);
        }
    }
}

#[test]
fn oversized_datagram_is_rejected() {
    let mut data = vec![0u8; MAX_DATAGRAM + 1];
    data[..3].copy_from_slice(&[0xCC, VERSION, 0x24]);
    assert_eq!(
        Message::parse(&data),
        Err(WireError::Oversized {
            len: MAX_DATAGRAM + 1,
            max: MAX_DATAGRAM
        })
    );
}

#[test]
fn unknown_version_type_and_magic_are_named() {
    assert_eq!(
        Message::parse(&[0xCC, 1, 0x24, 0, 1]),
        Err(WireError::UnsupportedVersion(1))
    );
    assert_eq!(
        Message::parse(&[0xCC, VERSION, 0x7f]),
        Err(WireError::UnknownType(0x7f))
    );
    assert_eq!(
        Message::parse(&[0x00, VERSION, 0x24]),
        Err(WireError::BadMagic(0))
    );
    assert!(matches!(
        Message::parse(&[0xCC]),
        Err(WireError::Truncated {
            field: "version",
            ..
        })
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let msg = Message::KeepAlive(KeepAlive::bare(3, 7));
    let mut buf = [0u8; 32];
    let len = msg.encode(&mut buf).expect("fits");
    assert_eq!(
        Message::parse(&buf[..len + 1]),
        Err(WireError::TrailingBytes {
            message: "KEEPALIVE",
            extra: 1
        })
    );
}

#[test]
fn block_with_index_beyond_count_is_rejected() {
    let block = Block {
        tag: 9,
        stream: StreamTag([1; 8]),
        seq: 40,
        club: 4,
        sent_at_us: 0,
        delay_threshold_ms: 0,
        bitrate_kbps: 0,
        batch: 2,
        index: 3,
        count: 4,
        signature: None,
        proof: &[],
        payload: b"abc",
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = block.encode(&mut buf).expect("valid block");
    // Byte 54..56 is the leaf index: make it equal to the count.
    buf[54..56].copy_from_slice(&4u16.to_be_bytes());
    assert!(matches!(
        Message::parse(&buf[..len]),
        Err(WireError::Invalid {
            field: "leaf index",
            ..
        })
    ));
}

#[test]
fn block_layout_matches_the_specification() {
    let sig = [7u8; 64];
    let proof = [[9u8; 32]; 2];
    let block = Block {
        tag: 0xe1e2e3e4e5e6e7e8,
        stream: StreamTag(*b"STREAMID"),
        seq: 0x0102030405060708,
        club: 0x0a0b,
        sent_at_us: 0x1112131415161718,
        delay_threshold_ms: 0x21222324,
        bitrate_kbps: 0x31323334,
        batch: 0x4142434445464748,
        index: 5,
        count: 16,
        signature: Some(BatchSignature {
            timestamp_us: 0x5152535455565758,
            signature: &sig,
        }),
        proof: &proof,
        payload: b"xyz",
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = block.encode(&mut buf).expect("fits");
    assert_eq!(len, 61 + 72 + 64 + 3);
    assert_eq!(&buf[..4], &[0xCC, VERSION, 0x40, 1]);
    assert_eq!(&buf[4..12], &0xe1e2e3e4e5e6e7e8u64.to_be_bytes());
    assert_eq!(block_tag(&buf[..len]), Some(0xe1e2e3e4e5e6e7e8));
    assert_eq!(&buf[12..20], b"STREAMID");
    assert_eq!(&buf[20..28], &0x0102030405060708u64.to_be_bytes());
    assert_eq!(&buf[28..30], &[0x0a, 0x0b]);
    assert_eq!(&buf[30..38], &0x1112131415161718u64.to_be_bytes());
    assert_eq!(&buf[38..42], &0x21222324u32.to_be_bytes());
    assert_eq!(&buf[42..46], &0x31323334u32.to_be_bytes());
    assert_eq!(&buf[46..54], &0x4142434445464748u64.to_be_bytes());
    assert_eq!(&buf[54..56], &5u16.to_be_bytes());
    assert_eq!(&buf[56..58], &16u16.to_be_bytes());
    assert_eq!(buf[58], 2);
    assert_eq!(&buf[59..61], &3u16.to_be_bytes());
    assert_eq!(&buf[61..69], &0x5152535455565758u64.to_be_bytes());
    assert_eq!(&buf[69..133], &sig);
    assert_eq!(&buf[133..197], proof.as_flattened());
    assert_eq!(&buf[197..200], b"xyz");
    // A data plane restamps the tag of each copy in place.
    assert!(set_block_tag(&mut buf[..len], 42));
    match Message::parse(&buf[..len]) {
        Ok(Message::Block(b)) => assert_eq!(b, Block { tag: 42, ..block }),
        other => panic!("restamped block: {other:?}"),
    }
    assert!(!set_block_tag(&mut buf[..11], 1), "too short for a tag");
}

#[test]
fn largest_block_fits_the_datagram_budget() {
    let sig = [0u8; 64];
    let proof = [[0u8; 32]; 6];
    let payload = vec![0u8; Block::max_payload(6)];
    let block = Block {
        tag: u64::MAX,
        stream: StreamTag([0; 8]),
        seq: 63,
        club: 0,
        sent_at_us: 0,
        delay_threshold_ms: 0,
        bitrate_kbps: 0,
        batch: 0,
        index: 63,
        count: 64,
        signature: Some(BatchSignature {
            timestamp_us: 0,
            signature: &sig,
        }),
        proof: &proof,
        payload: &payload,
    };
    let mut buf = [0u8; 2048];
    assert_eq!(block.encode(&mut buf), Ok(MAX_DATAGRAM));
}

#[test]
fn empty_bitfield_with_first_bit_set_is_rejected() {
    let msg = Message::Bitfield(Bitfield {
        club: 1,
        start_seq: 0,
        bits: 0,
        first: false,
        tag: 5,
        runs: &[],
    });
    let mut buf = [0u8; 64];
    let len = msg.encode(&mut buf).expect("fits");
    assert!(Message::parse(&buf[..len]).is_ok());
    // Byte 3+2+8+2 = 15 is the first-bit flag.
    buf[15] = 1;
    assert!(matches!(
        Message::parse(&buf[..len]),
        Err(WireError::Invalid {
            field: "first bit",
            ..
        })
    ));
}

#[test]
fn unassigned_enum_bytes_name_their_field() {
    // DROP: direction 0, club 1, reason 99.
    assert_eq!(
        Message::parse(&[0xCC, VERSION, 0x23, 0, 0, 1, 99]),
        Err(WireError::UnknownValue {
            field: "drop reason",
            value: 99
        })
    );
    // ACCEPT: request id, direction 2.
    assert_eq!(
        Message::parse(&[0xCC, VERSION, 0x21, 0, 0, 0, 1, 2, 0, 1]),
        Err(WireError::UnknownValue {
            field: "direction",
            value: 2
        })
    );
}
