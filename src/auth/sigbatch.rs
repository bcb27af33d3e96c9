//! Several batch signatures by one stream key checked at once.
//!
//! A relay that receives a burst holding several new batches checks their
//! signatures together: for weights `z_i` (`z_0 = 1`, the others 128-bit
//! values derived from every statement and signature of the call), the
//! signatures `(R_i, s_i)` over statements `M_i` with `k_i = H(R_i, A,
//! M_i)` all hold when `sum z_i R_i == (sum z_i s_i) B - (sum z_i k_i) A`.
//! The key `A` is the same for every statement, so its term is one
//! multiplication instead of one per signature; each `R_i` costs a
//! 128-bit multiplication, about half of a single check. A set of
//! signatures `verify_strict` accepts passes; a set holding one it refuses
//! passes only by a chance of about 2^-128. Each `s_i` must be canonical and each `R_i` a point not of small
//! order, as `verify_strict` demands (and the key not of small order). The one difference: a signature made
//! by the key's holder with a small-order component added to `R_i`, which
//! fails alone, can pass here (the weights may cancel it). Only the source
//! can make one, and the source can already send its receivers anything.
//! Nothing here allocates.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

use super::keys::StreamId;
use super::statement::STATEMENT_LEN;

/// Most signatures one call checks.
pub const MAX_SIGNATURES: usize = 8;

/// Domain of the weights' derivation.
const WEIGHTS_CONTEXT: &str = "clubcast 2026-12 batch signature weights";

/// One statement and its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedStatement {
    /// The signed bytes (`BatchStatement::to_bytes`).
    pub statement: [u8; STATEMENT_LEN],
    /// The signature over them.
    pub signature: [u8; 64],
}

/// True when every signature of `items` (at most [`MAX_SIGNATURES`], and at
/// least one) is `key`'s over its statement; see the module comment.
pub fn verify_all(key: &StreamId, items: &[SignedStatement]) -> bool {
    let point = key.point();
    if items.is_empty() || items.len() > MAX_SIGNATURES || point.is_small_order() {
        return false;
    }
    let key_bytes = key.to_bytes();
    let mut weights = blake3::Hasher::new_derive_key(WEIGHTS_CONTEXT);
    for item in items {
        weights.update(&item.statement);
        weights.update(&item.signature);
    }
    let mut weights = weights.finalize_xof();
    let mut s_sum = Scalar::ZERO;
    let mut k_sum = Scalar::ZERO;
    let mut r_sum = EdwardsPoint::default();
    for (i, item) in items.iter().enumerate() {
        let Some((r, s)) = parts(&item.signature) else {
            return false;
        };
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(&item.signature[..32])
                .chain_update(key_bytes)
                .chain_update(item.statement),
        );
        let z = if i == 0 {
            Scalar::ONE
        } else {
            let mut bytes = [0u8; 16];
            weights.fill(&mut bytes);
            Scalar::from(u128::from_le_bytes(bytes))
        };
        s_sum += z * s;
        k_sum += z * k;
        r_sum += if i == 0 {
            r
        } else {
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&z, &r, &Scalar::ZERO)
        };
    }
    let rhs = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-k_sum, &point, &s_sum);
    r_sum == rhs
}

/// A signature's `R` (a point not of small order) and canonical `s`.
fn parts(signature: &[u8; 64]) -> Option<(EdwardsPoint, Scalar)> {
    let mut r_bytes = [0u8; 32];
    let mut s_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    s_bytes.copy_from_slice(&signature[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    (!r.is_small_order()).then_some((r, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SourceKey;
    use proptest::prelude::*;

    fn signed(key: &SourceKey, n: usize) -> Vec<SignedStatement> {
        (0..n)
            .map(|i| {
                let statement = [i as u8 ^ 0x5a; STATEMENT_LEN];
                SignedStatement {
                    statement,
                    signature: key.sign(&statement),
                }
            })
            .collect()
    }

    #[test]
    fn genuine_signatures_pass_together_and_alone() {
        let key = SourceKey::from_seed(&[3; 32]);
        for n in 1..=MAX_SIGNATURES {
            let items = signed(&key, n);
            assert!(verify_all(&key.stream_id(), &items), "n = {n}");
            for item in &items {
                assert!(key.stream_id().verify(&item.statement, &item.signature));
            }
        }
    }

    #[test]
    fn empty_and_oversized_calls_fail() {
        let key = SourceKey::from_seed(&[3; 32]);
        assert!(!verify_all(&key.stream_id(), &[]));
        let items = signed(&key, MAX_SIGNATURES + 1);
        assert!(!verify_all(&key.stream_id(), &items));
    }

    #[test]
    fn another_keys_signature_fails() {
        let key = SourceKey::from_seed(&[3; 32]);
        let other = SourceKey::from_seed(&[4; 32]);
        let mut items = signed(&key, 4);
        items[2].signature = other.sign(&items[2].statement);
        assert!(!verify_all(&key.stream_id(), &items));
    }

    #[test]
    fn a_non_canonical_s_fails_as_alone() {
        let key = SourceKey::from_seed(&[3; 32]);
        let mut items = signed(&key, 3);
        // s + L: the same residue, not canonical.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let sig = &mut items[1].signature;
        let mut carry = 0u16;
        for (b, l) in sig[32..].iter_mut().zip(L) {
            let v = u16::from(*b) + u16::from(l) + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        assert!(!key
            .stream_id()
            .verify(&items[1].statement, &items[1].signature));
        assert!(!verify_all(&key.stream_id(), &items));
    }

    #[test]
    fn a_small_order_r_fails_as_alone() {
        let key = SourceKey::from_seed(&[3; 32]);
        let mut items = signed(&key, 2);
        // The identity point, of order 1.
        items[0].signature[..32].copy_from_slice(&EdwardsPoint::default().compress().0);
        assert!(!verify_all(&key.stream_id(), &items));
    }

    proptest! {
        #[test]
        fn any_changed_byte_fails(
            n in 1usize..=MAX_SIGNATURES,
            which in any::<prop::sample::Index>(),
            at in 0usize..STATEMENT_LEN + 64,
            flip in 1u8..=255,
        ) {
            let key = SourceKey::from_seed(&[9; 32]);
            let mut items = signed(&key, n);
            let item = &mut items[which.index(n)];
            if at < STATEMENT_LEN {
                item.statement[at] ^= flip;
            } else {
                item.signature[at - STATEMENT_LEN] ^= flip;
            }
            prop_assert!(!verify_all(&key.stream_id(), &items));
        }
    }
}
