//! The clubcast wire format, version 4 (specified byte by byte in `docs/PROTOCOL.md`).
//!
//! Every datagram starts with a three-byte header (magic `0xCC`, version,
//! message type) followed by the message body in big-endian fields. Parsing
//! borrows the datagram: lists, proofs and payloads come back as slices into
//! it, and nothing is allocated. Encoding writes into a caller's buffer, so
//! the relay can build a datagram straight in a UMEM frame. This module knows
//! nothing about authentication: a parsed BLOCK is only well formed, not
//! trusted (see `crate::auth`).

pub mod bitfield;
mod block;
mod byte_enum;
mod control;
mod cursor;
mod list;
mod rendezvous;
mod token;

pub use block::{
    block_tag, set_block_tag, BatchSignature, Block, BLOCK_FIXED_LEN, BLOCK_TAG_LEN,
    BLOCK_TAG_OFFSET, HASH_LEN, MAX_PAYLOAD, MAX_PROOF_HASHES, SIGNATURE_SECTION_LEN,
};
pub use control::{
    Accept, Bitfield, ClubPeers, ClubPeersRequest, Connect, Direction, Drop, DropReason, Have,
    Heartbeat, Join, JoinRole, KeepAlive, Load, PeerList, Ping, Pong, Refuse, RefuseReason,
    Request, DELAY_UNKNOWN, REQUEST_MAX_SEQS, SPARE_UNLIMITED,
};
pub use cursor::{Reader, Writer};
pub use list::{read_opt_addr, write_opt_addr, AddrList, ClubList, List, ListItem, SeqList};
pub use rendezvous::{Punch, PunchRequest};
pub use token::{Retry, Token};

use thiserror::Error;

/// First byte of every clubcast datagram.
pub const MAGIC: u8 = 0xCC;

/// Wire format version spoken by this build.
pub const VERSION: u8 = 6;

/// Largest UDP payload clubcast ever sends or accepts. 1232 bytes fits the
/// IPv6 minimum MTU of 1280 after a 40-byte IPv6 and an 8-byte UDP header, so
/// no datagram needs IP fragmentation on any path (DNS flag day 2020 uses the
/// same figure).
pub const MAX_DATAGRAM: usize = 1232;

/// Length of the common header: magic, version, message type.
pub const HEADER_LEN: usize = 3;

/// Length of the truncated stream id carried in tracker messages and BLOCKs.
pub const STREAM_TAG_LEN: usize = 8;

/// The first eight bytes of a stream's public key. It routes a datagram to
/// the right swarm cheaply; authentication always uses the whole key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamTag(pub [u8; STREAM_TAG_LEN]);

impl StreamTag {
    /// The tag of the stream whose public key is `key`.
    pub fn of_key(key: &[u8; 32]) -> Self {
        let mut tag = [0u8; STREAM_TAG_LEN];
        tag.copy_from_slice(&key[..STREAM_TAG_LEN]);
        StreamTag(tag)
    }
}

/// Why a datagram could not be parsed or encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// A field ran past the end of the datagram.
    #[error("datagram truncated in field `{field}`: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// The datagram is longer than [`MAX_DATAGRAM`].
    #[error("datagram of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Length received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The first byte is not [`MAGIC`].
    #[error("bad magic byte {0:#04x}, not a clubcast datagram")]
    BadMagic(u8),
    /// The version byte is not one this build speaks.
    #[error("unsupported wire version {0} (this build speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// The message type byte is not assigned.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// An enumerated field holds an unassigned value.
    #[error("field `{field}` holds unknown value {value}")]
    UnknownValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A field's value is outside what the protocol allows.
    #[error("field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The message parsed but bytes were left after it.
    #[error("{extra} unexpected bytes after a {message} message")]
    TrailingBytes {
        /// The message type name.
        message: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// The caller's output buffer cannot hold the encoded message.
    #[error("output buffer of {capacity} bytes too small, {needed} needed")]
    BufferTooSmall {
        /// Bytes needed so far.
        needed: usize,
        /// Buffer size.
        capacity: usize,
    },
    /// The encoded message would exceed [`MAX_DATAGRAM`].
    #[error("encoded message of {len} bytes exceeds the {max}-byte datagram budget")]
    OverBudget {
        /// Encoded length.
        len: usize,
        /// The budget.
        max: usize,
    },
}

byte_enum::byte_enum! {
    "message type",
    /// Message type codes (third header byte).
    pub enum MessageType {
        /// Peer -> tracker: join the swarm.
        Join = 0x01,
        /// Tracker -> peer: peers, club count, recommended clubs.
        PeerList = 0x02,
        /// Peer -> tracker: still here.
        Heartbeat = 0x03,
        /// Answer to a request from an address not validated yet.
        Retry = 0x04,
        /// Peer -> tracker: introduce me to a peer I cannot reach.
        PunchRequest = 0x05,
        /// Tracker -> peer: PING this peer (it wants to reach you).
        Punch = 0x06,
        /// Ask a peer for members of a club.
        ClubPeersRequest = 0x10,
        /// Members of a club.
        ClubPeers = 0x11,
        /// Probe a peer's load.
        Ping = 0x12,
        /// A peer's load.
        Pong = 0x13,
        /// Ask for a connection.
        Connect = 0x20,
        /// Connection granted.
        Accept = 0x21,
        /// Connection refused.
        Refuse = 0x22,
        /// Connection dropped.
        Drop = 0x23,
        /// Downloader -> uploader: keep this connection.
        KeepAlive = 0x24,
        /// I already hold this block.
        Have = 0x30,
        /// The blocks of a club I already hold.
        Bitfield = 0x31,
        /// Send me these blocks again (loss repair).
        Request = 0x32,
        /// A data block (the hot path).
        Block = 0x40,
    }
}

/// Reads and checks the common header, returning the message type and a
/// reader positioned at the body. Cheap enough for a per-packet classifier.
pub fn parse_header(datagram: &[u8]) -> Result<(MessageType, Reader<'_>), WireError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(WireError::Oversized {
            len: datagram.len(),
            max: MAX_DATAGRAM,
        });
    }
    let mut r = Reader::new(datagram);
    let magic = r.u8("magic")?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let byte = r.u8("type")?;
    let ty = MessageType::from_u8(byte).map_err(|_| WireError::UnknownType(byte))?;
    Ok((ty, r))
}

/// Writes the common header for `ty`.
pub(crate) fn write_header(w: &mut Writer<'_>, ty: MessageType) -> Result<(), WireError> {
    w.bytes(&[MAGIC, VERSION, ty as u8])
}

/// Fails if an encoded message is longer than the datagram budget.
pub(crate) fn check_budget(len: usize) -> Result<usize, WireError> {
    if len > MAX_DATAGRAM {
        return Err(WireError::OverBudget {
            len,
            max: MAX_DATAGRAM,
        });
    }
    Ok(len)
}

/// Any clubcast message, borrowing its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// See [`Join`].
    Join(Join),
    /// See [`PeerList`].
    PeerList(PeerList<'a>),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat<'a>),
    /// See [`Retry`].
    Retry(Retry),
    /// See [`PunchRequest`].
    PunchRequest(PunchRequest),
    /// See [`Punch`].
    Punch(Punch),
    /// See [`ClubPeersRequest`].
    ClubPeersRequest(ClubPeersRequest),
    /// See [`ClubPeers`].
    ClubPeers(ClubPeers<'a>),
    /// See [`Ping`].
    Ping(Ping),
    /// See [`Pong`].
    Pong(Pong<'a>),
    /// See [`Connect`].
    Connect(Connect<'a>),
    /// See [`Accept`].
    Accept(Accept),
    /// See [`Refuse`].
    Refuse(Refuse),
    /// See [`Drop`].
    Drop(Drop),
    /// See [`KeepAlive`].
    KeepAlive(KeepAlive),
    /// See [`Have`].
    Have(Have),
    /// See [`Bitfield`].
    Bitfield(Bitfield<'a>),
    /// See [`Request`].
    Request(Request<'a>),
    /// See [`Block`].
    Block(Block<'a>),
}

impl<'a> Message<'a> {
    /// Parses one datagram. Never panics and never allocates.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, WireError> {
        let (ty, mut r) = parse_header(datagram)?;
        let r = &mut r;
        let msg = match ty {
            MessageType::Join => Message::Join(Join::read(r)?),
            MessageType::PeerList => Message::PeerList(PeerList::read(r)?),
            MessageType::Heartbeat => Message::Heartbeat(Heartbeat::read(r)?),
            MessageType::Retry => Message::Retry(Retry::read(r)?),
            MessageType::PunchRequest => Message::PunchRequest(PunchRequest::read(r)?),
            MessageType::Punch => Message::Punch(Punch::read(r)?),
            MessageType::ClubPeersRequest => Message::ClubPeersRequest(ClubPeersRequest::read(r)?),
            MessageType::ClubPeers => Message::ClubPeers(ClubPeers::read(r)?),
            MessageType::Ping => Message::Ping(Ping::read(r)?),
            MessageType::Pong => Message::Pong(Pong::read(r)?),
            MessageType::Connect => Message::Connect(Connect::read(r)?),
            MessageType::Accept => Message::Accept(Accept::read(r)?),
            MessageType::Refuse => Message::Refuse(Refuse::read(r)?),
            MessageType::Drop => Message::Drop(Drop::read(r)?),
            MessageType::KeepAlive => Message::KeepAlive(KeepAlive::read(r)?),
            MessageType::Have => Message::Have(Have::read(r)?),
            MessageType::Bitfield => Message::Bitfield(Bitfield::read(r)?),
            MessageType::Request => Message::Request(Request::read(r)?),
            MessageType::Block => Message::Block(Block::read(r)?),
        };
        r.clone().finish(ty.name())?;
        Ok(msg)
    }

    /// The message's type code.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Join(_) => MessageType::Join,
            Message::PeerList(_) => MessageType::PeerList,
            Message::Heartbeat(_) => MessageType::Heartbeat,
            Message::Retry(_) => MessageType::Retry,
            Message::PunchRequest(_) => MessageType::PunchRequest,
            Message::Punch(_) => MessageType::Punch,
            Message::ClubPeersRequest(_) => MessageType::ClubPeersRequest,
            Message::ClubPeers(_) => MessageType::ClubPeers,
            Message::Ping(_) => MessageType::Ping,
            Message::Pong(_) => MessageType::Pong,
            Message::Connect(_) => MessageType::Connect,
            Message::Accept(_) => MessageType::Accept,
            Message::Refuse(_) => MessageType::Refuse,
            Message::Drop(_) => MessageType::Drop,
            Message::KeepAlive(_) => MessageType::KeepAlive,
            Message::Have(_) => MessageType::Have,
            Message::Bitfield(_) => MessageType::Bitfield,
            Message::Request(_) => MessageType::Request,
            Message::Block(_) => MessageType::Block,
        }
    }

    /// Encodes the message into `out`, returning the datagram length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(out);
        write_header(&mut w, self.message_type())?;
        let w = &mut w;
        match self {
            Message::Join(m) => m.write(w)?,
            Message::PeerList(m) => m.write(w)?,
            Message::Heartbeat(m) => m.write(w)?,
            Message::Retry(m) => m.write(w)?,
            Message::PunchRequest(m) => m.write(w)?,
            Message::Punch(m) => m.write(w)?,
            Message::ClubPeersRequest(m) => m.write(w)?,
            Message::ClubPeers(m) => m.write(w)?,
            Message::Ping(m) => m.write(w)?,
            Message::Pong(m) => m.write(w)?,
            Message::Connect(m) => m.write(w)?,
            Message::Accept(m) => m.write(w)?,
            Message::Refuse(m) => m.write(w)?,
            Message::Drop(m) => m.write(w)?,
            Message::KeepAlive(m) => m.write(w)?,
            Message::Have(m) => m.write(w)?,
            Message::Bitfield(m) => m.write(w)?,
            Message::Request(m) => m.write(w)?,
            Message::Block(m) => m.write(w)?,
        }
        check_budget(w.len())
    }
}

impl MessageType {
    /// Human-readable name, used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Join => "JOIN",
            MessageType::PeerList => "PEER_LIST",
            MessageType::Heartbeat => "HEARTBEAT",
            MessageType::Retry => "RETRY",
            MessageType::PunchRequest => "PUNCH_REQUEST",
            MessageType::Punch => "PUNCH",
            MessageType::ClubPeersRequest => "CLUB_PEERS_REQUEST",
            MessageType::ClubPeers => "CLUB_PEERS",
            MessageType::Ping => "PING",
            MessageType::Pong => "PONG",
            MessageType::Connect => "CONNECT",
            MessageType::Accept => "ACCEPT",
            MessageType::Refuse => "REFUSE",
            MessageType::Drop => "DROP",
            MessageType::KeepAlive => "KEEPALIVE",
            MessageType::Have => "HAVE",
            MessageType::Bitfield => "BITFIELD",
            MessageType::Request => "REQUEST",
            MessageType::Block => "BLOCK",
        }
    }
}
