//! Home routers for the simulator: NAT mapping and filtering (RFC 4787).
//!
//! A [`Nat`] stands between the private addresses of the nodes behind it
//! and one public IP address. A datagram going out gets a public source
//! port from a *mapping*: with [`NatKind::PortPreserving`] one mapping per
//! private address serves every destination and keeps the private port
//! when it is free (endpoint-independent mapping, as Linux `masquerade`
//! does); with [`NatKind::Symmetric`] every new destination gets a new
//! port (address-and-port-dependent mapping, as `masquerade
//! fully-random`). A datagram coming in to a public port passes only if
//! its mapping has sent to exactly that address and port within the last
//! [`MAPPING_TIMEOUT_US`] (address-and-port-dependent filtering, both
//! kinds); traffic either way keeps the entry alive, as conntrack does.
//! There is no hairpinning: the router drops what its own nodes send to
//! its public address. Ports are handed out in a fixed order, so a seed
//! still replays the same run.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::roles::Time;

/// How long a mapping's permission for one remote address lives without
/// traffic (Linux conntrack's timeout for a UDP flow, 30 s).
pub const MAPPING_TIMEOUT_US: u64 = 30_000_000;

/// How a router maps private addresses to public ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// One public port per private address, for every destination, the
    /// private port kept when free (endpoint-independent mapping).
    PortPreserving,
    /// A new public port for every destination (address-and-port-dependent
    /// mapping: a "symmetric" NAT).
    Symmetric,
}

/// What a router did, in datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Mappings made.
    pub mappings: u64,
    /// Datagrams translated on the way out.
    pub out: u64,
    /// Datagrams let in through a mapping.
    pub let_in: u64,
    /// Datagrams dropped on the way in: no mapping at the port, or the
    /// mapping never sent to (or forgot) the sender.
    pub filtered: u64,
    /// Datagrams a node behind the router sent to the router's own public
    /// address, dropped (no hairpinning).
    pub hairpin_dropped: u64,
}

/// One public port's mapping.
#[derive(Debug, Clone)]
struct Mapping {
    private: SocketAddr,
    /// Remote addresses this mapping sent to, with when traffic last
    /// passed either way.
    remotes: BTreeMap<SocketAddr, Time>,
}

/// One home router.
#[derive(Debug, Clone)]
pub struct Nat {
    public_ip: IpAddr,
    kind: NatKind,
    /// (private address, the destination for a symmetric NAT) to port.
    ports: BTreeMap<(SocketAddr, Option<SocketAddr>), u16>,
    mappings: BTreeMap<u16, Mapping>,
    /// Where the search for a free port starts next.
    next_port: u16,
    stats: NatStats,
}

impl Nat {
    /// A router with public address `public_ip`.
    pub fn new(public_ip: IpAddr, kind: NatKind) -> Self {
        Nat {
            public_ip,
            kind,
            ports: BTreeMap::new(),
            mappings: BTreeMap::new(),
            next_port: 40_000,
            stats: NatStats::default(),
        }
    }

    /// The router's public address.
    pub fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    /// How it maps.
    pub fn kind(&self) -> NatKind {
        self.kind
    }

    /// What it did so far.
    pub fn stats(&self) -> NatStats {
        self.stats
    }

    /// A datagram from `private` to `remote` leaves at `now`: returns the
    /// public source address it leaves with.
    pub fn outbound(&mut self, now: Time, private: SocketAddr, remote: SocketAddr) -> SocketAddr {
        let key = match self.kind {
            NatKind::PortPreserving => (private, None),
            NatKind::Symmetric => (private, Some(remote)),
        };
        let port = match self.ports.get(&key) {
            Some(&port) => port,
            None => {
                let port = self.free_port(private.port());
                self.ports.insert(key, port);
                self.mappings.insert(
                    port,
                    Mapping {
                        private,
                        remotes: BTreeMap::new(),
                    },
                );
                self.stats.mappings += 1;
                port
            }
        };
        if let Some(m) = self.mappings.get_mut(&port) {
            m.remotes.insert(remote, now);
        }
        self.stats.out += 1;
        SocketAddr::new(self.public_ip, port)
    }

    /// A datagram from `remote` arrives at public `port` at `now`: returns
    /// the private address it goes to, or `None` when the router drops it.
    pub fn inbound(&mut self, now: Time, port: u16, remote: SocketAddr) -> Option<SocketAddr> {
        let allowed = self.mappings.get_mut(&port).and_then(|m| {
            let last = m.remotes.get_mut(&remote)?;
            if now.0.saturating_sub(last.0) > MAPPING_TIMEOUT_US {
                m.remotes.remove(&remote);
                return None;
            }
            *last = now;
            Some(m.private)
        });
        match allowed {
            Some(private) => {
                self.stats.let_in += 1;
                Some(private)
            }
            None => {
                self.stats.filtered += 1;
                None
            }
        }
    }

    /// Counts a datagram to the router's own address from behind it.
    pub fn drop_hairpin(&mut self) {
        self.stats.hairpin_dropped += 1;
    }

    /// A public port no mapping holds: `wanted` if free and the router
    /// keeps ports, else the next free one in a fixed order.
    fn free_port(&mut self, wanted: u16) -> u16 {
        if self.kind == NatKind::PortPreserving && !self.mappings.contains_key(&wanted) {
            return wanted;
        }
        loop {
            let port = self.next_port;
            self.next_port = if port >= 65_000 { 40_000 } else { port + 7 };
            if !self.mappings.contains_key(&port) {
                return port;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn port_preserving_maps_once_and_filters_by_address_and_port() {
        let mut nat = Nat::new(a("198.51.100.1:0").ip(), NatKind::PortPreserving);
        let p = a("10.0.0.2:7000");
        let (t, u) = (a("203.0.113.5:9000"), a("203.0.113.6:9000"));
        let out_t = nat.outbound(Time(0), p, t);
        let out_u = nat.outbound(Time(0), p, u);
        assert_eq!(out_t, a("198.51.100.1:7000"), "the port is kept");
        assert_eq!(out_u, out_t, "one mapping for every destination");
        assert_eq!(nat.inbound(Time(1), 7000, t), Some(p));
        assert_eq!(nat.inbound(Time(1), 7000, a("203.0.113.5:9001")), None);
        assert_eq!(nat.inbound(Time(1), 7001, t), None);
        // Silence past the timeout closes the way in.
        let late = Time(1 + MAPPING_TIMEOUT_US + 1);
        assert_eq!(nat.inbound(late, 7000, u), None);
        assert_eq!(nat.stats().filtered, 3);
    }

    #[test]
    fn symmetric_maps_each_destination_to_its_own_port() {
        let mut nat = Nat::new(a("198.51.100.2:0").ip(), NatKind::Symmetric);
        let p = a("10.0.0.2:7000");
        let (t, u) = (a("203.0.113.5:9000"), a("203.0.113.6:9000"));
        let out_t = nat.outbound(Time(0), p, t);
        let out_u = nat.outbound(Time(0), p, u);
        assert_ne!(out_t.port(), out_u.port());
        assert_eq!(nat.outbound(Time(5), p, t), out_t, "the mapping is kept");
        assert_eq!(nat.inbound(Time(6), out_t.port(), t), Some(p));
        assert_eq!(
            nat.inbound(Time(6), out_t.port(), u),
            None,
            "u was sent to from another port"
        );
        assert_eq!(nat.stats().mappings, 2);
    }
}
