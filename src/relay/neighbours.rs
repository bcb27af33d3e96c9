//! Where the relay's frames go on the wire: the interface's own addresses
//! and the next-hop MAC address of each subscriber.
//!
//! The AF_XDP data plane writes whole Ethernet frames, so for every
//! subscriber it needs the MAC address of the next hop: the subscriber
//! itself when it is on the interface's subnet, else the default gateway.
//! The kernel already knows them: the control plane answers every peer over
//! its ordinary socket, which makes the kernel resolve the peer's address
//! (ARP) before the peer is ever in a fan-out table. [`NeighbourTable`]
//! reads the kernel's IPv4 neighbour table (`/proc/net/arp`) and default
//! route (`/proc/net/route`) for one interface; [`InterfaceInfo`] reads the
//! interface's MAC, IPv4 address and prefix. The parsers take text and
//! never panic on any input.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use nix::ifaddrs::getifaddrs;

use super::frame::MacAddr;

/// `ATF_COM` in `/proc/net/arp`'s flags: the entry is resolved.
const ATF_COM: u32 = 0x2;

/// `RTF_GATEWAY` in `/proc/net/route`'s flags.
const RTF_GATEWAY: u32 = 0x2;

/// An interface's link-layer and IPv4 identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// The interface index.
    pub index: u32,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its first IPv4 address.
    pub ipv4: Ipv4Addr,
    /// That address's prefix length.
    pub prefix: u8,
}

impl InterfaceInfo {
    /// Reads `ifname`'s index, MAC address and first IPv4 address.
    pub fn read(ifname: &str) -> Result<Self, String> {
        let index = nix::net::if_::if_nametoindex(ifname)
            .map_err(|e| format!("no interface {ifname:?} in this network namespace: {e}"))?;
        let mut mac = None;
        let mut v4 = None;
        let addrs = getifaddrs().map_err(|e| format!("listing interfaces failed: {e}"))?;
        for a in addrs.filter(|a| a.interface_name == ifname) {
            if let Some(link) = a.address.as_ref().and_then(|s| s.as_link_addr()) {
                mac = mac.or(link.addr());
            }
            if let (Some(ip), None) = (a.address.as_ref().and_then(|s| s.as_sockaddr_in()), v4) {
                let prefix = a
                    .netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in())
                    .map_or(32, |m| u32::from(m.ip()).count_ones() as u8);
                v4 = Some((ip.ip(), prefix));
            }
        }
        let mac = mac.ok_or_else(|| format!("interface {ifname:?} has no MAC address"))?;
        let (ipv4, prefix) =
            v4.ok_or_else(|| format!("interface {ifname:?} has no IPv4 address"))?;
        Ok(InterfaceInfo {
            index,
            mac,
            ipv4,
            prefix,
        })
    }

    /// True if `ip` is on this interface's subnet (reached without a
    /// gateway).
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.ipv4) & mask
    }
}

/// The resolved IPv4 neighbours of one interface and its default gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighbourTable {
    entries: HashMap<Ipv4Addr, MacAddr>,
    gateway: Option<Ipv4Addr>,
}

impl NeighbourTable {
    /// Reads the kernel's tables for `ifname` in the calling thread's
    /// network namespace (`/proc/thread-self/net`: `/proc/net` shows the
    /// main thread's, which differs in a thread that entered a namespace
    /// of its own).
    pub fn read(ifname: &str) -> std::io::Result<Self> {
        let arp = std::fs::read_to_string("/proc/thread-self/net/arp")?;
        let route = std::fs::read_to_string("/proc/thread-self/net/route")?;
        Ok(NeighbourTable {
            entries: parse_arp(&arp, ifname).collect(),
            gateway: parse_default_gateway(&route, ifname),
        })
    }

    /// The MAC address frames for `ip` go to: `ip`'s own if it is on
    /// link, else the gateway's; `None` while the kernel has not resolved
    /// it.
    pub fn next_hop(&self, iface: &InterfaceInfo, ip: Ipv4Addr) -> Option<MacAddr> {
        if iface.on_link(ip) {
            self.entries.get(&ip).copied()
        } else {
            self.entries.get(&self.gateway?).copied()
        }
    }

    /// Resolved neighbours.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no neighbour is resolved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The resolved entries of `/proc/net/arp` text for `ifname`. Lines that
/// do not parse, are unresolved or belong to other interfaces are skipped.
pub fn parse_arp<'a>(
    text: &'a str,
    ifname: &'a str,
) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + 'a {
    text.lines().skip(1).filter_map(move |line| {
        let mut f = line.split_whitespace();
        let ip: Ipv4Addr = f.next()?.parse().ok()?;
        let _hw_type = f.next()?;
        let flags = parse_hex(f.next()?)?;
        let mac = parse_mac(f.next()?)?;
        let _mask = f.next()?;
        let dev = f.next()?;
        (dev == ifname && flags & ATF_COM != 0 && mac != [0; 6]).then_some((ip, mac))
    })
}

/// The gateway of `ifname`'s default route in `/proc/net/route` text.
pub fn parse_default_gateway(text: &str, ifname: &str) -> Option<Ipv4Addr> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().take(4).collect();
        let [dev, dest, gateway, flags] = f[..] else {
            return None;
        };
        let flags = parse_hex(flags)?;
        if dev != ifname || parse_hex(dest)? != 0 || flags & RTF_GATEWAY == 0 {
            return None;
        }
        // The kernel prints addresses in host order, little-endian here.
        Some(Ipv4Addr::from(parse_hex(gateway)?.swap_bytes()))
    })
}

fn parse_hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ARP: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.81.0.2        0x1         0x2         02:cc:00:00:02:02     *        ccrs-r0
10.81.0.3        0x1         0x0         00:00:00:00:00:00     *        ccrs-r0
10.81.0.4        0x1         0x2         02:cc:00:00:02:04     *        eth9
10.81.0.254      0x1         0x2         02:cc:00:00:02:fe     *        ccrs-r0
";

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
ccrs-r0\t00000000\tFE00510A\t0003\t0\t0\t0\t00000000\t0\t0\t0
ccrs-r0\t0000510A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    fn iface() -> InterfaceInfo {
        InterfaceInfo {
            index: 2,
            mac: [2, 0xcc, 0, 0, 2, 1],
            ipv4: Ipv4Addr::new(10, 81, 0, 1),
            prefix: 24,
        }
    }

    #[test]
    fn resolved_entries_of_the_interface_are_read() {
        let e: Vec<_> = parse_arp(ARP, "ccrs-r0").collect();
        assert_eq!(
            e,
            vec![
                (Ipv4Addr::new(10, 81, 0, 2), [2, 0xcc, 0, 0, 2, 2]),
                (Ipv4Addr::new(10, 81, 0, 254), [2, 0xcc, 0, 0, 2, 0xfe]),
            ]
        );
    }

    #[test]
    fn off_link_addresses_go_to_the_gateway() {
        let gw = parse_default_gateway(ROUTE, "ccrs-r0");
        assert_eq!(gw, Some(Ipv4Addr::new(10, 81, 0, 254)));
        assert_eq!(parse_default_gateway(ROUTE, "eth9"), None);
        let table = NeighbourTable {
            entries: parse_arp(ARP, "ccrs-r0").collect(),
            gateway: gw,
        };
        let i = iface();
        assert_eq!(
            table.next_hop(&i, Ipv4Addr::new(10, 81, 0, 2)),
            Some([2, 0xcc, 0, 0, 2, 2])
        );
        assert_eq!(table.next_hop(&i, Ipv4Addr::new(10, 81, 0, 3)), None);
        assert_eq!(
            table.next_hop(&i, Ipv4Addr::new(192, 0, 2, 9)),
            Some([2, 0xcc, 0, 0, 2, 0xfe])
        );
    }

    #[test]
    fn mac_addresses_parse_strictly() {
        assert_eq!(parse_mac("02:cc:0:0:2:1"), Some([2, 0xcc, 0, 0, 2, 1]));
        for bad in [
            "",
            "02:cc:00:00:02",
            "02:cc:00:00:02:01:07",
            "02:cc:00:00:02:1xx",
            "::::::",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in "\\PC*", name in "[a-z0-9]{0,6}") {
            let _ = parse_arp(&text, &name).count();
            let _ = parse_default_gateway(&text, &name);
            let _ = parse_mac(&text);
        }

        #[test]
        fn generated_entries_round_trip(ip in any::<u32>(), mac in any::<[u8; 6]>(), flags in 0u32..16) {
            let ip = Ipv4Addr::from(ip);
            let mac_text = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            let text = format!("header\n{ip} 0x1 {flags:#x} {mac_text} * dev0\n");
            let got: Vec<_> = parse_arp(&text, "dev0").collect();
            let resolved = flags & ATF_COM != 0 && mac != [0; 6];
            prop_assert_eq!(got, if resolved { vec![(ip, mac)] } else { vec![] });
        }
    }
}
