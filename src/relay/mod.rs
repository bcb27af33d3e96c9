//! The relay's data plane: the kernel-bypass path a super-peer relay runs
//! its BLOCK traffic on (design principle 3, data plane vs control plane).
//!
//! [`steer`] wraps the XDP program in `bpf/relay.bpf.c` that redirects BLOCK
//! datagrams for the relay port into per-queue AF_XDP sockets and passes
//! everything else to the kernel. [`xsk`] sets up one such socket with its
//! UMEM and rings; [`frame`] parses and writes the Ethernet/IPv4/UDP framing
//! around a datagram; [`fanout`] holds the club-to-subscribers table the
//! control plane publishes; [`xdp_io`] is the AF_XDP backend of the
//! packet-IO seam (`crate::io::packet`), rings and UMEM frames; [`worker`]
//! is the per-queue loop that runs the forwarding core on it, and
//! [`claims`] lets the workers of one relay fan each block out once.
//! [`uplink`] carries the verified blocks from the workers back to the
//! control plane; [`neighbours`] reads next-hop MAC addresses from the
//! kernel; [`control`] is the control plane (the relay-mode peer state
//! machine on the kernel socket) that turns its uploads into fan-out
//! tables; [`sender_filter`] tells the XDP program which senders may send
//! BLOCKs; [`node`] runs the relay on either backend through one `Node`;
//! [`dataplane`] starts and stops the steering program and one
//! pinned worker thread per queue.

pub mod claims;
pub mod control;
pub mod dataplane;
pub mod fanout;
pub mod frame;
pub mod neighbours;
pub mod next_hops;
pub mod node;
pub mod sender_filter;
pub mod steer;
pub mod uplink;
pub mod worker;
pub mod xdp_io;
pub mod xsk;

pub use claims::{ForwardClaims, CLAIM_WINDOW};
pub use control::{ControlPlane, ControlStats};
pub use dataplane::{ControlHandles, StartError, WorkerReport, XdpDataPlane, XdpOptions};
pub use fanout::{
    fanout_channel, FanoutError, FanoutLimits, FanoutPublisher, FanoutTable, FanoutTableBuilder,
    FanoutUpdates, PublishError, Subscriber,
};
pub use neighbours::{InterfaceInfo, NeighbourTable};
pub use next_hops::{AnyNextHop, KernelNextHops, NextHops};
pub use node::{inline_plane, RelayNode};
pub use sender_filter::SenderFilter;
pub use steer::{
    has_bpf_privileges, SenderGate, SteerCounters, SteerError, SteeringProgram, XdpAction,
    XdpAttachment, XdpMode, MAX_QUEUES,
};
pub use uplink::{Uplink, UplinkSender};
pub use worker::{
    IdlePolicy, LatencySummary, LocalEndpoint, Worker, WorkerConfig, WorkerError, WorkerShare,
    WorkerStats,
};
pub use xsk::{BindMode, XskConfig, XskError, XskKernelStats, XskSocket};
