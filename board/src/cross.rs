//! Cross builds (`build`), budget checks (`size`) and running a build under qemu-user (`qemu`).
//!
//! Output layout, per profile: `target/board/<profile>/lanveil` (the static, stripped binary) and
//! `target/board/<profile>/build-info` (`key=value` lines describing how it was built). All
//! profiles share one cargo target dir, `target/board/cargo`, so profiles with the same triple
//! reuse each other's artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::Error;
use crate::profile::Profile;
use crate::toolchain;

/// Options of `cargo board build`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct BuildOptions {
    /// `--features` passed to cargo.
    #[arg(long, value_name = "F")]
    pub features: Option<String>,
    /// `--no-default-features` passed to cargo.
    #[arg(long)]
    pub no_default_features: bool,
    /// Overrides the profile's opt-level.
    #[arg(long, value_name = "L")]
    pub opt_level: Option<String>,
    /// Turns LTO off (faster, larger; for quick checks only).
    #[arg(long)]
    pub no_lto: bool,
    /// Keeps the symbol table, for a size breakdown (`nm --size-sort`): written to
    /// `target/board/PROFILE/lanveil.symbols`, the budgeted `lanveil` is left as it is.
    #[arg(long)]
    pub symbols: bool,
}

pub fn out_dir(root: &Path, profile: &Profile) -> PathBuf {
    root.join("target").join("board").join(&profile.name)
}

pub fn binary(root: &Path, profile: &Profile) -> PathBuf {
    out_dir(root, profile).join("lanveil")
}

/// `CARGO_TARGET_<TRIPLE>_<suffix>`.
fn target_var(triple: &str, suffix: &str) -> String {
    format!(
        "CARGO_TARGET_{}_{suffix}",
        triple.to_ascii_uppercase().replace(['-', '.'], "_")
    )
}

/// The features a build passes: the profile's own on top of the defaults plus `--features`; with
/// `--no-default-features` only what `--features` names (the small builds stay small).
pub fn effective_features(profile: &Profile, opts: &BuildOptions) -> Option<String> {
    let given = opts
        .features
        .iter()
        .flat_map(|f| f.split([',', ' ']))
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    let mut all: Vec<String> = if opts.no_default_features {
        given.collect()
    } else {
        profile.features.iter().cloned().chain(given).collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    all.retain(|f| seen.insert(f.clone()));
    (!all.is_empty()).then(|| all.join(","))
}

/// Builds `lanveil` for `profile` with OpenWrt's release settings; returns the binary's path.
pub fn build(root: &Path, profile: &Profile, opts: &BuildOptions) -> Result<PathBuf, Error> {
    let required = toolchain::required_rust(root)?;
    toolchain::check_rust(required).or_else(|e| {
        eprintln!("board: {e}; running setup");
        toolchain::setup(root).and_then(|()| toolchain::check_rust(required))
    })?;
    toolchain::check_zig()
        .or_else(|_| toolchain::setup(root).and_then(|()| toolchain::check_zig()))?;

    let opt_level = opts
        .opt_level
        .clone()
        .unwrap_or_else(|| profile.release.opt_level.clone());
    let lto = profile.release.lto && !opts.no_lto;
    // A build with symbols gets a cargo target directory of its own, so the budgeted binary's
    // build is not invalidated by the other strip setting.
    let target_dir = root.join("target").join("board").join(if opts.symbols {
        "cargo-symbols"
    } else {
        "cargo"
    });
    let mut cmd = Command::new(toolchain::venv_bin().join("cargo-zigbuild"));
    cmd.current_dir(root)
        .arg("zigbuild")
        .args(["--release", "--locked", "-p", "lanveil", "--bin", "lanveil"])
        .args(["--target", &profile.triple])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("-Zbuild-std=std,panic_abort")
        // std without its `backtrace` feature: a panic still unwinds and prints its message, but std
        // carries no DWARF symbolizer (gimli, addr2line, rustc-demangle, miniz_oxide: ~120 KiB of
        // code on aarch64), which could not name anything in a stripped router binary anyway.
        .arg("-Zbuild-std-features=panic-unwind");
    if opts.no_default_features {
        cmd.arg("--no-default-features");
    }
    let features = effective_features(profile, opts);
    if let Some(f) = &features {
        cmd.args(["--features", f]);
    }
    toolchain::apply_env(&mut cmd);
    // The OpenWrt SDK's release overrides (lang/rust/rust-values.mk), plus strip: the SDK strips
    // when packaging, so budgets are about stripped binaries.
    cmd.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", &opt_level)
        .env(
            "CARGO_PROFILE_RELEASE_LTO",
            if lto { "true" } else { "false" },
        )
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "unwind")
        .env("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "true")
        .env("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "false")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_RPATH", "false")
        .env(
            "CARGO_PROFILE_RELEASE_STRIP",
            if opts.symbols { "false" } else { "true" },
        )
        // build-std has no self-contained crt objects (zig supplies crt1.o and libc.a), and
        // mipsel-musl links dynamically unless crt-static is forced.
        .env(
            target_var(&profile.triple, "RUSTFLAGS"),
            "-C link-self-contained=no -C target-feature=+crt-static",
        );

    eprintln!(
        "board: building lanveil for {} ({}), opt-level={opt_level} lto={lto} features={}{}",
        profile.name,
        profile.triple,
        features.as_deref().unwrap_or("default"),
        if opts.no_default_features {
            " (no default features)"
        } else {
            ""
        }
    );
    let started = Instant::now();
    toolchain::run(&mut cmd)?;
    let secs = started.elapsed().as_secs();

    let built = target_dir
        .join(&profile.triple)
        .join("release")
        .join("lanveil");
    let out = out_dir(root, profile);
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let dest = out.join(if opts.symbols {
        "lanveil.symbols"
    } else {
        "lanveil"
    });
    let tmp = out.join(".lanveil.tmp");
    match objcopy_for(&profile.triple) {
        Some(objcopy) => drop_unloaded(objcopy, &built, &tmp)?,
        None => {
            std::fs::copy(&built, &tmp).map_err(|e| Error::io(&built, e))?;
        }
    }
    std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
    let size = std::fs::metadata(&dest)
        .map_err(|e| Error::io(&dest, e))?
        .len();
    let info = format!(
        "profile={}\ntriple={}\nopt_level={opt_level}\nlto={lto}\nfeatures={}\nno_default_features={}\nbytes={size}\nseconds={secs}\n",
        profile.name,
        profile.triple,
        features.as_deref().unwrap_or(""),
        opts.no_default_features
    );
    let info_path = out.join(if opts.symbols {
        "build-info.symbols"
    } else {
        "build-info"
    });
    std::fs::write(&info_path, info).map_err(|e| Error::io(&info_path, e))?;
    eprintln!(
        "board: {} ({} bytes, {:.0} KiB) in {secs} s",
        dest.display(),
        size,
        size as f64 / 1024.0
    );
    Ok(dest)
}

/// Sections a stripped static MIPS binary carries that nothing reads at run time: `.pdr`, the
/// assembler's procedure descriptors for old debuggers (the unwinder reads `.eh_frame`). The
/// linker's `--strip-all` keeps them; on mipsel they are 8 % of the file (167 KiB).
const UNLOADED: [&str; 1] = [".pdr"];

/// The binutils `objcopy` that can rewrite `triple`'s binaries, for the triples whose binaries carry
/// [`UNLOADED`] sections (Debian's `binutils-mipsel-linux-gnu`, a host package of the board tool).
pub fn objcopy_for(triple: &str) -> Option<&'static str> {
    triple
        .starts_with("mipsel-")
        .then_some("mipsel-linux-gnu-objcopy")
}

/// Copies `from` to `to` without the [`UNLOADED`] sections (none of them is loaded: the program's
/// memory image is the same).
fn drop_unloaded(objcopy: &str, from: &Path, to: &Path) -> Result<(), Error> {
    let mut cmd = Command::new(objcopy);
    for s in UNLOADED {
        cmd.arg(format!("--remove-section={s}"));
    }
    let out = cmd.arg(from).arg(to).output().map_err(|e| Error::Command {
        what: format!("{objcopy} (Debian package binutils-mipsel-linux-gnu; `cargo board setup`)"),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            what: format!("{objcopy} {}", from.display()),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Compares the built binary with the profile's budget. Prints one line; errors when over.
pub fn size(root: &Path, profile: &Profile) -> Result<(), Error> {
    let bin = binary(root, profile);
    let meta = std::fs::metadata(&bin).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Usage(format!(
            "{} not built yet; run `cargo board build {}`",
            bin.display(),
            profile.name
        )),
        _ => Error::io(&bin, e),
    })?;
    let kib = meta.len().div_ceil(1024);
    let info =
        std::fs::read_to_string(out_dir(root, profile).join("build-info")).unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_default()
    };
    let max = profile
        .budget
        .binary_kib(field("no_default_features") == "true", field("features"));
    let features = info
        .lines()
        .filter(|l| {
            l.starts_with("features=")
                || l.starts_with("no_default_features=")
                || l.starts_with("opt_level=")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let pct = kib * 100 / max;
    if kib > max {
        return Err(Error::Budget(format!(
            "{}: {} is {kib} KiB, budget {max} KiB ({pct}%, {} KiB over) [{features}]",
            profile.name,
            bin.display(),
            kib - max
        )));
    }
    println!(
        "size ok: {}: {kib} KiB of {max} KiB budget ({pct}%) [{features}]",
        profile.name
    );
    Ok(())
}

/// Runs the built binary under qemu-user with the profile's CPU; returns its exit code.
pub fn qemu(root: &Path, profile: &Profile, args: &[String]) -> Result<i32, Error> {
    let bin = binary(root, profile);
    if !bin.is_file() {
        return Err(Error::Usage(format!(
            "{} not built yet; run `cargo board build {}`",
            bin.display(),
            profile.name
        )));
    }
    let status = Command::new(&profile.qemu)
        .args(["-cpu", &profile.qemu_cpu])
        .arg(&bin)
        .args(args)
        .status()
        .map_err(|e| Error::Command {
            what: profile.qemu.clone(),
            detail: format!("{e} (apt-get install qemu-user-static)"),
        })?;
    Ok(status.code().unwrap_or(128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mips_builds_are_rewritten() {
        assert_eq!(
            objcopy_for("mipsel-unknown-linux-musl"),
            Some("mipsel-linux-gnu-objcopy")
        );
        for t in [
            "x86_64-unknown-linux-musl",
            "aarch64-unknown-linux-musl",
            "armv7-unknown-linux-musleabihf",
        ] {
            assert_eq!(objcopy_for(t), None, "{t}");
        }
    }
}
