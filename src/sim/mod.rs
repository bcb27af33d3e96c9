//! The deterministic in-memory network simulator.
//!
//! [`Network`] runs any number of sans-IO roles (anything implementing
//! [`crate::roles::Node`]) on a simulated network: per-node upload capacity
//! and queue, latency, jitter and loss, all driven by one seeded RNG and one
//! event queue, so a seed replays a run exactly. Swarm tests use it with a
//! handful of nodes; the simulator with thousands. The addresses nodes get
//! here are labels only and never reach a real socket. Nodes may sit
//! behind home routers ([`nat`]) that map and filter as real ones do.
//! [`SimSwarm`] runs whole swarms on it under the named impairment
//! [`Scenario`]s.

pub mod nat;
mod network;
mod swarm;

pub use nat::{NatKind, NatStats};
pub use network::{LinkProfile, NatId, NetStats, Network, NodeId, NodeStats};
pub use swarm::{Impairment, Scenario, SimSwarm, BASE_CLOCK_US};
