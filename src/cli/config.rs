//! `--config FILE`: a TOML file of a role's flags.
//!
//! Each key is a long flag of the subcommand, without its dashes (`listen`
//! or `stream-id`; `stream_id` is read as `stream-id`). A string, integer or
//! float is the flag's value, `true` gives a switch and `false` leaves it
//! out, and an array is joined with commas (`clubs = [0, 1]`). The file's
//! flags go in front of those on the command line, and a flag given again
//! there wins (the command parses with `args_override_self`). A key that is
//! not a flag of the subcommand is refused by the parser, naming the flag.
//! `packaging/config/` has a documented example per role.

use std::ffi::OsString;
use std::path::Path;

/// Most bytes read from a configuration file.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `argv` with the flags of its `--config FILE` (if any) put in front of
/// the subcommand's own arguments.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(file) = config_path(&argv) else {
        return Ok(argv);
    };
    let flags = read(Path::new(&file))?;
    let mut out: Vec<OsString> = argv.iter().take(2).cloned().collect();
    out.extend(flags.into_iter().map(OsString::from));
    out.extend(argv.into_iter().skip(2));
    Ok(out)
}

/// The value of `--config FILE` or `--config=FILE` after the subcommand.
fn config_path(argv: &[OsString]) -> Option<OsString> {
    let mut args = argv.iter().skip(2);
    while let Some(a) = args.next() {
        if a == "--config" {
            return args.next().cloned();
        }
        if let Some(v) = a.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(v.into());
        }
    }
    None
}

/// The flags a configuration file holds.
fn read(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("{shown}: larger than {MAX_CONFIG_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    flags(&text).map_err(|e| format!("{shown}: {e}"))
}

/// The flags of a configuration file's text.
pub fn flags(text: &str) -> Result<Vec<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = Vec::new();
    for (key, value) in &table {
        if key == "config" {
            return Err("`config` cannot name another file".into());
        }
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let items: Result<Vec<String>, String> =
                    items.iter().map(|v| scalar(key, v)).collect();
                out.push(flag);
                out.push(items?.join(","));
            }
            v => {
                out.push(flag);
                out.push(scalar(key, v)?);
            }
        }
    }
    Ok(out)
}

/// A string, integer or float as flag text.
fn scalar(key: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!(
            "`{key}`: a {} is not a flag value (use a string, number, boolean or array)",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_of_value_becomes_flags() {
        let f = flags(
            "listen = \"0.0.0.0:7000\"\nstream_id = \"ab\"\nclubs = [0, 1]\nrelay = true\nquiet = false\nrate = 1.5\nduration = 30\n",
        )
        .expect("valid");
        assert_eq!(
            f,
            [
                "--clubs",
                "0,1",
                "--duration",
                "30",
                "--listen",
                "0.0.0.0:7000",
                "--rate",
                "1.5",
                "--relay",
                "--stream-id",
                "ab"
            ]
        );
    }

    #[test]
    fn tables_nested_configs_and_bad_toml_are_refused() {
        assert!(flags("[section]\nx = 1\n").is_err());
        assert!(flags("config = \"other.toml\"\n").is_err());
        assert!(flags("listen = \n").is_err());
        assert!(flags("when = 1979-05-27T07:32:00Z\n").is_err());
    }

    #[test]
    fn the_file_goes_before_the_command_line() {
        let dir = std::env::temp_dir().join(format!("clubcast-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("t.toml");
        std::fs::write(&file, "listen = \"1.2.3.4:5\"\n").expect("write");
        let argv: Vec<OsString> = [
            "clubcast",
            "tracker",
            "--config",
            file.to_str().unwrap_or(""),
            "--listen",
            "9.9.9.9:9",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out = expand(argv).expect("expands");
        let out: Vec<&str> = out.iter().filter_map(|a| a.to_str()).collect();
        assert_eq!(&out[..4], ["clubcast", "tracker", "--listen", "1.2.3.4:5"]);
        assert_eq!(out.last(), Some(&"9.9.9.9:9"));
        let missing = expand(vec![
            "c".into(),
            "tracker".into(),
            "--config".into(),
            dir.join("none.toml").into(),
        ]);
        assert!(missing.is_err_and(|e| e.contains("cannot read")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        /// Any text: flags or an error, never a panic.
        #[test]
        fn any_text_is_survived(text in ".{0,300}") {
            let _ = flags(&text);
        }
    }
}
