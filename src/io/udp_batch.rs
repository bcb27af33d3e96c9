//! The `udp` backend of the packet-IO seam: one kernel UDP socket,
//! `recvmmsg(2)` in, one `sendmmsg(2)` per block out.
//!
//! [`UdpBatchIo`] receives a batch of datagrams with their senders into
//! buffers allocated once. [`SendmmsgSink`] is its send side, a
//! [`CopySink`]: `begin` keeps the block's datagram once, `copy` adds a
//! message header naming it, the subscriber's block tag and address (each
//! message gathers the datagram around its own tag), and `flush`
//! hands all of them to the kernel in one call, so a block goes out as
//! soon as it verifies. Receiving and sending allocate nothing. A full
//! socket buffer drops what it could not take, counted.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

use nix::libc;

use super::packet::{Burst, Datagram, OnBurst, PacketIo, SendLatency};
use super::udp::RECV_BUF;
use crate::forward::{CopyError, CopySink};
use crate::relay::fanout::Subscriber;
use crate::wire::{BLOCK_TAG_LEN, BLOCK_TAG_OFFSET, MAX_DATAGRAM};

/// Counters of a [`SendmmsgSink`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Copies the kernel took.
    pub sent: u64,
    /// Bytes of those.
    pub bytes: u64,
    /// Copies the kernel did not take (buffer full, or an error).
    pub dropped: u64,
    /// `sendmmsg` calls.
    pub calls: u64,
}

/// An empty `iovec`.
const EMPTY_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// Copies of one block at a time, sent with `sendmmsg` on `fd`.
pub struct SendmmsgSink {
    fd: RawFd,
    datagram: Box<[u8; MAX_DATAGRAM]>,
    len: usize,
    addrs: Vec<libc::sockaddr_in>,
    /// Each copy's block tag, as sent.
    tags: Vec<[u8; BLOCK_TAG_LEN]>,
    /// Each copy's pieces: the datagram before its tag, the tag, the rest.
    iovs: Vec<[libc::iovec; 3]>,
    hdrs: Vec<libc::mmsghdr>,
    stats: SinkStats,
    latency: SendLatency,
}

impl std::fmt::Debug for SendmmsgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendmmsgSink")
            .field("fd", &self.fd)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn sockaddr_in(addr: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

impl SendmmsgSink {
    /// A sink on the UDP socket `fd` for blocks of at most `copies` copies
    /// each (the largest club's subscribers).
    pub fn new(fd: RawFd, copies: usize) -> Self {
        let copies = copies.max(1);
        SendmmsgSink {
            fd,
            datagram: Box::new([0u8; MAX_DATAGRAM]),
            len: 0,
            addrs: Vec::with_capacity(copies),
            tags: Vec::with_capacity(copies),
            iovs: vec![[EMPTY_IOV; 3]; copies],
            // SAFETY: an all-zero mmsghdr is a valid empty header.
            hdrs: vec![unsafe { std::mem::zeroed() }; copies],
            stats: SinkStats::default(),
            latency: SendLatency::new(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// Each block's time from its receive batch to its `sendmmsg`.
    pub fn latency(&self) -> &SendLatency {
        &self.latency
    }
}

impl CopySink for SendmmsgSink {
    fn begin(&mut self, datagram: &[u8]) {
        let len = datagram.len().min(MAX_DATAGRAM);
        self.datagram[..len].copy_from_slice(&datagram[..len]);
        self.len = len;
        self.addrs.clear();
        self.tags.clear();
    }

    fn copy(&mut self, to: &Subscriber, datagram: &[u8]) -> Result<(), CopyError> {
        if datagram.len() != self.len || self.len < BLOCK_TAG_OFFSET + BLOCK_TAG_LEN {
            return Err(CopyError::TooLarge);
        }
        if self.addrs.len() >= self.hdrs.len() {
            return Err(CopyError::NoBuffer);
        }
        self.addrs.push(sockaddr_in(to.addr));
        self.tags.push(to.tag.to_be_bytes());
        Ok(())
    }

    fn flush(&mut self, parked_us: u64) {
        let n = self.addrs.len();
        if n == 0 {
            return;
        }
        let tag_end = BLOCK_TAG_OFFSET + BLOCK_TAG_LEN;
        let base = self.datagram.as_mut_ptr();
        for (((hdr, addr), tag), iov) in self
            .hdrs
            .iter_mut()
            .zip(&self.addrs)
            .zip(&mut self.tags)
            .zip(&mut self.iovs)
        {
            *iov = [
                libc::iovec {
                    iov_base: base.cast(),
                    iov_len: BLOCK_TAG_OFFSET,
                },
                libc::iovec {
                    iov_base: tag.as_mut_ptr().cast(),
                    iov_len: BLOCK_TAG_LEN,
                },
                libc::iovec {
                    // SAFETY: `tag_end <= self.len <= MAX_DATAGRAM` (checked
                    // in `copy`), so this stays inside the buffer.
                    iov_base: unsafe { base.add(tag_end) }.cast(),
                    iov_len: self.len - tag_end,
                },
            ];
            hdr.msg_hdr.msg_name = (addr as *const libc::sockaddr_in).cast_mut().cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            hdr.msg_hdr.msg_iov = iov.as_mut_ptr();
            hdr.msg_hdr.msg_iovlen = 3;
            hdr.msg_len = 0;
        }
        let mut done = 0usize;
        let mut failures = 0;
        while done < n && failures < 4 {
            // SAFETY: `n - done` headers naming iovecs in `self.iovs` (over
            // the datagram buffer and `self.tags`) and addresses in
            // `self.addrs`, all alive and unmoved across the call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd,
                    self.hdrs[done..n].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            self.stats.calls += 1;
            if rc > 0 {
                done += rc as usize;
            } else {
                failures += 1;
            }
        }
        self.stats.sent += done as u64;
        self.stats.bytes += (done * self.len) as u64;
        self.stats.dropped += (n - done) as u64;
        self.addrs.clear();
        self.tags.clear();
        self.latency.block_ready(parked_us);
        self.latency.sent();
    }
}

/// Counters of a [`UdpBatchIo`]'s receive side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Bytes of those.
    pub bytes: u64,
    /// Datagrams longer than [`RECV_BUF`], handed over cut to that size.
    pub truncated: u64,
    /// Datagrams from a sender that is not IPv4 (not handed over).
    pub not_ipv4: u64,
    /// `recvmmsg` calls that failed for a reason other than no data.
    pub errors: u64,
}

/// The kernel-UDP [`PacketIo`] backend on one socket.
pub struct UdpBatchIo {
    fd: RawFd,
    bufs: Box<[[u8; RECV_BUF]]>,
    iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_in]>,
    msgs: Box<[libc::mmsghdr]>,
    tx: SendmmsgSink,
    stats: ReceiveStats,
}

impl std::fmt::Debug for UdpBatchIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpBatchIo")
            .field("fd", &self.fd)
            .field("stats", &self.stats)
            .field("tx", &self.tx)
            .finish_non_exhaustive()
    }
}

impl UdpBatchIo {
    /// The backend on the UDP socket `fd` (which the caller keeps open),
    /// receiving at most `batch` datagrams a call and sending blocks of at
    /// most `copies` copies.
    pub fn new(fd: RawFd, batch: usize, copies: usize) -> Self {
        let batch = batch.max(1);
        UdpBatchIo {
            fd,
            bufs: vec![[0u8; RECV_BUF]; batch].into_boxed_slice(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                batch
            ]
            .into_boxed_slice(),
            names: vec![sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); batch]
                .into_boxed_slice(),
            // SAFETY: an all-zero mmsghdr is a valid empty header.
            msgs: vec![unsafe { std::mem::zeroed() }; batch].into_boxed_slice(),
            tx: SendmmsgSink::new(fd, copies),
            stats: ReceiveStats::default(),
        }
    }

    /// The receive side's counters.
    pub fn receive_stats(&self) -> ReceiveStats {
        self.stats
    }

    /// The send side.
    pub fn sink(&self) -> &SendmmsgSink {
        &self.tx
    }

    /// Sleeps until the socket is readable, at most `timeout_ms`.
    pub fn wait(&self, timeout_ms: i32) {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd that lives on this stack frame.
        let _ = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }
}

impl PacketIo for UdpBatchIo {
    type Tx = SendmmsgSink;

    /// Nothing to take back: the kernel copied what `sendmmsg` took.
    fn reclaim(&mut self) {}

    fn receive_batch(&mut self, max: usize, each: &mut OnBurst<'_, SendmmsgSink>) -> usize {
        let n = max.clamp(1, self.msgs.len());
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: `n` headers, each naming one receive buffer and one
        // address of this backend, all alive and unmoved across the call.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd,
                self.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc <= 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            if rc < 0 && errno != Some(libc::EAGAIN) && errno != Some(libc::EINTR) {
                self.stats.errors += 1;
            }
            return 0;
        }
        let got = rc as usize;
        self.tx.latency.batch_taken();
        let mut burst = Burst::new();
        for i in 0..got {
            let msg = &self.msgs[i];
            let len = (msg.msg_len as usize).min(RECV_BUF);
            self.stats.datagrams += 1;
            self.stats.bytes += len as u64;
            if msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.stats.truncated += 1;
            }
            let name = &self.names[i];
            if name.sin_family != libc::AF_INET as libc::sa_family_t {
                self.stats.not_ipv4 += 1;
                continue;
            }
            let from = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                u16::from_be(name.sin_port),
            );
            let gram = Datagram {
                from,
                payload: &self.bufs[i][..len],
            };
            burst.push(gram, &mut self.tx, each);
        }
        burst.hand_over(&mut self.tx, each);
        got
    }

    /// Each block's copies left in its own `sendmmsg`: nothing waits.
    fn send_batch(&mut self) {}
}
