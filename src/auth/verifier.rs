//! The receiver side of batch authentication.
//!
//! `BatchVerifier` checks blocks of one stream. It keeps a window of recent
//! batches in a fixed table (one slot per batch number modulo the window,
//! allocated once): the signed root, the signature, the tree nodes verified
//! so far and the leaves delivered. A batch's signature is checked once, when
//! its first block arrives; later blocks are tied by their proof hashes to a
//! node already verified ([0046], [0049]). `verify_many` hashes each complete
//! batch in a burst as one contiguous input and checks it against the root
//! (`verify_complete`, which records the batch's whole tree so its blocks
//! can be forwarded with full paths), falling back to block-by-block checks
//! when that fails, so a forged block is singled out. A slot is only filled
//! after its signature verifies, so forged blocks cannot evict genuine
//! batches. A receiver that gets several new batches at once (a relay's
//! receive burst) can check their signatures together first
//! ([`BatchVerifier::check_signatures_ahead`], `sigbatch`). A block another verifier of the same process has already
//! passed (the relay's workers report to its control plane) is taken with
//! [`Trust::Verified`]: its hashes are recorded, so proofs can be built
//! from them, but its signature is not checked a second time.

use super::chunk::chunk_image;
use super::keys::StreamId;
use super::sigbatch::{self, SignedStatement, MAX_SIGNATURES};
use super::statement::BatchStatement;
use super::tree::{batch_root, fill_nodes, leaf_cv, parent, Cv, NodeId, Path, CHUNK_LEN, MAX_PATH};
use super::{AuthError, MAX_BATCH_BLOCKS};
use crate::counters::counters;
use crate::wire::{BatchSignature, Block, StreamTag};

/// Default number of batches kept verified (256 blocks of 16-block batches
/// span about one second at 2 Mbit/s; 64 batches span four).
pub const DEFAULT_WINDOW: usize = 64;

/// Nodes in the largest tree.
const MAX_NODES: usize = 2 * MAX_BATCH_BLOCKS - 1;

/// Outcome of a block that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// False when this leaf had already been delivered (a duplicate).
    pub fresh: bool,
    /// The source's signed timestamp of the block's batch.
    pub batch_timestamp_us: u64,
}

/// Whether a block comes straight from the network or was verified already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// From the network: check everything.
    Check,
    /// Passed by another verifier of this process for the same stream:
    /// record its hashes, do not check the batch signature again.
    Verified,
}

/// What a forwarder needs, besides the payload, to send a verified block
/// on: the batch signature and the sibling chaining values of the block's
/// whole path (leaf first), taken from the cache.
#[derive(Debug, Clone, Copy)]
pub struct ForwardProof {
    /// Sequence number of the batch's first block.
    pub first_seq: u64,
    /// Blocks in the batch.
    pub count: u16,
    /// The batch timestamp covered by the signature.
    pub timestamp_us: u64,
    /// The batch signature.
    pub signature: [u8; 64],
    /// Sibling chaining values, leaf first; `depth` of them are valid.
    pub siblings: [Cv; MAX_PATH],
    /// Levels in the block's path.
    pub depth: usize,
}

impl ForwardProof {
    /// `block` as sent on to a receiver that may hold none of its batch's
    /// authentication data: with the signature and the whole proof path,
    /// sent at `sent_at_us`.
    pub fn full_block<'a>(&'a self, block: &Block<'a>, sent_at_us: u64) -> Block<'a> {
        Block {
            sent_at_us,
            signature: Some(BatchSignature {
                timestamp_us: self.timestamp_us,
                signature: &self.signature,
            }),
            proof: &self.siblings[..self.depth],
            ..*block
        }
    }
}

counters! {
    /// What a verifier did: the blocks it passed and rejected, and the
    /// work that took (signature checks, whole-batch hashes).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct VerifierStats {
        /// Blocks the verifier passed (duplicates included).
        passed as "passed",
        /// Blocks the verifier passed that it had delivered before.
        duplicates as "duplicates",
        /// Blocks the verifier rejected.
        rejected as "rejected",
        /// ed25519 signature verifications the verifier performed.
        signatures_checked as "signatures_checked",
        /// Batch signatures the verifier took without a check, from blocks
        /// another verifier of this process passed.
        signatures_trusted as "signatures_trusted",
        /// Complete batches the verifier checked with one contiguous hash.
        batches_hashed as "batches_hashed",
        /// Calls that checked several signatures at once (their signatures
        /// count in signatures_checked).
        signature_batches as "signature_batches",
    }
}

#[derive(Clone)]
struct Entry {
    batch: u64,
    first_seq: u64,
    count: u16,
    timestamp_us: u64,
    signature: [u8; 64],
    /// Verified node ids; the root's id is always set.
    known: u128,
    /// Chaining values by node id; the root's slot holds the root hash.
    nodes: [Cv; MAX_NODES],
    /// Leaves delivered.
    delivered: u64,
}

impl Entry {
    fn root(&self) -> Cv {
        self.nodes[usize::from(NodeId::of_range(0, self.count).0)]
    }
}

/// What a slot holds relative to an incoming batch.
enum Slot {
    /// The batch is verified and cached here.
    Known(usize),
    /// The slot may take the batch once its signature verifies.
    Free(usize),
}

/// Per-block facts checked before any hashing.
struct Shape {
    path: Path,
    leaf: NodeId,
    root: NodeId,
}

/// Verifies the blocks of one stream.
pub struct BatchVerifier {
    stream: StreamId,
    tag: StreamTag,
    slots: Box<[Option<Entry>]>,
    newest: Option<u64>,
    scratch: Box<[[u8; CHUNK_LEN]; MAX_BATCH_BLOCKS]>,
    /// Signatures checked ahead, together, by batch number.
    ahead: [Option<(u64, SignedStatement)>; MAX_SIGNATURES],
    stats: VerifierStats,
}

/// A block's leaf folded up through the proof hashes it carries: every
/// node met (leaf, then each sibling and parent), the topmost node and its
/// chaining value.
struct Folded {
    met: [(NodeId, Cv); 2 * MAX_PATH + 1],
    len: usize,
    top: NodeId,
    cv: Cv,
}

fn bit(id: NodeId) -> u128 {
    1u128 << id.0
}

impl BatchVerifier {
    /// A verifier for `stream` keeping `window` (at least 1) batches.
    pub fn new(stream: StreamId, window: usize) -> Self {
        let window = window.max(1);
        BatchVerifier {
            stream,
            tag: StreamTag::of_key(&stream.to_bytes()),
            slots: vec![None; window].into_boxed_slice(),
            newest: None,
            scratch: Box::new([[0u8; CHUNK_LEN]; MAX_BATCH_BLOCKS]),
            ahead: [None; MAX_SIGNATURES],
            stats: VerifierStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> VerifierStats {
        self.stats
    }

    /// True once leaf `index` of `batch` has been delivered.
    pub fn is_delivered(&self, batch: u64, index: u16) -> bool {
        matches!(self.slot(batch), Ok(Slot::Known(i))
            if self.slots[i].as_ref().is_some_and(|e| index < 64 && e.delivered >> index & 1 == 1))
    }

    /// The signature and full proof path of leaf `index` of `batch`, for
    /// forwarding it. `None` when the batch left the window or a sibling on
    /// the path was never verified here.
    pub fn forwarding_proof(&self, batch: u64, index: u16) -> Option<ForwardProof> {
        let Ok(Slot::Known(i)) = self.slot(batch) else {
            return None;
        };
        let entry = self.slots[i].as_ref()?;
        if index >= entry.count {
            return None;
        }
        let path = Path::new(entry.count, index);
        let mut siblings = [[0u8; 32]; MAX_PATH];
        for (k, step) in path.steps().iter().enumerate() {
            if entry.known & bit(step.sibling) == 0 {
                return None;
            }
            siblings[k] = entry.nodes[usize::from(step.sibling.0)];
        }
        Some(ForwardProof {
            first_seq: entry.first_seq,
            count: entry.count,
            timestamp_us: entry.timestamp_us,
            signature: entry.signature,
            siblings,
            depth: path.depth(),
        })
    }

    /// Whether checking `block` would cost a signature check: it is of
    /// this stream, its batch is not verified yet (nor too old to be), and
    /// its signature was not checked ahead. Cheap: one slot lookup.
    pub fn needs_signature(&self, block: &Block<'_>) -> bool {
        block.stream == self.tag
            && matches!(self.slot(block.batch), Ok(Slot::Free(_)))
            && block
                .signature
                .is_none_or(|sig| self.checked_ahead(block.batch, sig.signature).is_none())
    }

    /// The statement `signature` was found to sign for `batch` by
    /// [`BatchVerifier::check_signatures_ahead`], if it was.
    fn checked_ahead(&self, batch: u64, signature: &[u8; 64]) -> Option<&SignedStatement> {
        self.ahead
            .iter()
            .flatten()
            .find(|(b, item)| *b == batch && item.signature == *signature)
            .map(|(_, item)| item)
    }

    /// Checks the batch signatures of `blocks` (each the first of a batch
    /// that needs one, carrying the signature and its whole proof path) at
    /// once, with `sigbatch::verify_all`: about a third cheaper for 4
    /// signatures than one by one, and more for more. When all hold, each
    /// batch's first block to be verified (by any call) admits its batch
    /// without another signature check, provided its statement is the one
    /// checked. When one fails, nothing is kept, and each block is checked
    /// alone, which singles out the forged one. Returns the signatures
    /// kept; fewer than 2 usable blocks are not checked (0).
    pub fn check_signatures_ahead<'a: 'b, 'b>(
        &mut self,
        blocks: impl IntoIterator<Item = &'b Block<'a>>,
    ) -> usize {
        let mut items = [SignedStatement {
            statement: [0; super::statement::STATEMENT_LEN],
            signature: [0; 64],
        }; MAX_SIGNATURES];
        let mut batches = [0u64; MAX_SIGNATURES];
        let mut n = 0;
        for block in blocks {
            if n == MAX_SIGNATURES {
                break;
            }
            let Some(sig) = block.signature else { continue };
            let Ok(shape) = self.shape(block) else {
                continue;
            };
            let Ok(folded) = Self::fold(&shape, block) else {
                continue;
            };
            if folded.top != shape.root || batches[..n].contains(&block.batch) {
                continue;
            }
            items[n] = SignedStatement {
                statement: self
                    .statement(block, sig.timestamp_us, folded.cv)
                    .to_bytes(),
                signature: *sig.signature,
            };
            batches[n] = block.batch;
            n += 1;
        }
        if n < 2 {
            return 0;
        }
        self.stats.signature_batches += 1;
        self.stats.signatures_checked += n as u64;
        self.ahead = [None; MAX_SIGNATURES];
        if !sigbatch::verify_all(&self.stream, &items[..n]) {
            return 0;
        }
        for ((slot, batch), item) in self.ahead.iter_mut().zip(batches).zip(items).take(n) {
            *slot = Some((batch, item));
        }
        n
    }

    /// The statement `block`'s batch signature covers, for root `root`.
    fn statement(&self, block: &Block<'_>, timestamp_us: u64, root: Cv) -> BatchStatement {
        BatchStatement {
            stream_key: self.stream.to_bytes(),
            batch: block.batch,
            first_seq: block.first_seq(),
            count: block.count,
            timestamp_us,
            root,
        }
    }

    fn slot(&self, batch: u64) -> Result<Slot, AuthError> {
        let window = self.slots.len() as u64;
        if self
            .newest
            .is_some_and(|n| batch.saturating_add(window) <= n)
        {
            return Err(AuthError::BatchTooOld { batch });
        }
        let i = (batch % window) as usize;
        match &self.slots[i] {
            Some(e) if e.batch == batch => Ok(Slot::Known(i)),
            Some(e) if e.batch > batch => Err(AuthError::BatchTooOld { batch }),
            _ => Ok(Slot::Free(i)),
        }
    }

    fn shape(&self, block: &Block<'_>) -> Result<Shape, AuthError> {
        if block.stream != self.tag {
            return Err(AuthError::WrongStream);
        }
        if usize::from(block.count) > MAX_BATCH_BLOCKS {
            return Err(AuthError::BatchTooLarge { count: block.count });
        }
        if block.index >= block.count {
            return Err(AuthError::BadLeaf {
                index: block.index,
                count: block.count,
            });
        }
        let path = Path::new(block.count, block.index);
        if block.proof.len() > path.depth() {
            return Err(AuthError::TooManyProofHashes {
                given: block.proof.len(),
                depth: path.depth(),
            });
        }
        Ok(Shape {
            path,
            leaf: NodeId::of_range(block.index, 1),
            root: NodeId::of_range(0, block.count),
        })
    }

    fn check_cached(entry: &Entry, block: &Block<'_>) -> Result<(), AuthError> {
        if entry.first_seq != block.first_seq() || entry.count != block.count {
            return Err(AuthError::Inconsistent { batch: block.batch });
        }
        match block.signature {
            Some(sig)
                if sig.timestamp_us != entry.timestamp_us || *sig.signature != entry.signature =>
            {
                Err(AuthError::SignatureMismatch)
            }
            _ => Ok(()),
        }
    }

    /// Checks the batch signature for a batch not yet cached (unless
    /// `trust` says it was checked already) and caches it in slot `i` with
    /// `root`.
    fn admit(
        &mut self,
        i: usize,
        block: &Block<'_>,
        root: Cv,
        trust: Trust,
    ) -> Result<(), AuthError> {
        let sig = block.signature.ok_or(AuthError::MissingSignature)?;
        let statement = self.statement(block, sig.timestamp_us, root).to_bytes();
        match trust {
            Trust::Verified => self.stats.signatures_trusted += 1,
            Trust::Check => match self.checked_ahead(block.batch, sig.signature) {
                // A signature that holds for one statement holds for no
                // other (that would take a SHA-512 collision).
                Some(checked) if checked.statement != statement => {
                    return Err(AuthError::BadSignature);
                }
                Some(_) => {}
                None => {
                    self.stats.signatures_checked += 1;
                    if !self.stream.verify(&statement, sig.signature) {
                        return Err(AuthError::BadSignature);
                    }
                }
            },
        }
        let root_id = NodeId::of_range(0, block.count);
        let mut nodes = [[0u8; 32]; MAX_NODES];
        nodes[usize::from(root_id.0)] = root;
        self.slots[i] = Some(Entry {
            batch: block.batch,
            first_seq: block.first_seq(),
            count: block.count,
            timestamp_us: sig.timestamp_us,
            signature: *sig.signature,
            known: bit(root_id),
            nodes,
            delivered: 0,
        });
        self.newest = Some(self.newest.map_or(block.batch, |n| n.max(block.batch)));
        Ok(())
    }

    /// Verifies one block. On success the block may be played and
    /// forwarded; on error it must be dropped.
    pub fn verify(&mut self, block: &Block<'_>) -> Result<Verified, AuthError> {
        self.verify_with(block, Trust::Check)
    }

    /// [`BatchVerifier::verify`], with the batch signature checked or not
    /// as `trust` says; the hashes are always checked and recorded.
    pub fn verify_with(&mut self, block: &Block<'_>, trust: Trust) -> Result<Verified, AuthError> {
        let out = self.verify_one(block, trust);
        self.count(out)
    }

    fn count(&mut self, out: Result<Verified, AuthError>) -> Result<Verified, AuthError> {
        match out {
            Ok(v) => {
                self.stats.passed += 1;
                self.stats.duplicates += u64::from(!v.fresh);
            }
            Err(_) => self.stats.rejected += 1,
        }
        out
    }

    fn verify_one(&mut self, block: &Block<'_>, trust: Trust) -> Result<Verified, AuthError> {
        let shape = self.shape(block)?;
        let slot = self.slot(block.batch)?;
        if let Slot::Known(i) = slot {
            if let Some(entry) = &self.slots[i] {
                Self::check_cached(entry, block)?;
            }
        }
        // Fold the leaf up through every proof hash given, remembering the
        // nodes met so they can be cached once the top one is trusted.
        let Folded {
            met,
            len,
            top,
            cv: cur,
        } = Self::fold(&shape, block)?;
        let met = &met[..len];
        let i = match slot {
            Slot::Known(i) => {
                let entry = self.slots[i].as_ref().ok_or(AuthError::MissingProof)?;
                if entry.known & bit(top) == 0 {
                    return Err(AuthError::MissingProof);
                }
                if entry.nodes[usize::from(top.0)] != cur {
                    return Err(AuthError::HashMismatch);
                }
                i
            }
            Slot::Free(i) => {
                if top != shape.root {
                    return Err(AuthError::MissingProof);
                }
                self.admit(i, block, cur, trust)?;
                i
            }
        };
        let entry = self.slots[i].as_mut().ok_or(AuthError::MissingProof)?;
        for (id, cv) in met {
            entry.known |= bit(*id);
            entry.nodes[usize::from(id.0)] = *cv;
        }
        Ok(Self::deliver(entry, block.index))
    }

    /// Folds `block`'s leaf up through the proof hashes it carries.
    fn fold(shape: &Shape, block: &Block<'_>) -> Result<Folded, AuthError> {
        let mut image = [0u8; CHUNK_LEN];
        chunk_image(block.payload, &mut image).ok_or(AuthError::HashMismatch)?;
        let steps = shape.path.steps();
        let depth = steps.len();
        let mut met: [(NodeId, Cv); 2 * MAX_PATH + 1] = [(NodeId(0), [0; 32]); 2 * MAX_PATH + 1];
        let mut cur = if depth == 0 {
            *blake3::hash(&image).as_bytes()
        } else {
            leaf_cv(&image, block.index)
        };
        met[0] = (shape.leaf, cur);
        let mut top = shape.leaf;
        for (k, (step, sibling)) in steps.iter().zip(block.proof).enumerate() {
            let is_root = k + 1 == depth;
            cur = if step.sibling_is_left {
                parent(sibling, &cur, is_root)
            } else {
                parent(&cur, sibling, is_root)
            };
            met[2 * k + 1] = (step.sibling, *sibling);
            met[2 * k + 2] = (step.parent, cur);
            top = step.parent;
        }
        Ok(Folded {
            met,
            len: 2 * block.proof.len() + 1,
            top,
            cv: cur,
        })
    }

    fn deliver(entry: &mut Entry, index: u16) -> Verified {
        let mask = 1u64 << index;
        let fresh = entry.delivered & mask == 0;
        entry.delivered |= mask;
        Verified {
            fresh,
            batch_timestamp_us: entry.timestamp_us,
        }
    }

    /// Verifies a burst of blocks, writing one result per block into
    /// `results` (which must be as long as `blocks`). Each run of blocks
    /// that is a whole batch in leaf order is hashed as one input; other
    /// blocks, and every block of a run that fails, are checked one by one.
    pub fn verify_many(
        &mut self,
        blocks: &[Block<'_>],
        results: &mut [Result<Verified, AuthError>],
    ) {
        let mut at = 0;
        while at < blocks.len() && at < results.len() {
            let count = usize::from(blocks[at].count);
            let run = blocks.get(at..at + count);
            match run.map(|run| self.verify_complete(run, &mut results[at..at + count])) {
                Some(Ok(())) => at += count,
                _ => {
                    results[at] = self.verify(&blocks[at]);
                    at += 1;
                }
            }
        }
    }

    /// Checks that `run` is one whole batch in leaf order and verifies it
    /// with a single contiguous hash, recording every node of its tree (so
    /// each block can be forwarded with its whole path), and writes one
    /// result per block into `results` (as long as `run`). On `Err` nothing
    /// was recorded and `results` is untouched: check the blocks one by one
    /// to single out a forged one.
    pub fn verify_complete(
        &mut self,
        run: &[Block<'_>],
        results: &mut [Result<Verified, AuthError>],
    ) -> Result<(), AuthError> {
        let first = run.first().ok_or(AuthError::NotCompleteBatch)?;
        if run.len() < 2 || run.len() > MAX_BATCH_BLOCKS {
            return Err(AuthError::NotCompleteBatch);
        }
        for (i, b) in run.iter().enumerate() {
            if usize::from(b.index) != i
                || b.batch != first.batch
                || b.count != first.count
                || b.first_seq() != first.seq
                || b.stream != self.tag
            {
                return Err(AuthError::NotCompleteBatch);
            }
            chunk_image(b.payload, &mut self.scratch[i]).ok_or(AuthError::HashMismatch)?;
        }
        let root = batch_root(&self.scratch[..run.len()]);
        let mut nodes = [[0u8; 32]; MAX_NODES];
        self.complete_tree(run, root, &mut nodes)?;
        let i = match self.slot(first.batch)? {
            Slot::Known(i) => {
                let entry = self.slots[i].as_ref().ok_or(AuthError::MissingProof)?;
                if entry.root() != root {
                    return Err(AuthError::HashMismatch);
                }
                i
            }
            Slot::Free(i) => {
                let signed = run
                    .iter()
                    .find(|b| b.signature.is_some())
                    .ok_or(AuthError::MissingSignature)?;
                self.admit(i, signed, root, Trust::Check)?;
                i
            }
        };
        self.stats.batches_hashed += 1;
        let used = 2 * run.len() - 1;
        if let Some(entry) = self.slots[i].as_mut() {
            entry.nodes[..used].copy_from_slice(&nodes[..used]);
            entry.known |= (1u128 << used) - 1;
        }
        for (b, result) in run.iter().zip(results.iter_mut()) {
            let out = match self.slots[i].as_mut() {
                Some(entry) => Self::check_cached(entry, b).map(|()| Self::deliver(entry, b.index)),
                None => Err(AuthError::MissingProof),
            };
            *result = self.count(out);
        }
        Ok(())
    }

    /// Fills `nodes` with the tree of the complete batch `run`, whose chunk
    /// images are in `scratch` and whose contiguous hash is `root`. A leaf's
    /// chaining value is taken from a proof that names it as a sibling when
    /// there is one (together they must hash up to `root`, so a wrong one
    /// is caught) and hashed from its chunk otherwise; when the named ones
    /// do not hash up to `root`, every leaf is hashed.
    fn complete_tree(
        &self,
        run: &[Block<'_>],
        root: Cv,
        nodes: &mut [Cv; MAX_NODES],
    ) -> Result<(), AuthError> {
        let count = run.len() as u16;
        let mut leaves = [[0u8; 32]; MAX_BATCH_BLOCKS];
        let mut named = 0u64;
        for b in run {
            let path = Path::new(count, b.index);
            for (step, cv) in path.steps().iter().zip(b.proof) {
                if step.sibling.0 % 2 == 0 {
                    let leaf = usize::from(step.sibling.0 / 2);
                    leaves[leaf] = *cv;
                    named |= 1 << leaf;
                }
            }
        }
        let leaves = &mut leaves[..run.len()];
        for (j, (leaf, chunk)) in leaves.iter_mut().zip(self.scratch.iter()).enumerate() {
            if named >> j & 1 == 0 {
                *leaf = leaf_cv(chunk, j as u16);
            }
        }
        if fill_nodes(leaves, nodes) == root {
            return Ok(());
        }
        for (j, (leaf, chunk)) in leaves.iter_mut().zip(self.scratch.iter()).enumerate() {
            *leaf = leaf_cv(chunk, j as u16);
        }
        if fill_nodes(leaves, nodes) == root {
            Ok(())
        } else {
            Err(AuthError::HashMismatch)
        }
    }
}
