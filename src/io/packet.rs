//! The packet-IO seam: receive a batch, send a batch, reclaim.
//!
//! [`PacketIo`] is all a backend offers the forwarding core: datagrams in,
//! handed over in bursts gathered on the stack ([`Burst`], so the core can
//! verify a whole batch that arrived together at once), a [`CopySink`] for
//! the copies out, and buffers taken back once the network is done with
//! them. Three backends implement it: AF_XDP rings and UMEM frames
//! (`crate::relay::xdp_io`), a kernel UDP socket with
//! `recvmmsg`/`sendmmsg` ([`super::udp_batch`]), and queues in memory
//! ([`super::mem`], for tests and the simulator). [`forward_batch`] is the
//! one loop body that runs the forwarding core on any of them, so the AF_XDP
//! worker, the relay bench and the tests without root share it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::forward::{BlockForwarder, CopySink};

/// One received datagram: its sender and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The sender's address.
    pub from: SocketAddrV4,
    /// The UDP payload.
    pub payload: &'a [u8],
}

impl Datagram<'_> {
    /// A placeholder for unused slots of a [`Burst`].
    const NONE: Datagram<'static> = Datagram {
        from: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        payload: &[],
    };
}

/// Most datagrams handed over at once: a receive batch of the AF_XDP
/// worker's default size.
pub const BURST_MAX: usize = 256;

/// What a backend hands received datagrams to, a burst at a time in
/// arrival order, along with its send side.
pub type OnBurst<'a, Tx> = dyn FnMut(&[Datagram<'_>], &mut Tx) + 'a;

/// Received datagrams gathered on the stack (nothing allocated) until
/// they are handed over as one burst.
pub struct Burst<'a> {
    grams: [Datagram<'a>; BURST_MAX],
    len: usize,
}

impl<'a> Burst<'a> {
    /// An empty burst.
    pub fn new() -> Self {
        Burst {
            grams: [Datagram::NONE; BURST_MAX],
            len: 0,
        }
    }

    /// Adds `gram`, first handing the burst to `each` (with `tx`) if it is
    /// full.
    pub fn push<Tx>(&mut self, gram: Datagram<'a>, tx: &mut Tx, each: &mut OnBurst<'_, Tx>) {
        if self.len == BURST_MAX {
            self.hand_over(tx, each);
        }
        self.grams[self.len] = gram;
        self.len += 1;
    }

    /// Hands what was gathered to `each` (with `tx`), if anything.
    pub fn hand_over<Tx>(&mut self, tx: &mut Tx, each: &mut OnBurst<'_, Tx>) {
        if self.len > 0 {
            each(&self.grams[..self.len], tx);
            self.len = 0;
        }
    }
}

impl Default for Burst<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// A source of received datagrams with a send side for copies.
pub trait PacketIo {
    /// The send side: where the forwarding core writes copies.
    type Tx: CopySink;

    /// Takes back the send buffers the network is done with.
    fn reclaim(&mut self);

    /// Takes at most `max` received datagrams without blocking and hands
    /// them, with their senders, to `each` in bursts of at most
    /// [`BURST_MAX`] along with the send side; the receive buffers are
    /// released before it returns. Returns the number of packets taken
    /// (those that are not datagrams for this port included, counted by
    /// the backend).
    fn receive_batch(&mut self, max: usize, each: &mut OnBurst<'_, Self::Tx>) -> usize;

    /// Hands every copy still pending to the network now.
    fn send_batch(&mut self);
}

/// One turn of the forwarding loop on any backend: reclaim, receive at
/// most `max` datagrams, hand each burst to `fwd` with the send side as
/// its copy sink (each block's copies leave as soon as it verifies), and
/// send what is left. Returns the packets taken.
pub fn forward_batch<P: PacketIo>(
    io: &mut P,
    fwd: &mut BlockForwarder,
    max: usize,
    now_us: u64,
) -> usize {
    io.reclaim();
    let n = io.receive_batch(max, &mut |burst, tx| {
        fwd.handle_burst(burst, now_us, tx);
    });
    io.send_batch();
    n
}

/// Largest latency [`SendLatency`] tracks, in nanoseconds (10 s); longer
/// ones are recorded as 10 s.
pub const LATENCY_MAX_NS: u64 = 10_000_000_000;

/// An empty latency histogram (1 ns to [`LATENCY_MAX_NS`], 3 digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
        .unwrap_or_else(|_| unreachable!("constant, valid bounds"))
}

/// Parked blocks whose copies one send may carry and still be recorded
/// with their own wait; more are recorded at once.
const LATE_MAX: usize = 64;

/// Each forwarded block's time from the moment its receive batch was taken
/// to the return of the send call that carried its copies, in
/// nanoseconds: what a backend's send side records. A block that waited
/// parked (its hashes came late) counts that wait too. Recording allocates
/// nothing.
#[derive(Debug, Clone)]
pub struct SendLatency {
    ingress: Instant,
    waiting: u64,
    /// The parked waits of late blocks ready to send, in nanoseconds.
    late: [u64; LATE_MAX],
    late_len: usize,
    histogram: Histogram<u64>,
}

impl SendLatency {
    /// Nothing recorded yet.
    pub fn new() -> Self {
        SendLatency {
            ingress: Instant::now(),
            waiting: 0,
            late: [0; LATE_MAX],
            late_len: 0,
            histogram: latency_histogram(),
        }
    }

    /// A receive batch was taken now.
    pub fn batch_taken(&mut self) {
        self.ingress = Instant::now();
    }

    /// One more block's copies are ready to send; it waited `parked_us`
    /// parked before its hashes came (0 for a block of this batch).
    pub fn block_ready(&mut self, parked_us: u64) {
        if parked_us == 0 {
            self.waiting += 1;
        } else if self.late_len < LATE_MAX {
            self.late[self.late_len] = parked_us.saturating_mul(1000);
            self.late_len += 1;
        } else {
            let ns = self
                .elapsed_ns()
                .saturating_add(parked_us.saturating_mul(1000));
            self.record(ns, 1);
        }
    }

    /// The copies of every ready block were handed to the network now.
    pub fn sent(&mut self) {
        if self.waiting == 0 && self.late_len == 0 {
            return;
        }
        let ns = self.elapsed_ns();
        if self.waiting > 0 {
            self.record(ns, self.waiting);
            self.waiting = 0;
        }
        for k in 0..self.late_len {
            self.record(ns.saturating_add(self.late[k]), 1);
        }
        self.late_len = 0;
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.ingress.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn record(&mut self, ns: u64, blocks: u64) {
        self.histogram
            .saturating_record_n(ns.clamp(1, LATENCY_MAX_NS), blocks);
    }

    /// The latencies recorded so far.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }
}

impl Default for SendLatency {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_block_counts_its_wait_and_the_others_share_the_batch_time() {
        let mut l = SendLatency::new();
        l.batch_taken();
        l.block_ready(0);
        l.block_ready(0);
        l.block_ready(30_000); // parked 30 ms
        l.sent();
        let h = l.histogram();
        assert_eq!(h.len(), 3);
        // Two on-time blocks well under a millisecond, one over 30 ms.
        assert!(
            h.value_at_quantile(0.5) < 1_000_000,
            "{}",
            h.value_at_quantile(0.5)
        );
        assert!(h.max() >= h.lowest_equivalent(30_000_000), "{}", h.max());
        // Nothing ready: nothing recorded.
        l.sent();
        assert_eq!(l.histogram().len(), 3);
    }

    #[test]
    fn more_parked_blocks_than_the_send_holds_are_all_recorded() {
        let mut l = SendLatency::new();
        l.batch_taken();
        for _ in 0..LATE_MAX + 10 {
            l.block_ready(1_000);
        }
        l.sent();
        let h = l.histogram();
        assert_eq!(h.len(), (LATE_MAX + 10) as u64);
        // Each at least its 1 ms wait (to the histogram's precision).
        assert!(h.min() >= h.lowest_equivalent(1_000_000), "{}", h.min());
    }
}
