//! Command line: parsing, and turning a file plus flags into a validated [`Config`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use lanveil_config::{Config, LogLevel, SpkiPin, TlsVersion, Upstream, UpstreamUrl};

/// Usage text.
pub const USAGE: &str = "\
usage: lanveil [--config FILE [--last-good COPY]] [--wan-portal-record FILE] [--listen ADDR:PORT]... [--upstream URL]... [--bootstrap IP]...
               [--pin sha256/BASE64]... [--ca-file FILE] [--dns64-prefix PREFIX] [--log-level LEVEL]
       URL: tls://IP[:PORT]#NAME | https://IP[:PORT]/PATH#NAME | https://NAME[:PORT]/PATH (with --bootstrap)
            | quic://IP[:PORT]#NAME (DNS over QUIC, builds with the doq feature)
       lanveil --check-config FILE [--print-signals [--wan-portal OPT114]]
                 (--print-signals: the LAN's DHCP signals for dnsmasq/odhcpd, KEY VALUE lines;
                  --wan-portal: option 114 the WAN announced, as udhcpc exports it, hex or text)
       lanveil --control SOCKET status|log|reload   (raw response for lanveil-ctl)
       lanveil --control SOCKET status-json         (the status as JSON, for LuCI)
       lanveil --probe URL [--ca-file FILE] [--pin sha256/BASE64]... [--bootstrap IP]...
                 (one authenticated TLS handshake; JSON: ok, error, handshake_ms, spki, not_after)
       lanveil --control SOCKET leak-probe LABEL NONCE      (lanveil-ctl leak-test's one-time name)
       lanveil --control SOCKET wan-portal set URI [DNS...] | wan-portal clear
                                                   (the WAN DHCP hook: a captive portal upstream)
       lanveil --version

With no arguments lanveil listens on 127.0.0.1:5353 and forwards to Quad9 over strict
DNS-over-TLS. --listen and --upstream replace the file's (or the default's) values; --pin and
--ca-file apply to the upstreams given with --upstream. SIGHUP reloads FILE, SIGTERM drains and exits.
--last-good COPY: FILE as it was when it last started or reloaded cleanly (kept there by lanveil);
a start whose FILE is invalid says why and runs on COPY instead.
--wan-portal-record FILE: the WAN's captive portal as the DHCP hook recorded it (INTERFACE URI
[DNS...]), read at start (OpenWrt's init script passes it, so a respawned daemon knows it).
Exit codes: 0 ok, 1 could not start (bind, TLS settings), 2 bad usage or configuration.";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--last-good FILE` (with `--config`): a copy of the last configuration file that started or
    /// reloaded cleanly, written by the daemon; a start whose `--config` file is invalid runs on it.
    pub last_good: Option<PathBuf>,
    /// `--check-config FILE`.
    pub check: Option<PathBuf>,
    /// `--print-signals` (with `--check-config`).
    pub print_signals: bool,
    /// `--wan-portal OPT114` (with `--print-signals`).
    pub wan_portal: Option<String>,
    /// `--wan-portal-record FILE` (daemon): the udhcpc hook's record of the WAN's captive portal,
    /// read at start.
    pub wan_portal_record: Option<PathBuf>,
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
    /// `--probe URL`: one authenticated handshake to URL, JSON on stdout (LuCI's probe button).
    pub probe: Option<String>,
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
            Long("last-good") => a.last_good = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("print-signals") => a.print_signals = true,
            Long("wan-portal-record") => {
                a.wan_portal_record = Some(p.value().map_err(|e| e.to_string())?.into())
            }
            Long("wan-portal") => {
                a.wan_portal = Some(text(p.value().map_err(|e| e.to_string())?, "--wan-portal")?)
            }
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
            Long("probe") => {
                a.probe = Some(text(p.value().map_err(|e| e.to_string())?, "--probe")?)
            }
            Long("version") | Short('V') => a.version = true,
            Long("help") | Short('h') => a.help = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    if a.print_signals && a.check.is_none() {
        return Err("--print-signals needs --check-config FILE".into());
    }
    if a.wan_portal.is_some() && !a.print_signals {
        return Err("--wan-portal needs --print-signals".into());
    }
    if a.last_good.is_some() && a.config.is_none() {
        return Err("--last-good needs --config FILE".into());
    }
    Ok(a)
}

/// `--print-signals`: exactly what the OpenWrt init script hands to dnsmasq and odhcpd for the LAN's
/// RFC 8910 / RFC 8925 signals, so the shell never validates or encodes them itself. One `KEY VALUE`
/// per line, keys fixed, in this order, each line only when it applies:
///
/// ```text
/// captive_portal_uri URI           the URI to announce: the owner's captive_portal_uri, else a valid
/// captive_portal_source owner|wan  --wan-portal (never the "unrestricted" URN learned from the WAN)
/// dnsmasq_dhcp_option 114,VALUE    dnsmasq's dhcp_option: the URI, or colon-hex when it holds , # [ ]
/// dhcpv6_raw HEX                   DHCPv6 option 103 for odhcpd's dhcpv6_raw (code, length, URI)
/// v6only_wait SECONDS              RFC 8925 V6ONLY_WAIT (the config already required dns64_prefix)
/// dnsmasq_dhcp_option 108,HEX      option 108's four octets, colon-hex (any dnsmasq sends them as is)
/// wan_portal_uri URI               --wan-portal decoded and valid
/// wan_portal ok|unrestricted|invalid[: REASON]
/// ```
///
/// Every value is printable ASCII without spaces, quotes or backslashes (a URI that passed
/// [`CaptivePortalUri::parse`](lanveil_core::capport::CaptivePortalUri::parse)); only the REASON text
/// after `invalid:` has spaces, and it never repeats the value.
pub fn signals(cfg: &Config, wan_portal: Option<&str>) -> Result<String, String> {
    use lanveil_core::capport::{CaptivePortalUri, Encoding, V6OnlyWait};
    use std::fmt::Write;
    let mut out = String::new();
    let owner = cfg
        .signals
        .captive_portal_uri
        .as_deref()
        .map(|u| CaptivePortalUri::parse(u.as_bytes()))
        .transpose()
        .map_err(|e| format!("captive_portal_uri: {e}"))?;
    let wan = wan_portal.map(|v| CaptivePortalUri::from_dhcp_value(v.as_bytes()));
    let announce = match (owner, &wan) {
        (Some(u), _) => Some((u, "owner")),
        (None, Some(Ok(u))) if !u.is_unrestricted() => Some((u.clone(), "wan")),
        _ => None,
    };
    let hex = |b: &[u8], sep: &str| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(sep)
    };
    if let Some((uri, source)) = &announce {
        let mut buf = [0u8; 4 + lanveil_core::capport::MAX_URI_LEN];
        let _ = writeln!(out, "captive_portal_uri {uri}");
        let _ = writeln!(out, "captive_portal_source {source}");
        // dnsmasq splits dhcp_option values at commas and reads '#' and brackets itself; colon-hex
        // it sends verbatim.
        let n = uri
            .emit(Encoding::Dhcpv4, &mut buf)
            .map_err(|e| e.to_string())?;
        if uri.as_str().contains([',', '#', '[', ']']) {
            let _ = writeln!(out, "dnsmasq_dhcp_option 114,{}", hex(&buf[2..n], ":"));
        } else {
            let _ = writeln!(out, "dnsmasq_dhcp_option 114,{uri}");
        }
        let n = uri
            .emit(Encoding::Dhcpv6, &mut buf)
            .map_err(|e| e.to_string())?;
        let _ = writeln!(out, "dhcpv6_raw {}", hex(&buf[..n], ""));
    }
    if cfg.signals.v6only_wait != 0 {
        let wait =
            V6OnlyWait::new(cfg.signals.v6only_wait).map_err(|e| format!("v6only_wait: {e}"))?;
        let mut buf = [0u8; V6OnlyWait::BUFFER_LEN];
        let n = wait.emit(&mut buf).map_err(|e| e.to_string())?;
        let _ = writeln!(out, "v6only_wait {}", wait.secs());
        let _ = writeln!(out, "dnsmasq_dhcp_option 108,{}", hex(&buf[2..n], ":"));
    }
    match wan {
        None => {}
        Some(Ok(u)) if u.is_unrestricted() => out.push_str("wan_portal unrestricted\n"),
        Some(Ok(u)) => {
            let _ = writeln!(out, "wan_portal_uri {u}");
            out.push_str("wan_portal ok\n");
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "wan_portal invalid: {e}");
        }
    }
    Ok(out)
}

/// Reads and validates a configuration file; the error names the file, line, key and reason.
pub fn load_file(path: &std::path::Path) -> Result<Config, String> {
    read_file(path).map(|(_, c)| c)
}

/// The file's text and the configuration it holds. Comments may hold bytes that are not UTF-8 (as for
/// libuci; they come back as U+FFFD in the text), anything else must be UTF-8; a file of more than
/// [`lanveil_config::uci::MAX_FILE_BYTES`] is refused unread (it would be parsed on the only thread).
pub fn read_file(path: &std::path::Path) -> Result<(String, Config), String> {
    use lanveil_config::uci;
    use std::io::Read as _;
    let shown = path.display().to_string();
    let cannot = |e: std::io::Error| format!("{shown}: cannot read: {e}");
    let file = std::fs::File::open(path).map_err(cannot)?;
    let size = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::new();
    file.take(uci::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let named = |e: lanveil_config::Error| e.display_with_file(&shown).to_string();
    uci::check_file_size(size.max(bytes.len() as u64)).map_err(named)?;
    let config = Config::from_uci_bytes(&bytes).map_err(named)?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok((text, config))
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
    fn upstream_flag_takes_quic_urls() {
        let a = args(&[
            "--upstream",
            "quic://192.0.2.1#doq.example",
            "--upstream",
            "tls://192.0.2.2#dot.example",
        ])
        .unwrap();
        let c = config(&a).unwrap();
        let t: Vec<_> = c
            .upstreams
            .servers
            .iter()
            .map(|u| u.url.transport)
            .collect();
        assert_eq!(
            t,
            [
                lanveil_config::Transport::Quic,
                lanveil_config::Transport::Tls
            ]
        );
        assert_eq!(c.upstreams.servers[0].url.port, 853);
        let bad = args(&["--upstream", "quic://192.0.2.1:53#doq.example"]);
        assert!(bad.is_err() || config(&bad.unwrap()).is_err());
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
    fn cfg(extra: &str) -> Config {
        Config::from_uci_text(&format!(
            "config lanveil 'main'\n\tlist listen '127.0.0.1:5453'\n{extra}\n\
             config upstream 'q'\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n"
        ))
        .unwrap()
    }

    const URI: &str = "https://gw.example.lan/api/captive";
    const URI_HEX: &str = "68747470733a2f2f67772e6578616d706c652e6c616e2f6170692f63617074697665";

    #[test]
    fn print_signals_owner_uri_and_v6only() {
        let c = cfg(&format!(
            "\toption captive_portal_uri '{URI}'\n\toption v6only_wait '1800'\n\toption dns64_prefix '64:ff9b::/96'"
        ));
        assert_eq!(
            signals(&c, None).unwrap(),
            format!(
                "captive_portal_uri {URI}\ncaptive_portal_source owner\ndnsmasq_dhcp_option 114,{URI}\n\
                 dhcpv6_raw 00670022{URI_HEX}\nv6only_wait 1800\ndnsmasq_dhcp_option 108,00:00:07:08\n"
            )
        );
        // The owner's URI wins; the WAN's is still decoded for the hook.
        let out = signals(&c, Some(&hex_of("https://portal.hotel.example/"))).unwrap();
        assert!(out.starts_with(&format!(
            "captive_portal_uri {URI}\ncaptive_portal_source owner\n"
        )));
        assert!(
            out.ends_with("wan_portal_uri https://portal.hotel.example/\nwan_portal ok\n"),
            "{out}"
        );
    }

    fn hex_of(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn print_signals_wan_portal() {
        let c = cfg("");
        assert_eq!(signals(&c, None).unwrap(), "");
        let wan = "https://portal.hotel.example/a,b";
        let out = signals(&c, Some(&hex_of(wan))).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("captive_portal_uri {wan}"));
        assert_eq!(lines[1], "captive_portal_source wan");
        // A comma would split dnsmasq's value: colon-hex instead.
        assert_eq!(
            lines[2],
            format!(
                "dnsmasq_dhcp_option 114,{}",
                hex_of(wan)
                    .as_bytes()
                    .chunks(2)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect::<Vec<_>>()
                    .join(":")
            )
        );
        assert_eq!(lines[3], format!("dhcpv6_raw 00670020{}", hex_of(wan)));
        assert_eq!(
            &lines[4..],
            [format!("wan_portal_uri {wan}").as_str(), "wan_portal ok"]
        );
        // The text form (a client that knows option 114) is the same.
        assert_eq!(signals(&c, Some(wan)).unwrap(), out);
        let urn = hex_of("urn:ietf:params:capport:unrestricted");
        assert_eq!(
            signals(&c, Some(&urn)).unwrap(),
            "wan_portal unrestricted\n"
        );
        for bad in [
            hex_of("http://portal.hotel.example/"),
            hex_of("https://portal.hotel.example/a b"),
            hex_of("https://portal.hotel.example/a\"b"),
            hex_of(&format!("https://{}", "a".repeat(248))),
            hex_of("https://user@portal.hotel.example/"),
            format!("{}0a", hex_of("https://ok.example/")),
            "abc".into(),
        ] {
            let out = signals(&c, Some(&bad)).unwrap();
            assert!(out.starts_with("wan_portal invalid: "), "{bad}: {out}");
            assert!(!out.contains("hotel") && out.lines().count() == 1, "{out}");
        }
    }

    /// A file of `bytes` in a fresh temporary directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            let dir =
                std::env::temp_dir().join(format!("lanveil-cli-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("lanveil");
            std::fs::write(&path, bytes).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    const FILE: &[u8] = b"config lanveil 'main'\n\tlist listen '127.0.0.1:5453'\n\
        config upstream 'q'\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n";

    #[test]
    fn read_file_takes_any_bytes_in_comments_only() {
        // libuci skips comments whatever their bytes (Latin-1 text, say): so does lanveil.
        let mut bytes = b"# Konfiguration f\xfcr den Router\n".to_vec();
        bytes.extend_from_slice(FILE);
        bytes.extend_from_slice(b"\toption ca_file '/etc/ca.pem' # \xe9\xff\n");
        let f = TempFile::new("comment", &bytes);
        let (text, c) = read_file(&f.0).unwrap();
        assert_eq!(
            c.upstreams.servers[0].ca_file.as_deref(),
            Some("/etc/ca.pem")
        );
        assert!(
            text.starts_with("# Konfiguration f\u{fffd}r den Router\n"),
            "{text}"
        );
        assert_eq!(Config::from_uci_text(&text).unwrap(), c);
        // Elsewhere: an error naming the file and the line.
        let mut bytes = FILE.to_vec();
        bytes.extend_from_slice(b"\toption ca_file '/etc/ca-\xe9.pem'\n");
        let f = TempFile::new("value", &bytes);
        let e = read_file(&f.0).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}:5: upstream[q].ca_file: syntax error: not UTF-8 (only comments may hold other bytes)",
                f.0.display()
            )
        );
    }

    #[test]
    fn read_file_refuses_a_file_over_the_limit() {
        let max = lanveil_config::uci::MAX_FILE_BYTES;
        let mut bytes = FILE.to_vec();
        bytes.resize(max, b'#');
        let f = TempFile::new("at-limit", &bytes);
        assert!(read_file(&f.0).is_ok());
        bytes.resize(max + 100_000, b'#');
        let f = TempFile::new("over-limit", &bytes);
        let e = read_file(&f.0).map(|_| ()).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}: the file is {} bytes, more than the {max} bytes lanveil reads (a configuration is a few KiB)",
                f.0.display(),
                max + 100_000
            )
        );
        let e = read_file(std::path::Path::new("/nonexistent/lanveil")).unwrap_err();
        assert!(e.starts_with("/nonexistent/lanveil: cannot read: "), "{e}");
    }

    #[test]
    fn print_signals_needs_check_config() {
        assert!(args(&["--print-signals"]).is_err());
        assert!(args(&["--check-config", "f", "--wan-portal", "x"]).is_err());
        assert!(
            args(&["--last-good", "g"]).is_err(),
            "--last-good without --config"
        );
        assert_eq!(
            args(&["--config", "f", "--last-good", "g"])
                .unwrap()
                .last_good,
            Some(PathBuf::from("g"))
        );
        let a = args(&[
            "--check-config",
            "f",
            "--print-signals",
            "--wan-portal",
            "x",
        ])
        .unwrap();
        assert!(a.print_signals && a.wan_portal.as_deref() == Some("x"));
    }
}
