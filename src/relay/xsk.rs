//! One AF_XDP socket and its UMEM, set up for the relay worker.
//!
//! [`XskSocket::open`] creates a UMEM of [`XskConfig::frames`] frames, binds
//! an AF_XDP socket to (interface, rx queue) through xsk-rs with libxdp's
//! own XDP program load inhibited (the relay attaches its steering program
//! and puts the socket in its XSKMAP, [`XskSocket::register`]), stocks the
//! fill ring with the RX share of the frames and keeps the TX share as a
//! free list for the worker. Bind mode is copy, zero-copy, or auto (zero-copy
//! with a fall back to copy). Errors say what to do. This module moves no
//! packets; the rings go to [`super::worker`], which owns them on one thread
//! (xsk-rs queues are Send, not Sync).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};

use nix::libc;
use thiserror::Error;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::frame::HEADERS_LEN;
use super::steer::{SteerError, SteeringProgram};
use crate::wire::MAX_DATAGRAM;

/// Default entries of each of the four rings. 2048-entry rings dropped ~25%
/// at full rate on veth; 8192 with batches of 256 were lossless (DESIGN.md,
/// measured on this machine kind).
pub const DEFAULT_RING_SIZE: u32 = 8192;

/// Default UMEM frame size: the smallest the kernel takes, which leaves
/// 2048 - 256 (XDP headroom) = 1792 bytes, room for any clubcast datagram
/// (1232 bytes) and its 42 bytes of headers.
pub const DEFAULT_FRAME_SIZE: u32 = 2048;

/// Headroom the kernel keeps before each frame's data (`XDP_PACKET_HEADROOM`).
const XDP_PACKET_HEADROOM: u32 = 256;

/// How the socket binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Copy mode (`XDP_COPY`): works on every driver, veth included.
    Copy,
    /// Zero-copy mode (`XDP_ZEROCOPY`): needs driver support; veth has none
    /// (EOPNOTSUPP, measured).
    ZeroCopy,
    /// Zero-copy if the driver supports it, copy otherwise.
    #[default]
    Auto,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::Copy => "copy",
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Auto => "auto",
        })
    }
}

/// Sizes and modes of one AF_XDP socket and its UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// Bytes per UMEM frame: a power of two, at least 2048.
    pub frame_size: u32,
    /// Frames handed to the kernel for receiving (stocked in the fill
    /// ring); at most `fill_ring`.
    pub rx_frames: u32,
    /// Frames kept by the worker for transmitting.
    pub tx_frames: u32,
    /// RX ring entries (power of two).
    pub rx_ring: u32,
    /// TX ring entries (power of two).
    pub tx_ring: u32,
    /// Fill ring entries (power of two).
    pub fill_ring: u32,
    /// Completion ring entries (power of two).
    pub comp_ring: u32,
    /// How to bind.
    pub bind_mode: BindMode,
    /// Bind with `XDP_USE_NEED_WAKEUP`: the kernel says when the TX ring
    /// needs a `sendto` kick instead of being kicked after every batch.
    pub need_wakeup: bool,
    /// Map the UMEM in 2 MiB huge pages (reserve them first:
    /// `vm.nr_hugepages`, see `tuning/`).
    pub huge_pages: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frame_size: DEFAULT_FRAME_SIZE,
            rx_frames: DEFAULT_RING_SIZE,
            tx_frames: DEFAULT_RING_SIZE,
            rx_ring: DEFAULT_RING_SIZE,
            tx_ring: DEFAULT_RING_SIZE,
            fill_ring: DEFAULT_RING_SIZE,
            comp_ring: DEFAULT_RING_SIZE,
            bind_mode: BindMode::Auto,
            need_wakeup: true,
            huge_pages: false,
        }
    }
}

impl XskConfig {
    /// Frames in the UMEM: the RX and TX shares.
    pub fn frames(&self) -> u32 {
        self.rx_frames.saturating_add(self.tx_frames)
    }

    /// Bytes of packet data one frame holds.
    pub fn frame_capacity(&self) -> usize {
        self.frame_size.saturating_sub(XDP_PACKET_HEADROOM) as usize
    }

    /// Bytes of UMEM (mapped and populated up front).
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.frames()) * u64::from(self.frame_size)
    }

    fn validate(&self) -> Result<(), XskError> {
        let invalid = |field, reason| Err(XskError::InvalidConfig { field, reason });
        for (field, size) in [
            ("rx_ring", self.rx_ring),
            ("tx_ring", self.tx_ring),
            ("fill_ring", self.fill_ring),
            ("comp_ring", self.comp_ring),
        ] {
            if !size.is_power_of_two() {
                return invalid(field, "ring sizes must be powers of two");
            }
        }
        if !self.frame_size.is_power_of_two() || self.frame_size < 2048 {
            return invalid("frame_size", "must be a power of two of at least 2048");
        }
        if self.frame_capacity() < HEADERS_LEN + MAX_DATAGRAM {
            return invalid(
                "frame_size",
                "too small for a clubcast datagram and its headers",
            );
        }
        if self.rx_frames == 0 || self.tx_frames == 0 {
            return invalid(
                "rx_frames/tx_frames",
                "both receive and transmit need frames",
            );
        }
        if self.rx_frames > self.fill_ring {
            return invalid(
                "rx_frames",
                "more RX frames than the fill ring can hold; raise fill_ring",
            );
        }
        if self.frames() == u32::MAX {
            return invalid("rx_frames/tx_frames", "too many frames");
        }
        Ok(())
    }
}

/// Why an AF_XDP socket could not be set up.
#[derive(Debug, Error)]
pub enum XskError {
    /// A setting is out of range.
    #[error("invalid AF_XDP setting `{field}`: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// No interface of that name in this network namespace.
    #[error("no interface named `{ifname}` in this network namespace (check `ip link`)")]
    NoSuchInterface {
        /// The name given.
        ifname: String,
    },
    /// Creating the UMEM failed.
    #[error(
        "creating a {mib} MiB UMEM failed (out of memory or locked-memory limit: \
         run as root, raise `ulimit -l`, or use fewer frames): {source}"
    )]
    Umem {
        /// Its size.
        mib: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The process may not create AF_XDP sockets.
    #[error(
        "binding an AF_XDP socket to {ifname} queue {queue} needs root or CAP_NET_RAW+CAP_NET_ADMIN \
         (+CAP_BPF): {source}"
    )]
    Permission {
        /// The interface.
        ifname: String,
        /// The rx queue.
        queue: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another socket holds the queue, or held it a moment ago.
    #[error(
        "interface/queue busy: {ifname} queue {queue} has another XDP socket bound or just \
         released — retry in a moment (or check for a second relay on this queue)"
    )]
    Busy {
        /// The interface.
        ifname: String,
        /// The rx queue.
        queue: u32,
    },
    /// Zero-copy was asked for and the driver cannot do it.
    #[error(
        "{ifname} does not support zero-copy AF_XDP (veth never does): bind in copy or auto mode"
    )]
    ZeroCopyUnsupported {
        /// The interface.
        ifname: String,
    },
    /// The interface has no such rx queue.
    #[error(
        "{ifname} has no rx queue {queue} (see `ethtool -l {ifname}`; a veth has one queue \
         unless created with `numrxqueues`)"
    )]
    NoSuchQueue {
        /// The interface.
        ifname: String,
        /// The rx queue.
        queue: u32,
    },
    /// The kernel refused the socket for another reason.
    #[error("binding an AF_XDP socket to {ifname} queue {queue} in {mode} mode failed: {source}")]
    Bind {
        /// The interface.
        ifname: String,
        /// The rx queue.
        queue: u32,
        /// The mode tried.
        mode: BindMode,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The relay's port and the steering program's differ.
    #[error(
        "the worker serves UDP port {worker} but the steering program steers port {steering}: \
         load the program with the relay's port"
    )]
    PortMismatch {
        /// The worker's port.
        worker: u16,
        /// The program's port.
        steering: u16,
    },
    /// Putting the socket into the XSKMAP failed.
    #[error("registering the AF_XDP socket in the steering program: {0}")]
    Register(#[from] SteerError),
}

/// Counters the kernel keeps for one AF_XDP socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskKernelStats {
    /// Frames dropped for reasons other than a full RX ring or an empty
    /// fill ring.
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid: u64,
    /// Invalid TX descriptors (bad address or length).
    pub tx_invalid: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty: u64,
}

/// An AF_XDP socket bound to one rx queue, with its UMEM, its four rings
/// and the TX free list. Hand it to [`super::Worker::new`].
pub struct XskSocket {
    pub(crate) umem: Umem,
    pub(crate) rx: RxQueue,
    pub(crate) tx: TxQueue,
    pub(crate) fill: FillQueue,
    pub(crate) comp: CompQueue,
    /// Frames owned by user space and free for transmitting.
    pub(crate) tx_free: Vec<FrameDesc>,
    pub(crate) config: XskConfig,
    ifname: String,
    queue: u32,
    mode: BindMode,
}

impl fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSocket")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .field("fd", &self.fd())
            .finish_non_exhaustive()
    }
}

impl XskSocket {
    /// Creates the UMEM, binds a socket to rx queue `queue` of `ifname`
    /// (libxdp loads no program of its own), stocks the fill ring with
    /// `config.rx_frames` frames and keeps `config.tx_frames` for TX.
    pub fn open(ifname: &str, queue: u32, config: &XskConfig) -> Result<Self, XskError> {
        config.validate()?;
        let name = CString::new(ifname).map_err(|_| XskError::NoSuchInterface {
            ifname: ifname.to_owned(),
        })?;
        if nix::net::if_::if_nametoindex(name.as_c_str()).is_err() {
            return Err(XskError::NoSuchInterface {
                ifname: ifname.to_owned(),
            });
        }
        let interface = Interface::new(name);
        match config.bind_mode {
            BindMode::Auto => {
                match Self::bind(ifname, &interface, queue, config, BindMode::ZeroCopy) {
                    Err(XskError::ZeroCopyUnsupported { .. }) | Err(XskError::Bind { .. }) => {
                        Self::bind(ifname, &interface, queue, config, BindMode::Copy)
                    }
                    other => other,
                }
            }
            mode => Self::bind(ifname, &interface, queue, config, mode),
        }
    }

    fn bind(
        ifname: &str,
        interface: &Interface,
        queue: u32,
        config: &XskConfig,
        mode: BindMode,
    ) -> Result<Self, XskError> {
        let ring = |size: u32| {
            QueueSize::new(size).map_err(|_| XskError::InvalidConfig {
                field: "ring size",
                reason: "must be a power of two",
            })
        };
        let frame_size =
            FrameSize::new(config.frame_size).map_err(|_| XskError::InvalidConfig {
                field: "frame_size",
                reason: "must be at least 2048",
            })?;
        let umem_config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(ring(config.fill_ring)?)
            .comp_queue_size(ring(config.comp_ring)?)
            .frame_headroom(0)
            .build()
            .map_err(|_| XskError::InvalidConfig {
                field: "frame_size",
                reason: "must be a power of two larger than the XDP headroom",
            })?;
        let frames = NonZeroU32::new(config.frames()).ok_or(XskError::InvalidConfig {
            field: "rx_frames/tx_frames",
            reason: "no frames",
        })?;
        let (umem, mut descs) =
            Umem::new(umem_config, frames, config.huge_pages).map_err(|err| XskError::Umem {
                mib: config.umem_bytes() >> 20,
                source: os_error(&err),
            })?;

        let mut bind_flags = match mode {
            BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
            BindMode::Copy | BindMode::Auto => BindFlags::XDP_COPY,
        };
        if config.need_wakeup {
            bind_flags |= BindFlags::XDP_USE_NEED_WAKEUP;
        }
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring(config.rx_ring)?)
            .tx_queue_size(ring(config.tx_ring)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind_flags)
            .build();
        // SAFETY: the UMEM was just created and is not shared with any
        // other socket, so the shared-UMEM precondition does not apply (and
        // libxdp's program load is inhibited anyway).
        let created = unsafe { Socket::new(socket_config, &umem, interface, queue) };
        let (tx, rx, rings) = created.map_err(|err| {
            let source = os_error(&err);
            let ifname = ifname.to_owned();
            match source.raw_os_error() {
                Some(libc::EBUSY) => XskError::Busy { ifname, queue },
                Some(libc::EPERM) | Some(libc::EACCES) => XskError::Permission {
                    ifname,
                    queue,
                    source,
                },
                Some(libc::EOPNOTSUPP) if mode == BindMode::ZeroCopy => {
                    XskError::ZeroCopyUnsupported { ifname }
                }
                Some(libc::EINVAL) if !queue_exists(&ifname, queue) => {
                    XskError::NoSuchQueue { ifname, queue }
                }
                Some(libc::ENODEV) | Some(libc::ENXIO) => XskError::NoSuchInterface { ifname },
                _ => XskError::Bind {
                    ifname,
                    queue,
                    mode,
                    source,
                },
            }
        })?;
        let Some((mut fill, comp)) = rings else {
            // Only a shared UMEM comes back without rings, and this one is new.
            return Err(XskError::Bind {
                ifname: ifname.to_owned(),
                queue,
                mode,
                source: io::Error::other("libxdp returned no fill/completion rings"),
            });
        };

        let tx_free = descs.split_off(config.rx_frames as usize);
        // SAFETY: the descriptors come from this UMEM and none is in use:
        // the kernel gets the RX share, user space keeps the TX share.
        let stocked = unsafe { fill.produce(&descs) };
        if stocked != descs.len() {
            return Err(XskError::InvalidConfig {
                field: "rx_frames",
                reason: "the fill ring did not take every RX frame; raise fill_ring",
            });
        }
        Ok(XskSocket {
            umem,
            rx,
            tx,
            fill,
            comp,
            tx_free,
            config: *config,
            ifname: ifname.to_owned(),
            queue,
            mode,
        })
    }

    /// Puts this socket into `program`'s XSKMAP slot for its rx queue, after
    /// checking that the program steers `relay_port`. BLOCKs arriving on the
    /// queue are redirected here from then on, until the socket closes
    /// (the kernel then empties the slot).
    pub fn register(&self, program: &SteeringProgram, relay_port: u16) -> Result<(), XskError> {
        if program.relay_port() != relay_port {
            return Err(XskError::PortMismatch {
                worker: relay_port,
                steering: program.relay_port(),
            });
        }
        program.register_socket(self.queue, self.rx.fd())?;
        Ok(())
    }

    /// The interface the socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The rx queue the socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The mode it was bound in: [`BindMode::Copy`] or
    /// [`BindMode::ZeroCopy`], never `Auto`.
    pub fn bind_mode(&self) -> BindMode {
        self.mode
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &XskConfig {
        &self.config
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// The kernel's counters for this socket (one `getsockopt`).
    pub fn kernel_stats(&self) -> io::Result<XskKernelStats> {
        read_kernel_stats(&self.rx)
    }
}

/// The kernel's counters for the socket behind `rx` (one `getsockopt`).
pub(crate) fn read_kernel_stats(rx: &RxQueue) -> io::Result<XskKernelStats> {
    let s = rx.fd().xdp_statistics()?;
    Ok(XskKernelStats {
        rx_dropped: s.rx_dropped(),
        rx_invalid: s.rx_invalid_descs(),
        tx_invalid: s.tx_invalid_descs(),
        rx_ring_full: s.rx_ring_full(),
        rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
        tx_ring_empty: s.tx_ring_empty_descs(),
    })
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

/// What one TX kick (`sendto` on the socket) said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kick {
    /// The kernel took what it could.
    Done,
    /// The kernel stopped early (copy mode sends at most 32 frames per
    /// call, or the completion ring is full): kick again.
    Again,
    /// The device is busy or out of buffers, or down: try on a later loop.
    Busy,
    /// Another error, with its errno.
    Failed(i32),
}

/// Kicks the TX ring of the AF_XDP socket `fd`: a non-blocking zero-length
/// `sendto`, which in copy mode is what transmits the queued frames.
pub(crate) fn kick_tx(fd: RawFd) -> Kick {
    // SAFETY: a zero-length sendto with no buffer and no address on a
    // socket fd this process owns; the kernel reads no user memory.
    let ret = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if ret >= 0 {
        return Kick::Done;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Kick::Again,
        Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::ENETDOWN) => Kick::Busy,
        Some(errno) => Kick::Failed(errno),
        None => Kick::Failed(0),
    }
}

/// Wakes the kernel's RX side of the AF_XDP socket `fd` after the fill ring
/// was restocked, when the driver asked for it (`need_wakeup`): a
/// non-blocking zero-length `recvfrom`. Errors are transient and ignored;
/// the next loop asks again.
pub(crate) fn kick_rx(fd: RawFd) {
    // SAFETY: a zero-length recvfrom with no buffer and no address on a
    // socket fd this process owns; the kernel writes no user memory.
    let _ = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
}

/// `SO_PREFER_BUSY_POLL` (asm-generic/socket.h; not in every libc).
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
/// `SO_BUSY_POLL_BUDGET` (asm-generic/socket.h).
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Turns on preferred busy polling on the AF_XDP socket `fd`: the kernel
/// busy-polls the queue for up to `usecs` microseconds, `budget` packets
/// at a time, when the worker calls into it, instead of waiting for
/// interrupts (pair it with the `napi_defer_hard_irqs` and
/// `gro_flush_timeout` knobs in `tuning/`).
pub fn set_busy_poll(fd: RawFd, usecs: u32, budget: u32) -> io::Result<()> {
    let set = |opt: libc::c_int, value: libc::c_int| -> io::Result<()> {
        // SAFETY: setsockopt reads exactly size_of::<c_int>() bytes from a
        // live local on a socket fd this process owns.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let clamp = |v: u32| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    set(SO_PREFER_BUSY_POLL, 1)?;
    set(libc::SO_BUSY_POLL, clamp(usecs))?;
    set(SO_BUSY_POLL_BUDGET, clamp(budget))
}

/// Waits up to `timeout_ms` for the AF_XDP socket `fd` to have frames to
/// receive. Errors count as a wake-up.
pub(crate) fn wait_rx(fd: RawFd, timeout_ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd that lives on this stack frame.
    let _ = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
}

/// The OS error inside an xsk-rs error, or the error's text.
fn os_error(err: &(dyn std::error::Error + 'static)) -> io::Error {
    match err
        .source()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error)
    {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::other(err.to_string()),
    }
}

/// Whether `ifname` has rx queue `queue`, from sysfs; true if unknown.
fn queue_exists(ifname: &str, queue: u32) -> bool {
    let dir = format!("/sys/class/net/{ifname}/queues/rx-{queue}");
    match std::fs::metadata(&dir) {
        Ok(_) => true,
        Err(err) => err.kind() != io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_fits_a_datagram() {
        let c = XskConfig::default();
        c.validate().unwrap();
        assert_eq!(c.frames(), 16384);
        assert_eq!(c.umem_bytes(), 32 << 20);
        assert!(c.frame_capacity() >= HEADERS_LEN + MAX_DATAGRAM);
    }

    #[test]
    fn bad_configs_name_the_setting() {
        let bad = |f: fn(&mut XskConfig)| {
            let mut c = XskConfig::default();
            f(&mut c);
            match c.validate() {
                Err(XskError::InvalidConfig { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(bad(|c| c.tx_ring = 1000), "tx_ring");
        assert_eq!(bad(|c| c.frame_size = 1024), "frame_size");
        assert_eq!(bad(|c| c.rx_frames = 9000), "rx_frames");
        assert_eq!(bad(|c| c.tx_frames = 0), "rx_frames/tx_frames");
    }

    #[test]
    fn busy_error_tells_the_operator_to_retry() {
        let e = XskError::Busy {
            ifname: "eth0".into(),
            queue: 3,
        };
        let text = e.to_string();
        assert!(text.contains("interface/queue busy"), "{text}");
        assert!(text.contains("retry in a moment"), "{text}");
    }

    #[test]
    fn missing_interface_is_reported_before_any_kernel_work() {
        let e = XskSocket::open("no-such-if0", 0, &XskConfig::default()).unwrap_err();
        assert!(matches!(e, XskError::NoSuchInterface { .. }), "{e}");
    }
}
