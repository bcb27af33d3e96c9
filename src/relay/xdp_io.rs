//! The `xdp` backend of the packet-IO seam: one AF_XDP socket's rings and
//! UMEM, mechanism only.
//!
//! [`XdpIo`] receives by taking frames off the RX ring, parsing each
//! one's Ethernet/IPv4/UDP headers and handing the datagrams for the relay
//! port to the caller in bursts; the frames then go back to the fill ring.
//! Its send side [`XdpTx`] is a [`CopySink`] on the UMEM's TX frames: each
//! copy gets a free frame with its own headers around the datagram, whose
//! UDP checksum is summed once; copies go on the TX ring and the kernel is
//! kicked a whole kick (32 frames) at a time as they are made, and for the
//! rest at the end of the batch or before a signature check. Reclaiming
//! moves completed TX frames back to the free list; it runs after every
//! kick too, and the free list is a stack, so the next copies are written
//! into the frames the kick just sent, still in cache, instead of cycling
//! through a receive batch's worth of cold frames. Every buffer is
//! allocated when the backend is built: receiving and sending allocate
//! nothing and take no lock.

use std::os::fd::RawFd;

use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::fanout::Subscriber;
use super::frame::{self, FrameTemplate, PayloadSum, UdpChecksum, HEADERS_LEN};
use super::worker::{LocalEndpoint, WorkerStats};
use super::xsk::{self, Kick, XskKernelStats, XskSocket};
use crate::forward::{CopyError, CopySink};
use crate::io::packet::{Burst, Datagram, OnBurst, PacketIo, SendLatency};
use crate::wire::set_block_tag;

/// Frames a kick transmits: copy mode transmits at most 32 frames per
/// `sendto` (the kernel's `TX_BATCH_SIZE`), so waiting for more only
/// delays the first, and kicking fewer costs more `sendto` calls.
const KICK_FRAMES: usize = 32;

/// Completion descriptors taken per ring read.
const COMPLETION_CHUNK: usize = 256;

/// What the send side counted (see the same fields of [`WorkerStats`]).
#[derive(Debug, Clone, Copy, Default)]
struct TxCounters {
    frames: u64,
    bytes: u64,
    ring_full: u64,
    completed: u64,
    kicks: u64,
    kick_errors: u64,
}

/// The send side: the UMEM's TX frames, the TX and completion rings.
pub struct XdpTx {
    umem: Umem,
    local: LocalEndpoint,
    checksum: UdpChecksum,
    /// TX frames owned by user space and free.
    free: Vec<FrameDesc>,
    /// TX frames written and waiting for the TX ring.
    pending: Vec<FrameDesc>,
    ip_id: u16,
    /// The headers this block's copies share (`None`: it fits no frame).
    template: Option<FrameTemplate>,
    ring: TxQueue,
    comp: CompQueue,
    comp_descs: Box<[FrameDesc]>,
    fd: RawFd,
    ring_size: u32,
    need_wakeup: bool,
    max_kicks: usize,
    counters: TxCounters,
    latency: SendLatency,
}

impl CopySink for XdpTx {
    fn begin(&mut self, datagram: &[u8]) {
        let sum = match self.checksum {
            UdpChecksum::Compute => PayloadSum::of_untagged(datagram),
            UdpChecksum::Zero => PayloadSum::of(&[]),
        };
        let LocalEndpoint { mac, addr } = self.local;
        self.template = FrameTemplate::new(mac, addr, self.checksum, datagram.len(), sum).ok();
    }

    fn copy(&mut self, to: &Subscriber, datagram: &[u8]) -> Result<(), CopyError> {
        let Some(mut desc) = self.free.pop() else {
            return Err(CopyError::NoBuffer);
        };
        let Some(template) = self.template else {
            self.free.push(desc);
            return Err(CopyError::TooLarge);
        };
        let frame_len = template.frame_len();
        // SAFETY: `desc` came off the free list, so it names a frame of
        // this UMEM that neither the kernel nor any other descriptor user
        // space holds refers to.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        // Completion resets a frame's length: set it for this frame.
        data.cursor().set_pos(frame_len);
        self.ip_id = self.ip_id.wrapping_add(1);
        let tag = to.tag.to_be_bytes();
        let extra = match self.checksum {
            UdpChecksum::Compute => PayloadSum::of(&tag),
            UdpChecksum::Zero => PayloadSum::of(&[]),
        };
        let contents = data.contents_mut();
        let written = template.write(contents, to.mac, to.addr, self.ip_id, datagram, extra);
        let tagged = written == Ok(frame_len)
            && set_block_tag(&mut contents[HEADERS_LEN..frame_len], to.tag);
        if !tagged {
            // The frame is smaller than the datagram (ruled out by the
            // socket's config check): keep the frame, skip the copy.
            self.free.push(desc);
            return Err(CopyError::TooLarge);
        }
        self.pending.push(desc);
        Ok(())
    }

    /// Forward on verify: the copies go out as soon as a kick's worth is
    /// ready, not after the rest of the batch. Copy mode sends at most
    /// `KICK_FRAMES` a `sendto`, so only whole kicks are made here; fewer
    /// frames wait on the ring for the next block's copies or the end of
    /// the batch. A block counts as sent once the ring is empty. The
    /// frames the kick completed go straight back to the free list.
    fn flush(&mut self, parked_us: u64) {
        self.latency.block_ready(parked_us);
        if self.pending.len() >= KICK_FRAMES {
            self.produce();
            self.kick(KICK_FRAMES as u32);
            if self.on_ring() == 0 {
                self.latency.sent();
            }
            self.reclaim();
        }
    }

    fn send_pending(&mut self) {
        self.submit();
    }
}

impl XdpTx {
    /// Puts the pending TX frames on the TX ring (a full ring drops the
    /// rest, counted).
    fn produce(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // SAFETY: every pending descriptor names a frame of this UMEM
        // that user space owns and has written, with its length set.
        let produced = unsafe { self.ring.produce(&self.pending) };
        for desc in &self.pending[..produced] {
            self.counters.bytes += desc.lengths().data() as u64;
        }
        self.counters.frames += produced as u64;
        let unsent = self.pending.len() - produced;
        if unsent > 0 {
            self.counters.ring_full += unsent as u64;
            for desc in &self.pending[produced..] {
                self.free.push(*desc);
            }
        }
        self.pending.clear();
    }

    /// Frames on the TX ring the kernel has not taken yet.
    fn on_ring(&mut self) -> u32 {
        self.ring_size - self.ring.nb_free_exact()
    }

    /// Puts the pending TX frames on the TX ring, kicks the kernel until
    /// the ring is empty and records the latency of the blocks whose copies
    /// they are.
    fn submit(&mut self) {
        self.produce();
        // Frames an earlier loop left on the ring still want kicks.
        self.kick(1);
        self.latency.sent();
    }

    /// Kicks the TX ring while at least `least` frames are on it, until the
    /// kernel says to stop or `max_kicks` is reached.
    fn kick(&mut self, least: u32) {
        for _ in 0..self.max_kicks {
            if self.on_ring() < least {
                return;
            }
            if self.need_wakeup && !self.ring.needs_wakeup() {
                return; // the driver is polling the ring itself
            }
            self.counters.kicks += 1;
            match xsk::kick_tx(self.fd) {
                Kick::Done | Kick::Again => {}
                Kick::Busy => return,
                Kick::Failed(_) => {
                    self.counters.kick_errors += 1;
                    return;
                }
            }
        }
    }

    /// Moves completed TX frames back to the free list.
    fn reclaim(&mut self) {
        loop {
            // SAFETY: the completion ring names only frames of this UMEM
            // that were submitted for TX; the kernel is done with them.
            let n = unsafe { self.comp.consume(&mut self.comp_descs[..]) };
            for desc in &self.comp_descs[..n] {
                // Free + pending + in flight never exceed the TX frames,
                // the free list's capacity, so this push never allocates.
                debug_assert!(self.free.len() < self.free.capacity());
                self.free.push(*desc);
            }
            self.counters.completed += n as u64;
            if n < self.comp_descs.len() {
                break;
            }
        }
    }
}

/// The receive side's counters (see the same fields of [`WorkerStats`]).
#[derive(Debug, Clone, Copy, Default)]
struct RxCounters {
    frames: u64,
    bytes: u64,
    not_udp: u64,
    malformed_frame: u64,
    wrong_port: u64,
    fill_ring_empty: u64,
    fill_ring_full: u64,
    fill_wakeups: u64,
}

/// One AF_XDP socket as a [`PacketIo`] backend.
pub struct XdpIo {
    rx: RxQueue,
    fill: FillQueue,
    /// A second handle on the UMEM for reading RX frames while the send
    /// side writes TX frames (disjoint frames of one mapping).
    rx_umem: Umem,
    rx_descs: Box<[FrameDesc]>,
    fill_backlog: Vec<FrameDesc>,
    fill_ring: u32,
    need_wakeup: bool,
    counters: RxCounters,
    tx: XdpTx,
}

impl XdpIo {
    /// The backend on `xsk` for datagrams to `local`, taking at most
    /// `batch` frames a receive and making at most `max_kicks` kicks a
    /// send. `batch` must not exceed the socket's RX frames.
    pub fn new(
        xsk: XskSocket,
        local: LocalEndpoint,
        checksum: UdpChecksum,
        batch: usize,
        max_kicks: usize,
    ) -> Self {
        let config = *xsk.config();
        let fd = xsk.fd();
        let XskSocket {
            umem,
            rx,
            tx,
            fill,
            comp,
            tx_free,
            ..
        } = xsk;
        // Every TX frame is on the free list at the start, so its capacity
        // covers every frame that can come back to it.
        let tx_frames = tx_free.len();
        XdpIo {
            rx,
            fill,
            rx_umem: umem.clone(),
            rx_descs: vec![FrameDesc::default(); batch.max(1)].into_boxed_slice(),
            fill_backlog: Vec::with_capacity(config.rx_frames as usize),
            fill_ring: config.fill_ring,
            need_wakeup: config.need_wakeup,
            counters: RxCounters::default(),
            tx: XdpTx {
                umem,
                local,
                checksum,
                free: tx_free,
                pending: Vec::with_capacity(tx_frames),
                ip_id: 0,
                template: None,
                ring: tx,
                comp,
                comp_descs: vec![FrameDesc::default(); COMPLETION_CHUNK].into_boxed_slice(),
                fd,
                ring_size: config.tx_ring,
                need_wakeup: config.need_wakeup,
                max_kicks: max_kicks.max(1),
                counters: TxCounters::default(),
                latency: SendLatency::new(),
            },
        }
    }

    /// The relay's own address on the interface.
    pub fn local(&self) -> LocalEndpoint {
        self.tx.local
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> RawFd {
        self.tx.fd
    }

    /// Each forwarded block's time from its RX batch to the kick that sent
    /// its copies.
    pub fn latency(&self) -> &SendLatency {
        &self.tx.latency
    }

    /// The kernel's counters for the socket (one `getsockopt`; call it off
    /// the hot path).
    pub fn kernel_stats(&self) -> std::io::Result<XskKernelStats> {
        xsk::read_kernel_stats(&self.rx)
    }

    /// Writes the rings' counters into their fields of `stats`.
    pub fn count_into(&self, stats: &mut WorkerStats) {
        let (rx, tx) = (&self.counters, &self.tx.counters);
        stats.rx_frames = rx.frames;
        stats.rx_bytes = rx.bytes;
        stats.not_udp = rx.not_udp;
        stats.malformed_frame = rx.malformed_frame;
        stats.wrong_port = rx.wrong_port;
        stats.fill_ring_empty = rx.fill_ring_empty;
        stats.fill_ring_full = rx.fill_ring_full;
        stats.fill_wakeups = rx.fill_wakeups;
        stats.tx_frames = tx.frames;
        stats.tx_bytes = tx.bytes;
        stats.tx_ring_full = tx.ring_full;
        stats.tx_completed = tx.completed;
        stats.tx_kicks = tx.kicks;
        stats.tx_kick_errors = tx.kick_errors;
    }

    /// Hands RX frames held back by an earlier batch to the fill ring.
    fn restock_fill(&mut self) {
        if self.fill_backlog.is_empty() {
            return;
        }
        // SAFETY: the backlog holds RX frames of this UMEM that user space
        // is done with.
        let given = unsafe { self.fill.produce(&self.fill_backlog) };
        self.fill_backlog.drain(..given);
    }

    /// Hands the `n` frames of this RX batch back to the fill ring.
    fn return_rx(&mut self, n: usize) {
        let descs = &self.rx_descs[..n];
        // SAFETY: these RX frames belong to this UMEM and user space is
        // done with them: the send side copied what it sends into TX
        // frames.
        let given = if self.fill_backlog.is_empty() {
            unsafe { self.fill.produce(descs) }
        } else {
            0
        };
        if given < n {
            self.counters.fill_ring_full += (n - given) as u64;
            // The backlog's capacity is every RX frame: no allocation.
            self.fill_backlog.extend_from_slice(&descs[given..]);
        }
        if self.need_wakeup && self.fill.needs_wakeup() {
            self.counters.fill_wakeups += 1;
            xsk::kick_rx(self.tx.fd);
        }
    }
}

impl PacketIo for XdpIo {
    type Tx = XdpTx;

    fn reclaim(&mut self) {
        self.tx.reclaim();
        self.restock_fill();
        if self.fill.nb_free_exact() == self.fill_ring {
            self.counters.fill_ring_empty += 1;
        }
    }

    fn receive_batch(&mut self, max: usize, each: &mut OnBurst<'_, XdpTx>) -> usize {
        let max = max.clamp(1, self.rx_descs.len());
        // SAFETY: `rx_descs` are plain descriptors the ring overwrites; the
        // frames they then name were filled by the kernel and are ours
        // until they go back to the fill ring below.
        let n = unsafe { self.rx.consume(&mut self.rx_descs[..max]) };
        if n == 0 {
            return 0;
        }
        self.tx.latency.batch_taken();
        let port = self.tx.local.addr.port();
        let mut burst = Burst::new();
        for i in 0..n {
            let desc = self.rx_descs[i];
            // SAFETY: `desc` names a frame of this UMEM that the kernel
            // filled and released to us; nothing writes it until it goes
            // back to the fill ring, and the send side only writes TX
            // frames, which are disjoint from it.
            let data = unsafe { self.rx_umem.data(&desc) };
            let frame = data.contents();
            let counters = &mut self.counters;
            counters.frames += 1;
            counters.bytes += frame.len() as u64;
            match frame::parse(frame) {
                Ok(udp) if udp.dst.port() == port => {
                    let gram = Datagram {
                        from: udp.src,
                        payload: udp.payload,
                    };
                    burst.push(gram, &mut self.tx, each);
                }
                Ok(_) => counters.wrong_port += 1,
                Err(err) if err.is_other_protocol() => counters.not_udp += 1,
                Err(_) => counters.malformed_frame += 1,
            }
        }
        burst.hand_over(&mut self.tx, each);
        self.return_rx(n);
        n
    }

    fn send_batch(&mut self) {
        self.tx.submit();
    }
}
