//! The relay's data plane worker: one AF_XDP socket, one thread, no locks.
//! Mechanism and policy meet here and nowhere else.
//!
//! Each [`Worker::poll_once`] swaps in the newest fan-out table if the
//! control plane published one and runs one turn of the forwarding loop
//! (`crate::io::packet::forward_batch`) on the socket's rings
//! ([`XdpIo`]: RX frames in, UMEM TX frames out, completed frames
//! reclaimed) with its [`BlockForwarder`] (`crate::forward`: the same
//! judgement of stream, club and authentication as on every other path,
//! the claim among the relay's workers, the report to the control plane,
//! and a copy to each subscriber of the block's club that has not said
//! HAVE). Every outcome is counted in [`WorkerStats`], and each forwarded
//! block's time from its RX batch to its kick goes into a histogram. All
//! buffers are allocated in [`Worker::new`]: the loop never allocates,
//! never blocks, and takes no lock on a packet's path ([`Worker::run`]
//! shares its counters every few thousand loops with a `try_lock` that
//! skips rather than waits). Who subscribes is decided by the control
//! plane (`super::fanout`); control messages never get here (the steering
//! program passes them to the kernel).

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use thiserror::Error;

use super::claims::ForwardClaims;
use super::fanout::{FanoutTable, FanoutUpdates};
use super::frame::{MacAddr, UdpChecksum};
use super::steer::SteeringProgram;
use super::uplink::UplinkSender;
use super::xdp_io::XdpIo;
use super::xsk::{self, XskError, XskKernelStats, XskSocket};
use crate::auth::verifier::DEFAULT_WINDOW;
use crate::auth::StreamId;
use crate::counters::counters;
use crate::forward::{BlockForwarder, ForwardStats};
use crate::io::packet::{forward_batch, latency_histogram, PacketIo};

/// Default most RX frames handled per loop: with 8192-entry rings, batches
/// of 256 were lossless on veth (DESIGN.md, measured).
pub const DEFAULT_BATCH: usize = 256;

/// Default most TX kicks per loop. Copy mode transmits at most 32 frames per
/// `sendto` (the kernel's `TX_BATCH_SIZE`), so 512 kicks drain a full
/// 8192-entry TX ring with room to spare; what is left goes on the next loop.
pub const DEFAULT_MAX_KICKS: usize = 512;

/// Loops of [`Worker::run`] between refreshes of the shared counters.
const STATS_EVERY: u32 = 4096;

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

counters! {
    /// Everything the worker counted: its rings' mechanism here, its
    /// forwarding core's decisions in [`WorkerStats::forward`]. Each RX frame
    /// ends in one of `not_udp`, `malformed_frame`, `wrong_port` or one of the
    /// forwarding core's outcomes (see [`ForwardStats`]).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct WorkerStats {
        /// Calls of `poll_once`.
        polls as "polls",
        /// Calls that found no RX frame.
        idle_polls as "idle_polls",
        /// Frames taken from the RX ring.
        rx_frames as "rx_frames",
        /// Bytes of the frames taken from the RX ring.
        rx_bytes as "rx_bytes",
        /// Frames that are not IPv4/UDP or are IPv4 fragments.
        not_udp as "not_udp",
        /// Frames with a malformed Ethernet/IPv4/UDP header.
        malformed_frame as "malformed_frame",
        /// UDP datagrams to a port other than the relay's.
        wrong_port as "wrong_port",
        /// Frames submitted to the TX ring.
        tx_frames as "tx_frames",
        /// Bytes of the frames submitted to the TX ring.
        tx_bytes as "tx_bytes",
        /// Copies dropped because the TX ring had no room.
        tx_ring_full as "tx_ring_full",
        /// TX frames the kernel reported completed.
        tx_completed as "tx_completed",
        /// `sendto` kicks of the TX ring.
        tx_kicks as "tx_kicks",
        /// Kicks that failed with an unexpected error.
        tx_kick_errors as "tx_kick_errors",
        /// Loops that found the fill ring empty (the kernel had no frame to
        /// receive into).
        fill_ring_empty as "fill_ring_empty",
        /// RX frames the fill ring could not take back at once (retried).
        fill_ring_full as "fill_ring_full",
        /// RX wakeups the driver asked for.
        fill_wakeups as "fill_wakeups",
        /// Fan-out tables swapped in.
        table_swaps as "table_swaps",
        ;
        /// The forwarding core's counters; its `no_free_buffer` counts copies
        /// dropped because no TX frame was free.
        forward: ForwardStats
    }
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
/// counters, its verifier's and its latency histogram.
#[derive(Debug, Clone)]
pub struct WorkerShare {
    /// The counters.
    pub stats: WorkerStats,
    /// What its forwarding core's verifier did.
    pub verifier: crate::auth::VerifierStats,
    /// Ingress-to-submit latency of forwarded blocks, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl WorkerShare {
    /// Nothing shared yet.
    pub fn new() -> Self {
        WorkerShare {
            stats: WorkerStats::default(),
            verifier: crate::auth::VerifierStats::default(),
            latency: latency_histogram(),
        }
    }
}

impl Default for WorkerShare {
    fn default() -> Self {
        Self::new()
    }
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

/// The data plane worker of one AF_XDP socket. Create it on (or move it to)
/// the thread that runs it; it is `Send`, not `Sync`.
pub struct Worker {
    config: WorkerConfig,
    io: XdpIo,
    fwd: BlockForwarder,
    polls: u64,
    idle_polls: u64,
    table_swaps: u64,
    updates: FanoutUpdates,
    shared: Option<Arc<Mutex<WorkerShare>>>,
    ifname: String,
    queue: u32,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("local", &self.io.local())
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
        xsk.register(steering, local.addr.port())?;
        let ifname = xsk.ifname().to_owned();
        let queue = xsk.queue();
        Ok(Worker {
            config,
            io: XdpIo::new(
                xsk,
                local,
                config.udp_checksum,
                config.batch,
                config.max_kicks,
            ),
            fwd: BlockForwarder::new(stream, config.verifier_window),
            polls: 0,
            idle_polls: 0,
            table_swaps: 0,
            updates,
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
        self.polls += 1;
        if let Some(table) = self.updates.latest() {
            // The old table is freed here if no one else holds it: a free,
            // not an allocation, once per control-plane update.
            self.fwd.set_table(table);
            self.table_swaps += 1;
        }
        let n = forward_batch(
            &mut self.io,
            &mut self.fwd,
            self.config.batch,
            unix_micros(),
        );
        if n == 0 {
            self.idle_polls += 1;
        }
        n
    }

    /// Runs [`Worker::poll_once`] until `stop` is set, then sends what is
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
                    IdlePolicy::Wait => xsk::wait_rx(self.io.fd(), 1),
                }
            }
        }
        self.io.send_batch();
        self.io.reclaim();
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

    /// Copies the counters (its verifier's too) and the latency histogram
    /// into the share given by [`Worker::with_share`] now, unless a reader
    /// holds it.
    pub fn share(&self) {
        if let Some(Ok(mut shared)) = self.shared.as_ref().map(|s| s.try_lock()) {
            shared.stats = self.stats();
            shared.verifier = self.verifier_stats();
            shared.latency.reset();
            let _ = shared.latency.add(self.latency());
        }
    }

    /// The counters so far: the rings' and the forwarding core's.
    pub fn stats(&self) -> WorkerStats {
        let mut stats = WorkerStats {
            polls: self.polls,
            idle_polls: self.idle_polls,
            table_swaps: self.table_swaps,
            forward: self.fwd.stats(),
            ..WorkerStats::default()
        };
        self.io.count_into(&mut stats);
        stats
    }

    /// The verifier's counters so far.
    pub fn verifier_stats(&self) -> crate::auth::VerifierStats {
        self.fwd.verifier_stats()
    }

    /// The kernel's counters for the socket (one `getsockopt`; call it off
    /// the hot path).
    pub fn kernel_stats(&self) -> std::io::Result<XskKernelStats> {
        self.io.kernel_stats()
    }

    /// Ingress-to-submit latency of forwarded blocks, in nanoseconds: from
    /// the moment the loop took the block's RX batch to the moment its
    /// copies were on the TX ring and the kernel kicked, plus, for a block
    /// that waited parked for late hashes, that wait.
    pub fn latency(&self) -> &Histogram<u64> {
        self.io.latency().histogram()
    }

    /// Count, median, 99th percentile and maximum of [`Worker::latency`].
    pub fn latency_summary(&self) -> LatencySummary {
        let h = self.latency();
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
        self.io.fd()
    }
}

impl AsRawFd for Worker {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd()
    }
}

/// Microseconds since the UNIX epoch (0 if the clock is before it).
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summed_stats_carry_every_drop_counter() {
        let mut one = WorkerStats {
            rx_frames: 5,
            fill_ring_full: 1,
            ..WorkerStats::default()
        };
        one.forward.wrong_club = 3;
        one.forward.signature_checks_refused = 2;
        one.forward.unverifiable = 1;
        let mut sum = WorkerStats::default();
        sum.add(&one);
        sum.add(&one);
        assert_eq!(sum.rx_frames, 10);
        assert_eq!(sum.fill_ring_full, 2);
        assert_eq!(sum.forward.wrong_club, 6);
        assert_eq!(sum.forward.signature_checks_refused, 4);
        assert_eq!(sum.forward.unverifiable, 2);
        let named = sum.named();
        assert!(named.contains(&("rx_frames", named[2].1, 10)), "{named:?}");
    }
}
