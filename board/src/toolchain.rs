//! The cross toolchain: Debian's `rustc-web` family (compiler, cargo, host std, std sources, all at
//! one version) rebuilding std per target with `-Zbuild-std`, and zig (PyPI `ziglang`) driven by
//! `cargo-zigbuild` as C compiler, musl libc and linker, installed in a private virtualenv.
//!
//! Invariants checked before every build (and fixed by `setup` when possible):
//! the four Debian packages are installed at the same version, the compiler is at least the
//! workspace's `rust-version` (read from the top-level `Cargo.toml`), and the std sources'
//! `src/version` equals the compiler's release; otherwise std would be rebuilt from sources that do
//! not match the compiler, which `-Zbuild-std` does not detect by itself.
//!
//! `setup` never trusts apt's package lists blindly: a fresh Debian install whose lists were not
//! refreshed offers bookworm's rustc-web 1.85, too old for the workspace. When the candidate is older
//! than `rust-version` it runs `apt-get update` and asks again, and if no new enough candidate
//! exists it stops with what to do ([`decide`] is that decision, without I/O).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::Error;

/// Debian packages that must all be installed at one version.
pub const RUST_PACKAGES: [&str; 4] = [
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev",
    "rust-web-src",
];
/// Other Debian packages the board tool and its tests use.
/// (`binutils-mipsel-linux-gnu`: its `objcopy` drops the `.pdr` sections of mipsel builds.)
pub const HOST_PACKAGES: [&str; 3] = [
    "python3-venv",
    "qemu-user-static",
    "binutils-mipsel-linux-gnu",
];
/// PyPI pins for the private virtualenv.
pub const PYPI_PINS: [&str; 2] = ["ziglang==0.17.1", "cargo-zigbuild==0.24.0"];

pub const RUSTC: &str = "/usr/bin/rustc";
pub const CARGO: &str = "/usr/bin/cargo";
const STD_SRC: &str = "/usr/lib/rustlib/src/rust";

/// Where the virtualenv lives: `$LANVEIL_TOOLCHAIN_DIR`, default `/opt/lanveil-toolchain`
/// (outside `target/` so `cargo clean` does not throw it away).
pub fn dir() -> PathBuf {
    std::env::var_os("LANVEIL_TOOLCHAIN_DIR")
        .map_or_else(|| PathBuf::from("/opt/lanveil-toolchain"), PathBuf::from)
}

pub fn venv_bin() -> PathBuf {
    dir().join("venv").join("bin")
}

/// Runs a command, capturing stdout; a non-zero exit is an error carrying stderr.
pub fn output(cmd: &mut Command) -> Result<String, Error> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Command {
            what,
            detail: format!("{}: {}", out.status, err.trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with inherited stdio; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<(), Error> {
    let what = describe(cmd);
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Command {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            what,
            detail: status.to_string(),
        })
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Installed Debian version of `pkg`, if installed.
fn dpkg_version(pkg: &str) -> Option<String> {
    let out =
        output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status} ${Version}", pkg]))
            .ok()?;
    let v = out.strip_prefix("installed ")?.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// The `Candidate:` of `apt-cache policy PKG` output (`None` for none or `(none)`).
pub fn parse_apt_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| v.trim().to_owned())
        })
        .filter(|v| !v.is_empty() && v != "(none)")
}

/// The candidate version `apt-cache policy` reports for `pkg`, if any.
fn apt_candidate(pkg: &str) -> Result<Option<String>, Error> {
    let out = output(Command::new("apt-cache").args(["policy", pkg]))?;
    Ok(parse_apt_candidate(&out))
}

/// A Rust release `major.minor.patch` (a missing patch is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RustVersion(pub u32, pub u32, pub u32);

impl RustVersion {
    /// The leading `X.Y[.Z]` of `s`: `1.91`, `1.96.0`, Debian's `1.96.0+dfsg1-1~deb12u2`, `1.85.0-nightly`.
    pub fn parse_prefix(s: &str) -> Option<Self> {
        let end = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let mut parts = s[..end].split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            None | Some("") => 0,
            Some(p) => p.parse().ok()?,
        };
        Some(Self(major, minor, patch))
    }
}

impl std::fmt::Display for RustVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The compiler's release from `rustc -vV` (`release: 1.85.0`) or `rustc --version`
/// (`rustc 1.85.0 (…)`) output.
pub fn parse_rustc_version(out: &str) -> Option<RustVersion> {
    out.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("release:")
            .or_else(|| l.strip_prefix("rustc "))
            .and_then(|v| RustVersion::parse_prefix(v.trim()))
    })
}

/// `[workspace.package]` of the root Cargo.toml: what the board tool reads from it.
#[derive(serde::Deserialize)]
pub(crate) struct WorkspacePackage {
    pub(crate) version: Option<String>,
    #[serde(rename = "rust-version")]
    pub(crate) rust_version: Option<String>,
}

/// Reads `[workspace.package]` from the root Cargo.toml's text.
pub(crate) fn workspace_package(cargo_toml: &str) -> Result<WorkspacePackage, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        workspace: Workspace,
    }
    #[derive(serde::Deserialize)]
    struct Workspace {
        package: WorkspacePackage,
    }
    toml::from_str::<Manifest>(cargo_toml).map(|m| m.workspace.package)
}

/// `rust-version` of `[workspace.package]` in the workspace's Cargo.toml text.
pub fn parse_workspace_rust_version(cargo_toml: &str) -> Option<RustVersion> {
    RustVersion::parse_prefix(&workspace_package(cargo_toml).ok()?.rust_version?)
}

/// The workspace's minimum compiler (`rust-version` in `ROOT/Cargo.toml`).
pub fn required_rust(root: &Path) -> Result<RustVersion, Error> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    parse_workspace_rust_version(&text).ok_or_else(|| {
        Error::Toolchain(format!(
            "{}: no rust-version in [workspace.package]",
            path.display()
        ))
    })
}

/// What `setup` does next about the Debian compiler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The installed compiler is new enough.
    Ready,
    /// Install the Rust packages at this Debian version (apt's candidate, new enough).
    Install(String),
    /// apt's candidate is missing or too old: refresh the lists (`apt-get update`) and decide again.
    UpdateLists,
    /// Even after `apt-get update` nothing new enough: stop with this message.
    Fail(String),
}

/// The decision of `setup`, without I/O: `installed` is the compiler's release (if the packages are
/// installed and consistent), `candidate` apt's candidate for rustc-web, `lists_updated` whether
/// `apt-get update` already ran.
pub fn decide(
    required: RustVersion,
    installed: Option<RustVersion>,
    candidate: Option<&str>,
    lists_updated: bool,
) -> Step {
    if installed.is_some_and(|v| v >= required) {
        return Step::Ready;
    }
    let cand = candidate.and_then(RustVersion::parse_prefix);
    if let (Some(c), Some(full)) = (cand, candidate)
        && c >= required
    {
        return Step::Install(full.to_owned());
    }
    if !lists_updated {
        return Step::UpdateLists;
    }
    let offered = match candidate {
        Some(c) => format!("apt offers {} {c} only", RUST_PACKAGES[0]),
        None => format!("apt has no candidate for {}", RUST_PACKAGES[0]),
    };
    let have = installed.map_or_else(String::new, |v| format!(" (installed: rustc {v})"));
    Step::Fail(format!(
        "the workspace needs rustc >= {required} (rust-version in Cargo.toml), but {offered} even after \
         apt-get update{have}. Debian ships current Rust as {} in bookworm-security: add \
         `deb http://deb.debian.org/debian-security bookworm-security main` to /etc/apt/sources.list \
         (or a file in /etc/apt/sources.list.d/), then run `apt-get update` and `cargo board setup` again",
        RUST_PACKAGES[0]
    ))
}

fn apt_install(specs: &[String]) -> Result<(), Error> {
    if !is_root() {
        return Err(Error::Toolchain(format!(
            "need root to install Debian packages; run: apt-get install -y {}",
            specs.join(" ")
        )));
    }
    eprintln!("board: apt-get install {}", specs.join(" "));
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "-q", "--no-install-recommends"])
        .args(specs)
        .env("DEBIAN_FRONTEND", "noninteractive");
    if run(&mut cmd).is_err() {
        // The package lists may be stale (bookworm-security only keeps the newest rustc-web).
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(&mut cmd)?;
    }
    Ok(())
}

fn apt_update() -> Result<(), Error> {
    if !is_root() {
        return Err(Error::Toolchain(
            "apt's package lists offer no new enough rustc-web; need root to refresh them: run `apt-get update` and `cargo board setup` again"
                .into(),
        ));
    }
    eprintln!("board: apt-get update (the package lists offer no new enough rustc-web)");
    run(Command::new("apt-get").args(["update", "-q"]))
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// Checks the Debian Rust packages: all four installed, one version, the compiler at least
/// `required`, std sources matching the compiler. Returns the compiler release (e.g. `1.96.0`).
pub fn check_rust(required: RustVersion) -> Result<String, Error> {
    let mut versions = Vec::new();
    for p in RUST_PACKAGES {
        let v = dpkg_version(p).ok_or_else(|| {
            Error::Toolchain(format!("{p} is not installed (run `cargo board setup`)"))
        })?;
        versions.push((p, v));
    }
    if let Some((p, v)) = versions.iter().find(|(_, v)| *v != versions[0].1) {
        return Err(Error::Toolchain(format!(
            "{p} is at {v} but {} is at {}; install all of {} at one version (`cargo board setup`)",
            versions[0].0,
            versions[0].1,
            RUST_PACKAGES.join(", ")
        )));
    }
    let vv = output(Command::new(RUSTC).arg("-vV"))?;
    let release = vv
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .ok_or_else(|| Error::Toolchain(format!("{RUSTC} -vV printed no release line")))?
        .trim()
        .to_owned();
    match RustVersion::parse_prefix(&release) {
        Some(v) if v >= required => {}
        _ => {
            return Err(Error::Toolchain(format!(
                "{RUSTC} is {release}, older than the workspace's rust-version {required} (run `cargo board setup`)"
            )));
        }
    }
    let vpath = Path::new(STD_SRC).join("src").join("version");
    let src = std::fs::read_to_string(&vpath).map_err(|e| Error::io(&vpath, e))?;
    if src.trim() != release {
        return Err(Error::Toolchain(format!(
            "compiler {RUSTC} is {release} but the std sources in {STD_SRC} are {}; they must match for -Zbuild-std",
            src.trim()
        )));
    }
    let std_dir = Path::new(STD_SRC).join("library").join("std");
    if !std_dir.is_dir() {
        return Err(Error::Toolchain(format!(
            "{} is missing (rust-web-src incomplete?)",
            std_dir.display()
        )));
    }
    Ok(release)
}

/// Checks the virtualenv: `cargo-zigbuild` and zig both answer. Returns zig's version.
pub fn check_zig() -> Result<String, Error> {
    let bin = venv_bin();
    let zb = bin.join("cargo-zigbuild");
    if !zb.is_file() {
        return Err(Error::Toolchain(format!(
            "{} missing (run `cargo board setup`)",
            zb.display()
        )));
    }
    output(Command::new(bin.join("python3")).args(["-m", "ziglang", "version"]))
        .map(|s| s.trim().to_owned())
}

/// The installed compiler's release, if `rustc -vV` answers.
fn installed_rustc() -> Option<RustVersion> {
    output(Command::new(RUSTC).arg("-vV"))
        .ok()
        .and_then(|o| parse_rustc_version(&o))
}

/// Installs whatever is missing; idempotent. Versions of the Debian Rust packages are read from
/// `apt-cache policy`, never hard-coded (bookworm-security keeps only the newest).
pub fn setup(root: &Path) -> Result<(), Error> {
    let missing: Vec<String> = HOST_PACKAGES
        .iter()
        .filter(|p| dpkg_version(p).is_none())
        .map(|p| (*p).to_owned())
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let required = required_rust(root)?;
    if let Err(e) = check_rust(required) {
        eprintln!("board: {e}");
        let installed = installed_rustc();
        let mut lists_updated = false;
        loop {
            let candidate = apt_candidate(RUST_PACKAGES[0])?;
            match decide(required, installed, candidate.as_deref(), lists_updated) {
                Step::Ready => break,
                Step::Install(v) => {
                    let specs: Vec<String> =
                        RUST_PACKAGES.iter().map(|p| format!("{p}={v}")).collect();
                    apt_install(&specs)?;
                    break;
                }
                Step::UpdateLists => {
                    apt_update()?;
                    lists_updated = true;
                }
                Step::Fail(msg) => return Err(Error::Toolchain(msg)),
            }
        }
    }
    let release = check_rust(required)?;
    let zig = match check_zig() {
        Ok(v) => v,
        Err(_) => {
            let venv = dir().join("venv");
            eprintln!(
                "board: creating {} with {}",
                venv.display(),
                PYPI_PINS.join(" ")
            );
            std::fs::create_dir_all(dir()).map_err(|e| Error::io(&dir(), e))?;
            if !venv_bin().join("pip").is_file() {
                run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
            }
            run(Command::new(venv_bin().join("pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .args(PYPI_PINS))?;
            check_zig()?
        }
    };
    eprintln!(
        "board: toolchain ready: rustc {release} (Debian, std from source), zig {zig}, {}",
        venv_bin().display()
    );
    Ok(())
}

/// Sets up the environment of a cargo command so it uses this toolchain and nothing inherited
/// from the outer (rustup) cargo that invoked the board tool.
pub fn apply_env(cmd: &mut Command) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut parts = vec![venv_bin(), PathBuf::from("/usr/bin")];
    parts.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(parts) {
        cmd.env("PATH", joined);
    }
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO", CARGO)
        .env("RUSTC", RUSTC)
        .env("RUSTC_BOOTSTRAP", "1");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt-cache policy rustc-web` on a fresh bookworm whose lists were never refreshed: only
    /// bookworm main's 1.85 (what `cargo board setup` used to install and call ready).
    const STALE: &str = "rustc-web:
  Installed: (none)
  Candidate: 1.85.0+dfsg3-1~deb12u3
  Version table:
     1.85.0+dfsg3-1~deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
";
    /// The same after `apt-get update` with bookworm-security enabled.
    const FRESH: &str = "rustc-web:
  Installed: (none)
  Candidate: 1.96.0+dfsg1-1~deb12u2
  Version table:
     1.96.0+dfsg1-1~deb12u2 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     1.85.0+dfsg3-1~deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
";
    const NONE: &str = "rustc-web:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n";
    const V191: RustVersion = RustVersion(1, 91, 0);

    #[test]
    fn parses_apt_policy_rustc_and_cargo_toml() {
        assert_eq!(
            parse_apt_candidate(STALE).as_deref(),
            Some("1.85.0+dfsg3-1~deb12u3")
        );
        assert_eq!(parse_apt_candidate(NONE), None);
        assert_eq!(parse_apt_candidate(""), None);
        assert_eq!(
            RustVersion::parse_prefix("1.96.0+dfsg1-1~deb12u2"),
            Some(RustVersion(1, 96, 0))
        );
        assert_eq!(RustVersion::parse_prefix("1.91"), Some(V191));
        assert_eq!(RustVersion::parse_prefix("x1.91"), None);
        assert_eq!(
            parse_rustc_version(
                "rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)"
            ),
            Some(RustVersion(1, 85, 0))
        );
        let vv = "rustc 1.96.0\nbinary: rustc\ncommit-hash: unknown\nhost: x86_64-unknown-linux-gnu\nrelease: 1.96.0\n";
        assert_eq!(parse_rustc_version(vv), Some(RustVersion(1, 96, 0)));
        assert!(RustVersion(1, 100, 0) > RustVersion(1, 91, 0));
        let toml = "[workspace]\nmembers = []\n\n[workspace.package]\nversion = \"0.1.0\"\nrust-version = \"1.91\"\n";
        assert_eq!(parse_workspace_rust_version(toml), Some(V191));
        assert_eq!(
            parse_workspace_rust_version("[package]\nrust-version = \"1.70\"\n"),
            None
        );
    }

    /// The real workspace: read, not hard-coded.
    #[test]
    fn required_rust_is_the_workspace_rust_version() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let want = RustVersion::parse_prefix(env!("CARGO_PKG_RUST_VERSION")).unwrap();
        assert_eq!(required_rust(&root).unwrap(), want);
    }

    #[test]
    fn stale_lists_are_refreshed_before_installing() {
        let stale = parse_apt_candidate(STALE);
        let fresh = parse_apt_candidate(FRESH);
        // Nothing installed, stale lists: update first, never install 1.85.
        assert_eq!(
            decide(V191, None, stale.as_deref(), false),
            Step::UpdateLists
        );
        // After the update the security candidate is installed.
        assert_eq!(
            decide(V191, None, fresh.as_deref(), true),
            Step::Install("1.96.0+dfsg1-1~deb12u2".into())
        );
        // Fresh lists from the start: install without an update.
        assert_eq!(
            decide(V191, None, fresh.as_deref(), false),
            Step::Install("1.96.0+dfsg1-1~deb12u2".into())
        );
        // An installed 1.85 is not "ready".
        let old = Some(RustVersion(1, 85, 0));
        assert_eq!(
            decide(V191, old, stale.as_deref(), false),
            Step::UpdateLists
        );
        assert_eq!(
            decide(V191, Some(RustVersion(1, 96, 0)), None, false),
            Step::Ready
        );
        assert_eq!(
            decide(V191, Some(V191), stale.as_deref(), false),
            Step::Ready
        );
        assert_eq!(decide(V191, None, None, false), Step::UpdateLists);
    }

    #[test]
    fn too_old_even_after_update_says_what_to_do() {
        let Step::Fail(msg) = decide(
            V191,
            Some(RustVersion(1, 85, 0)),
            Some("1.85.0+dfsg3-1~deb12u3"),
            true,
        ) else {
            panic!("expected Fail");
        };
        for part in [
            "rustc >= 1.91.0",
            "rust-version in Cargo.toml",
            "apt offers rustc-web 1.85.0+dfsg3-1~deb12u3 only",
            "even after apt-get update",
            "(installed: rustc 1.85.0)",
            "bookworm-security",
            "deb http://deb.debian.org/debian-security bookworm-security main",
            "cargo board setup",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
        let Step::Fail(none) = decide(V191, None, None, true) else {
            panic!("expected Fail");
        };
        assert!(
            none.contains("apt has no candidate for rustc-web"),
            "{none}"
        );
    }
}
