//! Batch authentication ([0041]-[0043], [0046], [0049]): known answers,
//! forgery rejection and the proof-omission rule between sender and receiver.

use clubcast::auth::signer::HopFields;
use clubcast::auth::tree::{batch_root, leaf_cv, max_depth, parent, BatchTree, Path, CHUNK_LEN};
use clubcast::auth::{
    AuthError, BatchSigner, BatchStatement, BatchVerifier, ProofLedger, ProofPlan, SignedBatch,
    SourceKey, StreamId,
};
use clubcast::wire::{Block, Message, MAX_DATAGRAM};
use proptest::prelude::*;

const FULL: ProofPlan = ProofPlan {
    signature: true,
    hashes: 16,
};

fn key(n: u8) -> SourceKey {
    SourceKey::from_seed(&[n; 32])
}

fn payloads(count: usize, seed: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let len = 100 + (seed as usize + i * 37) % 800;
            (0..len)
                .map(|j| (seed as usize + i * 7 + j) as u8)
                .collect()
        })
        .collect()
}

fn sign(signer: &BatchSigner, batch: u64, count: usize) -> SignedBatch {
    let p = payloads(count, batch);
    let refs: Vec<&[u8]> = p.iter().map(Vec::as_slice).collect();
    signer
        .sign(
            batch,
            batch * count as u64,
            1_700_000_000_000_000 + batch,
            &refs,
        )
        .expect("valid batch")
}

/// Encodes `block` and parses it back, as a receiver would see it.
fn over_wire(block: &Block<'_>, buf: &mut [u8; MAX_DATAGRAM]) -> usize {
    block.encode(buf).expect("block fits")
}

fn parse(buf: &[u8]) -> Option<Block<'_>> {
    match Message::parse(buf) {
        Ok(Message::Block(b)) => Some(b),
        _ => None,
    }
}

// ---- Known answers -------------------------------------------------------

/// Official BLAKE3 vectors whose input is whole chunks: the tree code must
/// give the same root, both from all nodes and by folding each leaf's path.
#[test]
fn tree_root_matches_official_blake3_vectors() {
    let text = include_str!("vectors/blake3_hash_vectors.txt");
    let mut checked = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (len, hash) = line.split_once(' ').expect("two columns");
        let len: usize = len.parse().expect("length");
        let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (leaves, rest) = input.as_chunks::<CHUNK_LEN>();
        assert!(rest.is_empty());
        let tree = BatchTree::build(leaves);
        assert_eq!(hex::encode(tree.root()), hash, "tree root, {len} bytes");
        assert_eq!(
            hex::encode(batch_root(leaves)),
            hash,
            "batch root, {len} bytes"
        );
        let count = leaves.len() as u16;
        for index in 0..count {
            let path = Path::new(count, index);
            let mut cur = if path.depth() == 0 {
                *blake3::hash(&leaves[0]).as_bytes()
            } else {
                leaf_cv(&leaves[usize::from(index)], index)
            };
            for (k, step) in path.steps().iter().enumerate() {
                let sib = tree.node(step.sibling);
                let root = k + 1 == path.depth();
                cur = if step.sibling_is_left {
                    parent(&sib, &cur, root)
                } else {
                    parent(&cur, &sib, root)
                };
            }
            assert_eq!(hex::encode(cur), hash, "leaf {index} path, {len} bytes");
        }
        checked += 1;
    }
    assert_eq!(checked, 11);
}

/// RFC 8032 section 7.1, tests 1-3: key derivation, signing, verification.
#[test]
fn ed25519_matches_rfc8032_vectors() {
    let vectors = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];
    for (sk, pk, msg, sig) in vectors {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(sk, &mut seed).expect("hex");
        let msg = hex::decode(msg).expect("hex");
        let key = SourceKey::from_seed(&seed);
        assert_eq!(key.stream_id().to_string(), pk);
        let produced = key.sign(&msg);
        assert_eq!(hex::encode(produced), sig);
        let stream: StreamId = pk.parse().expect("stream id");
        assert!(stream.verify(&msg, &produced));
        let mut bad = produced;
        bad[0] ^= 1;
        assert!(!stream.verify(&msg, &bad));
    }
}

// ---- Verification and forgery --------------------------------------------

#[test]
fn every_block_of_a_batch_verifies_with_one_signature_check() {
    let signer = BatchSigner::new(key(1));
    let mut v = BatchVerifier::new(key(1).stream_id(), 64);
    let mut ledger = ProofLedger::new();
    let mut buf = [0u8; MAX_DATAGRAM];
    for batch in 0..10 {
        let signed = sign(&signer, batch, 16);
        for i in 0..16 {
            let plan = ledger.plan(batch, 16, i);
            let len = over_wire(&signed.block(i, plan, HopFields::default()), &mut buf);
            let b = parse(&buf[..len]).expect("parses");
            assert_eq!(v.verify(&b).map(|r| r.fresh), Ok(true));
            assert_eq!(b.payload, signed.payload(i));
        }
    }
    assert_eq!(v.stats().signatures_checked, 10);
    assert_eq!(v.stats().passed, 160);
}

/// Signatures checked ahead, together, admit their batches without a
/// check of their own, but only for the statement checked: a block that
/// reuses a checked signature over other bytes is refused without one.
/// A joint check with a forged member keeps nothing.
#[test]
fn signatures_checked_ahead_admit_only_the_statement_they_sign() {
    let signer = BatchSigner::new(key(1));
    let mut v = BatchVerifier::new(key(1).stream_id(), 64);
    let mut bufs = [[0u8; MAX_DATAGRAM]; 3];
    let signed: Vec<SignedBatch> = (0..3).map(|b| sign(&signer, b, 16)).collect();
    let mut lens = [0; 3];
    for ((buf, len), s) in bufs.iter_mut().zip(&mut lens).zip(&signed) {
        *len = over_wire(&s.block(0, FULL, HopFields::default()), buf);
    }
    let blocks: Vec<Block<'_>> = bufs
        .iter()
        .zip(lens)
        .map(|(buf, len)| parse(&buf[..len]).expect("parses"))
        .collect();
    assert_eq!(v.check_signatures_ahead(&blocks), 3);
    assert_eq!(v.stats().signatures_checked, 3);
    assert!(blocks.iter().all(|b| !v.needs_signature(b)));
    // Block 1 of batch 1 with block 0's signature and a changed payload.
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = over_wire(&signed[1].block(1, FULL, HopFields::default()), &mut buf);
    let mut tampered = parse(&buf[..len]).expect("parses");
    let other = vec![0u8; tampered.payload.len()];
    tampered.payload = &other;
    assert_eq!(v.verify(&tampered), Err(AuthError::BadSignature));
    for b in &blocks {
        assert_eq!(v.verify(b).map(|r| r.fresh), Ok(true));
    }
    assert_eq!(v.stats().signatures_checked, 3, "no check of their own");

    // Batches 3 and 4, with a block of 4 under another key's signature.
    let mut v = BatchVerifier::new(key(1).stream_id(), 64);
    let forger = BatchSigner::new(key(2));
    let genuine = sign(&signer, 3, 16);
    let forged = sign(&forger, 4, 16);
    let honest_4 = sign(&signer, 4, 16);
    let (mut a, mut b) = ([0u8; MAX_DATAGRAM], [0u8; MAX_DATAGRAM]);
    let la = over_wire(&genuine.block(0, FULL, HopFields::default()), &mut a);
    let mut fake = honest_4.block(0, FULL, HopFields::default());
    let forged_block = forged.block(0, FULL, HopFields::default());
    fake.signature = forged_block.signature;
    let lb = over_wire(&fake, &mut b);
    let pair = [
        parse(&a[..la]).expect("parses"),
        parse(&b[..lb]).expect("parses"),
    ];
    assert_eq!(v.check_signatures_ahead(&pair), 0);
    assert!(pair.iter().all(|b| v.needs_signature(b)));
    assert!(v.verify(&pair[0]).is_ok());
    assert_eq!(v.verify(&pair[1]), Err(AuthError::BadSignature));
    assert_eq!(v.stats().signatures_checked, 4);
    assert_eq!(v.stats().signature_batches, 1);
}

#[test]
fn ledger_sends_signature_once_and_about_one_hash_per_block() {
    let mut ledger = ProofLedger::new();
    let plans: Vec<ProofPlan> = (0..16).map(|i| ledger.plan(7, 16, i)).collect();
    assert_eq!(
        plans[0],
        ProofPlan {
            signature: true,
            hashes: 4
        }
    );
    assert!(plans[1..].iter().all(|p| !p.signature));
    // Leaf 1's chaining value came as leaf 0's sibling: nothing to send.
    assert_eq!(plans[1].hashes, 0);
    // In order, a 16-leaf tree needs each right child once: 15 in all.
    assert_eq!(plans.iter().map(|p| p.hashes).sum::<usize>(), 15);
}

#[test]
fn duplicate_block_is_marked_not_fresh() {
    let signer = BatchSigner::new(key(1));
    let mut v = BatchVerifier::new(key(1).stream_id(), 8);
    let signed = sign(&signer, 0, 4);
    let b = signed.block(2, FULL, HopFields::default());
    assert!(v.verify(&b).expect("genuine").fresh);
    assert!(!v.verify(&b).expect("still genuine").fresh);
    assert_eq!(v.stats().duplicates, 1);
}

#[test]
fn block_signed_by_another_key_is_rejected() {
    let other = BatchSigner::new(key(2));
    let mut v = BatchVerifier::new(key(1).stream_id(), 8);
    let signed = sign(&other, 0, 16);
    let b = signed.block(0, FULL, HopFields::default());
    // Different stream tag: rejected before any hashing.
    assert_eq!(v.verify(&b), Err(AuthError::WrongStream));
    // Same tag forged onto the block: the signature fails.
    let mut forged = b;
    forged.stream = clubcast::wire::StreamTag::of_key(&key(1).stream_id().to_bytes());
    assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
}

#[test]
fn unknown_batch_without_signature_is_rejected() {
    let signer = BatchSigner::new(key(1));
    let mut v = BatchVerifier::new(key(1).stream_id(), 8);
    let signed = sign(&signer, 0, 16);
    let b = signed.block(
        3,
        ProofPlan {
            signature: false,
            hashes: 4,
        },
        HopFields::default(),
    );
    assert_eq!(v.verify(&b), Err(AuthError::MissingSignature));
}

#[test]
fn short_proof_for_unknown_nodes_is_rejected() {
    let signer = BatchSigner::new(key(1));
    let mut v = BatchVerifier::new(key(1).stream_id(), 8);
    let signed = sign(&signer, 0, 16);
    v.verify(&signed.block(0, FULL, HopFields::default()))
        .expect("genuine");
    // Leaf 8's path shares only the root with leaf 0's: one hash is short.
    let b = signed.block(
        8,
        ProofPlan {
            signature: false,
            hashes: 2,
        },
        HopFields::default(),
    );
    assert_eq!(v.verify(&b), Err(AuthError::MissingProof));
}

#[test]
fn window_drops_old_batches_and_forgeries_cannot_evict() {
    let signer = BatchSigner::new(key(1));
    let mut v = BatchVerifier::new(key(1).stream_id(), 4);
    let old = sign(&signer, 1, 4);
    v.verify(&old.block(0, FULL, HopFields::default()))
        .expect("genuine");
    // A forged batch 5 (same slot as 1) fails its signature and leaves
    // batch 1 in place.
    let other = sign(&BatchSigner::new(key(9)), 5, 4);
    let mut forged = other.block(0, FULL, HopFields::default());
    forged.stream = old.block(0, FULL, HopFields::default()).stream;
    assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
    assert!(v.verify(&old.block(1, FULL, HopFields::default())).is_ok());
    // Genuine batch 5 moves the window past batch 1.
    let new = sign(&signer, 5, 4);
    v.verify(&new.block(0, FULL, HopFields::default()))
        .expect("genuine");
    assert_eq!(
        v.verify(&old.block(2, FULL, HopFields::default())),
        Err(AuthError::BatchTooOld { batch: 1 })
    );
}

#[test]
fn signature_over_a_flipped_root_does_not_verify() {
    let k = key(1);
    let stream = k.stream_id();
    let signed = sign(&BatchSigner::new(key(1)), 3, 16);
    let statement = BatchStatement {
        stream_key: stream.to_bytes(),
        batch: 3,
        first_seq: 48,
        count: 16,
        timestamp_us: 1_700_000_000_000_003,
        root: signed.root(),
    };
    let sig = k.sign(&statement.to_bytes());
    assert!(stream.verify(&statement.to_bytes(), &sig));
    for bit in 0..256 {
        let mut flipped = statement;
        flipped.root[bit / 8] ^= 1 << (bit % 8);
        assert!(!stream.verify(&flipped.to_bytes(), &sig), "root bit {bit}");
    }
}

#[test]
fn complete_batch_verifies_in_one_hash_and_forged_member_is_singled_out() {
    let signer = BatchSigner::new(key(1));
    let signed = sign(&signer, 0, 16);
    let blocks: Vec<Block<'_>> = (0..16)
        .map(|i| {
            let plan = if i == 0 {
                FULL
            } else {
                ProofPlan {
                    signature: false,
                    hashes: 0,
                }
            };
            signed.block(i, plan, HopFields::default())
        })
        .collect();
    let mut v = BatchVerifier::new(key(1).stream_id(), 8);
    let mut results = vec![Err(AuthError::MissingProof); 16];
    v.verify_many(&blocks, &mut results);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(v.stats().batches_hashed, 1);
    assert_eq!(v.stats().signatures_checked, 1);

    // Same burst with block 5's payload forged, to a fresh verifier.
    let forged_payload = vec![0x55u8; blocks[5].payload.len()];
    let mut forged = blocks.clone();
    forged[5].payload = &forged_payload;
    let mut v = BatchVerifier::new(key(1).stream_id(), 8);
    let mut results = vec![Err(AuthError::MissingProof); 16];
    v.verify_many(&forged, &mut results);
    assert!(results[5].is_err());
    // Block 0 carries the signature and whole path, so it still verifies.
    assert!(results[0].is_ok());
}

/// A complete batch verified in one hash records its whole tree: every
/// block can then be forwarded with the same full path the source gives
/// it, whether the blocks named their sibling leaves in their proofs, named
/// none, or named wrong ones; a forged payload records nothing.
#[test]
fn a_complete_batch_records_its_whole_tree_however_its_proofs_were_trimmed() {
    let signer = BatchSigner::new(key(3));
    for count in [16usize, 13, 2] {
        let signed = sign(&signer, 4, count);
        let no_hashes = ProofPlan {
            signature: true,
            hashes: 0,
        };
        let full: Vec<Block<'_>> = (0..count as u16)
            .map(|i| signed.block(i, FULL, HopFields::default()))
            .collect();
        let bare: Vec<Block<'_>> = (0..count as u16)
            .map(|i| signed.block(i, no_hashes, HopFields::default()))
            .collect();
        let wrong_proof: Vec<[[u8; 32]; 1]> = full
            .iter()
            .map(|b| {
                let mut cv = b.proof[0];
                cv[7] ^= 0x40;
                [cv]
            })
            .collect();
        let mut misnamed = full.clone();
        for (b, wrong) in misnamed.iter_mut().zip(&wrong_proof).skip(1).step_by(3) {
            b.proof = wrong;
        }
        for (case, run) in [("full", &full), ("bare", &bare), ("misnamed", &misnamed)] {
            let mut v = BatchVerifier::new(key(3).stream_id(), 8);
            let mut results = vec![Err(AuthError::MissingProof); count];
            v.verify_complete(run, &mut results)
                .unwrap_or_else(|e| panic!("{count}/{case}: {e}"));
            assert!(results.iter().all(|r| r.is_ok_and(|v| v.fresh)), "{case}");
            assert_eq!(v.stats().signatures_checked, 1);
            for (i, genuine) in full.iter().enumerate() {
                let proof = v
                    .forwarding_proof(4, i as u16)
                    .unwrap_or_else(|| panic!("{count}/{case}: no path for leaf {i}"));
                assert_eq!(
                    &proof.siblings[..proof.depth],
                    genuine.proof,
                    "{count}/{case}/{i}"
                );
            }
        }
        let forged_payload = vec![0x33u8; full[count - 1].payload.len()];
        let mut forged = full.clone();
        forged[count - 1].payload = &forged_payload;
        let mut v = BatchVerifier::new(key(3).stream_id(), 8);
        let mut results = vec![Err(AuthError::MissingProof); count];
        assert!(v.verify_complete(&forged, &mut results).is_err());
        assert!(results.iter().all(|r| r.is_err()), "results untouched");
        assert!(v.forwarding_proof(4, 0).is_none(), "nothing recorded");
        assert_eq!(v.stats().passed, 0);
    }
}

fn flip(datagram: &[u8], bit: usize) -> Vec<u8> {
    let mut out = datagram.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// Byte ranges of a BLOCK datagram whose bits the signature does not cover
/// (block tag; club, send time, delay threshold, bit rate): set per hop
/// ([0044], [0051], `docs/PROTOCOL.md` 5.16).
fn hop_field(byte: usize) -> bool {
    (4..12).contains(&byte) || (28..46).contains(&byte)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any single flipped bit in a block carrying the signature and its
    /// whole path is rejected, unless it lies in a per-hop field, in which
    /// case the payload is untouched.
    #[test]
    fn any_flipped_bit_is_rejected(count in 1usize..=20, pick in any::<u16>(), batch in 0u64..1000) {
        let signer = BatchSigner::new(key(1));
        let signed = sign(&signer, batch, count);
        let index = pick % count as u16;
        let mut buf = [0u8; MAX_DATAGRAM];
        let len = over_wire(&signed.block(index, FULL, HopFields::default()), &mut buf);
        let stream = key(1).stream_id();
        for bit in 0..len * 8 {
            let forged = flip(&buf[..len], bit);
            let Some(b) = parse(&forged) else { continue };
            let mut v = BatchVerifier::new(stream, 8);
            if v.verify(&b).is_ok() {
                prop_assert!(hop_field(bit / 8), "bit {} of {} accepted", bit, len * 8);
                prop_assert_eq!(b.payload, signed.payload(index));
            }
        }
    }

    /// With the batch already verified, a flipped bit in a later block's
    /// payload, proof hash or repeated signature is still rejected.
    #[test]
    fn flipped_bit_after_batch_is_known_is_rejected(pick in 1u16..16, bit in any::<prop::sample::Index>()) {
        let signer = BatchSigner::new(key(1));
        let signed = sign(&signer, 0, 16);
        let mut v = BatchVerifier::new(key(1).stream_id(), 8);
        v.verify(&signed.block(0, FULL, HopFields::default())).expect("genuine");
        let mut buf = [0u8; MAX_DATAGRAM];
        let len = over_wire(&signed.block(pick, FULL, HopFields::default()), &mut buf);
        // Bits from the signature section to the end (signature, proof, payload).
        let start = clubcast::wire::BLOCK_FIXED_LEN * 8;
        let bit = start + bit.index(len * 8 - start);
        let forged = flip(&buf[..len], bit);
        if let Some(b) = parse(&forged) {
            prop_assert!(v.verify(&b).is_err());
        }
    }

    /// A genuine block and proof for leaf i, relabelled as leaf j, fails.
    #[test]
    fn proof_for_one_position_does_not_verify_another(count in 2usize..=64, i in any::<u16>(), j in any::<u16>()) {
        let count16 = count as u16;
        let (i, j) = (i % count16, j % count16);
        prop_assume!(i != j);
        let signer = BatchSigner::new(key(1));
        let signed = sign(&signer, 0, count);
        let mut b = signed.block(i, FULL, HopFields::default());
        b.index = j;
        b.seq = signed.seq(j);
        let depth_j = Path::new(count16, j).depth();
        b.proof = &b.proof[..b.proof.len().min(depth_j)];
        let mut v = BatchVerifier::new(key(1).stream_id(), 8);
        prop_assert!(v.verify(&b).is_err());
    }

    /// Sender ledger and receiver cache stay in step in any delivery order,
    /// across interleaved batches, with one signature check per batch.
    #[test]
    fn ledger_and_verifier_agree_in_any_order(
        count in 1usize..=64,
        order in Just((0u16..128).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let signer = BatchSigner::new(key(1));
        let a = sign(&signer, 0, count);
        let b = sign(&signer, 1, count);
        let mut ledger = ProofLedger::new();
        let mut v = BatchVerifier::new(key(1).stream_id(), 8);
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut hashes = 0;
        for k in order.into_iter().filter(|k| usize::from(k % 64) < count) {
            let (signed, i) = if k < 64 { (&a, k) } else { (&b, k - 64) };
            let plan = ledger.plan(signed.batch(), count as u16, i);
            hashes += plan.hashes;
            let len = over_wire(&signed.block(i, plan, HopFields::default()), &mut buf);
            let block = parse(&buf[..len]).expect("parses");
            prop_assert_eq!(v.verify(&block).map(|r| r.fresh), Ok(true));
        }
        prop_assert_eq!(v.stats().signatures_checked, 2);
        // Each node but the root is sent at most once per batch.
        prop_assert!(hashes <= 2 * (2 * count - 2));
    }
}

#[test]
fn payload_up_to_the_limit_fits_any_batch_size_with_full_proof() {
    let signer = BatchSigner::new(key(1));
    for count in [1usize, 2, 3, 12, 16, 33, 64] {
        let depth = max_depth(count as u16);
        assert!((0..count as u16).all(|i| Path::new(count as u16, i).depth() <= depth));
        let big = vec![0xABu8; Block::max_payload(depth)];
        let refs: Vec<&[u8]> = (0..count).map(|_| big.as_slice()).collect();
        let signed = signer.sign(0, 0, 0, &refs).expect("signs");
        let mut buf = [0u8; MAX_DATAGRAM];
        for i in 0..count as u16 {
            let len = signed
                .block(i, FULL, HopFields::default())
                .encode(&mut buf)
                .expect("fits the budget");
            assert!(len <= MAX_DATAGRAM);
        }
    }
}

#[test]
fn signer_refuses_payload_that_cannot_travel_with_a_full_proof() {
    let signer = BatchSigner::new(key(1));
    let limit = Block::max_payload(max_depth(16));
    let ok = vec![1u8; limit];
    let long = vec![1u8; limit + 1];
    let mut refs: Vec<&[u8]> = vec![&ok; 16];
    assert!(signer.sign(0, 0, 0, &refs).is_ok());
    refs[9] = &long;
    assert!(matches!(
        signer.sign(0, 0, 0, &refs),
        Err(clubcast::auth::signer::SignError::PayloadTooLong { index: 9, .. })
    ));
    assert!(signer.sign(0, 0, 0, &[]).is_err());
    assert!(signer.sign(0, 0, 0, &vec![ok.as_slice(); 65]).is_err());
}

/// A batch shape no verified block has (found by fuzzing: a count of
/// 40,000 once overflowed the ledger's node bits) gets the signature and no
/// hashes, records nothing, and panics nowhere.
#[test]
fn the_ledger_refuses_impossible_batch_shapes_without_a_panic() {
    let mut ledger = ProofLedger::new();
    for (count, index) in [
        (0u16, 0u16),
        (40_000, 39_999),
        (65, 1),
        (16, 16),
        (u16::MAX, 0),
    ] {
        let plan = ledger.plan(9, count, index);
        assert_eq!(
            plan,
            ProofPlan {
                signature: true,
                hashes: 0
            },
            "count {count} index {index}"
        );
    }
    // A real shape afterwards is planned from scratch: nothing was recorded.
    let plan = ledger.plan(9, 16, 3);
    assert!(plan.signature && plan.hashes == 4, "{plan:?}");
}
