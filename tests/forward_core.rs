//! The relay's forwarding core on the in-memory copy sink, without root:
//! who gets a copy of a received BLOCK and what each copy carries, for
//! genuine, forged, relabelled, duplicate and unverifiable blocks, with
//! HAVE suppression, claims shared between workers, and buffers running
//! out; then the forwarding loop on the `mem` and `udp` backends of the
//! packet-IO seam. (`tests/relay_dataplane.rs` proves the same core and
//! loop on real AF_XDP rings.)

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use clubcast::auth::signer::HopFields;
use clubcast::auth::{
    AuthError, BatchSigner, BatchVerifier, ProofPlan, SignedBatch, SourceKey, Trust,
};
use clubcast::forward::{BlockForwarder, HaveBoard, SIGNATURE_CHECKS_BURST};
use clubcast::io::mem::{DatagramQueue, MemIo};
use clubcast::io::packet::forward_batch;
use clubcast::io::udp_batch::UdpBatchIo;
use clubcast::relay::{FanoutLimits, FanoutTable, ForwardClaims, Subscriber, Uplink};
use clubcast::wire::{BatchSignature, Block, Message, StreamTag, MAX_DATAGRAM};

const SEED: [u8; 32] = [9; 32];
const CLUBS: u64 = 4;

/// The block tag subscriber `host` gave the relay.
fn tag_of(host: u8) -> u64 {
    0x7a90_0000_0000_0000 | u64::from(host)
}

fn addr(host: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, host), 9000)
}

/// Clubs 0 and 1 have two subscribers each; club 2 none.
fn table(have: Option<Arc<HaveBoard>>) -> Arc<FanoutTable> {
    let mut b = FanoutTable::builder(FanoutLimits::default());
    b.swarm_clubs(CLUBS as u16);
    for (club, host) in [(0u16, 11u8), (0, 12), (1, 21), (1, 22)] {
        let mut s = Subscriber::new([2, 0, 0, 0, 0, host], addr(host), tag_of(host));
        if host == 12 {
            s.have = have.clone();
        }
        b.add(club, s).expect("within limits");
    }
    Arc::new(b.build())
}

fn batch(b: u64) -> SignedBatch {
    let payloads: Vec<Vec<u8>> = (0..16).map(|i| vec![(b * 16 + i) as u8; 500]).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    BatchSigner::new(SourceKey::from_seed(&SEED))
        .sign(b, b * 16, 1_000 + b, &refs)
        .expect("signs")
}

fn full() -> ProofPlan {
    ProofPlan {
        signature: true,
        hashes: 16,
    }
}

fn datagram(signed: &SignedBatch, index: u16, club: Option<u16>) -> Vec<u8> {
    let seq = signed.seq(index);
    let hop = HopFields {
        club: club.unwrap_or((seq % CLUBS) as u16),
        sent_at_us: 5,
        delay_threshold_ms: 1_000,
        bitrate_kbps: 2_000,
    };
    let block = signed.block(index, full(), hop);
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = Message::Block(block).encode(&mut buf).expect("encodes");
    buf[..len].to_vec()
}

fn forwarder() -> BlockForwarder {
    let mut f = BlockForwarder::new(SourceKey::from_seed(&SEED).stream_id(), 64);
    f.set_table(table(None));
    f
}

fn drain(q: &mut DatagramQueue) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| q.pop()).collect()
}

const SENDER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 7000);

#[test]
fn a_fresh_block_goes_to_every_subscriber_of_its_club_whole_and_at_once() {
    let mut f = forwarder();
    let mut q = DatagramQueue::new(1024);
    let signed = batch(0);
    for index in 0..16 {
        let flushed = q.flushes();
        let sent = f.handle(SENDER, &datagram(&signed, index, None), 77, &mut q);
        let club = signed.seq(index) % CLUBS;
        assert_eq!(sent, club < 2, "block {index}");
        // Forward on verify: the block's copies are flushed before the
        // next datagram is looked at.
        assert_eq!(q.flushes(), flushed + u64::from(sent));
        let copies = drain(&mut q);
        let to: Vec<SocketAddr> = copies.iter().map(|c| c.0).collect();
        let want: Vec<SocketAddr> = match club {
            0 => vec![addr(11).into(), addr(12).into()],
            1 => vec![addr(21).into(), addr(22).into()],
            _ => vec![],
        };
        assert_eq!(to, want, "block {index}");
        for (to, bytes) in copies {
            // Each copy checks alone, against a receiver that holds nothing.
            let Ok(Message::Block(b)) = Message::parse(&bytes) else {
                panic!("a BLOCK")
            };
            assert_eq!(b.sent_at_us, 77, "re-stamped when sent on");
            let host = match to {
                SocketAddr::V4(a) => a.ip().octets()[3],
                SocketAddr::V6(_) => panic!("an IPv4 subscriber"),
            };
            assert_eq!(b.tag, tag_of(host), "the tag its receiver gave");
            let mut v = BatchVerifier::new(SourceKey::from_seed(&SEED).stream_id(), 8);
            assert!(v.verify(&b).is_ok_and(|r| r.fresh));
        }
    }
    let s = f.stats();
    assert_eq!((s.forwarded_blocks, s.no_subscribers), (8, 8));
}

#[test]
fn forged_relabelled_and_duplicate_blocks_are_never_copied() {
    let mut f = forwarder();
    let mut q = DatagramQueue::new(1024);
    let signed = batch(1);
    // Relabelled with the next club first: dropped, and the right copy
    // still goes out afterwards.
    let seq0 = signed.seq(0);
    let wrong = ((seq0 + 1) % CLUBS) as u16;
    assert!(!f.handle(SENDER, &datagram(&signed, 0, Some(wrong)), 1, &mut q));
    assert!(q.is_empty());
    assert!(f.handle(SENDER, &datagram(&signed, 0, None), 1, &mut q));
    assert_eq!(drain(&mut q).len(), 2);
    // The same block again: a duplicate.
    assert!(!f.handle(SENDER, &datagram(&signed, 0, None), 1, &mut q));
    // A payload bit flipped: forged.
    let mut bytes = datagram(&signed, 4, None);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(!f.handle(SENDER, &bytes, 1, &mut q));
    // Garbage and a non-BLOCK message.
    assert!(!f.handle(SENDER, &[0xCC, 9, 9], 1, &mut q));
    assert!(q.is_empty());
    let s = f.stats();
    assert_eq!(
        (s.wrong_club, s.duplicates, s.forged, s.malformed_block),
        (1, 1, 1, 1),
        "{s:?}"
    );
}

#[test]
fn a_block_without_the_hashes_it_builds_on_is_unverifiable_not_forged() {
    let mut f = forwarder();
    let mut q = DatagramQueue::new(1024);
    let signed = batch(2);
    let hop = HopFields {
        club: (signed.seq(1) % CLUBS) as u16,
        sent_at_us: 5,
        delay_threshold_ms: 1_000,
        bitrate_kbps: 2_000,
    };
    let bare = signed.block(
        1,
        ProofPlan {
            signature: false,
            hashes: 1,
        },
        hop,
    );
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = Message::Block(Block { ..bare })
        .encode(&mut buf)
        .expect("encodes");
    assert!(!f.handle(SENDER, &buf[..len], 1, &mut q));
    assert_eq!((f.stats().unverifiable, f.stats().forged), (1, 0));
    assert!(drain(&mut q).is_empty());
    // Parked, not dropped: once its sibling brings the signature and the
    // hashes it builds on, it verifies and goes out after it.
    assert!(f.handle(SENDER, &datagram(&signed, 0, None), 2, &mut q));
    let s = f.stats();
    assert_eq!((s.unverifiable, s.verified_late), (0, 1), "{s:?}");
    assert_eq!(s.forwarded_blocks, 2, "{s:?}");
    let seqs: Vec<u64> = drain(&mut q)
        .iter()
        .filter_map(|(_, d)| match Message::parse(d) {
            Ok(Message::Block(b)) => Some(b.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        vec![signed.seq(0), signed.seq(0), signed.seq(1), signed.seq(1)]
    );
}

#[test]
fn a_subscriber_that_said_have_gets_no_copy() {
    let board = Arc::new(HaveBoard::default());
    let mut f = forwarder();
    f.set_table(table(Some(Arc::clone(&board))));
    let mut q = DatagramQueue::new(1024);
    let signed = batch(3);
    let seq = signed.seq(0); // club 0: subscribers 11 and 12
    assert_eq!(seq % CLUBS, 0);
    board.insert(seq);
    assert!(f.handle(SENDER, &datagram(&signed, 0, None), 1, &mut q));
    let to: Vec<SocketAddr> = drain(&mut q).into_iter().map(|c| c.0).collect();
    assert_eq!(to, vec![SocketAddr::from(addr(11))]);
    assert_eq!(f.stats().have_suppressed, 1);
}

#[test]
fn workers_sharing_claims_fan_a_block_out_once() {
    let claims = Arc::new(ForwardClaims::new());
    let (mut a, mut b) = (forwarder(), forwarder());
    a.set_claims(Arc::clone(&claims));
    b.set_claims(claims);
    let (mut qa, mut qb) = (DatagramQueue::new(64), DatagramQueue::new(64));
    let signed = batch(4);
    let d = datagram(&signed, 0, None);
    assert!(a.handle(SENDER, &d, 1, &mut qa));
    assert!(!b.handle(SENDER, &d, 1, &mut qb));
    assert_eq!((qa.len(), qb.len()), (2, 0));
    assert_eq!(b.stats().claimed_elsewhere, 1);
}

#[test]
fn running_out_of_buffers_is_counted_and_the_next_block_goes_out() {
    let mut f = forwarder();
    let mut q = DatagramQueue::new(1);
    let signed = batch(5);
    assert!(f.handle(SENDER, &datagram(&signed, 0, None), 1, &mut q));
    assert_eq!(f.stats().no_free_buffer, 1);
    drain(&mut q);
    assert!(f.handle(SENDER, &datagram(&signed, 1, None), 1, &mut q));
    assert_eq!(q.len(), 1);
}

#[test]
fn the_sender_of_a_block_gets_no_copy_of_it() {
    let mut f = forwarder();
    let mut q = DatagramQueue::new(64);
    let signed = batch(6);
    assert!(f.handle(addr(21), &datagram(&signed, 1, None), 1, &mut q)); // club 1
    let to: Vec<SocketAddr> = drain(&mut q).into_iter().map(|c| c.0).collect();
    assert_eq!(to, vec![SocketAddr::from(addr(22))]);
}

/// What the core reports to the control plane: each verified block once,
/// after its copies left, whole but with the hop fields it arrived with;
/// and a verifier that takes the report's word records the batch without
/// checking its signature, then checks later blocks against it.
#[test]
fn the_control_plane_gets_each_verified_block_with_its_own_hop_fields() {
    let mut f = forwarder();
    let (uplink, sender) = Uplink::new(8);
    f.set_uplink(sender);
    let mut q = DatagramQueue::new(64);
    let signed = batch(0);
    assert!(f.handle(SENDER, &datagram(&signed, 0, None), 77, &mut q));
    // A duplicate is reported as received: its sender is alive.
    assert!(!f.handle(SENDER, &datagram(&signed, 0, None), 78, &mut q));
    let mut reports = Vec::new();
    uplink.drain(|from, bytes| reports.push((from, bytes.to_vec())));
    assert_eq!(reports.len(), 2);
    assert_eq!(f.stats().uplinked, 2);
    let Ok(Message::Block(b)) = Message::parse(&reports[0].1) else {
        panic!("a BLOCK")
    };
    assert_eq!(reports[0].0, SENDER);
    assert_eq!(b.sent_at_us, 5, "the hop fields it came with, not 77");
    assert!(b.signature.is_some());
    assert_eq!(b.proof.len(), 4, "the whole path of a 16-block batch");
    let copies = drain(&mut q);
    assert!(copies.iter().all(|(_, c)| Message::parse(c)
        .is_ok_and(|m| matches!(m, Message::Block(b) if b.sent_at_us == 77))));

    let mut v = BatchVerifier::new(SourceKey::from_seed(&SEED).stream_id(), 8);
    assert!(v.verify_with(&b, Trust::Verified).is_ok_and(|r| r.fresh));
    let s = v.stats();
    assert_eq!((s.signatures_checked, s.signatures_trusted), (0, 1));
    // The next block carries no signature and one hash: it checks against
    // the hashes recorded from the trusted one.
    let seq = signed.seq(1);
    let hop = HopFields {
        club: (seq % CLUBS) as u16,
        sent_at_us: 5,
        delay_threshold_ms: 1_000,
        bitrate_kbps: 2_000,
    };
    let lean = signed.block(
        1,
        ProofPlan {
            signature: false,
            hashes: 1,
        },
        hop,
    );
    assert!(v.verify(&lean).is_ok_and(|r| r.fresh));
    let payload = vec![0xEE; lean.payload.len()];
    let tampered = Block {
        payload: &payload,
        ..lean
    };
    assert_eq!(
        v.verify(&tampered),
        Err(AuthError::HashMismatch),
        "a tampered block still fails"
    );
}

/// The forwarding loop on the `mem` backend of the packet-IO seam: a mixed
/// batch in (genuine, relabelled, forged, duplicate, garbage), copies of
/// the genuine blocks only out, each block's copies flushed on its own.
#[test]
fn the_forwarding_loop_on_the_mem_backend_copies_only_genuine_blocks() {
    let mut f = forwarder();
    let mut io = MemIo::new(64, 1024);
    let signed = batch(3);
    let mut forged = datagram(&signed, 5, None);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let seq1 = signed.seq(1);
    let inputs: Vec<Vec<u8>> = vec![
        datagram(&signed, 0, None),
        datagram(&signed, 1, Some(((seq1 + 1) % CLUBS) as u16)),
        forged,
        datagram(&signed, 0, None),
        vec![0xCC, 1, 2],
        datagram(&signed, 1, None),
        datagram(&signed, 4, None),
    ];
    for d in &inputs {
        assert!(io.push(SENDER, d));
    }
    // At most 4 a turn: two turns take all seven.
    assert_eq!(forward_batch(&mut io, &mut f, 4, 9), 4);
    assert_eq!(forward_batch(&mut io, &mut f, 4, 9), 3);
    assert_eq!(forward_batch(&mut io, &mut f, 4, 9), 0);
    assert_eq!(io.counts(), (7, 0));
    let copies = drain(io.copies());
    let mut seqs: Vec<u64> = copies
        .iter()
        .map(|(_, bytes)| match Message::parse(bytes) {
            Ok(Message::Block(b)) => b.seq,
            other => panic!("a BLOCK, got {other:?}"),
        })
        .collect();
    seqs.dedup();
    // Blocks 0, 1 and 4 of the batch fall in clubs 0 and 1 (2 subscribers
    // each) when their seq mod 4 is below 2.
    let want: Vec<u64> = [0u16, 1, 4]
        .iter()
        .map(|&i| signed.seq(i))
        .filter(|s| s % CLUBS < 2)
        .collect();
    assert_eq!(seqs, want);
    assert_eq!(copies.len(), 2 * want.len());
    let s = f.stats();
    assert_eq!(
        (s.wrong_club, s.forged, s.duplicates, s.malformed_block),
        (1, 1, 1, 1),
        "{s:?}"
    );
    // A full inbound queue refuses, counted.
    let mut small = MemIo::new(1, 1);
    assert!(small.push(SENDER, &[1]));
    assert!(!small.push(SENDER, &[2]));
    assert_eq!(small.counts(), (0, 1));
}

/// A whole batch arriving in one receive burst, in leaf order as a source
/// sends it, is verified with one contiguous hash, and every datagram ends
/// exactly as when handled one by one: the same copies, byte for byte, and
/// the same counters, for a clean batch, a batch with a forged member, one
/// with a relabelled member, and a replayed batch.
#[test]
fn a_whole_batch_in_one_burst_is_hashed_once_and_ends_as_if_handled_one_by_one() {
    let whole = |signed: &SignedBatch| -> Vec<Vec<u8>> {
        (0..16).map(|i| datagram(signed, i, None)).collect()
    };
    let clean = whole(&batch(5));
    let mut forged = whole(&batch(6));
    let last = forged[9].len() - 1;
    forged[9][last] ^= 0x10;
    let mut relabelled = whole(&batch(7));
    let seq3 = batch(7).seq(3);
    relabelled[3] = datagram(&batch(7), 3, Some(((seq3 + 1) % CLUBS) as u16));
    let bursts = [clean.clone(), forged, relabelled, clean];

    let (mut burst_fwd, mut single_fwd) = (forwarder(), forwarder());
    let mut single_q = DatagramQueue::new(4096);
    let mut io = MemIo::new(64, 4096);
    for (n, burst) in bursts.iter().enumerate() {
        for d in burst {
            assert!(io.push(SENDER, d));
            single_fwd.handle(SENDER, d, 9, &mut single_q);
        }
        assert_eq!(forward_batch(&mut io, &mut burst_fwd, 64, 9), 16);
        assert_eq!(
            drain(io.copies()),
            drain(&mut single_q),
            "burst {n}: the same copies"
        );
        assert_eq!(burst_fwd.stats(), single_fwd.stats(), "burst {n}");
    }
    let s = burst_fwd.stats();
    assert_eq!((s.forged, s.wrong_club, s.duplicates), (1, 1, 16), "{s:?}");
    // The clean batch was hashed whole; the forged and relabelled ones fell
    // back to block-by-block checks; the replay was hashed whole again.
    assert_eq!(burst_fwd.verifier_stats().batches_hashed, 2);
    assert_eq!(single_fwd.verifier_stats().batches_hashed, 0);
}

/// The same loop on the `udp` backend, on loopback: copies reach the
/// subscribers' sockets, relabelled blocks do not, senders are known.
#[test]
fn the_forwarding_loop_on_the_udp_backend_sends_copies_on_loopback() {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    let relay = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let subs: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let v4 = |s: &UdpSocket| match s.local_addr().expect("addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound to IPv4"),
    };
    // Every club's subscribers: both sockets, and the sender, which gets
    // no copy of what it sent only if its address was read right.
    let mut b = FanoutTable::builder(FanoutLimits::default());
    b.swarm_clubs(CLUBS as u16);
    for club in 0..CLUBS as u16 {
        for s in subs.iter().chain([&sender]) {
            b.add(
                club,
                Subscriber::new([0; 6], v4(s), u64::from(v4(s).port())),
            )
            .expect("fits");
        }
    }
    let mut f = BlockForwarder::new(SourceKey::from_seed(&SEED).stream_id(), 64);
    f.set_table(Arc::new(b.build()));
    let mut io = UdpBatchIo::new(relay.as_raw_fd(), 16, 4);

    let signed = batch(5);
    let relay_addr = relay.local_addr().expect("addr");
    for index in 0..8u16 {
        sender
            .send_to(&datagram(&signed, index, None), relay_addr)
            .expect("send");
        let seq = signed.seq(index);
        let wrong = ((seq + 1) % CLUBS) as u16;
        sender
            .send_to(&datagram(&signed, index, Some(wrong)), relay_addr)
            .expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut taken = 0;
    while taken < 16 && Instant::now() < deadline {
        taken += forward_batch(&mut io, &mut f, 16, 3);
        if taken < 16 {
            io.wait(10);
        }
    }
    assert_eq!(taken, 16);
    let s = f.stats();
    // The relabelled copy of each block comes second: a wrong club.
    assert_eq!((s.forwarded_blocks, s.wrong_club), (8, 8), "{s:?}");
    assert_eq!(io.sink().stats().sent, 16);
    assert_eq!(io.receive_stats().datagrams, 16);
    assert_eq!(io.sink().latency().histogram().len(), 8);
    for sub in &subs {
        sub.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let mut seqs = Vec::new();
        for _ in 0..8 {
            let (len, from) = sub.recv_from(&mut buf).expect("a copy");
            assert_eq!(from, relay_addr);
            let Ok(Message::Block(b)) = Message::parse(&buf[..len]) else {
                panic!("a BLOCK")
            };
            assert_eq!(u64::from(b.club), b.seq % CLUBS, "never relabelled");
            let port = sub.local_addr().expect("addr").port();
            assert_eq!(
                b.tag,
                u64::from(port),
                "each copy carries its receiver's tag"
            );
            seqs.push(b.seq);
        }
        let want: Vec<u64> = (0..8).map(|i| signed.seq(i)).collect();
        assert_eq!(seqs, want);
    }
}

/// A flood of forged blocks, each claiming a new batch (as from an
/// uploader's spoofed address, which the relay's XDP sender gate lets
/// through): the forwarder makes at most its budget of signature checks,
/// drops the rest unchecked and counts them, and once the budget has
/// refilled a genuine block still goes out.
#[test]
fn a_forged_flood_spends_only_the_signature_budget() {
    let mut f = forwarder();
    let mut q = DatagramQueue::new(1024);
    let tag = StreamTag::of_key(&SourceKey::from_seed(&SEED).stream_id().to_bytes());
    let payloads: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; 500]).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let impostor = BatchSigner::new(SourceKey::from_seed(&[0x66; 32]))
        .sign(100, 1_600, 1_000, &refs)
        .expect("signs");
    let burst = SIGNATURE_CHECKS_BURST as u64;
    let flood = 3 * burst;
    let now = 1_000_000_000;
    for n in 0..flood {
        let batch = 100 + n;
        let seq = batch * 16;
        let hop = HopFields {
            club: (seq % CLUBS) as u16,
            sent_at_us: 5,
            delay_threshold_ms: 1_000,
            bitrate_kbps: 2_000,
        };
        let block = Block {
            stream: tag,
            batch,
            seq,
            ..impostor.block(0, full(), hop)
        };
        let mut buf = [0u8; MAX_DATAGRAM];
        let len = Message::Block(block).encode(&mut buf).expect("encodes");
        assert!(!f.handle(SENDER, &buf[..len], now, &mut q));
    }
    assert!(q.is_empty());
    let s = f.stats();
    assert_eq!(f.verifier_stats().signatures_checked, burst, "{s:?}");
    assert_eq!(
        (s.forged, s.signature_checks_refused),
        (burst, flood - burst)
    );
    // A second later the budget has refilled: a genuine block of a new
    // batch is checked and fanned out.
    let signed = batch(7);
    let later = now + 1_000_000;
    let index = (0..16)
        .find(|&i| signed.seq(i).is_multiple_of(CLUBS))
        .expect("a block of club 0");
    assert!(f.handle(SENDER, &datagram(&signed, index, None), later, &mut q));
    assert_eq!(drain(&mut q).len(), 2);
}

mod bursts {
    //! Property: any mix of whole batches and single blocks, genuine,
    //! forged or relabelled, in any burst sizes, ends the same through
    //! bursts as one by one, and no copy carries a forged payload.
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    const BATCHES: u64 = 4;

    fn signed() -> &'static [SignedBatch] {
        static SIGNED: OnceLock<Vec<SignedBatch>> = OnceLock::new();
        SIGNED.get_or_init(|| (0..BATCHES).map(batch).collect())
    }

    #[derive(Debug, Clone, Copy)]
    enum Harm {
        Forge,
        Relabel,
    }

    fn datagram_of(b: u64, index: u16, harm: Option<Harm>) -> Vec<u8> {
        let signed = &signed()[b as usize];
        let seq = signed.seq(index);
        let relabel = ((seq + 1) % CLUBS) as u16;
        let mut d = datagram(
            signed,
            index,
            matches!(harm, Some(Harm::Relabel)).then_some(relabel),
        );
        if matches!(harm, Some(Harm::Forge)) {
            let last = d.len() - 1;
            d[last] ^= 0x20;
        }
        d
    }

    fn harm() -> impl Strategy<Value = Option<Harm>> {
        prop_oneof![
            6 => Just(None),
            1 => Just(Some(Harm::Forge)),
            1 => Just(Some(Harm::Relabel)),
        ]
    }

    /// A whole batch in leaf order with at most one block harmed, or one
    /// block alone.
    fn piece() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop_oneof![
            (0..BATCHES, 0u16..16, harm()).prop_map(|(b, at, harm)| {
                (0..16)
                    .map(|i| datagram_of(b, i, if i == at { harm } else { None }))
                    .collect()
            }),
            (0..BATCHES, 0u16..16, harm()).prop_map(|(b, i, harm)| vec![datagram_of(b, i, harm)]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn bursts_end_as_one_by_one_and_never_copy_a_forgery(
            pieces in prop::collection::vec(piece(), 1..8),
            take in 1usize..80,
        ) {
            let inputs: Vec<Vec<u8>> = pieces.into_iter().flatten().collect();
            let (mut burst_fwd, mut single_fwd) = (forwarder(), forwarder());
            let mut single_q = DatagramQueue::new(1 << 16);
            let mut io = MemIo::new(inputs.len(), 1 << 16);
            for d in &inputs {
                prop_assert!(io.push(SENDER, d));
                single_fwd.handle(SENDER, d, 9, &mut single_q);
            }
            while forward_batch(&mut io, &mut burst_fwd, take, 9) > 0 {}
            let copies = drain(io.copies());
            prop_assert_eq!(&copies, &drain(&mut single_q));
            prop_assert_eq!(burst_fwd.stats(), single_fwd.stats());
            for (_, bytes) in &copies {
                let Ok(Message::Block(b)) = Message::parse(bytes) else {
                    return Err(TestCaseError::fail("a copy that is not a BLOCK"));
                };
                let genuine = vec![(b.batch * 16 + u64::from(b.index)) as u8; 500];
                prop_assert_eq!(b.payload, &genuine[..]);
                prop_assert_eq!(u64::from(b.club), b.seq % CLUBS);
            }
        }
    }
}

/// The first block of `signed` with its batch timestamp changed: the
/// signature no longer covers what the block says.
fn resigned_timestamp(signed: &SignedBatch) -> Vec<u8> {
    let hop = HopFields {
        club: (signed.seq(0) % CLUBS) as u16,
        sent_at_us: 5,
        delay_threshold_ms: 1_000,
        bitrate_kbps: 2_000,
    };
    let mut block = signed.block(0, full(), hop);
    let sig = block.signature.expect("a full plan carries the signature");
    block.signature = Some(BatchSignature {
        timestamp_us: sig.timestamp_us + 1,
        ..sig
    });
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = Message::Block(block).encode(&mut buf).expect("encodes");
    buf[..len].to_vec()
}

/// A receive burst that starts four new batches has their four signatures
/// checked at once, and every block goes out; when one of them is forged
/// the joint check fails, each is checked alone, and only the forged one is
/// held back. Every signature computed is counted.
#[test]
fn a_burst_of_new_batches_has_their_signatures_checked_at_once() {
    let mut f = forwarder();
    let mut io = MemIo::new(64, 1024);
    // Block 0 of batch b has seq 16 b: club 0, two subscribers.
    let batches: Vec<SignedBatch> = (10..14).map(batch).collect();
    for signed in &batches {
        assert!(io.push(SENDER, &datagram(signed, 0, None)));
    }
    assert_eq!(forward_batch(&mut io, &mut f, 64, 9), 4);
    assert_eq!(drain(io.copies()).len(), 8);
    let v = f.verifier_stats();
    assert_eq!((v.signature_batches, v.signatures_checked), (1, 4));
    assert_eq!(f.stats().forwarded_blocks, 4);

    let batches: Vec<SignedBatch> = (20..24).map(batch).collect();
    for (i, signed) in batches.iter().enumerate() {
        let d = if i == 2 {
            resigned_timestamp(signed)
        } else {
            datagram(signed, 0, None)
        };
        assert!(io.push(SENDER, &d));
    }
    assert_eq!(forward_batch(&mut io, &mut f, 64, 9), 4);
    let seqs: Vec<u64> = drain(io.copies())
        .iter()
        .map(|(_, bytes)| match Message::parse(bytes) {
            Ok(Message::Block(b)) => b.seq,
            other => panic!("a BLOCK, got {other:?}"),
        })
        .collect();
    assert_eq!(seqs, [320, 320, 336, 336, 368, 368]);
    let v = f.verifier_stats();
    assert_eq!((v.signature_batches, v.signatures_checked), (2, 12));
    let s = f.stats();
    assert_eq!((s.forwarded_blocks, s.forged), (7, 1), "{s:?}");
}
