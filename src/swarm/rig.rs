//! An impaired network of real processes: hosts in network namespaces of
//! their own, each joined by a veth pair to one router namespace, with
//! what the host's uplink suffers applied on the way.
//!
//! This kernel has neither `sch_netem` nor `fq`, and nftables cannot queue
//! to user space, so each impairment uses what works here: `tc tbf` on the
//! host's end of its veth for an upload limit (its queue as a home
//! router's buffer), an nftables `numgen random` drop in the router's
//! forward hook for random loss, an iptables `NFQUEUE` in the router whose
//! packets a thread of this process holds for the one-way delay and
//! jitter (`delay_queue`), `faketime` around a host's processes for a
//! clock offset, and nftables drops both ways for an outage. Namespaces are
//! named with this process's id and a count of its rigs, so runs never
//! collide, and everything is
//! torn down on drop: processes killed by their PID, namespaces deleted.
//! Needs root.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use thiserror::Error;

use super::delay_queue::{enter_netns, DelayQueue, DelaySpec};

/// What one host's uplink suffers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Uplink {
    /// One-way delay added, us.
    pub delay_us: u64,
    /// Largest extra delay, drawn uniformly per datagram, us.
    pub jitter_us: u64,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Upload limit, bit/s.
    pub rate_bps: Option<u64>,
    /// Queue behind the upload limit, us of sending at the rate.
    pub queue_us: u64,
}

/// Why the rig could not be built or driven.
#[derive(Debug, Error)]
pub enum RigError {
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A tool is missing.
    #[error("cannot run `{tool}` ({why}): install {package}")]
    Missing {
        /// The program.
        tool: String,
        /// The error.
        why: String,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A process or file could not be handled.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The user-space delay queue failed.
    #[error("delay queue: {0}")]
    Delay(String),
    /// The source key could not be made.
    #[error("source key: {0}")]
    Key(String),
}

/// The Debian package that has `tool`.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "nft" => "nftables",
        "iptables-legacy" => "iptables",
        "tc" | "ip" => "iproute2",
        "faketime" => "faketime",
        _ => "the package that has it",
    }
}

/// Runs `tool args`, failing with its stderr.
pub fn run(tool: &str, args: &[&str]) -> Result<(), RigError> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RigError::Missing {
            tool: tool.into(),
            why: e.to_string(),
            package: package_of(tool),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RigError::Command {
            command: format!("{tool} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `tool args` inside namespace `ns`.
fn run_in(ns: &str, tool: &str, args: &[&str]) -> Result<(), RigError> {
    let mut all = vec!["netns", "exec", ns, tool];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// The NFQUEUE number the router's delayed packets go to.
const DELAY_QUEUE_NUM: u16 = 7;

/// One host of the rig.
#[derive(Debug, Clone)]
pub struct RigHost {
    /// Its namespace.
    pub netns: String,
    /// Its address.
    pub addr: Ipv4Addr,
    /// Its veth's name in the router namespace.
    router_if: String,
    /// Seconds its clock runs ahead (negative: behind).
    clock_offset_s: i64,
}

/// The router and its hosts; see the module documentation.
pub struct NetRig {
    router: String,
    hosts: Vec<RigHost>,
    children: Vec<Child>,
    delays: Vec<(String, DelaySpec)>,
    delay: Option<DelayQueue>,
    logs: PathBuf,
}

impl NetRig {
    /// A router with `hosts` hosts on it, host i at 10.77.i.2 behind the
    /// router's 10.77.i.1; process logs go to `logs`.
    pub fn new(hosts: usize, logs: &Path) -> Result<Self, RigError> {
        static RIGS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("ccrig{}x{n}", std::process::id());
        let router = format!("{prefix}-r");
        std::fs::create_dir_all(logs).map_err(|source| RigError::Io {
            what: format!("create {}", logs.display()),
            source,
        })?;
        let mut rig = NetRig {
            router: router.clone(),
            hosts: Vec::new(),
            children: Vec::new(),
            delays: Vec::new(),
            delay: None,
            logs: logs.to_path_buf(),
        };
        run("ip", &["netns", "add", &router])?;
        run_in(&router, "ip", &["link", "set", "lo", "up"])?;
        run_in(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        for i in 0..hosts.min(250) {
            let netns = format!("{prefix}-h{i}");
            let router_if = format!("h{i}");
            let addr = Ipv4Addr::new(10, 77, i as u8, 2);
            run("ip", &["netns", "add", &netns])?;
            rig.hosts.push(RigHost {
                netns: netns.clone(),
                addr,
                router_if: router_if.clone(),
                clock_offset_s: 0,
            });
            run(
                "ip",
                &[
                    "-n", &router, "link", "add", &router_if, "type", "veth", "peer", "name",
                    "eth0", "netns", &netns,
                ],
            )?;
            let gw = format!("10.77.{i}.1");
            run_in(
                &router,
                "ip",
                &["addr", "add", &format!("{gw}/24"), "dev", &router_if],
            )?;
            run_in(&router, "ip", &["link", "set", &router_if, "up"])?;
            run_in(&netns, "ip", &["link", "set", "lo", "up"])?;
            run_in(
                &netns,
                "ip",
                &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
            )?;
            run_in(&netns, "ip", &["link", "set", "eth0", "up"])?;
            run_in(&netns, "ip", &["route", "add", "default", "via", &gw])?;
        }
        run_in(&router, "nft", &["add", "table", "inet", "rig"])?;
        run_in(
            &router,
            "nft",
            &[
                "add",
                "chain",
                "inet",
                "rig",
                "forward",
                "{ type filter hook forward priority 0; policy accept; }",
            ],
        )?;
        Ok(rig)
    }

    /// The hosts.
    pub fn hosts(&self) -> &[RigHost] {
        &self.hosts
    }

    /// Host `i`, or an error naming it.
    fn host(&self, i: usize) -> Result<RigHost, RigError> {
        self.hosts.get(i).cloned().ok_or_else(|| RigError::Command {
            command: format!("host {i} of {}", self.hosts.len()),
            stderr: "no such host".into(),
        })
    }

    /// Applies `up` to host `i`'s uplink (traffic from it, through the
    /// router). Call before [`NetRig::start`].
    pub fn set_uplink(&mut self, i: usize, up: &Uplink) -> Result<(), RigError> {
        let host = self.host(i)?;
        if let Some(rate) = up.rate_bps {
            let burst = (rate / 8 / 50).max(3_000);
            let latency_ms = (up.queue_us / 1000).max(1);
            run_in(
                &host.netns,
                "tc",
                &[
                    "qdisc",
                    "replace",
                    "dev",
                    "eth0",
                    "root",
                    "tbf",
                    "rate",
                    &format!("{rate}bit"),
                    "burst",
                    &burst.to_string(),
                    "latency",
                    &format!("{latency_ms}ms"),
                ],
            )?;
        }
        if up.loss > 0.0 {
            let per_10k = (up.loss.clamp(0.0, 1.0) * 10_000.0).round() as u32;
            let rule = format!(
                "iifname {} numgen random mod 10000 < {per_10k} counter drop",
                host.router_if
            );
            self.nft_rule("rig", &rule)?;
        }
        if up.delay_us > 0 || up.jitter_us > 0 {
            run_in(
                &self.router,
                "iptables-legacy",
                &[
                    "-t",
                    "mangle",
                    "-A",
                    "FORWARD",
                    "-i",
                    &host.router_if,
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &DELAY_QUEUE_NUM.to_string(),
                    "--queue-bypass",
                ],
            )?;
            self.delays.push((
                host.router_if.clone(),
                DelaySpec {
                    delay_us: up.delay_us,
                    jitter_us: up.jitter_us,
                },
            ));
        }
        Ok(())
    }

    /// Runs host `i`'s processes with its clock `seconds` ahead (negative:
    /// behind), through `faketime`.
    pub fn set_clock_offset(&mut self, i: usize, seconds: i64) {
        if let Some(h) = self.hosts.get_mut(i) {
            h.clock_offset_s = seconds;
        }
    }

    /// Starts the delay queue, if any uplink has a delay.
    pub fn start(&mut self, seed: u64) -> Result<(), RigError> {
        if self.delays.is_empty() || self.delay.is_some() {
            return Ok(());
        }
        let q = DelayQueue::start(&self.router, DELAY_QUEUE_NUM, &self.delays, seed)
            .map_err(RigError::Delay)?;
        self.delay = Some(q);
        Ok(())
    }

    /// Datagrams the delay queue has held and released so far.
    pub fn delayed(&self) -> u64 {
        self.delay.as_ref().map_or(0, DelayQueue::released)
    }

    /// Datagrams the router dropped as random loss so far.
    pub fn lost(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router,
                "nft",
                "list",
                "chain",
                "inet",
                "rig",
                "forward",
            ])
            .output();
        let Ok(out) = out else {
            return 0;
        };
        // Lines hold "... counter packets N bytes M drop".
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("numgen"))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "packets")?;
                words.next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// Starts `program args` in host `i` (with its clock offset), its
    /// output going to `<logs>/<name>.log`; returns its PID.
    pub fn spawn(
        &mut self,
        i: usize,
        name: &str,
        program: &Path,
        args: &[String],
    ) -> Result<u32, RigError> {
        let host = self.host(i)?;
        let log_path = self.logs.join(format!("{name}.log"));
        let log = File::create(&log_path).map_err(|source| RigError::Io {
            what: format!("create {}", log_path.display()),
            source,
        })?;
        let err = log.try_clone().map_err(|source| RigError::Io {
            what: "log file".into(),
            source,
        })?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.netns]);
        if host.clock_offset_s != 0 {
            cmd.args(["faketime", "-f", &format!("{:+}s", host.clock_offset_s)]);
        }
        cmd.arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd.spawn().map_err(|source| RigError::Io {
            what: format!("start {} on host {i}", program.display()),
            source,
        })?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Takes host `i`'s link down (everything to and from it is dropped)
    /// or brings it back.
    pub fn outage(&self, i: usize, down: bool) -> Result<(), RigError> {
        let Some(host) = self.hosts.get(i) else {
            return Ok(());
        };
        let table = format!("outage{i}");
        if !down {
            return run_in(&self.router, "nft", &["delete", "table", "inet", &table]);
        }
        run_in(&self.router, "nft", &["add", "table", "inet", &table])?;
        run_in(
            &self.router,
            "nft",
            &[
                "add",
                "chain",
                "inet",
                &table,
                "forward",
                "{ type filter hook forward priority -10; policy accept; }",
            ],
        )?;
        for dir in ["iifname", "oifname"] {
            self.nft_rule(&table, &format!("{dir} {} drop", host.router_if))?;
        }
        Ok(())
    }

    /// Adds `rule` (nft syntax) to the forward chain of the router's table
    /// `table`.
    fn nft_rule(&self, table: &str, rule: &str) -> Result<(), RigError> {
        let mut args = vec!["add", "rule", "inet", table, "forward"];
        args.extend(rule.split_whitespace());
        run_in(&self.router, "nft", &args)
    }

    /// Runs `f` on a thread inside host `i`'s namespace (sockets it opens
    /// live there) and returns what it returns.
    pub fn in_host<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, RigError> {
        let netns =
            self.hosts
                .get(i)
                .map(|h| h.netns.clone())
                .ok_or_else(|| RigError::Command {
                    command: format!("enter host {i}"),
                    stderr: "no such host".into(),
                })?;
        std::thread::spawn(move || -> Result<T, String> {
            enter_netns(&netns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| RigError::Delay("the thread in the host panicked".into()))?
        .map_err(RigError::Delay)
    }

    /// Waits for every process started so far to exit by itself; kills
    /// those still running after `within`.
    pub fn wait_all(&mut self, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            }
        }
    }
}

impl Drop for NetRig {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(q) = self.delay.take() {
            q.stop();
        }
        for h in &self.hosts {
            let _ = run("ip", &["netns", "del", &h.netns]);
        }
        let _ = run("ip", &["netns", "del", &self.router]);
    }
}
