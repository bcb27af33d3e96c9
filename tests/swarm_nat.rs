//! Peers behind home routers, in the deterministic simulator: 30 peers at
//! 2 Mbit/s for 60 s, 20% public, 60% behind four routers that keep one
//! mapping per private address (endpoint-independent mapping, address-
//! and-port-dependent filtering: Linux `masquerade`), 20% behind two that
//! map every destination to a port of its own (symmetric: `masquerade
//! fully-random`); no router hairpins. Late joiners of every class come
//! at 35 s. Each class must play with continuity >= 0.999 and start within
//! 2 s, every peer must play at least 99.9% of every club's blocks, and
//! peers behind endpoint-independent routers must carry at least 80% as
//! many uploads as public peers.

use std::collections::BTreeMap;

use clubcast::roles::Time;
use clubcast::sim::{Impairment, LinkProfile, NatKind, NodeId, SimSwarm};

const BITRATE: u64 = 2_000_000;
const SECONDS: u64 = 60;
const LATE_AT_S: u64 = 35;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Public,
    EndpointIndependent,
    Symmetric,
}

/// Per class: (worst continuity, slowest start ms, mean uploads held (over
/// time for the early peers, at the end for late joiners), worst share of a club's blocks due that played, never started).
type ClassFigures = (f64, u64, f64, f64, usize);

/// Per peer: (continuity, start ms, uploads held, worst club share,
/// started).
type PeerFigures = (f64, u64, f64, f64, bool);

fn run(
    seed: u64,
) -> (
    BTreeMap<Class, ClassFigures>,
    BTreeMap<Class, ClassFigures>,
    SimSwarm,
) {
    let link = || Impairment::link(LinkProfile::with_latency_ms(10).jitter_ms(2));
    let mut s = SimSwarm::new(seed, BITRATE, LinkProfile::with_latency_ms(10));
    let eim: Vec<_> = (0..4).map(|_| s.add_nat(NatKind::PortPreserving)).collect();
    let sym: Vec<_> = (0..2).map(|_| s.add_nat(NatKind::Symmetric)).collect();
    let mut early: Vec<(NodeId, Class)> = Vec::new();
    for i in 0..30usize {
        let (id, class) = match i % 5 {
            0 => (s.add_peer(link()), Class::Public),
            4 => (s.add_peer_behind(sym[i / 5 % 2], link()), Class::Symmetric),
            _ => (
                s.add_peer_behind(eim[i % 4], link()),
                Class::EndpointIndependent,
            ),
        };
        early.push((id, class));
    }
    // Uploads held by each early peer, summed over samples every 5 s
    // from 20 s on: a mean over time, not one snapshot.
    let mut held = vec![0usize; early.len()];
    let mut samples = 0usize;
    let sample = |s: &SimSwarm, held: &mut Vec<usize>| {
        for (h, (id, _)) in held.iter_mut().zip(&early) {
            *h += s
                .net
                .node(*id)
                .viewer()
                .map_or(0, |p| p.connections().uploads.len());
        }
    };
    for t in (20..=LATE_AT_S).step_by(5) {
        s.run_until(Time(t * 1_000_000));
        sample(&s, &mut held);
        samples += 1;
    }
    let late = vec![
        (s.add_peer(link()), Class::Public),
        (
            s.add_peer_behind(eim[0], link()),
            Class::EndpointIndependent,
        ),
        (
            s.add_peer_behind(eim[3], link()),
            Class::EndpointIndependent,
        ),
        (s.add_peer_behind(sym[1], link()), Class::Symmetric),
    ];
    for t in (LATE_AT_S + 5..=SECONDS).step_by(5) {
        s.run_until(Time(t * 1_000_000));
        sample(&s, &mut held);
        samples += 1;
    }
    let figures = |set: &[(NodeId, Class)], held: Option<&[usize]>| {
        let mut by: BTreeMap<Class, Vec<PeerFigures>> = BTreeMap::new();
        for (i, (id, class)) in set.iter().enumerate() {
            let p = s.net.node(*id).viewer().expect("a viewer");
            let ps = p.playout_stats();
            let start = p
                .playback_started_at()
                .map_or(u64::MAX, |t| (t.0 - p.started_at().0) / 1000);
            // Per club, the share of its blocks due that played: a
            // club's share of the blocks due is a twelfth.
            let due = (ps.on_time + ps.late + ps.skipped) as f64 / 12.0;
            let share = (0..12)
                .map(|k| {
                    let skipped = p.club_skipped().get(k).copied().unwrap_or(0) as f64;
                    if due > 0.0 {
                        1.0 - skipped / due
                    } else {
                        0.0
                    }
                })
                .fold(1.0, f64::min);
            by.entry(*class).or_default().push((
                ps.continuity(),
                start,
                held.map_or(p.connections().uploads.len() as f64, |h| {
                    h[i] as f64 / samples as f64
                }),
                share,
                ps.started,
            ));
        }
        by.into_iter()
            .map(|(class, v)| {
                let worst = v.iter().map(|x| x.0).fold(1.0, f64::min);
                let slowest = v.iter().map(|x| x.1).max().unwrap_or(0);
                let uploads = v.iter().map(|x| x.2).sum::<f64>() / v.len() as f64;
                let share = v.iter().map(|x| x.3).fold(1.0, f64::min);
                let never = v.iter().filter(|x| !x.4).count();
                (class, (worst, slowest, uploads, share, never))
            })
            .collect::<BTreeMap<_, _>>()
    };
    (figures(&early, Some(&held)), figures(&late, None), s)
}

#[test]
fn a_swarm_mostly_behind_nat_plays_in_every_class() {
    let (early, late, s) = run(7);
    for (name, set) in [("early", &early), ("late", &late)] {
        for (class, (worst, slowest, uploads, share, never)) in set {
            println!(
                "{name} {class:?}: continuity min {worst:.4}, slowest start {slowest} ms, uploads mean {uploads:.1}, worst club share {share:.4}, never started {never}"
            );
        }
    }
    let t = s.net.node(s.tracker).tracker().map(|t| t.stats());
    println!("tracker: {t:?}");
    for (name, set) in [("early", &early), ("late", &late)] {
        for (class, (worst, slowest, _, share, never)) in set {
            assert_eq!(*never, 0, "{name} {class:?}: peers never started");
            assert!(*worst >= 0.999, "{name} {class:?}: continuity {worst:.4}");
            assert!(
                *slowest <= 2_000,
                "{name} {class:?}: started after {slowest} ms"
            );
            assert!(
                *share >= 0.999,
                "{name} {class:?}: a club at {share:.4} of the best"
            );
        }
    }
    // Peers behind endpoint-independent routers carry at least 80% as
    // many uploads as public ones, on average over the run (seeds 1-9
    // give 1.14-1.27): public uploaders are left to the peers behind
    // symmetric routers, who can reach no one else.
    let (public, eim) = (
        early[&Class::Public].2,
        early[&Class::EndpointIndependent].2,
    );
    println!(
        "uploads: endpoint-independent / public = {:.2}",
        eim / public
    );
    assert!(
        eim >= 0.8 * public,
        "peers behind endpoint-independent routers upload {eim:.1} on average, public ones {public:.1}"
    );
}

/// Two peers behind two different endpoint-independent routers, in the
/// same clubs, connect to each other directly: the tracker's PUNCH makes
/// the one listed first ping the newcomer, which opens its mapping. Without
/// the punch the first never learns of the second, whose PINGs its router
/// drops.
#[test]
fn two_peers_behind_two_routers_connect_directly() {
    let mut s = SimSwarm::new(3, 500_000, LinkProfile::with_latency_ms(10));
    let (r1, r2) = (
        s.add_nat(NatKind::PortPreserving),
        s.add_nat(NatKind::PortPreserving),
    );
    let link = Impairment::link(LinkProfile::with_latency_ms(10));
    let mut cfg = s.peer_config();
    cfg.clubs = Some(vec![0, 1]);
    let a = s.add_peer_behind_with(r1, cfg.clone(), link);
    s.run_until(Time(2_000_000));
    cfg.peer_id += 1;
    let b = s.add_peer_behind_with(r2, cfg, link);
    let public = |s: &SimSwarm, nat| s.net.nat_ip(nat).expect("a router");
    let links = |p: &clubcast::roles::Peer, ip| {
        let c = p.connections();
        c.downloads.iter().filter(|d| d.from.ip() == ip).count()
            + c.uploads.iter().filter(|u| u.to.ip() == ip).count()
    };
    // Step until a and b hold connections with each other.
    let mut connected_after_ms = None;
    for step in 1..=100u64 {
        s.run_until(Time(2_000_000 + step * 100_000));
        let pa = s.net.node(a).viewer().expect("a");
        let pb = s.net.node(b).viewer().expect("b");
        if links(pa, public(&s, r2)) > 0 && links(pb, public(&s, r1)) > 0 {
            connected_after_ms = Some(step * 100);
            break;
        }
    }
    let pa = s.net.node(a).viewer().expect("a");
    println!(
        "a-b connected {connected_after_ms:?} ms after b joined; a answered {} PUNCHes",
        pa.stats().punches_answered,
    );
    // With the tracker's PUNCH, a pings b at once and they connect within a
    // second; without it a learns of b only from someone's CLUB_PEERS, and
    // they connect seconds later, if at all.
    let after = connected_after_ms.expect("no direct connection between the two routers");
    assert!(after <= 1_000, "connected only {after} ms after b joined");
    assert!(pa.stats().punches_answered >= 1, "a was never punched");
}

/// A tracker restart with peers behind routers: the new tracker knows
/// nobody, the peers' HEARTBEATs get RETRYs and they join again, the swarm
/// plays on, and newcomers behind routers join through the new tracker
/// and start within 2 s.
#[test]
fn a_tracker_restart_leaves_the_natted_swarm_playing() {
    let link = || Impairment::link(LinkProfile::with_latency_ms(10).jitter_ms(2));
    let mut s = SimSwarm::new(11, BITRATE, LinkProfile::with_latency_ms(10));
    let eim: Vec<_> = (0..3).map(|_| s.add_nat(NatKind::PortPreserving)).collect();
    let sym = s.add_nat(NatKind::Symmetric);
    let mut peers = Vec::new();
    for i in 0..15usize {
        peers.push(match i % 5 {
            0 => s.add_peer(link()),
            4 => s.add_peer_behind(sym, link()),
            _ => s.add_peer_behind(eim[i % 3], link()),
        });
    }
    s.run_until(Time(10_000_000));
    s.restart_tracker(99);
    s.run_until(Time(12_000_000));
    let newcomers = [
        s.add_peer_behind(eim[0], link()),
        s.add_peer_behind(eim[2], link()),
        s.add_peer_behind(sym, link()),
    ];
    s.run_until(Time(30_000_000));
    let t = s.net.node(s.tracker).tracker().expect("the tracker");
    println!(
        "after the restart: tracker lists {}, stats {:?}",
        t.peer_count(),
        t.stats()
    );
    assert!(
        t.peer_count() >= 18,
        "the new tracker lists {}",
        t.peer_count()
    );
    for id in peers.iter().chain(&newcomers) {
        let p = s.net.node(*id).viewer().expect("a viewer");
        let c = p.playout_stats().continuity();
        assert!(c >= 0.999, "a peer fell to {c:.4}");
    }
    for id in newcomers {
        let p = s.net.node(id).viewer().expect("a newcomer");
        let start = p
            .playback_started_at()
            .map(|t| (t.0 - p.started_at().0) / 1000);
        println!("newcomer started after {start:?} ms");
        assert!(start.is_some_and(|ms| ms <= 2_000), "{start:?}");
    }
}
