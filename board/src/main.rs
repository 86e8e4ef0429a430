//! `cargo board` — board profiles, static cross-builds, size budgets, qemu runs and ipk packaging
//! for lanveil. See `board/README.md`.
//!
//! ```text
//! cargo board list
//! cargo board setup                     install/verify the cross toolchain (apt + PyPI only)
//! cargo board build PROFILE [--features F] [--no-default-features] [--opt-level L] [--no-lto]
//! cargo board size PROFILE              fail if target/board/PROFILE/lanveil exceeds the budget
//! cargo board ipk PROFILE               target/board/PROFILE/lanveil_<version>_<arch>.ipk
//! cargo board qemu PROFILE -- ARGS…     run the build under qemu-user with the profile's CPU
//! cargo board show PROFILE              print the profile as shell variables
//! ```
#![forbid(unsafe_code)]

mod cross;
mod error;
mod ipk;
mod profile;
mod toolchain;

use std::path::PathBuf;
use std::process::ExitCode;

use error::Error;

const USAGE: &str = "usage: cargo board <list | setup | build PROFILE [--features F] [--no-default-features] \
[--opt-level L] [--no-lto] | size PROFILE | ipk PROFILE | qemu PROFILE [-- ARGS...] | show PROFILE>";

fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("LANVEIL_ROOT") {
        return PathBuf::from(r);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("board: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn profile_arg(args: &[String]) -> Result<profile::Profile, Error> {
    let name = args
        .get(1)
        .ok_or_else(|| Error::Usage(format!("missing PROFILE\n{USAGE}")))?;
    profile::load(&root(), name)
}

fn run(args: &[String]) -> Result<ExitCode, Error> {
    let root = root();
    let cmd = args.first().map(String::as_str).unwrap_or("");
    match cmd {
        "list" => {
            for n in profile::names(&root)? {
                let p = profile::load(&root, &n)?;
                println!(
                    "{:<26} {:<34} budget {} KiB  {}",
                    p.name, p.triple, p.budget.max_binary_kib, p.examples
                );
            }
        }
        "setup" => toolchain::setup(&root)?,
        "build" => {
            let p = profile_arg(args)?;
            let mut opts = cross::BuildOptions::default();
            let mut it = args[2..].iter();
            while let Some(a) = it.next() {
                let mut value = |flag: &str| {
                    it.next()
                        .cloned()
                        .ok_or_else(|| Error::Usage(format!("{flag} needs a value")))
                };
                match a.as_str() {
                    "--features" => opts.features = Some(value("--features")?),
                    "--no-default-features" => opts.no_default_features = true,
                    "--opt-level" => opts.opt_level = Some(value("--opt-level")?),
                    "--no-lto" => opts.no_lto = true,
                    other => return Err(Error::Usage(format!("unknown option {other}\n{USAGE}"))),
                }
            }
            cross::build(&root, &p, &opts)?;
        }
        "size" => cross::size(&root, &profile_arg(args)?)?,
        "ipk" => {
            ipk::build(&root, &profile_arg(args)?)?;
        }
        "qemu" => {
            let p = profile_arg(args)?;
            let rest = match args.get(2).map(String::as_str) {
                None => &[][..],
                Some("--") => &args[3..],
                Some(_) => &args[2..],
            };
            let code = cross::qemu(&root, &p, rest)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        "show" => {
            let p = profile_arg(args)?;
            println!("ARCH='{}'", p.arch);
            println!("TRIPLE='{}'", p.triple);
            println!("QEMU='{}'", p.qemu);
            println!("QEMU_CPU='{}'", p.qemu_cpu);
            println!("MAX_BINARY_KIB={}", p.budget.max_binary_kib);
            println!("MAX_RSS_KIB={}", p.budget.max_rss_kib);
            println!("BINARY='{}'", cross::binary(&root, &p).display());
        }
        "" | "help" | "-h" | "--help" => println!("{USAGE}"),
        other => return Err(Error::Usage(format!("unknown command {other}\n{USAGE}"))),
    }
    Ok(ExitCode::SUCCESS)
}
