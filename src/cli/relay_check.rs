//! `clubcast relay --check`: a preflight of the interface a relay would
//! serve, with one line of advice per problem.
//!
//! It reports the driver (`ethtool -i`), the RX and TX queues (sysfs) and
//! channels (`ethtool -l`), what the kernel says the driver supports of XDP
//! (native XDP, redirect, AF_XDP zero-copy: the `netdev` generic netlink
//! family's `xdp-features`), the offloads known to hand AF_XDP merged or
//! segmented packets (GRO, LRO, UDP GRO forwarding, UDP segmentation,
//! `ethtool -k`), the MTU against the UMEM frame, the huge pages free, and
//! what the relay would use: queues, cores, attach and bind modes. It
//! changes nothing. The exit code is 0 when nothing needs fixing, 1
//! otherwise.

use std::process::{Command, ExitCode};

/// `struct xdp_md` headroom and the frame's skb_shared_info-free tail the
/// kernel keeps in an AF_XDP frame, bytes.
const FRAME_HEADROOM: u32 = 256;
/// Ethernet header and VLAN tag.
const L2_BYTES: u32 = 18;

/// What the relay's flags ask for, as the check reports it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The interface.
    pub ifname: String,
    /// First RX queue and how many.
    pub first_queue: u32,
    /// Queues served.
    pub queues: u32,
    /// Worker cores, if given.
    pub cores: Vec<usize>,
    /// XDP attach mode asked for.
    pub attach: String,
    /// AF_XDP bind mode asked for.
    pub bind: String,
    /// UMEM frame size.
    pub frame_size: u32,
    /// Huge pages asked for.
    pub huge_pages: bool,
}

/// Runs the check and prints its report.
pub fn run(plan: &Plan) -> ExitCode {
    let mut advice: Vec<String> = Vec::new();
    let ifname = &plan.ifname;
    println!("relay preflight for {ifname}");
    let Some(ifindex) = read_trim(&format!("/sys/class/net/{ifname}/ifindex")) else {
        println!("  interface        not found in this network namespace");
        println!("advice: name an existing interface with --interface (ip link shows them)");
        return ExitCode::FAILURE;
    };
    let driver = ethtool(&["-i", ifname])
        .and_then(|t| field(&t, "driver:"))
        .unwrap_or_else(|| "unknown".into());
    println!("  driver           {driver}");
    let rx = count_queues(ifname, "rx-");
    let tx = count_queues(ifname, "tx-");
    let channels = ethtool(&["-l", ifname])
        .map(|t| {
            let current = t.split("Current hardware settings:").nth(1).unwrap_or("");
            ["RX:", "TX:", "Combined:"]
                .iter()
                .filter_map(|k| {
                    field(current, k)
                        .map(|v| format!("{} {v}", k.trim_end_matches(':').to_lowercase()))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "not reported".into());
    println!("  queues           {rx} rx, {tx} tx (channels: {channels})");
    let last = plan.first_queue + plan.queues;
    if last > rx {
        advice.push(format!(
            "the relay would serve RX queues {}..{} but {ifname} has {rx}: lower --queues/--first-queue, or raise the channels (ethtool -L {ifname} combined N; tuning/apply.sh)",
            plan.first_queue,
            last - 1
        ));
    }
    let features = ifindex.parse::<u32>().ok().and_then(xdp_features);
    match features {
        Some(f) => {
            let yes = |bit: u64| if f & bit != 0 { "yes" } else { "no" };
            println!(
                "  XDP              native {}, redirect {}, AF_XDP zero-copy {}",
                yes(XDP_BASIC),
                yes(XDP_REDIRECT),
                yes(XDP_XSK_ZEROCOPY)
            );
            if f & XDP_BASIC == 0 && plan.attach == "drv" {
                advice.push(format!("{driver} has no native XDP: run with --xdp-mode skb (slower) or use a NIC whose driver has it"));
            }
            if f & XDP_XSK_ZEROCOPY == 0 && plan.bind == "zero-copy" {
                advice.push(format!("{driver} has no AF_XDP zero-copy: run with --bind copy (or auto)"));
            }
        }
        None => println!("  XDP              not reported by this kernel (the netdev netlink family answers from 6.3)"),
    }
    let offloads = ethtool(&["-k", ifname]).unwrap_or_default();
    let mut on = Vec::new();
    for (name, why) in [
        (
            "generic-receive-offload:",
            "GRO merges datagrams before XDP sees them in generic mode",
        ),
        ("large-receive-offload:", "LRO merges datagrams in the NIC"),
        (
            "rx-udp-gro-forwarding:",
            "UDP GRO forwarding merges datagrams",
        ),
        (
            "tx-udp-segmentation:",
            "UDP segmentation offload hands over super-packets",
        ),
    ] {
        let state = field(&offloads, name).unwrap_or_else(|| "n/a".into());
        let flag = name.trim_end_matches(':');
        println!("  {flag:<24} {state}");
        if state.starts_with("on") && !state.contains("[fixed]") {
            on.push(flag);
            advice.push(format!(
                "{why}: ethtool -K {ifname} {} off",
                short_offload(flag)
            ));
        }
    }
    let mtu: u32 = read_trim(&format!("/sys/class/net/{ifname}/mtu"))
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let room = plan.frame_size.saturating_sub(FRAME_HEADROOM);
    println!(
        "  MTU              {mtu} (a frame of {} holds {room} bytes after its headroom)",
        plan.frame_size
    );
    if mtu + L2_BYTES > room {
        advice.push(format!(
            "MTU {mtu} does not fit a {}-byte UMEM frame: ip link set {ifname} mtu {} (or --frame-size 4096)",
            plan.frame_size,
            room - L2_BYTES
        ));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free = field(&meminfo, "HugePages_Free:").unwrap_or_else(|| "0".into());
    let size = field(&meminfo, "Hugepagesize:").unwrap_or_else(|| "?".into());
    println!("  huge pages       {free} free of {size}");
    if plan.huge_pages && free.trim() == "0" {
        advice.push("--huge-pages asks for huge pages and none is free: reserve some (tuning/superpeer.profile) or drop --huge-pages".into());
    }
    let cores = if plan.cores.is_empty() {
        "worker i on core i+1".to_string()
    } else {
        format!("{:?}", plan.cores)
    };
    println!(
        "  would use        RX queues {}..{} ({} worker(s), {cores}), XDP mode {}, bind {}, frames of {}{}",
        plan.first_queue,
        last.saturating_sub(1),
        plan.queues,
        plan.attach,
        plan.bind,
        plan.frame_size,
        if plan.huge_pages { " in huge pages" } else { "" }
    );
    if advice.is_empty() {
        println!("ok: nothing to fix");
        return ExitCode::SUCCESS;
    }
    for a in &advice {
        println!("advice: {a}");
    }
    ExitCode::FAILURE
}

/// The short name `ethtool -K` takes for an offload.
fn short_offload(flag: &str) -> &str {
    match flag {
        "generic-receive-offload" => "gro",
        "large-receive-offload" => "lro",
        other => other,
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn count_queues(ifname: &str, prefix: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count() as u32
        })
        .unwrap_or(0)
}

/// What `ethtool ARGS` printed, if it ran and succeeded.
fn ethtool(args: &[&str]) -> Option<String> {
    let out = Command::new("ethtool").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// The rest of the first line of `text` that starts (after blanks) with
/// `key`, trimmed.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .map(|v| v.trim().to_string())
}

/// `enum netdev_xdp_act` bits.
const XDP_BASIC: u64 = 1;
const XDP_REDIRECT: u64 = 2;
const XDP_XSK_ZEROCOPY: u64 = 8;

/// The `xdp-features` of interface `ifindex`, from the `netdev` generic
/// netlink family.
fn xdp_features(ifindex: u32) -> Option<u64> {
    use nix::libc;
    const GENL_ID_CTRL: u16 = 0x10;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const NETDEV_CMD_DEV_GET: u8 = 1;
    const NETDEV_A_DEV_IFINDEX: u16 = 1;
    const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
    // SAFETY: a plain socket(2) call; the descriptor is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
        )
    };
    if fd < 0 {
        return None;
    }
    let ask = |msg_type: u16, cmd: u8, attr: u16, value: &[u8]| -> Option<Vec<u8>> {
        let mut m = Vec::new();
        let attr_len = 4 + value.len();
        let len = 16 + 4 + attr_len.next_multiple_of(4);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&msg_type.to_ne_bytes());
        m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[cmd, 1, 0, 0]);
        m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        m.extend_from_slice(&attr.to_ne_bytes());
        m.extend_from_slice(value);
        m.resize(len, 0);
        // SAFETY: `m` is a valid buffer of `m.len()` bytes for the call.
        let sent = unsafe { libc::send(fd, m.as_ptr().cast(), m.len(), 0) };
        if sent < 0 {
            return None;
        }
        let mut buf = vec![0u8; 8192];
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).ok()?;
        buf.truncate(n);
        Some(buf)
    };
    // The attributes of the first answer, if it is not an error.
    let attrs = |answer: &[u8]| -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        if answer.len() < 20
            || u16::from_ne_bytes([answer[4], answer[5]]) == libc::NLMSG_ERROR as u16
        {
            return out;
        }
        let len = (u32::from_ne_bytes([answer[0], answer[1], answer[2], answer[3]]) as usize)
            .min(answer.len());
        let mut at = 20;
        while at + 4 <= len {
            let alen = usize::from(u16::from_ne_bytes([answer[at], answer[at + 1]]));
            let atype = u16::from_ne_bytes([answer[at + 2], answer[at + 3]]) & 0x3FFF;
            if alen < 4 || at + alen > len {
                break;
            }
            out.push((atype, answer[at + 4..at + alen].to_vec()));
            at += alen.next_multiple_of(4);
        }
        out
    };
    let result = (|| {
        let family = ask(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            CTRL_ATTR_FAMILY_NAME,
            b"netdev\0",
        )?;
        let id = attrs(&family)
            .into_iter()
            .find(|(t, v)| *t == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
            .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))?;
        let dev = ask(
            id,
            NETDEV_CMD_DEV_GET,
            NETDEV_A_DEV_IFINDEX,
            &ifindex.to_ne_bytes(),
        )?;
        attrs(&dev)
            .into_iter()
            .find(|(t, v)| *t == NETDEV_A_DEV_XDP_FEATURES && v.len() >= 8)
            .map(|(_, v)| u64::from_ne_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]))
    })();
    // SAFETY: `fd` is the socket opened above, closed once.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_after_their_key() {
        let t = "driver: veth\nversion: 1.0\n  RX:\t\t2\n";
        assert_eq!(field(t, "driver:").as_deref(), Some("veth"));
        assert_eq!(field(t, "RX:").as_deref(), Some("2"));
        assert_eq!(field(t, "bus-info:"), None);
    }

    #[test]
    fn loopback_reports_its_xdp_features_or_nothing() {
        // Loopback has no native XDP: the kernel says so (0), or an old
        // kernel says nothing; never a bit it does not have.
        let lo = read_trim("/sys/class/net/lo/ifindex").and_then(|i| i.parse().ok());
        if let Some(f) = lo.and_then(xdp_features) {
            assert_eq!(f & XDP_XSK_ZEROCOPY, 0);
        }
    }
}
