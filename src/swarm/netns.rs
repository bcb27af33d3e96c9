//! Network-namespace rigs: a relay and a swarm in namespaces of their own,
//! joined by a veth pair, for the demo, the tests and the benches.
//!
//! Everything here is unnamed: a thread moves itself into a fresh network
//! namespace with `unshare(CLONE_NEWNET)`, creates the veth pair there, and
//! hands one end to a second namespace held by a helper thread
//! ([`NamespaceThread`]). Threads started from inside a namespace stay in
//! it. Unnamed namespaces vanish with their last thread and socket, so
//! nothing is left on the host, even after a crash. Links and addresses
//! are set with iproute2's `ip`. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use nix::libc;

/// Runs `ip ARGS` (iproute2); the error carries its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A MAC address as `ip` writes it.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Moves the calling thread into a fresh, unnamed network namespace.
pub fn enter_private_netns() -> io::Result<()> {
    // SAFETY: unshare(2) with CLONE_NEWNET only changes the calling
    // thread's network namespace; it touches no memory.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates the veth pair `a` (MAC `a_mac`) and `b` (MAC `b_mac`) in the
/// calling thread's namespace.
pub fn add_veth(a: &str, a_mac: [u8; 6], b: &str, b_mac: [u8; 6]) -> Result<(), String> {
    ip(&[
        "link",
        "add",
        a,
        "address",
        &mac_text(a_mac),
        "type",
        "veth",
        "peer",
        "name",
        b,
        "address",
        &mac_text(b_mac),
    ])
}

/// Puts `addrs` (as /24s) on `iface` and brings it and `lo` up.
pub fn bring_up(iface: &str, addrs: impl IntoIterator<Item = Ipv4Addr>) -> Result<(), String> {
    for addr in addrs {
        ip(&["addr", "add", &format!("{addr}/24"), "dev", iface])?;
    }
    ip(&["link", "set", "lo", "up"])?;
    ip(&["link", "set", iface, "up"])
}

/// [`bring_up`], then pins the neighbour entry of `gateway` (so no ARP
/// round trip precedes the first datagram).
pub fn configure_side(
    iface: &str,
    addrs: impl IntoIterator<Item = Ipv4Addr>,
    gateway: Ipv4Addr,
    gateway_mac: [u8; 6],
) -> Result<(), String> {
    bring_up(iface, addrs)?;
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
    ])
}

/// A helper thread holding a second namespace. Dropping it lets the thread
/// end; the namespace goes once the threads and sockets made in it are gone
/// too.
pub struct NamespaceThread {
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NamespaceThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceThread").finish_non_exhaustive()
    }
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
    /// returns what it made (sockets bound inside, or handles of threads
    /// started inside, which stay in the namespace). A panic in `setup`
    /// is passed on.
    pub fn start<T: Send + 'static>(
        iface: &str,
        setup: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(NamespaceThread, T), String> {
        let (tid_tx, tid_rx) = mpsc::channel::<Result<i32, String>>();
        let (moved_tx, moved_rx) = mpsc::channel::<()>();
        let (made_tx, made_rx) = mpsc::channel::<T>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Err(e) = enter_private_netns() {
                let _ = tid_tx.send(Err(format!("unshare(CLONE_NEWNET): {e}")));
                return;
            }
            // SAFETY: gettid(2) has no preconditions.
            let tid = unsafe { libc::gettid() };
            if tid_tx.send(Ok(tid)).is_err() || moved_rx.recv().is_err() {
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
        let stopped = |holder: &mut NamespaceThread| -> String {
            match holder.thread.take().map(JoinHandle::join) {
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                _ => "the namespace thread stopped early".into(),
            }
        };
        let tid = match tid_rx.recv() {
            Ok(Ok(tid)) => tid,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(stopped(&mut holder)),
        };
        ip(&["link", "set", "dev", iface, "netns", &tid.to_string()])?;
        let _ = moved_tx.send(());
        match made_rx.recv() {
            Ok(made) => Ok((holder, made)),
            Err(_) => Err(stopped(&mut holder)),
        }
    }
}
