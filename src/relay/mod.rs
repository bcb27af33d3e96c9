//! The relay's data plane: the kernel-bypass path a super-peer relay runs
//! its BLOCK traffic on (design principle 3, data plane vs control plane).
//!
//! [`steer`] wraps the XDP program in `bpf/relay.bpf.c` that redirects BLOCK
//! datagrams for the relay port into per-queue AF_XDP sockets and passes
//! everything else to the kernel. [`xsk`] sets up one such socket with its
//! UMEM and rings; [`frame`] parses and writes the Ethernet/IPv4/UDP framing
//! around a datagram; [`fanout`] holds the club-to-subscribers table the
//! control plane publishes; [`worker`] is the per-queue loop that verifies
//! each BLOCK and copies it to the club's subscribers out of UMEM frames.
//! The control plane that fills the fan-out table, and the pinning of one
//! worker thread per queue, are not here yet.

pub mod fanout;
pub mod frame;
pub mod steer;
pub mod worker;
pub mod xsk;

pub use fanout::{
    fanout_channel, FanoutError, FanoutLimits, FanoutPublisher, FanoutTable, FanoutTableBuilder,
    FanoutUpdates, PublishError, Subscriber,
};
pub use steer::{
    has_bpf_privileges, SteerCounters, SteerError, SteeringProgram, XdpAction, XdpAttachment,
    XdpMode, MAX_QUEUES,
};
pub use worker::{
    IdlePolicy, LatencySummary, LocalEndpoint, Worker, WorkerConfig, WorkerError, WorkerStats,
};
pub use xsk::{BindMode, XskConfig, XskError, XskKernelStats, XskSocket};
