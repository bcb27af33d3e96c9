//! Counted lists inside messages: club numbers, peer addresses and
//! sequence numbers.
//!
//! A list is either still on the wire (a validated byte range of the parsed
//! datagram, decoded lazily on iteration) or a slice of items the caller
//! wants to send. Both iterate the same way and compare equal item by item,
//! so a parsed message equals the one that was encoded. A list is prefixed by
//! a one-byte count, which bounds it at 255 items before the datagram budget
//! does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Reader, WireError, Writer};

/// An item that can sit in a counted list.
pub trait ListItem: Copy {
    /// Reads one item.
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError>;
    /// Writes one item.
    fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError>;
}

/// A counted list of `T`, borrowed either from a datagram or from the caller.
#[derive(Debug, Clone, Copy)]
pub enum List<'a, T> {
    /// Validated encoded items, as parsed.
    Wire {
        /// Number of items.
        count: usize,
        /// Their encoding.
        raw: &'a [u8],
    },
    /// Items to encode.
    Items(&'a [T]),
}

/// Club numbers.
pub type ClubList<'a> = List<'a, u16>;

/// Peer addresses (IPv4 or IPv6, with port).
pub type AddrList<'a> = List<'a, SocketAddr>;

/// Block sequence numbers.
pub type SeqList<'a> = List<'a, u64>;

impl<'a, T: ListItem> List<'a, T> {
    /// Most items a list can hold (its count is one byte).
    pub const MAX_ITEMS: usize = u8::MAX as usize;

    /// Reads a count byte and that many items, validating each.
    pub fn read(r: &mut Reader<'a>, field: &'static str) -> Result<Self, WireError> {
        let count = usize::from(r.u8(field)?);
        let mut probe = r.clone();
        for _ in 0..count {
            T::read(&mut probe)?;
        }
        let used = r.remaining() - probe.remaining();
        let raw = r.bytes(used, field)?;
        Ok(List::Wire { count, raw })
    }

    /// Writes the count byte and the items.
    pub fn write(&self, w: &mut Writer<'_>, field: &'static str) -> Result<(), WireError> {
        let count = self.len();
        let count = u8::try_from(count).map_err(|_| WireError::Invalid {
            field,
            reason: "list longer than 255 items",
        })?;
        w.u8(count)?;
        match self {
            List::Wire { raw, .. } => w.bytes(raw),
            List::Items(items) => items.iter().try_for_each(|item| item.write(w)),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            List::Wire { count, .. } => *count,
            List::Items(items) => items.len(),
        }
    }

    /// True when the list holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates the items in order.
    pub fn iter(&self) -> ListIter<'a, T> {
        match *self {
            List::Wire { count, raw } => ListIter::Wire {
                left: count,
                reader: Reader::new(raw),
            },
            List::Items(items) => ListIter::Items(items.iter()),
        }
    }
}

impl<T: ListItem + PartialEq> PartialEq for List<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: ListItem + Eq> Eq for List<'_, T> {}

/// Iterator over a [`List`].
#[derive(Debug, Clone)]
pub enum ListIter<'a, T> {
    /// Decoding from the datagram.
    Wire {
        /// Items left.
        left: usize,
        /// Position in the encoding.
        reader: Reader<'a>,
    },
    /// Walking the caller's slice.
    Items(std::slice::Iter<'a, T>),
}

impl<T: ListItem> Iterator for ListIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            ListIter::Wire { left, reader } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                // The bytes were validated by `List::read`; an error here is
                // impossible, and ends the iteration rather than panicking.
                T::read(reader).ok()
            }
            ListIter::Items(items) => items.next().copied(),
        }
    }
}

impl ListItem for u16 {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.u16("club")
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u16(*self)
    }
}

impl ListItem for u64 {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.u64("sequence")
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u64(*self)
    }
}

/// Address family tag for IPv4 entries.
const FAMILY_V4: u8 = 4;
/// Address family tag for IPv6 entries.
const FAMILY_V6: u8 = 6;

impl ListItem for SocketAddr {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let ip = match r.u8("address family")? {
            FAMILY_V4 => IpAddr::V4(Ipv4Addr::from(*r.array::<4>("ipv4 address")?)),
            FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(*r.array::<16>("ipv6 address")?)),
            other => {
                return Err(WireError::UnknownValue {
                    field: "address family",
                    value: other.into(),
                })
            }
        };
        let port = r.u16("port")?;
        Ok(SocketAddr::new(ip, port))
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self.ip() {
            IpAddr::V4(ip) => {
                w.u8(FAMILY_V4)?;
                w.bytes(&ip.octets())?;
            }
            IpAddr::V6(ip) => {
                w.u8(FAMILY_V6)?;
                w.bytes(&ip.octets())?;
            }
        }
        w.u16(self.port())
    }
}

/// Family tag of an absent optional address.
const FAMILY_NONE: u8 = 0;

/// Reads an optional address: family 0 alone for none, else one address
/// entry.
pub fn read_opt_addr(r: &mut Reader<'_>) -> Result<Option<SocketAddr>, WireError> {
    let mut probe = r.clone();
    if probe.u8("address family")? == FAMILY_NONE {
        *r = probe;
        return Ok(None);
    }
    SocketAddr::read(r).map(Some)
}

/// Writes an optional address (see [`read_opt_addr`]).
pub fn write_opt_addr(w: &mut Writer<'_>, addr: Option<SocketAddr>) -> Result<(), WireError> {
    match addr {
        None => w.u8(FAMILY_NONE),
        Some(a) => a.write(w),
    }
}
