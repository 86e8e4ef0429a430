//! Board profiles: `board/boards/<arch>.toml`, one per supported OpenWrt package architecture.
//!
//! The files use a small, strict subset of TOML (`key = "string" | integer | true | false`,
//! `[table]` headers, `#` comments); unknown keys are errors so typos cannot silently fall back
//! to defaults. Keeping the parser here keeps the board tool free of dependencies.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// One value of the TOML subset.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(u64),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Release-profile settings. Defaults mirror what the OpenWrt SDK forces on Rust packages
/// (`lang/rust/rust-values.mk`): opt-level z, fat LTO, one codegen unit, unwinding panics,
/// overflow checks on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `opt-level` (`z`, `s`, `3`, ...).
    pub opt_level: String,
    /// Fat LTO on or off.
    pub lto: bool,
}

impl Default for Release {
    fn default() -> Self {
        Self {
            opt_level: "z".to_owned(),
            lto: true,
        }
    }
}

/// Resource budgets a build must stay within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Stripped binary size, KiB.
    pub max_binary_kib: u64,
    /// Peak RSS, KiB.
    pub max_rss_kib: u64,
}

/// A validated board profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// File stem, the name used on the command line.
    pub name: String,
    /// OpenWrt package architecture (`Architecture:` of the ipk).
    pub arch: String,
    /// Rust target triple.
    pub triple: String,
    /// qemu-user binary.
    pub qemu: String,
    /// qemu `-cpu` model.
    pub qemu_cpu: String,
    /// Free text: typical devices.
    pub examples: String,
    /// Budgets.
    pub budget: Budget,
    /// Release settings.
    pub release: Release,
}

/// The directory holding the profiles.
pub fn dir(root: &Path) -> PathBuf {
    root.join("board").join("boards")
}

/// Names of every profile, sorted.
pub fn names(root: &Path) -> Result<Vec<String>, Error> {
    let d = dir(root);
    let rd = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(&d, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "toml")
            && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
        {
            out.push(stem.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Loads and validates `board/boards/<name>.toml`.
pub fn load(root: &Path, name: &str) -> Result<Profile, Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(Error::Usage(format!("bad profile name {name:?}")));
    }
    let path = dir(root).join(format!("{name}.toml"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let known = names(root).unwrap_or_default().join(", ");
            return Err(Error::Usage(format!(
                "unknown profile {name:?}; known: {known}"
            )));
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    parse(name, &path, &text)
}

fn parse(name: &str, path: &Path, text: &str) -> Result<Profile, Error> {
    let perr = |line: usize, msg: String| Error::Profile {
        path: path.to_owned(),
        line,
        msg,
    };
    let mut map: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let t = rest
                .strip_suffix(']')
                .ok_or_else(|| perr(n, "unterminated table header".into()))?
                .trim();
            if !matches!(t, "budget" | "release") {
                return Err(perr(
                    n,
                    format!("unknown table [{t}] (known: budget, release)"),
                ));
            }
            t.clone_into(&mut table);
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| perr(n, "expected key = value".into()))?;
        let k = k.trim();
        let key = if table.is_empty() {
            k.to_owned()
        } else {
            format!("{table}.{k}")
        };
        let v = parse_value(v.trim()).map_err(|m| perr(n, format!("{key}: {m}")))?;
        if map.insert(key.clone(), (n, v)).is_some() {
            return Err(perr(n, format!("{key}: duplicate key")));
        }
    }

    let mut take_str = |key: &str, required: bool| -> Result<Option<String>, Error> {
        match map.remove(key) {
            Some((_, Value::Str(s))) => Ok(Some(s)),
            Some((l, v)) => Err(perr(l, format!("{key}: expected a string, found {v}"))),
            None if required => Err(perr(0, format!("{key}: missing"))),
            None => Ok(None),
        }
    };
    let arch = take_str("arch", true)?.unwrap_or_default();
    let triple = take_str("triple", true)?.unwrap_or_default();
    let qemu = take_str("qemu", true)?.unwrap_or_default();
    let qemu_cpu = take_str("qemu_cpu", true)?.unwrap_or_default();
    let examples = take_str("examples", false)?.unwrap_or_default();
    let mut release = Release::default();
    if let Some(o) = take_str("release.opt_level", false)? {
        if !matches!(o.as_str(), "0" | "1" | "2" | "3" | "s" | "z") {
            return Err(perr(
                0,
                format!("release.opt_level: {o:?} is not one of 0 1 2 3 s z"),
            ));
        }
        release.opt_level = o;
    }
    let mut take_int = |key: &str| -> Result<u64, Error> {
        match map.remove(key) {
            Some((_, Value::Int(v))) if v > 0 => Ok(v),
            Some((l, v)) => Err(perr(
                l,
                format!("{key}: expected a positive integer, found {v}"),
            )),
            None => Err(perr(0, format!("{key}: missing"))),
        }
    };
    let budget = Budget {
        max_binary_kib: take_int("budget.max_binary_kib")?,
        max_rss_kib: take_int("budget.max_rss_kib")?,
    };
    match map.remove("release.lto") {
        Some((_, Value::Bool(b))) => release.lto = b,
        Some((l, v)) => {
            return Err(perr(
                l,
                format!("release.lto: expected true or false, found {v}"),
            ));
        }
        None => {}
    }
    if let Some((key, (l, _))) = map.into_iter().next() {
        return Err(perr(l, format!("{key}: unknown key")));
    }
    if arch != name {
        return Err(perr(
            0,
            format!("arch {arch:?} must equal the file name {name:?}"),
        ));
    }
    if !triple.contains("-linux-musl") {
        return Err(perr(
            0,
            format!("triple {triple:?}: OpenWrt targets are *-linux-musl*"),
        ));
    }
    Ok(Profile {
        name: name.to_owned(),
        arch,
        triple,
        qemu,
        qemu_cpu,
        examples,
        budget,
        release,
    })
}

/// Drops a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_str => escaped = true,
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn parse_value(v: &str) -> Result<Value, String> {
    if let Some(body) = v.strip_prefix('"') {
        let body = body.strip_suffix('"').ok_or("unterminated string")?;
        let mut out = String::with_capacity(body.len());
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    other => return Err(format!("unsupported escape \\{}", other.unwrap_or(' '))),
                },
                '"' => return Err("stray quote inside string".into()),
                c => out.push(c),
            }
        }
        return Ok(Value::Str(out));
    }
    match v {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let digits: String = v.chars().filter(|&c| c != '_').collect();
    digits
        .parse::<u64>()
        .map(Value::Int)
        .map_err(|_| format!("unsupported value {v:?} (use \"string\", integer, true or false)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
arch = "aarch64_cortex-a53"   # comment
triple = "aarch64-unknown-linux-musl"
qemu = "qemu-aarch64-static"
qemu_cpu = "cortex-a53"
examples = "a # not a comment"
[budget]
max_binary_kib = 2_560
max_rss_kib = 12288
[release]
opt_level = "s"
lto = false
"#;

    #[test]
    fn parse_good_profile() {
        let p = parse("aarch64_cortex-a53", Path::new("x.toml"), GOOD).unwrap();
        assert_eq!(p.triple, "aarch64-unknown-linux-musl");
        assert_eq!(p.examples, "a # not a comment");
        assert_eq!(
            p.budget,
            Budget {
                max_binary_kib: 2560,
                max_rss_kib: 12288
            }
        );
        assert_eq!(
            p.release,
            Release {
                opt_level: "s".into(),
                lto: false
            }
        );
    }

    #[test]
    fn parse_rejects_unknown_key() {
        let text = format!("{GOOD}\nmax_size = 3\n");
        let e = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap_err();
        assert!(
            e.to_string().contains("release.max_size: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn parse_rejects_name_mismatch() {
        let e = parse("mipsel_24kc", Path::new("x.toml"), GOOD).unwrap_err();
        assert!(e.to_string().contains("must equal the file name"), "{e}");
    }

    #[test]
    fn shipped_profiles_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let names = names(root).unwrap();
        for required in [
            "aarch64_cortex-a53",
            "aarch64_cortex-a72",
            "arm_cortex-a7_neon-vfpv4",
            "arm_cortex-a9_vfpv3-d16",
            "mipsel_24kc",
            "x86_64",
        ] {
            assert!(
                names.iter().any(|n| n == required),
                "missing profile {required}"
            );
        }
        for n in names {
            load(root, &n).unwrap();
        }
    }
}
