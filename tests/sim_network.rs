//! The in-memory network: determinism, latency, loss, upload capacity and
//! queue limit, jitter, timers, clock offsets, outages, abrupt leave,
//! injection, and a 2000-node burst, all with small scripted nodes defined
//! here.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use clubcast::roles::{Node, Time, Transmit};
use clubcast::sim::{LinkProfile, NetStats, Network, NodeId};

/// (time, from, to, length) of every delivery, in delivery order.
type Trace = Rc<RefCell<Vec<(Time, SocketAddr, SocketAddr, usize)>>>;

fn addr(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 4000)
}

/// What a probe does when its timer fires.
#[derive(Clone)]
enum OnTimeout {
    /// Nothing more.
    Stop,
    /// Re-arm `period_us` later, `left` more times.
    Rearm { period_us: u64, left: u32 },
    /// Send one datagram to a peer picked from a counter, then re-arm.
    Chatter {
        peers: Vec<SocketAddr>,
        period_us: u64,
    },
    /// Ask to be called again at time 0, forever.
    Spin,
}

/// A scripted test node.
struct Probe {
    addr: SocketAddr,
    trace: Option<Trace>,
    out: VecDeque<Transmit>,
    received: Vec<(Time, SocketAddr, Vec<u8>)>,
    /// Answer every datagram whose first byte is non-zero with the same
    /// bytes, first byte decremented.
    echo: bool,
    timer: Option<Time>,
    timeouts: Vec<Time>,
    on_timeout: OnTimeout,
    counter: u64,
}

impl Probe {
    fn new(addr: SocketAddr) -> Self {
        Probe {
            addr,
            trace: None,
            out: VecDeque::new(),
            received: Vec::new(),
            echo: false,
            timer: None,
            timeouts: Vec::new(),
            on_timeout: OnTimeout::Stop,
            counter: 0,
        }
    }

    fn echo(mut self) -> Self {
        self.echo = true;
        self
    }

    fn traced(mut self, trace: &Trace) -> Self {
        self.trace = Some(trace.clone());
        self
    }

    fn timer(mut self, at: Time, then: OnTimeout) -> Self {
        self.timer = Some(at);
        self.on_timeout = then;
        self
    }

    fn send(&mut self, to: SocketAddr, bytes: &[u8]) {
        self.out
            .push_back(Transmit::new(to, bytes).expect("fits a datagram"));
    }

    fn sending(mut self, to: SocketAddr, bytes: &[u8]) -> Self {
        self.send(to, bytes);
        self
    }

    fn arrival_times(&self) -> Vec<u64> {
        self.received.iter().map(|r| r.0 .0).collect()
    }
}

impl Node for Probe {
    fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        if let Some(trace) = &self.trace {
            trace
                .borrow_mut()
                .push((now, from, self.addr, datagram.len()));
        }
        self.received.push((now, from, datagram.to_vec()));
        if self.echo {
            if let Some((&ttl, rest)) = datagram.split_first() {
                if ttl > 0 {
                    let mut reply = vec![ttl - 1];
                    reply.extend_from_slice(rest);
                    self.send(from, &reply);
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        self.timeouts.push(now);
        self.timer = None;
        match &mut self.on_timeout {
            OnTimeout::Stop => {}
            OnTimeout::Rearm { period_us, left } => {
                if *left > 0 {
                    *left -= 1;
                    self.timer = Some(Time(now.0 + *period_us));
                }
            }
            OnTimeout::Chatter { peers, period_us } => {
                let k = self.counter;
                self.counter += 1;
                let to = peers[(k as usize * 7 + 3) % peers.len()];
                let len = 20 + (k % 50) as usize;
                let period = *period_us;
                let mut bytes = vec![0u8; len];
                bytes[0] = 2; // answered twice along the way
                self.send(to, &bytes);
                self.timer = Some(Time(now.0 + period));
            }
            OnTimeout::Spin => self.timer = Some(Time(0)),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.timer
    }
}

/// Every datagram sent is accounted for exactly once.
fn assert_balanced(net: &Network<Probe>) {
    let s: NetStats = net.stats();
    assert_eq!(
        s.sent,
        s.delivered
            + s.lost
            + s.queue_dropped
            + s.outage_dropped
            + s.to_unknown
            + s.to_removed
            + net.in_flight() as u64,
        "{s:?}"
    );
}

/// A chatty 20-node swarm with jitter and loss; returns its trace.
fn chatter_run(seed: u64) -> (Vec<(Time, SocketAddr, SocketAddr, usize)>, NetStats) {
    let trace: Trace = Rc::default();
    let mut net = Network::new(seed);
    let peers: Vec<SocketAddr> = (1..=20).map(addr).collect();
    let profile = LinkProfile::with_latency_ms(5)
        .jitter_ms(3)
        .loss(0.1)
        .upload(200_000, 4_000);
    for (i, &a) in peers.iter().enumerate() {
        let others: Vec<SocketAddr> = peers.iter().copied().filter(|&p| p != a).collect();
        let node = Probe::new(a).echo().traced(&trace).timer(
            Time(i as u64 * 100),
            OnTimeout::Chatter {
                peers: others,
                period_us: 1_000,
            },
        );
        net.add(a, profile, node);
    }
    net.run_until(Time(200_000));
    assert_balanced(&net);
    let out = trace.borrow().clone();
    (out, net.stats())
}

/// (1) The same seed replays the same deliveries; another seed does not.
#[test]
fn same_seed_same_trace_other_seed_differs() {
    let (a, sa) = chatter_run(7);
    let (b, sb) = chatter_run(7);
    assert!(a.len() > 5_000, "only {} deliveries", a.len());
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    assert!(sa.lost > 0 && sa.delivered > 0);
    let (c, _) = chatter_run(8);
    assert_ne!(a, c);
}

/// (2) 10 ms one way without jitter: the ping lands at exactly +10 ms and
/// the answer at exactly +20 ms.
#[test]
fn latency_is_exact_without_jitter() {
    let mut net = Network::new(1);
    let profile = LinkProfile::with_latency_ms(10);
    net.run_until(Time(3_000));
    let b = net.add(addr(2), profile, Probe::new(addr(2)).echo());
    let a = net.add(
        addr(1),
        profile,
        Probe::new(addr(1)).sending(addr(2), &[1, 42]),
    );
    net.run_until(Time(100_000));
    assert_eq!(
        net.node(b).received,
        vec![(Time(13_000), addr(1), vec![1, 42])]
    );
    assert_eq!(
        net.node(a).received,
        vec![(Time(23_000), addr(2), vec![0, 42])]
    );
    let s = net.stats();
    assert_eq!((s.sent, s.delivered, s.bytes_delivered), (2, 2, 4));
    let sa = net.node_stats(a).unwrap();
    assert_eq!(
        (sa.sent, sa.bytes_sent, sa.received, sa.bytes_received),
        (1, 2, 1, 2)
    );
    assert_eq!(net.now(), Time(100_000));
}

/// Sends `n` datagrams of `len` bytes from one node to another at time 0
/// and runs until everything has landed.
fn blast(seed: u64, profile: LinkProfile, n: usize, len: usize) -> (Network<Probe>, NodeId) {
    let mut net = Network::new(seed);
    let mut sender = Probe::new(addr(1));
    for i in 0..n {
        let mut bytes = vec![0u8; len];
        bytes[..4].copy_from_slice(&(i as u32).to_be_bytes());
        sender.send(addr(2), &bytes);
    }
    let sink = net.add(addr(2), LinkProfile::IDEAL, Probe::new(addr(2)));
    net.add(addr(1), profile, sender);
    net.run_until(Time(10_000_000));
    assert_eq!(net.in_flight(), 0);
    assert_balanced(&net);
    (net, sink)
}

/// (3) About the configured fraction of 10 000 datagrams is lost, the same
/// ones for the same seed; 0 and 1 are exact.
#[test]
fn loss_matches_the_configured_fraction() {
    let profile = LinkProfile::with_latency_ms(1).loss(0.3);
    let (net, sink) = blast(3, profile, 10_000, 8);
    let s = net.stats();
    assert_eq!(s.sent, 10_000);
    assert_eq!(s.lost + s.delivered, 10_000);
    // 3 sigma is about 140.
    assert!((6_750..=7_250).contains(&s.delivered), "{s:?}");
    assert_eq!(net.node_stats(sink).unwrap().received, s.delivered);
    let (again, _) = blast(3, profile, 10_000, 8);
    assert_eq!(again.stats(), s);

    let (none, _) = blast(3, profile.loss(0.0), 1_000, 8);
    assert_eq!(none.stats().delivered, 1_000);
    let (all, _) = blast(3, profile.loss(1.0), 1_000, 8);
    assert_eq!(all.stats().lost, 1_000);
    let (nan, _) = blast(3, profile.loss(f64::NAN), 1_000, 8);
    assert_eq!(nan.stats().delivered, 1_000);
}

/// (4) 100 x 1000 B at 1 MB/s leave one per millisecond, so the last lands
/// at +100 ms + latency; a 10 kB queue keeps 10 and drops 90, and takes
/// datagrams again once it has drained.
#[test]
fn upload_capacity_spreads_and_queue_limit_drops() {
    let profile = LinkProfile::with_latency_ms(5).upload(1_000_000, 1_000_000);
    let (net, sink) = blast(4, profile, 100, 1_000);
    let times = net.node(sink).arrival_times();
    let expected: Vec<u64> = (1..=100).map(|k| k * 1_000 + 5_000).collect();
    assert_eq!(times, expected);
    assert_eq!(net.stats().queue_dropped, 0);

    let small = LinkProfile::with_latency_ms(5).upload(1_000_000, 10_000);
    let (net, sink) = blast(4, small, 100, 1_000);
    let s = net.stats();
    assert_eq!((s.delivered, s.queue_dropped), (10, 90), "{s:?}");
    assert_eq!(
        net.node_stats(net.id_of(addr(1)).unwrap())
            .unwrap()
            .queue_dropped,
        90
    );
    assert_eq!(*net.node(sink).arrival_times().last().unwrap(), 15_000);

    // Once drained, the queue takes datagrams again.
    let mut net = net;
    let sender = net.id_of(addr(1)).unwrap();
    net.node_mut(sender).send(addr(2), &[7; 1_000]);
    net.run_until(Time(20_000_000));
    assert_eq!(
        *net.node(sink).arrival_times().last().unwrap(),
        10_000_000 + 1_000 + 5_000
    );
    assert_eq!(net.stats().delivered, 11);
}

/// (5) Jitter lets later datagrams overtake earlier ones, within bounds;
/// without it order is kept.
#[test]
fn jitter_reorders_within_bounds() {
    let order = |net: &Network<Probe>, sink: NodeId| -> Vec<u32> {
        net.node(sink)
            .received
            .iter()
            .map(|(_, _, b)| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let profile = LinkProfile::with_latency_ms(10).jitter_ms(5);
    let (net, sink) = blast(5, profile, 1_000, 16);
    let seq = order(&net, sink);
    assert_eq!(seq.len(), 1_000);
    let inversions = seq.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 100, "only {inversions} inversions");
    for t in net.node(sink).arrival_times() {
        assert!((10_000..=15_000).contains(&t), "{t}");
    }

    let (net, sink) = blast(5, LinkProfile::with_latency_ms(10), 1_000, 16);
    assert_eq!(order(&net, sink), (0..1_000).collect::<Vec<_>>());
}

/// (6) Timers fire exactly when asked, re-arm, follow changes made from
/// outside, and a node asking for the past forever cannot stall time.
#[test]
fn timers_fire_exactly_and_rearm() {
    let mut net = Network::new(6);
    let a = net.add(
        addr(1),
        LinkProfile::IDEAL,
        Probe::new(addr(1)).timer(
            Time(5_000),
            OnTimeout::Rearm {
                period_us: 5_000,
                left: 2,
            },
        ),
    );
    net.run_until(Time(4_999));
    assert!(net.node(a).timeouts.is_empty());
    net.run_until(Time(100_000));
    assert_eq!(
        net.node(a).timeouts,
        vec![Time(5_000), Time(10_000), Time(15_000)]
    );
    assert_eq!(net.node_stats(a).unwrap().timeouts, 3);

    // Moved earlier from outside: fires at the new time only.
    let b = net.add(
        addr(2),
        LinkProfile::IDEAL,
        Probe::new(addr(2)).timer(Time(300_000), OnTimeout::Stop),
    );
    net.node_mut(b).timer = Some(Time(120_000));
    net.run_until(Time(1_000_000));
    assert_eq!(net.node(b).timeouts, vec![Time(120_000)]);

    // Moved later: the earlier pending event does not call the node.
    net.node_mut(b).timer = Some(Time(1_010_000));
    net.run_until(Time(1_005_000));
    net.node_mut(b).timer = Some(Time(1_030_000));
    net.run_until(Time(2_000_000));
    assert_eq!(net.node(b).timeouts, vec![Time(120_000), Time(1_030_000)]);

    // A deadline in the past fires now.
    net.node_mut(b).timer = Some(Time(3));
    net.run_until(Time(2_000_000));
    assert_eq!(net.node(b).timeouts.last(), Some(&Time(2_000_000)));

    // A node always asking for time 0 is called at most once a microsecond.
    let c = net.add(
        addr(3),
        LinkProfile::IDEAL,
        Probe::new(addr(3)).timer(Time(0), OnTimeout::Spin),
    );
    net.run_until(Time(2_001_000));
    let n = net.node(c).timeouts.len();
    assert!((1_000..=1_001).contains(&n), "{n}");
    assert!(net.remove(c).is_some());
    net.run_until(Time(3_000_000));
    assert_eq!(net.len(), 2);
}

/// A node whose clock is offset sees every time shifted by the offset,
/// and its timers, asked on its own clock, fire at the right moment of the
/// network's.
#[test]
fn a_skewed_clock_shifts_what_a_node_sees_and_not_when_its_timers_fire() {
    let mut net = Network::new(8);
    let a = net.add(
        addr(1),
        LinkProfile::with_latency_ms(1),
        Probe::new(addr(1)),
    );
    let b = net.add(
        addr(2),
        LinkProfile::with_latency_ms(1),
        Probe::new(addr(2)).echo(),
    );
    assert!(net.set_clock_offset(b, 30_000_000));
    // B's timer, asked for at its own 30.005 s, fires at network 5 ms.
    net.node_mut(b).timer = Some(Time(30_005_000));
    net.node_mut(a).send(addr(2), &[1, 7]);
    net.run_until(Time(100_000));
    assert_eq!(net.node(b).timeouts, vec![Time(30_005_000)]);
    // B received at network 1 ms, which it saw as 30.001 s; A got the
    // echo at network 2 ms on its own clock.
    assert_eq!(net.node(b).arrival_times(), vec![30_001_000]);
    assert_eq!(net.node(a).arrival_times(), vec![2_000]);
    // A clock behind saturates at 0 rather than wrapping.
    assert!(net.set_clock_offset(a, -1_000_000_000));
    net.node_mut(b).send(addr(1), &[0]);
    net.run_until(Time(200_000));
    assert_eq!(net.node(a).arrival_times(), vec![2_000, 0]);
}

/// An outage loses what the node sends and what arrives for it while it
/// lasts, counted apart, and the link works again afterwards.
#[test]
fn an_outage_loses_both_directions_until_it_ends() {
    let mut net = Network::new(9);
    let a = net.add(
        addr(1),
        LinkProfile::with_latency_ms(1),
        Probe::new(addr(1)),
    );
    let b = net.add(
        addr(2),
        LinkProfile::with_latency_ms(1),
        Probe::new(addr(2)),
    );
    assert!(net.set_outage(b, Time(1_000_000)));
    net.node_mut(a).send(addr(2), &[1]);
    net.node_mut(b).send(addr(1), &[2]);
    net.run_until(Time(999_000));
    // Sent into the outage just before it ends: arrives after, delivered.
    net.node_mut(a).send(addr(2), &[3]);
    net.run_until(Time(2_000_000));
    net.node_mut(b).send(addr(1), &[4]);
    net.run_until(Time(3_000_000));
    let got = |id| -> Vec<Vec<u8>> { net.node(id).received.iter().map(|r| r.2.clone()).collect() };
    assert_eq!(got(b), vec![vec![3]]);
    assert_eq!(got(a), vec![vec![4]]);
    assert_eq!(net.stats().outage_dropped, 2);
    assert_eq!(net.node_stats(b).unwrap().outage_dropped, 2);
    assert_balanced(&net);
}

/// (7) An abrupt leave: datagrams on the way to the removed node are
/// dropped and counted, the rest (its own included) still land; a node
/// that later takes the address gets what arrives after.
#[test]
fn removed_node_gets_nothing_and_others_continue() {
    let mut net = Network::new(7);
    let p = LinkProfile::with_latency_ms(10);
    let b = net.add(addr(2), p, Probe::new(addr(2)).sending(addr(3), b"from b"));
    let c = net.add(addr(3), p, Probe::new(addr(3)));
    let a = net.add(
        addr(1),
        p,
        Probe::new(addr(1))
            .sending(addr(2), b"to b")
            .sending(addr(3), b"to c")
            .sending(addr(1), b"to self")
            .sending(addr(99), b"to nobody"),
    );
    net.run_until(Time(5_000));
    let gone = net.remove(b).expect("was there");
    assert!(gone.received.is_empty());
    assert!(net.remove(b).is_none());
    assert!(net.get(b).is_none() && net.node_stats(b).is_none());
    net.run_until(Time(50_000));
    let s = net.stats();
    assert_eq!(
        (s.sent, s.delivered, s.to_removed, s.to_unknown),
        (5, 3, 1, 1),
        "{s:?}"
    );
    assert_balanced(&net);
    let from: Vec<SocketAddr> = net.node(c).received.iter().map(|r| r.1).collect();
    assert_eq!(from, vec![addr(2), addr(1)]);
    assert_eq!(net.node(a).received.len(), 1);
    assert_eq!(
        net.nodes().map(|(id, ..)| id).collect::<Vec<_>>(),
        vec![c, a]
    );

    // Re-using the address: a new node (new id) gets later arrivals.
    net.node_mut(a).send(addr(2), b"again");
    net.run_until(Time(52_000));
    let b2 = net.add(addr(2), p, Probe::new(addr(2)));
    assert_ne!(b, b2);
    net.run_until(Time(100_000));
    assert_eq!(net.node(b2).received.len(), 1);
    assert_eq!(net.id_of(addr(2)), Some(b2));
}

/// Injected datagrams of any length reach the node now; an unknown
/// address takes nothing.
#[test]
fn inject_delivers_now_and_any_length() {
    let mut net = Network::new(9);
    let a = net.add(
        addr(1),
        LinkProfile::with_latency_ms(3),
        Probe::new(addr(1)).echo(),
    );
    net.run_until(Time(1_000));
    assert!(net.inject(addr(50), addr(1), &[1, 2, 3]));
    assert!(net.inject(addr(50), addr(1), &vec![0u8; 70_000]));
    assert!(net.inject(addr(50), addr(1), &[]));
    assert!(!net.inject(addr(50), addr(77), &[1]));
    let got: Vec<(Time, usize)> = net
        .node(a)
        .received
        .iter()
        .map(|r| (r.0, r.2.len()))
        .collect();
    assert_eq!(
        got,
        vec![(Time(1_000), 3), (Time(1_000), 70_000), (Time(1_000), 0)]
    );
    // The echo to the forged sender has nowhere to go.
    net.run_until(Time(10_000));
    let s = net.stats();
    assert_eq!((s.injected, s.sent, s.to_unknown), (3, 1, 1));
    assert!(net
        .try_add(addr(1), LinkProfile::IDEAL, Probe::new(addr(1)))
        .is_err());

    // Sends queued through nodes_mut leave when the network next runs.
    let b = net.add(addr(2), LinkProfile::IDEAL, Probe::new(addr(2)));
    for (_, _, n) in net.nodes_mut() {
        n.send(addr(2), b"hello");
    }
    net.run_until(Time(20_000));
    let got: Vec<(Time, SocketAddr)> = net.node(b).received.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(got, vec![(Time(10_000), addr(2)), (Time(13_000), addr(1))]);
}

/// (8) 2000 nodes each send 10 datagrams to one sink that answers all of
/// them; everything lands, quickly.
#[test]
fn two_thousand_nodes_all_to_one() {
    let start = std::time::Instant::now();
    let mut net = Network::new(8);
    let sink = net.add(
        addr(1),
        LinkProfile::with_latency_ms(20).jitter_ms(5),
        Probe::new(addr(1)).echo(),
    );
    let profile = LinkProfile::with_latency_ms(20)
        .jitter_ms(10)
        .upload(1_000_000, 100_000);
    for i in 0..2_000u32 {
        let mut p = Probe::new(addr(10 + i));
        for k in 0..10u8 {
            p.send(addr(1), &[1, k, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        net.add(addr(10 + i), profile, p);
    }
    net.run_until(Time(1_000_000));
    let s = net.stats();
    assert_eq!(s.sent, 40_000);
    assert_eq!(s.delivered, 40_000);
    assert_eq!(net.node(sink).received.len(), 20_000);
    assert!(net
        .nodes()
        .filter(|(id, ..)| *id != sink)
        .all(|(_, _, n)| n.received.len() == 10));
    let took = start.elapsed();
    if !cfg!(debug_assertions) {
        assert!(took.as_secs_f64() < 2.0, "took {took:?}");
    }
}

/// 500 chatty nodes over lossy, jittery, capacity-limited links for 2
/// simulated seconds: every datagram is accounted for.
#[test]
fn many_chatty_nodes_keep_the_counters_balanced() {
    let start = std::time::Instant::now();
    let mut net = Network::new(10);
    let peers: Vec<SocketAddr> = (1..=500).map(addr).collect();
    let profile = LinkProfile::with_latency_ms(30)
        .jitter_ms(10)
        .loss(0.01)
        .upload(2_000_000, 200_000);
    for (i, &a) in peers.iter().enumerate() {
        let others: Vec<SocketAddr> = peers
            .iter()
            .copied()
            .skip(i % 450)
            .take(50)
            .filter(|&p| p != a)
            .collect();
        let node = Probe::new(a).echo().timer(
            Time(i as u64),
            OnTimeout::Chatter {
                peers: others,
                period_us: 20_000,
            },
        );
        net.add(a, profile, node);
    }
    net.run_until(Time(2_000_000));
    let s = net.stats();
    assert!(s.lost > 0 && s.delivered > 100_000, "{s:?}");
    let events = s.sent + s.delivered + s.timeouts;
    let took = start.elapsed();
    println!(
        "{events} sends, deliveries and timer calls ({} sent, {} delivered, {} timeouts) in {took:?}: {:.2} M/s",
        s.sent,
        s.delivered,
        s.timeouts,
        events as f64 / took.as_secs_f64() / 1e6
    );
    assert_balanced(&net);
}
