//! The relay's XDP steering program (`bpf/relay.bpf.c`) on crafted frames.
//!
//! Most tests run the program with BPF_PROG_TEST_RUN through
//! `SteeringProgram::test_run`: one frame, one verdict, and exactly one
//! counter slot bumped. A test run happens on rx queue 0 of the loopback
//! device and does not carry out a redirect, so a BLOCK comes back as
//! XDP_REDIRECT only when the XSKMAP holds a socket for queue 0; with the map
//! empty, `bpf_redirect_map`'s fallback makes it XDP_PASS, counted as
//! `passed_no_socket`. The tests that need a real AF_XDP socket, an interface
//! or traffic run on a thread inside a private network namespace with a veth
//! pair: the namespace and its interfaces vanish with the thread, even when a
//! test fails, so nothing is left on the host.
//!
//! Checksums are not the program's business: a BLOCK with a bad UDP checksum
//! is steered like any other, and the worker that receives it checks it.
//!
//! These tests need root (or CAP_BPF+CAP_NET_ADMIN, plus CAP_SYS_ADMIN for
//! the namespace tests). Without it they fail when `CI=true` and otherwise
//! print `SKIPPED` with the reason and return.

#[path = "support/netns.rs"]
mod netns;

use netns::ip;
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use clubcast::relay::{SteerCounters, SteerError, SteeringProgram, XdpAction, XdpMode};
use clubcast::wire::VERSION;
use nix::libc;
use xsk_rs::config::{LibxdpFlags, SocketConfig, UmemConfig};
use xsk_rs::{FrameDesc, Socket, Umem};

/// The port the program under test steers.
const RELAY_PORT: u16 = 7400;
/// A neighbouring UDP port that is not the relay's.
const OTHER_PORT: u16 = 7401;
/// Message type codes (`clubcast::wire::MessageType`).
const BLOCK: u8 = 0x40;
const CONTROL_TYPES: [(u8, &str); 6] = [
    (0x01, "JOIN"),
    (0x03, "HEARTBEAT"),
    (0x12, "PING"),
    (0x20, "CONNECT"),
    (0x30, "HAVE"),
    (0x31, "BITFIELD"),
];

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// IPv4 "more fragments" flag in the flags/offset field.
const IP_MF: u16 = 0x2000;

/// Addresses of the veth pair in the namespace tests: the relay's end (A)
/// and the sender's end (B).
const MAC_A: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0x0b];
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

// ---------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------

macro_rules! require_privileges {
    ($name:literal) => {
        if !netns::privileged($name, "loading XDP programs needs root or CAP_BPF+CAP_NET_ADMIN (run `sudo -E cargo test --test xdp_steer`)") {
            return;
        }
    };
}

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/// An Ethernet + IPv4 + UDP frame under construction, correct by default.
#[derive(Clone)]
struct Ipv4Frame {
    ihl_options: Vec<u8>,
    protocol: u8,
    flags_offset: u16,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: Vec<u8>,
    bad_udp_checksum: bool,
}

impl Ipv4Frame {
    /// A UDP datagram carrying `payload` to `dst_port`.
    fn udp(dst_port: u16, payload: Vec<u8>) -> Self {
        Self {
            ihl_options: Vec::new(),
            protocol: IPPROTO_UDP,
            flags_offset: 0,
            dst_mac: MAC_A,
            src_mac: MAC_B,
            src: IP_B,
            dst: IP_A,
            src_port: 50_000,
            dst_port,
            payload,
            bad_udp_checksum: false,
        }
    }

    /// A BLOCK to `dst_port`.
    fn block(dst_port: u16) -> Self {
        Self::udp(dst_port, clubcast_message(BLOCK, 64))
    }

    fn build(&self) -> Vec<u8> {
        assert_eq!(
            self.ihl_options.len() % 4,
            0,
            "IPv4 options are whole words"
        );
        let ip_len = IPV4_LEN + self.ihl_options.len();
        let udp_len = UDP_LEN + self.payload.len();
        let mut f = Vec::with_capacity(ETH_LEN + ip_len + udp_len);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());

        let ip_start = f.len();
        f.push(0x40 | (ip_len / 4) as u8);
        f.push(0);
        f.extend_from_slice(&((ip_len + udp_len) as u16).to_be_bytes());
        f.extend_from_slice(&0x1234u16.to_be_bytes());
        f.extend_from_slice(&self.flags_offset.to_be_bytes());
        f.push(64);
        f.push(self.protocol);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&self.ihl_options);
        let ip_sum = internet_checksum(&f[ip_start..], 0);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());

        let udp_start = f.len();
        f.extend_from_slice(&self.src_port.to_be_bytes());
        f.extend_from_slice(&self.dst_port.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.payload);
        let mut pseudo = 0u32;
        for pair in self
            .src
            .octets()
            .chunks(2)
            .chain(self.dst.octets().chunks(2))
        {
            pseudo += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        pseudo += u32::from(self.protocol) + udp_len as u32;
        let mut udp_sum = internet_checksum(&f[udp_start..], pseudo);
        if udp_sum == 0 {
            udp_sum = 0xffff;
        }
        if self.bad_udp_checksum {
            udp_sum ^= 0x5a5a;
        }
        f[udp_start + 6..udp_start + 8].copy_from_slice(&udp_sum.to_be_bytes());
        f
    }
}

/// RFC 1071 ones' complement sum of `bytes`, starting from `initial`.
fn internet_checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A clubcast datagram: magic, the wire version, `message_type`, then `body_len`
/// filler bytes (the program reads only the header).
fn clubcast_message(message_type: u8, body_len: usize) -> Vec<u8> {
    let mut m = vec![0xCC, VERSION, message_type];
    m.extend((0..body_len).map(|i| i as u8));
    m
}

/// An ARP request (RFC 826) for IP_A.
fn arp_request() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&IP_B.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&IP_A.octets());
    f
}

/// An IPv6 UDP datagram carrying a BLOCK to the relay port.
fn ipv6_block() -> Vec<u8> {
    let payload = clubcast_message(BLOCK, 64);
    let udp_len = (UDP_LEN + payload.len()) as u16;
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.push(IPPROTO_UDP);
    f.push(64);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&50_000u16.to_be_bytes());
    f.extend_from_slice(&RELAY_PORT.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

// ---------------------------------------------------------------------------
// Running frames
// ---------------------------------------------------------------------------

fn load() -> SteeringProgram {
    SteeringProgram::load(RELAY_PORT).expect("load the steering program")
}

/// Runs `frame` once and returns the verdict and the counters it moved.
fn run(prog: &SteeringProgram, frame: &[u8]) -> (XdpAction, SteerCounters) {
    let before = prog.counters().expect("read counters");
    let action = prog.test_run(frame).expect("BPF_PROG_TEST_RUN");
    let after = prog.counters().expect("read counters");
    (action, after.since(&before))
}

/// Asserts that `frame` is passed and counted in exactly the slot `pick`
/// selects.
fn assert_passed_as(
    prog: &SteeringProgram,
    frame: &[u8],
    what: &str,
    pick: fn(&SteerCounters) -> u64,
) {
    let (action, delta) = run(prog, frame);
    assert_eq!(action, XdpAction::Pass, "{what}: verdict");
    assert_eq!(pick(&delta), 1, "{what}: counted in its slot: {delta:?}");
    assert_eq!(delta.total(), 1, "{what}: counted once: {delta:?}");
}

// ---------------------------------------------------------------------------
// BPF_PROG_TEST_RUN fixtures
// ---------------------------------------------------------------------------

#[test]
fn block_to_relay_port_without_a_socket_falls_back_to_pass() {
    require_privileges!("block_to_relay_port_without_a_socket_falls_back_to_pass");
    let prog = load();
    assert_passed_as(
        &prog,
        &Ipv4Frame::block(RELAY_PORT).build(),
        "BLOCK, empty XSKMAP",
        |c| c.passed_no_socket,
    );
}

/// The sender gate: off, a BLOCK from anyone is steered as before; on, a
/// BLOCK from a sender the control plane did not allow is dropped here and
/// counted, one from an allowed sender with the block tag the relay gave
/// it goes on, one under its address with another tag (or cut before the
/// tag) is dropped and counted apart, control messages from anyone still
/// reach the kernel, and a sender taken off the set is dropped again.
#[test]
fn the_sender_gate_drops_blocks_from_senders_not_allowed() {
    require_privileges!("the_sender_gate_drops_blocks_from_senders_not_allowed");
    let prog = load();
    let mut gate = prog.sender_gate().expect("the sender gate");
    let block = Ipv4Frame::block(RELAY_PORT);
    let sender = std::net::SocketAddrV4::new(block.src, block.src_port);
    assert_passed_as(&prog, &block.build(), "gate off", |c| c.passed_no_socket);
    gate.set_on(true).expect("gate on");
    let (action, delta) = run(&prog, &block.build());
    assert_eq!(action, XdpAction::Drop, "unknown sender: {delta:?}");
    assert_eq!((delta.dropped_unknown_sender, delta.total()), (1, 1));
    let control = Ipv4Frame::udp(RELAY_PORT, clubcast_message(0x12, 16)).build();
    assert_passed_as(&prog, &control, "PING from anyone", |c| c.passed_control);
    // The body counts up from 0: flags 0, then tag bytes 1..=8.
    let tag = u64::from_be_bytes([1, 2, 3, 4, 5, 6, 7, 8]);
    gate.allow_only(&BTreeMap::from([(sender, tag + 1)]));
    let (action, delta) = run(&prog, &block.build());
    assert_eq!(action, XdpAction::Drop, "spoofed tag: {delta:?}");
    assert_eq!((delta.dropped_wrong_tag, delta.total()), (1, 1));
    let mut cut = block.clone();
    cut.payload.truncate(3 + 1 + 7);
    let (action, delta) = run(&prog, &cut.build());
    assert_eq!(action, XdpAction::Drop, "cut before its tag: {delta:?}");
    assert_eq!(delta.dropped_wrong_tag, 1);
    gate.allow_only(&BTreeMap::from([(sender, tag)]));
    assert_passed_as(&prog, &block.build(), "allowed sender", |c| {
        c.passed_no_socket
    });
    // Another port of the same address is another sender.
    let mut other = Ipv4Frame::block(RELAY_PORT);
    other.src_port += 1;
    assert_eq!(run(&prog, &other.build()).0, XdpAction::Drop);
    gate.allow_only(&BTreeMap::new());
    assert_eq!(run(&prog, &block.build()).0, XdpAction::Drop);
    assert_eq!(gate.counts(), (0, 0));
    // What a dropped forgery costs the relay, by the kernel's clock.
    let per_drop = prog
        .time_run(&block.build(), 100_000)
        .expect("BPF_PROG_TEST_RUN with repeat");
    println!(
        "sender gate: {} ns per BLOCK dropped (BPF_PROG_TEST_RUN, 100,000 runs)",
        per_drop.as_nanos()
    );
    assert!(per_drop.as_nanos() > 0);
}

#[test]
fn control_messages_to_relay_port_are_passed_to_the_kernel() {
    require_privileges!("control_messages_to_relay_port_are_passed_to_the_kernel");
    let prog = load();
    for (code, name) in CONTROL_TYPES {
        let frame = Ipv4Frame::udp(RELAY_PORT, clubcast_message(code, 16)).build();
        assert_passed_as(&prog, &frame, name, |c| c.passed_control);
    }
    // An unassigned type is not a BLOCK either: the socket rejects it.
    let frame = Ipv4Frame::udp(RELAY_PORT, clubcast_message(0x41, 16)).build();
    assert_passed_as(&prog, &frame, "type 0x41", |c| c.passed_control);
}

#[test]
fn block_to_another_port_is_passed() {
    require_privileges!("block_to_another_port_is_passed");
    let prog = load();
    let frame = Ipv4Frame::block(OTHER_PORT).build();
    assert_passed_as(&prog, &frame, "BLOCK to another port", |c| {
        c.passed_other_port
    });
    // The source port does not count, only the destination.
    let mut from_relay_port = Ipv4Frame::block(OTHER_PORT);
    from_relay_port.src_port = RELAY_PORT;
    assert_passed_as(
        &prog,
        &from_relay_port.build(),
        "BLOCK from the relay port",
        |c| c.passed_other_port,
    );
}

#[test]
fn each_program_steers_only_the_port_it_was_loaded_with() {
    require_privileges!("each_program_steers_only_the_port_it_was_loaded_with");
    let prog = SteeringProgram::load(OTHER_PORT).expect("load");
    assert_eq!(prog.relay_port(), OTHER_PORT);
    let (_, delta) = run(&prog, &Ipv4Frame::block(OTHER_PORT).build());
    assert_eq!(delta.passed_no_socket, 1, "{delta:?}");
    let (_, delta) = run(&prog, &Ipv4Frame::block(RELAY_PORT).build());
    assert_eq!(delta.passed_other_port, 1, "{delta:?}");
}

#[test]
fn non_udp_ipv4_is_passed() {
    require_privileges!("non_udp_ipv4_is_passed");
    let prog = load();
    let mut tcp = Ipv4Frame::block(RELAY_PORT);
    tcp.protocol = IPPROTO_TCP;
    assert_passed_as(&prog, &tcp.build(), "TCP", |c| c.passed_not_udp);
}

#[test]
fn arp_is_passed() {
    require_privileges!("arp_is_passed");
    let prog = load();
    assert_passed_as(&prog, &arp_request(), "ARP", |c| c.passed_not_ip);
}

#[test]
fn ipv6_is_passed_even_when_it_carries_a_block() {
    require_privileges!("ipv6_is_passed_even_when_it_carries_a_block");
    let prog = load();
    assert_passed_as(&prog, &ipv6_block(), "IPv6 BLOCK", |c| c.passed_not_ip);
}

#[test]
fn ethertype_ipv4_with_another_ip_version_is_passed() {
    require_privileges!("ethertype_ipv4_with_another_ip_version_is_passed");
    let prog = load();
    let mut frame = Ipv4Frame::block(RELAY_PORT).build();
    frame[ETH_LEN] = 0x65; // version 6, IHL 5
    assert_passed_as(&prog, &frame, "version 6 in an IPv4 frame", |c| {
        c.passed_not_ip
    });
}

#[test]
fn ip_fragments_are_passed_for_reassembly() {
    require_privileges!("ip_fragments_are_passed_for_reassembly");
    let prog = load();
    let mut first = Ipv4Frame::block(RELAY_PORT);
    first.flags_offset = IP_MF;
    assert_passed_as(&prog, &first.build(), "first fragment", |c| {
        c.passed_fragment
    });
    let mut later = Ipv4Frame::block(RELAY_PORT);
    later.flags_offset = 185; // offset 1480 bytes, last fragment
    assert_passed_as(&prog, &later.build(), "later fragment", |c| {
        c.passed_fragment
    });
    // Don't-fragment alone is not a fragment.
    let mut df = Ipv4Frame::block(RELAY_PORT);
    df.flags_offset = 0x4000;
    let (_, delta) = run(&prog, &df.build());
    assert_eq!(delta.passed_no_socket, 1, "DF set: {delta:?}");
}

#[test]
fn ipv4_options_are_skipped_by_ihl() {
    require_privileges!("ipv4_options_are_skipped_by_ihl");
    let prog = load();
    let mut frame = Ipv4Frame::block(RELAY_PORT);
    // IHL 6: one word of options (NOP NOP NOP EOL) before the UDP header.
    frame.ihl_options = vec![1, 1, 1, 0];
    let bytes = frame.build();
    assert_eq!(bytes[ETH_LEN] & 0x0f, 6);
    let (action, delta) = run(&prog, &bytes);
    assert_eq!(action, XdpAction::Pass);
    assert_eq!(delta.passed_no_socket, 1, "reached the redirect: {delta:?}");
    // Ten words of options, the most IHL allows.
    frame.ihl_options = vec![1; 40];
    let (_, delta) = run(&prog, &frame.build());
    assert_eq!(delta.passed_no_socket, 1, "IHL 15: {delta:?}");
}

#[test]
fn bad_udp_checksum_is_left_to_the_worker() {
    require_privileges!("bad_udp_checksum_is_left_to_the_worker");
    let prog = load();
    let mut frame = Ipv4Frame::block(RELAY_PORT);
    frame.bad_udp_checksum = true;
    let (action, delta) = run(&prog, &frame.build());
    assert_eq!(action, XdpAction::Pass);
    assert_eq!(delta.passed_no_socket, 1, "steered as a BLOCK: {delta:?}");
}

#[test]
fn foreign_payloads_on_the_relay_port_are_passed() {
    require_privileges!("foreign_payloads_on_the_relay_port_are_passed");
    let prog = load();
    let mut bad_magic = clubcast_message(BLOCK, 16);
    bad_magic[0] = 0xCD;
    let mut bad_version = clubcast_message(BLOCK, 16);
    bad_version[1] = VERSION + 1;
    let mut old_version = clubcast_message(BLOCK, 16);
    old_version[1] = VERSION - 1;
    for (payload, what) in [
        (bad_magic, "bad magic"),
        (bad_version, "a later version"),
        (old_version, "an earlier version"),
    ] {
        let frame = Ipv4Frame::udp(RELAY_PORT, payload).build();
        assert_passed_as(&prog, &frame, what, |c| c.passed_not_clubcast);
    }
}

#[test]
fn truncated_frames_are_passed_without_reading_past_the_end() {
    require_privileges!("truncated_frames_are_passed_without_reading_past_the_end");
    let prog = load();
    let full = Ipv4Frame::block(RELAY_PORT).build();
    let udp_at = ETH_LEN + IPV4_LEN;
    // The kernel will not test-run less than an Ethernet header (the
    // program still checks it: the verifier insists, and drivers may hand
    // XDP a runt).
    for len in [0, 1, ETH_LEN - 1] {
        let err = prog.test_run(&full[..len]).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "{len} bytes: {err}"
        );
    }
    let cuts = [
        (ETH_LEN, "no IP header"),
        (ETH_LEN + 10, "IPv4 header"),
        (udp_at - 1, "IPv4 header, last byte"),
        (udp_at, "no UDP header"),
        (udp_at + 4, "UDP header"),
        (udp_at + UDP_LEN, "no clubcast header"),
        (udp_at + UDP_LEN + 2, "clubcast header"),
    ];
    for (len, what) in cuts {
        assert_passed_as(&prog, &full[..len], what, |c| c.passed_truncated);
    }

    // IHL 6 announced, but the frame ends after 20 bytes of IPv4 header.
    let mut frame = full[..udp_at].to_vec();
    frame[ETH_LEN] = 0x46;
    assert_passed_as(&prog, &frame, "IPv4 options", |c| c.passed_truncated);

    // IHL below 5 is malformed: there is no whole header to skip.
    let mut frame = full.clone();
    frame[ETH_LEN] = 0x44;
    assert_passed_as(&prog, &frame, "IHL 4", |c| c.passed_truncated);

    // A short datagram in a frame padded to the 60-byte Ethernet minimum:
    // the UDP length, not the padding, says where the payload ends.
    let mut short = Ipv4Frame::udp(RELAY_PORT, vec![0xCC, VERSION]).build();
    short.extend_from_slice(&[0xCC, VERSION, BLOCK, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(short.len(), 60);
    assert_passed_as(&prog, &short, "UDP length 10", |c| c.passed_truncated);
}

#[test]
fn garbage_frames_never_abort_or_drop() {
    require_privileges!("garbage_frames_never_abort_or_drop");
    let prog = load();
    let template = Ipv4Frame::block(RELAY_PORT).build();
    // A cheap deterministic generator: every frame length from an Ethernet
    // header (the kernel's minimum for a test run) up to a full BLOCK, with
    // bytes of the real frame flipped at pseudo-random places.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut seen = 0u64;
    let before = prog.counters().unwrap();
    for len in ETH_LEN..=template.len() {
        for _ in 0..4 {
            let mut frame = template[..len].to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % len;
                frame[at] ^= (state >> 32) as u8;
            }
            let action = prog.test_run(&frame).expect("test run");
            assert_eq!(action, XdpAction::Pass, "frame {frame:02x?}");
            seen += 1;
        }
    }
    let delta = prog.counters().unwrap().since(&before);
    assert_eq!(delta.total(), seen, "every frame counted once: {delta:?}");
}

#[test]
fn relay_port_zero_is_refused() {
    assert!(matches!(
        SteeringProgram::load(0),
        Err(SteerError::InvalidPort)
    ));
}

// ---------------------------------------------------------------------------
// Private network namespace with a veth pair
// ---------------------------------------------------------------------------

/// The veth pair of a private namespace: `a` is the relay's end, `b` the
/// sender's.
struct Veth {
    a: u32,
    b: u32,
}

const VETH_A: &str = "ccsteer-a";
const VETH_B: &str = "ccsteer-b";

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run `ip`");
    assert!(out.status.success(), "ip {}", args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `body` on a new thread that first moves into a fresh, unnamed
/// network namespace and creates an up veth pair there (A: MAC_A, IP_A/24;
/// B: MAC_B). `ip` commands started from that thread act in the namespace.
/// When the thread ends, the namespace and everything in it go away.
fn in_private_netns<T: Send + 'static>(body: impl FnOnce(&Veth) -> T + Send + 'static) -> T {
    let worker = std::thread::spawn(move || {
        // SAFETY: unshare(2) with CLONE_NEWNET only changes this thread's
        // network namespace; it touches no memory.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let (mac_a, mac_b) = (mac(MAC_A), mac(MAC_B));
        ip(&[
            "link", "add", VETH_A, "address", &mac_a, "type", "veth", "peer", "name", VETH_B,
            "address", &mac_b,
        ]);
        ip(&["addr", "add", &format!("{IP_A}/24"), "dev", VETH_A]);
        ip(&["link", "set", VETH_A, "up"]);
        ip(&["link", "set", VETH_B, "up"]);
        let a = nix::net::if_::if_nametoindex(VETH_A).expect("ifindex of A");
        let b = nix::net::if_::if_nametoindex(VETH_B).expect("ifindex of B");
        body(&Veth { a, b })
    });
    worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The XDP program `ip` reports on interface A, if any.
fn xdp_on_a() -> Option<String> {
    let json = ip_output(&["-j", "-d", "link", "show", "dev", VETH_A]);
    json.find("\"xdp\":")
        .map(|at| json[at..].chars().take(80).collect())
}

/// Waits (at most 2 s) until no XDP program shows on `VETH_A`, and says
/// what is still attached if one does. A link's file may outlive its
/// close for a moment when another test's `ip` child, forked at that
/// instant, still holds a copy.
fn detached_from_a() -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let shown = xdp_on_a();
        if shown.is_none() || std::time::Instant::now() >= deadline {
            return shown;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An AF_XDP socket bound to queue 0 of `ifname`, in copy mode, with its
/// fill ring stocked. libxdp is told not to load its own XDP program: the
/// steering program is the one that redirects into it.
struct XskOnQueue0 {
    umem: Umem,
    descs: Vec<FrameDesc>,
    rx: xsk_rs::RxQueue,
    _tx: xsk_rs::TxQueue,
    _rings: (xsk_rs::FillQueue, xsk_rs::CompQueue),
}

impl XskOnQueue0 {
    fn bind(ifname: &str) -> Self {
        let (umem, descs) =
            Umem::new(UmemConfig::default(), 64.try_into().unwrap(), false).expect("create UMEM");
        let config = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .build();
        // SAFETY: the UMEM is not shared with another socket.
        let (tx, rx, rings) = unsafe { Socket::new(config, &umem, &ifname.parse().unwrap(), 0) }
            .expect("bind an AF_XDP socket to queue 0");
        let (mut fill, comp) = rings.expect("first socket on the UMEM gets the rings");
        // SAFETY: the descriptors come from this UMEM and none is in use.
        let stocked = unsafe { fill.produce(&descs) };
        assert_eq!(stocked, descs.len());
        Self {
            umem,
            descs,
            rx,
            _tx: tx,
            _rings: (fill, comp),
        }
    }

    fn fd(&self) -> &xsk_rs::socket::Fd {
        self.rx.fd()
    }

    /// Frames received within `wait`, copied out.
    fn receive(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut frames = Vec::new();
        while Instant::now() < deadline {
            let mut descs = self.descs.clone();
            // SAFETY: `descs` are this UMEM's descriptors, filled in by the
            // kernel before we read the frames they point at.
            let n = unsafe { self.rx.poll_and_consume(&mut descs, 20) }.expect("poll rx");
            for desc in &descs[..n] {
                // SAFETY: the kernel has written this frame and released it.
                frames.push(unsafe { self.umem.data(desc) }.contents().to_vec());
            }
        }
        frames
    }
}

/// Sends `frame` out of interface `ifindex` as is, through a packet socket.
fn inject(ifindex: u32, frame: &[u8]) {
    // SAFETY: plain socket/sendto calls on a fresh fd with a zeroed and then
    // filled sockaddr_ll; the fd is owned and closed by `OwnedFd`.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        let sent = libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(
            sent,
            frame.len() as isize,
            "inject: {}",
            io::Error::last_os_error()
        );
    }
}

#[test]
fn block_with_a_socket_on_its_queue_is_redirected() {
    require_privileges!("block_with_a_socket_on_its_queue_is_redirected");
    in_private_netns(|_veth| {
        let prog = load();
        let xsk = XskOnQueue0::bind(VETH_A);
        prog.register_socket(0, xsk.fd()).expect("register XSK");

        let (action, delta) = run(&prog, &Ipv4Frame::block(RELAY_PORT).build());
        assert_eq!(action, XdpAction::Redirect);
        assert_eq!(delta.redirected, 1, "{delta:?}");
        assert_eq!(delta.total(), 1, "{delta:?}");

        let mut options = Ipv4Frame::block(RELAY_PORT);
        options.ihl_options = vec![1, 1, 1, 0];
        assert_eq!(run(&prog, &options.build()).0, XdpAction::Redirect, "IHL 6");

        let mut bad_sum = Ipv4Frame::block(RELAY_PORT);
        bad_sum.bad_udp_checksum = true;
        assert_eq!(
            run(&prog, &bad_sum.build()).0,
            XdpAction::Redirect,
            "bad checksum"
        );

        // Control messages still go to the kernel with a socket in place.
        let control = Ipv4Frame::udp(RELAY_PORT, clubcast_message(0x20, 16)).build();
        assert_eq!(run(&prog, &control).0, XdpAction::Pass);

        prog.unregister_socket(0).expect("unregister");
        prog.unregister_socket(0)
            .expect("unregistering twice is fine");
        let (action, delta) = run(&prog, &Ipv4Frame::block(RELAY_PORT).build());
        assert_eq!(action, XdpAction::Pass);
        assert_eq!(delta.passed_no_socket, 1, "{delta:?}");
    });
}

#[test]
fn xskmap_refuses_queues_beyond_it_and_non_xdp_sockets() {
    require_privileges!("xskmap_refuses_queues_beyond_it_and_non_xdp_sockets");
    let prog = load();
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let err = prog
        .register_socket(clubcast::relay::MAX_QUEUES, &udp)
        .unwrap_err();
    assert!(matches!(err, SteerError::QueueOutOfRange { .. }), "{err}");
    // Only AF_XDP sockets go into an XSKMAP.
    let err = prog.register_socket(0, &udp).unwrap_err();
    assert!(matches!(err, SteerError::Map { map: "xsks", .. }), "{err}");
}

#[test]
fn attachment_detaches_when_dropped() {
    require_privileges!("attachment_detaches_when_dropped");
    in_private_netns(|veth| {
        let prog = load();
        for mode in [XdpMode::Generic, XdpMode::Native, XdpMode::Auto] {
            assert_eq!(xdp_on_a(), None, "{mode}: nothing attached yet");
            let attachment = prog.attach(veth.a, mode).expect("attach");
            assert_eq!(attachment.ifindex(), veth.a);
            let shown = xdp_on_a().unwrap_or_else(|| panic!("{mode}: `ip` shows no XDP"));
            if mode == XdpMode::Generic {
                assert!(shown.contains("\"mode\":2"), "generic is mode 2: {shown}");
            }
            drop(attachment);
            assert_eq!(detached_from_a(), None, "{mode}: detached on drop");
        }
    });
}

#[test]
fn attachment_outlives_the_program_handle() {
    require_privileges!("attachment_outlives_the_program_handle");
    in_private_netns(|veth| {
        let prog = load();
        let attachment = prog.attach(veth.a, XdpMode::Generic).expect("attach");
        drop(prog);
        assert!(xdp_on_a().is_some(), "the link keeps the program attached");
        drop(attachment);
        assert_eq!(detached_from_a(), None);
    });
}

#[test]
fn attach_errors_name_the_cause() {
    require_privileges!("attach_errors_name_the_cause");
    in_private_netns(|veth| {
        let prog = load();
        let err = prog.attach(999_999, XdpMode::Generic).unwrap_err();
        assert!(
            matches!(err, SteerError::NoSuchInterface { ifindex: 999_999 }),
            "{err}"
        );

        let _held = prog.attach(veth.a, XdpMode::Generic).expect("attach");
        let err = prog.attach(veth.a, XdpMode::Generic).unwrap_err();
        assert!(matches!(err, SteerError::InterfaceBusy { .. }), "{err}");
        assert!(err.to_string().contains("xdp off"), "{err}");
    });
}

/// The whole data path on a veth: BLOCKs sent to the relay's interface land
/// in its AF_XDP socket, and a control message on the same port reaches the
/// ordinary UDP socket bound to it, in both attach modes.
#[test]
fn blocks_reach_the_xsk_and_control_reaches_the_udp_socket() {
    require_privileges!("blocks_reach_the_xsk_and_control_reaches_the_udp_socket");
    for mode in [XdpMode::Generic, XdpMode::Native] {
        in_private_netns(move |veth| {
            let prog = load();
            let mut xsk = XskOnQueue0::bind(VETH_A);
            prog.register_socket(0, xsk.fd()).expect("register XSK");
            let udp = UdpSocket::bind((IP_A, RELAY_PORT)).expect("bind the relay's UDP socket");
            udp.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let _attached = prog.attach(veth.a, mode).expect("attach");
            let before = prog.counters().unwrap();

            let block = Ipv4Frame::block(RELAY_PORT).build();
            let mut bad_sum = Ipv4Frame::block(RELAY_PORT);
            bad_sum.bad_udp_checksum = true;
            let bad_sum = bad_sum.build();
            let control_payload = clubcast_message(0x20, 16);
            let control = Ipv4Frame::udp(RELAY_PORT, control_payload.clone()).build();
            inject(veth.b, &block);
            inject(veth.b, &control);
            inject(veth.b, &bad_sum);

            let frames = xsk.receive(Duration::from_millis(500));
            assert_eq!(
                frames,
                vec![block, bad_sum],
                "{mode}: the XSK gets both BLOCKs"
            );

            let mut buf = [0u8; 2048];
            let (len, from) = udp
                .recv_from(&mut buf)
                .expect("control message on the socket");
            assert_eq!(&buf[..len], &control_payload[..], "{mode}");
            assert_eq!(from.ip(), IP_B);
            udp.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            assert!(
                udp.recv_from(&mut buf).is_err(),
                "{mode}: no BLOCK reaches the UDP socket"
            );

            let delta = prog.counters().unwrap().since(&before);
            assert_eq!(delta.redirected, 2, "{mode}: {delta:?}");
            assert_eq!(delta.passed_control, 1, "{mode}: {delta:?}");
        });
    }
}

#[test]
fn sink_program_drops_and_counts_only_its_port() {
    require_privileges!("sink_program_drops_and_counts_only_its_port");
    let prog = load();
    let sink = |frame: &[u8]| {
        let before = prog.counters().expect("counters");
        let dropped = prog.test_run_sink(frame).expect("test run");
        (dropped, prog.counters().expect("counters").since(&before))
    };
    for frame in [
        Ipv4Frame::block(RELAY_PORT).build(),
        Ipv4Frame::udp(RELAY_PORT, vec![0u8; 1200]).build(),
    ] {
        let (dropped, delta) = sink(&frame);
        assert!(dropped);
        assert_eq!(delta.sink_dropped, 1, "{delta:?}");
        assert_eq!(delta.total(), 0, "the steering slots stay untouched");
    }
    let mut fragment = Ipv4Frame::block(RELAY_PORT);
    fragment.flags_offset = IP_MF;
    for (frame, what) in [
        (Ipv4Frame::block(OTHER_PORT).build(), "other port"),
        (arp_request(), "ARP"),
        (ipv6_block(), "IPv6"),
        (fragment.build(), "fragment"),
    ] {
        let (dropped, delta) = sink(&frame);
        assert!(!dropped, "{what}");
        assert_eq!(delta.sink_dropped, 0, "{what}: {delta:?}");
    }
}
