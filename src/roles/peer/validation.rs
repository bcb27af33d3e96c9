//! Address validation on both sides of a request (`docs/PROTOCOL.md` 5.18).
//!
//! Answering: a PING, CLUB_PEERS_REQUEST or CONNECT is served only when it
//! carries this peer's token for its source address; otherwise the peer
//! sends a RETRY with a fresh token, no bigger than the request, starts no
//! connection and learns no contact from it. Asking: the peer keeps the
//! tokens others gave it (a bounded book) and puts the right one in every
//! request; on a RETRY for a request it still has outstanding it keeps the
//! token and sends that request again at once, once per RETRY. A RETRY for
//! anything else is ignored, so a spoofed one fills no table. Request ids
//! and nonces are random, so an answer cannot be forged by guessing them.

use std::net::SocketAddr;

use rand::Rng;

use super::Peer;
use crate::roles::Time;
use crate::wire::{Message, MessageType, Retry, Token};

/// Tokens kept for other nodes at most; the oldest entry by address goes
/// first when full (a request to it then costs one more round trip).
pub(super) const TOKENS_MAX: usize = 4096;

/// How long an asked CLUB_PEERS_REQUEST may be answered or retried, µs.
pub(super) const CLUB_QUERY_US: u64 = 5_000_000;

/// CLUB_PEERS_REQUESTs remembered for their answers.
pub(super) const CLUB_QUERIES_MAX: usize = 16;

impl Peer {
    /// A random request id or nonce, never 0.
    pub(super) fn fresh_id(&mut self) -> u32 {
        loop {
            let id: u32 = self.rng.random();
            if id != 0 {
                return id;
            }
        }
    }

    /// The token `to` gave this peer, or none.
    pub(super) fn token_for(&self, to: SocketAddr) -> Token {
        self.tokens.get(&to).copied().unwrap_or(Token::NONE)
    }

    /// Whether a request of type `request` (id `request_id`) from `from`
    /// carries a valid token. If not, answers it with a RETRY and counts
    /// it; the caller then drops the request.
    pub(super) fn validated(
        &mut self,
        from: SocketAddr,
        token: &Token,
        request: MessageType,
        request_id: u32,
    ) -> bool {
        if self.token_key.check(from, token, self.now) {
            self.stats.requests_validated += 1;
            return true;
        }
        if !token.is_none() {
            self.stats.tokens_failed += 1;
        }
        self.stats.retries_sent += 1;
        let token = self.token_key.mint(from, self.now);
        self.send(
            from,
            &Message::Retry(Retry {
                token,
                request,
                request_id,
            }),
        );
        false
    }

    /// A RETRY from `from`: keeps its token and asks again, if the request
    /// it names is still outstanding.
    pub(super) fn on_retry(&mut self, now: Time, from: SocketAddr, retry: &Retry) {
        let outstanding = match retry.request {
            // Also when joined: a tracker that lost its list asks again.
            MessageType::Join => Some(from) == self.cfg.tracker,
            MessageType::Ping => {
                // A discovery ping, or a liveness probe of a download.
                self.contacts
                    .get(&from)
                    .is_some_and(|c| c.pinged.is_some() && c.ping_nonce == retry.request_id)
                    || (retry.request_id == 0
                        && self.conns.downloads.iter().any(|d| d.from == from))
            }
            MessageType::Connect => self
                .pending
                .iter()
                .any(|p| p.to == from && p.request_id == retry.request_id),
            MessageType::ClubPeersRequest => self.club_query(now, retry.request_id).is_some(),
            _ => false,
        };
        if !outstanding || retry.token.is_none() {
            self.stats.retries_ignored += 1;
            return;
        }
        self.stats.retries_received += 1;
        if !self.tokens.contains_key(&from) && self.tokens.len() >= TOKENS_MAX {
            if let Some(first) = self.tokens.keys().next().copied() {
                self.tokens.remove(&first);
            }
        }
        self.tokens.insert(from, retry.token);
        match retry.request {
            MessageType::Join => self.send_join(),
            MessageType::Ping => {
                let club = match retry.request_id {
                    0 => 0,
                    _ => self.contacts.get(&from).map_or(0, |c| c.ping_club),
                };
                self.send_ping(from, retry.request_id, club);
            }
            MessageType::Connect => {
                if let Some(p) = self
                    .pending
                    .iter()
                    .find(|p| p.to == from && p.request_id == retry.request_id)
                    .copied()
                {
                    self.send_connect(&p);
                }
            }
            MessageType::ClubPeersRequest => {
                if let Some(club) = self.club_query(now, retry.request_id) {
                    self.send_club_peers_request(from, retry.request_id, club);
                }
            }
            _ => {}
        }
    }

    /// The club of this peer's recent CLUB_PEERS_REQUEST `request_id`.
    pub(super) fn club_query(&self, now: Time, request_id: u32) -> Option<u16> {
        self.club_queries
            .iter()
            .find(|(id, _, at)| *id == request_id && now.0 < at.0 + CLUB_QUERY_US)
            .map(|(_, club, _)| *club)
    }
}
