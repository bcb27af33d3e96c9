//! Network-namespace plumbing shared by the relay's netns tests and
//! `examples/bench_relay.rs`: run `ip`, move the calling thread into a
//! fresh unnamed network namespace, and hold a second namespace on a helper
//! thread into which a veth end is moved. Unnamed namespaces vanish with
//! their last thread and socket, so nothing is left behind, even on a
//! panic.
#![allow(dead_code)]

use std::io;

use nix::libc;
use std::process::Command;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

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

/// Runs `ip ARGS` (iproute2), panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run `ip` (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A MAC address as `ip` writes it.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Moves the calling thread into a fresh, unnamed network namespace.
pub fn enter_private_netns() {
    // SAFETY: unshare(2) with CLONE_NEWNET only changes the calling
    // thread's network namespace; it touches no memory.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        io::Error::last_os_error()
    );
}

/// Configures a veth end that stands for many hosts: puts `addrs` on
/// `iface`, brings it and `lo` up, and pins the neighbour entry of `gateway`
/// (so no ARP round trip precedes the first datagram).
pub fn configure_side(
    iface: &str,
    addrs: impl IntoIterator<Item = std::net::Ipv4Addr>,
    gateway: std::net::Ipv4Addr,
    gateway_mac: [u8; 6],
) {
    for addr in addrs {
        ip(&["addr", "add", &format!("{addr}/24"), "dev", iface]);
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "set", iface, "up"]);
    ip(&[
        "neigh",
        "replace",
        &gateway.to_string(),
        "lladdr",
        &mac_text(gateway_mac),
        "dev",
        iface,
        "nud",
        "permanent",
    ]);
}

/// A helper thread holding a second namespace. Dropping it lets the thread
/// end; the namespace goes once the sockets made in it are closed too.
pub struct NamespaceThread {
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for NamespaceThread {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl NamespaceThread {
    /// Starts a thread in a fresh namespace, moves `iface` (which must
    /// exist in the caller's namespace) into it, runs `setup` there and
    /// returns what it made (typically sockets bound inside).
    pub fn start<T: Send + 'static>(
        iface: &str,
        setup: impl FnOnce() -> T + Send + 'static,
    ) -> (NamespaceThread, T) {
        let (tid_tx, tid_rx) = mpsc::channel::<i32>();
        let (moved_tx, moved_rx) = mpsc::channel::<()>();
        let (made_tx, made_rx) = mpsc::channel::<T>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            enter_private_netns();
            // SAFETY: gettid(2) has no preconditions.
            let tid = unsafe { libc::gettid() };
            if tid_tx.send(tid).is_err() || moved_rx.recv().is_err() {
                return;
            }
            if made_tx.send(setup()).is_err() {
                return;
            }
            let _ = done_rx.recv();
        });
        let mut holder = NamespaceThread {
            done: Some(done_tx),
            thread: Some(thread),
        };
        let fail = |holder: &mut NamespaceThread| -> ! {
            match holder.thread.take().map(JoinHandle::join) {
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                _ => panic!("the namespace thread stopped early"),
            }
        };
        let Ok(tid) = tid_rx.recv() else {
            fail(&mut holder)
        };
        ip(&["link", "set", "dev", iface, "netns", &tid.to_string()]);
        let _ = moved_tx.send(());
        let Ok(made) = made_rx.recv() else {
            fail(&mut holder)
        };
        (holder, made)
    }
}
