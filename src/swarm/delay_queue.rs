//! One-way delay and jitter without netem: a user-space queue.
//!
//! The router namespace of a [`super::rig::NetRig`] sends the datagrams of
//! delayed uplinks to an `NFQUEUE` (iptables, since this kernel's nftables
//! cannot queue). A thread of this process enters that namespace, takes
//! each queued datagram, and gives its verdict (accept) only once the
//! delay of the uplink it came in on, plus a uniform draw of up to its
//! jitter, has passed; verdicts may go in any order, so jitter reorders
//! datagrams as it does on a real path. The kernel holds the datagrams
//! meanwhile; only their ids wait here. The queue fails open (a datagram
//! that cannot be queued passes undelayed), an overrun of its socket is not
//! an error, and the router's rule bypasses the queue when no thread
//! listens, so the rig never adds loss of its own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::libc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The delay an uplink adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelaySpec {
    /// Fixed one-way delay, us.
    pub delay_us: u64,
    /// Largest extra delay, drawn uniformly per datagram, us.
    pub jitter_us: u64,
}

/// Datagrams the kernel may hold for the queue.
const QUEUE_MAX_LEN: u32 = 32_768;

/// Bytes of each datagram copied up (none are needed).
const COPY_RANGE: u16 = 64;

/// The running queue thread.
pub struct DelayQueue {
    stop: Arc<AtomicBool>,
    released: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// Moves the calling thread into the named network namespace.
pub(super) fn enter_netns(name: &str) -> Result<(), String> {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns(2) on a namespace file descriptor we hold open only
    // changes this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("setns {path}: {}", std::io::Error::last_os_error()))
    }
}

/// The index of interface `name` in the calling thread's namespace.
fn if_index(name: &str) -> Result<u32, String> {
    let c = CString::new(name).map_err(|_| format!("bad interface name {name:?}"))?;
    // SAFETY: if_nametoindex reads the NUL-terminated string only.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(format!("no interface {name}"))
    } else {
        Ok(i)
    }
}

impl DelayQueue {
    /// Starts the thread in namespace `netns`, serving queue `num`; the
    /// datagrams that came in on interface `ifname` get `spec`.
    pub fn start(
        netns: &str,
        num: u16,
        specs: &[(String, DelaySpec)],
        seed: u64,
    ) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (netns, specs) = (netns.to_string(), specs.to_vec());
        let thread = {
            let (stop, released) = (Arc::clone(&stop), Arc::clone(&released));
            std::thread::Builder::new()
                .name("delay-queue".into())
                .spawn(move || {
                    let setup = || -> Result<(nfq::Queue, HashMap<u32, DelaySpec>), String> {
                        enter_netns(&netns)?;
                        let mut by_index = HashMap::new();
                        for (name, spec) in &specs {
                            by_index.insert(if_index(name)?, *spec);
                        }
                        let mut q = nfq::Queue::open().map_err(|e| format!("open: {e}"))?;
                        q.bind(num).map_err(|e| format!("bind {num}: {e}"))?;
                        q.set_queue_max_len(num, QUEUE_MAX_LEN)
                            .map_err(|e| format!("queue length: {e}"))?;
                        q.set_copy_range(num, COPY_RANGE)
                            .map_err(|e| format!("copy range: {e}"))?;
                        q.set_fail_open(num, true)
                            .map_err(|e| format!("fail open: {e}"))?;
                        // A burst that overflows the socket must not end
                        // the thread: no ENOBUFS, the kernel's fail-open
                        // passes what it cannot queue.
                        q.set_recv_enobufs(false)
                            .map_err(|e| format!("no ENOBUFS: {e}"))?;
                        q.set_nonblocking(true);
                        Ok((q, by_index))
                    };
                    let (mut q, by_index) = match setup() {
                        Ok(x) => {
                            let _ = ready_tx.send(Ok(()));
                            x
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.clone()));
                            return Err(e);
                        }
                    };
                    serve(&mut q, &by_index, seed, &stop, &released)
                })
                .map_err(|e| format!("spawn: {e}"))?
        };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(DelayQueue {
                stop,
                released,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the queue thread did not start".into()),
        }
    }

    /// Datagrams released so far.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }

    /// Stops the thread; the kernel passes what is still queued when the
    /// socket closes.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DelayQueue {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Holds each datagram for its uplink's delay, releasing in time order.
fn serve(
    q: &mut nfq::Queue,
    by_index: &HashMap<u32, DelaySpec>,
    seed: u64,
    stop: &AtomicBool,
    released: &AtomicU64,
) -> Result<(), String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut order = 0u64;
    let mut held: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut messages: HashMap<u64, nfq::Message> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    let spec = by_index.get(&msg.get_indev()).copied();
                    let extra = spec.map_or(0, |s| {
                        s.delay_us
                            + if s.jitter_us > 0 {
                                rng.random_range(0..=s.jitter_us)
                            } else {
                                0
                            }
                    });
                    let due = start.elapsed().as_micros() as u64 + extra;
                    order += 1;
                    held.push(Reverse((due, order)));
                    messages.insert(order, msg);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // Anything else (an overrun) loses only what the kernel
                // could not queue; go on.
                Err(_) => break,
            }
        }
        let now = start.elapsed().as_micros() as u64;
        while let Some(Reverse((due, id))) = held.peek().copied() {
            if due > now {
                break;
            }
            held.pop();
            if let Some(msg) = messages.remove(&id) {
                // A verdict for a datagram the kernel gave up on fails;
                // nothing to do about it.
                if q.verdict(msg).is_ok() {
                    released.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    for (_, msg) in messages.drain() {
        let _ = q.verdict(msg);
    }
    Ok(())
}
