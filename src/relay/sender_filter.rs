//! Which senders may hand the relay's data plane a BLOCK: the relay's
//! validated uploaders, the peers it downloads from. The control plane
//! computes the set and hands it to a [`SenderFilter`]; on AF_XDP that is
//! the steering program's sender gate (`super::steer::SenderGate`), which
//! drops a BLOCK from anyone else in the XDP program, before it reaches a
//! worker. The inline relay needs none: it checks the connection itself.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;

use super::steer::SenderGate;

/// Keeps the set of senders whose BLOCKs the data plane takes.
pub trait SenderFilter: Send {
    /// From now on, only `allowed` may send BLOCKs.
    fn allow_only(&mut self, allowed: &BTreeSet<SocketAddrV4>);
}

impl SenderFilter for SenderGate {
    fn allow_only(&mut self, allowed: &BTreeSet<SocketAddrV4>) {
        SenderGate::allow_only(self, allowed);
    }
}
