//! `lanveil`: the daemon. Never forks (procd/systemd supervise it); logs errors and warnings to
//! stderr, the rest to stdout (see `logging`).

use std::process::ExitCode;

use lanveil::sys::Signals;
use lanveil::{cli, logging};
use tokio::io::unix::AsyncFd;

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
    if let Some(socket) = &args.control {
        return control_client(socket, args.control_request.as_deref(), &args.control_args);
    }
    if let Some(url) = args.probe.clone() {
        // The URL with the given --ca-file/--pin/--bootstrap, built as `--upstream URL` is.
        let mut a = args;
        a.upstreams = vec![url];
        a.config = None;
        return match cli::config(&a) {
            Ok(c) => match c.upstreams.servers.first() {
                Some(u) => block_on(Box::pin(lanveil::probe::run(
                    u.clone(),
                    c.upstreams.ca_file.clone(),
                ))),
                None => ExitCode::from(2),
            },
            Err(e) => {
                println!("{}", lanveil::probe::report(&Err(e.to_string()), None));
                ExitCode::from(2)
            }
        };
    }
    if let Some(path) = &args.check {
        // `--print-signals` reads the file's LAN signals only; a plain check is a start's check.
        let checked = if args.print_signals {
            cli::load_file(path)
        } else {
            startable(path).map(|(_, c)| c)
        };
        return match checked {
            Ok(c) if args.print_signals => match cli::signals(&c, args.wan_portal.as_deref()) {
                Ok(lines) => {
                    print!("{lines}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lanveil: {e}");
                    ExitCode::from(2)
                }
            },
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
    // The configuration file's text when it is the one running (kept as --last-good once started).
    let mut clean = None;
    let config = match (&args.config, &args.last_good) {
        (Some(path), Some(last_good)) => match startable(path) {
            Ok((text, c)) => {
                clean = Some(text);
                with_flags(c, &args)
            }
            Err(e) => match startable(last_good) {
                // The owner's file is broken (a restart or a reboot after an edit that nothing
                // checked, or a CA bundle since removed): keep the LAN served as it last was, and
                // say so.
                Ok((_, c)) => {
                    eprintln!("lanveil: {e}");
                    eprintln!(
                        "lanveil: starting on the last good configuration ({}); fix {} and reload",
                        last_good.display(),
                        path.display()
                    );
                    with_flags(c, &args)
                }
                Err(_) => Err(e),
            },
        },
        _ => cli::config(&args),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lanveil: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.daemon.log_level);
    // Before the runtime exists: every thread it starts inherits the blocked signals.
    let signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lanveil: cannot set up signals: {e}");
            return ExitCode::from(1);
        }
    };
    block_on(Box::pin(serve(args, config, clean, signals)))
}

/// `path`'s text and configuration if a start would accept them: the file's own validation, then
/// what only a start finds ([`lanveil::check_startable`]).
fn startable(path: &std::path::Path) -> Result<(String, lanveil::config::Config), String> {
    let (text, c) = cli::read_file(path)?;
    lanveil::check_startable(&c).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((text, c))
}

fn with_flags(
    mut c: lanveil::config::Config,
    args: &cli::Args,
) -> Result<lanveil::config::Config, String> {
    cli::apply_flags(&mut c, args).map(|()| c)
}

/// Keeps `text` (the `--config` file's, now running) as `--last-good`: written only when it differs
/// from what is there (flash wears), atomically (temporary file, fsync, rename).
fn keep_last_good(args: &cli::Args, text: &str) {
    use std::io::Write;
    let Some(path) = &args.last_good else { return };
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return;
    }
    let tmp = path.with_extension("tmp");
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        log::warn!(
            "cannot keep the last good configuration in {}: {e}",
            path.display()
        );
    }
}

/// The daemon's work (or `--probe`'s) on a current-thread runtime. One boxed future type, so the
/// router binary carries one copy of the runtime's `block_on`.
type Job = std::pin::Pin<Box<dyn Future<Output = ExitCode>>>;

fn block_on(job: Job) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(job),
        Err(e) => {
            eprintln!("lanveil: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// Re-reads the configuration file (SIGHUP or the control socket). On any error the running
/// configuration stays and the error names file, line, key and reason.
async fn reload(args: &cli::Args, running: &mut lanveil::Running) -> Result<(), String> {
    let Some(path) = &args.config else {
        return Err("no configuration file to reload (started without --config)".into());
    };
    let (text, new) = cli::read_file(path)?;
    running
        .reload(with_flags(new, args)?)
        .await
        .map_err(|e| e.to_string())?;
    keep_last_good(args, &text);
    Ok(())
}

/// `lanveil --control SOCKET status|log|reload|leak-probe LABEL NONCE`: the raw response envelope on
/// stdout (`status-json`: the status as JSON, for LuCI).
fn control_client(socket: &std::path::Path, what: Option<&str>, rest: &[String]) -> ExitCode {
    use lanveil::config::control::{Request, Response};
    use std::io::Write;
    let req = match (what, rest) {
        (Some("status" | "status-json"), []) => Request::Status,
        (Some("log"), []) => Request::QueryLog,
        (Some("reload"), []) => Request::Reload,
        (Some("wan-portal"), [set, uri, dns @ ..]) if set == "set" => Request::WanPortal {
            uri: Some(uri.clone()),
            dns: dns.iter().take(4).cloned().collect(),
        },
        (Some("wan-portal"), [clear, dns @ ..]) if clear == "clear" => Request::WanPortal {
            uri: None,
            dns: dns.iter().take(4).cloned().collect(),
        },
        (Some("leak-probe"), [label, nonce]) => Request::LeakProbe {
            label: label.clone(),
            nonce: nonce.clone(),
        },
        _ => {
            eprintln!(
                "lanveil: --control SOCKET needs one of: status, status-json, log, reload, wan-portal set URI [DNS...], wan-portal clear, leak-probe LABEL NONCE"
            );
            return ExitCode::from(2);
        }
    };
    if what == Some("status-json") {
        // For LuCI's rpcd plugin: the status as one JSON line.
        let answer = lanveil::control::request(socket, &req)
            .map_err(|e| format!("{}: {e}", socket.display()))
            .and_then(|b| Response::decode(&b).map_err(|e| e.to_string()));
        return match answer {
            Ok(Response::Status(r)) => {
                println!("{}", lanveil::config::control::json::status(&r));
                ExitCode::SUCCESS
            }
            Ok(Response::Error(e)) | Err(e) => {
                eprintln!("lanveil: {e}");
                ExitCode::from(1)
            }
            Ok(_) => ExitCode::from(1),
        };
    }
    if let Request::WanPortal { .. } = req {
        // For shell hooks: a line in words and the exit status.
        let answer = lanveil::control::request(socket, &req)
            .map_err(|e| format!("{}: {e}", socket.display()))
            .and_then(|b| Response::decode(&b).map_err(|e| e.to_string()));
        return match answer {
            Ok(Response::Done(Ok(()))) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Ok(Response::Done(Err(e)) | Response::Error(e)) => {
                eprintln!("lanveil: {e}");
                ExitCode::from(1)
            }
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("lanveil: {e}");
                ExitCode::from(1)
            }
        };
    }
    match lanveil::control::request(socket, &req) {
        Ok(bytes) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lanveil: {}: {e}", socket.display());
            ExitCode::from(1)
        }
    }
}

/// The next SIGHUP, SIGTERM or SIGINT (cancel-safe: a signal is read only when it is returned).
async fn next_signal(signals: &AsyncFd<Signals>) -> std::io::Result<libc::c_int> {
    loop {
        let mut ready = signals.readable().await?;
        match ready.get_inner().read()? {
            Some(sig) => return Ok(sig),
            None => ready.clear_ready(),
        }
    }
}

async fn serve(
    args: cli::Args,
    config: lanveil::config::Config,
    clean: Option<String>,
    signals: Signals,
) -> ExitCode {
    let signals = match signals.register() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lanveil: cannot set up signals: {e}");
            return ExitCode::from(1);
        }
    };
    let user = config.daemon.user.clone();
    let options = lanveil::Options {
        config_file: args.config.as_ref().map(|p| p.display().to_string()),
        wan_portal_record: args.wan_portal_record.clone(),
        ..lanveil::Options::default()
    };
    let mut running = match lanveil::start_with(config, options).await {
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
    } else if lanveil::sys::is_root() {
        // Nothing to switch to: every query is handled with root's privileges. Allowed (a test
        // box, a container), but never silently.
        log::warn!(
            "running as root: set option user (e.g. 'lanveil') so the daemon drops root after binding its ports"
        );
    }
    if let Some(text) = &clean {
        keep_last_good(&args, text);
    }
    let mut reloads = running.take_reload_requests();
    let mut driver_gone = running.take_driver_gone();
    loop {
        tokio::select! {
            () = async { match driver_gone.as_mut() { Some(g) => g.await, None => std::future::pending().await } } => {
                // Listeners alive but nothing answers: exit, so procd (or systemd) restarts us
                // instead of the LAN losing DNS silently.
                log::error!("the DNS engine stopped unexpectedly (a bug: please report it); exiting");
                running.shutdown().await;
                return ExitCode::from(70);
            }
            sig = next_signal(&signals) => match sig {
                Ok(libc::SIGHUP) => {
                    if let Err(e) = reload(&args, &mut running).await {
                        log::error!("reload failed, keeping the running configuration: {e}");
                    }
                }
                // SIGTERM, SIGINT.
                Ok(_) => break,
                Err(e) => {
                    log::error!("cannot read signals: {e}");
                    break;
                }
            },
            Some(reply) = async { match reloads.as_mut() { Some(r) => r.recv().await, None => None } } => {
                let result = reload(&args, &mut running).await;
                if let Err(e) = &result {
                    log::error!("reload failed, keeping the running configuration: {e}");
                }
                let _ = reply.send(result);
            }
        }
    }
    log::info!("stopping: draining queries in flight");
    running.shutdown().await;
    ExitCode::SUCCESS
}
