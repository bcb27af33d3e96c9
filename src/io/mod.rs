//! Packet-IO backends: the drivers that run the sans-IO roles of
//! [`crate::roles`] on real packets. Each backend owns the sockets (or
//! rings), reads the clock, and moves datagrams between the network and a
//! role's `handle_datagram` / `poll_transmit` through the
//! [`crate::roles::Node`] trait and nothing else. [`udp`] runs many roles on
//! kernel UDP sockets with batched `recvmmsg`/`sendmmsg` from one thread.
//! The relay's forwarding core moves its copies through one seam,
//! [`crate::forward::CopySink`], with three backends: UMEM frames and the
//! AF_XDP rings (`crate::relay::worker`), [`udp_copies`] (one `sendmmsg`
//! per block on a kernel socket), and `crate::forward::mem` (a queue of
//! datagrams, for the simulator, the node's own transmits and tests).
//! [`clock`] is the time source every backend on one machine shares.

pub mod clock;
pub mod udp;
pub mod udp_copies;
