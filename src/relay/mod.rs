//! The relay's data plane: the kernel-bypass path a super-peer relay runs
//! its BLOCK traffic on (design principle 3, data plane vs control plane).
//!
//! For now this holds only [`steer`], the safe wrapper around the XDP program
//! in `bpf/relay.bpf.c` that redirects BLOCK datagrams for the relay port into
//! per-queue AF_XDP sockets and passes everything else to the kernel. The
//! AF_XDP sockets, UMEM and pinned per-queue workers that consume those
//! BLOCKs are not here yet; nothing in this module speaks the club protocol.

pub mod steer;

pub use steer::{
    has_bpf_privileges, SteerCounters, SteerError, SteeringProgram, XdpAction, XdpAttachment,
    XdpMode, MAX_QUEUES,
};
