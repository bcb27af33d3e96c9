//! clubcast: peer-to-peer live streaming over the club protocol of
//! US 2013/0066969 A1, with an AF_XDP super-peer relay.
//!
//! The crate is layered like the design brief (`../shared/DESIGN.md`):
//! `wire` parses and encodes datagrams without copying; `auth` signs and
//! verifies batches of blocks; `roles` holds the sans-IO state machines (the
//! tracker so far; source and peer to come); `io` the packet-IO backends (kernel UDP, AF_XDP,
//! in-memory); `relay` the AF_XDP data plane; `cli` the `clubcast` command.

pub mod auth;
pub mod cli;
pub mod roles;
pub mod sim;
pub mod swarm;
pub mod wire;
