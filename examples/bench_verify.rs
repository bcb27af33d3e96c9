//! End-to-end figures for block verification, printed as one JSON line.
//!
//! Run through `scripts/bench-verify.sh`. All figures come from the same run,
//! measured in interleaved rounds (best round kept), so they can be compared
//! as ratios on a noisy machine:
//! - `per_block_gbps`: blocks verified one at a time, each with its whole
//!   proof path, batch roots already verified (chunk bytes per second);
//! - `batch_gbps`: the same blocks verified a complete batch at a time
//!   (gathered and hashed as one input), roots already verified;
//! - `raw_blake3_1k_gbps` / `raw_blake3_16k_gbps`: plain BLAKE3 of 1 KiB and
//!   16 KiB inputs;
//! - `sig_verify_per_block`: signature checks per block when a fresh
//!   receiver verifies a stream sent with the per-receiver proof ledger.

use std::hint::black_box;
use std::time::{Duration, Instant};

use clubcast::auth::signer::HopFields;
use clubcast::auth::tree::{max_depth, CHUNK_LEN};
use clubcast::auth::{
    AuthError, BatchSigner, BatchVerifier, ProofLedger, ProofPlan, SignedBatch, SourceKey,
    DEFAULT_BATCH_BLOCKS,
};
use clubcast::wire::Block;

const BATCHES: usize = 64;
const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(150);

/// Runs `f` repeatedly for about `ROUND_TIME`; returns bytes per second,
/// where one call of `f` covers `bytes` bytes.
fn rate(bytes: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < ROUND_TIME {
        f();
        calls += 1;
    }
    calls as f64 * bytes as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let batch_blocks = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_BATCH_BLOCKS);
    let key = SourceKey::from_seed(&[7; 32]);
    let stream = key.stream_id();
    let signer = BatchSigner::new(key);
    let payload_len = Block::max_payload(max_depth(batch_blocks as u16));
    let batches: Vec<SignedBatch> = (0..BATCHES as u64)
        .map(|b| {
            let payloads: Vec<Vec<u8>> = (0..batch_blocks)
                .map(|i| vec![(b as usize * 13 + i) as u8; payload_len])
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            signer
                .sign(b, b * batch_blocks as u64, b, &refs)
                .expect("valid batch")
        })
        .collect();
    let full = ProofPlan {
        signature: true,
        hashes: usize::MAX,
    };
    let blocks: Vec<Vec<Block<'_>>> = batches
        .iter()
        .map(|s| {
            (0..s.count())
                .map(|i| s.block(i, full, HopFields::default()))
                .collect()
        })
        .collect();

    // Signature checks per block for a fresh receiver fed by a ledger.
    let mut fresh = BatchVerifier::new(stream, BATCHES);
    let mut ledger = ProofLedger::new();
    let mut streamed = 0u64;
    for s in &batches {
        for i in 0..s.count() {
            let plan = ledger.plan(s.batch(), s.count(), i);
            fresh
                .verify(&s.block(i, plan, HopFields::default()))
                .expect("genuine block");
            streamed += 1;
        }
    }
    let sig_per_block = fresh.stats().signatures_checked as f64 / streamed as f64;

    // A receiver with every batch root already verified.
    let mut warm = BatchVerifier::new(stream, BATCHES);
    for b in &blocks {
        warm.verify(&b[0]).expect("genuine block");
    }
    let total_bytes = BATCHES * batch_blocks * CHUNK_LEN;
    let mut results = vec![Err(AuthError::MissingProof); batch_blocks];
    let one_k = vec![0x5Au8; 1024];
    let sixteen_k = vec![0x5Au8; 16 * 1024];

    let mut best = [0f64; 4];
    for _ in 0..ROUNDS {
        let figures = [
            rate(total_bytes, || {
                for b in &blocks {
                    for block in b {
                        black_box(warm.verify(block).is_ok());
                    }
                }
            }),
            rate(total_bytes, || {
                for b in &blocks {
                    warm.verify_many(b, &mut results);
                    black_box(&results);
                }
            }),
            rate(one_k.len(), || {
                black_box(blake3::hash(black_box(&one_k)));
            }),
            rate(sixteen_k.len(), || {
                black_box(blake3::hash(black_box(&sixteen_k)));
            }),
        ];
        for (b, f) in best.iter_mut().zip(figures) {
            *b = b.max(f);
        }
    }
    let stats = warm.stats();
    assert_eq!(stats.rejected, 0, "genuine blocks were rejected");
    assert!(stats.batches_hashed > 0, "complete-batch path never taken");
    let gbps = |bytes_per_s: f64| (bytes_per_s / 1e9 * 1000.0).round() / 1000.0;
    println!(
        "batch_blocks={batch_blocks} payload_bytes={payload_len} batches={BATCHES} rounds={ROUNDS} \
         batch/per_block={:.2}x batch/raw_16k={:.2}",
        best[1] / best[0],
        best[1] / best[3]
    );
    println!(
        "{{\"block_bytes\":{CHUNK_LEN},\"per_block_gbps\":{},\"batch_gbps\":{},\"raw_blake3_1k_gbps\":{},\"raw_blake3_16k_gbps\":{},\"sig_verify_per_block\":{:.4}}}",
        gbps(best[0]),
        gbps(best[1]),
        gbps(best[2]),
        gbps(best[3]),
        sig_per_block
    );
}
