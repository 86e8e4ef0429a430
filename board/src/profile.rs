//! Board profiles: `board/boards/<arch>.toml`, one per supported OpenWrt package architecture.
//!
//! TOML read with the `toml` crate into serde structs. Unknown keys are errors so typos cannot
//! silently fall back to defaults; every error names the file and, where the value has one, the
//! line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::error::Error;

/// Release-profile settings. Defaults mirror what the OpenWrt SDK forces on Rust packages
/// (`lang/rust/rust-values.mk`): opt-level z, fat LTO, one codegen unit, unwinding panics,
/// overflow checks on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Release {
    /// `opt-level` (`z`, `s`, `3`, ...).
    #[serde(deserialize_with = "opt_level")]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Stripped binary size, KiB.
    #[serde(deserialize_with = "positive")]
    pub max_binary_kib: u64,
    /// Peak RSS, KiB.
    #[serde(deserialize_with = "positive")]
    pub max_rss_kib: u64,
    /// Stripped binary size of the DoT-only build (`--no-default-features`, no features), KiB, where
    /// it has a budget of its own (the small-flash build); otherwise `max_binary_kib` applies.
    #[serde(default, deserialize_with = "positive_some")]
    pub max_binary_kib_dot_only: Option<u64>,
}

impl Budget {
    /// The size budget, KiB, of a build with `features` (as `build-info` records them, comma
    /// separated, empty for none) with or without the default features.
    pub fn binary_kib(&self, no_default_features: bool, features: &str) -> u64 {
        match self.max_binary_kib_dot_only {
            Some(kib) if no_default_features && features.is_empty() => kib,
            _ => self.max_binary_kib,
        }
    }
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "expected a positive integer, found 0",
        )),
        n => Ok(n),
    }
}

fn positive_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    positive(d).map(Some)
}

fn opt_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let o = String::deserialize(d)?;
    if matches!(o.as_str(), "0" | "1" | "2" | "3" | "s" | "z") {
        Ok(o)
    } else {
        Err(serde::de::Error::custom(format!(
            "opt_level {o:?} is not one of 0 1 2 3 s z"
        )))
    }
}

/// A profile file as written (the name comes from the file name).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    arch: String,
    triple: String,
    qemu: String,
    qemu_cpu: String,
    #[serde(default)]
    examples: String,
    budget: Budget,
    #[serde(default)]
    release: Release,
    #[serde(default)]
    features: Vec<String>,
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
    /// Cargo features this profile's builds carry on top of the defaults (not with
    /// `--no-default-features`): e.g. `doq` where DoT + DoH + DoQ fits the budget.
    pub features: Vec<String>,
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
    let f: ProfileFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        });
        perr(line, e.message().to_owned())
    })?;
    if f.arch != name {
        return Err(perr(
            0,
            format!("arch {:?} must equal the file name {name:?}", f.arch),
        ));
    }
    if !f.triple.contains("-linux-musl") {
        return Err(perr(
            0,
            format!("triple {:?}: OpenWrt targets are *-linux-musl*", f.triple),
        ));
    }
    if let Some(bad) = f.features.iter().find(|x| {
        x.is_empty()
            || !x
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    }) {
        return Err(perr(
            0,
            format!("features: {bad:?} is not a cargo feature name"),
        ));
    }
    Ok(Profile {
        features: f.features,
        name: name.to_owned(),
        arch: f.arch,
        triple: f.triple,
        qemu: f.qemu,
        qemu_cpu: f.qemu_cpu,
        examples: f.examples,
        budget: f.budget,
        release: f.release,
    })
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
                max_rss_kib: 12288,
                max_binary_kib_dot_only: None,
            }
        );
        assert_eq!(p.budget.binary_kib(true, ""), 2560);
        assert_eq!(
            p.release,
            Release {
                opt_level: "s".into(),
                lto: false
            }
        );
    }

    #[test]
    fn profile_features_join_the_defaults_but_not_the_small_builds() {
        use crate::cross::{BuildOptions, effective_features};
        let text = GOOD.replace("[budget]", "features = [\"doq\"]\n[budget]");
        let p = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap();
        assert_eq!(p.features, ["doq"]);
        let opts = |features: Option<&str>, no_default_features| BuildOptions {
            features: features.map(str::to_owned),
            no_default_features,
            ..BuildOptions::default()
        };
        assert_eq!(
            effective_features(&p, &opts(None, false)).as_deref(),
            Some("doq")
        );
        assert_eq!(
            effective_features(&p, &opts(Some("tls12,doq"), false)).as_deref(),
            Some("doq,tls12")
        );
        assert_eq!(effective_features(&p, &opts(None, true)), None);
        assert_eq!(
            effective_features(&p, &opts(Some("doh"), true)).as_deref(),
            Some("doh")
        );
        let plain = parse("aarch64_cortex-a53", Path::new("x.toml"), GOOD).unwrap();
        assert!(plain.features.is_empty());
        assert_eq!(effective_features(&plain, &opts(None, false)), None);
        let bad = GOOD.replace("[budget]", "features = [\"d q\"]\n[budget]");
        assert!(parse("aarch64_cortex-a53", Path::new("x.toml"), &bad).is_err());
    }

    #[test]
    fn parse_rejects_unknown_key() {
        // Line 14, in [release].
        let text = format!("{GOOD}\nmax_size = 3\n");
        let e = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.toml:14: unknown field `max_size`, expected `opt_level` or `lto`"),
            "{e}"
        );
        let text = GOOD.replace("qemu_cpu", "qemu_cpus");
        let e = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.toml:5: unknown field `qemu_cpus`"),
            "{e}"
        );
    }

    #[test]
    fn parse_rejects_bad_values_with_their_line() {
        for (from, to, want) in [
            (
                "2_560",
                "0",
                "x.toml:8: expected a positive integer, found 0",
            ),
            (
                "2_560",
                "-1",
                "x.toml:8: invalid value: integer `-1`, expected u64",
            ),
            (
                "2_560",
                "\"big\"",
                "x.toml:8: invalid type: string \"big\", expected u64",
            ),
            (
                "\"s\"",
                "\"fast\"",
                "x.toml:11: opt_level \"fast\" is not one of 0 1 2 3 s z",
            ),
            (
                "lto = false",
                "lto = 1",
                "x.toml:12: invalid type: integer `1`, expected a boolean",
            ),
            (
                "\"cortex-a53\"",
                "53",
                "x.toml:5: invalid type: integer `53`, expected a string",
            ),
        ] {
            let text = GOOD.replace(from, to);
            let e = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap_err();
            assert!(e.to_string().starts_with(want), "{from} -> {to}: {e}");
        }
        let text = GOOD.replace("max_rss_kib = 12288\n", "");
        let e = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap_err();
        assert!(e.to_string().contains("missing field `max_rss_kib`"), "{e}");
        let text = GOOD.replace(
            "triple = \"aarch64-unknown-linux-musl\"",
            "triple = \"aarch64-unknown-linux-gnu\"",
        );
        let e = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap_err();
        assert!(
            e.to_string().contains("OpenWrt targets are *-linux-musl*"),
            "{e}"
        );
    }

    #[test]
    fn the_dot_only_build_can_have_its_own_budget() {
        let text = GOOD.replace("max_rss_kib", "max_binary_kib_dot_only = 2048\nmax_rss_kib");
        let b = parse("aarch64_cortex-a53", Path::new("x.toml"), &text)
            .unwrap()
            .budget;
        assert_eq!(b.max_binary_kib_dot_only, Some(2048));
        assert_eq!(b.binary_kib(true, ""), 2048);
        // DoT-only plus a feature, and the default build, are held to the profile's budget.
        assert_eq!(b.binary_kib(true, "tls12"), 2560);
        assert_eq!(b.binary_kib(true, "doh,tls12"), 2560);
        assert_eq!(b.binary_kib(false, ""), 2560);
        assert_eq!(b.binary_kib(false, "doq"), 2560);
        let text = GOOD.replace("max_rss_kib", "max_binary_kib_dot_only = 0\nmax_rss_kib");
        let e = parse("aarch64_cortex-a53", Path::new("x.toml"), &text).unwrap_err();
        assert!(e.to_string().contains("positive integer"), "{e}");
    }

    #[test]
    fn release_defaults_to_the_sdk_settings() {
        let text = GOOD.split("[release]").next().unwrap();
        let p = parse("aarch64_cortex-a53", Path::new("x.toml"), text).unwrap();
        assert_eq!(p.release, Release::default());
        assert_eq!(p.release.opt_level, "z");
        assert!(p.release.lto);
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
