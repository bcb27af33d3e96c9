//! The batch statement: the exact bytes the source signs for each batch.
//!
//! The signature binds a batch's tree root to the stream (the whole public
//! key), the batch number, the sequence number of its first block, its block
//! count and the source's timestamp ([0041]-[0042], claims 14-15). Binding the
//! first sequence number and the count fixes every block's sequence number
//! (`first_seq + leaf index`) and the tree's shape.

use super::tree::Cv;

/// Domain separation prefix, so no other clubcast signature can be replayed
/// as a batch signature.
const DOMAIN: &[u8; 17] = b"clubcast batch v1";

/// Length of a batch statement in bytes.
pub const STATEMENT_LEN: usize = 17 + 32 + 8 + 8 + 2 + 8 + 32;

/// What a batch signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStatement {
    /// The stream's public key.
    pub stream_key: [u8; 32],
    /// Batch number.
    pub batch: u64,
    /// Sequence number of the batch's first block.
    pub first_seq: u64,
    /// Blocks (leaves) in the batch.
    pub count: u16,
    /// Source timestamp, microseconds since the UNIX epoch.
    pub timestamp_us: u64,
    /// Root of the batch tree.
    pub root: Cv,
}

impl BatchStatement {
    /// The signed bytes.
    pub fn to_bytes(&self) -> [u8; STATEMENT_LEN] {
        let mut out = [0u8; STATEMENT_LEN];
        let parts: [&[u8]; 7] = [
            DOMAIN,
            &self.stream_key,
            &self.batch.to_be_bytes(),
            &self.first_seq.to_be_bytes(),
            &self.count.to_be_bytes(),
            &self.timestamp_us.to_be_bytes(),
            &self.root,
        ];
        let mut at = 0;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out
    }
}
