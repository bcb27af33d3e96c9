//! The XDP steering program (`bpf/relay.bpf.c`), loaded and driven from Rust.
//!
//! [`SteeringProgram`] opens the libbpf-rs skeleton that `build.rs` generates,
//! sets the relay's UDP port before load, and then offers what the relay needs:
//! attaching to an interface through a bpf_link ([`XdpAttachment`], detached
//! when dropped, unlike a netlink attachment that outlives the process),
//! the XSKMAP into which the relay puts one AF_XDP socket per rx queue, the
//! per-CPU verdict counters summed into [`SteerCounters`], and
//! BPF_PROG_TEST_RUN on a single frame for fixtures and self-checks.
//!
//! This module owns no AF_XDP socket, UMEM or worker, and parses no clubcast
//! message beyond what the kernel program checks (magic, version, type).
//! Loading and attaching need root, or CAP_BPF with CAP_NET_ADMIN.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{libbpf_sys, MapCore, MapFlags, OpenObject, ProgramInput};
use thiserror::Error;

/// The skeleton libbpf-cargo generates from `bpf/relay.bpf.c` (see `build.rs`).
#[allow(clippy::all, clippy::pedantic, missing_docs, unsafe_op_in_unsafe_fn)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/relay.skel.rs"));
}

use skel::{RelaySkel, RelaySkelBuilder};

/// Rx queues the XSKMAP has slots for (`STEER_MAX_QUEUES` in `bpf/maps.h`).
pub const MAX_QUEUES: u32 = 64;

/// Shortest frame BPF_PROG_TEST_RUN accepts (`ETH_HLEN`): kernel 6.18 also
/// refuses a shorter frame behind a metadata prefix (measured).
const ETH_HLEN: usize = 14;

/// Capability numbers from `linux/capability.h`.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// What an XDP program decided for a frame (`enum xdp_action` in
/// `linux/bpf.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpAction {
    /// The program failed; the frame is dropped and a tracepoint fires.
    Aborted,
    /// Dropped.
    Drop,
    /// Handed to the kernel network stack.
    Pass,
    /// Sent back out of the interface it came in on.
    Tx,
    /// Redirected, here into the AF_XDP socket of the rx queue.
    Redirect,
}

impl XdpAction {
    /// The action for the kernel's numeric code, if it is one.
    pub fn from_raw(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Aborted),
            1 => Some(Self::Drop),
            2 => Some(Self::Pass),
            3 => Some(Self::Tx),
            4 => Some(Self::Redirect),
            _ => None,
        }
    }
}

/// How the program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// Native mode if the driver supports it, generic otherwise.
    #[default]
    Auto,
    /// Native (driver) mode, `XDP_FLAGS_DRV_MODE`: fails if the driver has
    /// no XDP support.
    Native,
    /// Generic (skb) mode, `XDP_FLAGS_SKB_MODE`: works on any interface, after
    /// the kernel has built an skb. On veth it is no slower than native
    /// (measured: DESIGN.md).
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            Self::Auto => 0,
            Self::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            Self::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native (drv)",
            Self::Generic => "generic (skb)",
        })
    }
}

/// The program's verdict counters, summed over CPUs. Every frame the program
/// sees bumps exactly one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteerCounters {
    /// BLOCKs redirected into an AF_XDP socket.
    pub redirected: u64,
    /// Frames that are not IPv4 (ARP, IPv6, VLAN-tagged, ...).
    pub passed_not_ip: u64,
    /// IPv4 packets that are not UDP.
    pub passed_not_udp: u64,
    /// UDP datagrams to a port other than the relay port.
    pub passed_other_port: u64,
    /// clubcast messages other than BLOCK (the control plane) to the relay port.
    pub passed_control: u64,
    /// Frames whose Ethernet, IPv4, UDP or clubcast header is cut short.
    pub passed_truncated: u64,
    /// IPv4 fragments, left to the kernel to reassemble.
    pub passed_fragment: u64,
    /// Relay-port datagrams without the clubcast magic and version.
    pub passed_not_clubcast: u64,
    /// BLOCKs whose rx queue has no AF_XDP socket in the XSKMAP.
    pub passed_no_socket: u64,
    /// Datagrams the sink program ([`SteeringProgram::attach_sink`])
    /// counted and dropped.
    pub sink_dropped: u64,
    /// BLOCKs from senders that are not validated uploaders, dropped by
    /// the sender gate ([`SenderGate`]).
    pub dropped_unknown_sender: u64,
    /// BLOCKs from a validated uploader's address without the block tag
    /// the relay gave it (spoofed), dropped by the sender gate.
    pub dropped_wrong_tag: u64,
}

/// Number of counter slots, in the order of `enum steer_counter` in
/// `bpf/clubcast.h`.
const COUNTER_SLOTS: u32 = 12;

impl SteerCounters {
    fn from_slots(slots: [u64; COUNTER_SLOTS as usize]) -> Self {
        let [redirected, passed_not_ip, passed_not_udp, passed_other_port, passed_control, passed_truncated, passed_fragment, passed_not_clubcast, passed_no_socket, sink_dropped, dropped_unknown_sender, dropped_wrong_tag] =
            slots;
        Self {
            redirected,
            passed_not_ip,
            passed_not_udp,
            passed_other_port,
            passed_control,
            passed_truncated,
            passed_fragment,
            passed_not_clubcast,
            passed_no_socket,
            sink_dropped,
            dropped_unknown_sender,
            dropped_wrong_tag,
        }
    }

    /// Frames passed to the kernel, for any reason.
    pub fn passed(&self) -> u64 {
        self.passed_not_ip
            + self.passed_not_udp
            + self.passed_other_port
            + self.passed_control
            + self.passed_truncated
            + self.passed_fragment
            + self.passed_not_clubcast
            + self.passed_no_socket
    }

    /// Frames the steering program has seen.
    pub fn total(&self) -> u64 {
        self.redirected + self.passed() + self.dropped()
    }

    /// BLOCKs the sender gate dropped, for either reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_unknown_sender + self.dropped_wrong_tag
    }

    /// Counts since `earlier`, a reading of the same program.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            redirected: self.redirected.saturating_sub(earlier.redirected),
            passed_not_ip: self.passed_not_ip.saturating_sub(earlier.passed_not_ip),
            passed_not_udp: self.passed_not_udp.saturating_sub(earlier.passed_not_udp),
            passed_other_port: self
                .passed_other_port
                .saturating_sub(earlier.passed_other_port),
            passed_control: self.passed_control.saturating_sub(earlier.passed_control),
            passed_truncated: self
                .passed_truncated
                .saturating_sub(earlier.passed_truncated),
            passed_fragment: self.passed_fragment.saturating_sub(earlier.passed_fragment),
            passed_not_clubcast: self
                .passed_not_clubcast
                .saturating_sub(earlier.passed_not_clubcast),
            passed_no_socket: self
                .passed_no_socket
                .saturating_sub(earlier.passed_no_socket),
            sink_dropped: self.sink_dropped.saturating_sub(earlier.sink_dropped),
            dropped_unknown_sender: self
                .dropped_unknown_sender
                .saturating_sub(earlier.dropped_unknown_sender),
            dropped_wrong_tag: self
                .dropped_wrong_tag
                .saturating_sub(earlier.dropped_wrong_tag),
        }
    }
}

/// Why the steering program could not be loaded, attached or read.
#[derive(Debug, Error)]
pub enum SteerError {
    /// Port 0 cannot be a relay port.
    #[error("relay port 0 cannot be steered: give the relay a UDP port in 1..=65535")]
    InvalidPort,
    /// The process lacks the privileges BPF needs.
    #[error(
        "{action} needs root or CAP_BPF+CAP_NET_ADMIN (run as root, or grant them with \
         `setcap cap_bpf,cap_net_admin+ep` on the binary): {source}"
    )]
    Permission {
        /// What was being done.
        action: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// libbpf could not parse the program embedded in this binary.
    #[error("opening the embedded XDP program failed (libbpf rejected the object): {0}")]
    Open(#[source] libbpf_rs::Error),
    /// The kernel refused to load the program.
    #[error(
        "the kernel refused the XDP steering program (a kernel without XDP/XSKMAP \
         support, or a verifier rejection; set LIBBPF_LOG_LEVEL or run \
         `bpftool prog load` for the verifier log): {0}"
    )]
    Load(#[source] libbpf_rs::Error),
    /// No interface has that index (in this network namespace).
    #[error(
        "no interface with index {ifindex} in this network namespace \
         (check `ip link`; ifindexes change when an interface is re-created)"
    )]
    NoSuchInterface {
        /// The index asked for.
        ifindex: u32,
    },
    /// The interface already runs an XDP program in that mode.
    #[error(
        "interface {ifindex} already has an XDP program in {mode} mode: detach it \
         (`ip link set dev <name> xdp off`, or stop the process holding its link) and retry"
    )]
    InterfaceBusy {
        /// The interface.
        ifindex: u32,
        /// The mode asked for.
        mode: XdpMode,
    },
    /// The driver does not support the mode asked for.
    #[error(
        "interface {ifindex} does not support XDP in {mode} mode: use generic (skb) mode \
         for this driver"
    )]
    ModeUnsupported {
        /// The interface.
        ifindex: u32,
        /// The mode asked for.
        mode: XdpMode,
    },
    /// Attaching failed for another reason.
    #[error("attaching the XDP program to interface {ifindex} in {mode} mode failed: {source}")]
    Attach {
        /// The interface.
        ifindex: u32,
        /// The mode asked for.
        mode: XdpMode,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// Attaching the sink program at tc ingress failed.
    #[error("attaching the sink program to interface {ifindex} at tc ingress failed: {source}")]
    AttachSink {
        /// The interface.
        ifindex: u32,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// An rx queue beyond the XSKMAP's slots.
    #[error(
        "rx queue {queue} is beyond the XSKMAP's {MAX_QUEUES} slots: reduce the \
         interface's queues (`ethtool -L`) or raise STEER_MAX_QUEUES in bpf/maps.h"
    )]
    QueueOutOfRange {
        /// The queue asked for.
        queue: u32,
    },
    /// A map operation failed.
    #[error("{op} on BPF map `{map}` failed: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// What was being done.
        op: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

/// The steering program's sender gate: the relay's validated uploaders in
/// the `senders` map, each with the block tag the relay gave it, and the
/// switch that makes the program drop a BLOCK from anyone else or without
/// its sender's tag (`gate`). The control plane owns it and keeps the map
/// equal to the addresses it downloads from.
pub struct SenderGate {
    senders: libbpf_rs::MapHandle,
    gate: libbpf_rs::MapHandle,
    allowed: BTreeMap<SocketAddrV4, u64>,
    errors: u64,
}

impl fmt::Debug for SenderGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderGate")
            .field("allowed", &self.allowed.len())
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl SenderGate {
    /// Turns the gate on (BLOCKs from senders not allowed are dropped) or
    /// off.
    pub fn set_on(&mut self, on: bool) -> Result<(), SteerError> {
        self.gate
            .update(
                &0u32.to_ne_bytes(),
                &u32::from(on).to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(|source| SteerError::Map {
                map: "gate",
                op: "switching the sender gate",
                source,
            })
    }

    /// Makes `allowed` the senders whose BLOCKs pass, each with the block
    /// tag its BLOCKs must carry: adds what is new or changed, removes what
    /// is gone. A map update that fails is counted and tried again on the
    /// next call.
    pub fn allow_only(&mut self, allowed: &BTreeMap<SocketAddrV4, u64>) {
        let gone: Vec<SocketAddrV4> = self
            .allowed
            .keys()
            .filter(|a| !allowed.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            match self.senders.delete(&sender_key(addr)) {
                Ok(()) => {}
                Err(err) if err.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(_) => {
                    self.errors += 1;
                    continue;
                }
            }
            self.allowed.remove(&addr);
        }
        for (&addr, &tag) in allowed {
            if self.allowed.get(&addr) == Some(&tag) {
                continue;
            }
            // The value is the tag's bytes as they sit in a BLOCK.
            match self
                .senders
                .update(&sender_key(addr), &tag.to_be_bytes(), MapFlags::ANY)
            {
                Ok(()) => {
                    self.allowed.insert(addr, tag);
                }
                Err(_) => self.errors += 1,
            }
        }
    }

    /// Senders allowed now, and map updates that failed so far.
    pub fn counts(&self) -> (usize, u64) {
        (self.allowed.len(), self.errors)
    }
}

/// The `struct sender_key` of `bpf/maps.h` for `addr`: address and port in
/// network order, then two bytes of padding.
fn sender_key(addr: SocketAddrV4) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&addr.ip().octets());
    key[4..6].copy_from_slice(&addr.port().to_be_bytes());
    key
}

/// Whether this process holds what loading and attaching XDP programs need:
/// CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN in its effective set. Root
/// has them all. Reads `/proc/self/status`; false if it cannot.
pub fn has_bpf_privileges() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let Some(caps) = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    else {
        return false;
    };
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && has(CAP_NET_ADMIN)
}

/// The relay's XDP steering program, loaded into the kernel for one relay
/// port. Attach it with [`SteeringProgram::attach`]; fill its XSKMAP with
/// [`SteeringProgram::register_socket`]. Dropping it unloads the program
/// unless an [`XdpAttachment`] still holds it.
pub struct SteeringProgram {
    // Declared before `storage` and dropped by hand before it: the skeleton
    // borrows the object that `storage` holds.
    skel: ManuallyDrop<RelaySkel<'static>>,
    storage: NonNull<MaybeUninit<OpenObject>>,
    relay_port: u16,
}

// SAFETY: `storage` is a uniquely owned heap allocation (a leaked Box) that
// only `skel` refers to, so moving both to another thread together is sound;
// the skeleton type itself is `Send`.
unsafe impl Send for SteeringProgram {}

/// What the kernel counted for a program on live traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramRunStats {
    /// Runs (one per received frame for an XDP program).
    pub runs: u64,
    /// Their total time, ns.
    pub run_time_ns: u64,
}

/// While held, the kernel keeps run statistics for every BPF program
/// (BPF_ENABLE_STATS: scoped to this descriptor, unlike the global
/// `kernel.bpf_stats_enabled` sysctl, and gone when it is dropped).
#[derive(Debug)]
pub struct RunStatsGuard {
    _fd: std::os::fd::OwnedFd,
}

impl RunStatsGuard {
    /// Turns run statistics on until the guard is dropped.
    pub fn enable() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall wrapper; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        let _fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(RunStatsGuard { _fd })
    }
}

impl SteeringProgram {
    /// Opens the embedded program, sets `relay_port` (host order) as the UDP
    /// port whose BLOCKs are steered, and loads it into the kernel. Nothing is
    /// attached yet.
    pub fn load(relay_port: u16) -> Result<Self, SteerError> {
        if relay_port == 0 {
            return Err(SteerError::InvalidPort);
        }
        let storage = NonNull::from(Box::leak(Box::new(MaybeUninit::<OpenObject>::uninit())));
        // SAFETY: `storage` is valid and unaliased until it is freed, which
        // happens only after the skeleton borrowing it is gone: below on
        // failure (`open_and_load` has dropped every partial skeleton by
        // then) or in `Drop`. The 'static lifetime never escapes this type.
        let object: &'static mut MaybeUninit<OpenObject> = unsafe { &mut *storage.as_ptr() };
        let loaded = open_and_load(object, relay_port);
        match loaded {
            Ok(skel) => {
                // The Rust mirrors of bpf/maps.h and bpf/clubcast.h.
                debug_assert_eq!(skel.maps.xsks.max_entries(), MAX_QUEUES);
                debug_assert_eq!(skel.maps.counters.max_entries(), COUNTER_SLOTS);
                Ok(Self {
                    skel: ManuallyDrop::new(skel),
                    storage,
                    relay_port,
                })
            }
            Err(err) => {
                // SAFETY: nothing borrows `storage` any more (see above) and it
                // came from `Box::leak`.
                drop(unsafe { Box::from_raw(storage.as_ptr()) });
                Err(err)
            }
        }
    }

    /// The UDP port (host order) whose BLOCKs this program steers.
    pub fn relay_port(&self) -> u16 {
        self.relay_port
    }

    /// Attaches the program to interface `ifindex` in `mode` through a
    /// bpf_link. The program stays attached while the returned
    /// [`XdpAttachment`] lives, even if this handle is dropped first, and is
    /// detached when it drops or the process exits.
    pub fn attach(&self, ifindex: u32, mode: XdpMode) -> Result<XdpAttachment, SteerError> {
        self.attach_fd(self.skel.progs.steer_blocks.as_fd(), ifindex, mode)
    }

    /// Attaches the object's other program, `sink_port`, instead, at tc
    /// ingress (a tcx bpf_link): the far end of a bench or test link,
    /// which counts ([`SteerCounters::sink_dropped`]) and drops every UDP
    /// datagram to this program's port and passes the rest. Not for a
    /// relay. Detached when the returned link drops.
    pub fn attach_sink(&self, ifindex: u32) -> Result<OwnedFd, SteerError> {
        let prog = self.skel.progs.sink_port.as_fd();
        let target = i32::try_from(ifindex).map_err(|_| SteerError::NoSuchInterface { ifindex })?;
        link_create(prog, target, libbpf_sys::BPF_TCX_INGRESS, 0)
            .map_err(|source| SteerError::AttachSink { ifindex, source })
    }

    fn attach_fd(
        &self,
        prog: BorrowedFd<'_>,
        ifindex: u32,
        mode: XdpMode,
    ) -> Result<XdpAttachment, SteerError> {
        let target = i32::try_from(ifindex).map_err(|_| SteerError::NoSuchInterface { ifindex })?;
        let link =
            link_create(prog, target, libbpf_sys::BPF_XDP, mode.flags()).map_err(|source| {
                match source.raw_os_error() {
                    Some(nix::libc::EPERM) | Some(nix::libc::EACCES) => SteerError::Permission {
                        action: "attaching an XDP program",
                        source,
                    },
                    // The kernel answers EINVAL, not ENODEV, for an unknown ifindex.
                    Some(nix::libc::ENODEV) | Some(nix::libc::EINVAL)
                        if !interface_exists(ifindex) =>
                    {
                        SteerError::NoSuchInterface { ifindex }
                    }
                    Some(nix::libc::EBUSY) | Some(nix::libc::EEXIST) => {
                        SteerError::InterfaceBusy { ifindex, mode }
                    }
                    Some(nix::libc::EOPNOTSUPP) => SteerError::ModeUnsupported { ifindex, mode },
                    _ => SteerError::Attach {
                        ifindex,
                        mode,
                        source,
                    },
                }
            })?;
        Ok(XdpAttachment {
            link,
            ifindex,
            mode,
        })
    }

    /// The XSKMAP (`xsks`), keyed by rx queue index. AF_XDP sockets go in
    /// through [`SteeringProgram::register_socket`]; the fd is here for
    /// tools that want to manage the map themselves.
    pub fn xsk_map_fd(&self) -> BorrowedFd<'_> {
        self.skel.maps.xsks.as_fd()
    }

    /// Puts the AF_XDP socket `xsk` into the XSKMAP slot of rx queue `queue`,
    /// replacing any socket there: from now on BLOCKs arriving on that queue
    /// are redirected into it. The socket must be bound to that queue of the
    /// interface the program is attached to; the kernel drops what is
    /// redirected into a socket bound elsewhere (the socket's `rx_dropped`).
    /// Anything but an AF_XDP socket is refused.
    pub fn register_socket(&self, queue: u32, xsk: &impl AsRawFd) -> Result<(), SteerError> {
        if queue >= MAX_QUEUES {
            return Err(SteerError::QueueOutOfRange { queue });
        }
        let fd = xsk.as_raw_fd() as u32;
        self.skel
            .maps
            .xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| SteerError::Map {
                map: "xsks",
                op: "inserting an AF_XDP socket",
                source,
            })
    }

    /// Empties the XSKMAP slot of rx queue `queue`: BLOCKs on that queue go
    /// to the kernel again. Emptying an empty slot is not an error.
    pub fn unregister_socket(&self, queue: u32) -> Result<(), SteerError> {
        if queue >= MAX_QUEUES {
            return Err(SteerError::QueueOutOfRange { queue });
        }
        match self.skel.maps.xsks.delete(&queue.to_ne_bytes()) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SteerError::Map {
                map: "xsks",
                op: "removing an AF_XDP socket",
                source,
            }),
        }
    }

    /// The sender gate of this program: its `senders` and `gate` maps,
    /// held by their own fds, so it can move to the control plane's
    /// thread. The gate starts off.
    pub fn sender_gate(&self) -> Result<SenderGate, SteerError> {
        let handle = |map, name| {
            libbpf_rs::MapHandle::try_from(map).map_err(|source| SteerError::Map {
                map: name,
                op: "opening the sender gate",
                source,
            })
        };
        Ok(SenderGate {
            senders: handle(&self.skel.maps.senders, "senders")?,
            gate: handle(&self.skel.maps.gate, "gate")?,
            allowed: BTreeMap::new(),
            errors: 0,
        })
    }

    /// Reads the per-CPU verdict counters and sums them over CPUs.
    pub fn counters(&self) -> Result<SteerCounters, SteerError> {
        let map = &self.skel.maps.counters;
        let mut slots = [0u64; COUNTER_SLOTS as usize];
        for (index, slot) in (0..COUNTER_SLOTS).zip(slots.iter_mut()) {
            let per_cpu = map
                .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
                .map_err(|source| SteerError::Map {
                    map: "counters",
                    op: "reading the verdict counters",
                    source,
                })?
                .unwrap_or_default();
            *slot = per_cpu
                .iter()
                .filter_map(|bytes| bytes.get(..8)?.try_into().ok())
                .map(u64::from_ne_bytes)
                .fold(0u64, u64::wrapping_add);
        }
        Ok(SteerCounters::from_slots(slots))
    }

    /// Runs the program once on `frame` (an Ethernet frame) with
    /// BPF_PROG_TEST_RUN and returns its verdict. The run counts like a real
    /// frame in [`SteeringProgram::counters`]. It happens on rx queue 0 of
    /// this namespace's loopback device, so a BLOCK is redirected only if the
    /// XSKMAP holds a socket for queue 0; the redirect itself is not carried
    /// out. The kernel refuses frames shorter than an Ethernet header (14
    /// bytes), even behind a metadata prefix: those fail with
    /// [`io::ErrorKind::InvalidInput`] before reaching the kernel.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<XdpAction> {
        self.test_run_prog(&self.skel.progs.steer_blocks, frame)
    }

    /// The kernel's run statistics for the steering program on live
    /// traffic: runs, and their total time. The kernel counts only while
    /// some [`RunStatsGuard`] is held (both read 0 otherwise).
    pub fn run_stats(&self) -> io::Result<ProgramRunStats> {
        use std::os::fd::{AsFd, AsRawFd};
        let fd = self.skel.progs.steer_blocks.as_fd().as_raw_fd();
        let mut info = libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: `info` is a writable bpf_prog_info of `len` bytes, and
        // `fd` is the program's open descriptor.
        let rc =
            unsafe { libbpf_sys::bpf_obj_get_info_by_fd(fd, (&raw mut info).cast(), &mut len) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(ProgramRunStats {
            runs: info.run_cnt,
            run_time_ns: info.run_time_ns,
        })
    }

    /// The kernel's mean time for one run of the steering program on
    /// `frame`, over `repeat` runs of BPF_PROG_TEST_RUN (a measurement, for
    /// benches and figures; the runs count in the counters).
    pub fn time_run(&self, frame: &[u8], repeat: u32) -> io::Result<std::time::Duration> {
        if frame.len() < ETH_HLEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "BPF_PROG_TEST_RUN needs at least an Ethernet header",
            ));
        }
        let input = ProgramInput {
            data_in: Some(frame),
            repeat: repeat.max(1),
            ..Default::default()
        };
        let output = self
            .skel
            .progs
            .steer_blocks
            .test_run(input)
            .map_err(to_io_error)?;
        Ok(output.duration)
    }

    /// Sends `count` copies of `frame` (an Ethernet frame) out of the
    /// interface `ifindex` of the calling thread's network namespace, as
    /// xdp_frames: BPF_PROG_TEST_RUN in live-frames mode runs the
    /// `inject_frames` program, which redirects each. On veth they reach
    /// the peer's XDP program as a NIC driver's frames would, without the
    /// copy veth makes of a socket's skb. A traffic source for tests and
    /// benches; the relay never calls it.
    pub fn inject(&mut self, ifindex: u32, frame: &[u8], count: u32) -> io::Result<()> {
        if frame.len() < ETH_HLEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot inject a {}-byte frame: shorter than an Ethernet header",
                    frame.len()
                ),
            ));
        }
        let bss =
            self.skel.maps.bss_data.as_deref_mut().ok_or_else(|| {
                io::Error::other("the program's .bss section is not memory-mapped")
            })?;
        bss.inject_ifindex = ifindex;
        let input = ProgramInput {
            data_in: Some(frame),
            repeat: count.max(1),
            flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            ..Default::default()
        };
        self.skel
            .progs
            .inject_frames
            .test_run(input)
            .map_err(to_io_error)?;
        Ok(())
    }

    /// Runs the sink program (a tc program) once on `frame` with
    /// BPF_PROG_TEST_RUN: `true` if it dropped the frame (TC_ACT_SHOT),
    /// `false` if it passed it (TC_ACT_OK).
    pub fn test_run_sink(&self, frame: &[u8]) -> io::Result<bool> {
        let code = self.test_run_raw(&self.skel.progs.sink_port, frame)?;
        match code {
            0 => Ok(false),
            2 => Ok(true),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the sink program returned unknown tc verdict {other}"),
            )),
        }
    }

    fn test_run_prog(
        &self,
        prog: &libbpf_rs::ProgramMut<'_>,
        frame: &[u8],
    ) -> io::Result<XdpAction> {
        let code = self.test_run_raw(prog, frame)?;
        XdpAction::from_raw(code).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("XDP program returned unknown action {code}"),
            )
        })
    }

    fn test_run_raw(&self, prog: &libbpf_rs::ProgramMut<'_>, frame: &[u8]) -> io::Result<u32> {
        if frame.len() < ETH_HLEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "BPF_PROG_TEST_RUN needs at least an Ethernet header ({ETH_HLEN} bytes), \
                     got a {}-byte frame",
                    frame.len()
                ),
            ));
        }
        let input = ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        };
        let output = prog.test_run(input).map_err(to_io_error)?;
        Ok(output.return_value)
    }
}

/// A bpf_link attaching `prog` to interface `target` as `attach_type` with
/// `flags`; the program stays attached while the returned fd is open.
fn link_create(
    prog: BorrowedFd<'_>,
    target: i32,
    attach_type: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        flags,
        ..Default::default()
    };
    // SAFETY: `prog` is an open program fd and `opts` is a fully
    // initialised options struct whose `sz` is its own size.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), target, attach_type, &opts) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: bpf_link_create returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Drop for SteeringProgram {
    fn drop(&mut self) {
        // SAFETY: `skel` is dropped exactly once, here, and then `storage`,
        // which came from `Box::leak` in `load` and which nothing borrows any
        // more, is freed.
        unsafe {
            ManuallyDrop::drop(&mut self.skel);
            drop(Box::from_raw(self.storage.as_ptr()));
        }
    }
}

impl fmt::Debug for SteeringProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SteeringProgram")
            .field("relay_port", &self.relay_port)
            .finish_non_exhaustive()
    }
}

/// The steering program attached to one interface through a bpf_link.
/// Dropping it detaches the program; so does the process exiting.
#[derive(Debug)]
pub struct XdpAttachment {
    link: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpAttachment {
    /// The interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode asked for at attach time.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The bpf_link's fd, for pinning or inspection (`bpftool link`).
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }
}

/// Whether this network namespace has an interface with index `ifindex`.
/// An empty name counts as none: nix 0.32's `if_indextoname` misses the NULL
/// that libc returns for an unknown index and hands back an empty name.
fn interface_exists(ifindex: u32) -> bool {
    nix::net::if_::if_indextoname(ifindex).is_ok_and(|name| !name.as_bytes().is_empty())
}

/// Opens the skeleton into `object`, sets the relay port (host order) in its
/// read-only data and loads it. On failure every partial skeleton has been
/// dropped when this returns, so `object`'s storage can be freed.
fn open_and_load(
    object: &'static mut MaybeUninit<OpenObject>,
    relay_port: u16,
) -> Result<RelaySkel<'static>, SteerError> {
    let mut open = RelaySkelBuilder::default()
        .open(object)
        .map_err(|err| classify(err, "opening the XDP program", SteerError::Open))?;
    let rodata = open.maps.rodata_data.as_deref_mut().ok_or_else(|| {
        SteerError::Open(libbpf_rs::Error::from(io::Error::other(
            "the program's .rodata section is not memory-mapped",
        )))
    })?;
    rodata.relay_port = relay_port.to_be();
    open.load()
        .map_err(|err| classify(err, "loading the XDP program", SteerError::Load))
}

/// Turns a libbpf error into a [`SteerError`]: a permission error becomes
/// [`SteerError::Permission`] when this process lacks the capabilities
/// (with them, EPERM/EACCES comes from the verifier), others go to `wrap`.
fn classify(
    err: libbpf_rs::Error,
    action: &'static str,
    wrap: fn(libbpf_rs::Error) -> SteerError,
) -> SteerError {
    if err.kind() == libbpf_rs::ErrorKind::PermissionDenied && !has_bpf_privileges() {
        SteerError::Permission {
            action,
            source: to_io_error(err),
        }
    } else {
        wrap(err)
    }
}

fn to_io_error(err: libbpf_rs::Error) -> io::Error {
    use libbpf_rs::ErrorKind as K;
    let kind = match err.kind() {
        K::NotFound => io::ErrorKind::NotFound,
        K::PermissionDenied => io::ErrorKind::PermissionDenied,
        K::AlreadyExists => io::ErrorKind::AlreadyExists,
        K::WouldBlock => io::ErrorKind::WouldBlock,
        K::InvalidInput => io::ErrorKind::InvalidInput,
        K::InvalidData => io::ErrorKind::InvalidData,
        K::TimedOut => io::ErrorKind::TimedOut,
        K::Interrupted => io::ErrorKind::Interrupted,
        K::Unsupported => io::ErrorKind::Unsupported,
        K::UnexpectedEof => io::ErrorKind::UnexpectedEof,
        K::OutOfMemory => io::ErrorKind::OutOfMemory,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_kernel_numbering() {
        assert_eq!(XdpAction::from_raw(0), Some(XdpAction::Aborted));
        assert_eq!(XdpAction::from_raw(2), Some(XdpAction::Pass));
        assert_eq!(XdpAction::from_raw(4), Some(XdpAction::Redirect));
        assert_eq!(XdpAction::from_raw(5), None);
    }

    #[test]
    fn counters_sum_and_subtract_by_slot() {
        let later = SteerCounters::from_slots([5, 1, 1, 1, 1, 1, 1, 1, 1, 7, 2, 3]);
        let earlier = SteerCounters::from_slots([2, 0, 1, 0, 0, 0, 0, 0, 0, 4, 1, 1]);
        assert_eq!(later.passed(), 8);
        assert_eq!(later.dropped(), 5);
        assert_eq!(
            later.total(),
            18,
            "the sink's drops are not the steering program's; the gate's are"
        );
        let delta = later.since(&earlier);
        assert_eq!(delta.redirected, 3);
        assert_eq!(delta.passed_not_udp, 0);
        assert_eq!(delta.sink_dropped, 3);
        assert_eq!(delta.dropped_unknown_sender, 1);
        assert_eq!(delta.dropped_wrong_tag, 2);
        assert_eq!(delta.total(), 13);
    }

    #[test]
    fn port_zero_is_refused_before_touching_the_kernel() {
        assert!(matches!(
            SteeringProgram::load(0),
            Err(SteerError::InvalidPort)
        ));
    }
}
