//! Packet-IO backends: the drivers that run the sans-IO roles of
//! [`crate::roles`] on real packets. Each backend owns the sockets (or
//! rings), reads the clock, and moves datagrams between the network and a
//! role's `handle_datagram` / `poll_transmit` through the
//! [`crate::roles::Node`] trait and nothing else. [`udp`] runs many roles on
//! kernel UDP sockets with batched `recvmmsg`/`sendmmsg` from one thread; an
//! AF_XDP backend for the relay's data plane comes later. [`clock`] is the
//! time source every backend on one machine shares.

pub mod clock;
pub mod udp;
