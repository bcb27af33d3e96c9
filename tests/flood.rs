//! A forged-BLOCK flood at a live peer: 20,000 forged blocks a second, each
//! of a batch never seen (so each would need a signature check), sent to
//! one viewer of a loopback swarm (tracker, source, six viewers) for 6 s
//! from a socket with no connection, each with a guessed block tag. Every
//! viewer keeps playing, the flooded one included, every forgery is
//! dropped before any signature check (none has the tag the peer gave the
//! attacker's address), and the swarm thread's CPU per forged datagram is
//! printed (measured as its CPU time over the flood less its CPU time over
//! as long a window without one, per datagram sent).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clubcast::auth::signer::HopFields;
use clubcast::auth::{BatchSigner, ProofPlan, SourceKey};
use clubcast::swarm::loopback::Shard;
use clubcast::swarm::SwarmSummary;
use clubcast::wire::{Message, StreamTag, MAX_DATAGRAM};

const CLUBS: u16 = 12;
const FLOOD_PER_S: u64 = 20_000;
const WINDOW: Duration = Duration::from_secs(6);

fn thread_cpu_s() -> f64 {
    // SAFETY: getrusage(2) into a zeroed struct on this stack frame.
    let mut ru: nix::libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { nix::libc::getrusage(nix::libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6
}

/// Forged blocks of `tag`: genuinely shaped, signed by another key, one
/// block per batch, each batch number new, each with a guessed block tag.
fn forgeries(tag: StreamTag, n: u64) -> Vec<Vec<u8>> {
    let forger = BatchSigner::new(SourceKey::from_seed(&[0xEE; 32]));
    let full = ProofPlan {
        signature: true,
        hashes: 16,
    };
    (0..n)
        .map(|i| {
            let b = 1_000_000 + i;
            let payload = vec![i as u8; 900];
            let signed = forger.sign(b, b, 0, &[&payload]).expect("signs");
            let mut block = signed.block(
                0,
                full,
                HopFields {
                    club: (b % u64::from(CLUBS)) as u16,
                    ..HopFields::default()
                },
            );
            block.stream = tag;
            block.tag = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let len = Message::Block(block).encode(&mut buf).expect("encodes");
            buf.truncate(len);
            buf
        })
        .collect()
}

#[test]
fn a_forged_flood_at_a_peer_costs_little_and_everyone_plays() {
    let key = SourceKey::from_seed(&[43; 32]);
    let stream = key.stream_id();
    let tag = StreamTag::of_key(&stream.to_bytes());
    let mut shard = Shard::new().expect("driver");
    let tracker = shard.add_tracker(stream, CLUBS, 1).expect("tracker");
    shard
        .add_source(key, tracker, CLUBS, 2_000_000, 2)
        .expect("source");
    let mut victim = None;
    for seed in 0..6 {
        let id = shard.add_peer(stream, tracker, 200 + seed).expect("peer");
        victim.get_or_insert(shard.local_addr(id).expect("address"));
    }
    let victim = victim.expect("a peer");
    let pool = forgeries(tag, 2_000);

    // 0: warm-up, 1: quiet window, 2: flood window, 3: stop.
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let swarm = {
        let (phase, stop) = (Arc::clone(&phase), Arc::clone(&stop));
        thread::spawn(move || {
            let mut cpu = [0f64; 4];
            let mut seen = 0u8;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let p = phase.load(Ordering::Relaxed);
                if p != seen {
                    cpu[usize::from(p)] = thread_cpu_s();
                    seen = p;
                }
                let until = Instant::now() + Duration::from_millis(20);
                shard
                    .run_until(until, &AtomicBool::new(false))
                    .expect("driver runs");
            }
            cpu[3] = thread_cpu_s();
            (shard, cpu, started.elapsed().as_secs_f64())
        })
    };
    thread::sleep(Duration::from_secs(3));
    phase.store(1, Ordering::Relaxed);
    thread::sleep(WINDOW);
    phase.store(2, Ordering::Relaxed);
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("attacker");
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < WINDOW {
        let due = (start.elapsed().as_secs_f64() * FLOOD_PER_S as f64) as u64;
        while sent < due {
            let d = &pool[(sent % pool.len() as u64) as usize];
            let _ = attacker.send_to(d, victim);
            sent += 1;
        }
        thread::sleep(Duration::from_micros(200));
    }
    phase.store(3, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (shard, cpu, elapsed) = swarm.join().expect("the swarm thread");

    let quiet = cpu[2] - cpu[1];
    let flood = cpu[3] - cpu[2];
    let per_datagram_us = (flood - quiet).max(0.0) / sent as f64 * 1e6;
    let peers: Vec<_> = shard.peers().map(|(_, p)| p).collect();
    let s = SwarmSummary::of(peers.iter().copied(), shard.source_peer(), elapsed, 2_000);
    let v = peers
        .iter()
        .find(|p| p.stats().blocks_wrong_tag > 0)
        .map(|p| p.stats())
        .expect("the flooded peer dropped the forgeries");
    println!(
        "flood: {sent} forged datagrams in {:.1} s; swarm thread CPU {flood:.2} s against {quiet:.2} s \
         quiet: {per_datagram_us:.2} us per forged datagram; flooded peer: {} without its tag, \
         {} checked and rejected, {} refused before a check, {} from a banned sender; {}",
        WINDOW.as_secs_f64(),
        v.blocks_wrong_tag,
        v.forged_rejected,
        v.signature_checks_refused,
        v.blocks_from_banned,
        s.to_json()
    );
    assert!(s.continuity_min >= 0.99, "{}", s.to_json());
    // No guessed tag is right, so no forgery costs a check.
    assert_eq!(v.forged_rejected, 0, "{v:?}");
    assert!(v.blocks_wrong_tag >= sent * 9 / 10, "{v:?}");
}
