//! Starting and stopping the relay's AF_XDP data plane as a whole.
//!
//! [`XdpDataPlane::start`] loads the steering program for the relay port,
//! attaches it to the interface, opens one AF_XDP socket per queue, builds
//! one [`Worker`] per socket (each with its fan-out channel and a sender on
//! the shared [`Uplink`]), and runs each on its own thread, pinned to its
//! core with `core_affinity` when cores are given. It returns what the
//! control plane needs: the uplink, the fan-out publishers and the
//! interface's identity. While they run, [`XdpDataPlane::worker_stats`]
//! sums the counters the workers last shared. [`XdpDataPlane::stop`] stops
//! the workers and returns their final counters; dropping it stops them too, and the steering
//! program is detached when its link closes. Any failure on the way out of
//! `start` undoes what was done (threads stopped, program detached) and
//! says which step failed, so a caller can fall back to kernel UDP.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hdrhistogram::Histogram;
use thiserror::Error;

use super::claims::ForwardClaims;
use super::fanout::{fanout_channel, FanoutPublisher, DEFAULT_CHANNEL_DEPTH};
use super::neighbours::InterfaceInfo;
use super::steer::{
    SenderGate, SteerCounters, SteerError, SteeringProgram, XdpAttachment, XdpMode,
};
use super::uplink::Uplink;
use super::worker::{
    IdlePolicy, LatencySummary, LocalEndpoint, Worker, WorkerConfig, WorkerError, WorkerShare,
    WorkerStats,
};
use super::xsk::{self, BindMode, XskConfig, XskError, XskSocket};
use crate::auth::StreamId;

/// Everything the data plane is started with.
#[derive(Debug, Clone)]
pub struct XdpOptions {
    /// The interface the relay's traffic arrives on.
    pub ifname: String,
    /// RX queues to serve, one worker each.
    pub queues: Vec<u32>,
    /// Core of each worker, in queue order; empty: not pinned.
    pub cores: Vec<usize>,
    /// How the steering program attaches.
    pub attach: XdpMode,
    /// Socket and UMEM sizes and bind mode.
    pub xsk: XskConfig,
    /// Worker loop settings.
    pub worker: WorkerConfig,
    /// Preferred busy polling, microseconds (0: off).
    pub busy_poll_us: u32,
    /// Uplink slots (see `super::uplink`).
    pub uplink_slots: usize,
}

impl XdpOptions {
    /// One unpinned worker on queue 0 of `ifname`, native XDP, copy bind,
    /// sleeping when idle: what a veth (one queue, no zero-copy) on a
    /// shared machine wants, as in the demo and the tests.
    pub fn veth(ifname: &str) -> Self {
        XdpOptions {
            ifname: ifname.into(),
            queues: vec![0],
            cores: Vec::new(),
            attach: XdpMode::Native,
            xsk: XskConfig {
                bind_mode: BindMode::Copy,
                ..XskConfig::default()
            },
            worker: WorkerConfig {
                idle: IdlePolicy::Wait,
                ..WorkerConfig::default()
            },
            busy_poll_us: 0,
            uplink_slots: super::uplink::DEFAULT_UPLINK_SLOTS,
        }
    }
}

/// Why the data plane could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// Reading the interface failed.
    #[error("{0}")]
    Interface(String),
    /// Loading or attaching the steering program failed.
    #[error(transparent)]
    Steer(#[from] SteerError),
    /// Opening an AF_XDP socket failed.
    #[error("queue {queue}: {source}")]
    Socket {
        /// The queue.
        queue: u32,
        /// What failed.
        source: XskError,
    },
    /// Setting up a worker failed.
    #[error("queue {queue}: {source}")]
    Worker {
        /// The queue.
        queue: u32,
        /// What failed.
        source: WorkerError,
    },
    /// Busy polling could not be turned on.
    #[error("queue {queue}: turning on busy polling failed: {source}")]
    BusyPoll {
        /// The queue.
        queue: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(&'static str),
}

/// One worker's final counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerReport {
    /// The queue it served.
    pub queue: u32,
    /// Its counters.
    pub stats: WorkerStats,
    /// Its ingress-to-submit latency.
    pub latency: LatencySummary,
    /// Whether it ran pinned to its core.
    pub pinned: bool,
}

/// What [`XdpDataPlane::start`] hands the control plane.
#[derive(Debug)]
pub struct ControlHandles {
    /// Verified blocks from every worker.
    pub uplink: Uplink,
    /// One fan-out publisher per worker.
    pub publishers: Vec<FanoutPublisher>,
    /// The interface's identity.
    pub iface: InterfaceInfo,
    /// The steering program's sender gate, on: the control plane keeps it
    /// equal to its uploaders.
    pub senders: SenderGate,
}

/// The running data plane.
pub struct XdpDataPlane {
    steering: SteeringProgram,
    shares: Vec<Arc<Mutex<WorkerShare>>>,
    attachment: Option<XdpAttachment>,
    workers: Vec<JoinHandle<WorkerReport>>,
    stop: Arc<AtomicBool>,
    bind_mode: BindMode,
}

impl std::fmt::Debug for XdpDataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpDataPlane")
            .field("workers", &self.workers.len())
            .field("bind_mode", &self.bind_mode)
            .finish_non_exhaustive()
    }
}

impl XdpDataPlane {
    /// Starts the data plane for `stream` on `local`'s port (see the module
    /// documentation).
    pub fn start(
        opts: &XdpOptions,
        local_port: u16,
        stream: StreamId,
    ) -> Result<(XdpDataPlane, ControlHandles), StartError> {
        if opts.queues.is_empty() {
            return Err(StartError::Invalid("at least one queue is needed"));
        }
        if !opts.cores.is_empty() && opts.cores.len() < opts.queues.len() {
            return Err(StartError::Invalid("give one core per queue, or none"));
        }
        let iface = InterfaceInfo::read(&opts.ifname).map_err(StartError::Interface)?;
        let local = LocalEndpoint {
            mac: iface.mac,
            addr: SocketAddrV4::new(iface.ipv4, local_port),
        };
        let steering = SteeringProgram::load(local_port)?;
        // The gate is on before BLOCKs can flow: until the control plane
        // names its uploaders, no BLOCK reaches a worker.
        let mut senders = steering.sender_gate()?;
        senders.set_on(true)?;
        let attachment = steering.attach(iface.index, opts.attach)?;
        let mut plane = XdpDataPlane {
            steering,
            shares: Vec::new(),
            attachment: Some(attachment),
            workers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            bind_mode: opts.xsk.bind_mode,
        };
        let (uplink, uplink_tx) = Uplink::new(opts.uplink_slots);
        let mut publishers = Vec::with_capacity(opts.queues.len());
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let claims = Arc::new(ForwardClaims::new());
        for (i, &queue) in opts.queues.iter().enumerate() {
            let socket = XskSocket::open(&opts.ifname, queue, &opts.xsk)
                .map_err(|source| StartError::Socket { queue, source })?;
            plane.bind_mode = socket.bind_mode();
            if opts.busy_poll_us > 0 {
                xsk::set_busy_poll(socket.fd(), opts.busy_poll_us, opts.worker.batch as u32)
                    .map_err(|source| StartError::BusyPoll { queue, source })?;
            }
            let (publisher, updates) = fanout_channel(DEFAULT_CHANNEL_DEPTH);
            let worker = Worker::new(opts.worker, socket, &plane.steering, local, stream, updates)
                .map_err(|source| StartError::Worker { queue, source })?
                .with_uplink(uplink_tx.clone());
            let worker = if opts.queues.len() > 1 {
                worker.with_claims(Arc::clone(&claims))
            } else {
                worker
            };
            let share = Arc::new(Mutex::new(WorkerShare::new()));
            plane.shares.push(Arc::clone(&share));
            let worker = worker.with_share(share);
            publishers.push(publisher);
            let core = opts
                .cores
                .get(i)
                .and_then(|&c| cores.iter().find(|id| id.id == c).copied());
            let stop = Arc::clone(&plane.stop);
            let handle = std::thread::Builder::new()
                .name(format!("xdp-q{queue}"))
                .spawn(move || run_worker(worker, core, &stop))
                .map_err(|_| StartError::Invalid("could not start a worker thread"))?;
            plane.workers.push(handle);
        }
        Ok((
            plane,
            ControlHandles {
                uplink,
                publishers,
                iface,
                senders,
            },
        ))
    }

    /// The steering program's counters, summed over CPUs.
    pub fn steer_counters(&self) -> Result<SteerCounters, SteerError> {
        self.steering.counters()
    }

    /// The kernel's run statistics for the steering program (see
    /// [`super::steer::RunStatsGuard`]).
    pub fn steer_run_stats(&self) -> std::io::Result<super::steer::ProgramRunStats> {
        self.steering.run_stats()
    }

    /// `init` with every worker's share, as it last shared it (every few
    /// thousand loops), folded in by `add`.
    fn summed<T>(&self, init: T, add: impl Fn(&mut T, &WorkerShare)) -> T {
        let mut sum = init;
        for share in &self.shares {
            if let Ok(share) = share.lock() {
                add(&mut sum, &share);
            }
        }
        sum
    }

    /// The workers' counters, summed, as they last shared them.
    pub fn worker_stats(&self) -> WorkerStats {
        self.summed(WorkerStats::default(), |sum, s| sum.add(&s.stats))
    }

    /// The workers' verifiers' counters, summed, as they last shared them.
    pub fn worker_verifier_stats(&self) -> crate::auth::VerifierStats {
        self.summed(crate::auth::VerifierStats::default(), |sum, s| {
            sum.add(&s.verifier)
        })
    }

    /// The workers' ingress-to-submit latency (ns), merged, as they last
    /// shared it.
    pub fn worker_latency(&self) -> Histogram<u64> {
        self.summed(WorkerShare::new().latency, |sum, s| {
            let _ = sum.add(&s.latency);
        })
    }

    /// The bind mode the sockets ended up in.
    pub fn bind_mode(&self) -> BindMode {
        self.bind_mode
    }

    /// How the steering program is attached.
    pub fn attach_mode(&self) -> Option<XdpMode> {
        self.attachment.as_ref().map(XdpAttachment::mode)
    }

    /// Stops the workers, detaches the program, and returns each worker's
    /// counters.
    pub fn stop(mut self) -> Vec<WorkerReport> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Vec<WorkerReport> {
        self.stop.store(true, Ordering::Relaxed);
        let reports = self
            .workers
            .drain(..)
            .filter_map(|h| h.join().ok())
            .collect();
        self.attachment = None;
        reports
    }
}

impl Drop for XdpDataPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A worker thread: pins itself, runs until `stop`, reports.
fn run_worker(
    mut worker: Worker,
    core: Option<core_affinity::CoreId>,
    stop: &AtomicBool,
) -> WorkerReport {
    let pinned = core.is_some_and(core_affinity::set_for_current);
    worker.run(stop);
    WorkerReport {
        queue: worker.queue().1,
        stats: worker.stats(),
        latency: worker.latency_summary(),
        pinned,
    }
}
