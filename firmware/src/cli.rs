//! Command line: parsing, and turning a file plus flags into a validated [`Config`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use lanveil_config::{Config, LogLevel, SpkiPin, TlsVersion, Upstream, UpstreamUrl};

/// Usage text.
pub const USAGE: &str = "\
usage: lanveil [--config FILE] [--listen ADDR:PORT]... [--upstream URL]... [--bootstrap IP]...
               [--pin sha256/BASE64]... [--ca-file FILE] [--dns64-prefix PREFIX] [--log-level LEVEL]
       URL: tls://IP[:PORT]#NAME | https://IP[:PORT]/PATH#NAME | https://NAME[:PORT]/PATH (with --bootstrap)
       lanveil --check-config FILE
       lanveil --control SOCKET status|log|reload   (raw response for lanveil-ctl)
       lanveil --control SOCKET leak-probe LABEL NONCE      (lanveil-ctl leak-test's one-time name)
       lanveil --control SOCKET wan-portal set URI [DNS...] | wan-portal clear
                                                   (the WAN DHCP hook: a captive portal upstream)
       lanveil --version

With no arguments lanveil listens on 127.0.0.1:5353 and forwards to Quad9 over strict
DNS-over-TLS. --listen and --upstream replace the file's (or the default's) values; --pin and
--ca-file apply to the upstreams given with --upstream. SIGHUP reloads FILE, SIGTERM drains and exits.
Exit codes: 0 ok, 1 could not start (bind, TLS settings), 2 bad usage or configuration.";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--check-config FILE`.
    pub check: Option<PathBuf>,
    /// `--listen`, repeatable.
    pub listen: Vec<String>,
    /// `--upstream`, repeatable.
    pub upstreams: Vec<String>,
    /// `--pin`, repeatable.
    pub pins: Vec<String>,
    /// `--ca-file`.
    pub ca_file: Option<String>,
    /// `--bootstrap`, repeatable: addresses for `https://NAME/…` upstreams.
    pub bootstrap: Vec<std::net::IpAddr>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--dns64-prefix`.
    pub dns64_prefix: Option<String>,
    /// `--control SOCKET`: act as a client of a running lanveil's control socket.
    pub control: Option<PathBuf>,
    /// The request for `--control` (`status`, `log`, `reload`).
    pub control_request: Option<String>,
    /// Further words of the `--control` request (`wan-portal set URI DNS…`).
    pub control_args: Vec<String>,
    /// `--version`.
    pub version: bool,
    /// `--help`.
    pub help: bool,
}

/// Parses arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut a = Args::default();
    let text = |v: OsString, flag: &str| {
        v.into_string()
            .map_err(|_| format!("{flag}: not valid UTF-8"))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") | Short('c') => {
                a.config = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Long("check-config") => a.check = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("listen") | Short('l') => a
                .listen
                .push(text(p.value().map_err(|e| e.to_string())?, "--listen")?),
            Long("upstream") | Short('u') => {
                a.upstreams
                    .push(text(p.value().map_err(|e| e.to_string())?, "--upstream")?);
            }
            Long("bootstrap") => {
                let v = text(p.value().map_err(|e| e.to_string())?, "--bootstrap")?;
                a.bootstrap.push(
                    v.parse()
                        .map_err(|_| format!("--bootstrap {v}: must be an IP address"))?,
                );
            }
            Long("pin") => a
                .pins
                .push(text(p.value().map_err(|e| e.to_string())?, "--pin")?),
            Long("ca-file") => {
                a.ca_file = Some(text(p.value().map_err(|e| e.to_string())?, "--ca-file")?)
            }
            Long("dns64-prefix") => {
                a.dns64_prefix = Some(text(
                    p.value().map_err(|e| e.to_string())?,
                    "--dns64-prefix",
                )?)
            }
            Long("log-level") => {
                a.log_level = Some(text(p.value().map_err(|e| e.to_string())?, "--log-level")?)
            }
            Long("control") => a.control = Some(p.value().map_err(|e| e.to_string())?.into()),
            Value(v) if a.control.is_some() && a.control_request.is_none() => {
                a.control_request = Some(text(v, "--control")?);
            }
            Value(v) if a.control_request.is_some() => {
                a.control_args.push(text(v, "--control")?);
            }
            Long("version") | Short('V') => a.version = true,
            Long("help") | Short('h') => a.help = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(a)
}

/// Reads and validates a configuration file; the error names the file, line, key and reason.
pub fn load_file(path: &std::path::Path) -> Result<Config, String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    Config::from_uci_text(&text).map_err(|e| e.display_with_file(&shown).to_string())
}

/// The configuration the arguments describe: the file (or the built-in default) with flags applied.
pub fn config(args: &Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(path) => load_file(path)?,
        None => Config::default(),
    };
    apply_flags(&mut cfg, args)?;
    Ok(cfg)
}

/// Applies `--listen`, `--upstream`, `--pin`, `--ca-file`, `--log-level`.
pub fn apply_flags(cfg: &mut Config, args: &Args) -> Result<(), String> {
    if !args.listen.is_empty() {
        cfg.listen.addrs = args
            .listen
            .iter()
            .map(|l| {
                l.parse::<SocketAddr>()
                    .map_err(|_| format!("--listen {l}: must be IP:PORT (IPv6 as [ADDR]:PORT)"))
            })
            .collect::<Result<_, _>>()?;
    }
    if (!args.pins.is_empty() || args.ca_file.is_some()) && args.upstreams.is_empty() {
        return Err(
            "--pin and --ca-file apply to upstreams given with --upstream; none given".into(),
        );
    }
    let pins = args
        .pins
        .iter()
        .map(|p| p.parse::<SpkiPin>().map_err(|r| format!("--pin {p}: {r}")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(ca) = &args.ca_file
        && !ca.starts_with('/')
        && !std::path::Path::new(ca).exists()
    {
        return Err(format!("--ca-file {ca}: no such file"));
    }
    if !args.upstreams.is_empty() {
        cfg.upstreams.servers = args
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let url = u
                    .parse::<UpstreamUrl>()
                    .map_err(|r| format!("--upstream {u}: {r}"))?;
                if url.addr.is_none() && args.bootstrap.is_empty() {
                    return Err(format!(
                        "--upstream {u}: a host name needs its addresses from --bootstrap IP (never looked up in plaintext)"
                    ));
                }
                let bootstrap = if url.addr.is_none() { args.bootstrap.clone() } else { Vec::new() };
                Ok(Upstream {
                    name: format!("cli{}", i + 1),
                    url,
                    pins: pins.clone(),
                    ca_file: args.ca_file.clone(),
                    tls_min_version: TlsVersion::V1_3,
                    bootstrap,
                    http_get: false,
                    sni: true,
                    tls_resumption: false,
                })
            })
            .collect::<Result<_, String>>()?;
    }
    if let Some(p) = &args.dns64_prefix {
        cfg.policy.dns64_prefix = Some(
            lanveil_config::parse_nat64_prefix(p)
                .map_err(|r| format!("--dns64-prefix {p}: {r}"))?,
        );
    }
    if let Some(l) = &args.log_level {
        cfg.daemon.log_level = l
            .parse::<LogLevel>()
            .map_err(|r| format!("--log-level {l}: {r}"))?;
    }
    cfg.validate().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse(v.iter().map(OsString::from))
    }

    #[test]
    fn no_arguments_means_builtin_default() {
        let a = args(&[]).unwrap();
        let c = config(&a).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            c.listen.addrs,
            vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
        );
        assert!(
            c.upstreams
                .servers
                .iter()
                .all(|u| u.url.auth_name == "dns.quad9.net")
        );
    }

    #[test]
    fn flags_replace_listen_and_upstreams() {
        let a = args(&[
            "--listen",
            "127.0.0.1:53",
            "--listen=[::1]:53",
            "--upstream",
            "tls://192.0.2.1:853#dns.example",
            "--pin",
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "--ca-file",
            "/etc/ca.pem",
            "--log-level",
            "debug",
        ])
        .unwrap();
        let c = config(&a).unwrap();
        assert_eq!(c.listen.addrs.len(), 2);
        assert_eq!(c.upstreams.servers.len(), 1);
        assert_eq!(c.upstreams.servers[0].pins.len(), 1);
        assert_eq!(
            c.upstreams.servers[0].ca_file.as_deref(),
            Some("/etc/ca.pem")
        );
        assert_eq!(c.daemon.log_level, LogLevel::Debug);
    }

    #[test]
    fn bad_flags_are_named() {
        let e = config(&args(&["--upstream", "udp://1.2.3.4"]).unwrap()).unwrap_err();
        assert!(
            e.starts_with("--upstream udp://1.2.3.4: bad upstream URL"),
            "{e}"
        );
        let e = config(&args(&["--pin", "sha256/AAAA"]).unwrap()).unwrap_err();
        assert!(e.contains("none given"), "{e}");
        let e = config(&args(&["--listen", "localhost"]).unwrap()).unwrap_err();
        assert!(e.starts_with("--listen localhost"), "{e}");
        assert!(args(&["--frobnicate"]).is_err());
    }
}
