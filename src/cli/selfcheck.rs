//! `clubcast selfcheck`: prove a source key and this build work end to end.
//!
//! Signs a synthetic feed in batches, encodes every block as a sender would
//! for one receiver (signature and proof hashes only where the receiver
//! lacks them), parses and verifies each datagram as that receiver, then
//! tampers with blocks (payload, proof hash, signature) and checks a
//! verifier for another stream: every forgery must be rejected. Prints a
//! summary and fails if anything did not hold.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::auth::signer::HopFields;
use crate::auth::tree::max_depth;
use crate::auth::verifier::DEFAULT_WINDOW;
use crate::auth::{
    BatchSigner, BatchVerifier, ProofLedger, SourceKey, StreamId, DEFAULT_BATCH_BLOCKS,
    MAX_BATCH_BLOCKS,
};
use crate::wire::{Block, Message, MAX_DATAGRAM};

/// Arguments of `clubcast selfcheck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source key file (from `clubcast keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Blocks in the synthetic feed.
    #[arg(long, default_value_t = 4096)]
    blocks: u32,
    /// Blocks per signed batch (1 to 64).
    #[arg(long, default_value_t = DEFAULT_BATCH_BLOCKS as u16,
          value_parser = clap::value_parser!(u16).range(1..=MAX_BATCH_BLOCKS as i64))]
    batch: u16,
}

/// Flips one bit of `datagram` at `byte` and reports whether the receiver
/// (a fresh verifier) still accepts it.
fn accepted_after_flip(datagram: &[u8], byte: usize, stream: StreamId) -> bool {
    let mut forged = datagram.to_vec();
    forged[byte] ^= 0x10;
    let mut verifier = BatchVerifier::new(stream, DEFAULT_WINDOW);
    match Message::parse(&forged) {
        Ok(Message::Block(b)) => verifier.verify(&b).is_ok(),
        _ => false,
    }
}

/// Runs the self-check.
pub fn run(args: &Args) -> Result<ExitCode, String> {
    let key = SourceKey::load(&args.key).map_err(|e| e.to_string())?;
    let stream = key.stream_id();
    let signer = BatchSigner::new(key);
    let payload_len = Block::max_payload(max_depth(args.batch));
    let mut verifier = BatchVerifier::new(stream, DEFAULT_WINDOW);
    let mut ledger = ProofLedger::new();
    let mut datagram = [0u8; MAX_DATAGRAM];
    let (mut auth_bytes, mut payload_bytes, mut sent) = (0usize, 0usize, 0u32);
    let mut first_batch: Vec<Vec<u8>> = Vec::new();
    let started = Instant::now();
    let mut batch = 0u64;
    while sent < args.blocks {
        let count = u32::from(args.batch).min(args.blocks - sent) as u16;
        let payloads: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let seq = u64::from(sent) + u64::from(i);
                (0..payload_len)
                    .map(|j| (seq as usize * 31 + j) as u8)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let signed = signer
            .sign(batch, u64::from(sent), batch * 1000, &refs)
            .map_err(|e| e.to_string())?;
        for index in 0..count {
            let plan = ledger.plan(batch, count, index);
            let block = signed.block(index, plan, HopFields::default());
            let len = block.encode(&mut datagram).map_err(|e| e.to_string())?;
            if batch == 0 {
                first_batch.push(datagram[..len].to_vec());
            }
            auth_bytes += len - block.payload.len();
            payload_bytes += block.payload.len();
            match Message::parse(&datagram[..len]) {
                Ok(Message::Block(parsed)) => {
                    verifier
                        .verify(&parsed)
                        .map_err(|e| format!("genuine block {} rejected: {e}", parsed.seq))?;
                }
                other => return Err(format!("block did not parse back: {other:?}")),
            }
        }
        sent += u32::from(count);
        batch += 1;
    }
    let elapsed = started.elapsed();
    let stats = verifier.stats();

    // Tampering: flip one bit in the payload, the first proof hash and the
    // signature of every block of the first batch (each sent with the
    // signature and its whole path); then a verifier for another key.
    let (mut forged, mut caught) = (0u32, 0u32);
    let other = SourceKey::generate()
        .map_err(|e| e.to_string())?
        .stream_id();
    for d in &first_batch {
        let payload_at = d.len() - 1;
        let sig_at = crate::wire::BLOCK_FIXED_LEN + 20;
        let proof_at = crate::wire::BLOCK_FIXED_LEN + 72;
        let mut targets = vec![payload_at, sig_at];
        if d.len() > proof_at + payload_len {
            targets.push(proof_at);
        }
        for at in targets {
            forged += 1;
            caught += u32::from(!accepted_after_flip(d, at, stream));
        }
        forged += 1;
        let mut wrong = BatchVerifier::new(other, DEFAULT_WINDOW);
        if let Ok(Message::Block(b)) = Message::parse(d) {
            caught += u32::from(wrong.verify(&b).is_err());
        }
    }

    let per_block = stats.signatures_checked as f64 / f64::from(args.blocks.max(1));
    println!("stream id   : {stream}");
    println!(
        "feed        : {} blocks in {batch} batches of up to {}, {payload_len} B payload each",
        args.blocks, args.batch
    );
    println!(
        "verified    : {} passed, {} rejected, {} signature checks ({per_block:.4} per block)",
        stats.passed, stats.rejected, stats.signatures_checked
    );
    println!(
        "overhead    : {:.1} B of header, signature and proof per block ({:.1}% of payload)",
        auth_bytes as f64 / f64::from(args.blocks.max(1)),
        100.0 * auth_bytes as f64 / payload_bytes.max(1) as f64
    );
    println!(
        "throughput  : {:.1} MB/s signed, encoded, parsed and verified on one core",
        payload_bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
    );
    println!("tampering   : {caught}/{forged} forged blocks rejected");
    let ok = stats.passed == u64::from(args.blocks) && stats.rejected == 0 && caught == forged;
    println!("self-check  : {}", if ok { "PASS" } else { "FAIL" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
