//! The forwarding core's counters.
//!
//! [`ForwardStats`] counts where every datagram handed to a
//! [`super::BlockForwarder`] ended and what its copies cost. It is declared
//! through [`crate::counters::counters`], so each counter has a metric
//! name ([`ForwardStats::named`]) and the counters of several forwarders
//! (one per AF_XDP worker) add up ([`ForwardStats::add`]).

use crate::counters::counters;

counters! {
    /// What the forwarder counted. Each datagram handed to it ends in one of
    /// `not_block`, `malformed_block`, `signature_checks_refused`,
    /// `wrong_stream`, `wrong_club`, `stale`, `unverifiable`, `forged`,
    /// `duplicates`, `claimed_elsewhere`,
    /// `no_subscribers`, `no_forward_proof`, `template_errors`,
    /// `forwarded_blocks` or `unsent_blocks`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct ForwardStats {
        /// Well-formed clubcast messages other than BLOCK.
        not_block as "not_block",
        /// Payloads that do not parse as a clubcast message.
        malformed_block as "malformed_block",
        /// BLOCKs dropped unchecked because they would have cost a signature
        /// check and the budget for them was spent.
        signature_checks_refused as "signature_checks_refused",
        /// BLOCKs of another stream.
        wrong_stream as "wrong_stream",
        /// BLOCKs whose club is not their sequence number modulo the club
        /// count (relabelled on the way): never fanned out.
        wrong_club as "wrong_club",
        /// BLOCKs of a batch older than the verification window.
        stale as "stale",
        /// BLOCKs that cannot be tied to a signature yet: parked, and counted
        /// here while they wait or when they never verify (one that verifies
        /// later counts under its final outcome instead).
        unverifiable as "unverifiable",
        /// Parked BLOCKs that verified later (counted under their outcome too).
        verified_late as "verified_late",
        /// BLOCKs that failed authentication. Never forwarded.
        forged as "forged",
        /// Verified BLOCKs received before.
        duplicates as "duplicates",
        /// Verified BLOCKs fresh here that another worker fanned out.
        claimed_elsewhere as "claimed_elsewhere",
        /// Verified fresh BLOCKs whose club has no subscriber.
        no_subscribers as "no_subscribers",
        /// Verified fresh BLOCKs whose full proof was not in the cache.
        no_forward_proof as "no_forward_proof",
        /// Verified fresh BLOCKs whose outgoing datagram could not be built.
        template_errors as "template_errors",
        /// Verified fresh BLOCKs copied to at least one subscriber.
        forwarded_blocks as "blocks_forwarded",
        /// Copies made, over all blocks.
        copies as "copies",
        /// Verified fresh BLOCKs with subscribers of which no copy was made.
        unsent_blocks as "unsent_blocks",
        /// Copies not made for want of a buffer.
        no_free_buffer as "no_free_buffer",
        /// Copies left out because the subscriber said it holds the block.
        have_suppressed as "have_suppressed",
        /// Verified blocks reported to the control plane.
        uplinked as "uplinked",
        /// Verified blocks the uplink had no free slot for.
        uplink_dropped as "uplink_dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters 1, 2, 3, ... in field order.
    fn numbered() -> ForwardStats {
        let mut s = ForwardStats::default();
        let named = s.named();
        // Set each field through `add` of a one-hot copy: `named` gives
        // the order, `add` must carry every one.
        for (i, (name, _, _)) in named.iter().enumerate() {
            let mut one = ForwardStats::default();
            set(&mut one, name, i as u64 + 1);
            s.add(&one);
        }
        s
    }

    fn set(s: &mut ForwardStats, name: &str, v: u64) {
        let field = match name {
            "not_block" => &mut s.not_block,
            "malformed_block" => &mut s.malformed_block,
            "signature_checks_refused" => &mut s.signature_checks_refused,
            "wrong_stream" => &mut s.wrong_stream,
            "wrong_club" => &mut s.wrong_club,
            "stale" => &mut s.stale,
            "unverifiable" => &mut s.unverifiable,
            "verified_late" => &mut s.verified_late,
            "forged" => &mut s.forged,
            "duplicates" => &mut s.duplicates,
            "claimed_elsewhere" => &mut s.claimed_elsewhere,
            "no_subscribers" => &mut s.no_subscribers,
            "no_forward_proof" => &mut s.no_forward_proof,
            "template_errors" => &mut s.template_errors,
            "blocks_forwarded" => &mut s.forwarded_blocks,
            "copies" => &mut s.copies,
            "unsent_blocks" => &mut s.unsent_blocks,
            "no_free_buffer" => &mut s.no_free_buffer,
            "have_suppressed" => &mut s.have_suppressed,
            "uplinked" => &mut s.uplinked,
            "uplink_dropped" => &mut s.uplink_dropped,
            other => panic!("no counter named {other}"),
        };
        *field = v;
    }

    #[test]
    fn every_counter_is_named_once_and_added() {
        let s = numbered();
        let named = s.named();
        for (i, (name, help, value)) in named.iter().enumerate() {
            assert_eq!(*value, i as u64 + 1, "{name}");
            assert!(!help.is_empty(), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
        let mut names: Vec<_> = named.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), named.len());
        // Adding twice doubles every counter.
        let mut twice = s;
        twice.add(&s);
        for ((name, _, a), (_, _, b)) in s.named().iter().zip(twice.named().iter()) {
            assert_eq!(*b, 2 * a, "{name}");
        }
    }
}
