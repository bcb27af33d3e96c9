//! Packet-IO backends: the drivers that run the sans-IO roles of
//! [`crate::roles`] on real packets. Each backend owns the sockets (or
//! rings), reads the clock, and moves datagrams between the network and a
//! role's `handle_datagram` / `poll_transmit` through the
//! [`crate::roles::Node`] trait. [`udp`] runs many roles on kernel UDP
//! sockets with batched `recvmmsg`/`sendmmsg` from one thread. The relay's
//! forwarding core runs on the seam of [`packet`] (receive a batch, send a
//! batch, reclaim), with three backends: AF_XDP rings and UMEM frames
//! (`crate::relay::xdp_io`), [`udp_batch`] (a kernel socket, one
//! `sendmmsg` per block) and [`mem`] (queues in memory, for the simulator,
//! the relay's inline path and tests). [`clock`] is the time source every
//! backend on one machine shares; [`proc_udp`] reads the kernel's
//! receive-buffer drops of the sockets.

pub mod clock;
pub mod mem;
pub mod packet;
pub mod proc_udp;
pub mod udp;
pub mod udp_batch;
