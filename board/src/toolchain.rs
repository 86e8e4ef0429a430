//! The cross toolchain: Debian's `rustc-web` family (compiler, cargo, host std, std sources, all at
//! one version) rebuilding std per target with `-Zbuild-std`, and zig (PyPI `ziglang`) driven by
//! `cargo-zigbuild` as C compiler, musl libc and linker, installed in a private virtualenv.
//!
//! Invariants checked before every build (and fixed by `setup` when possible):
//! the four Debian packages are installed at the same version, and the std sources' `src/version`
//! equals the compiler's release; otherwise std would be rebuilt from sources that do not match the
//! compiler, which `-Zbuild-std` does not detect by itself.

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
pub const HOST_PACKAGES: [&str; 2] = ["python3-venv", "qemu-user-static"];
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

/// The candidate version `apt-cache policy` reports for `pkg`.
fn apt_candidate(pkg: &str) -> Result<String, Error> {
    let out = output(Command::new("apt-cache").args(["policy", pkg]))?;
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| v.trim().to_owned())
        })
        .filter(|v| v != "(none)")
        .ok_or_else(|| {
            Error::Toolchain(format!(
                "apt has no candidate for {pkg}; is bookworm-security enabled?"
            ))
        })
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

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// Checks the Debian Rust packages: all four installed, one version, std sources matching the
/// compiler. Returns the compiler release (e.g. `1.96.0`).
pub fn check_rust() -> Result<String, Error> {
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

/// Installs whatever is missing; idempotent. Versions of the Debian Rust packages are read from
/// `apt-cache policy`, never hard-coded (bookworm-security keeps only the newest).
pub fn setup() -> Result<(), Error> {
    let missing: Vec<String> = HOST_PACKAGES
        .iter()
        .filter(|p| dpkg_version(p).is_none())
        .map(|p| (*p).to_owned())
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    if let Err(e) = check_rust() {
        eprintln!("board: {e}; installing");
        let v = apt_candidate(RUST_PACKAGES[0])?;
        let specs: Vec<String> = RUST_PACKAGES.iter().map(|p| format!("{p}={v}")).collect();
        apt_install(&specs)?;
    }
    let release = check_rust()?;
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
