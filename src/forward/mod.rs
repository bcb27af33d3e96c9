//! The forwarding core: what every path that receives a BLOCK decides
//! about it, written once.
//!
//! The peer's push path, the relay's kernel-UDP path and the AF_XDP worker
//! all receive BLOCKs and must agree on what a block is before they play,
//! store or copy it: of this stream, in the club its sequence number puts
//! it in (the club field is per hop and not authenticated, so a relabelled
//! block must never be fanned out to the wrong club), and verified against
//! a signed batch root. [`judge`] makes that decision and names every
//! outcome in a [`Verdict`]; the paths only count verdicts and move bytes.
//! Sans-IO: no socket, clock or thread here.

mod verdict;

pub use verdict::{judge, Verdict};
