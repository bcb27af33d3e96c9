//! What a receiving peer already holds of each batch's authentication data.
//!
//! [0049]: a sender keeps track of the hashes and signatures it has sent to
//! each receiver and does not send them again. One `ProofLedger` per
//! receiving peer records, for a few recent batches, which tree nodes and
//! whether the signed root the receiver has been given. `plan` says what the
//! next block must carry: the signature and the whole path for the first
//! block of a batch, then only the sibling hashes below the lowest node the
//! receiver already has. The receiver's `BatchVerifier` caches exactly those
//! nodes, so the two stay in step as long as datagrams arrive. A lost one
//! leaves the receiver unable to check the next blocks of that batch: it
//! parks them and asks for one again (a REQUEST), and the sender then
//! [`ProofLedger::forget`]s the batch, so its next block carries the
//! signature and the whole path once more.

use super::tree::{NodeId, Path};

/// Batches remembered per receiver.
pub const LEDGER_BATCHES: usize = 8;

/// What one block must carry for its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofPlan {
    /// Include the batch signature.
    pub signature: bool,
    /// Number of proof hashes, from the leaf upwards.
    pub hashes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    batch: u64,
    /// Node ids the receiver holds (the root's id once it has the root).
    known: u128,
}

/// Per-receiver record of sent proof hashes and signatures.
#[derive(Debug, Clone, Default)]
pub struct ProofLedger {
    entries: [Option<Entry>; LEDGER_BATCHES],
}

fn bit(id: NodeId) -> u128 {
    1u128 << id.0
}

impl ProofLedger {
    /// An empty ledger: the receiver holds nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, batch: u64) -> &mut Entry {
        let slot = match self
            .entries
            .iter()
            .position(|e| e.is_some_and(|e| e.batch == batch))
        {
            Some(i) => i,
            None => {
                let i = self
                    .entries
                    .iter()
                    .position(Option::is_none)
                    .or_else(|| {
                        (0..LEDGER_BATCHES).min_by_key(|&i| self.entries[i].map_or(0, |e| e.batch))
                    })
                    .unwrap_or(0);
                self.entries[i] = Some(Entry { batch, known: 0 });
                i
            }
        };
        self.entries[slot].get_or_insert(Entry { batch, known: 0 })
    }

    /// Forgets what the receiver holds of `batch`: the next block of it
    /// carries the signature and its whole path again (after the receiver
    /// asked for a block again, it may have lost them).
    pub fn forget(&mut self, batch: u64) {
        for e in &mut self.entries {
            if e.is_some_and(|e| e.batch == batch) {
                *e = None;
            }
        }
    }

    /// Decides what block `index` of a `count`-block batch must carry and
    /// records that the receiver will hold it. A batch shape no verified
    /// block has (`count` 0 or above [`super::MAX_BATCH_BLOCKS`], or
    /// `index >= count`) gets the signature and no hashes, and nothing is
    /// recorded.
    pub fn plan(&mut self, batch: u64, count: u16, index: u16) -> ProofPlan {
        if count == 0 || usize::from(count) > super::MAX_BATCH_BLOCKS || index >= count {
            return ProofPlan {
                signature: true,
                hashes: 0,
            };
        }
        let path = Path::new(count, index);
        let steps = path.steps();
        let root = NodeId::of_range(0, count);
        let leaf = NodeId::of_range(index, 1);
        let entry = self.entry(batch);
        let signature = entry.known & bit(root) == 0;
        let hashes = if signature {
            steps.len()
        } else {
            // The lowest level whose node the receiver already holds; the
            // root (level = depth) is held, so the search always ends.
            (0..=steps.len())
                .find(|&k| {
                    let node = if k == 0 { leaf } else { steps[k - 1].parent };
                    entry.known & bit(node) != 0
                })
                .unwrap_or(steps.len())
        };
        entry.known |= bit(leaf) | bit(root);
        for step in &steps[..hashes] {
            entry.known |= bit(step.sibling) | bit(step.parent);
        }
        ProofPlan { signature, hashes }
    }
}
