//! The blocks a peer holds: payloads by sequence number, bounded.
//!
//! Verified blocks wait here to be played, to be forwarded to peers that
//! connect later and lack them ([0056]), and to repair other peers' losses.
//! Each keeps the source's batch timestamp, for the play delay. The peer
//! forgets blocks by age on the source's timeline, so the store always
//! covers the whole play-delay range whatever the bit rate; `capacity` is
//! a hard bound above that, and the oldest go first.

use std::collections::BTreeMap;

use crate::roles::Time;

/// One held block.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// The media bytes.
    pub payload: Vec<u8>,
    /// Batch number, leaf index and leaf count, to rebuild its proof.
    pub batch: u64,
    /// Leaf index in the batch.
    pub index: u16,
    /// Leaves in the batch.
    pub count: u16,
    /// The source's (signed) batch timestamp.
    pub source_time: Time,
}

impl StoredBlock {
    /// Keeps a copy of a verified block's payload and place.
    pub fn of(block: &crate::wire::Block<'_>, source_time: Time) -> Self {
        StoredBlock {
            payload: block.payload.to_vec(),
            batch: block.batch,
            index: block.index,
            count: block.count,
            source_time,
        }
    }
}

/// Held blocks by sequence number.
#[derive(Debug, Clone)]
pub struct BlockStore {
    blocks: BTreeMap<u64, StoredBlock>,
    capacity: usize,
}

impl BlockStore {
    /// A store of at most `capacity` blocks.
    pub fn new(capacity: usize) -> Self {
        BlockStore {
            blocks: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Adds a block; false if it was already held.
    pub fn insert(&mut self, seq: u64, block: StoredBlock) -> bool {
        if self.blocks.contains_key(&seq) {
            return false;
        }
        self.blocks.insert(seq, block);
        while self.blocks.len() > self.capacity {
            self.blocks.pop_first();
        }
        true
    }

    /// True when `seq` is held.
    pub fn has(&self, seq: u64) -> bool {
        self.blocks.contains_key(&seq)
    }

    /// The block `seq`.
    pub fn get(&self, seq: u64) -> Option<&StoredBlock> {
        self.blocks.get(&seq)
    }

    /// Forgets blocks below `seq`.
    pub fn forget_below(&mut self, seq: u64) {
        self.blocks = self.blocks.split_off(&seq);
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The lowest sequence number held.
    pub fn oldest(&self) -> Option<u64> {
        self.blocks.first_key_value().map(|(s, _)| *s)
    }

    /// The highest sequence number held.
    pub fn newest(&self) -> Option<u64> {
        self.blocks.last_key_value().map(|(s, _)| *s)
    }

    /// Source time of `seq`, or of the first held block after it (an
    /// estimate for a missing block).
    pub fn source_time(&self, seq: u64) -> Option<Time> {
        self.blocks.range(seq..).next().map(|(_, b)| b.source_time)
    }

    /// Media time per block measured on the source's clock: the batch
    /// times of the newest held block and of the oldest held within
    /// `window` blocks before it, over the blocks between. `None` until
    /// they span at least `min_span` blocks and some time.
    pub fn time_per_block(&self, window: u64, min_span: u64) -> Option<u64> {
        let (&newest, last) = self.blocks.last_key_value()?;
        let (&oldest, first) = self.blocks.range(newest.saturating_sub(window)..).next()?;
        let span = newest - oldest;
        let time = last.source_time.0.checked_sub(first.source_time.0)?;
        (span >= min_span.max(1) && time > 0).then(|| time / span)
    }

    /// The first held block, of source time at least `since`, that starts
    /// a run of `len` sequence numbers of which at least `held` are held,
    /// the first `whole` of them all.
    pub fn first_dense_run(&self, since: Time, len: u64, held: u64, whole: u64) -> Option<u64> {
        let seqs: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.source_time >= since)
            .map(|(s, _)| *s)
            .collect();
        let held = usize::try_from(held.max(1)).unwrap_or(usize::MAX);
        let whole = usize::try_from(whole.max(1)).unwrap_or(usize::MAX);
        let mut end = 0;
        for (i, &start) in seqs.iter().enumerate() {
            end = end.max(i);
            while end < seqs.len() && seqs[end] < start.saturating_add(len) {
                end += 1;
            }
            // Sorted and distinct: the head is whole when its last seq
            // lies exactly `whole - 1` past the start.
            let head_whole = seqs
                .get(i + whole - 1)
                .is_some_and(|s| *s == start + whole as u64 - 1);
            if end - i >= held && head_whole {
                return Some(start);
            }
        }
        None
    }

    /// Forgets the oldest blocks while their source time is before `t`.
    pub fn forget_older_than(&mut self, t: Time) {
        while self
            .blocks
            .first_key_value()
            .is_some_and(|(_, b)| b.source_time < t)
        {
            self.blocks.pop_first();
        }
    }

    /// Held sequence numbers in `range`, ascending.
    pub fn seqs_in(&self, range: std::ops::Range<u64>) -> impl Iterator<Item = u64> + '_ {
        self.blocks.range(range).map(|(s, _)| *s)
    }
}
