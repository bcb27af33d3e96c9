//! A whole swarm: the node type that holds any role, and the summary
//! figures of a run.
//!
//! Drivers (the kernel-UDP demo, the in-memory network) hold one
//! `SwarmNode` per tracker, source or peer. `SwarmSummary` reduces the
//! peers' counters to the figures a run reports: continuity, startup time,
//! delay, duplicate ratio, control overhead and forged blocks rejected.
//! `loopback` runs swarms on kernel UDP sockets; `netns` puts a relay and a
//! swarm in network namespaces of their own, joined by veth. `rig` builds
//! an impaired network of namespaces for real processes (with
//! `delay_queue` holding datagrams for delay and jitter), and `netbench`
//! runs the named impairment scenarios on it.

mod delay_queue;
pub mod loopback;
pub mod netbench;
pub mod netns;
mod node;
pub mod rig;
mod summary;

pub use node::SwarmNode;
pub use summary::SwarmSummary;
