//! Address-validation tokens on the wire, and RETRY, the answer that
//! carries one.
//!
//! Every request whose answer is bigger than itself or starts work for the
//! requester (JOIN, CLUB_PEERS_REQUEST, PING, CONNECT) carries a
//! [`Token`] as its last field: all zeros when the requester has none. A
//! node answers a request without a valid token with a [`Retry`] and
//! nothing else; the requester repeats the request with the token (see
//! `crate::roles::token` and `docs/PROTOCOL.md` 5.18).

use super::{MessageType, Reader, WireError, Writer};

/// An opaque address-validation token: what its maker minted for one
/// address (the first 4 bytes are the epoch it was minted in).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub [u8; Token::LEN]);

impl Token {
    /// Bytes of a token.
    pub const LEN: usize = 16;

    /// No token: all zeros.
    pub const NONE: Token = Token([0; Token::LEN]);

    /// True for [`Token::NONE`].
    pub fn is_none(&self) -> bool {
        self.0 == [0; Token::LEN]
    }

    /// The epoch its maker wrote into it.
    pub fn epoch(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Token(*r.array::<{ Token::LEN }>("token")?))
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.bytes(&self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_none() {
            f.write_str("Token(none)")
        } else {
            write!(f, "Token(epoch {}, ..)", self.epoch())
        }
    }
}

/// Answer to a request from an address not validated yet: the token to
/// repeat it with. `request` and `request_id` name the request (the nonce
/// of a PING, the request id of a CLUB_PEERS_REQUEST or CONNECT, 0 for a
/// JOIN), so the requester repeats only what it still wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The token for the requester's address.
    pub token: Token,
    /// The type of the request answered.
    pub request: MessageType,
    /// Its id or nonce.
    pub request_id: u32,
}

impl Retry {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let token = Token::read(r)?;
        let byte = r.u8("request type")?;
        let request = MessageType::from_u8(byte).map_err(|_| WireError::UnknownType(byte))?;
        Ok(Retry {
            token,
            request,
            request_id: r.u32("request id")?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.token.write(w)?;
        w.u8(self.request as u8)?;
        w.u32(self.request_id)
    }
}
