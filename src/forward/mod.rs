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
//! [`BlockForwarder`] is the relay's whole forwarding decision (judge,
//! claim, report, copy to each subscriber that lacks the block) over a
//! [`CopySink`] that moves the bytes: AF_XDP frames, `sendmmsg` on a
//! kernel socket, or a queue of datagrams in memory (`crate::io`).
//! A block that cannot be checked yet waits in [`ParkedBlocks`] on every
//! path. [`HaveBoard`] carries what a receiver said it holds ([0046]) from the
//! control plane to whoever copies. Sans-IO: no socket, clock or thread
//! here.

mod fanout;
mod have;
mod parking;
mod stats;
mod verdict;

pub use fanout::{
    BlockForwarder, CopyError, CopySink, SIGNATURE_CHECKS_BURST, SIGNATURE_CHECKS_PER_S,
};
pub use have::{HaveBoard, HAVE_WINDOW};
pub use parking::{ParkedBlocks, ParkingStats, PARKED_MAX, PARKED_US};
pub use stats::ForwardStats;
pub use verdict::{judge, misplaced, verdict_of, Verdict};
