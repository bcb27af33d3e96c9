//! The chunk image of a block: what the batch tree hashes for one leaf.
//!
//! A leaf must be exactly one 1024-byte BLAKE3 chunk, while payloads vary in
//! length. The image is the payload length as a big-endian u16, the payload,
//! then zero bytes up to 1024. Carrying the length inside the hashed bytes
//! means trailing zeros cannot be added to or cut from a payload without
//! changing its leaf hash.

use super::tree::CHUNK_LEN;
use crate::wire::MAX_PAYLOAD;

/// Writes the chunk image of `payload` into `out`. Returns `None` when the
/// payload is longer than [`MAX_PAYLOAD`].
pub fn chunk_image(payload: &[u8], out: &mut [u8; CHUNK_LEN]) -> Option<()> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    out[..2].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    out[2..2 + payload.len()].copy_from_slice(payload);
    out[2 + payload.len()..].fill(0);
    Some(())
}
