//! clubcast: peer-to-peer live streaming over the club protocol of
//! US 2013/0066969 A1, with an AF_XDP super-peer relay.
//!
//! The crate is layered like the design brief (`../shared/DESIGN.md`):
//! `wire` parses and encodes datagrams without copying; `auth` signs and
//! verifies batches of blocks; `roles` holds the sans-IO tracker, source and
//! peer state machines; `io` drives them on kernel UDP sockets; `sim` drives
//! them in a deterministic in-memory network; `swarm` holds any role as one
//! node type and sums up a run; `relay` is the AF_XDP super-peer's data
//! plane (XDP steering program, AF_XDP sockets, the verify-and-fan-out
//! worker); `cli` is the `clubcast` command.

pub mod auth;
pub mod cli;
pub mod io;
pub mod media;
pub mod relay;
pub mod roles;
pub mod sim;
pub mod swarm;
pub mod wire;
