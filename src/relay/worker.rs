//! The relay's data plane worker: one AF_XDP socket, one thread, no locks.
//! Mechanism only: the decisions are the forwarding core's.
//!
//! Each [`Worker::poll_once`] swaps in the newest fan-out table if the
//! control plane published one, reclaims completed TX frames, takes up to
//! `batch` frames from the RX ring and parses each one's Ethernet/IPv4/UDP
//! headers. It hands every datagram to the port it serves to its
//! [`BlockForwarder`] (`crate::forward`: the same judgement of stream, club
//! and authentication as on every other path, the claim among the relay's
//! workers, the report to the control plane, and a copy to each subscriber
//! of the block's club that has not said HAVE), with the UMEM's TX frames
//! as the copy sink: each copy gets a free frame with its own headers
//! around the datagram, whose UDP checksum is summed once. Copies go on the
//! TX ring and the kernel is kicked as soon as a kick's worth (32 frames)
//! is ready, and after the batch's last frame, not only after the whole
//! batch; then the RX frames go back to the fill ring. Every outcome is counted in [`WorkerStats`], and each
//! forwarded block's time from its RX batch to its kick goes into a
//! histogram. All buffers are allocated in [`Worker::new`]: the loop never
//! allocates, never blocks, and takes no lock on a packet's path
//! ([`Worker::run`] shares its counters every few thousand loops with a
//! `try_lock` that skips rather than waits). Who subscribes is decided by
//! the control plane (`super::fanout`); control messages never get here
//! (the steering program passes them to the kernel).

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use thiserror::Error;
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::claims::ForwardClaims;
use super::fanout::{FanoutTable, FanoutUpdates, Subscriber};
use super::frame::{self, MacAddr, PayloadSum, UdpChecksum, UdpHeaders, HEADERS_LEN};
use super::steer::SteeringProgram;
use super::uplink::UplinkSender;
use super::xsk::{self, Kick, XskError, XskKernelStats, XskSocket};
use crate::auth::verifier::DEFAULT_WINDOW;
use crate::auth::StreamId;
use crate::forward::{BlockForwarder, CopyError, CopySink, ForwardStats};

/// Default most RX frames handled per loop: with 8192-entry rings, batches
/// of 256 were lossless on veth (DESIGN.md, measured).
pub const DEFAULT_BATCH: usize = 256;

/// Default most TX kicks per loop. Copy mode transmits at most 32 frames per
/// `sendto` (the kernel's `TX_BATCH_SIZE`), so 512 kicks drain a full
/// 8192-entry TX ring with room to spare; what is left goes on the next loop.
pub const DEFAULT_MAX_KICKS: usize = 512;

/// Largest latency the histogram tracks, in nanoseconds (10 s); longer ones
/// are recorded as 10 s.
const LATENCY_MAX_NS: u64 = 10_000_000_000;

/// Loops of [`Worker::run`] between refreshes of the shared counters.
const STATS_EVERY: u32 = 4096;

/// Copies queued before a kick: copy mode transmits at most 32 frames per
/// `sendto` (the kernel's `TX_BATCH_SIZE`), so waiting for more only
/// delays the first.
const KICK_FRAMES: usize = 32;

/// Completion descriptors taken per ring read.
const COMPLETION_CHUNK: usize = 256;

/// What the worker does when a loop found no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdlePolicy {
    /// Spin (a pinned worker on a dedicated core: lowest latency).
    #[default]
    Spin,
    /// Yield the CPU to other threads (shared cores, tests).
    Yield,
    /// Sleep in `poll(2)` until frames arrive, at most 1 ms (an idle or
    /// lightly loaded relay; costs a wake-up's latency).
    Wait,
}

/// Settings of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Most RX frames per loop (at least 1, at most the socket's RX frames).
    pub batch: usize,
    /// Whether outgoing frames carry a UDP checksum.
    pub udp_checksum: UdpChecksum,
    /// Batches the verifier keeps (see `BatchVerifier::new`).
    pub verifier_window: usize,
    /// Most `sendto` kicks per loop (at least 1).
    pub max_kicks: usize,
    /// What [`Worker::run`] does on an empty loop.
    pub idle: IdlePolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            batch: DEFAULT_BATCH,
            udp_checksum: UdpChecksum::Compute,
            verifier_window: DEFAULT_WINDOW,
            max_kicks: DEFAULT_MAX_KICKS,
            idle: IdlePolicy::Spin,
        }
    }
}

/// The relay's own address on the interface: the source of every frame it
/// sends, and the UDP port its BLOCKs arrive on (the steering program's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// The interface's MAC address.
    pub mac: MacAddr,
    /// The relay's IPv4 address and UDP port.
    pub addr: SocketAddrV4,
}

/// Everything the worker counted: its rings' mechanism here, its
/// forwarding core's decisions in [`WorkerStats::forward`]. Each RX frame
/// ends in one of `not_udp`, `malformed_frame`, `wrong_port` or one of the
/// forwarding core's outcomes (see [`ForwardStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Calls of `poll_once`.
    pub polls: u64,
    /// Calls that found no RX frame.
    pub idle_polls: u64,
    /// Frames taken from the RX ring.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames that are not IPv4/UDP or are IPv4 fragments.
    pub not_udp: u64,
    /// Frames with a malformed Ethernet/IPv4/UDP header.
    pub malformed_frame: u64,
    /// UDP datagrams to a port other than the relay's.
    pub wrong_port: u64,
    /// Frames submitted to the TX ring.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Copies dropped because the TX ring had no room.
    pub tx_ring_full: u64,
    /// TX frames the kernel reported completed.
    pub tx_completed: u64,
    /// `sendto` kicks of the TX ring.
    pub tx_kicks: u64,
    /// Kicks that failed with an unexpected error.
    pub tx_kick_errors: u64,
    /// Loops that found the fill ring empty (the kernel had no frame to
    /// receive into).
    pub fill_ring_empty: u64,
    /// RX frames the fill ring could not take back at once (retried).
    pub fill_ring_full: u64,
    /// RX wakeups the driver asked for.
    pub fill_wakeups: u64,
    /// Fan-out tables swapped in.
    pub table_swaps: u64,
    /// The forwarding core's counters; its `no_free_buffer` counts copies
    /// dropped because no TX frame was free.
    pub forward: ForwardStats,
}

/// Percentiles of the ingress-to-submit latency, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Blocks recorded.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Largest.
    pub max_ns: u64,
}

/// What a worker shares with its readers every few thousand loops: its
/// counters and its latency histogram.
#[derive(Debug, Clone)]
pub struct WorkerShare {
    /// The counters.
    pub stats: WorkerStats,
    /// Ingress-to-submit latency of forwarded blocks, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl WorkerShare {
    /// Nothing shared yet.
    pub fn new() -> Self {
        WorkerShare {
            stats: WorkerStats::default(),
            latency: latency_histogram(),
        }
    }
}

impl Default for WorkerShare {
    fn default() -> Self {
        Self::new()
    }
}

/// An empty latency histogram (1 ns to [`LATENCY_MAX_NS`], 3 digits).
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
        .unwrap_or_else(|_| unreachable!("constant, valid bounds"))
}

/// Why a worker could not be set up.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// A setting is out of range.
    #[error("invalid worker setting `{field}`: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Registering the socket with the steering program failed.
    #[error(transparent)]
    Xsk(#[from] XskError),
}

/// The rings, owned by the worker's thread.
struct Rings {
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    fd: RawFd,
    tx_ring: u32,
    fill_ring: u32,
    need_wakeup: bool,
}

/// The UMEM's TX frames as the forwarding core's copy sink: each copy of
/// a block gets a free frame with its own Ethernet/IPv4/UDP headers around
/// the shared datagram (whose UDP payload checksum is summed once).
struct UmemTx {
    umem: Umem,
    local: LocalEndpoint,
    checksum: UdpChecksum,
    /// TX frames owned by user space and free.
    tx_free: Vec<FrameDesc>,
    /// TX frames written and waiting for the TX ring.
    tx_pending: Vec<FrameDesc>,
    ip_id: u16,
    sum: PayloadSum,
}

impl CopySink for UmemTx {
    fn begin(&mut self, datagram: &[u8]) {
        self.sum = match self.checksum {
            UdpChecksum::Compute => PayloadSum::of(datagram),
            UdpChecksum::Zero => PayloadSum::of(&[]),
        };
    }

    fn copy(&mut self, to: &Subscriber, datagram: &[u8]) -> Result<(), CopyError> {
        let Some(mut desc) = self.tx_free.pop() else {
            return Err(CopyError::NoBuffer);
        };
        let frame_len = HEADERS_LEN + datagram.len();
        // SAFETY: `desc` came off the free list, so it names a frame of
        // this UMEM that neither the kernel nor any other descriptor user
        // space holds refers to.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        // Completion resets a frame's length: set it for this frame.
        data.cursor().set_pos(frame_len);
        self.ip_id = self.ip_id.wrapping_add(1);
        let headers = UdpHeaders {
            src_mac: self.local.mac,
            dst_mac: to.mac,
            src: self.local.addr,
            dst: to.addr,
            ip_id: self.ip_id,
            checksum: self.checksum,
        };
        let written = frame::write_frame_summed(data.contents_mut(), &headers, datagram, self.sum);
        if written != Ok(frame_len) {
            // The frame is smaller than the datagram (ruled out by the
            // socket's config check): keep the frame, skip the copy.
            self.tx_free.push(desc);
            return Err(CopyError::TooLarge);
        }
        self.tx_pending.push(desc);
        Ok(())
    }

    /// The worker submits and kicks after each block it handles.
    fn flush(&mut self) {}
}

/// The data plane worker of one AF_XDP socket. Create it on (or move it to)
/// the thread that runs it; it is `Send`, not `Sync`.
pub struct Worker {
    config: WorkerConfig,
    rings: Rings,
    /// A second handle on the UMEM for reading RX frames while the
    /// forwarder writes TX frames (disjoint frames of one mapping).
    rx_umem: Umem,
    rx_descs: Box<[FrameDesc]>,
    comp_descs: Box<[FrameDesc]>,
    fill_backlog: Vec<FrameDesc>,
    fwd: BlockForwarder,
    tx: UmemTx,
    ring_stats: WorkerStats,
    updates: FanoutUpdates,
    latency: Histogram<u64>,
    shared: Option<Arc<Mutex<WorkerShare>>>,
    ifname: String,
    queue: u32,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("local", &self.tx.local)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker for the BLOCKs of `stream` arriving on `xsk`. Checks that
    /// `steering` steers `local`'s port and registers the socket in its
    /// XSKMAP (from then on BLOCKs flow in); fan-out tables arrive through
    /// `updates` (the table starts empty).
    pub fn new(
        config: WorkerConfig,
        xsk: XskSocket,
        steering: &SteeringProgram,
        local: LocalEndpoint,
        stream: StreamId,
        updates: FanoutUpdates,
    ) -> Result<Self, WorkerError> {
        let xsk_config = *xsk.config();
        if config.batch == 0 || config.batch > xsk_config.rx_frames as usize {
            return Err(WorkerError::InvalidConfig {
                field: "batch",
                reason: "must be between 1 and the socket's RX frames",
            });
        }
        if config.max_kicks == 0 {
            return Err(WorkerError::InvalidConfig {
                field: "max_kicks",
                reason: "must be at least 1",
            });
        }
        let latency = latency_histogram();
        xsk.register(steering, local.addr.port())?;

        let ifname = xsk.ifname().to_owned();
        let queue = xsk.queue();
        let fd = xsk.fd();
        let XskSocket {
            umem,
            rx,
            tx,
            fill,
            comp,
            tx_free,
            ..
        } = xsk;
        // Every TX frame is on this list at the start, so its capacity
        // covers every frame that can come back to it.
        let tx_frames = tx_free.len();
        Ok(Worker {
            config,
            rings: Rings {
                rx,
                tx,
                fill,
                comp,
                fd,
                tx_ring: xsk_config.tx_ring,
                fill_ring: xsk_config.fill_ring,
                need_wakeup: xsk_config.need_wakeup,
            },
            rx_umem: umem.clone(),
            rx_descs: vec![FrameDesc::default(); config.batch].into_boxed_slice(),
            comp_descs: vec![FrameDesc::default(); COMPLETION_CHUNK].into_boxed_slice(),
            fill_backlog: Vec::with_capacity(xsk_config.rx_frames as usize),
            fwd: BlockForwarder::new(stream, config.verifier_window),
            tx: UmemTx {
                umem,
                local,
                checksum: config.udp_checksum,
                tx_pending: Vec::with_capacity(tx_frames),
                tx_free,
                ip_id: 0,
                sum: PayloadSum::of(&[]),
            },
            ring_stats: WorkerStats::default(),
            updates,
            latency,
            shared: None,
            ifname,
            queue,
        })
    }

    /// Reports every verified block to the control plane through `uplink`:
    /// a fresh one as the full datagram it fans out, a duplicate as
    /// received.
    pub fn with_uplink(mut self, uplink: UplinkSender) -> Self {
        self.fwd.set_uplink(uplink);
        self
    }

    /// Fans out only the fresh blocks it is first to claim in `claims`,
    /// which the relay's other workers share: a block that reaches two
    /// queues goes out once.
    pub fn with_claims(mut self, claims: Arc<ForwardClaims>) -> Self {
        self.fwd.set_claims(claims);
        self
    }

    /// One loop: at most `batch` frames in, their copies out. Returns the
    /// number of RX frames handled. Never blocks.
    pub fn poll_once(&mut self) -> usize {
        self.ring_stats.polls += 1;
        if let Some(table) = self.updates.latest() {
            // The old table is freed here if no one else holds it: a free,
            // not an allocation, once per control-plane update.
            self.fwd.set_table(table);
            self.ring_stats.table_swaps += 1;
        }
        self.reclaim_completions();
        self.restock_fill();
        if self.rings.fill.nb_free_exact() == self.rings.fill_ring {
            self.ring_stats.fill_ring_empty += 1;
        }

        let batch = self.config.batch;
        // SAFETY: `rx_descs` are plain descriptors the ring overwrites; the
        // frames they then name were filled by the kernel and are ours until
        // they go back to the fill ring below.
        let n = unsafe { self.rings.rx.consume(&mut self.rx_descs[..batch]) };
        if n == 0 {
            self.ring_stats.idle_polls += 1;
            // Frames left in the TX ring by an earlier loop still need kicks.
            self.kick_tx();
            return 0;
        }
        let ingress = Instant::now();
        let now_us = unix_micros();
        let port = self.tx.local.addr.port();
        let mut blocks = 0u64;
        for i in 0..n {
            let desc = self.rx_descs[i];
            // SAFETY: `desc` names a frame of this UMEM that the kernel
            // filled and released to us; nothing writes it until it goes
            // back to the fill ring, and the sink only writes TX frames,
            // which are disjoint from it.
            let data = unsafe { self.rx_umem.data(&desc) };
            let frame = data.contents();
            let stats = &mut self.ring_stats;
            stats.rx_frames += 1;
            stats.rx_bytes += frame.len() as u64;
            let udp = match frame::parse(frame) {
                Ok(udp) => udp,
                Err(err) if err.is_other_protocol() => {
                    stats.not_udp += 1;
                    continue;
                }
                Err(_) => {
                    stats.malformed_frame += 1;
                    continue;
                }
            };
            if udp.dst.port() != port {
                stats.wrong_port += 1;
                continue;
            }
            if self.fwd.handle(udp.src, udp.payload, now_us, &mut self.tx) {
                blocks += 1;
            }
            // Forward on verify: copies go out as soon as a kick's worth
            // is ready (copy mode sends at most `KICK_FRAMES` a `sendto`),
            // not after the rest of the batch.
            if self.tx.tx_pending.len() >= KICK_FRAMES {
                self.submit_tx(ingress, std::mem::take(&mut blocks));
            }
        }
        self.submit_tx(ingress, blocks);
        self.return_rx(n);
        n
    }

    /// Runs [`Worker::poll_once`] until `stop` is set, then submits what is
    /// pending and reclaims completions once more.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut loops = 0u32;
        while !stop.load(Ordering::Relaxed) {
            loops = loops.wrapping_add(1);
            if loops.is_multiple_of(STATS_EVERY) {
                self.share();
            }
            if self.poll_once() == 0 {
                match self.config.idle {
                    IdlePolicy::Spin => std::hint::spin_loop(),
                    IdlePolicy::Yield => std::thread::yield_now(),
                    IdlePolicy::Wait => xsk::wait_rx(self.rings.fd, 1),
                }
            }
        }
        self.kick_tx();
        self.reclaim_completions();
        self.share();
    }

    /// Shares the counters and the latency histogram through `share`,
    /// which [`Worker::run`] then refreshes every few thousand loops
    /// (skipping a refresh rather than waiting when a reader holds the
    /// lock; copying into the histogram there allocates nothing).
    pub fn with_share(mut self, share: Arc<Mutex<WorkerShare>>) -> Self {
        self.shared = Some(share);
        self
    }

    /// Copies the counters and the latency histogram into the share given
    /// by [`Worker::with_share`] now, unless a reader holds it.
    pub fn share(&self) {
        if let Some(Ok(mut shared)) = self.shared.as_ref().map(|s| s.try_lock()) {
            shared.stats = self.stats();
            shared.latency.reset();
            let _ = shared.latency.add(&self.latency);
        }
    }

    /// The counters so far: the worker's own and its forwarding core's.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            forward: self.fwd.stats(),
            ..self.ring_stats
        }
    }

    /// The verifier's counters so far.
    pub fn verifier_stats(&self) -> crate::auth::VerifierStats {
        self.fwd.verifier_stats()
    }

    /// The kernel's counters for the socket (one `getsockopt`; call it off
    /// the hot path).
    pub fn kernel_stats(&self) -> std::io::Result<XskKernelStats> {
        xsk::read_kernel_stats(&self.rings.rx)
    }

    /// Ingress-to-submit latency of forwarded blocks, in nanoseconds: from
    /// the moment the loop took the block's RX batch to the moment its
    /// copies were on the TX ring and the kernel kicked.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Count, median, 99th percentile and maximum of [`Worker::latency`].
    pub fn latency_summary(&self) -> LatencySummary {
        let h = &self.latency;
        LatencySummary {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
        }
    }

    /// The fan-out table in use.
    pub fn table(&self) -> &Arc<FanoutTable> {
        self.fwd.table()
    }

    /// The interface and rx queue the worker serves.
    pub fn queue(&self) -> (&str, u32) {
        (&self.ifname, self.queue)
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> RawFd {
        self.rings.fd
    }

    /// Moves completed TX frames back to the free list.
    fn reclaim_completions(&mut self) {
        loop {
            // SAFETY: the completion ring names only frames of this UMEM
            // that were submitted for TX; the kernel is done with them.
            let n = unsafe { self.rings.comp.consume(&mut self.comp_descs[..]) };
            for desc in &self.comp_descs[..n] {
                // Free + pending + in flight never exceed the TX frames,
                // the free list's capacity, so this push never allocates.
                debug_assert!(self.tx.tx_free.len() < self.tx.tx_free.capacity());
                self.tx.tx_free.push(*desc);
            }
            self.ring_stats.tx_completed += n as u64;
            if n < self.comp_descs.len() {
                break;
            }
        }
    }

    /// Puts the pending TX frames (the copies of `blocks` blocks) on the TX
    /// ring, kicks the kernel and records the blocks' latency from
    /// `ingress`.
    fn submit_tx(&mut self, ingress: Instant, blocks: u64) {
        let tx = &mut self.tx;
        let stats = &mut self.ring_stats;
        if tx.tx_pending.is_empty() {
            // Frames an earlier loop left on the ring still want kicks.
            self.kick_tx();
            return;
        }
        // SAFETY: every pending descriptor names a frame of this UMEM that
        // user space owns and has written, with its length set.
        let produced = unsafe { self.rings.tx.produce(&tx.tx_pending) };
        for desc in &tx.tx_pending[..produced] {
            stats.tx_bytes += desc.lengths().data() as u64;
        }
        stats.tx_frames += produced as u64;
        let unsent = tx.tx_pending.len() - produced;
        if unsent > 0 {
            stats.tx_ring_full += unsent as u64;
            for desc in &tx.tx_pending[produced..] {
                tx.tx_free.push(*desc);
            }
        }
        tx.tx_pending.clear();
        self.kick_tx();
        if blocks > 0 {
            let ns = u64::try_from(ingress.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.latency
                .saturating_record_n(ns.clamp(1, LATENCY_MAX_NS), blocks);
        }
    }

    /// Kicks the TX ring until the kernel has taken everything on it, it
    /// says to stop, or `max_kicks` is reached.
    fn kick_tx(&mut self) {
        let rings = &mut self.rings;
        let stats = &mut self.ring_stats;
        for _ in 0..self.config.max_kicks {
            if rings.tx.nb_free_exact() == rings.tx_ring {
                return; // nothing left on the ring
            }
            if rings.need_wakeup && !rings.tx.needs_wakeup() {
                return; // the driver is polling the ring itself
            }
            stats.tx_kicks += 1;
            match xsk::kick_tx(rings.fd) {
                Kick::Done | Kick::Again => {}
                Kick::Busy => return,
                Kick::Failed(_) => {
                    stats.tx_kick_errors += 1;
                    return;
                }
            }
        }
    }

    /// Hands RX frames held back by an earlier loop to the fill ring.
    fn restock_fill(&mut self) {
        if self.fill_backlog.is_empty() {
            return;
        }
        // SAFETY: the backlog holds RX frames of this UMEM that user space
        // is done with.
        let given = unsafe { self.rings.fill.produce(&self.fill_backlog) };
        self.fill_backlog.drain(..given);
    }

    /// Hands the `n` frames of this loop's RX batch back to the fill ring.
    fn return_rx(&mut self, n: usize) {
        let descs = &self.rx_descs[..n];
        // SAFETY: these RX frames belong to this UMEM and user space is done
        // with them: the forwarder copied what it sends into TX frames.
        let given = if self.fill_backlog.is_empty() {
            unsafe { self.rings.fill.produce(descs) }
        } else {
            0
        };
        if given < n {
            self.ring_stats.fill_ring_full += (n - given) as u64;
            // The backlog's capacity is every RX frame: no allocation.
            self.fill_backlog.extend_from_slice(&descs[given..]);
        }
        if self.rings.need_wakeup && self.rings.fill.needs_wakeup() {
            self.ring_stats.fill_wakeups += 1;
            xsk::kick_rx(self.rings.fd);
        }
    }
}

impl AsRawFd for Worker {
    fn as_raw_fd(&self) -> RawFd {
        self.rings.fd
    }
}

/// Microseconds since the UNIX epoch (0 if the clock is before it).
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
