//! Criterion benches for authentication: per-block and complete-batch
//! verification (batch roots cached), raw BLAKE3 for reference, one
//! ed25519 signature check, and 2, 4 and 8 signatures checked one by one
//! against the same checked at once (`auth::sigbatch`).

use std::hint::black_box;

use clubcast::auth::sigbatch::{verify_all, SignedStatement};
use clubcast::auth::signer::HopFields;
use clubcast::auth::statement::BatchStatement;
use clubcast::auth::tree::{max_depth, CHUNK_LEN};
use clubcast::auth::{
    AuthError, BatchSigner, BatchVerifier, ProofPlan, SourceKey, DEFAULT_BATCH_BLOCKS,
};
use clubcast::wire::Block;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const FULL: ProofPlan = ProofPlan {
    signature: true,
    hashes: usize::MAX,
};

fn verification(c: &mut Criterion) {
    let n = DEFAULT_BATCH_BLOCKS;
    let key = SourceKey::from_seed(&[7; 32]);
    let stream = key.stream_id();
    let signer = BatchSigner::new(key);
    let payload = vec![0xA5u8; Block::max_payload(max_depth(n as u16))];
    let refs: Vec<&[u8]> = vec![payload.as_slice(); n];
    let signed = signer.sign(0, 0, 0, &refs).expect("valid batch");
    let blocks: Vec<Block<'_>> = (0..n as u16)
        .map(|i| signed.block(i, FULL, HopFields::default()))
        .collect();
    let mut verifier = BatchVerifier::new(stream, 8);
    verifier.verify(&blocks[0]).expect("genuine");

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes((n * CHUNK_LEN) as u64));
    g.bench_function("per_block_16", |b| {
        b.iter(|| {
            for block in &blocks {
                black_box(verifier.verify(block).is_ok());
            }
        })
    });
    let mut results = vec![Err(AuthError::MissingProof); n];
    g.bench_function("complete_batch_16", |b| {
        b.iter(|| {
            verifier.verify_many(&blocks, &mut results);
            black_box(&results);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("blake3");
    for len in [1024usize, 16 * 1024] {
        let input = vec![0x5Au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("raw_{len}"), |b| {
            b.iter(|| black_box(blake3::hash(black_box(&input))))
        });
    }
    g.finish();

    let statement = BatchStatement {
        stream_key: stream.to_bytes(),
        batch: 0,
        first_seq: 0,
        count: n as u16,
        timestamp_us: 0,
        root: signed.root(),
    }
    .to_bytes();
    let sig = SourceKey::from_seed(&[7; 32]).sign(&statement);
    c.bench_function("ed25519_verify_batch_statement", |b| {
        b.iter(|| black_box(stream.verify(black_box(&statement), &sig)))
    });

    let mut g = c.benchmark_group("signatures");
    for count in [2usize, 4, 8] {
        let items: Vec<SignedStatement> = (0..count)
            .map(|i| {
                let mut statement = statement;
                statement[17 + 32 + 7] = i as u8; // another batch number
                let signature = SourceKey::from_seed(&[7; 32]).sign(&statement);
                SignedStatement {
                    statement,
                    signature,
                }
            })
            .collect();
        g.bench_function(format!("one_by_one_{count}"), |b| {
            b.iter(|| {
                for item in &items {
                    black_box(stream.verify(&item.statement, &item.signature));
                }
            })
        });
        g.bench_function(format!("at_once_{count}"), |b| {
            b.iter(|| black_box(verify_all(&stream, black_box(&items))))
        });
    }
    g.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
