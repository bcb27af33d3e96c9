//! `tuning/apply.sh` for real, on a veth pair in a network namespace this
//! test creates (and deletes on drop): `apply` sets the interface's NAPI
//! knobs and saves the old values, `show` reports them, `revert` puts them
//! back and forgets the saved state, a second `revert` is refused, and
//! the knobs a profile leaves empty (busy polling and hugepages, which are
//! global to the machine) are reported and left alone. The veth has no
//! ntuple filters, descriptor rings or per-queue interrupts, so those
//! steps are reported as skipped. Needs root: under `CI=true` its absence
//! is a failure, elsewhere a printed skip.

#[path = "support/netns.rs"]
mod netns;

use std::path::Path;
use std::process::{Command, Output};

use netns::privileged;

/// A named network namespace, deleted on drop.
struct Namespace(String);

impl Namespace {
    fn new(name: String) -> Self {
        netns::ip(&["netns", "add", &name]);
        Namespace(name)
    }

    /// Runs `args` inside the namespace.
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }

    /// One of the interface's sysfs values, read inside the namespace.
    fn sysfs(&self, iface: &str, knob: &str) -> String {
        let out = self.exec(&["cat", &format!("/sys/class/net/{iface}/{knob}")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn apply_and_revert_a_profile_on_a_veth() {
    let test = "apply_and_revert_a_profile_on_a_veth";
    if !privileged(test, "needs root to create a network namespace") {
        return;
    }
    let id = std::process::id() % 1_000_000;
    let ns = Namespace::new(format!("clubcast-tune-{id}"));
    let (iface, peer) = (format!("cct{id}a"), format!("cct{id}b"));
    let pair = ns.exec(&[
        "ip", "link", "add", "name", &iface, "type", "veth", "peer", "name", &peer,
    ]);
    assert!(pair.status.success(), "{}", text(&pair));

    let dir = std::env::temp_dir().join(format!("clubcast-tune-{id}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let profile = dir.join("test.profile");
    std::fs::write(
        &profile,
        "QUEUES=1\nQUEUE_BASE=0\nRELAY_PORT=7100\nWORKER_CPUS=\"0\"\n\
         GRO_FLUSH_TIMEOUT_NS=200000\nNAPI_DEFER_HARD_IRQS=2\nRING_ENTRIES=4096\n\
         BUSY_POLL_US=\nHUGEPAGES=\n",
    )
    .expect("write the profile");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/apply.sh");
    let script = script.to_str().expect("a UTF-8 path");
    let profile = profile.to_str().expect("a UTF-8 path");
    let saved = format!("/run/clubcast-tuning/{iface}.saved");
    let hugepages = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").expect("nr_hugepages");

    let before = (
        ns.sysfs(&iface, "gro_flush_timeout"),
        ns.sysfs(&iface, "napi_defer_hard_irqs"),
    );
    assert_ne!(
        before,
        ("200000".into(), "2".into()),
        "a fresh veth is untuned"
    );

    let apply = ns.exec(&["bash", script, "apply", profile, &iface]);
    let log = text(&apply);
    eprintln!("{log}");
    assert!(apply.status.success(), "{log}");
    assert!(log.contains("ok:   gro_flush_timeout 200000 ns"), "{log}");
    assert!(log.contains("ok:   napi_defer_hard_irqs 2"), "{log}");
    assert!(log.contains("skip: BUSY_POLL_US is empty"), "{log}");
    assert!(log.contains("skip: HUGEPAGES is empty"), "{log}");
    assert!(log.contains("skip: IRQ of queue 0"), "{log}");
    assert!(log.contains("skip: UDP dst 7100 to queue 0"), "{log}");
    assert_eq!(ns.sysfs(&iface, "gro_flush_timeout"), "200000");
    assert_eq!(ns.sysfs(&iface, "napi_defer_hard_irqs"), "2");
    assert!(Path::new(&saved).exists(), "the old values are saved");

    let show = text(&ns.exec(&["bash", script, "show", &iface]));
    assert!(
        show.contains("gro_flush_timeout=200000 napi_defer_hard_irqs=2"),
        "{show}"
    );

    let revert = ns.exec(&["bash", script, "revert", &iface]);
    let log = text(&revert);
    eprintln!("{log}");
    assert!(revert.status.success(), "{log}");
    assert_eq!(
        (
            ns.sysfs(&iface, "gro_flush_timeout"),
            ns.sysfs(&iface, "napi_defer_hard_irqs")
        ),
        before,
        "{log}"
    );
    assert!(!Path::new(&saved).exists(), "the saved state is gone");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/nr_hugepages").expect("nr_hugepages"),
        hugepages,
        "hugepages untouched"
    );

    let again = ns.exec(&["bash", script, "revert", &iface]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("nothing saved"), "{}", text(&again));
    let bad = ns.exec(&["bash", script, "apply", profile, "no/such;name"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let _ = std::fs::remove_dir_all(&dir);
}
