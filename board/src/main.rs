//! `cargo board` — board profiles, static cross-builds, size budgets, qemu runs and ipk packaging
//! for lanveil. See `board/README.md` and `cargo board --help` (clap).
//!
//! ```text
//! cargo board list
//! cargo board setup                     install/verify the cross toolchain (apt + PyPI only)
//! cargo board build PROFILE [--features F] [--no-default-features] [--opt-level L] [--no-lto] [--symbols]
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

use clap::{Parser, Subcommand};

use error::Error;

/// Board profiles, static cross-builds, size budgets, qemu runs and ipk packaging for lanveil.
#[derive(Debug, Parser)]
#[command(name = "cargo board", bin_name = "cargo board")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Profiles, triples, budgets.
    List,
    /// Install/verify the cross toolchain (apt + PyPI only; idempotent; root for apt).
    Setup,
    /// Static cross-build -> target/board/PROFILE/lanveil (+ build-info).
    Build {
        /// A profile from board/boards/ (`cargo board list`).
        profile: String,
        #[command(flatten)]
        opts: cross::BuildOptions,
    },
    /// Fail if target/board/PROFILE/lanveil exceeds the profile's budget.
    Size {
        /// A profile from board/boards/.
        profile: String,
    },
    /// Package target/board/PROFILE/lanveil_<version>-r<release>_<arch>.ipk.
    Ipk {
        /// A profile from board/boards/.
        profile: String,
    },
    /// Run the build under qemu-user with the profile's CPU; exits with its status.
    Qemu {
        /// A profile from board/boards/.
        profile: String,
        /// Arguments for lanveil (after `--` if they start with `-`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the profile as shell variables (used by the scripts).
    Show {
        /// A profile from board/boards/.
        profile: String,
    },
}

fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("LANVEIL_ROOT") {
        return PathBuf::from(r);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help prints to stdout and succeeds; usage errors keep the tool's status 1.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("board: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let root = root();
    let Some(command) = cli.command else {
        // No command: the help, as before (`cargo board`).
        let _ = <Cli as clap::CommandFactory>::command().print_help();
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::List => {
            for n in profile::names(&root)? {
                let p = profile::load(&root, &n)?;
                let dot_only = p
                    .budget
                    .max_binary_kib_dot_only
                    .map(|k| format!(" (DoT only {k} KiB)"))
                    .unwrap_or_default();
                println!(
                    "{:<26} {:<34} budget {} KiB{dot_only}  {}",
                    p.name, p.triple, p.budget.max_binary_kib, p.examples
                );
            }
        }
        Command::Setup => toolchain::setup(&root)?,
        Command::Build { profile, opts } => {
            cross::build(&root, &profile::load(&root, &profile)?, &opts)?;
        }
        Command::Size { profile } => cross::size(&root, &profile::load(&root, &profile)?)?,
        Command::Ipk { profile } => {
            ipk::build(&root, &profile::load(&root, &profile)?)?;
        }
        Command::Qemu { profile, args } => {
            let p = profile::load(&root, &profile)?;
            let code = cross::qemu(&root, &p, &args)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Show { profile } => {
            let p = profile::load(&root, &profile)?;
            println!("ARCH='{}'", p.arch);
            println!("TRIPLE='{}'", p.triple);
            println!("QEMU='{}'", p.qemu);
            println!("QEMU_CPU='{}'", p.qemu_cpu);
            println!("MAX_BINARY_KIB={}", p.budget.max_binary_kib);
            println!("MAX_RSS_KIB={}", p.budget.max_rss_kib);
            println!("BINARY='{}'", cross::binary(&root, &p).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::{Cli, Command};

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("board").chain(args.iter().copied()))
            .unwrap()
            .command
            .unwrap()
    }

    #[test]
    fn build_options_and_qemu_arguments() {
        let Command::Build { profile, opts } = parse(&[
            "build",
            "x86_64",
            "--features",
            "doh",
            "--no-default-features",
            "--opt-level",
            "s",
            "--no-lto",
            "--symbols",
        ]) else {
            panic!("not build")
        };
        assert!(opts.symbols);
        assert_eq!(profile, "x86_64");
        assert_eq!(opts.features.as_deref(), Some("doh"));
        assert!(opts.no_default_features && opts.no_lto);
        assert_eq!(opts.opt_level.as_deref(), Some("s"));
        // Both spellings reach lanveil unchanged, hyphens included.
        for args in [
            &["qemu", "mipsel_24kc", "--", "--config", "/x", "-v"][..],
            &["qemu", "mipsel_24kc", "--config", "/x", "-v"][..],
        ] {
            let Command::Qemu { profile, args } = parse(args) else {
                panic!("not qemu")
            };
            assert_eq!(profile, "mipsel_24kc");
            assert_eq!(args, ["--config", "/x", "-v"]);
        }
        assert!(
            Cli::try_parse_from(["board", "size"]).is_err(),
            "PROFILE is required"
        );
        assert!(Cli::try_parse_from(["board", "build", "x", "--bogus"]).is_err());
    }
}
