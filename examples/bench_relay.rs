//! End-to-end relay fan-out bench: the AF_XDP worker against the product's
//! forwarding core on kernel UDP, and against the raw AF_XDP transmit
//! ceiling, all on one veth topology in one run, then the AF_XDP worker's
//! latency at half load. Run through `scripts/bench-relay.sh`.
//!
//! Topology (as in `tests/relay_dataplane.rs`, with its own copy of the
//! setup code): two unnamed network namespaces made by threads with
//! `unshare(CLONE_NEWNET)`, joined by one veth pair. Nothing is named, so
//! nothing is left on the host, even after a crash.
//!
//! ```text
//!   relay netns (bench thread)               peer netns (helper thread)
//!   ccbr-r0  02:cc:0:0:2:1  10.79.0.1  <-veth->  ccbr-s0  02:cc:0:0:2:2
//!     phase xdp: steering program + AF_XDP worker   10.79.0.2  sender
//!     phase udp: kernel UDP socket 10.79.0.1:7411   10.79.0.10+i subscribers
//!     phase txonly: plain AF_XDP TX loop
//! ```
//!
//! The source is real: batches of 16 blocks with 971-byte payloads (the
//! most a block with signature and full proof carries in a 1232-byte
//! datagram), signed by a `BatchSigner`, over clubs 0..11 (block n in club
//! n mod 12). The relay serves clubs 0..`--clubs` (default all 12, a
//! super-peer's job), with `--peers` subscribers (default 240, 20 per club)
//! spread evenly over them, and, as in the protocol, receives only the
//! blocks of the clubs it serves, so each ingress block fans out to
//! peers/clubs copies and one signature check covers the blocks of a batch
//! it gets (16 when it serves every club; `--full-stream` sends it all 12
//! clubs even when it serves fewer, and the blocks of clubs without
//! subscribers are verified and dropped). Every block carries the batch signature and its full proof
//! path, so a block lost in a flood never makes later ones unverifiable.
//! The batches are signed before the phases (on all cores) into one pool
//! that each phase replays from the start, each phase with a fresh
//! verifier. Both relays take `--batch` (64) frames per loop, so their
//! latencies compare; a block's latency includes the work on the blocks
//! before it in its batch.
//!
//! The sender sends as fast as the relay absorbs: `sendmmsg` bursts of 64,
//! holding back only while more than `--window` blocks are in flight (sent
//! but not yet taken by the relay), so the relay is always the limit and
//! the veth is not flooded into drops. When the relay takes nothing for
//! 20 ms while the sender waits, what is still counted in flight is taken
//! as lost, so a lost burst cannot throttle it.
//!
//! Every phase runs its relay (or transmit loop) on core 1 and the sender
//! and helper threads on core 0.
//!
//! Phases, each `--warmup-ms` of warm-up and then `--seconds` measured
//! (shorter only if the pool runs out, which is reported):
//! 1. `xdp`: the crate's `Worker` (steering program attached in native mode,
//!    copy-mode AF_XDP socket) receives, verifies and fans out. Relay-side
//!    egress is its `tx_frames`; latency is its ingress-to-TX-submit
//!    histogram; CPU is the worker thread's `RUSAGE_THREAD`.
//! 2. `udp`: the program is detached and a relay thread runs the product's
//!    forwarding loop (`clubcast::io::packet::forward_batch` with the
//!    `clubcast::forward::BlockForwarder` the AF_XDP worker and the
//!    `--io udp` relay run) on the product's kernel-UDP backend
//!    (`clubcast::io::udp_batch::UdpBatchIo`): `recvmmsg` (64), then for
//!    each block the core's verdict and one `sendmmsg` of its copies.
//!    Latency: from `recvmmsg` returning to the block's `sendmmsg`
//!    returning.
//! 3. `txonly`: a plain xsk-rs TX loop of prebuilt frames to the
//!    subscribers, each as long as a relay copy (1274 bytes: headers and a
//!    1232-byte datagram), kicked with `sendto`: the transmit ceiling
//!    (completed frames per second).
//! 4. `xdp_half_load`: the AF_XDP worker again, spinning on core 1, while
//!    the sender, on core 0, sends one block at a time at half the ingress
//!    rate phase 1 reached (after falling behind, at most 4 back to back):
//!    the latency of a relay that is not saturated,
//!    from the worker taking a block's RX batch to the return of the kick
//!    that sent its copies (in copy mode the kick transmits them, and on
//!    veth the far end's tc drop runs inside it too).
//!
//! Before the phases it times one ed25519 check of a batch statement on
//! this host (median of 201, printed and as `{"ed25519_verify_us":..}`):
//! the first block of each batch waits for that check before its copies
//! go out, so it sets a floor under the half-load p99 that hosts differ
//! on (38 us to 62 us so far).
//!
//! `egress_pps` in the JSON is the copies that reached the subscribers' end
//! of the veth, the same measurement for every backend; the relay-side
//! count is printed beside it. With `--sink tc` (the default) a tc ingress
//! program on that end (`sink_port` in `bpf/relay.bpf.c`) counts and drops
//! them as they arrive, as another machine would take them off the wire;
//! with `--sink socket` the kernel delivers them to the subscribers' UDP
//! sockets, drained by one thread with `recvmmsg` and `MSG_TRUNC`.
//! `egress_gbps` counts Ethernet frame bytes (14+20+8+datagram).
//! `cpu_per_mpps` is relay CPU seconds per million egress packets. On veth
//! the receive work of the far end runs on the transmitting CPU, so the
//! relay's CPU figure includes the far end's work for every backend: a tc
//! drop with `--sink tc` (the least the far end can do; an XDP program
//! there would first copy each frame into a page of its own), the whole
//! socket delivery with `--sink socket`.
//!
//! Each phase also prints the time the hypervisor stole from the relay's
//! core over its window (`relay_core_steal_ms`, from `/proc/stat`): on a
//! shared host, a run with stolen time is a noisy one, and its latency
//! tail above all. `/proc/stat` counts in 10 ms ticks, so the spinning
//! latency phase also times its own idle loops: one that takes 50 us or
//! more (an idle loop normally takes well under one) lost the core
//! meanwhile, to the hypervisor, an interrupt or another thread, and the
//! phase prints how many did and how long they took in all
//! (`relay_idle_stalls`, `relay_idle_stall_ms`; null for the other
//! phases). Stalls while the relay is busy are not seen, so this is a
//! floor of what the core lost.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN). Without it it says
//! why and exits with status 1.

#[path = "../tests/support/netns.rs"]
mod netns;

use netns::{
    configure_side, enter_private_netns, ip, mac_text, start_namespace, veth_pair_up,
    NamespaceThread,
};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use clubcast::auth::signer::HopFields;
use clubcast::auth::{BatchSigner, BatchStatement, ProofPlan, SourceKey, StreamId};
use clubcast::forward::BlockForwarder;
use clubcast::io::packet::forward_batch;
use clubcast::io::udp_batch::UdpBatchIo;
use clubcast::relay::frame::{self, UdpChecksum, UdpHeaders, HEADERS_LEN};
use clubcast::relay::{
    fanout_channel, has_bpf_privileges, BindMode, FanoutLimits, FanoutTable, IdlePolicy,
    LocalEndpoint, SteeringProgram, Subscriber, Worker, WorkerConfig, WorkerStats, XdpMode,
    XskConfig, XskError, XskSocket,
};
use clubcast::wire::MAX_DATAGRAM;
use hdrhistogram::Histogram;
use nix::libc;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{FrameDesc, Socket, Umem};

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// Relay fan-out bench: AF_XDP worker vs kernel UDP vs the AF_XDP TX ceiling.
#[derive(Parser, Debug)]
struct Args {
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Subscribers in all, spread evenly over `--clubs` clubs.
    #[arg(long, default_value_t = 240)]
    peers: usize,
    /// Clubs with subscribers (clubs 0..N of the stream's 12).
    #[arg(long, default_value_t = 12)]
    clubs: usize,
    /// Warm-up per phase before measuring, milliseconds.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Signed blocks in the pool each phase replays (0: per second of
    /// phase, 100k, or 300k with `--full-stream`; a phase ends early, and
    /// says so, if the pool runs out).
    #[arg(long, default_value_t = 0)]
    pool_blocks: usize,
    /// Most blocks in flight between sender and relay.
    #[arg(long, default_value_t = 4096)]
    window: u64,
    /// Frames (datagrams) the relay takes per loop, both backends: the
    /// worker's RX batch and the UDP relay's `recvmmsg` vector.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Send the relay every block of all 12 clubs (those of clubs without
    /// subscribers are verified and dropped) instead of only the clubs it
    /// serves.
    #[arg(long)]
    full_stream: bool,
    /// Where egress is counted: `tc` (a tc ingress program on the
    /// subscribers' veth end counts and drops the copies as they arrive,
    /// as another machine would take them off the wire) or `socket` (the
    /// kernel delivers them to the subscribers' UDP sockets, which on veth
    /// costs the relay's CPU).
    #[arg(long, value_enum, default_value_t = Sink::Tc)]
    sink: Sink,
}

/// Where the subscribers' copies are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Sink {
    /// tc ingress program on the far veth end: count and drop.
    Tc,
    /// Subscriber UDP sockets drained with recvmmsg.
    Socket,
}

/// How long the relay takes nothing from a waiting sender before the
/// blocks counted in flight are taken as lost: ten times the longest a
/// saturated relay was seen to take over one receive batch.
const STALL: Duration = Duration::from_millis(20);

/// Most blocks a paced sender that fell behind sends back to back.
const PACE_BURST: u32 = 4;

/// The core the sender (and every helper thread) runs on.
const SENDER_CORE: usize = 0;
/// The core each phase's relay (or transmit loop) has to itself.
const RELAY_CORE: usize = 1;

const RELAY_PORT: u16 = 7411;
const SUBSCRIBER_PORT: u16 = 9101;
const RELAY_IF: &str = "ccbr-r0";
const PEER_IF: &str = "ccbr-s0";
const RELAY_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 2, 1];
const PEER_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 2, 2];
const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
const SENDER_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);
/// Clubs of the stream: block n is in club n mod CLUBS.
const CLUBS: u64 = 12;
const BATCH_BLOCKS: u64 = 16;
/// The largest payload a block with signature and full proof carries in a
/// 1232-byte datagram (the signer rejects more).
const PAYLOAD_LEN: usize = 971;
const SOURCE_SEED: [u8; 32] = [0x5e; 32];
/// Datagrams per `sendmmsg` / `recvmmsg`.
const MMSG: usize = 64;
/// Receive (and, for the relay, send) buffer of the kernel sockets.
const SOCKET_BUF: usize = 16 << 20;
/// Ethernet + IPv4 + UDP header bytes in front of every datagram.
const L2_OVERHEAD: u64 = HEADERS_LEN as u64;
/// Frame length of the TX-only phase.
const TXONLY_FRAME: usize = HEADERS_LEN + MAX_DATAGRAM;

fn subscriber_ip(i: usize) -> Ipv4Addr {
    // `--peers` is capped at MAX_PEERS in `main`.
    Ipv4Addr::new(10, 79, 0, 10 + i as u8)
}

/// Most subscribers: addresses 10.79.0.10 to 10.79.0.249.
const MAX_PEERS: usize = 240;

fn subscriber_club(i: usize, clubs: usize) -> u16 {
    (i % clubs) as u16
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu_seconds() -> f64 {
    cpu_seconds(libc::RUSAGE_THREAD)
}

/// CPU seconds (user + system) of the whole process.
fn process_cpu_seconds() -> f64 {
    cpu_seconds(libc::RUSAGE_SELF)
}

/// Seconds the hypervisor took from `core` for other guests so far (the
/// `steal` column of its `/proc/stat` line; 0 where there is none): a run
/// whose relay core lost time this way is a noisy one.
fn core_steal_seconds(core: usize) -> f64 {
    let name = format!("cpu{core}");
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let ticks = stat
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(name.as_str())).then(|| fields.nth(7))
        })
        .flatten()
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage` for the call to fill.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ---------------------------------------------------------------------------
// Topology (a copy of the test's setup, adapted)
// ---------------------------------------------------------------------------

fn set_buffers(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUF).expect("SO_RCVBUFFORCE");
    setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUF).expect("SO_SNDBUFFORCE");
}

/// The sockets of the peer namespace, and its sink program if any.
struct PeerSockets {
    sender: UdpSocket,
    subscribers: Vec<UdpSocket>,
    sink: Option<(SteeringProgram, std::os::fd::OwnedFd)>,
}

/// Makes the peer namespace, moves `PEER_IF` into it, configures it and
/// returns its sockets.
fn start_peer_namespace(peers: usize, sink: Sink) -> (NamespaceThread, PeerSockets) {
    start_namespace(PEER_IF, move || {
        configure_side(
            PEER_IF,
            (0..peers).map(subscriber_ip).chain([SENDER_IP]),
            RELAY_IP,
            RELAY_MAC,
        );
        let sender = UdpSocket::bind((SENDER_IP, 0)).expect("bind the sender");
        sender
            .connect((RELAY_IP, RELAY_PORT))
            .expect("connect the sender");
        set_buffers(&sender);
        let subscribers = (0..peers)
            .map(|i| {
                let socket = UdpSocket::bind((subscriber_ip(i), SUBSCRIBER_PORT))
                    .expect("bind a subscriber");
                set_buffers(&socket);
                socket
            })
            .collect();
        let sink = (sink == Sink::Tc).then(|| {
            let prog = SteeringProgram::load(SUBSCRIBER_PORT).expect("load the sink program");
            let ifindex = nix::net::if_::if_nametoindex(PEER_IF).expect("peer ifindex");
            let link = prog.attach_sink(ifindex).expect("attach the sink program");
            (prog, link)
        });
        PeerSockets {
            sender,
            subscribers,
            sink,
        }
    })
}

/// Creates the veth pair in the calling thread's (fresh) namespace and
/// configures the relay end.
fn setup_relay_end(peers: usize) {
    veth_pair_up(RELAY_IF, RELAY_MAC, RELAY_IP, PEER_IF, PEER_MAC);
    // The kernel relay sends without an ARP round trip, like the worker.
    for addr in (0..peers).map(subscriber_ip).chain([SENDER_IP]) {
        ip(&[
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &mac_text(PEER_MAC),
            "dev",
            RELAY_IF,
            "nud",
            "permanent",
        ]);
    }
}

// ---------------------------------------------------------------------------
// The source: a pool of signed datagrams
// ---------------------------------------------------------------------------

/// Encoded BLOCK datagrams, `MAX_DATAGRAM` bytes apart.
struct Pool {
    data: Vec<u8>,
    lens: Vec<u16>,
}

impl Pool {
    fn len(&self) -> usize {
        self.lens.len()
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let start = i * MAX_DATAGRAM;
        &self.data[start..start + usize::from(self.lens[i])]
    }
}

/// Signs `batches` batches starting at batch `first`, every block with the
/// signature and its full proof path, and keeps the blocks of clubs below
/// `clubs` (those the relay serves).
fn sign_range(first: u64, batches: u64, clubs: u16) -> Pool {
    let signer = BatchSigner::new(SourceKey::from_seed(&SOURCE_SEED));
    let blocks = (batches * BATCH_BLOCKS * u64::from(clubs)).div_ceil(CLUBS) as usize + 16;
    let mut pool = Pool {
        data: Vec::with_capacity(blocks * MAX_DATAGRAM),
        lens: Vec::with_capacity(blocks),
    };
    let full = ProofPlan {
        signature: true,
        hashes: 16,
    };
    let mut payloads = vec![vec![0u8; PAYLOAD_LEN]; BATCH_BLOCKS as usize];
    for batch in first..first + batches {
        let first_seq = batch * BATCH_BLOCKS;
        for (i, p) in payloads.iter_mut().enumerate() {
            let seq = first_seq + i as u64;
            for (j, byte) in p.iter_mut().enumerate() {
                *byte = (seq as usize).wrapping_mul(13).wrapping_add(j) as u8;
            }
        }
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let signed = signer
            .sign(batch, first_seq, now_us(), &refs)
            .expect("sign a batch");
        for index in 0..signed.count() {
            let seq = signed.seq(index);
            if (seq % CLUBS) as u16 >= clubs {
                continue;
            }
            let hop = HopFields {
                club: (seq % CLUBS) as u16,
                sent_at_us: now_us(),
                delay_threshold_ms: 750,
                bitrate_kbps: 2500,
            };
            let block = signed.block(index, full, hop);
            let at = pool.data.len();
            pool.data.resize(at + MAX_DATAGRAM, 0);
            let len = block
                .encode(&mut pool.data[at..at + MAX_DATAGRAM])
                .expect("a block with full proof fits a datagram");
            pool.lens.push(len as u16);
        }
    }
    pool
}

/// Signs at least `blocks` blocks of clubs below `clubs` (whole batches of
/// the 12-club stream) on every core.
fn build_pool(blocks: usize, clubs: u16) -> Pool {
    let kept_per_12 = u64::from(clubs);
    let batches = (blocks as u64 * CLUBS).div_ceil(BATCH_BLOCKS * kept_per_12) + 1;
    let threads = thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let per = batches.div_ceil(threads);
    let parts: Vec<JoinHandle<Pool>> = (0..threads)
        .map(|t| {
            let first = t * per;
            let count = per.min(batches.saturating_sub(first));
            thread::spawn(move || sign_range(first, count, clubs))
        })
        .collect();
    let mut pool = Pool {
        data: Vec::new(),
        lens: Vec::new(),
    };
    for part in parts {
        let part = part.join().expect("a signing thread panicked");
        if pool.lens.is_empty() {
            pool = part;
        } else {
            pool.data.extend_from_slice(&part.data);
            pool.lens.extend_from_slice(&part.lens);
        }
    }
    pool
}

// ---------------------------------------------------------------------------
// Sender and subscriber drain
// ---------------------------------------------------------------------------

/// Sends the pool from the start with `sendmmsg`, keeping at most `window`
/// blocks ahead of `absorbed`, until `stop` or the pool's end (`done`).
/// Blocks lost on the way (veth drops a burst now and then when its ring
/// fills before the receive softirq runs) would count as in flight for
/// ever and throttle the sender: when the relay has taken nothing for
/// `STALL` while the sender waits, everything still counted in flight is
/// taken as lost.
/// With `pace` (blocks per second) it sends one block at a time at that
/// rate instead, for the latency phase: a sender that fell behind (its
/// thread waited for the core) sends at most `PACE_BURST` blocks back to
/// back and forgives the rest of its debt, so the bursts the relay sees
/// are not of the bench's own making; the rate it reports is what it sent.
#[allow(clippy::too_many_arguments)]
fn run_sender(
    socket: &UdpSocket,
    pool: &Pool,
    window: u64,
    pace: Option<f64>,
    absorbed: &AtomicU64,
    sent: &AtomicU64,
    done: &AtomicBool,
    stop: &AtomicBool,
) {
    if let Some(rate) = pace {
        let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let mut due = Instant::now();
        let mut next = 0usize;
        while !stop.load(Ordering::Relaxed) && next < pool.len() {
            let now = Instant::now();
            if now < due {
                std::hint::spin_loop();
                continue;
            }
            due = (due + gap).max(now - gap * PACE_BURST);
            if socket.send(pool.datagram(next)).is_ok() {
                next += 1;
                sent.store(next as u64, Ordering::Relaxed);
            }
        }
        done.store(true, Ordering::Relaxed);
        return;
    }
    let fd = socket.as_raw_fd();
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(MMSG);
    // SAFETY: an all-zero mmsghdr is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; MMSG];
    let mut next = 0usize;
    let mut lost = 0u64;
    let mut blocked: Option<(Instant, u64)> = None;
    while !stop.load(Ordering::Relaxed) && next < pool.len() {
        let taken = absorbed.load(Ordering::Relaxed);
        let ahead = (next as u64).saturating_sub(taken + lost);
        if ahead + MMSG as u64 > window {
            match blocked {
                Some((_, at)) if at != taken => blocked = Some((Instant::now(), taken)),
                Some((since, _)) if since.elapsed() >= STALL => {
                    lost += ahead;
                    blocked = None;
                }
                Some(_) => {}
                None => blocked = Some((Instant::now(), taken)),
            }
            thread::yield_now();
            continue;
        }
        blocked = None;
        let n = MMSG.min(pool.len() - next);
        iovs.clear();
        for i in 0..n {
            let d = pool.datagram(next + i);
            iovs.push(libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            });
        }
        for (msg, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_len = 0;
        }
        // SAFETY: `n` headers, each naming one iovec over pool memory that
        // outlives the call; the socket is connected (no address needed).
        let rc = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if rc > 0 {
            next += rc as usize;
            sent.store(next as u64, Ordering::Relaxed);
        } else {
            thread::yield_now();
        }
    }
    done.store(true, Ordering::Relaxed);
}

/// Copies the sink program's drop count into `received` every
/// millisecond until `stop`.
fn run_sink_reader(prog: &SteeringProgram, received: &AtomicU64, stop: &AtomicBool) {
    // Off the relay's core.
    pin_to(SENDER_CORE);
    while !stop.load(Ordering::Relaxed) {
        if let Ok(c) = prog.counters() {
            received.store(c.sink_dropped, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Counts datagrams arriving on the subscriber sockets (contents truncated
/// to 64 bytes and dropped) until `stop`.
fn run_drain(sockets: &[UdpSocket], received: &AtomicU64, stop: &AtomicBool) {
    let mut bufs = vec![[0u8; 64]; MMSG];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; MMSG];
    for (msg, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
    }
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut got_any = false;
        for socket in sockets {
            loop {
                // SAFETY: MMSG headers, each naming one 64-byte buffer that
                // lives as long as `bufs`; no address is asked for.
                let rc = unsafe {
                    libc::recvmmsg(
                        socket.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        MMSG as u32,
                        libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                        std::ptr::null_mut(),
                    )
                };
                if rc <= 0 {
                    break;
                }
                got_any = true;
                total += rc as u64;
                if (rc as usize) < MMSG {
                    break;
                }
            }
        }
        received.store(total, Ordering::Relaxed);
        if !got_any {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

// ---------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------

/// What a relay thread measured between the marks.
#[derive(Debug, Default, Clone)]
struct RelayWindow {
    seconds: f64,
    cpu_seconds: f64,
    ingress: u64,
    forwarded_blocks: u64,
    egress_frames: u64,
    egress_bytes: u64,
    /// Nanoseconds, per forwarded block.
    latency: Option<Histogram<u64>>,
    /// A spinning relay's idle loops that took at least [`STALL_MIN`]: the
    /// core was taken from it (by the hypervisor, an interrupt or another
    /// thread), count and seconds; `None` for a relay that does not spin.
    idle_stalls: Option<(u64, f64)>,
}

/// An idle loop of a spinning relay (one that found no frame, normally well
/// under a microsecond) that takes this long lost its core meanwhile.
const STALL_MIN: Duration = Duration::from_micros(50);

/// Phase marks the main thread sets for the relay thread.
const MARK_WARMUP: u8 = 0;
const MARK_MEASURE: u8 = 1;
const MARK_STOP: u8 = 2;

/// Everything about one phase, for the report.
#[derive(Debug, Clone)]
struct PhaseResult {
    io: &'static str,
    relay: RelayWindow,
    sent: u64,
    delivered: u64,
    /// CPU seconds of the whole process (relay, sender, drain, and the
    /// softirq work charged to them) over the window.
    process_cpu: f64,
    /// Seconds the hypervisor stole from the relay's core over the window.
    relay_core_steal: f64,
    pool_ran_out: bool,
}

impl PhaseResult {
    fn egress_pps(&self) -> f64 {
        self.delivered as f64 / self.relay.seconds
    }

    fn egress_gbps(&self) -> f64 {
        // Delivered datagrams at the relay's mean frame size.
        let mean = if self.relay.egress_frames > 0 {
            self.relay.egress_bytes as f64 / self.relay.egress_frames as f64
        } else {
            0.0
        };
        self.delivered as f64 * mean * 8.0 / self.relay.seconds / 1e9
    }

    fn cpu_per_mpps(&self) -> f64 {
        if self.delivered == 0 {
            return f64::NAN;
        }
        self.relay.cpu_seconds / (self.delivered as f64 / 1e6)
    }

    fn quantile_us(&self, q: f64) -> f64 {
        self.relay
            .latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(f64::NAN, |h| h.value_at_quantile(q) as f64 / 1e3)
    }
}

/// Drives one phase: starts the sender, marks warm-up and measurement for
/// `relay` (which watches `mark`), reads the shared counters at the marks.
#[allow(clippy::too_many_arguments)]
fn drive_phase(
    io: &'static str,
    args: &Args,
    sender: &UdpSocket,
    pool: &Arc<Pool>,
    delivered: &AtomicU64,
    absorbed: &Arc<AtomicU64>,
    mark: &AtomicU8,
    relay: JoinHandle<RelayWindow>,
    pace: Option<f64>,
) -> PhaseResult {
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = sender.try_clone().expect("clone the sender socket");
    let sender_thread = {
        let (pool, absorbed, sent, done, stop) = (
            Arc::clone(pool),
            Arc::clone(absorbed),
            Arc::clone(&sent),
            Arc::clone(&done),
            Arc::clone(&stop),
        );
        let window = args.window;
        thread::spawn(move || {
            pin_to(SENDER_CORE);
            run_sender(&sender, &pool, window, pace, &absorbed, &sent, &done, &stop)
        })
    };
    thread::sleep(Duration::from_millis(args.warmup_ms));
    let sent0 = sent.load(Ordering::Relaxed);
    let delivered0 = delivered.load(Ordering::Relaxed);
    let process0 = process_cpu_seconds();
    let steal0 = core_steal_seconds(RELAY_CORE);
    mark.store(MARK_MEASURE, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < deadline && !done.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(5));
    }
    let pool_ran_out = done.load(Ordering::Relaxed);
    mark.store(MARK_STOP, Ordering::Relaxed);
    let sent1 = sent.load(Ordering::Relaxed);
    let delivered1 = delivered.load(Ordering::Relaxed);
    let process_cpu = process_cpu_seconds() - process0;
    let relay_core_steal = core_steal_seconds(RELAY_CORE) - steal0;
    stop.store(true, Ordering::Relaxed);
    sender_thread.join().expect("the sender panicked");
    let relay = relay.join().expect("the relay thread panicked");
    if pool_ran_out {
        let _ = writeln!(
            io::stderr(),
            "{io}: the pool ran out after {:.2} s of measuring (raise --pool-blocks)",
            relay.seconds
        );
    }
    PhaseResult {
        io,
        relay,
        sent: sent1 - sent0,
        delivered: delivered1 - delivered0,
        process_cpu,
        relay_core_steal,
        pool_ran_out,
    }
}

/// Snapshot of a relay's counters at a mark.
struct Snapshot {
    at: Instant,
    cpu: f64,
    stats: WorkerStats,
    latency: Histogram<u64>,
}

/// Pins the calling thread to core `index`, if there is one.
fn pin_to(index: usize) {
    // By number, not from `get_core_ids`, which lists only the cores of
    // the (inherited) affinity mask.
    core_affinity::set_for_current(core_affinity::CoreId { id: index });
}

/// Phase 1 (and the latency phase, `spin` on a core of its own): the
/// AF_XDP worker.
fn xdp_relay(
    mut worker: Worker,
    absorbed: Arc<AtomicU64>,
    mark: Arc<AtomicU8>,
    spin: bool,
) -> RelayWindow {
    pin_to(RELAY_CORE);
    let fd = worker.fd();
    let snap = |w: &Worker| Snapshot {
        at: Instant::now(),
        cpu: thread_cpu_seconds(),
        stats: w.stats(),
        latency: w.latency().clone(),
    };
    let mut start: Option<Snapshot> = None;
    let mut empty = 0u32;
    let (mut stalls, mut stalled) = (0u64, Duration::ZERO);
    let mut loop_start = Instant::now();
    loop {
        match mark.load(Ordering::Relaxed) {
            MARK_MEASURE if start.is_none() => start = Some(snap(&worker)),
            MARK_STOP => break,
            _ => {}
        }
        let n = worker.poll_once();
        absorbed.store(worker.stats().rx_frames, Ordering::Relaxed);
        if spin {
            let now = Instant::now();
            let took = now - loop_start;
            loop_start = now;
            if n == 0 && took >= STALL_MIN && start.is_some() {
                stalls += 1;
                stalled += took;
            }
        }
        if n == 0 && spin {
            std::hint::spin_loop();
        } else if n == 0 {
            empty += 1;
            if empty >= 64 {
                // Idle: sleep until a frame comes (or 1 ms), so a shared
                // core goes to the sender rather than to spinning.
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                unsafe { libc::poll(&mut pfd, 1, 1) };
            } else {
                thread::yield_now();
            }
        } else {
            empty = 0;
        }
    }
    let end = snap(&worker);
    let Some(start) = start else {
        return RelayWindow::default();
    };
    let mut latency = end.latency;
    latency
        .subtract(&start.latency)
        .expect("same histogram bounds");
    let (a, b) = (start.stats, end.stats);
    // Let the worker's last frames go out before the next phase.
    let stop = AtomicBool::new(true);
    worker.run(&stop);
    RelayWindow {
        seconds: (end.at - start.at).as_secs_f64(),
        cpu_seconds: end.cpu - start.cpu,
        ingress: b.rx_frames - a.rx_frames,
        forwarded_blocks: b.forward.forwarded_blocks - a.forward.forwarded_blocks,
        egress_frames: b.tx_frames - a.tx_frames,
        egress_bytes: b.tx_bytes - a.tx_bytes,
        latency: Some(latency),
        idle_stalls: spin.then_some((stalls, stalled.as_secs_f64())),
    }
}

/// Counters of the UDP relay: datagrams in, blocks forwarded, copies sent,
/// their frame bytes.
type Totals = (u64, u64, u64, u64);

/// Phase 2: the same forwarding loop on the kernel-UDP backend.
fn udp_relay(
    socket: UdpSocket,
    stream: StreamId,
    subscribers: Vec<Vec<SocketAddrV4>>,
    batch: usize,
    absorbed: Arc<AtomicU64>,
    mark: Arc<AtomicU8>,
) -> RelayWindow {
    pin_to(RELAY_CORE);
    // The product's forwarding core and loop on the product's kernel-UDP
    // backend: recvmmsg in, one sendmmsg per block out.
    let mut fwd = BlockForwarder::new(stream, clubcast::auth::verifier::DEFAULT_WINDOW);
    fwd.set_table(subscriber_table(&subscribers));
    let most_copies = subscribers.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut io = UdpBatchIo::new(socket.as_raw_fd(), batch, most_copies);
    let totals = |io: &UdpBatchIo, fwd: &BlockForwarder| -> Totals {
        let sent = io.sink().stats();
        (
            io.receive_stats().datagrams,
            fwd.stats().forwarded_blocks,
            sent.sent,
            sent.bytes + sent.sent * L2_OVERHEAD,
        )
    };
    let mut start: Option<(Instant, f64, Totals, Histogram<u64>)> = None;
    loop {
        match mark.load(Ordering::Relaxed) {
            MARK_MEASURE if start.is_none() => {
                let latency = io.sink().latency().histogram().clone();
                start = Some((
                    Instant::now(),
                    thread_cpu_seconds(),
                    totals(&io, &fwd),
                    latency,
                ));
            }
            MARK_STOP => break,
            _ => {}
        }
        if forward_batch(&mut io, &mut fwd, batch, now_us()) == 0 {
            io.wait(1);
        }
        absorbed.store(io.receive_stats().datagrams, Ordering::Relaxed);
    }
    let Some((at, cpu, s, before)) = start else {
        return RelayWindow::default();
    };
    let end = totals(&io, &fwd);
    let mut latency = io.sink().latency().histogram().clone();
    latency
        .subtract(&before)
        .expect("the later histogram holds the earlier one");
    RelayWindow {
        seconds: at.elapsed().as_secs_f64(),
        cpu_seconds: thread_cpu_seconds() - cpu,
        ingress: end.0 - s.0,
        forwarded_blocks: end.1 - s.1,
        egress_frames: end.2 - s.2,
        egress_bytes: end.3 - s.3,
        latency: Some(latency),
        idle_stalls: None,
    }
}

/// Phase 3: a plain AF_XDP TX loop of prebuilt frames. Returns (frames
/// completed, seconds, CPU seconds, frames delivered to subscribers).
fn txonly(args: &Args, delivered: &AtomicU64) -> (u64, f64, f64, u64, f64) {
    pin_to(RELAY_CORE);
    const FRAMES: u32 = 8192;
    const RING: u32 = 8192;
    let ring = |n| QueueSize::new(n).expect("ring size");
    let umem_config = UmemConfig::builder()
        .frame_size(FrameSize::new(2048).expect("frame size"))
        .fill_queue_size(ring(RING))
        .comp_queue_size(ring(RING))
        .frame_headroom(0)
        .build()
        .expect("UMEM config");
    let (umem, mut free) = Umem::new(umem_config, NonZeroU32::new(FRAMES).expect("frames"), false)
        .expect("create the TX-only UMEM");
    let interface = Interface::new(std::ffi::CString::new(RELAY_IF).expect("interface name"));
    let socket_config = SocketConfig::builder()
        .rx_queue_size(ring(64))
        .tx_queue_size(ring(RING))
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_COPY)
        .build();
    // The worker's socket was just closed: the queue may be busy a moment.
    let mut tries = 0;
    let (mut tx, _rx, rings) = loop {
        // SAFETY: a fresh UMEM used by this socket only.
        match unsafe { Socket::new(socket_config, &umem, &interface, 0) } {
            Ok(s) => break s,
            Err(e) if tries < 40 => {
                tries += 1;
                let _ = e;
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("bind the TX-only AF_XDP socket: {e}"),
        }
    };
    let (_fill, mut comp) = rings.expect("a new UMEM comes with its rings");
    let fd: RawFd = tx.fd().as_raw_fd();

    // Prebuild every frame, subscribers round-robin.
    let payload = vec![0xabu8; TXONLY_FRAME - HEADERS_LEN];
    for (i, desc) in free.iter_mut().enumerate() {
        // SAFETY: each descriptor names its own frame of this UMEM, not yet
        // handed to the kernel.
        let mut data = unsafe { umem.data_mut(desc) };
        data.cursor().set_pos(TXONLY_FRAME);
        let headers = UdpHeaders {
            src_mac: RELAY_MAC,
            dst_mac: PEER_MAC,
            src: SocketAddrV4::new(RELAY_IP, RELAY_PORT),
            dst: SocketAddrV4::new(subscriber_ip(i % args.peers), SUBSCRIBER_PORT),
            ip_id: i as u16,
            checksum: UdpChecksum::Compute,
        };
        let n = frame::write_frame(data.contents_mut(), &headers, &payload)
            .expect("write a TX-only frame");
        assert_eq!(n, TXONLY_FRAME);
    }
    let mut comp_descs = vec![FrameDesc::default(); 256];
    let mut completed = 0u64;
    let warm_end = Instant::now() + Duration::from_millis(args.warmup_ms);
    let mut start: Option<(Instant, f64, u64, u64, f64)> = None;
    let mut end_at = None;
    loop {
        let now = Instant::now();
        if start.is_none() && now >= warm_end {
            start = Some((
                now,
                thread_cpu_seconds(),
                completed,
                delivered.load(Ordering::Relaxed),
                core_steal_seconds(RELAY_CORE),
            ));
            end_at = Some(now + Duration::from_secs_f64(args.seconds));
        }
        if end_at.is_some_and(|e| now >= e) {
            break;
        }
        // SAFETY: the completion ring names frames of this UMEM that were
        // submitted; the kernel is done with them.
        let n = unsafe { comp.consume(&mut comp_descs) };
        for desc in &mut comp_descs[..n] {
            // Completion resets the length: set it again (contents stay).
            // SAFETY: the frame is back in user space's hands.
            let mut data = unsafe { umem.data_mut(desc) };
            data.cursor().set_pos(TXONLY_FRAME);
            free.push(*desc);
        }
        completed += n as u64;
        if !free.is_empty() {
            let take = free.len().min(256);
            let at = free.len() - take;
            // SAFETY: the frames are owned by user space, written and with
            // their lengths set.
            let produced = unsafe { tx.produce(&free[at..]) };
            // The ring took the first `produced` of them; the rest stay free.
            free.drain(at..at + produced);
        }
        for _ in 0..16 {
            // SAFETY: a zero-length sendto on this process's AF_XDP socket.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                break;
            }
            if tx.nb_free_exact() == RING {
                break;
            }
        }
    }
    let Some((at, cpu, c0, d0, steal0)) = start else {
        return (0, 0.0, 0.0, 0, 0.0);
    };
    let result = (
        completed - c0,
        at.elapsed().as_secs_f64(),
        thread_cpu_seconds() - cpu,
        delivered.load(Ordering::Relaxed) - d0,
        core_steal_seconds(RELAY_CORE) - steal0,
    );
    // Let the ring drain before the socket closes.
    thread::sleep(Duration::from_millis(100));
    result
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn json_line(r: &PhaseResult, peers: usize) -> String {
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.3}")
        } else {
            "null".to_owned()
        }
    };
    format!(
        "{{\"io\":\"{}\",\"peers\":{},\"egress_pps\":{},\"egress_gbps\":{},\
         \"ingress_blocks_per_s\":{},\"lat_us_p50\":{},\"lat_us_p99\":{},\
         \"lat_us_p999\":{},\"cpu_per_mpps\":{},\"relay_core_steal_ms\":{},\
         \"relay_idle_stalls\":{},\"relay_idle_stall_ms\":{}}}",
        r.io,
        peers,
        num(r.egress_pps()),
        num(r.egress_gbps()),
        num(r.relay.ingress as f64 / r.relay.seconds),
        num(r.quantile_us(0.5)),
        num(r.quantile_us(0.99)),
        num(r.quantile_us(0.999)),
        num(r.cpu_per_mpps()),
        num(r.relay_core_steal * 1e3),
        r.relay
            .idle_stalls
            .map_or("null".to_owned(), |(n, _)| n.to_string()),
        num(r.relay.idle_stalls.map_or(f64::NAN, |(_, t)| t * 1e3)),
    )
}

fn print_figures(r: &PhaseResult) {
    let s = r.relay.seconds;
    println!(
        "{:>4}: {:.2} s  sender {:.0} blocks/s  relay ingress {:.0} blocks/s  \
         forwarded {:.0} blocks/s  relay egress {:.0} pps  subscribers {:.0} pps  \
         {:.3} Gbit/s  latency p50/p99/p99.9 {:.1}/{:.1}/{:.1} us  relay CPU {:.2} s \
         ({:.0}%)  {:.3} CPU-s per M packets  process CPU {:.0}% of one core  \
         relay core stolen {:.0} ms{}{}",
        r.io,
        s,
        r.sent as f64 / s,
        r.relay.ingress as f64 / s,
        r.relay.forwarded_blocks as f64 / s,
        r.relay.egress_frames as f64 / s,
        r.egress_pps(),
        r.egress_gbps(),
        r.quantile_us(0.5),
        r.quantile_us(0.99),
        r.quantile_us(0.999),
        r.relay.cpu_seconds,
        100.0 * r.relay.cpu_seconds / s,
        r.cpu_per_mpps(),
        100.0 * r.process_cpu / s,
        r.relay_core_steal * 1e3,
        r.relay.idle_stalls.map_or(String::new(), |(n, t)| format!(
            "  idle loops that lost the core (>= {} us): {n}, {:.2} ms",
            STALL_MIN.as_micros(),
            t * 1e3
        )),
        if r.pool_ran_out {
            "  (pool ran out)"
        } else {
            ""
        },
    );
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if !has_bpf_privileges() {
        let _ = writeln!(
            io::stderr(),
            "bench_relay: AF_XDP, XDP programs and network namespaces need root \
             (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); run `sudo -E scripts/bench-relay.sh`"
        );
        return ExitCode::from(1);
    }
    if args.peers == 0
        || args.peers > MAX_PEERS
        || args.clubs == 0
        || args.clubs > CLUBS as usize
        || !(1..=1024).contains(&args.batch)
    {
        let _ = writeln!(
            io::stderr(),
            "bench_relay: --peers must be 1..={MAX_PEERS}, --clubs 1..={CLUBS}, --batch 1..=1024"
        );
        return ExitCode::from(2);
    }
    args.clubs = args.clubs.min(args.peers);
    if args.pool_blocks == 0 {
        let secs = args.seconds + args.warmup_ms as f64 / 1e3;
        let per_second = if args.full_stream {
            300_000.0
        } else {
            100_000.0
        };
        args.pool_blocks = (per_second * secs) as usize;
    }

    let t = Instant::now();
    let sent_clubs = if args.full_stream {
        CLUBS as u16
    } else {
        args.clubs as u16
    };
    let pool = Arc::new(build_pool(args.pool_blocks, sent_clubs));
    println!(
        "signed a stream of {BATCH_BLOCKS}-block batches over clubs 0..{} \
         ({PAYLOAD_LEN}-byte payloads, {} bytes per datagram) in {:.1} s; the pool keeps \
         the {} blocks of clubs 0..{}; {} subscribers on clubs 0..{} ({} per club)",
        CLUBS - 1,
        pool.lens.first().copied().unwrap_or(0),
        t.elapsed().as_secs_f64(),
        pool.len(),
        sent_clubs - 1,
        args.peers,
        args.clubs - 1,
        args.peers / args.clubs,
    );

    let verify_us = ed25519_verify_us();
    println!(
        "ed25519 verify on this host: {verify_us:.1} us (median of {VERIFY_TIMINGS}); the first \
         block of each batch waits for it before its copies go out, so with 1 block in \
         {BATCH_BLOCKS} paying it the half-load p99 is at least about it plus the copies' p50"
    );
    println!("{{\"ed25519_verify_us\":{verify_us:.1}}}");

    // Everything runs on a thread of its own namespace; it all goes away
    // when the thread ends.
    let bench = thread::spawn(move || run_all(&args, &pool));
    let (results, txonly_pps, peers) = match bench.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    for r in &results {
        print_figures(r);
    }
    println!("txonly ceiling: {txonly_pps:.0} frames/s of {TXONLY_FRAME} bytes");
    for r in &results {
        println!("{}", json_line(r, peers));
    }
    let xdp = results[0].egress_pps();
    let udp = results[1].egress_pps();
    let ratio = |a: f64, b: f64| {
        if b > 0.0 && a.is_finite() {
            format!("{:.3}", a / b)
        } else {
            "null".to_owned()
        }
    };
    let lat_p99 = results[2].quantile_us(0.99);
    println!(
        "{{\"xdp_over_udp_egress\":{},\"xdp_over_txonly_ceiling\":{},\"lat_us_p99_half_load\":{}}}",
        ratio(xdp, udp),
        ratio(xdp, txonly_pps),
        if lat_p99.is_finite() {
            format!("{lat_p99:.1}")
        } else {
            "null".to_owned()
        }
    );
    ExitCode::SUCCESS
}

/// How many signature checks [`ed25519_verify_us`] times.
const VERIFY_TIMINGS: usize = 201;

/// The median time of one ed25519 check of a batch statement on this
/// host, in microseconds: the check the first block of each batch waits
/// for in the relay, and the part of its latency no batching removes.
fn ed25519_verify_us() -> f64 {
    let key = SourceKey::from_seed(&[0x5e; 32]);
    let stream = key.stream_id();
    let statement = BatchStatement {
        stream_key: stream.to_bytes(),
        batch: 1,
        first_seq: BATCH_BLOCKS,
        count: BATCH_BLOCKS as u16,
        timestamp_us: 0,
        root: [0x7a; 32],
    }
    .to_bytes();
    let signature = key.sign(&statement);
    let mut times: Vec<f64> = (0..VERIFY_TIMINGS)
        .map(|_| {
            let t = Instant::now();
            let ok = stream.verify(std::hint::black_box(&statement), &signature);
            let us = t.elapsed().as_secs_f64() * 1e6;
            assert!(ok, "a statement this bench signed verifies");
            us
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[VERIFY_TIMINGS / 2]
}

/// Builds the topology and runs the three phases.
fn run_all(args: &Args, pool: &Arc<Pool>) -> (Vec<PhaseResult>, f64, usize) {
    // This thread waits beside the sender; the relay of each phase has the
    // other core to itself.
    pin_to(SENDER_CORE);
    enter_private_netns();
    setup_relay_end(args.peers);
    let (peer_ns, mut peers) = start_peer_namespace(args.peers, args.sink);
    let stream = SourceKey::from_seed(&SOURCE_SEED).stream_id();

    let delivered = Arc::new(AtomicU64::new(0));
    let drain_stop = Arc::new(AtomicBool::new(false));
    // The link keeps the sink attached; the program goes to its reader.
    let (sink, _sink_link) = peers.sink.take().unzip();
    let drain = {
        let (delivered, stop) = (Arc::clone(&delivered), Arc::clone(&drain_stop));
        let sockets = std::mem::take(&mut peers.subscribers);
        thread::spawn(move || match sink {
            Some(prog) => run_sink_reader(&prog, &delivered, &stop),
            None => run_drain(&sockets, &delivered, &stop),
        })
    };
    let mut by_club: Vec<Vec<SocketAddrV4>> = vec![Vec::new(); CLUBS as usize];
    for i in 0..args.peers {
        by_club[usize::from(subscriber_club(i, args.clubs))]
            .push(SocketAddrV4::new(subscriber_ip(i), SUBSCRIBER_PORT));
    }

    // Phase 1: AF_XDP worker.
    let xdp = xdp_phase("xdp", args, pool, &peers.sender, &by_club, &delivered, None);
    thread::sleep(Duration::from_millis(200));

    // Phase 2: kernel UDP, no XDP program attached.
    let udp = {
        let socket = UdpSocket::bind((RELAY_IP, RELAY_PORT)).expect("bind the relay's UDP socket");
        set_buffers(&socket);
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .expect("SO_RCVTIMEO");
        let absorbed = Arc::new(AtomicU64::new(0));
        let mark = Arc::new(AtomicU8::new(MARK_WARMUP));
        let relay = {
            let (absorbed, mark, by_club) =
                (Arc::clone(&absorbed), Arc::clone(&mark), by_club.clone());
            let batch = args.batch;
            thread::spawn(move || udp_relay(socket, stream, by_club, batch, absorbed, mark))
        };
        drive_phase(
            "udp",
            args,
            &peers.sender,
            pool,
            &delivered,
            &absorbed,
            &mark,
            relay,
            None,
        )
    };
    thread::sleep(Duration::from_millis(200));

    // Phase 3: the raw AF_XDP TX ceiling.
    let (frames, secs, cpu, got, steal) = txonly(args, &delivered);
    thread::sleep(Duration::from_millis(200));

    // Phase 4: latency at half of the AF_XDP relay's capacity, the worker
    // spinning on its core and the sender paced on the other.
    pin_to(SENDER_CORE);
    let half = xdp.relay.ingress as f64 / xdp.relay.seconds / 2.0;
    let lat = xdp_phase(
        "xdp_half_load",
        args,
        pool,
        &peers.sender,
        &by_club,
        &delivered,
        Some(half),
    );
    let txonly_pps = frames as f64 / secs;
    println!(
        "txonly: {secs:.2} s  {txonly_pps:.0} frames/s completed  subscribers {:.0} pps  \
         {:.3} Gbit/s  CPU {cpu:.2} s  {:.3} CPU-s per M packets  core stolen {:.0} ms",
        got as f64 / secs,
        txonly_pps * TXONLY_FRAME as f64 * 8.0 / 1e9,
        cpu / (frames as f64 / 1e6),
        steal * 1e3,
    );

    thread::sleep(Duration::from_millis(100));
    drain_stop.store(true, Ordering::Relaxed);
    drain.join().expect("the drain thread panicked");
    drop(peers.sender);
    drop(peer_ns);
    (vec![xdp, udp, lat], txonly_pps, args.peers)
}

/// One AF_XDP phase: the steering program, the socket and the worker, with
/// the subscribers of `by_club`; at full load, or paced at `half` blocks a
/// second with the worker spinning on a core of its own.
fn xdp_phase(
    io: &'static str,
    args: &Args,
    pool: &Arc<Pool>,
    sender: &UdpSocket,
    by_club: &[Vec<SocketAddrV4>],
    delivered: &Arc<AtomicU64>,
    half: Option<f64>,
) -> PhaseResult {
    let stream = SourceKey::from_seed(&SOURCE_SEED).stream_id();
    let steering = SteeringProgram::load(RELAY_PORT).expect("load the steering program");
    let xsk = open_xsk_retrying();
    let (publisher, updates) = fanout_channel(2);
    let worker = Worker::new(
        WorkerConfig {
            idle: IdlePolicy::Yield,
            batch: args.batch,
            ..WorkerConfig::default()
        },
        xsk,
        &steering,
        LocalEndpoint {
            mac: RELAY_MAC,
            addr: SocketAddrV4::new(RELAY_IP, RELAY_PORT),
        },
        stream,
        updates,
    )
    .expect("create the worker");
    publisher
        .publish(subscriber_table(by_club))
        .expect("publish the table");
    let ifindex = nix::net::if_::if_nametoindex(RELAY_IF).expect("relay ifindex");
    let attachment = steering
        .attach(ifindex, XdpMode::Native)
        .expect("attach the steering program");
    let absorbed = Arc::new(AtomicU64::new(0));
    let mark = Arc::new(AtomicU8::new(MARK_WARMUP));
    let relay = {
        let (absorbed, mark) = (Arc::clone(&absorbed), Arc::clone(&mark));
        let spin = half.is_some();
        thread::spawn(move || xdp_relay(worker, absorbed, mark, spin))
    };
    let r = drive_phase(
        io, args, sender, pool, delivered, &absorbed, &mark, relay, half,
    );
    drop(attachment);
    drop(publisher);
    r
}

/// The block tag subscriber `addr` gave the relay (any distinct value).
fn tag_of(addr: SocketAddrV4) -> u64 {
    u64::from(u32::from(*addr.ip())) << 16 | u64::from(addr.port())
}

/// The fan-out table of the subscribers of each club (`by_club[c]`).
fn subscriber_table(by_club: &[Vec<SocketAddrV4>]) -> Arc<FanoutTable> {
    let mut builder = FanoutTable::builder(FanoutLimits::default());
    builder.swarm_clubs(CLUBS as u16);
    for (club, addrs) in by_club.iter().enumerate() {
        for addr in addrs {
            builder
                .add(club as u16, Subscriber::new(PEER_MAC, *addr, tag_of(*addr)))
                .expect("within the fan-out limits");
        }
    }
    Arc::new(builder.build())
}

/// Opens the relay's AF_XDP socket, retrying a busy queue for a moment.
fn open_xsk_retrying() -> XskSocket {
    let config = XskConfig {
        bind_mode: BindMode::Copy,
        ..XskConfig::default()
    };
    let mut tries = 0;
    loop {
        match XskSocket::open(RELAY_IF, 0, &config) {
            Ok(xsk) => return xsk,
            Err(XskError::Busy { .. }) if tries < 40 => {
                tries += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("bind the relay's AF_XDP socket: {e}"),
        }
    }
}
