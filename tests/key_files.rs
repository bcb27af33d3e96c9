//! Source key files and the `keygen` / `selfcheck` commands: good keys work,
//! bad key files fail with a clear message and a non-zero exit.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use clubcast::auth::{KeyError, SourceKey, StreamId};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("clubcast-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn clubcast(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clubcast"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn written_key_loads_back_with_mode_0600() {
    let dir = Scratch::new("roundtrip");
    let path = dir.path("source.key");
    let key = SourceKey::generate().expect("random");
    key.write_new(&path).expect("writes");
    let meta = fs::metadata(&path).expect("exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let back = SourceKey::load(&path).expect("loads");
    assert_eq!(back.stream_id(), key.stream_id());
    assert!(matches!(key.write_new(&path), Err(KeyError::Exists { .. })));
}

#[test]
fn missing_key_file_is_named() {
    let dir = Scratch::new("missing");
    let err = SourceKey::load(&dir.path("nope.key")).err().expect("fails");
    assert!(matches!(err, KeyError::Missing { .. }));
    assert!(err.to_string().contains("clubcast keygen"));
}

#[test]
fn wrong_size_key_file_is_rejected() {
    let dir = Scratch::new("size");
    let path = dir.path("short.key");
    fs::write(&path, [1u8; 31]).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(matches!(
        SourceKey::load(&path),
        Err(KeyError::WrongSize { len: 31, .. })
    ));
}

#[test]
fn world_or_group_readable_key_file_is_rejected() {
    let dir = Scratch::new("open");
    let path = dir.path("open.key");
    fs::write(&path, [1u8; 32]).expect("write");
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        let err = SourceKey::load(&path).err().expect("refused");
        assert!(matches!(err, KeyError::TooOpen { .. }), "{mode:o}");
        assert!(err.to_string().contains("chmod 600"));
    }
}

#[test]
fn directory_as_key_file_is_rejected() {
    let dir = Scratch::new("dir");
    let path = dir.path("sub");
    fs::create_dir(&path).expect("mkdir");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
    assert!(SourceKey::load(&path).is_err());
}

#[test]
fn stream_id_text_round_trips_and_rejects_garbage() {
    let key = SourceKey::from_seed(&[3; 32]);
    let text = key.stream_id().to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text.parse::<StreamId>().expect("parses"), key.stream_id());
    assert!("abc".parse::<StreamId>().is_err());
    assert!("zz".repeat(32).parse::<StreamId>().is_err());
}

#[test]
fn keygen_then_selfcheck_passes() {
    let dir = Scratch::new("cli");
    let path = dir.path("cli.key");
    let p = path.to_str().expect("utf-8 path");
    let (code, stdout, _) = clubcast(&["keygen", "--out", p]);
    assert_eq!(code, 0);
    let id = stdout.trim();
    assert!(id.parse::<StreamId>().is_ok(), "{id}");
    let (code, stdout, stderr) = clubcast(&["selfcheck", "--key", p, "--blocks", "200"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(id));
    assert!(stdout.contains("self-check  : PASS"));
    // Refuses to overwrite the key.
    let (code, _, stderr) = clubcast(&["keygen", "--out", p]);
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn selfcheck_with_bad_key_exits_non_zero_with_reason() {
    let dir = Scratch::new("clibad");
    let path = dir.path("bad.key");
    fs::write(&path, [0u8; 32]).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, _, stderr) = clubcast(&["selfcheck", "--key", path.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("readable beyond its owner"), "{stderr}");
    let (code, _, stderr) = clubcast(&["selfcheck", "--key", "/nonexistent/clubcast.key"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("does not exist"), "{stderr}");
}
