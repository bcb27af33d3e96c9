//! Ethernet II / IPv4 / UDP framing for the relay's AF_XDP path.
//!
//! [`parse`] reads a received frame, bounds-checking every field, and hands
//! back the addresses, ports and the UDP payload as a slice of the frame; it
//! rejects anything that is not an unfragmented IPv4/UDP datagram with a
//! typed [`ParseError`]. [`write_frame`] writes a whole outgoing frame into
//! a caller's buffer, such as a UMEM frame; a fan-out makes one
//! [`FrameTemplate`] per datagram instead (headers and checksum sums taken
//! once) and writes each copy from it. Pure functions, no allocation, no I/O. The UDP checksum of a
//! received frame is never checked: on veth the kernel leaves it unfinished
//! (CHECKSUM_PARTIAL, DESIGN.md), and the clubcast signature authenticates
//! what matters. This module knows nothing of clubcast messages.

use std::net::{Ipv4Addr, SocketAddrV4};

use thiserror::Error;

use crate::wire::{BLOCK_TAG_LEN, BLOCK_TAG_OFFSET};

/// An Ethernet (MAC) address.
pub type MacAddr = [u8; 6];

/// Bytes of an Ethernet II header: destination, source, EtherType.
pub const ETH_HEADER_LEN: usize = 14;
/// Bytes of an IPv4 header without options (IHL 5).
pub const IPV4_HEADER_LEN: usize = 20;
/// Bytes of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Bytes of the headers [`write_frame`] writes before the payload.
pub const HEADERS_LEN: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;
/// Largest UDP payload an IPv4 datagram can carry.
pub const MAX_UDP_PAYLOAD: usize = u16::MAX as usize - IPV4_HEADER_LEN - UDP_HEADER_LEN;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// Time to live of every frame written: the Linux default
/// (`net.ipv4.ip_default_ttl`).
pub const TTL: u8 = 64;

/// IPv4 flags/fragment-offset field: Don't Fragment.
const IP_DF: u16 = 0x4000;
/// IPv4 flags/fragment-offset field: More Fragments.
const IP_MF: u16 = 0x2000;
/// IPv4 flags/fragment-offset field: the fragment offset bits.
const IP_OFFSET_MASK: u16 = 0x1fff;

/// The header a length or bounds problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The Ethernet II header.
    Ethernet,
    /// The IPv4 header, options included.
    Ipv4,
    /// The UDP header.
    Udp,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet",
            Layer::Ipv4 => "IPv4",
            Layer::Udp => "UDP",
        })
    }
}

/// Why a received frame is not an IPv4/UDP datagram the relay can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The frame ends inside a header.
    #[error("frame of {len} bytes ends inside its {layer} header")]
    Truncated {
        /// The header cut short.
        layer: Layer,
        /// The frame's length.
        len: usize,
    },
    /// The EtherType is not IPv4 (ARP, IPv6, a VLAN tag, ...).
    #[error("EtherType {ethertype:#06x} is not IPv4")]
    NotIpv4 {
        /// The EtherType found.
        ethertype: u16,
    },
    /// The IP version nibble is not 4.
    #[error("IP version {version} in an IPv4 frame")]
    BadVersion {
        /// The version found.
        version: u8,
    },
    /// The IPv4 header length is below the 5-word minimum.
    #[error("IPv4 header length of {ihl} words is below the minimum of 5")]
    BadHeaderLength {
        /// The IHL found.
        ihl: u8,
    },
    /// The IPv4 total length is shorter than its headers or longer than
    /// the frame.
    #[error(
        "IPv4 total length {total} does not fit the {available} bytes after the Ethernet header"
    )]
    BadTotalLength {
        /// The total length field.
        total: u16,
        /// Bytes after the Ethernet header.
        available: usize,
    },
    /// The IPv4 header checksum does not verify.
    #[error("IPv4 header checksum does not verify")]
    BadIpChecksum,
    /// The IPv4 payload is not UDP.
    #[error("IP protocol {protocol} is not UDP")]
    NotUdp {
        /// The protocol number found.
        protocol: u8,
    },
    /// The datagram is an IPv4 fragment (MF set or a non-zero offset).
    #[error("IPv4 fragment (left to the kernel to reassemble)")]
    Fragment,
    /// The UDP length is below the header's 8 bytes or beyond the IPv4
    /// payload.
    #[error("UDP length {udp_len} does not fit the {available}-byte IPv4 payload")]
    BadUdpLength {
        /// The UDP length field.
        udp_len: u16,
        /// Bytes of IPv4 payload.
        available: usize,
    },
}

impl ParseError {
    /// True when the frame is well formed but simply not IPv4/UDP (another
    /// protocol or a fragment), false when it is malformed.
    pub fn is_other_protocol(&self) -> bool {
        matches!(
            self,
            ParseError::NotIpv4 { .. } | ParseError::NotUdp { .. } | ParseError::Fragment
        )
    }
}

/// A parsed IPv4/UDP frame, borrowing the frame for its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// IPv4 source address and UDP source port.
    pub src: SocketAddrV4,
    /// IPv4 destination address and UDP destination port.
    pub dst: SocketAddrV4,
    /// The IPv4 identification field.
    pub ip_id: u16,
    /// The IPv4 time to live.
    pub ttl: u8,
    /// The UDP checksum as carried (0 = none); not verified.
    pub udp_checksum: u16,
    /// The UDP payload, exactly as long as the UDP length says (Ethernet
    /// padding excluded).
    pub payload: &'a [u8],
}

/// Whether [`write_frame`] fills in the UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpChecksum {
    /// Compute it over the pseudo-header, header and payload (RFC 768).
    #[default]
    Compute,
    /// Send 0, "no checksum", which IPv4 allows (RFC 768); saves a pass
    /// over the payload per frame.
    Zero,
}

/// The headers of an outgoing IPv4/UDP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeaders {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IPv4 source address and UDP source port.
    pub src: SocketAddrV4,
    /// IPv4 destination address and UDP destination port.
    pub dst: SocketAddrV4,
    /// The IPv4 identification field (any value: DF is set).
    pub ip_id: u16,
    /// Whether to compute the UDP checksum.
    pub checksum: UdpChecksum,
}

/// Why a frame could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The output buffer is shorter than the frame.
    #[error("output buffer of {capacity} bytes cannot hold a {needed}-byte frame")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        capacity: usize,
    },
    /// The payload does not fit one IPv4 datagram.
    #[error("UDP payload of {len} bytes exceeds the IPv4 limit of {MAX_UDP_PAYLOAD}")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
    },
    /// The payload is not as long as the [`FrameTemplate`] was made for.
    #[error("payload of {len} bytes written with a template for {expected}")]
    PayloadLength {
        /// The template's payload length.
        expected: usize,
        /// The payload's length.
        len: usize,
    },
}

/// A payload's contribution to the UDP checksum: its 16-bit ones'
/// complement sum, folded. Compute it once per payload and reuse it for
/// every frame that carries the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSum(u16);

impl PayloadSum {
    /// The sum of `payload`, which must start at an even offset of the UDP
    /// segment (it does: the UDP header is 8 bytes).
    pub fn of(payload: &[u8]) -> Self {
        PayloadSum(fold(ones_complement_sum(payload, 0)))
    }

    /// The sum of the BLOCK datagram `payload` as if its block tag were
    /// zero: each copy adds its own tag's sum (the tag sits at an even
    /// offset, `BLOCK_TAG_OFFSET`), as [`FrameTemplate::write`] takes it.
    pub fn of_untagged(payload: &[u8]) -> Self {
        let end = BLOCK_TAG_OFFSET + BLOCK_TAG_LEN;
        let head = &payload[..payload.len().min(BLOCK_TAG_OFFSET)];
        let tail = payload.get(end..).unwrap_or(&[]);
        PayloadSum(fold(ones_complement_sum(
            tail,
            ones_complement_sum(head, 0),
        )))
    }
}

/// RFC 1071 ones' complement sum of `bytes` as big-endian 16-bit words
/// (an odd last byte padded with zero), added to `initial`, unfolded.
pub fn ones_complement_sum(bytes: &[u8], initial: u64) -> u64 {
    // 32-bit words at a time, in little-endian order, which the compiler
    // vectorizes: 2^16 is 1 modulo 2^16 - 1, so a word's two halves fold to
    // the same sum, and a sum of byte-swapped words folds to the byte-swap
    // of the sum (RFC 1071, 2.(B)).
    let mut swapped = 0u64;
    let mut quads = bytes.chunks_exact(4);
    for quad in &mut quads {
        swapped += u64::from(u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]));
    }
    let mut sum = initial + u64::from(fold(swapped).swap_bytes());
    let mut words = quads.remainder().chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Folds a ones' complement sum to 16 bits (end-around carry).
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn mac(bytes: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&bytes[at..at + 6]);
    m
}

fn ipv4(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// Parses an Ethernet II frame carrying an unfragmented IPv4/UDP datagram.
/// IPv4 options are skipped by IHL; the IPv4 header checksum is verified;
/// the UDP checksum is returned but not checked. Never panics.
pub fn parse(frame: &[u8]) -> Result<UdpFrame<'_>, ParseError> {
    let len = frame.len();
    if len < ETH_HEADER_LEN {
        return Err(ParseError::Truncated {
            layer: Layer::Ethernet,
            len,
        });
    }
    let ethertype = be16(frame, 12);
    if ethertype != ETHERTYPE_IPV4 {
        return Err(ParseError::NotIpv4 { ethertype });
    }
    let ip = &frame[ETH_HEADER_LEN..];
    if ip.len() < IPV4_HEADER_LEN {
        return Err(ParseError::Truncated {
            layer: Layer::Ipv4,
            len,
        });
    }
    let version = ip[0] >> 4;
    if version != 4 {
        return Err(ParseError::BadVersion { version });
    }
    let ihl = ip[0] & 0x0f;
    if ihl < 5 {
        return Err(ParseError::BadHeaderLength { ihl });
    }
    let ip_header_len = usize::from(ihl) * 4;
    if ip.len() < ip_header_len {
        return Err(ParseError::Truncated {
            layer: Layer::Ipv4,
            len,
        });
    }
    let total = be16(ip, 2);
    if usize::from(total) < ip_header_len || usize::from(total) > ip.len() {
        return Err(ParseError::BadTotalLength {
            total,
            available: ip.len(),
        });
    }
    if fold(ones_complement_sum(&ip[..ip_header_len], 0)) != 0xffff {
        return Err(ParseError::BadIpChecksum);
    }
    let protocol = ip[9];
    if protocol != IPPROTO_UDP {
        return Err(ParseError::NotUdp { protocol });
    }
    let flags_offset = be16(ip, 6);
    if flags_offset & (IP_MF | IP_OFFSET_MASK) != 0 {
        return Err(ParseError::Fragment);
    }
    // The IPv4 payload ends where the total length says; what follows is
    // Ethernet padding.
    let udp = &ip[ip_header_len..usize::from(total)];
    if udp.len() < UDP_HEADER_LEN {
        return Err(ParseError::Truncated {
            layer: Layer::Udp,
            len,
        });
    }
    let udp_len = be16(udp, 4);
    if usize::from(udp_len) < UDP_HEADER_LEN || usize::from(udp_len) > udp.len() {
        return Err(ParseError::BadUdpLength {
            udp_len,
            available: udp.len(),
        });
    }
    Ok(UdpFrame {
        dst_mac: mac(frame, 0),
        src_mac: mac(frame, 6),
        src: SocketAddrV4::new(ipv4(ip, 12), be16(udp, 0)),
        dst: SocketAddrV4::new(ipv4(ip, 16), be16(udp, 2)),
        ip_id: be16(ip, 4),
        ttl: ip[8],
        udp_checksum: be16(udp, 6),
        payload: &udp[UDP_HEADER_LEN..usize::from(udp_len)],
    })
}

/// Writes a whole frame, headers then `payload`, into the start of `out`
/// and returns its length. The IPv4 header has IHL 5, TTL [`TTL`], DF set,
/// and a correct checksum.
pub fn write_frame(
    out: &mut [u8],
    headers: &UdpHeaders,
    payload: &[u8],
) -> Result<usize, BuildError> {
    let sum = match headers.checksum {
        UdpChecksum::Compute => PayloadSum::of(payload),
        UdpChecksum::Zero => PayloadSum(0),
    };
    FrameTemplate::new(
        headers.src_mac,
        headers.src,
        headers.checksum,
        payload.len(),
        sum,
    )?
    .write(
        out,
        headers.dst_mac,
        headers.dst,
        headers.ip_id,
        payload,
        PayloadSum(0),
    )
}

/// Offsets of the fields a [`FrameTemplate`] fills in per frame.
const IP_ID_AT: usize = ETH_HEADER_LEN + 4;
const IP_SUM_AT: usize = ETH_HEADER_LEN + 10;
const IP_DST_AT: usize = ETH_HEADER_LEN + 16;
const UDP_DST_PORT_AT: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN + 2;
const UDP_SUM_AT: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN + 6;

/// The headers every frame of one payload shares, from one source: what a
/// fan-out writes once per datagram. Each frame then copies them, fills in
/// its destination and IPv4 identification, and finishes both checksums
/// from the sums taken here, so a copy costs a 42-byte copy, a few stores
/// and a few additions besides its payload.
#[derive(Debug, Clone, Copy)]
pub struct FrameTemplate {
    head: [u8; HEADERS_LEN],
    /// Ones' complement sum of the IPv4 header with a zero identification,
    /// destination and checksum.
    ip_sum: u64,
    /// Ones' complement sum of the UDP pseudo-header, header and payload
    /// with a zero destination address and port; `None` for no checksum.
    udp_sum: Option<u64>,
    payload_len: usize,
}

impl FrameTemplate {
    /// The shared headers of frames from `src_mac`/`src` carrying a
    /// `payload_len`-byte payload whose checksum contribution is `sum`.
    pub fn new(
        src_mac: MacAddr,
        src: SocketAddrV4,
        checksum: UdpChecksum,
        payload_len: usize,
        sum: PayloadSum,
    ) -> Result<Self, BuildError> {
        if payload_len > MAX_UDP_PAYLOAD {
            return Err(BuildError::PayloadTooLarge { len: payload_len });
        }
        let udp_len = (UDP_HEADER_LEN + payload_len) as u16;
        let ip_total = IPV4_HEADER_LEN as u16 + udp_len;
        let src_ip = src.ip().octets();
        let mut head = [0u8; HEADERS_LEN];
        let (eth, rest) = head.split_at_mut(ETH_HEADER_LEN);
        eth[6..12].copy_from_slice(&src_mac);
        eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let (ip, udp) = rest.split_at_mut(IPV4_HEADER_LEN);
        ip[0] = 0x45; // version 4, IHL 5
        ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
        ip[6..8].copy_from_slice(&IP_DF.to_be_bytes());
        ip[8] = TTL;
        ip[9] = IPPROTO_UDP;
        ip[12..16].copy_from_slice(&src_ip);
        let ip_sum = ones_complement_sum(ip, 0);
        udp[0..2].copy_from_slice(&src.port().to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        let udp_sum = match checksum {
            UdpChecksum::Zero => None,
            // Pseudo-header (source address, protocol, UDP length), the
            // UDP header with a zero checksum, then the payload's share.
            UdpChecksum::Compute => Some(
                ones_complement_sum(udp, ones_complement_sum(&src_ip, 0))
                    + u64::from(IPPROTO_UDP)
                    + u64::from(udp_len)
                    + u64::from(sum.0),
            ),
        };
        Ok(FrameTemplate {
            head,
            ip_sum,
            udp_sum,
            payload_len,
        })
    }

    /// Bytes of each frame: headers and payload.
    pub fn frame_len(&self) -> usize {
        HEADERS_LEN + self.payload_len
    }

    /// Writes a frame to `dst_mac`/`dst` with identification `ip_id` into
    /// the start of `out` and returns its length. `payload` must be as long
    /// as the template says; `extra` is the checksum share of bytes the
    /// caller writes over zeros of the payload afterwards (a block tag).
    pub fn write(
        &self,
        out: &mut [u8],
        dst_mac: MacAddr,
        dst: SocketAddrV4,
        ip_id: u16,
        payload: &[u8],
        extra: PayloadSum,
    ) -> Result<usize, BuildError> {
        let needed = self.frame_len();
        let Some(frame) = out.get_mut(..needed) else {
            return Err(BuildError::BufferTooSmall {
                needed,
                capacity: out.len(),
            });
        };
        let (head, body) = frame.split_at_mut(HEADERS_LEN);
        if payload.len() != body.len() {
            return Err(BuildError::PayloadLength {
                expected: body.len(),
                len: payload.len(),
            });
        }
        head.copy_from_slice(&self.head);
        head[0..6].copy_from_slice(&dst_mac);
        let dst_ip = dst.ip().octets();
        head[IP_ID_AT..IP_ID_AT + 2].copy_from_slice(&ip_id.to_be_bytes());
        head[IP_DST_AT..IP_DST_AT + 4].copy_from_slice(&dst_ip);
        head[UDP_DST_PORT_AT..UDP_DST_PORT_AT + 2].copy_from_slice(&dst.port().to_be_bytes());
        let dst_sum = u64::from(u16::from_be_bytes([dst_ip[0], dst_ip[1]]))
            + u64::from(u16::from_be_bytes([dst_ip[2], dst_ip[3]]));
        let ip_sum = !fold(self.ip_sum + dst_sum + u64::from(ip_id));
        head[IP_SUM_AT..IP_SUM_AT + 2].copy_from_slice(&ip_sum.to_be_bytes());
        let udp_sum = match self.udp_sum {
            None => 0,
            // A computed 0 is sent as 0xFFFF: 0 means "no checksum".
            Some(s) => match !fold(s + dst_sum + u64::from(dst.port()) + u64::from(extra.0)) {
                0 => 0xffff,
                c => c,
            },
        };
        head[UDP_SUM_AT..UDP_SUM_AT + 2].copy_from_slice(&udp_sum.to_be_bytes());
        body.copy_from_slice(payload);
        Ok(needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untagged_sum_plus_a_tag_is_the_sum_of_the_tagged_datagram() {
        for len in [12usize, 13, 61, 200, 1232] {
            let mut datagram: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let untagged = PayloadSum::of_untagged(&datagram);
            for tag in [0u64, 1, 0xffff_ffff_ffff_ffff, 0x0123_4567_89ab_cdef] {
                crate::wire::set_block_tag(&mut datagram, tag);
                assert_eq!(
                    fold(u64::from(untagged.0) + u64::from(PayloadSum::of(&tag.to_be_bytes()).0)),
                    fold(u64::from(PayloadSum::of(&datagram).0)),
                    "len {len}, tag {tag:#x}"
                );
            }
        }
    }

    fn headers() -> UdpHeaders {
        UdpHeaders {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 7400),
            dst: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9000),
            ip_id: 7,
            checksum: UdpChecksum::Compute,
        }
    }

    #[test]
    fn written_frame_parses_back() {
        let mut buf = [0u8; 128];
        let len = write_frame(&mut buf, &headers(), b"hello").unwrap();
        assert_eq!(len, HEADERS_LEN + 5);
        let f = parse(&buf[..len]).unwrap();
        assert_eq!(f.payload, b"hello");
        assert_eq!(f.dst.port(), 9000);
        assert_eq!(f.ttl, TTL);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut buf = [0u8; 60];
        let len = write_frame(&mut buf, &headers(), b"ab").unwrap();
        assert!(len < 60);
        assert_eq!(parse(&buf).unwrap().payload, b"ab");
    }

    #[test]
    fn short_buffer_is_refused() {
        let mut buf = [0u8; HEADERS_LEN + 1];
        assert_eq!(
            write_frame(&mut buf, &headers(), b"ab"),
            Err(BuildError::BufferTooSmall {
                needed: HEADERS_LEN + 2,
                capacity: HEADERS_LEN + 1
            })
        );
    }

    #[test]
    fn fragments_and_other_protocols_are_told_apart() {
        let mut buf = [0u8; 64];
        let len = write_frame(&mut buf, &headers(), b"abcd").unwrap();
        let mut frag = buf;
        frag[ETH_HEADER_LEN + 6] |= 0x20; // MF
                                          // Fix the header checksum so the fragment check is what fails.
        frag[ETH_HEADER_LEN + 10..ETH_HEADER_LEN + 12].copy_from_slice(&[0, 0]);
        let s = !fold(ones_complement_sum(
            &frag[ETH_HEADER_LEN..ETH_HEADER_LEN + 20],
            0,
        ));
        frag[ETH_HEADER_LEN + 10..ETH_HEADER_LEN + 12].copy_from_slice(&s.to_be_bytes());
        assert_eq!(parse(&frag[..len]), Err(ParseError::Fragment));
        let mut arp = buf;
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(
            parse(&arp[..len]),
            Err(ParseError::NotIpv4 { ethertype: 0x0806 })
        );
        assert!(ParseError::Fragment.is_other_protocol());
        assert!(!ParseError::BadIpChecksum.is_other_protocol());
    }

    #[test]
    fn corrupted_ip_header_fails_its_checksum() {
        let mut buf = [0u8; 64];
        let len = write_frame(&mut buf, &headers(), b"abcd").unwrap();
        buf[ETH_HEADER_LEN + 8] ^= 1; // TTL
        assert_eq!(parse(&buf[..len]), Err(ParseError::BadIpChecksum));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// An independent UDP checksum (RFC 768): build the pseudo-header and
        /// segment as one byte string and sum it with 32-bit words folded at
        /// the end, the textbook way.
        fn reference_udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&src.octets());
            bytes.extend_from_slice(&dst.octets());
            bytes.push(0);
            bytes.push(17);
            bytes.extend_from_slice(&(segment.len() as u16).to_be_bytes());
            bytes.extend_from_slice(segment);
            bytes[12 + 6] = 0; // the checksum field itself counts as zero
            bytes[12 + 7] = 0;
            if bytes.len() % 2 == 1 {
                bytes.push(0);
            }
            let mut sum: u32 = 0;
            for i in (0..bytes.len()).step_by(2) {
                sum = sum.wrapping_add((u32::from(bytes[i]) << 8) | u32::from(bytes[i + 1]));
            }
            while sum > 0xffff {
                sum = (sum >> 16) + (sum & 0xffff);
            }
            let c = !(sum as u16);
            if c == 0 {
                0xffff
            } else {
                c
            }
        }

        fn any_headers() -> impl Strategy<Value = UdpHeaders> {
            (
                any::<[u8; 6]>(),
                any::<[u8; 6]>(),
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<[u8; 4]>(),
                any::<u16>(),
                any::<u16>(),
                any::<bool>(),
            )
                .prop_map(|(sm, dm, si, sp, di, dp, id, zero)| UdpHeaders {
                    src_mac: sm,
                    dst_mac: dm,
                    src: SocketAddrV4::new(si.into(), sp),
                    dst: SocketAddrV4::new(di.into(), dp),
                    ip_id: id,
                    checksum: if zero {
                        UdpChecksum::Zero
                    } else {
                        UdpChecksum::Compute
                    },
                })
        }

        proptest! {
            /// The word-at-a-time sum folds to what 16-bit words one by
            /// one give, for any length and any running sum.
            #[test]
            fn the_sum_folds_as_sixteen_bit_words_do(
                bytes in prop::collection::vec(any::<u8>(), 0..1500),
                initial in 0u64..(1 << 40),
            ) {
                let mut reference = initial;
                for pair in bytes.chunks(2) {
                    let low = pair.get(1).copied().unwrap_or(0);
                    reference += (u64::from(pair[0]) << 8) | u64::from(low);
                }
                prop_assert_eq!(
                    fold(ones_complement_sum(&bytes, initial)),
                    fold(reference)
                );
            }

            #[test]
            fn parse_of_write_round_trips(
                h in any_headers(),
                payload in prop::collection::vec(any::<u8>(), 0..1500),
                padding in 0usize..64,
            ) {
                let mut buf = vec![0u8; HEADERS_LEN + payload.len() + padding];
                let len = write_frame(&mut buf, &h, &payload).unwrap();
                prop_assert_eq!(len, HEADERS_LEN + payload.len());
                // Trailing bytes (Ethernet padding) must not change anything.
                let f = parse(&buf).unwrap();
                prop_assert_eq!(f.src_mac, h.src_mac);
                prop_assert_eq!(f.dst_mac, h.dst_mac);
                prop_assert_eq!(f.src, h.src);
                prop_assert_eq!(f.dst, h.dst);
                prop_assert_eq!(f.ip_id, h.ip_id);
                prop_assert_eq!(f.ttl, TTL);
                prop_assert_eq!(f.payload, &payload[..]);
            }

            #[test]
            fn ipv4_header_checksum_verifies(
                h in any_headers(),
                payload in prop::collection::vec(any::<u8>(), 0..1500),
            ) {
                let mut buf = vec![0u8; HEADERS_LEN + payload.len()];
                write_frame(&mut buf, &h, &payload).unwrap();
                let header = &buf[ETH_HEADER_LEN..ETH_HEADER_LEN + IPV4_HEADER_LEN];
                let mut sum: u32 = 0;
                for w in header.chunks(2) {
                    sum += (u32::from(w[0]) << 8) | u32::from(w[1]);
                }
                while sum > 0xffff {
                    sum = (sum >> 16) + (sum & 0xffff);
                }
                prop_assert_eq!(sum, 0xffff);
                // DF set, no fragment offset, TTL 64, UDP.
                prop_assert_eq!(header[6], 0x40);
                prop_assert_eq!(header[7], 0);
                prop_assert_eq!(header[8], 64);
                prop_assert_eq!(header[9], 17);
            }

            #[test]
            fn udp_checksum_matches_reference(
                mut h in any_headers(),
                payload in prop::collection::vec(any::<u8>(), 0..1500),
            ) {
                h.checksum = UdpChecksum::Compute;
                let mut buf = vec![0u8; HEADERS_LEN + payload.len()];
                write_frame(&mut buf, &h, &payload).unwrap();
                let segment = &buf[ETH_HEADER_LEN + IPV4_HEADER_LEN..];
                let carried = u16::from_be_bytes([segment[6], segment[7]]);
                prop_assert_eq!(carried, reference_udp_checksum(*h.src.ip(), *h.dst.ip(), segment));
                prop_assert_eq!(parse(&buf).unwrap().udp_checksum, carried);
            }

            /// One template serves copies to many destinations, each
            /// with its own block tag written after: every copy is the
            /// frame `write_frame` makes of the tagged datagram, checksums
            /// included.
            #[test]
            fn template_copies_are_the_frames_of_their_tagged_datagrams(
                h in any_headers(),
                payload in prop::collection::vec(any::<u8>(), 12..1500),
                copies in prop::collection::vec((any::<[u8; 6]>(), any::<[u8; 4]>(), any::<u16>(), any::<u16>(), any::<u64>()), 1..8),
            ) {
                let sum = match h.checksum {
                    UdpChecksum::Compute => PayloadSum::of_untagged(&payload),
                    UdpChecksum::Zero => PayloadSum(0),
                };
                let template = FrameTemplate::new(h.src_mac, h.src, h.checksum, payload.len(), sum).unwrap();
                for (mac, ip, port, id, tag) in copies {
                    let dst = SocketAddrV4::new(ip.into(), port);
                    let extra = PayloadSum::of(&tag.to_be_bytes());
                    let mut copy = vec![0u8; template.frame_len()];
                    prop_assert_eq!(template.write(&mut copy, mac, dst, id, &payload, extra), Ok(copy.len()));
                    prop_assert!(crate::wire::set_block_tag(&mut copy[HEADERS_LEN..], tag));
                    let mut tagged = payload.clone();
                    crate::wire::set_block_tag(&mut tagged, tag);
                    let reference_headers = UdpHeaders { dst_mac: mac, dst, ip_id: id, ..h };
                    let mut reference = vec![0u8; copy.len()];
                    write_frame(&mut reference, &reference_headers, &tagged).unwrap();
                    prop_assert_eq!(&copy, &reference);
                }
            }

            #[test]
            fn a_template_refuses_a_payload_of_another_length(len in 0usize..64, other in 0usize..64) {
                prop_assume!(len != other);
                let h = super::headers();
                let template = FrameTemplate::new(h.src_mac, h.src, h.checksum, len, PayloadSum(0)).unwrap();
                let mut buf = vec![0u8; 200];
                prop_assert_eq!(
                    template.write(&mut buf, h.dst_mac, h.dst, 1, &vec![0; other], PayloadSum(0)),
                    Err(BuildError::PayloadLength { expected: len, len: other })
                );
            }

            #[test]
            fn zero_checksum_is_sent_as_zero(
                mut h in any_headers(),
                payload in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                h.checksum = UdpChecksum::Zero;
                let mut buf = vec![0u8; HEADERS_LEN + payload.len()];
                write_frame(&mut buf, &h, &payload).unwrap();
                prop_assert_eq!(parse(&buf).unwrap().udp_checksum, 0);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse(&bytes);
            }

            #[test]
            fn mutated_frames_never_panic_and_parse_within_bounds(
                h in any_headers(),
                payload in prop::collection::vec(any::<u8>(), 0..300),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut buf = vec![0u8; HEADERS_LEN + payload.len()];
                write_frame(&mut buf, &h, &payload).unwrap();
                for (at, x) in flips {
                    let i = at.index(buf.len());
                    buf[i] ^= x;
                }
                let len = cut.index(buf.len() + 1);
                if let Ok(f) = parse(&buf[..len]) {
                    prop_assert!(f.payload.len() + HEADERS_LEN <= len);
                }
            }
        }
    }
}
