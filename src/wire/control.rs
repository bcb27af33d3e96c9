//! Control messages: everything but BLOCK.
//!
//! Tracker messages ([0015]-[0016], [0030]-[0031]), club discovery and load
//! probes ([0032]-[0035]), connection setup and teardown ([0051]-[0059]),
//! keep-alives ([0053]), HAVE ([0046]) and the Elias-coded BITFIELD ([0056]).
//! Each struct reads and writes its body only; the common header is handled
//! by [`super::Message`].

use super::bitfield;
use super::byte_enum::byte_enum;
use super::list::{read_opt_addr, write_opt_addr};
use super::{
    AddrList, ClubList, Reader, SeqList, StreamTag, Token, WireError, Writer, STREAM_TAG_LEN,
};
use std::net::SocketAddr;

pub(super) fn read_tag(r: &mut Reader<'_>) -> Result<StreamTag, WireError> {
    Ok(StreamTag(*r.array::<STREAM_TAG_LEN>("stream tag")?))
}

byte_enum! {
    "join role",
    /// What a joining node is; the tracker recommends clubs only to viewers.
    pub enum JoinRole {
        /// A viewer peer: sits in the clubs the tracker recommends.
        Viewer = 0,
        /// The stream's source: sits in every club.
        Source = 1,
        /// A super-peer relay: sits in the clubs it serves.
        Relay = 2,
    }
}

/// Peer -> tracker: join the swarm of `stream` ([0030]). The tracker answers
/// with a [`PeerList`]; the peer's address is the datagram's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// The stream to join.
    pub stream: StreamTag,
    /// Random id the peer keeps for its lifetime (tells restarts apart).
    pub peer_id: u64,
    /// Most peers the joining peer wants listed.
    pub max_peers: u16,
    /// What the joining node is.
    pub role: JoinRole,
    /// The tracker's address-validation token for the sender, or none.
    pub token: Token,
    /// The address the peer's socket has on its own network, when it
    /// knows it: peers behind the same router reach each other there.
    pub local: Option<SocketAddr>,
}

impl Join {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Join {
            stream: read_tag(r)?,
            peer_id: r.u64("peer id")?,
            max_peers: r.u16("max peers")?,
            role: JoinRole::from_u8(r.u8("join role")?)?,
            token: Token::read(r)?,
            local: read_opt_addr(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.stream.0)?;
        w.u64(self.peer_id)?;
        w.u16(self.max_peers)?;
        w.u8(self.role as u8)?;
        self.token.write(w)?;
        write_opt_addr(w, self.local)
    }
}

/// Tracker -> peer: a full or partial peer list, the club count and the
/// recommended clubs ([0016], [0030]-[0031]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerList<'a> {
    /// The stream.
    pub stream: StreamTag,
    /// Number of clubs in the swarm.
    pub club_count: u16,
    /// Clubs the tracker recommends joining.
    pub recommended: ClubList<'a>,
    /// How often the tracker expects a heartbeat, in milliseconds.
    pub heartbeat_ms: u32,
    /// Peers in the swarm.
    pub peers: AddrList<'a>,
    /// The requester's address as the tracker sees it.
    pub observed: Option<SocketAddr>,
}

impl<'a> PeerList<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let stream = read_tag(r)?;
        let club_count = r.u16("club count")?;
        if club_count == 0 {
            return Err(WireError::Invalid {
                field: "club count",
                reason: "a swarm has at least one club",
            });
        }
        Ok(PeerList {
            stream,
            club_count,
            recommended: ClubList::read(r, "recommended clubs")?,
            heartbeat_ms: r.u32("heartbeat interval")?,
            peers: AddrList::read(r, "peers")?,
            observed: read_opt_addr(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.stream.0)?;
        w.u16(self.club_count)?;
        self.recommended.write(w, "recommended clubs")?;
        w.u32(self.heartbeat_ms)?;
        self.peers.write(w, "peers")?;
        write_opt_addr(w, self.observed)
    }
}

/// Peer -> tracker: still part of the swarm ([0015]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    /// The stream.
    pub stream: StreamTag,
    /// The id sent in [`Join`].
    pub peer_id: u64,
    /// The clubs the peer sits in.
    pub clubs: ClubList<'a>,
}

impl<'a> Heartbeat<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Heartbeat {
            stream: read_tag(r)?,
            peer_id: r.u64("peer id")?,
            clubs: ClubList::read(r, "clubs")?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.stream.0)?;
        w.u64(self.peer_id)?;
        self.clubs.write(w, "clubs")
    }
}

/// Ask a peer which members of `club` it knows ([0032], [0037]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClubPeersRequest {
    /// Echoed in the answer.
    pub request_id: u32,
    /// The club asked about.
    pub club: u16,
    /// Most addresses wanted.
    pub max_peers: u16,
    /// The answering peer's token for the sender, or none.
    pub token: Token,
}

impl ClubPeersRequest {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ClubPeersRequest {
            request_id: r.u32("request id")?,
            club: r.u16("club")?,
            max_peers: r.u16("max peers")?,
            token: Token::read(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.request_id)?;
        w.u16(self.club)?;
        w.u16(self.max_peers)?;
        self.token.write(w)
    }
}

/// Members of a club, answering [`ClubPeersRequest`] ([0032]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClubPeers<'a> {
    /// From the request.
    pub request_id: u32,
    /// The club.
    pub club: u16,
    /// Its members known to the sender.
    pub peers: AddrList<'a>,
}

impl<'a> ClubPeers<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(ClubPeers {
            request_id: r.u32("request id")?,
            club: r.u16("club")?,
            peers: AddrList::read(r, "peers")?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.request_id)?;
        w.u16(self.club)?;
        self.peers.write(w, "peers")
    }
}

/// Probe a peer's load before connecting ([0033]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Echoed in the [`Pong`].
    pub nonce: u32,
    /// The club the prober wants to connect in; the pong reports in-club
    /// counts for it.
    pub club: u16,
    /// The probed peer's token for the sender, or none.
    pub token: Token,
}

impl Ping {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Ping {
            nonce: r.u32("nonce")?,
            club: r.u16("club")?,
            token: Token::read(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.nonce)?;
        w.u16(self.club)?;
        self.token.write(w)
    }
}

/// Upload and download connection counts, inside and outside a club
/// ([0033]-[0035]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Upload connections inside the club.
    pub uploads_in_club: u16,
    /// Upload connections to other clubs.
    pub uploads_out_of_club: u16,
    /// Download connections inside the club.
    pub downloads_in_club: u16,
    /// Download connections from other clubs.
    pub downloads_out_of_club: u16,
}

/// [`Pong::spare_kbps`] of a peer that has not found its uplink's limit.
pub const SPARE_UNLIMITED: u32 = u32::MAX;

/// Answer to [`Ping`] ([0033]-[0035]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong<'a> {
    /// From the ping.
    pub nonce: u32,
    /// From the ping.
    pub club: u16,
    /// The responder's connection counts relative to `club`.
    pub load: Load,
    /// Upload capacity the responder has left, in kbit/s: its estimate of
    /// what its uplink carries minus what it sends;
    /// [`SPARE_UNLIMITED`] while it has seen no limit.
    pub spare_kbps: u32,
    /// The clubs the responder sits in.
    pub clubs: ClubList<'a>,
    /// What the responder knows of the router in front of it: 0 unknown,
    /// 1 none (public), 2 endpoint-independent, 3 symmetric.
    pub reach: u8,
    /// The prober's address as the responder sees it.
    pub observed: Option<SocketAddr>,
}

impl<'a> Pong<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Pong {
            nonce: r.u32("nonce")?,
            club: r.u16("club")?,
            load: Load {
                uploads_in_club: r.u16("uploads in club")?,
                uploads_out_of_club: r.u16("uploads out of club")?,
                downloads_in_club: r.u16("downloads in club")?,
                downloads_out_of_club: r.u16("downloads out of club")?,
            },
            spare_kbps: r.u32("spare upload")?,
            clubs: ClubList::read(r, "clubs")?,
            reach: r.u8("reach")?,
            observed: read_opt_addr(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.nonce)?;
        w.u16(self.club)?;
        w.u16(self.load.uploads_in_club)?;
        w.u16(self.load.uploads_out_of_club)?;
        w.u16(self.load.downloads_in_club)?;
        w.u16(self.load.downloads_out_of_club)?;
        w.u32(self.spare_kbps)?;
        self.clubs.write(w, "clubs")?;
        w.u8(self.reach)?;
        write_opt_addr(w, self.observed)
    }
}

byte_enum! {
    "direction",
    /// Which way blocks flow on a connection, seen from the peer that sends the
    /// message carrying it.
    pub enum Direction {
        /// The sender of the message receives blocks (it downloads).
        Download = 0,
        /// The sender of the message transmits blocks (it uploads).
        Upload = 1,
    }
}

impl Direction {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Direction::from_u8(r.u8("direction")?)
    }
}

/// Ask for a connection in `direction` carrying the blocks of `club`
/// ([0036], [0059]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Echoed in the answer.
    pub request_id: u32,
    /// Direction from the initiator's side.
    pub direction: Direction,
    /// Club whose blocks the connection carries.
    pub club: u16,
    /// The block tag the initiator gives the responder: what it wants on
    /// every BLOCK it receives from it (5.16).
    pub block_tag: u64,
    /// The initiator's clubs, so the other side can tell in-club from
    /// out-of-club requests ([0059]).
    pub clubs: ClubList<'a>,
    /// The responder's token for the initiator, or none.
    pub token: Token,
}

impl<'a> Connect<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Connect {
            request_id: r.u32("request id")?,
            direction: Direction::read(r)?,
            club: r.u16("club")?,
            block_tag: r.u64("block tag")?,
            clubs: ClubList::read(r, "clubs")?,
            token: Token::read(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.request_id)?;
        w.u8(self.direction as u8)?;
        w.u16(self.club)?;
        w.u64(self.block_tag)?;
        self.clubs.write(w, "clubs")?;
        self.token.write(w)
    }
}

/// Connection granted ([0059]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    /// From the request.
    pub request_id: u32,
    /// Direction from the initiator's side, as requested.
    pub direction: Direction,
    /// Club of the connection.
    pub club: u16,
    /// The block tag the responder gives the initiator: what it wants on
    /// every BLOCK it receives from it (5.16).
    pub block_tag: u64,
}

impl Accept {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Accept {
            request_id: r.u32("request id")?,
            direction: Direction::read(r)?,
            club: r.u16("club")?,
            block_tag: r.u64("block tag")?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.request_id)?;
        w.u8(self.direction as u8)?;
        w.u16(self.club)?;
        w.u64(self.block_tag)
    }
}

byte_enum! {
    "refuse reason",
    /// Why a connection request was refused.
    pub enum RefuseReason {
        /// The responder has no room for the connection.
        Full = 1,
        /// The requester is on the responder's ban list ([0039]).
        Banned = 2,
        /// The responder is not in that club.
        NotInClub = 3,
        /// The responder is leaving the swarm.
        ShuttingDown = 4,
    }
}

/// Connection refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refuse {
    /// From the request.
    pub request_id: u32,
    /// Why.
    pub reason: RefuseReason,
}

impl Refuse {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let request_id = r.u32("request id")?;
        let reason = RefuseReason::from_u8(r.u8("refuse reason")?)?;
        Ok(Refuse { request_id, reason })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.request_id)?;
        w.u8(self.reason as u8)
    }
}

byte_enum! {
    "drop reason",
    /// Why a connection was dropped ([0051]-[0053], [0059]).
    pub enum DropReason {
        /// One-way delay above the block's threshold ([0051]).
        Delay = 1,
        /// A gap in sequence numbers ([0052]).
        SequenceGap = 2,
        /// No block for too long ([0053]).
        Silence = 3,
        /// No keep-alive for too long ([0053]).
        KeepAliveTimeout = 4,
        /// Trimmed after an accepted request overshot the target ([0059]).
        Trimmed = 5,
        /// The sender is leaving the swarm.
        Leaving = 6,
        /// The other side sent blocks that failed authentication.
        Forged = 7,
        /// The receiver acted on a connection the sender does not have (a
        /// DROP crossed a CONNECT): it is to forget it too.
        NoSuchConnection = 8,
        /// The uploader's uplink cannot carry the connection: it sheds it
        /// to keep its other uploads on time. Not a fault of either side.
        Shed = 9,
    }
}

/// A connection is dropped; the receiver forgets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drop {
    /// Direction from the sender's side.
    pub direction: Direction,
    /// Club of the connection.
    pub club: u16,
    /// Why.
    pub reason: DropReason,
    /// The connection's tag: the block tag its downloader gave its
    /// uploader (5.16), which only the two ends (and whoever is on the path
    /// between them) know; a receiver ignores the message without it.
    pub tag: u64,
}

impl Drop {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let direction = Direction::read(r)?;
        let club = r.u16("club")?;
        let reason = DropReason::from_u8(r.u8("drop reason")?)?;
        let tag = r.u64("connection tag")?;
        Ok(Drop {
            direction,
            club,
            reason,
            tag,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.direction as u8)?;
        w.u16(self.club)?;
        w.u8(self.reason as u8)?;
        w.u64(self.tag)
    }
}

/// [`KeepAlive::queue_delay_ms`] when the downloader has no measure yet.
pub const DELAY_UNKNOWN: u16 = u16::MAX;

/// Downloader -> uploader: keep the connection of `club` alive ([0053]),
/// and how it fares, so the uploader can fit its sending to its uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Club of the connection.
    pub club: u16,
    /// Blocks received on the connection so far (wrapping).
    pub received: u32,
    /// Queuing delay of the connection: its recent one-way delay above the
    /// lowest it has had, in ms (saturating); [`DELAY_UNKNOWN`] before
    /// any block.
    pub queue_delay_ms: u16,
    /// The connection's tag: the block tag its downloader gave its
    /// uploader (5.16), which only the two ends (and whoever is on the path
    /// between them) know; a receiver ignores the message without it.
    pub tag: u64,
}

impl KeepAlive {
    /// A keep-alive of `club` on the connection with tag `tag` that
    /// reports nothing.
    pub fn bare(club: u16, tag: u64) -> Self {
        KeepAlive {
            club,
            received: 0,
            queue_delay_ms: DELAY_UNKNOWN,
            tag,
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(KeepAlive {
            club: r.u16("club")?,
            received: r.u32("received")?,
            queue_delay_ms: r.u16("queue delay")?,
            tag: r.u64("connection tag")?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u16(self.club)?;
        w.u32(self.received)?;
        w.u16(self.queue_delay_ms)?;
        w.u64(self.tag)
    }
}

/// Most sequence numbers one [`Request`] may ask for.
pub const REQUEST_MAX_SEQS: usize = 32;

/// "Send me these blocks again": loss repair. A peer asks a peer it has a
/// connection with for blocks it lacks as their play time nears; the
/// answer is each held block, as a BLOCK carrying its whole proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The block tag the requester wants on the answers (5.16).
    pub block_tag: u64,
    /// The blocks wanted, at most [`REQUEST_MAX_SEQS`].
    pub seqs: SeqList<'a>,
}

impl<'a> Request<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let block_tag = r.u64("block tag")?;
        let seqs = SeqList::read(r, "sequences")?;
        if seqs.len() > REQUEST_MAX_SEQS {
            return Err(WireError::Invalid {
                field: "sequences",
                reason: "more than 32 sequence numbers",
            });
        }
        Ok(Request { block_tag, seqs })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.seqs.len() > REQUEST_MAX_SEQS {
            return Err(WireError::Invalid {
                field: "sequences",
                reason: "more than 32 sequence numbers",
            });
        }
        w.u64(self.block_tag)?;
        self.seqs.write(w, "sequences")
    }
}

/// "I already hold block `seq`": sent to in-club peers that upload to the
/// sender, so they skip it ([0046]-[0047]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Have {
    /// Club of the block.
    pub club: u16,
    /// Its sequence number.
    pub seq: u64,
    /// The connection's tag: the block tag its downloader gave its
    /// uploader (5.16), which only the two ends (and whoever is on the path
    /// between them) know; a receiver ignores the message without it.
    pub tag: u64,
}

impl Have {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Have {
            club: r.u16("club")?,
            seq: r.u64("sequence")?,
            tag: r.u64("connection tag")?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u16(self.club)?;
        w.u64(self.seq)?;
        w.u64(self.tag)
    }
}

/// Which blocks of a club the sender holds, from `start_seq` on, as a
/// run-length bit field coded with Elias gamma ([0056]). Bit i stands for the
/// i-th block of the club from `start_seq`, i.e. sequence
/// `start_seq + i * club_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bitfield<'a> {
    /// Club of the blocks.
    pub club: u16,
    /// Sequence number of bit 0.
    pub start_seq: u64,
    /// Number of bits.
    pub bits: u16,
    /// Value of bit 0 (the first run's value).
    pub first: bool,
    /// The connection's tag: the block tag its downloader gave its
    /// uploader (5.16), which only the two ends (and whoever is on the path
    /// between them) know; a receiver ignores the message without it.
    pub tag: u64,
    /// Gamma-coded run lengths, validated to cover exactly `bits` bits.
    pub runs: &'a [u8],
}

impl<'a> Bitfield<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let club = r.u16("club")?;
        let start_seq = r.u64("start sequence")?;
        let bits = r.u16("bit count")?;
        let first = match r.u8("first bit")? {
            0 => false,
            1 => true,
            other => {
                return Err(WireError::UnknownValue {
                    field: "first bit",
                    value: other.into(),
                })
            }
        };
        if bits == 0 && first {
            return Err(WireError::Invalid {
                field: "first bit",
                reason: "set in an empty bit field",
            });
        }
        let tag = r.u64("connection tag")?;
        let runs_len = usize::from(r.u16("runs length")?);
        let runs = r.bytes(runs_len, "runs")?;
        bitfield::validate(runs, usize::from(bits))?;
        Ok(Bitfield {
            club,
            start_seq,
            bits,
            first,
            tag,
            runs,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        let runs_len = u16::try_from(self.runs.len()).map_err(|_| WireError::Invalid {
            field: "runs",
            reason: "coded runs longer than 65535 bytes",
        })?;
        w.u16(self.club)?;
        w.u64(self.start_seq)?;
        w.u16(self.bits)?;
        w.u8(u8::from(self.first))?;
        w.u64(self.tag)?;
        w.u16(runs_len)?;
        w.bytes(self.runs)
    }

    /// Decodes the bit field into `out` (bit i at `out[i / 8] >> (7 - i % 8)`).
    pub fn decode_into(&self, out: &mut [u8]) -> Result<(), WireError> {
        bitfield::decode(self.first, self.runs, usize::from(self.bits), out)
    }
}
