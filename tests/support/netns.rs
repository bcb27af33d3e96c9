//! Network-namespace plumbing for the relay's netns tests and
//! `examples/bench_relay.rs`: the library's rig (`clubcast::swarm::netns`)
//! with failures as panics, and the privilege check that turns a missing
//! privilege into a failure under `CI=true` and a printed skip elsewhere.
#![allow(dead_code, unused_imports)]

use std::io;
use std::net::Ipv4Addr;

use clubcast::swarm::netns as rig;
pub use clubcast::swarm::netns::mac_text;

/// True if a privileged test may go on. Without root (or CAP_BPF and
/// CAP_NET_ADMIN): panics under `CI=true`, where such tests must run;
/// otherwise says on stderr why `test` is skipped and returns false.
pub fn privileged(test: &str, why: &str) -> bool {
    if clubcast::relay::has_bpf_privileges() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}; CI=true, so this is a failure, not a skip");
    }
    // Straight to stderr, past the harness's capture: a skip must be seen.
    let _ = io::Write::write_all(
        &mut io::stderr(),
        format!("SKIPPED {test}: {why}\n").as_bytes(),
    );
    false
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    rig::ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Moves the calling thread into a fresh, unnamed network namespace.
pub fn enter_private_netns() {
    rig::enter_private_netns().unwrap_or_else(|e| panic!("unshare(CLONE_NEWNET): {e}"));
}

/// See `clubcast::swarm::netns::configure_side`.
pub fn configure_side(
    iface: &str,
    addrs: impl IntoIterator<Item = Ipv4Addr>,
    gateway: Ipv4Addr,
    gateway_mac: [u8; 6],
) {
    rig::configure_side(iface, addrs, gateway, gateway_mac).unwrap_or_else(|e| panic!("{e}"));
}

/// Creates the veth pair `a`/`b` (with MACs `a_mac`/`b_mac`) in the
/// calling thread's namespace and brings `a` (with `a_ip`/24) and `lo` up.
pub fn veth_pair_up(a: &str, a_mac: [u8; 6], a_ip: Ipv4Addr, b: &str, b_mac: [u8; 6]) {
    rig::add_veth(a, a_mac, b, b_mac).unwrap_or_else(|e| panic!("{e}"));
    bring_up(a, [a_ip]);
}

/// Puts `addrs` (as /24s) on `iface` and brings it and `lo` up.
pub fn bring_up(iface: &str, addrs: impl IntoIterator<Item = Ipv4Addr>) {
    rig::bring_up(iface, addrs).unwrap_or_else(|e| panic!("{e}"));
}

/// A helper thread holding a second namespace.
pub type NamespaceThread = rig::NamespaceThread;

/// Starts a [`NamespaceThread`] that takes `iface` and runs `setup`.
pub fn start_namespace<T: Send + 'static>(
    iface: &str,
    setup: impl FnOnce() -> T + Send + 'static,
) -> (NamespaceThread, T) {
    rig::NamespaceThread::start(iface, setup).unwrap_or_else(|e| panic!("{e}"))
}
