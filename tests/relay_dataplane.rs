//! The relay's data plane end to end: real signed BLOCKs over veth into the
//! AF_XDP worker, and fanned-out copies back to subscribers' UDP sockets.
//!
//! Topology, built afresh by each test and gone when it ends (no named
//! namespace, nothing left on the host even on failure):
//!
//! ```text
//!   relay netns (test thread)              peer netns (helper thread)
//!   ccdp-r0  02:cc:0:0:1:1  10.78.0.1  <-veth->  ccdp-s0  02:cc:0:0:1:2
//!     XDP steering program (native)               10.78.0.2   sender
//!     AF_XDP socket, queue 0, copy mode           10.78.0.11/.12 club 0 subscribers
//!     kernel UDP socket 10.78.0.1:7410            10.78.0.21/.22 club 1 subscribers
//! ```
//!
//! An AF_XDP socket transmits out of the interface it is bound to, so the
//! sender and every subscriber sit behind the same veth, on addresses of one
//! peer namespace: the relay's copies go back out of `r0` to `s0`'s MAC with
//! each subscriber's IP. Two namespaces, not one, because with both ends in
//! one namespace the kernel would route between local addresses over `lo`
//! and no frame would cross the veth. The peer namespace is made by a helper
//! thread's `unshare(CLONE_NEWNET)`; `s0` is moved into it by thread id; the
//! sockets it creates there are handed back and keep their namespace.
//!
//! The source side uses the real signer and a `ProofLedger`, so the relay
//! receives only the proof hashes it lacks and must add the full path from
//! its verifier cache; each subscriber checks every copy alone with a fresh
//! `BatchVerifier`.
//!
//! These tests need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for the
//! namespaces). Without it they fail under `CI=true` and otherwise print
//! `SKIPPED` with the reason and return. The binary counts heap allocations
//! per thread with its own global allocator, to prove the worker's loop
//! allocates nothing.

#[path = "support/netns.rs"]
mod netns;

use netns::{
    configure_side, enter_private_netns, ip, start_namespace, veth_pair_up, NamespaceThread,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clubcast::auth::signer::HopFields;
use clubcast::auth::tree::Path;
use clubcast::auth::{
    BatchSigner, BatchVerifier, ProofLedger, ProofPlan, SignedBatch, SourceKey, StreamId,
};
use clubcast::relay::{
    fanout_channel, BindMode, FanoutLimits, FanoutPublisher, FanoutTable, IdlePolicy,
    LocalEndpoint, SteerCounters, SteeringProgram, Subscriber, Uplink, Worker, WorkerConfig,
    WorkerShare, XdpAttachment, XdpMode, XskConfig, XskError, XskSocket,
};
use clubcast::wire::{Block, KeepAlive, Message, StreamTag, MAX_DATAGRAM};

// ---------------------------------------------------------------------------
// Allocation counting
// ---------------------------------------------------------------------------

/// The system allocator, counting allocations (and reallocations) per
/// thread.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    // `try_with`: a thread being torn down may allocate after its
    // thread-locals are gone.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`; the counter is a
// const-initialised thread-local `Cell` without a destructor, which neither
// allocates nor registers anything when touched.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by the calling thread so far.
fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------

macro_rules! require_privileges {
    ($name:literal) => {
        if !netns::privileged($name, "AF_XDP, XDP programs and network namespaces need root (run `sudo -E cargo test --test relay_dataplane`)") {
            return;
        }
    };
}

// ---------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------

const RELAY_PORT: u16 = 7410;
const SUBSCRIBER_PORT: u16 = 9100;
const RELAY_IF: &str = "ccdp-r0";
const PEER_IF: &str = "ccdp-s0";
const RELAY_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 1, 1];
const PEER_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 1, 2];
const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const SENDER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// Subscribers: (club, address) on the peer side.
const SUBSCRIBERS: [(u16, Ipv4Addr); 4] = [
    (0, Ipv4Addr::new(10, 78, 0, 11)),
    (0, Ipv4Addr::new(10, 78, 0, 12)),
    (1, Ipv4Addr::new(10, 78, 0, 21)),
    (1, Ipv4Addr::new(10, 78, 0, 22)),
];
/// Clubs of the stream: block n belongs to club n mod CLUBS [0040]; clubs
/// 2 and 3 have no subscriber at the relay.
const CLUBS: u64 = 4;
/// Blocks per signed batch (the crate default).
const BATCH_BLOCKS: u64 = 16;
/// Receive buffer of each subscriber socket: room for every copy of a test
/// run even if nobody reads until the end.
const SUBSCRIBER_RCVBUF: usize = 8 << 20;

/// The sockets of the peer namespace: one sender and the subscribers.
struct PeerSockets {
    sender: UdpSocket,
    /// (club, address, socket).
    subscribers: Vec<(u16, SocketAddrV4, UdpSocket)>,
}

/// Makes the peer namespace, moves `PEER_IF` (which must exist in the
/// caller's namespace) into it, configures it and returns its sockets.
fn start_peer_namespace() -> (NamespaceThread, PeerSockets) {
    start_namespace(PEER_IF, move || {
        configure_side(
            PEER_IF,
            SUBSCRIBERS.iter().map(|&(_, a)| a).chain([SENDER_IP]),
            RELAY_IP,
            RELAY_MAC,
        );
        let sender = UdpSocket::bind((SENDER_IP, 0)).expect("bind the sender");
        sender
            .connect((RELAY_IP, RELAY_PORT))
            .expect("connect the sender");
        let subscribers = SUBSCRIBERS
            .iter()
            .map(|&(club, ip)| {
                let addr = SocketAddrV4::new(ip, SUBSCRIBER_PORT);
                let socket = UdpSocket::bind(addr).expect("bind a subscriber");
                nix::sys::socket::setsockopt(
                    &socket,
                    nix::sys::socket::sockopt::RcvBufForce,
                    &SUBSCRIBER_RCVBUF,
                )
                .expect("SO_RCVBUFFORCE");
                (club, addr, socket)
            })
            .collect();
        PeerSockets {
            sender,
            subscribers,
        }
    })
}

/// Everything a test drives: the relay's worker (not yet running), its
/// steering program, its kernel socket, and the peer side's sockets.
struct Rig {
    worker: Worker,
    publisher: FanoutPublisher,
    steering: SteeringProgram,
    kernel_socket: UdpSocket,
    peers: PeerSockets,
    // Dropped last, in this order: detach, then end the peer namespace.
    _attachment: XdpAttachment,
    _peer_ns: NamespaceThread,
}

/// Runs `body` on a fresh thread inside a fresh relay namespace with the
/// whole topology up. Everything is torn down when the thread ends.
fn with_rig<T: Send + 'static>(body: impl FnOnce(Rig, Stream) -> T + Send + 'static) -> T {
    with_sized_rig(
        XskConfig {
            bind_mode: BindMode::Copy,
            ..XskConfig::default()
        },
        body,
    )
}

/// [`with_rig`] with the relay's socket sized by `xsk` (copy mode).
fn with_sized_rig<T: Send + 'static>(
    xsk: XskConfig,
    body: impl FnOnce(Rig, Stream) -> T + Send + 'static,
) -> T {
    let thread = thread::spawn(move || {
        enter_private_netns();
        veth_pair_up(RELAY_IF, RELAY_MAC, RELAY_IP, PEER_IF, PEER_MAC);
        let (peer_ns, peers) = start_peer_namespace();

        let stream = Stream::new();
        let steering = SteeringProgram::load(RELAY_PORT).expect("load the steering program");
        let batch = WorkerConfig::default().batch.min(xsk.rx_frames as usize);
        let xsk = XskSocket::open(RELAY_IF, 0, &xsk).expect("bind the relay's AF_XDP socket");
        assert_eq!(xsk.bind_mode(), BindMode::Copy);
        let kernel_socket =
            UdpSocket::bind((RELAY_IP, RELAY_PORT)).expect("bind the relay's kernel socket");
        let (publisher, updates) = fanout_channel(2);
        let worker = Worker::new(
            WorkerConfig {
                idle: IdlePolicy::Yield,
                batch,
                ..WorkerConfig::default()
            },
            xsk,
            &steering,
            LocalEndpoint {
                mac: RELAY_MAC,
                addr: SocketAddrV4::new(RELAY_IP, RELAY_PORT),
            },
            stream.id,
            updates,
        )
        .expect("create the worker");
        let ifindex = nix::net::if_::if_nametoindex(RELAY_IF).expect("relay ifindex");
        let attachment = steering
            .attach(ifindex, XdpMode::Native)
            .expect("attach the steering program in native mode");
        let rig = Rig {
            worker,
            publisher,
            steering,
            kernel_socket,
            peers,
            _attachment: attachment,
            _peer_ns: peer_ns,
        };
        body(rig, stream)
    });
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The block tag subscriber `ip` gave the relay.
fn tag_of(ip: Ipv4Addr) -> u64 {
    0x5ec2_e700_0000_0000 | u64::from(u32::from(ip))
}

/// The fan-out table of `SUBSCRIBERS`.
fn subscriber_table() -> Arc<FanoutTable> {
    let mut builder = FanoutTable::builder(FanoutLimits::default());
    builder.swarm_clubs(CLUBS as u16);
    for (club, ip) in SUBSCRIBERS {
        builder
            .add(
                club,
                Subscriber::new(PEER_MAC, SocketAddrV4::new(ip, SUBSCRIBER_PORT), tag_of(ip)),
            )
            .expect("within limits");
    }
    Arc::new(builder.build())
}

/// The worker on its own thread, until stopped.
struct RunningWorker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Worker>,
}

impl RunningWorker {
    fn start(mut worker: Worker) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            worker.run(&flag);
            worker
        });
        RunningWorker { stop, thread }
    }

    fn stop(self) -> Worker {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

// ---------------------------------------------------------------------------
// The stream: a real source
// ---------------------------------------------------------------------------

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// One genuine block as sent: where it sits and what it carries.
#[derive(Debug, Clone)]
struct Sent {
    batch: u64,
    index: u16,
    club: u16,
    payload: Vec<u8>,
}

/// A source: signs batches and sends each block with the proof hashes the
/// relay lacks (its `ProofLedger`), as the real source does [0049].
struct Stream {
    id: StreamId,
    signer: BatchSigner,
    ledger: ProofLedger,
    next_batch: u64,
}

/// Seed of the stream's source key.
const SOURCE_SEED: [u8; 32] = [0x5e; 32];

const DELAY_THRESHOLD_MS: u32 = 750;
const BITRATE_KBPS: u32 = 2500;

impl Stream {
    fn new() -> Self {
        let key = SourceKey::from_seed(&SOURCE_SEED);
        Stream {
            id: key.stream_id(),
            signer: BatchSigner::new(key),
            ledger: ProofLedger::new(),
            next_batch: 0,
        }
    }

    fn tag(&self) -> StreamTag {
        StreamTag::of_key(&self.id.to_bytes())
    }

    /// Signs the next batch of `count` blocks.
    fn next_batch(&mut self, count: u64) -> SignedBatch {
        let batch = self.next_batch;
        self.next_batch += 1;
        let first_seq = batch * BATCH_BLOCKS;
        let payloads: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let seq = first_seq + i;
                let len = 200 + (seq * 37 % 700) as usize;
                (0..len).map(|j| (seq as usize * 13 + j) as u8).collect()
            })
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.signer
            .sign(batch, first_seq, now_us(), &refs)
            .expect("a valid batch")
    }

    /// The datagrams of `signed`, each carrying what the relay lacks.
    fn datagrams(&mut self, signed: &SignedBatch) -> Vec<(Sent, Vec<u8>)> {
        (0..signed.count())
            .map(|index| {
                let plan = self.ledger.plan(signed.batch(), signed.count(), index);
                let block = signed.block(index, plan, hop(signed.seq(index)));
                (
                    Sent {
                        batch: signed.batch(),
                        index,
                        club: block.club,
                        payload: block.payload.to_vec(),
                    },
                    encode(&block),
                )
            })
            .collect()
    }

    /// Signs and sends `batches` batches of `BATCH_BLOCKS` blocks (the
    /// last one `last_count`), returning what was sent.
    fn send(&mut self, sender: &UdpSocket, batches: u64, last_count: u64) -> Vec<Sent> {
        let mut sent = Vec::new();
        for b in 0..batches {
            let count = if b + 1 == batches {
                last_count
            } else {
                BATCH_BLOCKS
            };
            let signed = self.next_batch(count);
            for (s, datagram) in self.datagrams(&signed) {
                sender.send(&datagram).expect("send a BLOCK");
                sent.push(s);
            }
            // A breath between batches, as a live source has (a batch is
            // ~65 ms of media at 2 Mbit/s); keeps the veth backlog short.
            thread::sleep(Duration::from_micros(500));
        }
        sent
    }
}

/// The signature and the whole path: a block any receiver can check alone.
fn full_proof() -> ProofPlan {
    ProofPlan {
        signature: true,
        hashes: 16,
    }
}

fn hop(seq: u64) -> HopFields {
    HopFields {
        club: (seq % CLUBS) as u16,
        sent_at_us: now_us(),
        delay_threshold_ms: DELAY_THRESHOLD_MS,
        bitrate_kbps: BITRATE_KBPS,
    }
}

fn encode(block: &Block<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = block.encode(&mut buf).expect("block fits a datagram");
    buf[..len].to_vec()
}

// ---------------------------------------------------------------------------
// Subscribers
// ---------------------------------------------------------------------------

/// Reads datagrams from `socket` until `expected` have come and then
/// `quiet` passes without another, or `limit` passes in all.
fn drain(
    socket: &UdpSocket,
    expected: usize,
    quiet: Duration,
    limit: Duration,
) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return got;
        }
        let wait = if got.len() >= expected {
            quiet
        } else {
            deadline - now
        };
        socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .expect("set a read timeout");
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => got.push((buf[..len].to_vec(), from)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if got.len() >= expected {
                    return got;
                }
            }
            Err(e) => panic!("subscriber recv: {e}"),
        }
    }
}

/// Checks that each subscriber got every block of its club in `sent`
/// exactly once, from the relay, each verifying alone with a fresh
/// verifier (signature and full proof on every copy). Returns the number of
/// copies checked.
fn check_subscribers(
    peers: &PeerSockets,
    stream: &Stream,
    sent: &[Sent],
    sent_after_us: u64,
) -> usize {
    let relay = SocketAddr::V4(SocketAddrV4::new(RELAY_IP, RELAY_PORT));
    let mut checked = 0;
    for (club, addr, socket) in &peers.subscribers {
        let expected: HashMap<(u64, u16), &Sent> = sent
            .iter()
            .filter(|s| s.club == *club)
            .map(|s| ((s.batch, s.index), s))
            .collect();
        let got = drain(
            socket,
            expected.len(),
            Duration::from_millis(150),
            Duration::from_secs(3),
        );
        let mut verifier = BatchVerifier::new(stream.id, 64);
        let mut seen = HashSet::new();
        for (datagram, from) in &got {
            assert_eq!(*from, relay, "{addr}: copies come from the relay's port");
            let Ok(Message::Block(block)) = Message::parse(datagram) else {
                panic!("{addr}: a copy that is not a BLOCK: {datagram:02x?}");
            };
            assert!(
                seen.insert((block.batch, block.index)),
                "{addr}: block {}/{} received twice",
                block.batch,
                block.index
            );
            let Some(original) = expected.get(&(block.batch, block.index)) else {
                panic!(
                    "{addr} (club {club}): unexpected block {}/{} of club {}",
                    block.batch, block.index, block.club
                );
            };
            assert_eq!(block.club, *club);
            // The kernel checked the UDP checksum the worker summed around
            // this copy's own tag.
            assert_eq!(block.tag, tag_of(*addr.ip()), "{addr}: its own block tag");
            assert_eq!(block.payload, &original.payload[..], "{addr}: payload");
            assert!(block.signature.is_some(), "{addr}: every copy is signed");
            assert_eq!(
                block.proof.len(),
                Path::new(block.count, block.index).depth(),
                "{addr}: every copy carries the full proof path"
            );
            assert_eq!(block.delay_threshold_ms, DELAY_THRESHOLD_MS);
            assert_eq!(block.bitrate_kbps, BITRATE_KBPS);
            assert!(
                block.sent_at_us >= sent_after_us,
                "{addr}: the relay stamps its own send time"
            );
            let verified = verifier.verify(&block).unwrap_or_else(|e| {
                panic!("{addr}: copy of {}/{} fails: {e}", block.batch, block.index)
            });
            assert!(verified.fresh);
            checked += 1;
        }
        assert_eq!(
            seen.len(),
            expected.len(),
            "{addr} (club {club}): every block of the club, once"
        );
    }
    checked
}

fn report(test: &str, worker: &Worker, steer: &SteerCounters) {
    let s = worker.stats();
    let l = worker.latency_summary();
    let k = worker.kernel_stats().unwrap_or_default();
    let _ = writeln!(
        io::stderr(),
        "{test}: rx_frames={} forwarded_blocks={} tx_frames={} no_subscribers={} forged={} \
         duplicates={} unverifiable={} tx_kicks={} tx_completed={} redirected={} \
         latency_ns p50={} p99={} max={} (n={}) kernel rx_ring_full={} fill_ring_empty={} rx_dropped={}",
        s.rx_frames,
        s.forward.forwarded_blocks,
        s.tx_frames,
        s.forward.no_subscribers,
        s.forward.forged,
        s.forward.duplicates,
        s.forward.unverifiable,
        s.tx_kicks,
        s.tx_completed,
        steer.redirected,
        l.p50_ns,
        l.p99_ns,
        l.max_ns,
        l.count,
        k.rx_ring_full,
        k.rx_fill_ring_empty,
        k.rx_dropped,
    );
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// 1000 genuine BLOCKs in 63 batches over 4 clubs: each of the 4
/// subscribers of clubs 0 and 1 gets every block of its club exactly once,
/// signed and with the full proof; blocks of clubs without subscribers are
/// verified and dropped.
#[test]
fn every_subscriber_gets_every_block_of_its_club_exactly_once() {
    require_privileges!("every_subscriber_gets_every_block_of_its_club_exactly_once");
    with_rig(|rig, mut stream| {
        rig.publisher
            .publish(subscriber_table())
            .expect("publish the table");
        let before = rig.steering.counters().expect("counters");
        let started_us = now_us();
        let running = RunningWorker::start(rig.worker);
        // 62 batches of 16 and one of 8: 1000 blocks.
        let sent = stream.send(&rig.peers.sender, 63, 8);
        assert_eq!(sent.len(), 1000);
        let checked = check_subscribers(&rig.peers, &stream, &sent, started_us);
        let worker = settle_and_stop(running);
        let steer = rig.steering.counters().expect("counters").since(&before);
        report("fan-out", &worker, &steer);

        let s = worker.stats();
        assert_eq!(checked, 1000, "4 subscribers x 250 blocks");
        assert_eq!(steer.redirected, 1000);
        assert_eq!(s.rx_frames, 1000);
        assert_eq!(s.table_swaps, 1);
        assert_eq!(s.forward.forwarded_blocks, 500, "clubs 0 and 1");
        assert_eq!(s.forward.no_subscribers, 500, "clubs 2 and 3");
        assert_eq!(s.tx_frames, 1000);
        assert_eq!(
            (
                s.forward.forged,
                s.forward.duplicates,
                s.forward.unverifiable,
                s.forward.no_forward_proof
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(
            (s.forward.no_free_buffer, s.tx_ring_full, s.tx_kick_errors),
            (0, 0, 0)
        );
        assert_eq!(worker.latency_summary().count, 500);
    });
}

/// A burst larger than every ring: with 64 RX frames and 16 TX frames
/// (fewer than a kick's 32, so no kick in the middle of the batch hands
/// completed frames back), 128 blocks arrive while the worker is not
/// looking. The kernel counts what the
/// full RX ring and empty fill ring dropped; the worker counts the copies
/// it had no TX frame for. Then it recovers: the frames come back, and a
/// paced stream afterwards reaches every subscriber whole.
#[test]
fn ring_exhaustion_is_counted_and_recovered_from() {
    require_privileges!("ring_exhaustion_is_counted_and_recovered_from");
    let small = XskConfig {
        frame_size: 2048,
        rx_frames: 64,
        tx_frames: 16,
        rx_ring: 64,
        tx_ring: 64,
        fill_ring: 64,
        comp_ring: 64,
        bind_mode: BindMode::Copy,
        ..XskConfig::default()
    };
    with_sized_rig(small, |rig, mut stream| {
        rig.publisher
            .publish(subscriber_table())
            .expect("publish the table");
        let mut worker = rig.worker;
        // The burst, with nobody draining the RX ring.
        stream.send(&rig.peers.sender, 8, BATCH_BLOCKS);
        thread::sleep(Duration::from_millis(50));
        let kernel = worker.kernel_stats().expect("kernel stats");
        assert!(
            kernel.rx_ring_full + kernel.rx_fill_ring_empty + kernel.rx_dropped > 0,
            "the kernel counts the frames it had no room for: {kernel:?}"
        );
        // One loop takes the 64 frames; their copies want more TX frames
        // than there are.
        assert_eq!(worker.poll_once(), 64);
        let s = worker.stats();
        assert!(s.forward.no_free_buffer > 0, "{s:?}");
        assert!(s.forward.forwarded_blocks > 0, "{s:?}");
        // Recovery: completions free the TX frames, the fill ring is whole
        // again, and a paced stream goes through intact.
        let running = RunningWorker::start(worker);
        thread::sleep(Duration::from_millis(50));
        for (_, _, socket) in &rig.peers.subscribers {
            drain(
                socket,
                usize::MAX,
                Duration::from_millis(20),
                Duration::from_millis(200),
            );
        }
        let started_us = now_us();
        let mut sent = Vec::new();
        for _ in 0..6 {
            sent.extend(stream.send(&rig.peers.sender, 1, BATCH_BLOCKS));
            thread::sleep(Duration::from_millis(20));
        }
        let checked = check_subscribers(&rig.peers, &stream, &sent, started_us);
        let worker = settle_and_stop(running);
        let steer = rig.steering.counters().expect("counters");
        report("exhaustion", &worker, &steer);
        assert_eq!(
            checked, 96,
            "every copy of the paced stream arrived (48 blocks of clubs 0 and 1, two subscribers each)"
        );
    });
}

/// Gives the worker a moment for frames still on their way (the sender is
/// synchronous and every ring is sized for the whole run), then stops it.
fn settle_and_stop(running: RunningWorker) -> Worker {
    thread::sleep(Duration::from_millis(100));
    running.stop()
}

/// 100 forged BLOCKs among genuine ones (50 with a flipped payload bit, 50
/// signed by another key under this stream's tag) are counted as forged and
/// none reaches a subscriber; the genuine ones before and after still flow.
#[test]
fn forged_blocks_are_counted_and_never_forwarded() {
    require_privileges!("forged_blocks_are_counted_and_never_forwarded");
    with_rig(|rig, mut stream| {
        rig.publisher
            .publish(subscriber_table())
            .expect("publish the table");
        let before = rig.steering.counters().expect("counters");
        let started_us = now_us();
        let running = RunningWorker::start(rig.worker);
        let mut sent = stream.send(&rig.peers.sender, 2, BATCH_BLOCKS);

        // 50 genuine blocks of the known batches with one payload bit
        // flipped, carrying a full proof.
        let signed: Vec<SignedBatch> = (0..2u64)
            .map(|b| {
                let payloads: Vec<Vec<u8>> = sent
                    .iter()
                    .filter(|s| s.batch == b)
                    .map(|s| s.payload.clone())
                    .collect();
                let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                BatchSigner::new(SourceKey::from_seed(&SOURCE_SEED))
                    .sign(b, b * BATCH_BLOCKS, now_us(), &refs)
                    .expect("re-sign")
            })
            .collect();
        let full = ProofPlan {
            signature: false,
            hashes: 16,
        };
        let mut forged = Vec::new();
        for k in 0..50u16 {
            let batch = &signed[usize::from(k % 2)];
            let index = k % 16;
            let block = batch.block(index, full, hop(batch.seq(index)));
            let mut payload = block.payload.to_vec();
            let bit = usize::from(k) * 7 % (payload.len() * 8);
            payload[bit / 8] ^= 1 << (bit % 8);
            forged.push(encode(&Block {
                payload: &payload,
                ..block
            }));
        }
        // 50 blocks signed by another key, claiming this stream's tag.
        let impostor = BatchSigner::new(SourceKey::from_seed(&[0x66; 32]));
        for b in 0..4u64 {
            let batch = 100 + b;
            let payloads: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; 300]).collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let signed = impostor
                .sign(batch, batch * BATCH_BLOCKS, now_us(), &refs)
                .expect("sign");
            for index in 0..16u16 {
                if forged.len() == 100 {
                    break;
                }
                let block = signed.block(
                    index,
                    ProofPlan {
                        signature: true,
                        hashes: 16,
                    },
                    hop(signed.seq(index)),
                );
                forged.push(encode(&Block {
                    stream: stream.tag(),
                    ..block
                }));
            }
        }
        assert_eq!(forged.len(), 100);
        for datagram in &forged {
            rig.peers
                .sender
                .send(datagram)
                .expect("send a forged BLOCK");
        }
        sent.extend(stream.send(&rig.peers.sender, 2, BATCH_BLOCKS));
        // Two more batches, each genuine block sent first relabelled with
        // the next club (the club field is per hop and unsigned), then as
        // it is: the relabelled copy goes nowhere, and the right one is
        // still fanned out to its own club.
        for _ in 0..2 {
            let signed = stream.next_batch(BATCH_BLOCKS);
            for (s, datagram) in stream.datagrams(&signed) {
                let seq = signed.seq(s.index);
                let wrong = HopFields {
                    club: ((seq + 1) % CLUBS) as u16,
                    ..hop(seq)
                };
                let relabelled = signed.block(s.index, full_proof(), wrong);
                rig.peers
                    .sender
                    .send(&encode(&relabelled))
                    .expect("send a relabelled BLOCK");
                rig.peers.sender.send(&datagram).expect("send a BLOCK");
                sent.push(s);
            }
        }

        let checked = check_subscribers(&rig.peers, &stream, &sent, started_us);
        let worker = settle_and_stop(running);
        let steer = rig.steering.counters().expect("counters").since(&before);
        report("forged", &worker, &steer);
        let s = worker.stats();
        assert_eq!(
            steer.redirected, 228,
            "forged and relabelled BLOCKs are steered like any other"
        );
        assert_eq!(s.forward.forged, 100, "{s:?}");
        assert_eq!(s.forward.wrong_club, 32, "{s:?}");
        assert_eq!(s.rx_frames, 228);
        assert_eq!(
            checked,
            6 * 16,
            "96 genuine blocks, a quarter per club, 2 subscribers each"
        );
        assert_eq!(s.forward.forwarded_blocks, 48);
    });
}

/// A control message to the relay port goes to the relay's kernel socket,
/// not the worker; a BLOCK right after it goes to the worker, not the
/// kernel socket.
#[test]
fn control_messages_reach_the_kernel_socket_not_the_worker() {
    require_privileges!("control_messages_reach_the_kernel_socket_not_the_worker");
    with_rig(|rig, mut stream| {
        let before = rig.steering.counters().expect("counters");
        let running = RunningWorker::start(rig.worker);
        let mut keepalive = [0u8; 32];
        let len = Message::KeepAlive(KeepAlive::bare(1, 7))
            .encode(&mut keepalive)
            .expect("encode KEEPALIVE");
        rig.peers
            .sender
            .send(&keepalive[..len])
            .expect("send KEEPALIVE");
        rig.kernel_socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let (got, from) = rig
            .kernel_socket
            .recv_from(&mut buf)
            .expect("KEEPALIVE on the kernel socket");
        assert_eq!(&buf[..got], &keepalive[..len]);
        assert_eq!(from.ip(), std::net::IpAddr::V4(SENDER_IP));

        stream.send(&rig.peers.sender, 1, 1);
        rig.kernel_socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        assert!(
            rig.kernel_socket.recv_from(&mut buf).is_err(),
            "a BLOCK never reaches the kernel socket"
        );
        let worker = running.stop();
        let steer = rig.steering.counters().expect("counters").since(&before);
        let s = worker.stats();
        assert_eq!(steer.passed_control, 1, "{steer:?}");
        assert_eq!(steer.redirected, 1, "{steer:?}");
        assert_eq!(s.rx_frames, 1, "only the BLOCK reached the worker: {s:?}");
        assert_eq!(s.forward.not_block, 0);
        assert_eq!(
            s.forward.no_subscribers, 1,
            "no table published: verified, not sent"
        );
    });
}

/// After a warm-up, the worker's loop makes no heap allocation while it
/// receives, verifies and fans out 320 blocks (sent before it polls again,
/// so its receive batches hold whole batches, each hashed as one input),
/// reports them to the control plane's uplink until its 64 slots are full
/// and then counts the rest as dropped, swaps in a new table and idles:
/// counted by this binary's allocator on the worker's thread.
#[test]
fn worker_loop_allocates_nothing_after_warm_up() {
    require_privileges!("worker_loop_allocates_nothing_after_warm_up");
    with_rig(|rig, mut stream| {
        const WARM: u64 = 2 * BATCH_BLOCKS;
        const MEASURED: u64 = 20 * BATCH_BLOCKS;
        const IDLE_POLLS: u64 = 10_000;
        rig.publisher
            .publish(subscriber_table())
            .expect("publish the table");
        let warmed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&warmed);
        let sent = Arc::new(AtomicBool::new(false));
        let all_sent = Arc::clone(&sent);
        let (uplink, uplink_tx) = Uplink::new(64);
        let share = Arc::new(Mutex::new(WorkerShare::new()));
        let mut worker = rig
            .worker
            .with_uplink(uplink_tx)
            .with_share(Arc::clone(&share));
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while worker.stats().rx_frames < WARM && Instant::now() < deadline {
                worker.poll_once();
            }
            for _ in 0..1000 {
                worker.poll_once();
            }
            // The counter is live on this thread: one allocation shows.
            let probe = allocations_on_this_thread();
            drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
            assert_eq!(allocations_on_this_thread(), probe + 1, "counter is live");
            let before = allocations_on_this_thread();
            flag.store(true, Ordering::Release);
            while !all_sent.load(Ordering::Acquire) && Instant::now() < deadline {
                thread::yield_now();
            }
            let mut polls = 0u64;
            while worker.stats().rx_frames < WARM + MEASURED && Instant::now() < deadline {
                worker.poll_once();
                polls += 1;
                if polls.is_multiple_of(64) {
                    // Sharing counters and latency with a reader, too.
                    worker.share();
                }
            }
            for _ in 0..IDLE_POLLS {
                worker.poll_once();
                polls += 1;
            }
            worker.share();
            let allocations = allocations_on_this_thread() - before;
            (worker, allocations, polls)
        });
        stream.send(&rig.peers.sender, 2, BATCH_BLOCKS);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !warmed.load(Ordering::Acquire) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(warmed.load(Ordering::Acquire), "warm-up never finished");
        // A control-plane update during the measured window: the swap
        // frees the old table on the worker, and allocates nothing there.
        rig.publisher
            .publish(subscriber_table())
            .expect("publish again");
        stream.send(&rig.peers.sender, 20, BATCH_BLOCKS);
        sent.store(true, Ordering::Release);
        let (worker, allocations, polls) = thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let s = worker.stats();
        let _ = writeln!(
            io::stderr(),
            "zero-alloc: {allocations} allocations in {polls} poll_once calls \
             ({} frames, {} blocks forwarded, {} TX frames, {} table swaps, \
             {} batches hashed whole)",
            s.rx_frames - WARM,
            s.forward.forwarded_blocks,
            s.tx_frames,
            s.table_swaps,
            worker.verifier_stats().batches_hashed
        );
        assert_eq!(s.rx_frames, WARM + MEASURED, "{s:?}");
        let shared = share.lock().expect("the share");
        assert_eq!(shared.stats, s, "the share holds the counters");
        assert_eq!(shared.latency.len(), worker.latency().len());
        assert!(shared.latency.len() >= s.forward.forwarded_blocks / 2);
        assert_eq!(s.table_swaps, 2);
        assert!(s.forward.forwarded_blocks >= (WARM + MEASURED) / 2, "{s:?}");
        assert!(polls >= IDLE_POLLS);
        assert_eq!(s.forward.uplinked, 64, "{s:?}");
        assert_eq!(
            s.forward.uplinked + s.forward.uplink_dropped,
            s.forward.forwarded_blocks + s.forward.no_subscribers,
            "{s:?}"
        );
        let mut reported = 0;
        uplink.drain(|from, bytes| {
            assert_eq!(from.ip(), &SENDER_IP);
            assert!(matches!(Message::parse(bytes), Ok(Message::Block(_))));
            reported += 1;
        });
        assert_eq!(reported, 64);
        let hashed = worker.verifier_stats().batches_hashed;
        assert!(hashed >= 10, "whole batches hashed as one input: {hashed}");
        assert_eq!(allocations, 0, "the worker loop allocated");
    });
}

/// Runs `body` on a thread inside a fresh namespace holding only an up
/// veth pair (`RELAY_IF`, `PEER_IF`); everything goes with the thread.
fn with_bare_veth<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    thread::spawn(move || {
        enter_private_netns();
        ip(&[
            "link", "add", RELAY_IF, "type", "veth", "peer", "name", PEER_IF,
        ]);
        ip(&["link", "set", RELAY_IF, "up"]);
        ip(&["link", "set", PEER_IF, "up"]);
        body()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Auto mode tries zero-copy, which veth refuses, and binds in copy mode;
/// asking for zero-copy outright says so in a typed error.
#[test]
fn auto_bind_falls_back_to_copy_on_veth() {
    require_privileges!("auto_bind_falls_back_to_copy_on_veth");
    with_bare_veth(|| {
        let small = XskConfig {
            rx_frames: 64,
            tx_frames: 64,
            rx_ring: 64,
            tx_ring: 64,
            fill_ring: 64,
            comp_ring: 64,
            ..XskConfig::default()
        };
        let err = XskSocket::open(
            RELAY_IF,
            0,
            &XskConfig {
                bind_mode: BindMode::ZeroCopy,
                ..small
            },
        )
        .expect_err("veth has no zero-copy AF_XDP");
        assert!(matches!(err, XskError::ZeroCopyUnsupported { .. }), "{err}");
        let xsk = XskSocket::open(RELAY_IF, 0, &small).expect("auto mode binds");
        assert_eq!(xsk.bind_mode(), BindMode::Copy);
        assert_eq!(xsk.queue(), 0);
        assert!(xsk.kernel_stats().is_ok());
    });
}

/// A second socket on a bound queue gets the typed busy error with the
/// operator's hint; a queue the interface lacks is named as such.
#[test]
fn bound_queue_is_reported_busy_and_missing_queue_is_named() {
    require_privileges!("bound_queue_is_reported_busy_and_missing_queue_is_named");
    with_bare_veth(|| {
        let small = XskConfig {
            rx_frames: 64,
            tx_frames: 64,
            rx_ring: 64,
            tx_ring: 64,
            fill_ring: 64,
            comp_ring: 64,
            bind_mode: BindMode::Copy,
            ..XskConfig::default()
        };
        let _first = XskSocket::open(RELAY_IF, 0, &small).expect("first socket binds");
        let err = XskSocket::open(RELAY_IF, 0, &small).expect_err("queue 0 is taken");
        assert!(matches!(err, XskError::Busy { queue: 0, .. }), "{err}");
        assert!(err.to_string().contains("retry in a moment"), "{err}");
        let err = XskSocket::open(RELAY_IF, 7, &small).expect_err("veth has one queue");
        assert!(
            matches!(err, XskError::NoSuchQueue { queue: 7, .. }),
            "{err}"
        );
    });
}
