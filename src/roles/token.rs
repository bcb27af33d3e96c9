//! Address-validation tokens: proof that a requester receives at the
//! address it sends from, checked without state on the answering side.
//!
//! A node answers a request from an address it has not validated with a
//! RETRY that carries a token, and nothing bigger; the requester repeats
//! the request with the token, and only then gets the answer it asked for
//! (the model is QUIC's Retry and address-validation tokens, RFC 9000
//! section 8). A token is the epoch it was made in and a keyed BLAKE3 MAC
//! of the address, port and epoch under a key only its maker knows, so a
//! spoofer that never sees the RETRY cannot produce one, and the maker
//! keeps no table of the tokens it gave out. A token is good in the epoch
//! it was made and the next one (`TOKEN_EPOCH_US` each), so the requester
//! keeps it for a while and most requests carry a valid one.

use std::net::SocketAddr;

use crate::roles::Time;
use crate::wire::Token;

/// Length of one token epoch, µs (5 minutes): a token is good for 5 to 10
/// minutes.
pub const TOKEN_EPOCH_US: u64 = 300_000_000;

/// First byte MACed for a token.
const DOMAIN_TOKEN: u8 = 1;

/// First byte MACed for a block tag.
const DOMAIN_BLOCK_TAG: u8 = 2;

/// Mints and checks the tokens of one node.
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A key from 32 secret random bytes (from the node's seeded RNG).
    pub fn new(key: [u8; 32]) -> Self {
        TokenKey { key }
    }

    /// The token for `addr` at `now`.
    pub fn mint(&self, addr: SocketAddr, now: Time) -> Token {
        let epoch = (now.0 / TOKEN_EPOCH_US) as u32;
        self.token(addr, epoch)
    }

    /// Whether `token` was minted by this key for `addr` in the epoch of
    /// `now` or the one before. The all-zero token (none) never checks.
    pub fn check(&self, addr: SocketAddr, token: &Token, now: Time) -> bool {
        if token.is_none() {
            return false;
        }
        let epoch = token.epoch();
        let current = (now.0 / TOKEN_EPOCH_US) as u32;
        (epoch == current || epoch.wrapping_add(1) == current)
            && constant_time_eq(&self.token(addr, epoch).0, &token.0)
    }

    /// The block tag this node gives `addr`: never 0 (0 means "no tag
    /// given").
    pub fn block_tag(&self, addr: SocketAddr) -> u64 {
        let mac = self.mac(addr, DOMAIN_BLOCK_TAG, &[]);
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&mac.as_bytes()[..8]);
        u64::from_be_bytes(tag).max(1)
    }

    fn token(&self, addr: SocketAddr, epoch: u32) -> Token {
        let mac = self.mac(addr, DOMAIN_TOKEN, &epoch.to_be_bytes());
        let mut out = [0u8; Token::LEN];
        out[..4].copy_from_slice(&epoch.to_be_bytes());
        out[4..].copy_from_slice(&mac.as_bytes()[..Token::LEN - 4]);
        Token(out)
    }

    /// The keyed MAC of `domain`, `addr` and `extra`.
    fn mac(&self, addr: SocketAddr, domain: u8, extra: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&[domain]);
        match addr {
            SocketAddr::V4(a) => {
                h.update(&[4]);
                h.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                h.update(&[6]);
                h.update(&a.ip().octets());
            }
        }
        h.update(&addr.port().to_be_bytes());
        h.update(extra);
        h.finalize()
    }
}

/// Compares two byte strings of equal length without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_token_checks_for_its_address_in_its_epoch_and_the_next_only() {
        let k = TokenKey::new([7; 32]);
        let t0 = Time(TOKEN_EPOCH_US * 10 + 5);
        let tok = k.mint(a(1), t0);
        assert!(k.check(a(1), &tok, t0));
        assert!(k.check(a(1), &tok, Time(t0.0 + TOKEN_EPOCH_US)));
        assert!(!k.check(a(1), &tok, Time(t0.0 + 2 * TOKEN_EPOCH_US)));
        assert!(!k.check(a(2), &tok, t0), "another port");
        assert!(!TokenKey::new([8; 32]).check(a(1), &tok, t0), "another key");
        assert!(!k.check(a(1), &Token::NONE, t0));
        let mut bent = tok;
        bent.0[9] ^= 1;
        assert!(!k.check(a(1), &bent, t0));
    }

    #[test]
    fn block_tags_differ_by_address_and_key_and_are_never_zero() {
        let k = TokenKey::new([7; 32]);
        assert_eq!(k.block_tag(a(1)), k.block_tag(a(1)));
        assert_ne!(k.block_tag(a(1)), k.block_tag(a(2)));
        assert_ne!(k.block_tag(a(1)), TokenKey::new([8; 32]).block_tag(a(1)));
        assert!((0..200).all(|p| k.block_tag(a(p)) != 0));
    }
}
