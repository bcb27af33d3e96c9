//! Where the relay's control plane finds the next-hop MAC address of a
//! receiver, injected so the control plane itself reads no file.
//!
//! AF_XDP frames carry their own Ethernet header, so the control plane
//! needs each receiver's next hop: [`KernelNextHops`] reads the kernel's
//! neighbour table for the relay's interface (again when a receiver is
//! not resolved yet, and every few seconds). On a kernel socket, and in
//! the simulator, the kernel or the network routes: [`AnyNextHop`] knows
//! every receiver. With the lookup injected, the control plane runs
//! deterministically in the simulator like any other role.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::frame::MacAddr;
use super::neighbours::{InterfaceInfo, NeighbourTable};
use crate::roles::Time;

/// Period of a full re-read of the neighbour table, in microseconds (the
/// table is also read whenever a receiver's MAC is not known).
const NEIGHBOUR_REREAD_US: u64 = 5_000_000;

/// A source of next-hop MAC addresses.
pub trait NextHops {
    /// Learns what it can of the next hops towards `ips` at `now`.
    fn refresh(&mut self, ips: &[Ipv4Addr], now: Time);
    /// The next hop towards `ip`, if known.
    fn mac(&self, ip: Ipv4Addr) -> Option<MacAddr>;
}

/// The kernel's neighbour table of one interface.
#[derive(Debug, Clone)]
pub struct KernelNextHops {
    ifname: String,
    iface: InterfaceInfo,
    macs: BTreeMap<Ipv4Addr, MacAddr>,
    read_at: Option<Time>,
}

impl KernelNextHops {
    /// The next hops of interface `ifname` (described by `iface`).
    pub fn new(ifname: &str, iface: InterfaceInfo) -> Self {
        KernelNextHops {
            ifname: ifname.to_owned(),
            iface,
            macs: BTreeMap::new(),
            read_at: None,
        }
    }
}

impl NextHops for KernelNextHops {
    fn refresh(&mut self, ips: &[Ipv4Addr], now: Time) {
        let stale = self
            .read_at
            .is_none_or(|t| now.0 >= t.0 + NEIGHBOUR_REREAD_US);
        let unknown = ips.iter().any(|ip| !self.macs.contains_key(ip));
        if !(stale || unknown) {
            return;
        }
        self.read_at = Some(now);
        let Ok(table) = NeighbourTable::read(&self.ifname) else {
            return;
        };
        self.macs.clear();
        for ip in ips {
            if let Some(mac) = table.next_hop(&self.iface, *ip) {
                self.macs.insert(*ip, mac);
            }
        }
    }

    fn mac(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.macs.get(&ip).copied()
    }
}

/// Every receiver is reachable and no MAC is needed: a kernel socket (or
/// the simulator) routes.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyNextHop;

impl NextHops for AnyNextHop {
    fn refresh(&mut self, _ips: &[Ipv4Addr], _now: Time) {}

    fn mac(&self, _ip: Ipv4Addr) -> Option<MacAddr> {
        Some([0; 6])
    }
}
