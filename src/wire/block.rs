//! The BLOCK message: one numbered piece of the live feed (the hot path).
//!
//! Besides the payload a block carries the block tag its receiver gave the
//! sender for it (5.16 of `docs/PROTOCOL.md`: a secret that ties the block
//! to the receiver's connection, so an off-path sender cannot pass one off
//! under another's address), its place in the feed (sequence
//! number, club [0040]), hop-by-hop congestion fields (send timestamp and
//! delay threshold [0051]), the source's bit-rate estimate [0044], its place
//! in the signed batch (batch number, leaf index, leaf count [0041]), and only
//! the authentication data the receiver lacks [0049]: the batch signature if
//! this sender has not given it yet, and the lowest proof hashes of the
//! block's path in the batch tree. Parsing checks shape only; trust comes from
//! `crate::auth`.

use super::{check_budget, write_header, MessageType, Reader, StreamTag, WireError, Writer};

/// Bytes before the optional signature: header (3), flags (1), block tag
/// (8), stream tag (8), sequence (8), club (2), send time (8), delay threshold (4), bit rate
/// (4), batch (8), leaf index (2), leaf count (2), proof count (1), payload
/// length (2).
pub const BLOCK_FIXED_LEN: usize = 61;

/// Offset of the block tag in a BLOCK datagram (after the header and the
/// flags, so at an even offset for checksum arithmetic): a data plane
/// stamps each copy's tag there.
pub const BLOCK_TAG_OFFSET: usize = super::HEADER_LEN + 1;

/// Bytes of the block tag.
pub const BLOCK_TAG_LEN: usize = 8;

/// Writes `tag` into the BLOCK datagram `datagram`; false (nothing
/// written) when it is too short to hold one.
pub fn set_block_tag(datagram: &mut [u8], tag: u64) -> bool {
    match datagram.get_mut(BLOCK_TAG_OFFSET..BLOCK_TAG_OFFSET + BLOCK_TAG_LEN) {
        Some(field) => {
            field.copy_from_slice(&tag.to_be_bytes());
            true
        }
        None => false,
    }
}

/// The block tag of the BLOCK datagram `datagram`, if it is long enough to
/// hold one (its type is not checked).
pub fn block_tag(datagram: &[u8]) -> Option<u64> {
    let field = datagram.get(BLOCK_TAG_OFFSET..BLOCK_TAG_OFFSET + BLOCK_TAG_LEN)?;
    Some(u64::from_be_bytes(field.try_into().ok()?))
}

/// Bytes of the optional signature section: batch timestamp (8) and
/// ed25519 signature (64).
pub const SIGNATURE_SECTION_LEN: usize = 72;

/// Bytes of one proof hash (a BLAKE3 chaining value).
pub const HASH_LEN: usize = 32;

/// Largest payload: a block must fit one 1024-byte BLAKE3 chunk together
/// with its two-byte length (see `crate::auth::chunk`).
pub const MAX_PAYLOAD: usize = 1022;

/// Most proof hashes a block may carry (a tree of 2^16 leaves; the leaf
/// count is a u16).
pub const MAX_PROOF_HASHES: usize = 16;

/// Flag bit: the signature section is present.
const FLAG_SIGNATURE: u8 = 0x01;

/// The batch signature section of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSignature<'a> {
    /// The source's timestamp for the batch (microseconds since the UNIX
    /// epoch), covered by the signature.
    pub timestamp_us: u64,
    /// ed25519 signature over the batch statement (see `crate::auth`).
    pub signature: &'a [u8; 64],
}

/// A data block, borrowing its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<'a> {
    /// The block tag the receiver gave the sender (in CONNECT, ACCEPT or
    /// REQUEST): per hop, set anew for each receiver; 0 when the receiver
    /// gave none.
    pub tag: u64,
    /// Stream the block belongs to.
    pub stream: StreamTag,
    /// Sequence number in the feed [0040].
    pub seq: u64,
    /// Club of the block: `seq mod club_count` [0040].
    pub club: u16,
    /// When this hop sent it (sender's clock, microseconds since the UNIX
    /// epoch) [0051].
    pub sent_at_us: u64,
    /// One-way delay above which the receiver drops the connection [0051].
    pub delay_threshold_ms: u32,
    /// The source's bit-rate estimate [0044].
    pub bitrate_kbps: u32,
    /// Batch number [0041].
    pub batch: u64,
    /// Leaf index of this block in the batch tree.
    pub index: u16,
    /// Number of leaves (blocks) in the batch.
    pub count: u16,
    /// The batch signature, when the receiver may not have it [0049].
    pub signature: Option<BatchSignature<'a>>,
    /// Sibling hashes from the leaf upwards, as many as the receiver lacks.
    pub proof: &'a [[u8; HASH_LEN]],
    /// The media bytes.
    pub payload: &'a [u8],
}

impl<'a> Block<'a> {
    /// Sequence number of the batch's first block.
    pub fn first_seq(&self) -> u64 {
        self.seq.saturating_sub(u64::from(self.index))
    }

    /// Encoded length of this block in bytes.
    pub fn encoded_len(&self) -> usize {
        BLOCK_FIXED_LEN
            + self.signature.map_or(0, |_| SIGNATURE_SECTION_LEN)
            + self.proof.len() * HASH_LEN
            + self.payload.len()
    }

    /// The largest payload that fits the datagram budget next to a
    /// signature and `proof_hashes` proof hashes.
    pub fn max_payload(proof_hashes: usize) -> usize {
        let room = super::MAX_DATAGRAM
            .saturating_sub(BLOCK_FIXED_LEN + SIGNATURE_SECTION_LEN + proof_hashes * HASH_LEN);
        room.min(MAX_PAYLOAD)
    }

    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let flags = r.u8("flags")?;
        if flags & !FLAG_SIGNATURE != 0 {
            return Err(WireError::Invalid {
                field: "flags",
                reason: "reserved flag bits set",
            });
        }
        let tag = r.u64("block tag")?;
        let stream = StreamTag(*r.array("stream tag")?);
        let seq = r.u64("sequence")?;
        let club = r.u16("club")?;
        let sent_at_us = r.u64("send time")?;
        let delay_threshold_ms = r.u32("delay threshold")?;
        let bitrate_kbps = r.u32("bit rate")?;
        let batch = r.u64("batch")?;
        let index = r.u16("leaf index")?;
        let count = r.u16("leaf count")?;
        if index >= count {
            return Err(WireError::Invalid {
                field: "leaf index",
                reason: "not below the leaf count",
            });
        }
        if seq < u64::from(index) {
            return Err(WireError::Invalid {
                field: "sequence",
                reason: "smaller than the leaf index, so the batch would start before 0",
            });
        }
        let proof_count = usize::from(r.u8("proof count")?);
        if proof_count > MAX_PROOF_HASHES {
            return Err(WireError::Invalid {
                field: "proof count",
                reason: "more than 16 proof hashes",
            });
        }
        let payload_len = usize::from(r.u16("payload length")?);
        if payload_len > MAX_PAYLOAD {
            return Err(WireError::Invalid {
                field: "payload length",
                reason: "larger than 1022 bytes",
            });
        }
        let signature = if flags & FLAG_SIGNATURE != 0 {
            Some(BatchSignature {
                timestamp_us: r.u64("batch timestamp")?,
                signature: r.array("signature")?,
            })
        } else {
            None
        };
        let (proof, _) = r
            .bytes(proof_count * HASH_LEN, "proof hashes")?
            .as_chunks::<HASH_LEN>();
        let payload = r.bytes(payload_len, "payload")?;
        Ok(Block {
            tag,
            stream,
            seq,
            club,
            sent_at_us,
            delay_threshold_ms,
            bitrate_kbps,
            batch,
            index,
            count,
            signature,
            proof,
            payload,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.index >= self.count || self.seq < u64::from(self.index) {
            return Err(WireError::Invalid {
                field: "leaf index",
                reason: "not below the leaf count, or above the sequence number",
            });
        }
        if self.proof.len() > MAX_PROOF_HASHES {
            return Err(WireError::Invalid {
                field: "proof count",
                reason: "more than 16 proof hashes",
            });
        }
        if self.payload.len() > MAX_PAYLOAD {
            return Err(WireError::Invalid {
                field: "payload length",
                reason: "larger than 1022 bytes",
            });
        }
        let flags = if self.signature.is_some() {
            FLAG_SIGNATURE
        } else {
            0
        };
        w.u8(flags)?;
        w.u64(self.tag)?;
        w.bytes(&self.stream.0)?;
        w.u64(self.seq)?;
        w.u16(self.club)?;
        w.u64(self.sent_at_us)?;
        w.u32(self.delay_threshold_ms)?;
        w.u32(self.bitrate_kbps)?;
        w.u64(self.batch)?;
        w.u16(self.index)?;
        w.u16(self.count)?;
        w.u8(self.proof.len() as u8)?;
        w.u16(self.payload.len() as u16)?;
        if let Some(sig) = &self.signature {
            w.u64(sig.timestamp_us)?;
            w.bytes(sig.signature)?;
        }
        w.bytes(self.proof.as_flattened())?;
        w.bytes(self.payload)
    }

    /// Encodes the block as a whole datagram into `out` (for example a UMEM
    /// frame), returning its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let mut w = Writer::new(out);
        write_header(&mut w, MessageType::Block)?;
        self.write(&mut w)?;
        check_budget(w.len())
    }
}
