//! Batch authentication ([0041]-[0043], [0046], [0049], claims 14-15).
//!
//! The source signs one statement per batch of blocks: the root of the
//! batch's hash tree plus the stream, batch number, first sequence number,
//! block count and timestamp. Each block carries just the proof hashes (and,
//! once per receiver, the signature) the receiver lacks. Receivers verify a
//! batch signature once, cache the verified tree nodes in a bounded window,
//! check each block against them, and hash complete batches in one pass. The
//! tree is the BLAKE3 tree with one block per 1 KiB chunk (`tree`).
//!
//! Rooms: `tree` (hashing), `chunk` (a block's leaf bytes), `statement`
//! (signed bytes), `keys` (key files, stream ids), `signer` (source side),
//! `ledger` (what a receiver already holds), `verifier` (receiver side),
//! `sigbatch` (several signatures checked at once).

pub mod chunk;
pub mod keys;
pub mod ledger;
pub mod sigbatch;
pub mod signer;
pub mod statement;
pub mod tree;
pub mod verifier;

pub use keys::{KeyError, SourceKey, StreamId};
pub use ledger::{ProofLedger, ProofPlan};
pub use signer::{BatchSigner, SignedBatch};
pub use statement::BatchStatement;
pub use verifier::{BatchVerifier, ForwardProof, Trust, Verified, VerifierStats};

use thiserror::Error;

/// Most blocks in one batch. Verified-node bitmaps are u128 over the
/// 2n - 1 nodes of a tree, and 64 KiB of chunk images is the scratch a
/// complete-batch check needs.
pub const MAX_BATCH_BLOCKS: usize = 64;

/// Default blocks per batch. The seed suggests 12 [0041]; 16 keeps signature
/// checks at 1/16 per block, makes a complete batch one 16 KiB BLAKE3 input
/// (the size where multi-chunk hashing reaches full speed) and adds 16
/// blocks of signing delay (about 65 ms at 2 Mbit/s). `scripts/bench-verify.sh`
/// measures the trade.
pub const DEFAULT_BATCH_BLOCKS: usize = 16;

/// Why a block failed authentication. Such a block is never played or
/// forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The block names another stream.
    #[error("block belongs to another stream")]
    WrongStream,
    /// The batch claims more blocks than a batch may hold.
    #[error("batch of {count} blocks exceeds the {MAX_BATCH_BLOCKS}-block limit")]
    BatchTooLarge {
        /// Claimed block count.
        count: u16,
    },
    /// The leaf index is not below the block count.
    #[error("leaf index {index} is not below the batch's {count} blocks")]
    BadLeaf {
        /// Claimed leaf index.
        index: u16,
        /// Claimed block count.
        count: u16,
    },
    /// The batch fell out of the verification window.
    #[error("batch {batch} is older than the verification window")]
    BatchTooOld {
        /// The batch number.
        batch: u64,
    },
    /// The block's first sequence number or block count contradicts the
    /// verified batch.
    #[error("block contradicts the verified shape of batch {batch}")]
    Inconsistent {
        /// The batch number.
        batch: u64,
    },
    /// More proof hashes than the block's path has levels.
    #[error("{given} proof hashes for a path of {depth} levels")]
    TooManyProofHashes {
        /// Hashes carried.
        given: usize,
        /// Path length.
        depth: usize,
    },
    /// The proof stops below a node the receiver has verified.
    #[error("proof hashes missing: the block cannot be tied to a verified node")]
    MissingProof,
    /// The batch is unknown and the block carries no signature.
    #[error("batch signature missing for an unverified batch")]
    MissingSignature,
    /// The signature does not verify against the stream key.
    #[error("batch signature does not verify against the stream id")]
    BadSignature,
    /// The block carries a signature other than the verified one.
    #[error("block carries a signature that differs from the verified one")]
    SignatureMismatch,
    /// The payload and proof hash to a different node than the verified one.
    #[error("block hashes do not match the verified batch tree")]
    HashMismatch,
    /// Blocks handed to the complete-batch check do not form a whole batch.
    #[error("blocks do not form one complete batch in leaf order")]
    NotCompleteBatch,
}
