//! Rendezvous messages: the tracker introduces peers behind NAT.
//!
//! A peer that cannot reach another (its PINGs go unanswered: the other
//! sits behind a router that drops what it did not ask for) sends the
//! tracker a [`PunchRequest`]; the tracker, which both keep a mapping open
//! to, sends the other a [`Punch`] naming the asker, and the other sends
//! the asker a PING. That opens the other's mapping towards the asker, so
//! the asker's next PING gets in (UDP hole punching, RFC 5128). The
//! tracker also punches on its own for every list it hands out.

use std::net::SocketAddr;

use super::control::read_tag;
use super::{ListItem, Reader, StreamTag, Token, WireError, Writer};

/// Peer -> tracker: ask `target` to open its way to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PunchRequest {
    /// The stream.
    pub stream: StreamTag,
    /// The peer the sender cannot reach, as the tracker listed it.
    pub target: SocketAddr,
    /// The tracker's address-validation token for the sender.
    pub token: Token,
}

impl PunchRequest {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PunchRequest {
            stream: read_tag(r)?,
            target: SocketAddr::read(r)?,
            token: Token::read(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.stream.0)?;
        self.target.write(w)?;
        self.token.write(w)
    }
}

/// Tracker -> peer: `peer` wants to reach you; send it a PING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Punch {
    /// The stream.
    pub stream: StreamTag,
    /// Whom to PING: the asker, as the tracker sees it (its local address
    /// when both sit behind the same router).
    pub peer: SocketAddr,
}

impl Punch {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Punch {
            stream: read_tag(r)?,
            peer: SocketAddr::read(r)?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.stream.0)?;
        self.peer.write(w)
    }
}
