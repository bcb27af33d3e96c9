//! One received BLOCK judged: stream, club, then batch authentication
//! ([0046]), in that order, each failure named.

use crate::auth::{AuthError, BatchVerifier, Trust, Verified};
use crate::wire::{Block, StreamTag};

/// What a received BLOCK is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Verified, and new to this verifier: play, store and forward it.
    Fresh(Verified),
    /// Verified, and delivered before.
    Duplicate(Verified),
    /// Not checkable yet: the hashes or the signature it builds on came in
    /// a datagram that is late or lost. Not a forgery; park it and ask for
    /// it again.
    Unverifiable,
    /// Of a batch older than the verification window.
    Stale,
    /// Failed authentication: never played or forwarded.
    Forged,
    /// Of another stream.
    WrongStream,
    /// Its club is not its sequence number modulo the club count: a block
    /// relabelled on the way.
    WrongClub,
}

/// Judges `block` for the stream of `tag`, in a swarm of `club_count`
/// clubs (0: not known yet, so every club field is wrong), verifying it
/// with `verifier` as far as `trust` asks.
pub fn judge(
    verifier: &mut BatchVerifier,
    tag: StreamTag,
    club_count: u16,
    block: &Block<'_>,
    trust: Trust,
) -> Verdict {
    match misplaced(tag, club_count, block) {
        Some(verdict) => verdict,
        None => verdict_of(verifier.verify_with(block, trust)),
    }
}

/// What [`judge`] finds before authentication: `WrongStream` for a block
/// not of the stream of `tag`, `WrongClub` for one outside the club its
/// sequence number puts it in among `club_count` clubs, `None` otherwise.
pub fn misplaced(tag: StreamTag, club_count: u16, block: &Block<'_>) -> Option<Verdict> {
    if block.stream != tag {
        return Some(Verdict::WrongStream);
    }
    if club_count == 0 || u64::from(block.club) != block.seq % u64::from(club_count) {
        return Some(Verdict::WrongClub);
    }
    None
}

/// The verdict on a block of this stream and its right club, given what
/// the verifier said of it.
pub fn verdict_of(verified: Result<Verified, AuthError>) -> Verdict {
    match verified {
        Ok(v) if v.fresh => Verdict::Fresh(v),
        Ok(v) => Verdict::Duplicate(v),
        Err(AuthError::MissingProof | AuthError::MissingSignature) => Verdict::Unverifiable,
        Err(AuthError::BatchTooOld { .. }) => Verdict::Stale,
        Err(AuthError::WrongStream) => Verdict::WrongStream,
        Err(_) => Verdict::Forged,
    }
}
