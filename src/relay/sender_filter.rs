//! Which senders may hand the relay's data plane a BLOCK: the relay's
//! validated uploaders, the peers it downloads from, each with the block
//! tag the relay gave it (its BLOCKs must carry it). The control plane
//! computes the set and hands it to a [`SenderFilter`]; on AF_XDP that is
//! the steering program's sender gate (`super::steer::SenderGate`), which
//! drops a BLOCK from anyone else, or without its sender's tag, in the XDP
//! program, before it reaches a worker. The inline relay needs none: it
//! checks the connection and the tag itself.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use super::steer::SenderGate;

/// Keeps the set of senders whose BLOCKs the data plane takes.
pub trait SenderFilter: Send {
    /// From now on, only the senders in `allowed` may send BLOCKs, each
    /// with the block tag it maps to.
    fn allow_only(&mut self, allowed: &BTreeMap<SocketAddrV4, u64>);
}

impl SenderFilter for SenderGate {
    fn allow_only(&mut self, allowed: &BTreeMap<SocketAddrV4, u64>) {
        SenderGate::allow_only(self, allowed);
    }
}
