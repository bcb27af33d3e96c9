//! The kernel-UDP backend: one thread runs many sans-IO nodes, each on its
//! own nonblocking UDP socket. [`UdpDriver`] waits with `mio` until a socket
//! is readable or the earliest node timer is due, drains readable sockets
//! with batched `recvmmsg` (feeding every datagram to its node stamped with
//! [`clock::now`]), sends what the node queued with batched `sendmmsg`, and
//! fires due timers. It never blocks on a send and never panics on input:
//! a full socket buffer drops the batch and counts it, a receive error is
//! counted, and a datagram too large for the receive buffer is truncated,
//! counted and still handed over, so the node rejects it as oversize. Work
//! per wakeup is bounded (a busy socket yields after a fixed number of
//! batches) and nothing is allocated per datagram.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage};

use super::clock;
use crate::counters::counters;
use crate::roles::{Node, Time, Transmit};

/// Datagrams moved by one `recvmmsg` or `sendmmsg` call.
pub const BATCH: usize = 32;

/// Bytes of each receive buffer: an Ethernet MTU. The protocol never sends
/// more than 1232 bytes, so anything that fills a buffer is already too
/// large; a longer datagram is cut to this size (and counted in
/// [`UdpStats::truncated`]) and is still too large for the node to accept.
pub const RECV_BUF: usize = 1500;

/// `recvmmsg` calls on one socket per wakeup before other sockets get a turn.
const RECV_BATCHES_PER_WAKEUP: usize = 16;

/// `sendmmsg` batches taken from one node per flush before others get a turn.
const SEND_BATCHES_PER_FLUSH: usize = 64;

/// Longest single wait, so that `should_stop` is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// Names one node of a [`UdpDriver`]. After [`UdpDriver::remove`] the
/// handle is stale, and a later [`UdpDriver::add`] may reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

impl NodeId {
    /// The slot number, dense from 0.
    pub fn index(self) -> usize {
        self.0
    }
}

counters! {
    /// Counters summed over all nodes of a driver. `kernel_rx_drops` is
    /// filled in by [`UdpDriver::stats_with_kernel_drops`] only (it reads
    /// `/proc`), and is 0 in [`UdpDriver::stats`].
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct UdpStats {
        /// Datagrams handed to nodes.
        datagrams_in as "datagrams_received",
        /// Datagrams the kernel accepted for sending.
        datagrams_out as "datagrams_sent",
        /// Bytes handed to nodes.
        bytes_in as "bytes_received",
        /// Bytes the kernel accepted for sending.
        bytes_out as "bytes_sent",
        /// Datagrams the socket did not take (buffer full or a send error).
        send_drops as "send_drops",
        /// Send errors other than a full buffer (a bad destination, say).
        send_errors as "send_errors",
        /// Receive errors, and datagrams whose source address did not decode.
        recv_errors as "recv_errors",
        /// Datagrams longer than the receive buffer, handed over cut to its size.
        truncated as "truncated",
        /// Receive calls that returned at least one datagram.
        recv_batches as "recv_batches",
        /// Send calls that sent at least one datagram.
        send_batches as "send_batches",
        /// Datagrams the kernel dropped for a full receive buffer on the node's sockets.
        kernel_rx_drops as "kernel_rx_drops",
    }
}

struct Slot<N> {
    socket: UdpSocket,
    node: N,
    local: SocketAddr,
    /// Already in the driver's list of sockets to read.
    queued: bool,
}

/// Runs many [`Node`]s, each on its own nonblocking UDP socket, from the
/// calling thread.
pub struct UdpDriver<N: Node> {
    poll: Poll,
    events: Events,
    slots: Vec<Option<Slot<N>>>,
    free: Vec<usize>,
    live: usize,
    rx_bufs: Box<[[u8; RECV_BUF]; BATCH]>,
    pending: Vec<Transmit>,
    /// Sockets to read on this pass: readiness events plus sockets that
    /// still had data when their budget ran out.
    readable: Vec<usize>,
    /// Sockets that ran out of budget on this pass.
    carry: Vec<usize>,
    stats: UdpStats,
}

/// `recvmmsg` headers, one set per address family. The kernel overwrites
/// each header's address length with the length it wrote and nix 0.32 does
/// not restore it before the next call; a socket of one family always
/// writes the same length, so keeping the families apart keeps every
/// address whole.
struct RecvHeaders {
    v4: MultiHeaders<SockaddrStorage>,
    v6: MultiHeaders<SockaddrStorage>,
}

impl RecvHeaders {
    fn new() -> Self {
        RecvHeaders {
            v4: MultiHeaders::preallocate(BATCH, None),
            v6: MultiHeaders::preallocate(BATCH, None),
        }
    }

    fn for_addr(&mut self, local: SocketAddr) -> &mut MultiHeaders<SockaddrStorage> {
        if local.is_ipv6() {
            &mut self.v6
        } else {
            &mut self.v4
        }
    }
}

impl<N: Node> UdpDriver<N> {
    /// A driver with no nodes.
    pub fn new() -> io::Result<Self> {
        Ok(UdpDriver {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            rx_bufs: Box::new([[0; RECV_BUF]; BATCH]),
            pending: Vec::with_capacity(BATCH),
            readable: Vec::new(),
            carry: Vec::new(),
            stats: UdpStats::default(),
        })
    }

    /// Adds `node` on `socket` (bound by the caller), which is made
    /// nonblocking and owned by the driver from now on. Datagrams the node
    /// has already queued go out on the next run.
    pub fn add(&mut self, socket: StdUdpSocket, node: N) -> io::Result<NodeId> {
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let mut socket = UdpSocket::from_std(socket);
        let index = self.free.last().copied().unwrap_or(self.slots.len());
        self.poll
            .registry()
            .register(&mut socket, Token(index), Interest::READABLE)?;
        let slot = Slot {
            socket,
            node,
            local,
            queued: false,
        };
        if index == self.slots.len() {
            self.slots.push(Some(slot));
        } else {
            self.free.pop();
            self.slots[index] = Some(slot);
        }
        self.live += 1;
        Ok(NodeId(index))
    }

    /// Takes node `id` out and closes its socket at once, as a peer that
    /// leaves abruptly would: datagrams sent to its address afterwards go
    /// nowhere. `None` if `id` is stale.
    pub fn remove(&mut self, id: NodeId) -> Option<N> {
        let mut slot = self.slots.get_mut(id.0)?.take()?;
        // Dropping the socket closes it, which also takes it out of the
        // poll set; deregistering first just keeps the order explicit.
        let _ = self.poll.registry().deregister(&mut slot.socket);
        self.free.push(id.0);
        self.live -= 1;
        Some(slot.node)
    }

    /// Runs until `deadline` passes or `should_stop` is set (checked at
    /// least every 50 ms). Errors only if waiting on the sockets fails;
    /// everything that goes wrong with a single socket or datagram is
    /// counted in [`UdpDriver::stats`] instead. A node's timer fires once
    /// [`Node::poll_timeout`] is at or before [`clock::now`]; a node must
    /// move it on in [`Node::handle_timeout`], or it is called again at once.
    pub fn run_until(&mut self, deadline: Instant, should_stop: &AtomicBool) -> io::Result<()> {
        // Built per run, not kept in the driver: nix's headers hold raw
        // pointers, which would make the driver `!Send`.
        let mut headers = RecvHeaders::new();
        loop {
            if should_stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let (earliest, backlog) = self.service_timers(clock::now());
            let wait = if backlog || !self.readable.is_empty() {
                Duration::ZERO
            } else {
                let timer = earliest.map_or(MAX_WAIT, |t| {
                    Duration::from_micros(t.0.saturating_sub(clock::now().0))
                });
                left.min(MAX_WAIT).min(timer)
            };
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for event in self.events.iter() {
                let i = event.token().0;
                if let Some(Some(slot)) = self.slots.get_mut(i) {
                    if !slot.queued {
                        slot.queued = true;
                        self.readable.push(i);
                    }
                }
            }
            self.service_readable(&mut headers);
        }
    }

    /// [`UdpDriver::run_until`] for `d` from now, with no stop flag.
    pub fn run_for(&mut self, d: Duration) -> io::Result<()> {
        self.run_until(Instant::now() + d, &AtomicBool::new(false))
    }

    /// The node `id`, or `None` if `id` is stale.
    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.slot(id).map(|s| &s.node)
    }

    /// The node `id` for changing, or `None` if `id` is stale. Datagrams it
    /// queues go out on the next run.
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut N> {
        self.slots
            .get_mut(id.0)
            .and_then(Option::as_mut)
            .map(|s| &mut s.node)
    }

    /// The address node `id`'s socket is bound to.
    pub fn local_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.slot(id).map(|s| s.local)
    }

    /// Handles of all nodes, in slot order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| NodeId(i))
    }

    /// All nodes, in slot order.
    pub fn nodes(&self) -> impl Iterator<Item = &N> {
        self.slots.iter().flatten().map(|s| &s.node)
    }

    /// All nodes for changing, in slot order.
    pub fn nodes_mut(&mut self) -> impl Iterator<Item = &mut N> {
        self.slots.iter_mut().flatten().map(|s| &mut s.node)
    }

    /// Nodes in the driver.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when the driver has no nodes.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Counters so far, with the kernel's receive-buffer drops read from
    /// `/proc` (a file read: call it off the packet path).
    pub fn stats_with_kernel_drops(&self) -> UdpStats {
        let inodes: Vec<u64> = self
            .slots
            .iter()
            .flatten()
            .filter_map(|s| super::proc_udp::socket_inode(s.socket.as_raw_fd()))
            .collect();
        UdpStats {
            kernel_rx_drops: super::proc_udp::drops_of(&inodes),
            ..self.stats()
        }
    }

    /// Counters summed over all nodes so far (without the kernel's drops).
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    fn slot(&self, id: NodeId) -> Option<&Slot<N>> {
        self.slots.get(id.0).and_then(Option::as_ref)
    }

    /// Fires due timers and sends what every node has queued. Returns the
    /// earliest timer left and whether some node still has datagrams to
    /// send after its budget ran out.
    fn service_timers(&mut self, now: Time) -> (Option<Time>, bool) {
        let mut earliest: Option<Time> = None;
        let mut backlog = false;
        for slot in self.slots.iter_mut().flatten() {
            if slot.node.poll_timeout().is_some_and(|t| t <= now) {
                slot.node.handle_timeout(now);
            }
            backlog |= flush(
                &mut slot.node,
                slot.socket.as_raw_fd(),
                &mut self.pending,
                &mut self.stats,
            );
            if let Some(t) = slot.node.poll_timeout() {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        (earliest, backlog)
    }

    /// Reads every socket in `readable`, keeping the ones that still had
    /// data when their budget ran out for the next pass.
    fn service_readable(&mut self, headers: &mut RecvHeaders) {
        for &i in &self.readable {
            let Some(Some(slot)) = self.slots.get_mut(i) else {
                continue;
            };
            slot.queued = false;
            let local = slot.local;
            let more = drain(
                slot,
                headers.for_addr(local),
                &mut self.rx_bufs,
                &mut self.pending,
                &mut self.stats,
            );
            if more {
                slot.queued = true;
                self.carry.push(i);
            }
        }
        self.readable.clear();
        std::mem::swap(&mut self.readable, &mut self.carry);
    }
}

/// Receives from `slot`'s socket in batches, feeding each datagram to its
/// node and sending the node's answers after every batch. Returns true when
/// the budget ran out while the socket still had data.
fn drain<N: Node>(
    slot: &mut Slot<N>,
    headers: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [[u8; RECV_BUF]; BATCH],
    pending: &mut Vec<Transmit>,
    stats: &mut UdpStats,
) -> bool {
    let fd = slot.socket.as_raw_fd();
    let mut errors_in_row = 0;
    for _ in 0..RECV_BATCHES_PER_WAKEUP {
        let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        match recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
            Ok(msgs) => {
                errors_in_row = 0;
                let now = clock::now();
                let mut received = 0;
                for msg in msgs {
                    received += 1;
                    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                        stats.truncated += 1;
                    }
                    let Some(from) = msg.address.as_ref().and_then(socket_addr) else {
                        stats.recv_errors += 1;
                        continue;
                    };
                    // A zero-length datagram has no slice at all.
                    let data = msg.iovs().next().unwrap_or(&[]);
                    stats.datagrams_in += 1;
                    stats.bytes_in += data.len() as u64;
                    slot.node.handle_datagram(now, from, data);
                }
                if received > 0 {
                    stats.recv_batches += 1;
                }
                flush(&mut slot.node, fd, pending, stats);
                // A short batch means the queue was empty when the kernel
                // looked; any later datagram raises a new readiness event.
                if received < BATCH {
                    return false;
                }
            }
            Err(Errno::EAGAIN) => return false,
            Err(Errno::EINTR) => {}
            Err(_) => {
                stats.recv_errors += 1;
                errors_in_row += 1;
                if errors_in_row >= 2 {
                    return false;
                }
            }
        }
    }
    true
}

/// Sends what `node` has queued in batches, dropping (and counting) what
/// the kernel will not take right now. Returns true when the budget ran
/// out, so the node may still have datagrams queued.
fn flush<N: Node>(
    node: &mut N,
    fd: RawFd,
    pending: &mut Vec<Transmit>,
    stats: &mut UdpStats,
) -> bool {
    for _ in 0..SEND_BATCHES_PER_FLUSH {
        pending.clear();
        while pending.len() < BATCH {
            match node.poll_transmit() {
                Some(t) => pending.push(t),
                None => break,
            }
        }
        if pending.is_empty() {
            return false;
        }
        send_all(fd, pending, stats);
        if pending.len() < BATCH {
            pending.clear();
            return false;
        }
    }
    pending.clear();
    true
}

/// Sends `batch`, resuming after a partial send. A full socket buffer drops
/// the rest of the batch; any other error drops only the datagram it is
/// about.
fn send_all(fd: RawFd, batch: &[Transmit], stats: &mut UdpStats) {
    let mut off = 0;
    while off < batch.len() {
        match send_batch(fd, &batch[off..]) {
            Ok(0) => {
                // Not expected from the kernel; drop rather than spin.
                stats.send_drops += (batch.len() - off) as u64;
                return;
            }
            Ok(sent) => {
                stats.send_batches += 1;
                stats.datagrams_out += sent as u64;
                stats.bytes_out += batch[off..off + sent]
                    .iter()
                    .map(|t| t.payload().len() as u64)
                    .sum::<u64>();
                off += sent;
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN | Errno::ENOBUFS) => {
                stats.send_drops += (batch.len() - off) as u64;
                return;
            }
            Err(_) => {
                stats.send_errors += 1;
                stats.send_drops += 1;
                off += 1;
            }
        }
    }
}

/// One `sendmmsg(2)` call for up to [`BATCH`] datagrams of `batch`; the
/// number the kernel took, or the error of the first.
///
/// This calls libc directly: nix 0.32's `sendmmsg` reports the count only
/// through an iterator that reads address slots a send never writes.
fn send_batch(fd: RawFd, batch: &[Transmit]) -> Result<usize, Errno> {
    let batch = &batch[..batch.len().min(BATCH)];
    let addrs: [Option<SockaddrStorage>; BATCH] =
        std::array::from_fn(|k| batch.get(k).map(|t| SockaddrStorage::from(t.to)));
    let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|k| {
        let payload = batch.get(k).map_or(&[][..], Transmit::payload);
        libc::iovec {
            // The kernel only reads through this pointer.
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        }
    });
    // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for ((hdr, iov), addr) in hdrs.iter_mut().zip(iovs.iter_mut()).zip(&addrs) {
        if let Some(addr) = addr {
            hdr.msg_hdr.msg_name = addr.as_ptr().cast_mut().cast();
            hdr.msg_hdr.msg_namelen = addr.len();
        }
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `batch.len()` headers point at an address and one
    // iovec that live in this frame, and each iovec at a payload borrowed
    // from `batch`, all valid until the call returns; the kernel writes only
    // the headers' `msg_len`.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            batch.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    Errno::result(sent).map(|n| n as usize)
}

/// The socket address in `addr`, if it is IPv4 or IPv6.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}
