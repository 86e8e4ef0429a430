//! Command line: a small lexopt-based parser (no clap: binary size) and the commands.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lanveil_config::{Config, SpkiPin, TlsVersion, UpstreamUrl};

use crate::config_cmd::{self, InitSpec};
use crate::error::{Error, Result, io_ctx};
use crate::leak::{self, LeakOpts};
use crate::presets::Presets;
use crate::probe::{self, ProbeOpts};
use crate::push::{self, PushOpts};
use crate::remote::{self, Control, SshTarget};
use crate::status;
use crate::tls::Auth;

/// Usage text.
pub const USAGE: &str = "\
usage: lanveil-ctl COMMAND [OPTIONS]

  presets [--json]                      well-known encrypted resolvers, with privacy policy links
  probe UPSTREAM... [--ca-file FILE] [--pin PIN]... [--json]
        [--preset ID [--doh] [--ipv6]] [--file CONFIG] [--bootstrap IP]... [--tls12]
        [--queries N] [--name NAME] [--ede-name NAME | --no-ede-test] [--timeout MS]
                                        dial candidates as the daemon would; handshake, RTT, TLS,
                                        padding, EDE, SPKI pins
  config init [--file FILE] (--preset ID [--doh] [--ipv6] | --upstream URL...) [--pin PIN]...
        [--ca-file PATH] [--listen IP:PORT]... [--set KEY=VALUE]... [--force]
  config set [--file FILE] KEY VALUE...   KEY: key (main section), upstream.NAME.key, openwrt.key
  config unset [--file FILE] KEY          (upstream.NAME removes that upstream)
  config check [--file FILE | FILE]       exit 2 with FILE:LINE: key: reason
  config show [--file FILE] [--json]      the effective configuration, defaults filled in
  config pack [--file FILE] [--output OUT]      compact postcard form with version and checksum
  config unpack BLOB [--output OUT]
  push ROUTER [--file FILE] [--verify-addr IP:PORT] [--verify-name NAME] [--deadline S]
        [--watchdog-grace S] [--no-reload] [ROUTER OPTIONS]
                                        upload, check, switch, reload, verify; roll back on failure
  status ROUTER [--json] [ROUTER OPTIONS]   |   status --socket PATH [--json]
  leak-test [ROUTER [ROUTER OPTIONS] | --socket PATH] [--router IP[:PORT]] [--public IP[:PORT]]...
        [--expect-egress PREFIX]... [--timeout MS] [--json]
                                        from a LAN machine: is plain DNS to public resolvers answered
                                        by this lanveil (proved with a one-time probe registered over
                                        ssh), blocked, or leaking? Without ROUTER an answer
                                        proves nothing: INCONCLUSIVE

ROUTER is [USER@]HOST (default user root). ROUTER OPTIONS: --ssh-port N, --identity FILE,
--ssh-option OPT (repeatable, passed as ssh -o), --ssh PROGRAM, --config-path PATH (default
/etc/config/lanveil), --lanveil PATH (default lanveil), --control SOCKET (default
/var/run/lanveil/daemon/control.sock). --file defaults to ./lanveil.conf.
Exit status: 0 ok, 1 the check/probe/push failed, 2 bad usage or invalid configuration.";

const DEFAULT_FILE: &str = "lanveil.conf";

/// Parsed options of one command.
#[derive(Debug, Default)]
struct Opts {
    positional: Vec<String>,
    values: HashMap<&'static str, Vec<String>>,
    flags: Vec<&'static str>,
}

impl Opts {
    fn one(&self, k: &str) -> Option<&str> {
        self.values
            .get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
    fn all(&self, k: &str) -> &[String] {
        self.values.get(k).map_or(&[], Vec::as_slice)
    }
    fn flag(&self, k: &str) -> bool {
        self.flags.contains(&k)
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T> {
        match self.one(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::usage(format!("--{k} {v}: not a valid number"))),
        }
    }
}

const ROUTER_VALUES: &[&str] = &[
    "ssh-port",
    "identity",
    "ssh-option",
    "ssh",
    "config-path",
    "lanveil",
    "control",
];

fn parse_opts(
    args: Vec<OsString>,
    valued: &[&'static str],
    flags: &[&'static str],
) -> Result<Opts> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut o = Opts::default();
    let text = |v: OsString| {
        v.into_string()
            .map_err(|_| Error::usage("arguments must be UTF-8"))
    };
    while let Some(arg) = p.next().map_err(|e| Error::usage(e.to_string()))? {
        match arg {
            Long(name) => {
                if let Some(k) = valued.iter().find(|k| **k == name) {
                    let v = text(p.value().map_err(|e| Error::usage(e.to_string()))?)?;
                    o.values.entry(*k).or_default().push(v);
                } else if let Some(k) = flags.iter().find(|k| **k == name) {
                    o.flags.push(*k);
                } else {
                    return Err(Error::usage(format!(
                        "unknown option --{name} (see lanveil-ctl --help)"
                    )));
                }
            }
            Short('f') if valued.contains(&"file") => {
                let v = text(p.value().map_err(|e| Error::usage(e.to_string()))?)?;
                o.values.entry("file").or_default().push(v);
            }
            Short('o') if valued.contains(&"output") => {
                let v = text(p.value().map_err(|e| Error::usage(e.to_string()))?)?;
                o.values.entry("output").or_default().push(v);
            }
            Value(v) => o.positional.push(text(v)?),
            other => return Err(Error::usage(other.unexpected().to_string())),
        }
    }
    Ok(o)
}

/// Runs the tool; returns the exit status.
pub fn run(args: Vec<OsString>) -> Result<u8> {
    let mut args = args.into_iter();
    let Some(cmd) = args.next() else {
        println!("{USAGE}");
        return Ok(2);
    };
    let cmd = cmd.to_string_lossy().into_owned();
    let rest: Vec<OsString> = args.collect();
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(0)
        }
        "-V" | "--version" => {
            println!("lanveil-ctl {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        "presets" => cmd_presets(parse_opts(rest, &["presets"], &["json"])?),
        "probe" => cmd_probe(parse_opts(
            rest,
            &[
                "ca-file",
                "pin",
                "preset",
                "file",
                "bootstrap",
                "queries",
                "name",
                "ede-name",
                "timeout",
                "presets",
            ],
            &["json", "doh", "ipv6", "tls12", "no-ede-test"],
        )?),
        "config" => {
            let Some(sub) = rest.first().map(|s| s.to_string_lossy().into_owned()) else {
                return Err(Error::usage(
                    "config what? init, set, unset, check, show, pack, unpack",
                ));
            };
            let rest = rest[1..].to_vec();
            match sub.as_str() {
                "init" => cmd_init(parse_opts(
                    rest,
                    &[
                        "file", "preset", "upstream", "pin", "ca-file", "listen", "set", "presets",
                    ],
                    &["doh", "ipv6", "force"],
                )?),
                "set" => cmd_set(parse_opts(rest, &["file"], &[])?),
                "unset" => cmd_unset(parse_opts(rest, &["file"], &[])?),
                "check" => cmd_check(parse_opts(rest, &["file"], &[])?),
                "show" => cmd_show(parse_opts(rest, &["file"], &["json"])?),
                "pack" => cmd_pack(parse_opts(rest, &["file", "output"], &[])?),
                "unpack" => cmd_unpack(parse_opts(rest, &["file", "output"], &[])?),
                other => Err(Error::usage(format!(
                    "unknown config command {other:?}: init, set, unset, check, show, pack, unpack"
                ))),
            }
        }
        "push" => {
            let mut valued = ROUTER_VALUES.to_vec();
            valued.extend([
                "file",
                "verify-addr",
                "verify-name",
                "deadline",
                "watchdog-grace",
            ]);
            cmd_push(parse_opts(rest, &valued, &["no-reload", "json"])?)
        }
        "status" => {
            let mut valued = ROUTER_VALUES.to_vec();
            valued.push("socket");
            cmd_status(parse_opts(rest, &valued, &["json"])?)
        }
        "leak-test" => {
            let mut valued = ROUTER_VALUES.to_vec();
            valued.extend(["socket", "router", "public", "expect-egress", "timeout"]);
            cmd_leak(parse_opts(rest, &valued, &["json"])?)
        }
        other => Err(Error::usage(format!(
            "unknown command {other:?} (see lanveil-ctl --help)"
        ))),
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::failed(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn cmd_presets(o: Opts) -> Result<u8> {
    let p = Presets::load(o.one("presets"))?;
    if o.flag("json") {
        print_json(&p)?;
    } else {
        print!("{}", p.render());
    }
    Ok(0)
}

fn parse_pins(list: &[String]) -> Result<Vec<SpkiPin>> {
    list.iter()
        .map(|p| {
            p.parse()
                .map_err(|r| Error::usage(format!("--pin {p}: {r}")))
        })
        .collect()
}

fn cmd_probe(o: Opts) -> Result<u8> {
    let pins = parse_pins(o.all("pin"))?;
    let bootstrap: Vec<IpAddr> = o
        .all("bootstrap")
        .iter()
        .map(|b| {
            b.parse()
                .map_err(|_| Error::usage(format!("--bootstrap {b}: not an IP address")))
        })
        .collect::<Result<_>>()?;
    let min_version = if o.flag("tls12") {
        TlsVersion::V1_2
    } else {
        TlsVersion::V1_3
    };
    // (url, addresses, auth) to probe.
    let mut targets: Vec<(UpstreamUrl, Vec<SocketAddr>, Auth)> = Vec::new();
    let mut add_url = |u: &str, ca: Option<String>, pins: Vec<SpkiPin>| -> Result<()> {
        let url: UpstreamUrl = u.parse().map_err(|r| Error::usage(format!("{u}: {r}")))?;
        let addrs = match url.addr {
            Some(a) => vec![a],
            None if !bootstrap.is_empty() => bootstrap
                .iter()
                .map(|ip| SocketAddr::new(*ip, url.port))
                .collect(),
            None => {
                return Err(Error::usage(format!(
                    "{u}: give its addresses with --bootstrap IP (lanveil never looks upstreams up in plaintext)"
                )));
            }
        };
        let auth = Auth {
            auth_name: url.auth_name.clone(),
            ca_file: ca,
            pins,
            min_version,
            sni: true,
        };
        targets.push((url, addrs, auth));
        Ok(())
    };
    for u in &o.positional {
        add_url(u, o.one("ca-file").map(String::from), pins.clone())?;
    }
    if let Some(id) = o.one("preset") {
        let presets = Presets::load(o.one("presets"))?;
        let p = presets.get(id)?;
        let urls = if o.flag("doh") {
            p.doh_urls(o.flag("ipv6"))
        } else {
            p.dot_urls(o.flag("ipv6"))
        };
        for u in urls {
            add_url(&u, o.one("ca-file").map(String::from), pins.clone())?;
        }
    }
    if let Some(f) = o.one("file") {
        let cfg = config_cmd::load(f)?;
        for u in &cfg.upstreams.servers {
            let ca = o
                .one("ca-file")
                .map(String::from)
                .or_else(|| u.ca_file.clone())
                .or_else(|| cfg.upstreams.ca_file.clone());
            let addrs = u.addrs();
            targets.push((
                u.url.clone(),
                addrs,
                Auth {
                    auth_name: u.url.auth_name.clone(),
                    ca_file: ca,
                    pins: if pins.is_empty() {
                        u.pins.clone()
                    } else {
                        pins.clone()
                    },
                    min_version: if o.flag("tls12") {
                        TlsVersion::V1_2
                    } else {
                        u.tls_min_version
                    },
                    sni: u.sni,
                },
            ));
        }
    }
    if targets.is_empty() {
        return Err(Error::usage(
            "probe what? give UPSTREAM URLs (tls://IP:PORT#NAME, https://IP:PORT/PATH#NAME), --preset ID or --file CONFIG",
        ));
    }
    let popts = ProbeOpts {
        name: o.one("name").unwrap_or("example.com").to_string(),
        queries: o.num("queries", 5usize)?.clamp(1, 1000),
        ede_name: if o.flag("no-ede-test") {
            None
        } else {
            Some(o.one("ede-name").unwrap_or("dnssec-failed.org").to_string())
        },
        timeout: Duration::from_millis(o.num("timeout", 5000u64)?),
    };
    let mut reports = Vec::new();
    for (url, addrs, auth) in &targets {
        for addr in addrs {
            let r = probe::probe(url, *addr, auth, &popts);
            if !o.flag("json") {
                println!("{}", probe::render(&r));
                let _ = std::io::stdout().flush();
            }
            reports.push(r);
        }
    }
    if o.flag("json") {
        print_json(&reports)?;
    }
    Ok(if reports.iter().all(|r| r.ok) { 0 } else { 1 })
}

fn file_of(o: &Opts) -> String {
    o.one("file").unwrap_or(DEFAULT_FILE).to_string()
}

fn cmd_init(o: Opts) -> Result<u8> {
    let file = file_of(&o);
    if std::path::Path::new(&file).exists() && !o.flag("force") {
        return Err(Error::usage(format!(
            "{file} exists; use --force to overwrite or `config set` to change it"
        )));
    }
    let preset = match o.one("preset") {
        Some("custom") => None,
        Some(id) => Some(Presets::load(o.one("presets"))?.get(id)?.clone()),
        None => None,
    };
    let set = o
        .all("set")
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::usage(format!("--set {kv}: expected KEY=VALUE")))
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = InitSpec {
        preset,
        doh: o.flag("doh"),
        ipv6: o.flag("ipv6"),
        upstreams: o.all("upstream").to_vec(),
        pins: o.all("pin").to_vec(),
        ca_file: o.one("ca-file").map(String::from),
        listen: o.all("listen").to_vec(),
        set,
    };
    let (text, cfg) = config_cmd::init_document(&spec)?;
    config_cmd::write_atomic(&file, text.as_bytes())?;
    println!("wrote {file}: {}", config_cmd::summary(&cfg));
    Ok(0)
}

fn read_doc(file: &str) -> Result<lanveil_config::uci::Document> {
    let text = io_ctx(std::fs::read_to_string(file), format!("cannot read {file}"))?;
    lanveil_config::uci::parse(&text)
        .map_err(|e| Error::usage(e.display_with_file(file).to_string()))
}

fn cmd_set(o: Opts) -> Result<u8> {
    let file = file_of(&o);
    let [key, values @ ..] = o.positional.as_slice() else {
        return Err(Error::usage("usage: config set KEY VALUE..."));
    };
    let mut doc = read_doc(&file)?;
    config_cmd::set(&mut doc, &config_cmd::parse_key(key)?, values)?;
    let (text, _) = config_cmd::render_checked(&doc, &file)?;
    config_cmd::write_atomic(&file, text.as_bytes())?;
    println!("{file}: {key} = {}", values.join(" "));
    Ok(0)
}

fn cmd_unset(o: Opts) -> Result<u8> {
    let file = file_of(&o);
    let [key] = o.positional.as_slice() else {
        return Err(Error::usage("usage: config unset KEY"));
    };
    let mut doc = read_doc(&file)?;
    if !config_cmd::unset(&mut doc, &config_cmd::parse_key(key)?) {
        return Err(Error::usage(format!("{file}: {key} is not set")));
    }
    let (text, _) = config_cmd::render_checked(&doc, &file)?;
    config_cmd::write_atomic(&file, text.as_bytes())?;
    println!("{file}: removed {key}");
    Ok(0)
}

fn positional_or_file(o: &Opts) -> String {
    o.positional.first().cloned().unwrap_or_else(|| file_of(o))
}

fn cmd_check(o: Opts) -> Result<u8> {
    let file = positional_or_file(&o);
    let cfg = config_cmd::load(&file)?;
    println!("{file}: OK — {}", config_cmd::summary(&cfg));
    Ok(0)
}

fn cmd_show(o: Opts) -> Result<u8> {
    let file = positional_or_file(&o);
    let cfg = config_cmd::load(&file)?;
    if o.flag("json") {
        print_json(&config_cmd::to_json(&cfg))?;
    } else {
        print!("{}", cfg.to_uci());
    }
    Ok(0)
}

fn cmd_pack(o: Opts) -> Result<u8> {
    let file = positional_or_file(&o);
    let cfg = config_cmd::load(&file)?;
    let blob = cfg.pack();
    let out = o
        .one("output")
        .map_or_else(|| format!("{file}.lvcf"), String::from);
    config_cmd::write_atomic(&out, &blob)?;
    println!(
        "{out}: {} bytes (LVCF schema version {}, CRC-32 checked on unpack)",
        blob.len(),
        u16::from_le_bytes([blob[4], blob[5]])
    );
    Ok(0)
}

fn cmd_unpack(o: Opts) -> Result<u8> {
    let blob_path = positional_or_file(&o);
    let blob = io_ctx(
        std::fs::read(&blob_path),
        format!("cannot read {blob_path}"),
    )?;
    let cfg = Config::unpack(&blob)
        .map_err(|e| Error::usage(e.display_with_file(&blob_path).to_string()))?;
    let text = cfg.to_uci();
    match o.one("output") {
        Some(out) => {
            config_cmd::write_atomic(out, text.as_bytes())?;
            println!("{out}: {}", config_cmd::summary(&cfg));
        }
        None => print!("{text}"),
    }
    Ok(0)
}

fn ssh_target(o: &Opts) -> Result<SshTarget> {
    let Some(host) = o.positional.first() else {
        return Err(Error::usage("which router? give [USER@]HOST"));
    };
    if o.positional.len() > 1 {
        return Err(Error::usage(format!(
            "unexpected argument {:?}",
            o.positional[1]
        )));
    }
    let mut t = SshTarget::new(host);
    if o.one("ssh-port").is_some() {
        t.port = Some(o.num("ssh-port", 22u16)?);
    }
    t.identity = o.one("identity").map(String::from);
    t.options = o.all("ssh-option").to_vec();
    if let Some(p) = o.one("ssh") {
        t.program = p.to_string();
    }
    Ok(t)
}

fn cmd_push(o: Opts) -> Result<u8> {
    let target = ssh_target(&o)?;
    let file = file_of(&o);
    let text = io_ctx(std::fs::read(&file), format!("cannot read {file}"))?;
    let verify_addr = match o.one("verify-addr") {
        Some(a) => Some(
            a.parse()
                .map_err(|_| Error::usage(format!("--verify-addr {a}: expected IP:PORT")))?,
        ),
        None => None,
    };
    let opts = PushOpts {
        target,
        remote_config: o
            .one("config-path")
            .unwrap_or(remote::DEFAULT_CONFIG_PATH)
            .to_string(),
        lanveil: o
            .one("lanveil")
            .unwrap_or(remote::DEFAULT_LANVEIL)
            .to_string(),
        control: o
            .one("control")
            .unwrap_or(remote::DEFAULT_CONTROL)
            .to_string(),
        verify_addr,
        verify_name: o.one("verify-name").unwrap_or("example.com").to_string(),
        deadline: Duration::from_secs(o.num("deadline", 15u64)?.max(1)),
        watchdog_grace: Duration::from_secs(o.num("watchdog-grace", 30u64)?),
        no_reload: o.flag("no-reload"),
    };
    eprintln!(
        "pushing {file} to {}:{}",
        opts.target.host, opts.remote_config
    );
    let outcome = push::push(&text, &file, &opts)?;
    if o.flag("json") {
        print_json(&outcome)?;
    } else {
        println!("push OK: {} is live on {}", file, opts.target.host);
    }
    Ok(0)
}

/// The daemon's control socket over ssh to `target` (`--lanveil`, `--control`).
fn ssh_control(o: &Opts, target: SshTarget) -> Control {
    Control::Ssh {
        target,
        lanveil: o
            .one("lanveil")
            .unwrap_or(remote::DEFAULT_LANVEIL)
            .to_string(),
        socket: o
            .one("control")
            .unwrap_or(remote::DEFAULT_CONTROL)
            .to_string(),
    }
}

fn cmd_status(o: Opts) -> Result<u8> {
    let (control, label) = match o.one("socket") {
        Some(s) => (Control::Local(s.to_string()), "this machine".to_string()),
        None => {
            let target = ssh_target(&o)?;
            let label = target.host.clone();
            (ssh_control(&o, target), label)
        }
    };
    let report = status::fetch(&control)?;
    if o.flag("json") {
        print_json(&report)?;
    } else {
        print!("{}", status::render(&report, &label));
    }
    Ok(0)
}

fn with_port(s: &str, default: u16) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| Error::usage(format!("{s}: expected IP or IP:PORT")))?;
    Ok(SocketAddr::new(ip, default))
}

fn cmd_leak(o: Opts) -> Result<u8> {
    // The control socket registers this run's probe: over ssh to ROUTER, or local (--socket).
    let (control, router_host) = match (o.one("socket"), o.positional.is_empty()) {
        (Some(s), true) => (Some(Control::Local(s.to_string())), None),
        (Some(_), false) => {
            return Err(Error::usage("give ROUTER or --socket, not both"));
        }
        (None, true) => (None, None),
        (None, false) => {
            let target = ssh_target(&o)?;
            let host = target
                .hostname()
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .ok();
            (Some(ssh_control(&o, target)), host)
        }
    };
    let router = match (o.one("router"), router_host) {
        (Some(r), _) => with_port(r, 53)?,
        (None, Some(ip)) => SocketAddr::new(ip, 53),
        (None, None) => leak::default_router()?,
    };
    let public = if o.all("public").is_empty() {
        leak::DEFAULT_PUBLIC
            .iter()
            .map(|p| with_port(p, 53))
            .collect::<Result<Vec<_>>>()?
    } else {
        o.all("public")
            .iter()
            .map(|p| with_port(p, 53))
            .collect::<Result<Vec<_>>>()?
    };
    let expect_egress = o
        .all("expect-egress")
        .iter()
        .map(|p| {
            lanveil_config::parse_prefix(p)
                .map_err(|r| Error::usage(format!("--expect-egress {p}: {r}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let report = leak::run(&LeakOpts {
        router,
        public,
        expect_egress,
        timeout: Duration::from_millis(o.num("timeout", 3000u64)?),
        control,
    });
    if o.flag("json") {
        print_json(&report)?;
    } else {
        print!("{}", leak::render(&report));
    }
    // INCONCLUSIVE is not a pass: a script must not read "no leak" from it.
    Ok(if matches!(report.verdict, "FAIL" | "INCONCLUSIVE") {
        1
    } else {
        0
    })
}
