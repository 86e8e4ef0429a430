//! Command line: clap derive (help, errors, shell completions) and the commands.

use std::ffi::OsString;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use lanveil_config::{Config, SpkiPin, TlsVersion, UpstreamUrl};

use crate::config_cmd::{self, InitSpec};
use crate::error::{EXIT_USAGE, Error, Result, io_ctx};
use crate::http2;
use crate::leak::{self, LeakOpts};
use crate::presets::Presets;
use crate::probe::{self, ProbeOpts};
use crate::push::{self, PushOpts};
use crate::remote::{self, Control, SshTarget};
use crate::status;
use crate::tls::Auth;

const DEFAULT_FILE: &str = "lanveil.conf";

const AFTER_HELP: &str = "\
ROUTER is [USER@]HOST (default user root), reached with ssh; see the ROUTER OPTIONS of push,
status and leak-test. --file defaults to ./lanveil.conf.
Exit status: 0 ok, 1 the check/probe/push failed, 2 bad usage or invalid configuration.";

/// lanveil-ctl: choose, probe, configure, push and check lanveil.
#[derive(Debug, Parser)]
#[command(
    name = "lanveil-ctl",
    version,
    after_help = AFTER_HELP,
    // A repeated single-valued option: the last one wins (as the tool always did).
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Well-known encrypted resolvers, with privacy policy links.
    Presets(PresetsArgs),
    /// Dial candidates as the daemon would: handshake, RTT, TLS, padding, EDE, SPKI pins.
    Probe(ProbeArgs),
    /// Write, change, check, show and pack the router's UCI file (the daemon's own schema).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Upload, check, switch, reload, verify; roll back on failure.
    Push(PushArgs),
    /// The daemon's status, over ssh (ROUTER) or from a local control socket (--socket).
    Status(StatusArgs),
    /// From a LAN machine: is plain DNS to public resolvers answered by lanveil, blocked, or leaking?
    ///
    /// From a LAN machine: is plain DNS to public resolvers answered by this lanveil (proved with
    /// a one-time probe registered over ssh to ROUTER, or over --socket), blocked, or leaking?
    /// Without ROUTER or --socket an answer proves nothing: INCONCLUSIVE (exit status 1).
    LeakTest(LeakArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// `--presets FILE`: a presets JSON file instead of the built-in list.
#[derive(Debug, Args)]
struct PresetsFile {
    /// A presets JSON file instead of the built-in list.
    #[arg(long = "presets", value_name = "FILE", allow_hyphen_values = true)]
    presets: Option<String>,
}

#[derive(Debug, Args)]
struct PresetsArgs {
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    presets: PresetsFile,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Upstream URLs: tls://IP[:PORT]#NAME, https://IP[:PORT]/PATH#NAME, quic://IP[:PORT]#NAME.
    #[arg(value_name = "UPSTREAM")]
    upstreams: Vec<String>,
    /// Trust this CA bundle (PEM) instead of the system's.
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    ca_file: Option<String>,
    /// Require this SPKI pin (sha256/BASE64); repeatable.
    #[arg(long = "pin", value_name = "PIN", allow_hyphen_values = true)]
    pins: Vec<String>,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Probe this preset's addresses too.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    preset: Option<String>,
    /// With --preset: its DoH URLs instead of DoT.
    #[arg(long)]
    doh: bool,
    /// With --preset: its DoQ URLs instead of DoT (where the operator offers DoQ).
    #[arg(long, conflicts_with = "doh")]
    doq: bool,
    /// With --preset: its IPv6 addresses.
    #[arg(long)]
    ipv6: bool,
    /// Probe the upstreams of this configuration file.
    #[arg(short = 'f', long, value_name = "CONFIG", allow_hyphen_values = true)]
    file: Option<String>,
    /// Addresses for upstream URLs that name no IP (lanveil never looks upstreams up in
    /// plaintext); repeatable.
    #[arg(long, value_name = "IP", allow_hyphen_values = true)]
    bootstrap: Vec<String>,
    /// Allow TLS 1.2 (default: TLS 1.3 only, or the file's tls_min_version).
    #[arg(long)]
    tls12: bool,
    /// DoH request method, as the daemon's http_method: post, or get (`?dns=`, RFC 8484)
    /// [default: post, or the file's http_method].
    #[arg(long, value_name = "METHOD", value_enum, ignore_case = true)]
    http_method: Option<HttpMethod>,
    /// Queries per address, for the RTT (1 to 1000).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        allow_hyphen_values = true
    )]
    queries: usize,
    /// The name to query.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "example.com",
        allow_hyphen_values = true
    )]
    name: String,
    /// A name whose answer should carry an Extended DNS Error (DNSSEC-failing).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "dnssec-failed.org",
        allow_hyphen_values = true
    )]
    ede_name: String,
    /// Skip the EDE test.
    #[arg(long)]
    no_ede_test: bool,
    /// Per-step timeout, milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 5000,
        allow_hyphen_values = true
    )]
    timeout: u64,
    #[command(flatten)]
    presets: PresetsFile,
}

/// `probe --http-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HttpMethod {
    /// POST application/dns-message (the daemon's default).
    Post,
    /// GET ?dns=BASE64URL.
    Get,
}

impl From<HttpMethod> for http2::Method {
    fn from(m: HttpMethod) -> Self {
        match m {
            HttpMethod::Post => Self::Post,
            HttpMethod::Get => Self::Get,
        }
    }
}

/// `--file FILE` (`-f`), default ./lanveil.conf.
#[derive(Debug, Args)]
struct FileArg {
    /// The configuration file [default: ./lanveil.conf].
    #[arg(short = 'f', long, value_name = "FILE", allow_hyphen_values = true)]
    file: Option<String>,
}

impl FileArg {
    fn get(&self) -> String {
        self.file.as_deref().unwrap_or(DEFAULT_FILE).to_string()
    }

    /// A positional FILE if given, else `--file`, else the default.
    fn or(&self, positional: Option<&String>) -> String {
        positional.cloned().unwrap_or_else(|| self.get())
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Write a new configuration: a preset (--preset ID [--doh] [--ipv6]) or --upstream URLs;
    /// --openwrt for a router running the lanveil package.
    Init(InitArgs),
    /// Set KEY: key (main section), upstream.NAME.key, openwrt.key.
    Set {
        /// key, upstream.NAME.key or openwrt.key.
        key: String,
        /// The value (several for a list).
        values: Vec<String>,
        #[command(flatten)]
        file: FileArg,
    },
    /// Remove KEY (upstream.NAME removes that upstream).
    Unset {
        /// key, upstream.NAME.key, upstream.NAME or openwrt.key.
        key: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// Validate; exit 2 with FILE:LINE: key: reason.
    Check {
        /// The file to check (UCI text or packed) [default: --file].
        #[arg(value_name = "FILE")]
        path: Option<String>,
        #[command(flatten)]
        file: FileArg,
    },
    /// The effective configuration, defaults filled in.
    Show {
        /// The file to show [default: --file].
        #[arg(value_name = "FILE")]
        path: Option<String>,
        /// JSON instead of UCI.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        file: FileArg,
    },
    /// Compact postcard form with version and checksum.
    Pack {
        /// The file to pack [default: --file].
        #[arg(value_name = "FILE")]
        path: Option<String>,
        /// Where to write [default: FILE.lvcf]; an existing OUT only with --force (the default
        /// FILE.lvcf is replaced when it is a packed configuration).
        #[arg(short = 'o', long, value_name = "OUT", allow_hyphen_values = true)]
        output: Option<String>,
        /// Overwrite an existing OUT.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        file: FileArg,
    },
    /// Back to UCI text (stdout, or --output).
    Unpack {
        /// The packed file [default: --file].
        #[arg(value_name = "BLOB")]
        path: Option<String>,
        /// Where to write the UCI text; an existing OUT only with --force.
        #[arg(short = 'o', long, value_name = "OUT", allow_hyphen_values = true)]
        output: Option<String>,
        /// Overwrite an existing OUT.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        file: FileArg,
    },
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    file: FileArg,
    /// Start from the OpenWrt package's /etc/config/lanveil (listen 127.0.0.1:5453, user, state file,
    /// control socket, its 'openwrt' section) with these upstreams: the file to `push` to a router
    /// running the package.
    #[arg(long)]
    openwrt: bool,
    /// Start from this preset (`custom`: none).
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    preset: Option<String>,
    /// With --preset: its DoH URLs instead of DoT.
    #[arg(long)]
    doh: bool,
    /// With --preset: its DoQ URLs instead of DoT (where the operator offers DoQ).
    #[arg(long, conflicts_with = "doh")]
    doq: bool,
    /// With --preset: its IPv6 addresses too.
    #[arg(long)]
    ipv6: bool,
    /// An upstream URL; repeatable.
    #[arg(long = "upstream", value_name = "URL", allow_hyphen_values = true)]
    upstreams: Vec<String>,
    /// An SPKI pin for the upstreams; repeatable.
    #[arg(long = "pin", value_name = "PIN", allow_hyphen_values = true)]
    pins: Vec<String>,
    /// CA bundle the daemon trusts instead of the system's.
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    ca_file: Option<String>,
    /// A listen address; repeatable.
    #[arg(long, value_name = "IP:PORT", allow_hyphen_values = true)]
    listen: Vec<String>,
    /// Any other key; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    set: Vec<String>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    presets: PresetsFile,
}

/// How to reach the router and its daemon.
#[derive(Debug, Args)]
#[command(next_help_heading = "Router options")]
struct RouterArgs {
    /// ssh port.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    ssh_port: Option<u16>,
    /// ssh identity file.
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    identity: Option<String>,
    /// Passed as ssh -o OPT; repeatable.
    #[arg(long = "ssh-option", value_name = "OPT", allow_hyphen_values = true)]
    ssh_options: Vec<String>,
    /// The ssh program.
    #[arg(long, value_name = "PROGRAM", allow_hyphen_values = true)]
    ssh: Option<String>,
    /// Seconds one command on the router may take, connecting included, before ssh is stopped
    /// [default: 60].
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    ssh_timeout: Option<u64>,
    /// The configuration on the router [default: /etc/config/lanveil].
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    config_path: Option<String>,
    /// The daemon on the router [default: lanveil].
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    lanveil: Option<String>,
    /// The daemon's control socket [default: /var/run/lanveil/daemon/control.sock].
    #[arg(long, value_name = "SOCKET", allow_hyphen_values = true)]
    control: Option<String>,
}

#[derive(Debug, Args)]
struct PushArgs {
    /// [USER@]HOST.
    router: String,
    #[command(flatten)]
    file: FileArg,
    /// After the switch, ask this resolver address (IP:PORT) for --verify-name.
    #[arg(long, value_name = "IP:PORT", allow_hyphen_values = true)]
    verify_addr: Option<String>,
    /// The name to verify with.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "example.com",
        allow_hyphen_values = true
    )]
    verify_name: String,
    /// Seconds the new configuration has to prove itself.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 15,
        allow_hyphen_values = true
    )]
    deadline: u64,
    /// Seconds after which the router restores the old configuration on its own.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 30,
        allow_hyphen_values = true
    )]
    watchdog_grace: u64,
    /// Upload and check only; no reload.
    #[arg(long)]
    no_reload: bool,
    /// Push even when the file changes `listen`, drops or changes `control_socket`, `state_file` or
    /// `user`, changes `captive_portal_uri`, `v6only_wait` or `captive_plaintext`, or drops or changes
    /// the router's `openwrt` section (any option or list value); push refuses otherwise. A changed
    /// wiring is applied by the init script's reload after the daemon's.
    #[arg(long)]
    replace_wiring: bool,
    /// The init script on the router, reloaded (when present) after a push that changes the
    /// `openwrt` section, `listen` or the LAN signals.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/init.d/lanveil",
        allow_hyphen_values = true
    )]
    init_script: String,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    router_args: RouterArgs,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// [USER@]HOST (or --socket).
    router: Option<String>,
    /// A control socket on this machine instead of ROUTER.
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    socket: Option<String>,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    router_args: RouterArgs,
}

#[derive(Debug, Args)]
struct LeakArgs {
    /// [USER@]HOST whose lanveil registers the probe (over ssh).
    router: Option<String>,
    /// A control socket on this machine instead of ROUTER.
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    socket: Option<String>,
    /// The LAN resolver to test, IP[:PORT] [default: ROUTER's address, else the default gateway].
    #[arg(long = "router", value_name = "IP[:PORT]", allow_hyphen_values = true)]
    router_addr: Option<String>,
    /// A public resolver to try plain DNS with, IP[:PORT]; repeatable.
    #[arg(long = "public", value_name = "IP[:PORT]", allow_hyphen_values = true)]
    public: Vec<String>,
    /// A prefix the upstream egress must come from; repeatable.
    #[arg(
        long = "expect-egress",
        value_name = "PREFIX",
        allow_hyphen_values = true
    )]
    expect_egress: Vec<String>,
    /// Per-query timeout, milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 3000,
        allow_hyphen_values = true
    )]
    timeout: u64,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    router_args: RouterArgs,
}

/// The clap command (for completions and tests).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool; returns the exit status.
pub fn run(args: Vec<OsString>) -> Result<u8> {
    let argv = std::iter::once(OsString::from("lanveil-ctl")).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout with status 0; usage errors to stderr with 2.
            let _ = e.print();
            return Ok(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let Some(cmd) = cli.command else {
        let _ = command().print_help();
        return Ok(EXIT_USAGE);
    };
    match cmd {
        Command::Presets(a) => cmd_presets(&a),
        Command::Probe(a) => cmd_probe(&a),
        Command::Config(c) => match c {
            ConfigCommand::Init(a) => cmd_init(&a),
            ConfigCommand::Set { key, values, file } => cmd_set(&file.get(), &key, &values),
            ConfigCommand::Unset { key, file } => cmd_unset(&file.get(), &key),
            ConfigCommand::Check { path, file } => cmd_check(&file.or(path.as_ref())),
            ConfigCommand::Show { path, json, file } => cmd_show(&file.or(path.as_ref()), json),
            ConfigCommand::Pack {
                path,
                output,
                force,
                file,
            } => cmd_pack(&file.or(path.as_ref()), output.as_deref(), force),
            ConfigCommand::Unpack {
                path,
                output,
                force,
                file,
            } => cmd_unpack(&file.or(path.as_ref()), output.as_deref(), force),
        },
        Command::Push(a) => cmd_push(&a),
        Command::Status(a) => cmd_status(&a),
        Command::LeakTest(a) => cmd_leak(&a),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut command(), "lanveil-ctl", &mut out);
            out.flush()?;
            Ok(0)
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::failed(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn cmd_presets(o: &PresetsArgs) -> Result<u8> {
    let p = Presets::load(o.presets.presets.as_deref())?;
    if o.json {
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

/// One upstream to probe: its URL, the addresses to dial, how to authenticate it, and (DoH) how to
/// send its queries.
#[derive(Debug)]
struct Target {
    url: UpstreamUrl,
    addrs: Vec<SocketAddr>,
    auth: Auth,
    method: http2::Method,
}

/// What `probe` dials: the URLs given, the preset's, the file's upstreams (with their pins, CA,
/// TLS version, SNI and `http_method`, each overridden by the command line's option when given).
fn probe_targets(o: &ProbeArgs) -> Result<Vec<Target>> {
    let pins = parse_pins(&o.pins)?;
    let bootstrap: Vec<IpAddr> = o
        .bootstrap
        .iter()
        .map(|b| {
            b.parse()
                .map_err(|_| Error::usage(format!("--bootstrap {b}: not an IP address")))
        })
        .collect::<Result<_>>()?;
    let min_version = if o.tls12 {
        TlsVersion::V1_2
    } else {
        TlsVersion::V1_3
    };
    let method = o.http_method.map_or(http2::Method::Post, Into::into);
    let mut targets: Vec<Target> = Vec::new();
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
        targets.push(Target {
            url,
            addrs,
            auth,
            method,
        });
        Ok(())
    };
    for u in &o.upstreams {
        add_url(u, o.ca_file.clone(), pins.clone())?;
    }
    if let Some(id) = &o.preset {
        let presets = Presets::load(o.presets.presets.as_deref())?;
        let p = presets.get(id)?;
        let urls = p.urls(o.doh, o.doq, o.ipv6)?;
        for u in urls {
            add_url(&u, o.ca_file.clone(), pins.clone())?;
        }
    }
    if let Some(f) = &o.file {
        let cfg = config_cmd::load(f)?;
        for u in &cfg.upstreams.servers {
            let ca = o
                .ca_file
                .clone()
                .or_else(|| u.ca_file.clone())
                .or_else(|| cfg.upstreams.ca_file.clone());
            targets.push(Target {
                url: u.url.clone(),
                addrs: u.addrs(),
                auth: Auth {
                    auth_name: u.url.auth_name.clone(),
                    ca_file: ca,
                    pins: if pins.is_empty() {
                        u.pins.clone()
                    } else {
                        pins.clone()
                    },
                    min_version: if o.tls12 {
                        TlsVersion::V1_2
                    } else {
                        u.tls_min_version
                    },
                    sni: u.sni,
                },
                // As the daemon sends this upstream's queries, unless the command line says.
                method: match o.http_method {
                    Some(m) => m.into(),
                    None if u.http_get => http2::Method::Get,
                    None => http2::Method::Post,
                },
            });
        }
    }
    if targets.is_empty() {
        return Err(Error::usage(
            "probe what? give UPSTREAM URLs (tls://IP:PORT#NAME, https://IP:PORT/PATH#NAME, quic://IP:PORT#NAME), --preset ID or --file CONFIG",
        ));
    }
    Ok(targets)
}

fn cmd_probe(o: &ProbeArgs) -> Result<u8> {
    let targets = probe_targets(o)?;
    let popts = ProbeOpts {
        name: o.name.clone(),
        queries: o.queries.clamp(1, 1000),
        ede_name: if o.no_ede_test {
            None
        } else {
            Some(o.ede_name.clone())
        },
        timeout: Duration::from_millis(o.timeout),
    };
    let mut reports = Vec::new();
    for t in &targets {
        for addr in &t.addrs {
            let r = probe::probe_with_method(&t.url, *addr, &t.auth, &popts, t.method);
            if !o.json {
                println!("{}", probe::render(&r));
                let _ = std::io::stdout().flush();
            }
            reports.push(r);
        }
    }
    if o.json {
        print_json(&reports)?;
    }
    Ok(if reports.iter().all(|r| r.ok) { 0 } else { 1 })
}

fn cmd_init(o: &InitArgs) -> Result<u8> {
    let file = o.file.get();
    if std::path::Path::new(&file).exists() && !o.force {
        return Err(Error::usage(format!(
            "{file} exists; use --force to overwrite or `config set` to change it"
        )));
    }
    let preset = match o.preset.as_deref() {
        Some("custom") => None,
        Some(id) => Some(
            Presets::load(o.presets.presets.as_deref())?
                .get(id)?
                .clone(),
        ),
        None => None,
    };
    let set = o
        .set
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::usage(format!("--set {kv}: expected KEY=VALUE")))
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = InitSpec {
        openwrt: o.openwrt,
        preset,
        doh: o.doh,
        doq: o.doq,
        ipv6: o.ipv6,
        upstreams: o.upstreams.clone(),
        pins: o.pins.clone(),
        ca_file: o.ca_file.clone(),
        listen: o.listen.clone(),
        set,
    };
    let (text, cfg) = config_cmd::init_document(&spec)?;
    config_cmd::write_atomic(&file, text.as_bytes())?;
    println!("wrote {file}: {}", config_cmd::summary(&cfg));
    Ok(0)
}

/// A UCI file's text and what it reads as.
fn read_doc(file: &str) -> Result<(String, lanveil_config::uci::Document)> {
    let text = io_ctx(std::fs::read_to_string(file), format!("cannot read {file}"))?;
    let doc = lanveil_config::uci::parse(&text)
        .map_err(|e| Error::usage(e.display_with_file(file).to_string()))?;
    Ok((text, doc))
}

fn cmd_set(file: &str, key: &str, values: &[String]) -> Result<u8> {
    let (text, before) = read_doc(file)?;
    let mut doc = before.clone();
    let edit = config_cmd::set(&mut doc, &config_cmd::parse_key(key)?, values)?;
    let note = config_cmd::save_edit(file, &text, &before, &doc, &edit)?;
    println!("{file}: {key} = {}", values.join(" "));
    if let Some(note) = note {
        println!("  note: {note}");
    }
    Ok(0)
}

fn cmd_unset(file: &str, key: &str) -> Result<u8> {
    let (text, before) = read_doc(file)?;
    let mut doc = before.clone();
    let Some(edit) = config_cmd::unset(&mut doc, &config_cmd::parse_key(key)?)? else {
        return Err(Error::usage(format!("{file}: {key} is not set")));
    };
    let note = config_cmd::save_edit(file, &text, &before, &doc, &edit)?;
    println!("{file}: removed {key}");
    if let Some(note) = note {
        println!("  note: {note}");
    }
    Ok(0)
}

fn cmd_check(file: &str) -> Result<u8> {
    let bytes = io_ctx(std::fs::read(file), format!("cannot read {file}"))?;
    let cfg = config_cmd::parse_bytes(file, &bytes)?;
    println!("{file}: OK — {}", config_cmd::summary(&cfg));
    if let Some(openwrt) = config_cmd::openwrt_summary(&bytes) {
        println!("  {openwrt}");
    }
    Ok(0)
}

fn cmd_show(file: &str, json: bool) -> Result<u8> {
    let cfg = config_cmd::load(file)?;
    if json {
        print_json(&config_cmd::to_json(&cfg))?;
    } else {
        print!("{}", cfg.to_uci());
    }
    Ok(0)
}

/// Refuses to replace an existing `out` without `--force` (exit 2, nothing written). `replaceable`
/// says whether an existing file may go anyway (the default output, when it holds what we write).
fn refuse_existing(out: &str, force: bool, replaceable: impl Fn(&[u8]) -> bool) -> Result<()> {
    let path = std::path::Path::new(out);
    // A dangling symlink counts as existing too: writing would create its target.
    if force || std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if std::fs::read(path).is_ok_and(|b| replaceable(&b)) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{out} exists; not overwritten (use --force to replace it, or choose another --output)"
    )))
}

fn cmd_pack(file: &str, output: Option<&str>, force: bool) -> Result<u8> {
    let cfg = config_cmd::load(file)?;
    let blob = cfg.pack();
    let out = output.map_or_else(|| format!("{file}.lvcf"), String::from);
    // The default FILE.lvcf is re-packed freely when it is a packed configuration already.
    refuse_existing(&out, force, |b| output.is_none() && b.starts_with(b"LVCF"))?;
    config_cmd::write_atomic(&out, &blob)?;
    println!(
        "{out}: {} bytes (LVCF schema version {}, CRC-32 checked on unpack)",
        blob.len(),
        u16::from_le_bytes([blob[4], blob[5]])
    );
    Ok(0)
}

fn cmd_unpack(blob_path: &str, output: Option<&str>, force: bool) -> Result<u8> {
    if let Some(out) = output {
        refuse_existing(out, force, |_| false)?;
    }
    let blob = io_ctx(std::fs::read(blob_path), format!("cannot read {blob_path}"))?;
    let cfg = Config::unpack(&blob)
        .map_err(|e| Error::usage(e.display_with_file(blob_path).to_string()))?;
    let text = cfg.to_uci();
    match output {
        Some(out) => {
            config_cmd::write_atomic(out, text.as_bytes())?;
            println!("{out}: {}", config_cmd::summary(&cfg));
        }
        None => print!("{text}"),
    }
    Ok(0)
}

fn ssh_target(host: Option<&str>, r: &RouterArgs) -> Result<SshTarget> {
    let Some(host) = host else {
        return Err(Error::usage("which router? give [USER@]HOST"));
    };
    let mut t = SshTarget::new(host);
    t.port = r.ssh_port;
    t.identity.clone_from(&r.identity);
    t.options.clone_from(&r.ssh_options);
    if let Some(p) = &r.ssh {
        t.program.clone_from(p);
    }
    if let Some(s) = r.ssh_timeout {
        t.command_timeout = Duration::from_secs(s.max(1));
    }
    Ok(t)
}

fn cmd_push(o: &PushArgs) -> Result<u8> {
    let r = &o.router_args;
    let target = ssh_target(Some(&o.router), r)?;
    let file = o.file.get();
    let text = io_ctx(std::fs::read(&file), format!("cannot read {file}"))?;
    let verify_addr = match &o.verify_addr {
        Some(a) => Some(
            a.parse()
                .map_err(|_| Error::usage(format!("--verify-addr {a}: expected IP:PORT")))?,
        ),
        None => None,
    };
    let opts = PushOpts {
        target,
        remote_config: r
            .config_path
            .as_deref()
            .unwrap_or(remote::DEFAULT_CONFIG_PATH)
            .to_string(),
        lanveil: r
            .lanveil
            .as_deref()
            .unwrap_or(remote::DEFAULT_LANVEIL)
            .to_string(),
        control: r
            .control
            .as_deref()
            .unwrap_or(remote::DEFAULT_CONTROL)
            .to_string(),
        verify_addr,
        verify_name: o.verify_name.clone(),
        deadline: Duration::from_secs(o.deadline.max(1)),
        watchdog_grace: Duration::from_secs(o.watchdog_grace),
        no_reload: o.no_reload,
        replace_wiring: o.replace_wiring,
        init_script: o.init_script.clone(),
    };
    eprintln!(
        "pushing {file} to {}:{}",
        opts.target.host, opts.remote_config
    );
    let outcome = push::push(&text, &file, &opts)?;
    if o.json {
        print_json(&outcome)?;
    } else {
        println!("push OK: {} is live on {}", file, opts.target.host);
    }
    Ok(0)
}

/// The daemon's control socket over ssh to `target` (`--lanveil`, `--control`).
fn ssh_control(r: &RouterArgs, target: SshTarget) -> Control {
    Control::Ssh {
        target,
        lanveil: r
            .lanveil
            .as_deref()
            .unwrap_or(remote::DEFAULT_LANVEIL)
            .to_string(),
        socket: r
            .control
            .as_deref()
            .unwrap_or(remote::DEFAULT_CONTROL)
            .to_string(),
    }
}

fn cmd_status(o: &StatusArgs) -> Result<u8> {
    let (control, label) = match &o.socket {
        Some(s) => (Control::Local(s.clone()), "this machine".to_string()),
        None => {
            let target = ssh_target(o.router.as_deref(), &o.router_args)?;
            let label = target.host.clone();
            (ssh_control(&o.router_args, target), label)
        }
    };
    let report = status::fetch(&control)?;
    if o.json {
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

fn cmd_leak(o: &LeakArgs) -> Result<u8> {
    // The control socket registers this run's probe: over ssh to ROUTER, or local (--socket).
    let (control, router_host) = match (&o.socket, &o.router) {
        (Some(s), None) => (Some(Control::Local(s.clone())), None),
        (Some(_), Some(_)) => {
            return Err(Error::usage("give ROUTER or --socket, not both"));
        }
        (None, None) => (None, None),
        (None, Some(host)) => {
            let target = ssh_target(Some(host), &o.router_args)?;
            let host = target
                .hostname()
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .ok();
            (Some(ssh_control(&o.router_args, target)), host)
        }
    };
    let router = match (&o.router_addr, router_host) {
        (Some(r), _) => with_port(r, 53)?,
        (None, Some(ip)) => SocketAddr::new(ip, 53),
        (None, None) => leak::default_router()?,
    };
    let public = if o.public.is_empty() {
        leak::DEFAULT_PUBLIC
            .iter()
            .map(|p| with_port(p, 53))
            .collect::<Result<Vec<_>>>()?
    } else {
        o.public
            .iter()
            .map(|p| with_port(p, 53))
            .collect::<Result<Vec<_>>>()?
    };
    let expect_egress = o
        .expect_egress
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
        timeout: Duration::from_millis(o.timeout),
        control,
    });
    if o.json {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("lanveil-ctl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
            .unwrap()
    }

    #[test]
    fn command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn repeated_options_last_wins_lists_accumulate() {
        let Command::Probe(p) = parse(&[
            "probe",
            "tls://192.0.2.1#a",
            "--timeout",
            "1",
            "--timeout=2",
            "--pin",
            "A",
            "--pin",
            "B",
            "tls://192.0.2.2#b",
            "--json",
            "--json",
            "-f",
            "x.conf",
        ]) else {
            panic!()
        };
        assert_eq!(p.timeout, 2);
        assert_eq!(p.pins, ["A", "B"]);
        assert_eq!(p.upstreams, ["tls://192.0.2.1#a", "tls://192.0.2.2#b"]);
        assert!(p.json);
        assert_eq!(p.file.as_deref(), Some("x.conf"));
        assert_eq!((p.queries, p.name.as_str()), (5, "example.com"));
    }

    /// DoH targets are probed with the method the daemon would use: the file's `http_method` per
    /// upstream, POST for URLs given, `--http-method` over both.
    #[test]
    fn probe_sends_doh_as_the_file_or_the_command_line_says() {
        use http2::Method::{Get, Post};
        let dir = crate::test_util::TempDir::new("probe-method");
        let file = dir.join("l.conf");
        std::fs::write(
            &file,
            "config upstream 'g'\n\toption url 'https://192.0.2.1/dns-query#doh.test'\n\
             \toption http_method 'GET'\n\n\
             config upstream 'p'\n\toption url 'https://192.0.2.2/dns-query#doh.test'\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let methods = |args: &[&str]| {
            let Command::Probe(p) = parse(&[&["probe"], args].concat()) else {
                panic!()
            };
            probe_targets(&p)
                .unwrap()
                .iter()
                .map(|t| t.method)
                .collect::<Vec<_>>()
        };
        assert_eq!(methods(&["-f", file]), [Get, Post]);
        assert_eq!(
            methods(&["-f", file, "--http-method", "post"]),
            [Post, Post]
        );
        assert_eq!(methods(&["-f", file, "--http-method", "GET"]), [Get, Get]);
        let url = "https://192.0.2.3/dns-query#doh.test";
        assert_eq!(methods(&[url]), [Post]);
        assert_eq!(methods(&[url, "--http-method=get"]), [Get]);
        assert!(
            Cli::try_parse_from(["lanveil-ctl", "probe", url, "--http-method", "put"]).is_err()
        );
    }

    /// `probe --file`, end to end against a TLS DoH server that takes only GET: its upstream with
    /// `http_method GET` is probed with GET and passes (exit 0); without the option, POST, 405, exit 1.
    #[test]
    fn probe_file_sends_get_for_an_http_method_get_upstream() {
        use crate::http2::test_server;
        let dir = crate::test_util::TempDir::new("probe-get-tls");
        for (option, want_exit, want_method) in
            [("\toption http_method 'GET'\n", 0, "GET"), ("", 1, "POST")]
        {
            let (addr, server) = test_server::spawn_tls(test_server::get_only);
            let file = dir.join("l.conf");
            std::fs::write(
                &file,
                format!(
                    "config upstream 'g'\n\toption url 'https://{addr}/dns-query#doh.test'\n\
                     \toption ca_file '{}'\n{option}",
                    test_server::CA_FILE
                ),
            )
            .unwrap();
            let args = ["probe", "-f", file.to_str().unwrap(), "--queries", "1"];
            let code = run(args.iter().map(OsString::from).collect()).unwrap();
            assert_eq!(code, want_exit, "{option:?}");
            let seen = server.join().unwrap();
            assert_eq!(seen[0].get(":method"), Some(want_method), "{seen:?}");
        }
    }

    #[test]
    fn config_file_positional_short_options_and_defaults() {
        let Command::Config(ConfigCommand::Show { path, json, file }) =
            parse(&["config", "show", "--json", "back.conf"])
        else {
            panic!()
        };
        assert!(json);
        assert_eq!(file.or(path.as_ref()), "back.conf");
        let Command::Config(ConfigCommand::Check { path, file }) =
            parse(&["config", "check", "-f", "good.conf"])
        else {
            panic!()
        };
        assert_eq!(file.or(path.as_ref()), "good.conf");
        let Command::Config(ConfigCommand::Pack {
            path, output, file, ..
        }) = parse(&["config", "pack", "-o", "x.lvcf"])
        else {
            panic!()
        };
        assert_eq!(file.or(path.as_ref()), DEFAULT_FILE);
        assert_eq!(output.as_deref(), Some("x.lvcf"));
        let Command::Config(ConfigCommand::Set { key, values, file }) = parse(&[
            "config",
            "set",
            "listen",
            "192.0.2.1:53",
            "[::1]:53",
            "--file",
            "a",
        ]) else {
            panic!()
        };
        assert_eq!((key.as_str(), file.get().as_str()), ("listen", "a"));
        assert_eq!(values, ["192.0.2.1:53", "[::1]:53"]);
    }

    #[test]
    fn router_options_take_any_value() {
        let Command::Push(p) = parse(&[
            "push",
            "root@127.0.0.1",
            "--ssh-port",
            "2222",
            "--ssh-option",
            "-vv",
            "--ssh-option",
            "StrictHostKeyChecking=no",
            "--no-reload",
        ]) else {
            panic!()
        };
        let t = ssh_target(Some(&p.router), &p.router_args).unwrap();
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.command_timeout, remote::DEFAULT_COMMAND_TIMEOUT);
        assert_eq!(t.options, ["-vv", "StrictHostKeyChecking=no"]);
        assert_eq!((p.deadline, p.watchdog_grace), (15, 30));
        assert!(p.no_reload);
        let Command::LeakTest(l) = parse(&["leak-test", "--socket", "/s", "--public", "9.9.9.9"])
        else {
            panic!()
        };
        assert!(l.router.is_none());
        assert_eq!(l.public, ["9.9.9.9"]);
        let Command::Status(s) = parse(&["status", "r", "--ssh-timeout", "5"]) else {
            panic!()
        };
        let t = ssh_target(s.router.as_deref(), &s.router_args).unwrap();
        assert_eq!(t.command_timeout, Duration::from_secs(5));
    }

    #[test]
    fn usage_errors_exit_2_help_and_version_exit_0() {
        let run = |a: &[&str]| run(a.iter().map(OsString::from).collect());
        assert_eq!(run(&[]).unwrap(), EXIT_USAGE);
        assert_eq!(run(&["--help"]).unwrap(), 0);
        assert_eq!(run(&["help", "config"]).unwrap(), 0);
        assert_eq!(run(&["--version"]).unwrap(), 0);
        assert_eq!(run(&["frob"]).unwrap(), EXIT_USAGE);
        assert_eq!(run(&["config"]).unwrap(), EXIT_USAGE);
        assert_eq!(run(&["probe", "--bogus"]).unwrap(), EXIT_USAGE);
        assert_eq!(run(&["probe", "--queries", "many"]).unwrap(), EXIT_USAGE);
        assert_eq!(run(&["config", "unset"]).unwrap(), EXIT_USAGE);
        assert_eq!(run(&["push"]).unwrap(), EXIT_USAGE);
        assert_eq!(
            run(&["leak-test", "h", "--socket", "/s"]).unwrap_err().exit,
            EXIT_USAGE
        );
        assert_eq!(run(&["status"]).unwrap_err().exit, EXIT_USAGE);
    }
}
