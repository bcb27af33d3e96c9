//! The source side of batch authentication.
//!
//! `BatchSigner` turns a batch of payloads into a `SignedBatch`: chunk
//! images, the whole tree, the signature over the batch statement, and every
//! leaf's proof path. `SignedBatch::block` then builds the BLOCK for one
//! receiver, carrying what that receiver's `ProofLedger` says it lacks.

use super::chunk::chunk_image;
use super::keys::SourceKey;
use super::statement::BatchStatement;
use super::tree::{max_depth, BatchTree, Cv, Path, CHUNK_LEN};
use super::{ProofPlan, MAX_BATCH_BLOCKS};
use crate::wire::{BatchSignature, Block, StreamTag};
use thiserror::Error;

/// Why a batch could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignError {
    /// A batch holds 1 to [`MAX_BATCH_BLOCKS`] blocks.
    #[error("a batch holds 1 to {MAX_BATCH_BLOCKS} blocks, got {0}")]
    BadCount(usize),
    /// A payload is longer than a block of this batch can carry next to
    /// a signature and a full proof.
    #[error("payload {index} is {len} bytes, a block of this batch carries at most {max}")]
    PayloadTooLong {
        /// Which payload.
        index: usize,
        /// Its length.
        len: usize,
        /// The limit for this batch size (`Block::max_payload`).
        max: usize,
    },
}

/// The per-hop fields of a block, which the batch signature does not cover
/// and each forwarding peer sets anew ([0044], [0051]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HopFields {
    /// Club of the block (`seq mod club_count`).
    pub club: u16,
    /// Send time on this hop, microseconds since the UNIX epoch.
    pub sent_at_us: u64,
    /// One-way delay threshold for the receiver, milliseconds.
    pub delay_threshold_ms: u32,
    /// The source's bit-rate estimate, kbit/s.
    pub bitrate_kbps: u32,
}

/// Signs batches for one stream.
pub struct BatchSigner {
    key: SourceKey,
    stream_key: [u8; 32],
}

/// A signed batch, ready to hand out blocks.
#[derive(Debug, Clone)]
pub struct SignedBatch {
    stream: StreamTag,
    batch: u64,
    first_seq: u64,
    timestamp_us: u64,
    signature: [u8; 64],
    tree: BatchTree,
    leaves: Vec<[u8; CHUNK_LEN]>,
    payload_lens: Vec<usize>,
    /// Each leaf's sibling chaining values, leaf first.
    proofs: Vec<Vec<Cv>>,
}

impl BatchSigner {
    /// A signer holding the source key.
    pub fn new(key: SourceKey) -> Self {
        let stream_key = key.stream_id().to_bytes();
        BatchSigner { key, stream_key }
    }

    /// Hashes and signs one batch of payloads.
    pub fn sign(
        &self,
        batch: u64,
        first_seq: u64,
        timestamp_us: u64,
        payloads: &[&[u8]],
    ) -> Result<SignedBatch, SignError> {
        if payloads.is_empty() || payloads.len() > MAX_BATCH_BLOCKS {
            return Err(SignError::BadCount(payloads.len()));
        }
        let max = Block::max_payload(max_depth(payloads.len() as u16));
        let mut leaves = vec![[0u8; CHUNK_LEN]; payloads.len()];
        for (index, (payload, leaf)) in payloads.iter().zip(&mut leaves).enumerate() {
            let too_long = SignError::PayloadTooLong {
                index,
                len: payload.len(),
                max,
            };
            if payload.len() > max {
                return Err(too_long);
            }
            chunk_image(payload, leaf).ok_or(too_long)?;
        }
        let tree = BatchTree::build(&leaves);
        let count = tree.count();
        let statement = BatchStatement {
            stream_key: self.stream_key,
            batch,
            first_seq,
            count,
            timestamp_us,
            root: tree.root(),
        };
        let signature = self.key.sign(&statement.to_bytes());
        let proofs = (0..count)
            .map(|i| {
                Path::new(count, i)
                    .steps()
                    .iter()
                    .map(|s| tree.node(s.sibling))
                    .collect()
            })
            .collect();
        Ok(SignedBatch {
            stream: StreamTag::of_key(&self.stream_key),
            batch,
            first_seq,
            timestamp_us,
            signature,
            tree,
            payload_lens: payloads.iter().map(|p| p.len()).collect(),
            leaves,
            proofs,
        })
    }
}

impl SignedBatch {
    /// Number of blocks.
    pub fn count(&self) -> u16 {
        self.tree.count()
    }

    /// The signed root.
    pub fn root(&self) -> Cv {
        self.tree.root()
    }

    /// The batch number.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Sequence number of block `index`.
    pub fn seq(&self, index: u16) -> u64 {
        self.first_seq + u64::from(index)
    }

    /// The payload of block `index`.
    pub fn payload(&self, index: u16) -> &[u8] {
        let i = usize::from(index);
        &self.leaves[i][2..2 + self.payload_lens[i]]
    }

    /// The BLOCK for leaf `index` (below [`Self::count`]) carrying what
    /// `plan` asks for, with no block tag (each sender sets the one its
    /// receiver gave it).
    pub fn block(&self, index: u16, plan: ProofPlan, hop: HopFields) -> Block<'_> {
        let proof = &self.proofs[usize::from(index)];
        Block {
            tag: 0,
            stream: self.stream,
            seq: self.seq(index),
            club: hop.club,
            sent_at_us: hop.sent_at_us,
            delay_threshold_ms: hop.delay_threshold_ms,
            bitrate_kbps: hop.bitrate_kbps,
            batch: self.batch,
            index,
            count: self.count(),
            signature: plan.signature.then_some(BatchSignature {
                timestamp_us: self.timestamp_us,
                signature: &self.signature,
            }),
            proof: &proof[..plan.hashes.min(proof.len())],
            payload: self.payload(index),
        }
    }
}
