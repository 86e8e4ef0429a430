//! `lanveil-ctl`: see `lanveil-ctl --help` and host-tools/README.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    match lanveil_cli::cli::run(std::env::args_os().skip(1).collect()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lanveil-ctl: {e}");
            ExitCode::from(e.exit)
        }
    }
}
