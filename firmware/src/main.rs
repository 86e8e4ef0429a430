//! `lanveil`: the daemon. Never forks (procd/systemd supervise it); logs to stderr.

use std::process::ExitCode;

use lanveil::{cli, logging};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lanveil: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("lanveil {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.check {
        return match cli::load_file(path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lanveil: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match cli::config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lanveil: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_level);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lanveil: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(serve(args, config))
}

async fn serve(args: cli::Args, config: lanveil::config::Config) -> ExitCode {
    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        _ => {
            eprintln!("lanveil: cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let user = config.user.clone();
    let mut running = match lanveil::start(config).await {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    };
    // Listeners are bound: give up root now (fail closed if that is impossible).
    if let Some(user) = user {
        if lanveil::sys::is_root() {
            match lanveil::sys::drop_privileges(&user) {
                Ok((uid, gid)) => {
                    log::info!("running as {user} (uid {uid}, gid {gid}), no capabilities")
                }
                Err(e) => {
                    log::error!("cannot switch to user {user}: {e}");
                    return ExitCode::from(1);
                }
            }
        } else {
            log::info!("not started as root; option user '{user}' ignored");
        }
    }
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let Some(path) = &args.config else {
                    log::warn!("SIGHUP: no configuration file to reload (started without --config)");
                    continue;
                };
                let new = cli::load_file(path).and_then(|mut c| cli::apply_flags(&mut c, &args).map(|()| c));
                match new {
                    Ok(c) => {
                        if let Err(e) = running.reload(c).await {
                            log::error!("reload failed, keeping the running configuration: {e}");
                        }
                    }
                    Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    log::info!("stopping: draining queries in flight");
    running.shutdown().await;
    ExitCode::SUCCESS
}
