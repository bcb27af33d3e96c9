//! Any datagram that parses as a BLOCK, fed to a batch verifier and a
//! proof ledger: neither panics, a block of another stream never passes,
//! and what the ledger plans never asks for more than 16 hashes (the
//! depth of the deepest tree a 16-bit block count makes). Then all of them
//! at once to `verify_many`, which hashes runs that look like a whole
//! batch as one input: no panic, and no block of another stream passes.
#![no_main]

use clubcast::auth::{AuthError, BatchVerifier, ProofLedger, SourceKey};
use clubcast::wire::{Message, StreamTag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SourceKey::from_seed(&[7; 32]);
    let tag = StreamTag::of_key(&key.stream_id().to_bytes());
    let mut verifier = BatchVerifier::new(key.stream_id(), 8);
    let mut ledger = ProofLedger::new();
    // One datagram after another, each prefixed by its length byte.
    let mut rest = data;
    let mut blocks = Vec::new();
    while let [len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        if let Ok(Message::Block(block)) = Message::parse(datagram) {
            let _ = verifier.needs_signature(&block);
            let verdict = verifier.verify(&block);
            if block.stream != tag {
                assert!(verdict.is_err(), "a block of another stream passed");
            }
            let plan = ledger.plan(block.batch, block.count, block.index);
            assert!(plan.hashes <= 16, "{plan:?}");
            if datagram.len() % 7 == 0 {
                ledger.forget(block.batch);
            }
            blocks.push(block);
        }
    }
    let mut burst = BatchVerifier::new(key.stream_id(), 8);
    let mut results = vec![Err(AuthError::NotCompleteBatch); blocks.len()];
    burst.verify_many(&blocks, &mut results);
    for (block, result) in blocks.iter().zip(&results) {
        if block.stream != tag {
            assert!(result.is_err(), "a block of another stream passed in a burst");
        }
    }
});
