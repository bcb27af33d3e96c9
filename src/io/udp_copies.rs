//! The forwarding core's copies on a kernel UDP socket: one `sendmmsg(2)`
//! per block, every copy pointing at the one datagram.
//!
//! [`SendmmsgSink`] is the kernel-UDP [`CopySink`]: `begin` keeps the
//! block's datagram once, `copy` adds a message header naming it and the
//! subscriber's address, and `flush` hands all of them to the kernel in
//! one call, so a block goes out as soon as it verifies. Headers,
//! addresses and the datagram buffer are allocated once; sending
//! allocates nothing. A full socket buffer drops what it could not take,
//! counted.

use std::os::fd::RawFd;

use nix::libc;

use crate::forward::{CopyError, CopySink};
use crate::relay::fanout::Subscriber;
use crate::wire::MAX_DATAGRAM;

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

/// Copies of one block at a time, sent with `sendmmsg` on `fd`.
pub struct SendmmsgSink {
    fd: RawFd,
    datagram: Box<[u8; MAX_DATAGRAM]>,
    len: usize,
    addrs: Vec<libc::sockaddr_in>,
    iov: libc::iovec,
    hdrs: Vec<libc::mmsghdr>,
    stats: SinkStats,
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
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: an all-zero mmsghdr is a valid empty header.
            hdrs: vec![unsafe { std::mem::zeroed() }; copies],
            stats: SinkStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }
}

impl CopySink for SendmmsgSink {
    fn begin(&mut self, datagram: &[u8]) {
        let len = datagram.len().min(MAX_DATAGRAM);
        self.datagram[..len].copy_from_slice(&datagram[..len]);
        self.len = len;
        self.addrs.clear();
    }

    fn copy(&mut self, to: &Subscriber, datagram: &[u8]) -> Result<(), CopyError> {
        if datagram.len() != self.len {
            return Err(CopyError::TooLarge);
        }
        if self.addrs.len() >= self.hdrs.len() {
            return Err(CopyError::NoBuffer);
        }
        self.addrs.push(sockaddr_in(to.addr));
        Ok(())
    }

    fn flush(&mut self) {
        let n = self.addrs.len();
        if n == 0 {
            return;
        }
        self.iov = libc::iovec {
            iov_base: self.datagram.as_mut_ptr().cast(),
            iov_len: self.len,
        };
        for (hdr, addr) in self.hdrs.iter_mut().zip(&self.addrs) {
            hdr.msg_hdr.msg_name = (addr as *const libc::sockaddr_in).cast_mut().cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            hdr.msg_hdr.msg_iov = &mut self.iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_len = 0;
        }
        let mut done = 0usize;
        let mut failures = 0;
        while done < n && failures < 4 {
            // SAFETY: `n - done` headers naming `self.iov` (over the
            // datagram buffer) and addresses in `self.addrs`, all alive and
            // unmoved across the call.
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
    }
}
