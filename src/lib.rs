//! clubcast: peer-to-peer live streaming over the club protocol of
//! US 2013/0066969 A1, with an AF_XDP super-peer relay.
//!
//! The crate is layered like the design brief (`../shared/DESIGN.md`):
//! `wire` parses and encodes datagrams without copying; `auth` signs and
//! verifies batches of blocks; `forward` is the one place that judges a
//! received block for every path; `roles` holds the sans-IO tracker, source and
//! peer state machines; `io` drives them on kernel UDP sockets; `sim` drives
//! them in a deterministic in-memory network; `swarm` holds any role as one
//! node type, sums up a run and builds network-namespace rigs; `relay` is
//! the AF_XDP super-peer (XDP steering program, AF_XDP sockets, the
//! verify-and-fan-out workers and the control plane that steers them);
//! `media` takes RTMP and MPEG-TS in at the source and serves players over
//! HTTP at the peers; `metrics` serves a node's counters to Prometheus;
//! `cli` is the `clubcast` command.

pub mod auth;
pub mod cli;
mod counters;
pub mod forward;
pub mod io;
pub mod media;
pub mod metrics;
pub mod relay;
pub mod roles;
pub mod sim;
pub mod swarm;
pub mod wire;
