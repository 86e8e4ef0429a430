//! The validated configuration model.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

use crate::error::{Error, Reason};
use crate::uci::{self, Document, Section, Value};
use crate::upstream::{SpkiPin, UpstreamUrl};

/// Log verbosity. Query names never appear at `Info` or above.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// State changes (default).
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl FromStr for LogLevel {
    type Err = Reason;
    fn from_str(s: &str) -> Result<Self, Reason> {
        Ok(match s {
            "error" => Self::Error,
            "warn" | "warning" => Self::Warn,
            "info" => Self::Info,
            "debug" => Self::Debug,
            "trace" => Self::Trace,
            _ => return Err(Reason::OneOf("error, warn, info, debug, trace")),
        })
    }
}

impl LogLevel {
    /// The word used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// Lowest TLS version lanveil accepts from an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 (only when the owner asks for it).
    V1_2,
    /// TLS 1.3 (default).
    V1_3,
}

/// One upstream resolver.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    /// Section name (for logs and status), or `upstreamN`.
    pub name: String,
    /// Address, transport, authentication name.
    pub url: UpstreamUrl,
    /// SPKI pins; when non-empty, one of them must match a certificate of the validated chain.
    pub pins: Vec<SpkiPin>,
    /// CA bundle (PEM); `None` means the global `ca_file`, or the system bundle.
    pub ca_file: Option<String>,
    /// Lowest TLS version accepted.
    pub tls_min_version: TlsVersion,
    /// Addresses of an `https://NAME/…` upstream (never looked up in plaintext).
    pub bootstrap: Vec<IpAddr>,
    /// DoH with GET `?dns=` instead of POST.
    pub http_get: bool,
    /// Send SNI (the authentication name); off only when the owner asks (the name is still verified).
    pub sni: bool,
    /// Allow TLS session resumption (off by default: it links connections to each other).
    pub tls_resumption: bool,
}

impl Upstream {
    /// The addresses to connect to, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        match self.url.addr {
            Some(a) => vec![a],
            None => self
                .bootstrap
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.url.port))
                .collect(),
        }
    }
}

/// How a query's upstream is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum UpstreamPolicy {
    /// The first healthy one in configuration order.
    Failover,
    /// Each healthy one in turn.
    RoundRobin,
    /// The healthy one with the lowest smoothed round-trip time.
    Fastest,
}

impl UpstreamPolicy {
    /// The word used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::RoundRobin => "round_robin",
            Self::Fastest => "fastest",
        }
    }
}

/// The whole, validated configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Addresses to listen on (UDP and TCP each).
    #[serde(with = "crate::scoped::vec")]
    pub listen: Vec<SocketAddr>,
    /// Upstreams, in failover order.
    pub upstreams: Vec<Upstream>,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Default CA bundle for upstreams without their own; `None` = the system bundle.
    pub ca_file: Option<String>,
    /// Time a client query may take before it is answered SERVFAIL (ms).
    pub query_timeout_ms: u32,
    /// Most client queries in flight at once.
    pub max_inflight: u32,
    /// Most LAN TCP clients at once.
    pub max_tcp_clients: u32,
    /// Most pipelined queries outstanding per LAN TCP client.
    pub tcp_pipeline: u32,
    /// Idle time after which a LAN TCP client is disconnected (ms).
    pub tcp_idle_timeout_ms: u32,
    /// Idle time after which an upstream connection is closed (ms).
    pub upstream_idle_timeout_ms: u32,
    /// Time allowed for TCP connect + TLS handshake (ms).
    pub upstream_connect_timeout_ms: u32,
    /// Most connections per upstream.
    pub upstream_max_connections: u32,
    /// In-flight queries per upstream connection before another connection is opened.
    pub upstream_pipeline: u32,
    /// Upper bound of the reconnect backoff (ms).
    pub reconnect_backoff_max_ms: u32,
    /// Time SIGTERM waits for in-flight queries (ms).
    pub drain_timeout_ms: u32,
    /// When started as root: the user to switch to once the listeners are bound.
    pub user: Option<String>,
    /// How upstreams are chosen.
    pub upstream_policy: UpstreamPolicy,
    /// Cache answers (turn off when dnsmasq caches in front).
    pub cache: bool,
    /// Most cached answers.
    pub cache_entries: u32,
    /// Most bytes of cached answers, in KiB.
    pub cache_max_kib: u32,
    /// Lowest TTL a cached answer keeps (s).
    pub cache_min_ttl: u32,
    /// Highest TTL a cached answer keeps (s).
    pub cache_max_ttl: u32,
    /// Answer from expired cache entries when no upstream answers (RFC 8767).
    pub serve_stale: bool,
    /// How long after expiry an entry may still be served stale (s).
    pub serve_stale_max_s: u32,
    /// Where the clock floor and learned state are kept across restarts (postcard), if anywhere.
    pub state_file: Option<String>,
    /// Client source prefixes allowed to query (address, prefix length); others get REFUSED.
    pub allow: Vec<(IpAddr, u8)>,
    /// Answer RFC 6303 zones, home.arpa, local, lan, single-label names locally.
    pub local_zones: bool,
    /// The LAN's own domain, also answered locally.
    pub local_domain: Option<String>,
    /// `use-application-dns.net` → NXDOMAIN.
    pub canary_firefox: bool,
    /// `mask.icloud.com`, `mask-h2.icloud.com` → NXDOMAIN.
    pub canary_icloud: bool,
    /// Entries of the opt-in in-memory query log (0 = off, the default).
    pub query_log: u32,
    /// The local control socket (status, query log, reload) for `lanveil-ctl`, if any.
    pub control_socket: Option<String>,
    /// DNS64 (RFC 6147) with this NAT64 prefix (RFC 6052 lengths), or off.
    pub dns64_prefix: Option<(core::net::Ipv6Addr, u8)>,
    /// Captive-portal API URI announced to LAN clients (RFC 8910: DHCPv4 114, DHCPv6 103, RA 37),
    /// applied by the OpenWrt init script; `https://…` or `urn:ietf:params:capport:unrestricted`.
    pub captive_portal_uri: Option<String>,
    /// DHCPv4 option 108 IPv6-Only Preferred V6ONLY_WAIT in seconds (0 = off; RFC 8925, needs
    /// `dns64_prefix`: NAT64 must exist before IPv4 is taken away from clients).
    pub v6only_wait: u32,
    /// Behind someone else's captive portal (hotel WAN): resolve just the portal's host names in
    /// plaintext through the WAN's DNS, for a bounded time. Off by default.
    pub captive_plaintext: bool,
    /// Longest the plaintext exception stays open after a portal is signalled (s).
    pub captive_plaintext_max_s: u32,
    /// How often the captive-portal API (RFC 8908) is polled while the WAN is captive (s).
    pub captive_poll_s: u32,
    /// Sustained queries per second per client source address (0 = no rate limit).
    pub client_rate: u32,
    /// Burst allowance per client above the rate.
    pub client_burst: u32,
    /// Over the rate: drop silently instead of answering REFUSED.
    pub client_rate_drop: bool,
    /// Queries in flight per client source address.
    pub client_max_inflight: u32,
    /// Apply the per-client limits to loopback sources too (off: dnsmasq in front carries everyone).
    pub client_limit_loopback: bool,
    /// LAN TCP connections per client source address.
    pub tcp_clients_per_source: u32,
    /// A resolver on the LAN (loopback, RFC 1918, link-local or ULA address; see
    /// [`parse_local_resolver`]) that gets the local names (`local_domain`, home.arpa, the RFC 6303
    /// zones, single labels) in plaintext instead of lanveil answering them NXDOMAIN; for installs
    /// without dnsmasq in front. Off by default; never an upstream. (Last: a schema-2 packed
    /// configuration, which lacks it, fails to decode instead of being read shifted.)
    #[serde(with = "crate::scoped::option")]
    pub local_resolver: Option<SocketAddr>,
}

/// Parses a NAT64 prefix: IPv6 `ADDR/LEN` with LEN one of 32, 40, 48, 56, 64, 96 (RFC 6052 §2.2) and
/// bits 64–71 zero.
pub fn parse_nat64_prefix(s: &str) -> Result<(core::net::Ipv6Addr, u8), Reason> {
    let bad = Reason::Rule(
        "must be an IPv6 prefix of length 32, 40, 48, 56, 64 or 96 (e.g. 64:ff9b::/96)",
    );
    let (addr, len) = parse_prefix(s).map_err(|_| bad.clone())?;
    let IpAddr::V6(v6) = addr else {
        return Err(bad);
    };
    if ![32, 40, 48, 56, 64, 96].contains(&len) || v6.octets()[8] != 0 {
        return Err(bad);
    }
    Ok((v6, len))
}

/// Parses a captive-portal API URI as RFC 8910 / RFC 8908 want it: `https://` with a host, or the
/// `urn:ietf:params:capport:unrestricted` URN; at most 255 bytes of URI characters.
pub fn parse_captive_uri(s: &str) -> Result<String, Reason> {
    lanveil_core::capport::CaptivePortalUri::parse(s.as_bytes())
        .map(|u| String::from(u.as_str()))
        .map_err(|_| {
            Reason::Rule(
                "must be an https:// URI (RFC 8908) or urn:ietf:params:capport:unrestricted, at most 255 characters",
            )
        })
}

/// Parses V6ONLY_WAIT: 0 (off) or at least MIN_V6ONLY_WAIT (300 s, RFC 8925 §3.4).
pub fn parse_v6only_wait(s: &str) -> Result<u32, Reason> {
    match s.parse::<u32>() {
        Ok(0) => Ok(0),
        Ok(n) if n >= lanveil_core::capport::MIN_V6ONLY_WAIT => Ok(n),
        _ => Err(Reason::Rule(
            "must be 0 (off) or at least 300 seconds (MIN_V6ONLY_WAIT, RFC 8925)",
        )),
    }
}

/// What [`parse_local_resolver`] says about an address that is not on the LAN.
const NOT_LAN: &str = "must be a resolver on the LAN: IP or IP:PORT with a loopback, RFC 1918 (10/8, 172.16/12, 192.168/16), link-local or IPv6 ULA (fc00::/7) address; local names go there in plaintext, so a public address would leak them";

/// Parses `local_resolver`: `IP` (port 53), `IP:PORT` or `[IPv6]:PORT`, on the LAN only.
pub fn parse_local_resolver(s: &str) -> Result<SocketAddr, Reason> {
    let sa = SocketAddr::from_str(s)
        .or_else(|_| IpAddr::from_str(s).map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| Reason::Rule(NOT_LAN))?;
    check_local_resolver(&sa)?;
    Ok(sa)
}

/// The rule [`parse_local_resolver`] applies (also to packed configurations): a usable port and an
/// address that cannot be on the other side of the WAN. IPv4-mapped IPv6 counts as IPv4; 100.64/10
/// is refused (RFC 6598 shared space: the ISP's side of a CGNAT); global IPv6 is refused (a LAN
/// resolver has a ULA or link-local address too); IPv6 link-local needs its interface (`%N`).
pub fn check_local_resolver(sa: &SocketAddr) -> Result<(), Reason> {
    let lan = match sa.ip().to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let link_local = v6.segments()[0] & 0xffc0 == 0xfe80;
            let ula = v6.segments()[0] & 0xfe00 == 0xfc00;
            if link_local && matches!(sa, SocketAddr::V6(a) if a.scope_id() == 0) {
                return Err(Reason::Rule(
                    "an IPv6 link-local resolver needs its interface index: [fe80::1%2]:53",
                ));
            }
            v6.is_loopback() || link_local || ula
        }
    };
    if !lan {
        return Err(Reason::Rule(NOT_LAN));
    }
    if sa.port() == 0 {
        return Err(Reason::Rule("the port must not be 0"));
    }
    Ok(())
}

/// Client prefixes allowed by default: loopback, RFC 1918, CGNAT, link-local, IPv6 loopback, ULA and
/// link-local. Global IPv6 LAN prefixes must be added (`list allow`).
pub const DEFAULT_ALLOW: &str = "127.0.0.0/8 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 169.254.0.0/16 ::1/128 fc00::/7 fe80::/10";

/// Parses `ADDR/LEN`.
pub fn parse_prefix(s: &str) -> Result<(IpAddr, u8), Reason> {
    let bad = Reason::Rule("must be ADDRESS/LENGTH, e.g. 192.168.1.0/24 or 2001:db8:1::/48");
    let (a, l) = s.split_once('/').ok_or(bad.clone())?;
    let addr = IpAddr::from_str(a).map_err(|_| bad.clone())?;
    let len: u8 = l.parse().map_err(|_| bad.clone())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad);
    }
    Ok((addr, len))
}

struct Knob {
    key: &'static str,
    min: u32,
    max: u32,
    get: fn(&mut Config) -> &mut u32,
}

const KNOBS: &[Knob] = &[
    Knob {
        key: "query_timeout_ms",
        min: 100,
        max: 30_000,
        get: |c| &mut c.query_timeout_ms,
    },
    Knob {
        key: "max_inflight",
        min: 16,
        // Half the upstream ID space: a session never holds more IDs than queries are in flight,
        // so drawing a free random ID takes two tries on average at worst.
        max: 32_768,
        get: |c| &mut c.max_inflight,
    },
    Knob {
        key: "max_tcp_clients",
        min: 1,
        max: 4_096,
        get: |c| &mut c.max_tcp_clients,
    },
    Knob {
        key: "tcp_pipeline",
        min: 1,
        max: 1_024,
        get: |c| &mut c.tcp_pipeline,
    },
    Knob {
        key: "tcp_idle_timeout_ms",
        min: 500,
        max: 300_000,
        get: |c| &mut c.tcp_idle_timeout_ms,
    },
    Knob {
        key: "upstream_idle_timeout_ms",
        min: 1_000,
        max: 3_600_000,
        get: |c| &mut c.upstream_idle_timeout_ms,
    },
    Knob {
        key: "upstream_connect_timeout_ms",
        min: 100,
        max: 60_000,
        get: |c| &mut c.upstream_connect_timeout_ms,
    },
    Knob {
        key: "upstream_max_connections",
        min: 1,
        max: 16,
        get: |c| &mut c.upstream_max_connections,
    },
    Knob {
        key: "upstream_pipeline",
        min: 1,
        max: 4_096,
        get: |c| &mut c.upstream_pipeline,
    },
    Knob {
        key: "reconnect_backoff_max_ms",
        min: 100,
        max: 60_000,
        get: |c| &mut c.reconnect_backoff_max_ms,
    },
    Knob {
        key: "drain_timeout_ms",
        min: 0,
        max: 60_000,
        get: |c| &mut c.drain_timeout_ms,
    },
    Knob {
        key: "client_rate",
        min: 0,
        max: 1_000_000,
        get: |c| &mut c.client_rate,
    },
    Knob {
        key: "client_burst",
        min: 1,
        max: 1_000_000,
        get: |c| &mut c.client_burst,
    },
    Knob {
        key: "client_max_inflight",
        min: 0,
        max: 65_536,
        get: |c| &mut c.client_max_inflight,
    },
    Knob {
        key: "tcp_clients_per_source",
        min: 1,
        max: 4_096,
        get: |c| &mut c.tcp_clients_per_source,
    },
    Knob {
        key: "query_log",
        min: 0,
        max: 10_000,
        get: |c| &mut c.query_log,
    },
    Knob {
        key: "cache_entries",
        min: 16,
        max: 200_000,
        get: |c| &mut c.cache_entries,
    },
    Knob {
        key: "cache_max_kib",
        min: 64,
        max: 65_536,
        get: |c| &mut c.cache_max_kib,
    },
    Knob {
        key: "cache_min_ttl",
        min: 0,
        max: 3_600,
        get: |c| &mut c.cache_min_ttl,
    },
    Knob {
        key: "cache_max_ttl",
        min: 1,
        max: 604_800,
        get: |c| &mut c.cache_max_ttl,
    },
    Knob {
        key: "serve_stale_max_s",
        min: 1,
        max: 604_800,
        get: |c| &mut c.serve_stale_max_s,
    },
    Knob {
        key: "captive_plaintext_max_s",
        min: 30,
        max: 3_600,
        get: |c| &mut c.captive_plaintext_max_s,
    },
    Knob {
        key: "captive_poll_s",
        min: 1,
        max: 300,
        get: |c| &mut c.captive_poll_s,
    },
];

/// Magic of a packed configuration.
pub const PACK_MAGIC: &[u8; 4] = b"LVCF";
/// Schema version of packed configurations written by this build (bump on any model change).
pub const PACK_VERSION: u16 = 3;

/// Section type holding settings for the OpenWrt init script only; the daemon skips it.
pub const INIT_ONLY_SECTION: &str = "openwrt";

/// The most upstreams a configuration may name.
pub const MAX_UPSTREAMS: usize = 16;
/// The most listeners a configuration may name.
pub const MAX_LISTENERS: usize = 16;
/// The most pins one upstream may carry.
pub const MAX_PINS: usize = 8;

impl Default for Config {
    /// The built-in default: listen on 127.0.0.1:5353, forward to Quad9 over strict DoT.
    fn default() -> Self {
        let quad9 = |name: &str, ip: &str| Upstream {
            name: name.to_string(),
            url: UpstreamUrl {
                transport: crate::Transport::Tls,
                addr: Some(SocketAddr::new(
                    ip.parse()
                        .unwrap_or(core::net::Ipv4Addr::UNSPECIFIED.into()),
                    853,
                )),
                port: 853,
                auth_name: "dns.quad9.net".to_string(),
                path: String::new(),
            },
            pins: Vec::new(),
            ca_file: None,
            tls_min_version: TlsVersion::V1_3,
            bootstrap: Vec::new(),
            http_get: false,
            sni: true,
            tls_resumption: false,
        };
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            upstreams: vec![
                quad9("quad9", "9.9.9.9"),
                quad9("quad9_2", "149.112.112.112"),
            ],
            log_level: LogLevel::Info,
            ca_file: None,
            query_timeout_ms: 2_500,
            max_inflight: 2_048,
            max_tcp_clients: 64,
            tcp_pipeline: 32,
            tcp_idle_timeout_ms: 10_000,
            upstream_idle_timeout_ms: 20_000,
            upstream_connect_timeout_ms: 5_000,
            upstream_max_connections: 4,
            upstream_pipeline: 100,
            reconnect_backoff_max_ms: 4_000,
            drain_timeout_ms: 3_000,
            user: None,
            upstream_policy: UpstreamPolicy::Failover,
            cache: true,
            cache_entries: 4_096,
            cache_max_kib: 2_048,
            cache_min_ttl: 0,
            cache_max_ttl: 86_400,
            serve_stale: true,
            serve_stale_max_s: 86_400,
            state_file: None,
            allow: DEFAULT_ALLOW
                .split_whitespace()
                .filter_map(|p| parse_prefix(p).ok())
                .collect(),
            local_zones: true,
            local_domain: None,
            local_resolver: None,
            canary_firefox: true,
            canary_icloud: true,
            query_log: 0,
            control_socket: None,
            dns64_prefix: None,
            captive_portal_uri: None,
            v6only_wait: 0,
            captive_plaintext: false,
            captive_plaintext_max_s: 300,
            captive_poll_s: 10,
            client_rate: 300,
            client_burst: 600,
            client_rate_drop: false,
            client_max_inflight: 256,
            client_limit_loopback: false,
            tcp_clients_per_source: 16,
        }
    }
}

fn single<'a>(label: &str, values: &'a [&'a Value], key: &str) -> Result<Option<&'a Value>, Error> {
    match values {
        [] => Ok(None),
        [v] if !v.is_list => Ok(Some(v)),
        [v, ..] => Err(Error::new(v.line, field(label, key), Reason::Duplicate)),
    }
}

fn field(label: &str, key: &str) -> String {
    let mut s = String::with_capacity(label.len() + key.len() + 1);
    s.push_str(label);
    s.push('.');
    s.push_str(key);
    s
}

fn parse_bool(v: &Value, label: &str) -> Result<bool, Error> {
    match v.value.as_str() {
        "1" | "yes" | "on" | "true" | "enabled" => Ok(true),
        "0" | "no" | "off" | "false" | "disabled" => Ok(false),
        _ => Err(Error::new(
            v.line,
            field(label, &v.key),
            Reason::OneOf("0, 1"),
        )),
    }
}

/// Groups a section's values by key, in first-seen order.
fn grouped(section: &Section) -> Vec<(&str, Vec<&Value>)> {
    let mut out: Vec<(&str, Vec<&Value>)> = Vec::new();
    for v in &section.values {
        match out.iter_mut().find(|(k, _)| *k == v.key) {
            Some((_, vs)) => vs.push(v),
            None => out.push((v.key.as_str(), vec![v])),
        }
    }
    out
}

impl Config {
    /// Validates a parsed UCI document. Missing keys take their defaults; a file with no `upstream`
    /// section is an error (there is nothing to forward to), a file with no `listen` keeps the default.
    pub fn from_uci(doc: &Document) -> Result<Self, Error> {
        let mut cfg = Self::default();
        let mut upstreams = Vec::new();
        let mut listen = Vec::new();
        let mut seen_main = false;
        for (idx, section) in doc.sections.iter().enumerate() {
            let label = section.label(idx);
            match section.ty.as_str() {
                "lanveil" => {
                    if seen_main {
                        return Err(Error::new(
                            section.line,
                            label,
                            Reason::Rule("only one 'config lanveil' section is allowed"),
                        ));
                    }
                    seen_main = true;
                    cfg.apply_main(section, &label, &mut listen)?;
                }
                "upstream" => {
                    if let Some(u) = parse_upstream(section, &label, upstreams.len())? {
                        if upstreams.len() >= MAX_UPSTREAMS {
                            return Err(Error::new(
                                section.line,
                                label,
                                Reason::Rule("at most 16 upstreams"),
                            ));
                        }
                        upstreams.push(u);
                    }
                }
                // Settings only the OpenWrt init script reads (dnsmasq wiring, force-DNS, …); it
                // validates them itself.
                INIT_ONLY_SECTION => {}
                _ => return Err(Error::new(section.line, label, Reason::UnknownSection)),
            }
        }
        if !listen.is_empty() {
            cfg.listen = listen;
        }
        if upstreams.is_empty() {
            return Err(Error::new(
                0,
                "upstream",
                Reason::Rule(
                    "no enabled 'config upstream' section: lanveil needs at least one upstream",
                ),
            ));
        }
        cfg.upstreams = upstreams;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates UCI text in one step.
    pub fn from_uci_text(text: &str) -> Result<Self, Error> {
        Self::from_uci(&uci::parse(text)?)
    }

    fn apply_main(
        &mut self,
        section: &Section,
        label: &str,
        listen: &mut Vec<SocketAddr>,
    ) -> Result<(), Error> {
        for (key, values) in grouped(section) {
            if key == "allow" {
                self.allow.clear();
                for v in values {
                    let p = parse_prefix(&v.value)
                        .map_err(|r| Error::new(v.line, field(label, key), r))?;
                    self.allow.push(p);
                }
                continue;
            }
            if key == "listen" {
                for v in values {
                    let sa = SocketAddr::from_str(&v.value)
                        .map_err(|_| Error::new(v.line, field(label, key), Reason::SocketAddr))?;
                    if listen.contains(&sa) {
                        return Err(Error::new(v.line, field(label, key), Reason::Duplicate));
                    }
                    listen.push(sa);
                }
                continue;
            }
            let Some(v) = single(label, &values, key)? else {
                continue;
            };
            let err = |r| Error::new(v.line, field(label, key), r);
            match key {
                "log_level" => self.log_level = v.value.parse().map_err(err)?,
                "ca_file" => self.ca_file = Some(parse_path(&v.value).map_err(err)?),
                "user" => self.user = Some(parse_user(&v.value).map_err(err)?),
                "cache" => self.cache = parse_bool(v, label)?,
                "local_zones" => self.local_zones = parse_bool(v, label)?,
                "canary_firefox" => self.canary_firefox = parse_bool(v, label)?,
                "canary_icloud" => self.canary_icloud = parse_bool(v, label)?,
                "local_domain" => {
                    self.local_domain = Some(crate::parse_auth_name(&v.value).map_err(|_| {
                        err(Reason::Rule(
                            "must be a domain name such as lan or home.example",
                        ))
                    })?)
                }
                "local_resolver" => {
                    self.local_resolver = Some(parse_local_resolver(&v.value).map_err(err)?)
                }
                "serve_stale" => self.serve_stale = parse_bool(v, label)?,
                "state_file" => self.state_file = Some(parse_path(&v.value).map_err(err)?),
                "control_socket" => self.control_socket = Some(parse_path(&v.value).map_err(err)?),
                "client_limit_loopback" => self.client_limit_loopback = parse_bool(v, label)?,
                "client_rate_action" => {
                    self.client_rate_drop = match v.value.as_str() {
                        "refuse" => false,
                        "drop" => true,
                        _ => return Err(err(Reason::OneOf("refuse, drop"))),
                    }
                }
                "dns64_prefix" => {
                    self.dns64_prefix = Some(parse_nat64_prefix(&v.value).map_err(err)?)
                }
                "captive_portal_uri" => {
                    self.captive_portal_uri = Some(parse_captive_uri(&v.value).map_err(err)?)
                }
                "v6only_wait" => self.v6only_wait = parse_v6only_wait(&v.value).map_err(err)?,
                "captive_plaintext" => self.captive_plaintext = parse_bool(v, label)?,
                "upstream_policy" => {
                    self.upstream_policy = match v.value.as_str() {
                        "failover" => UpstreamPolicy::Failover,
                        "round_robin" | "round-robin" => UpstreamPolicy::RoundRobin,
                        "fastest" => UpstreamPolicy::Fastest,
                        _ => return Err(err(Reason::OneOf("failover, round_robin, fastest"))),
                    }
                }
                _ => {
                    let Some(knob) = KNOBS.iter().find(|k| k.key == key) else {
                        return Err(err(Reason::UnknownKey));
                    };
                    let n = parse_u32(&v.value, knob.min, knob.max).map_err(err)?;
                    *(knob.get)(self) = n;
                }
            }
        }
        Ok(())
    }

    /// Cross-field rules; also run after command-line overrides.
    pub fn validate(&self) -> Result<(), Error> {
        if self.listen.is_empty() {
            return Err(Error::new(0, "listen", Reason::Missing));
        }
        if self.listen.len() > MAX_LISTENERS {
            return Err(Error::new(
                0,
                "listen",
                Reason::Rule("at most 16 listen addresses"),
            ));
        }
        if self.upstreams.is_empty() {
            return Err(Error::new(0, "upstream", Reason::Missing));
        }
        if self.upstreams.len() > MAX_UPSTREAMS {
            return Err(Error::new(
                0,
                "upstream",
                Reason::Rule("at most 16 upstreams"),
            ));
        }
        for u in &self.upstreams {
            if u.pins.len() > MAX_PINS {
                return Err(Error::new(
                    0,
                    "pin",
                    Reason::Rule("at most 8 pins per upstream"),
                ));
            }
        }
        for k in KNOBS {
            let mut c = self.clone();
            let n = *(k.get)(&mut c);
            if n < k.min || n > k.max {
                return Err(Error::new(
                    0,
                    k.key,
                    Reason::Range {
                        min: k.min.into(),
                        max: k.max.into(),
                    },
                ));
            }
        }
        if self.v6only_wait != 0 && self.dns64_prefix.is_none() {
            return Err(Error::new(
                0,
                "v6only_wait",
                Reason::Rule(
                    "needs dns64_prefix: RFC 8925 §4 allows IPv6-Only Preferred only where NAT64 exists",
                ),
            ));
        }
        if self.v6only_wait != 0 && self.v6only_wait < lanveil_core::capport::MIN_V6ONLY_WAIT {
            return Err(Error::new(
                0,
                "v6only_wait",
                Reason::Range {
                    min: 300,
                    max: u32::MAX.into(),
                },
            ));
        }
        if let Some(r) = &self.local_resolver {
            check_local_resolver(r).map_err(|e| Error::new(0, "local_resolver", e))?;
            // lanveil itself: every local name would go round in a loop. (A wildcard listener also
            // owns the port on loopback; whether another LAN address is this host is not known here.)
            let own = |l: &SocketAddr| {
                let wildcard = l.ip().is_unspecified() && r.ip().to_canonical().is_loopback();
                l.port() == r.port() && (l.ip() == r.ip() || wildcard)
            };
            if self.listen.iter().any(own) {
                return Err(Error::new(
                    0,
                    "local_resolver",
                    Reason::Rule("is one of lanveil's own listen addresses (a loop)"),
                ));
            }
        }
        if self.upstream_connect_timeout_ms < 100 {
            return Err(Error::new(
                0,
                "upstream_connect_timeout_ms",
                Reason::Range {
                    min: 100,
                    max: 60_000,
                },
            ));
        }
        Ok(())
    }

    /// The compact binary form (postcard in an `LVCF` envelope with a checksum) for images and boards.
    pub fn pack(&self) -> Vec<u8> {
        crate::envelope::seal_value(PACK_MAGIC, PACK_VERSION, self)
    }

    /// Reads a packed configuration back and validates it.
    pub fn unpack(blob: &[u8]) -> Result<Self, Error> {
        let cfg: Self = crate::envelope::open_value(PACK_MAGIC, PACK_VERSION, blob)
            .map_err(|e| Error::new(0, "packed configuration", Reason::Packed(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes the configuration as UCI text that [`Config::from_uci_text`] reads back identically.
    pub fn to_uci(&self) -> String {
        let mut main = Section {
            ty: "lanveil".into(),
            name: Some("main".into()),
            line: 0,
            values: Vec::new(),
        };
        let push = |s: &mut Section, key: &str, value: String, is_list: bool| {
            s.values.push(Value {
                key: key.into(),
                value,
                is_list,
                line: 0,
            });
        };
        for l in &self.listen {
            push(&mut main, "listen", l.to_string(), true);
        }
        push(
            &mut main,
            "log_level",
            self.log_level.as_str().into(),
            false,
        );
        if let Some(ca) = &self.ca_file {
            push(&mut main, "ca_file", ca.clone(), false);
        }
        if let Some(user) = &self.user {
            push(&mut main, "user", user.clone(), false);
        }
        push(
            &mut main,
            "upstream_policy",
            self.upstream_policy.as_str().into(),
            false,
        );
        push(
            &mut main,
            "cache",
            if self.cache { "1" } else { "0" }.into(),
            false,
        );
        push(
            &mut main,
            "serve_stale",
            if self.serve_stale { "1" } else { "0" }.into(),
            false,
        );
        if let Some(f) = &self.state_file {
            push(&mut main, "state_file", f.clone(), false);
        }
        if let Some(f) = &self.control_socket {
            push(&mut main, "control_socket", f.clone(), false);
        }
        push(
            &mut main,
            "client_rate_action",
            if self.client_rate_drop {
                "drop"
            } else {
                "refuse"
            }
            .into(),
            false,
        );
        push(
            &mut main,
            "client_limit_loopback",
            if self.client_limit_loopback { "1" } else { "0" }.into(),
            false,
        );
        if let Some((a, l)) = &self.dns64_prefix {
            push(&mut main, "dns64_prefix", alloc::format!("{a}/{l}"), false);
        }
        if let Some(u) = &self.captive_portal_uri {
            push(&mut main, "captive_portal_uri", u.clone(), false);
        }
        if self.v6only_wait != 0 {
            push(
                &mut main,
                "v6only_wait",
                self.v6only_wait.to_string(),
                false,
            );
        }
        push(
            &mut main,
            "captive_plaintext",
            if self.captive_plaintext { "1" } else { "0" }.into(),
            false,
        );
        for (a, l) in &self.allow {
            push(&mut main, "allow", alloc::format!("{a}/{l}"), true);
        }
        push(
            &mut main,
            "local_zones",
            if self.local_zones { "1" } else { "0" }.into(),
            false,
        );
        if let Some(d) = &self.local_domain {
            push(&mut main, "local_domain", d.clone(), false);
        }
        if let Some(r) = &self.local_resolver {
            push(&mut main, "local_resolver", r.to_string(), false);
        }
        push(
            &mut main,
            "canary_firefox",
            if self.canary_firefox { "1" } else { "0" }.into(),
            false,
        );
        push(
            &mut main,
            "canary_icloud",
            if self.canary_icloud { "1" } else { "0" }.into(),
            false,
        );
        let mut c = self.clone();
        for k in KNOBS {
            let n = *(k.get)(&mut c);
            push(&mut main, k.key, n.to_string(), false);
        }
        let mut doc = Document {
            sections: vec![main],
        };
        for u in &self.upstreams {
            let mut s = Section {
                ty: "upstream".into(),
                name: Some(u.name.clone()),
                line: 0,
                values: Vec::new(),
            };
            push(&mut s, "url", u.url.to_string(), false);
            for p in &u.pins {
                push(&mut s, "pin", p.to_text(), true);
            }
            if let Some(ca) = &u.ca_file {
                push(&mut s, "ca_file", ca.clone(), false);
            }
            if u.tls_min_version == TlsVersion::V1_2 {
                push(&mut s, "tls_min_version", "1.2".into(), false);
            }
            for b in &u.bootstrap {
                push(&mut s, "bootstrap", b.to_string(), true);
            }
            if u.http_get {
                push(&mut s, "http_method", "GET".into(), false);
            }
            if !u.sni {
                push(&mut s, "sni", "0".into(), false);
            }
            if u.tls_resumption {
                push(&mut s, "tls_resumption", "1".into(), false);
            }
            doc.sections.push(s);
        }
        uci::write(&doc)
    }
}

fn parse_u32(s: &str, min: u32, max: u32) -> Result<u32, Reason> {
    let range = Reason::Range {
        min: min.into(),
        max: max.into(),
    };
    let n: u32 = s.parse().map_err(|_| range.clone())?;
    if n < min || n > max {
        return Err(range);
    }
    Ok(n)
}

fn parse_user(s: &str) -> Result<String, Reason> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !s.starts_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(Reason::Rule(
            "must be a user name (letters, digits, '_', '-', '.')",
        ))
    }
}

fn parse_path(s: &str) -> Result<String, Reason> {
    if !s.starts_with('/') {
        return Err(Reason::Rule("must be an absolute path"));
    }
    Ok(s.to_string())
}

fn parse_upstream(section: &Section, label: &str, index: usize) -> Result<Option<Upstream>, Error> {
    let mut url = None;
    let mut pins = Vec::new();
    let mut ca_file = None;
    let mut tls_min_version = TlsVersion::V1_3;
    let mut enabled = true;
    let mut bootstrap = Vec::new();
    let mut http_get = false;
    let mut sni = true;
    let mut tls_resumption = false;
    for (key, values) in grouped(section) {
        if key == "bootstrap" {
            for v in values {
                let ip = IpAddr::from_str(&v.value).map_err(|_| {
                    Error::new(
                        v.line,
                        field(label, key),
                        Reason::Rule("must be an IP address"),
                    )
                })?;
                bootstrap.push(ip);
            }
            continue;
        }
        if key == "pin" {
            for v in values {
                let pin = v
                    .value
                    .parse()
                    .map_err(|r| Error::new(v.line, field(label, key), r))?;
                pins.push(pin);
            }
            if pins.len() > MAX_PINS {
                return Err(Error::new(
                    section.line,
                    field(label, key),
                    Reason::Rule("at most 8 pins per upstream"),
                ));
            }
            continue;
        }
        let Some(v) = single(label, &values, key)? else {
            continue;
        };
        let err = |r| Error::new(v.line, field(label, key), r);
        match key {
            "url" => url = Some(v.value.parse::<UpstreamUrl>().map_err(err)?),
            "ca_file" => ca_file = Some(parse_path(&v.value).map_err(err)?),
            "enabled" => enabled = parse_bool(v, label)?,
            "sni" => sni = parse_bool(v, label)?,
            "tls_resumption" => tls_resumption = parse_bool(v, label)?,
            "http_method" => {
                http_get = match v.value.as_str() {
                    "POST" | "post" => false,
                    "GET" | "get" => true,
                    _ => return Err(err(Reason::OneOf("POST, GET"))),
                }
            }
            "tls_min_version" => {
                tls_min_version = match v.value.as_str() {
                    "1.2" => TlsVersion::V1_2,
                    "1.3" => TlsVersion::V1_3,
                    _ => return Err(err(Reason::OneOf("1.2, 1.3"))),
                }
            }
            _ => return Err(err(Reason::UnknownKey)),
        }
    }
    let Some(url) = url else {
        return Err(Error::new(
            section.line,
            field(label, "url"),
            Reason::Missing,
        ));
    };
    if url.addr.is_none() && bootstrap.is_empty() {
        return Err(Error::new(
            section.line,
            field(label, "bootstrap"),
            Reason::Rule(
                "an https://NAME upstream needs its addresses: list bootstrap 'IP' (never looked up in plaintext)",
            ),
        ));
    }
    if url.addr.is_some() && !bootstrap.is_empty() {
        return Err(Error::new(
            section.line,
            field(label, "bootstrap"),
            Reason::Rule("bootstrap addresses only go with an https://NAME upstream"),
        ));
    }
    if http_get && url.transport != crate::Transport::Https {
        return Err(Error::new(
            section.line,
            field(label, "http_method"),
            Reason::Rule("only for https:// upstreams"),
        ));
    }
    if !enabled {
        return Ok(None);
    }
    let name = match &section.name {
        Some(n) => n.clone(),
        None => {
            let mut s = String::from("upstream");
            s.push_str(&(index + 1).to_string());
            s
        }
    };
    Ok(Some(Upstream {
        name,
        url,
        pins,
        ca_file,
        tls_min_version,
        bootstrap,
        http_get,
        sni,
        tls_resumption,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
config lanveil 'main'
\tlist listen '127.0.0.1:53'
\tlist listen '[::1]:53'
\toption query_timeout_ms '1500'
\toption log_level 'debug'
\toption user 'lanveil'
\tlist allow '192.168.1.0/24'
\tlist allow '2001:db8:1::/48'
\toption local_domain 'home.example'
\toption local_resolver '[fe80::53%2]:5353'
\toption canary_icloud '0'
\toption dns64_prefix '64:ff9b::/96'
\toption captive_portal_uri 'https://portal.home.example/api'
\toption v6only_wait '1800'

config upstream 'quad9'
\toption url 'tls://9.9.9.9:853#dns.quad9.net'
\tlist pin 'sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='

config upstream
\toption url 'tls://149.112.112.112#dns.quad9.net'
\toption tls_min_version '1.2'

config upstream 'off'
\toption url 'tls://1.1.1.1#one.one.one.one'
\toption enabled '0'

config upstream 'doh'
\toption url 'https://dns.example/dns-query'
\tlist bootstrap '192.0.2.1'
\tlist bootstrap '2001:db8::1'
\toption http_method 'GET'

config openwrt 'openwrt'
\toption dnsmasq '1'
\toption force_dns '1'
";

    #[test]
    fn parse_good_file() {
        let c = Config::from_uci_text(GOOD).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.query_timeout_ms, 1500);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.upstreams.len(), 3);
        assert_eq!(
            c.upstreams[2].addrs(),
            [
                "192.0.2.1:443".parse().unwrap(),
                "[2001:db8::1]:443".parse().unwrap()
            ]
        );
        assert!(c.upstreams[2].http_get);
        assert_eq!(c.upstreams[0].name, "quad9");
        assert_eq!(c.upstreams[0].pins.len(), 1);
        assert_eq!(c.upstreams[1].name, "upstream2");
        assert_eq!(c.upstreams[1].tls_min_version, TlsVersion::V1_2);
        assert_eq!(c.max_inflight, Config::default().max_inflight);
        assert_eq!(c.user.as_deref(), Some("lanveil"));
        assert_eq!(
            c.allow,
            [
                ("192.168.1.0".parse().unwrap(), 24),
                ("2001:db8:1::".parse().unwrap(), 48)
            ]
        );
        assert_eq!(c.local_domain.as_deref(), Some("home.example"));
        assert_eq!(c.local_resolver, Some("[fe80::53%2]:5353".parse().unwrap()));
        assert_eq!(Config::default().local_resolver, None);
        assert_eq!(c.dns64_prefix, Some(("64:ff9b::".parse().unwrap(), 96)));
        assert!(parse_nat64_prefix("2001:db8::/80").is_err());
        assert!(parse_nat64_prefix("192.0.2.0/24").is_err());
        assert!(parse_nat64_prefix("2001:db8:0:0:ff00::/64").is_err());
        assert!(!c.canary_icloud && c.canary_firefox && c.local_zones);
        assert!(Config::default().allow.len() == 9);
        assert_eq!(
            c.captive_portal_uri.as_deref(),
            Some("https://portal.home.example/api")
        );
        assert_eq!(c.v6only_wait, 1800);
        assert!(!c.captive_plaintext && c.captive_plaintext_max_s == 300);
        assert_eq!(Config::from_uci_text(&c.to_uci()).unwrap(), c);
    }

    #[test]
    fn captive_portal_and_v6only_rules() {
        let with = |extra: &str| {
            Config::from_uci_text(&alloc::format!(
                "config lanveil 'main'\n\tlist listen '127.0.0.1:53'\n{extra}\nconfig upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\n"
            ))
        };
        for bad in [
            "http://portal.example/api",
            "https://",
            "https://user@portal.example/",
            "https://portal.example/a b",
            "ftp://portal.example",
        ] {
            let e = with(&alloc::format!("\toption captive_portal_uri '{bad}'\n")).unwrap_err();
            assert_eq!(
                (e.key.as_str(), e.line),
                ("lanveil[main].captive_portal_uri", 3),
                "{bad}"
            );
        }
        let long = alloc::format!("https://p.example/{}", "a".repeat(240));
        assert!(with(&alloc::format!("\toption captive_portal_uri '{long}'\n")).is_err());
        assert!(
            with("\toption captive_portal_uri 'urn:ietf:params:capport:unrestricted'\n").is_ok()
        );
        // RFC 8925 §4: option 108 only where NAT64 exists.
        let e = with("\toption v6only_wait '1800'\n").unwrap_err();
        assert_eq!(e.key, "v6only_wait");
        assert!(e.to_string().contains("dns64_prefix"), "{e}");
        let e =
            with("\toption dns64_prefix '64:ff9b::/96'\n\toption v6only_wait '299'\n").unwrap_err();
        assert!(e.to_string().contains("300"), "{e}");
        let c = with("\toption dns64_prefix '64:ff9b::/96'\n\toption v6only_wait '300'\n").unwrap();
        assert_eq!(c.v6only_wait, 300);
        assert_eq!(with("\toption v6only_wait '0'\n").unwrap().v6only_wait, 0);
        let e = with("\toption captive_plaintext_max_s '10'\n").unwrap_err();
        assert!(e.key.ends_with("captive_plaintext_max_s"), "{e}");
    }

    #[test]
    fn local_resolver_is_on_the_lan_only() {
        let with = |listen: &str, value: &str| {
            Config::from_uci_text(&alloc::format!(
                "config lanveil 'main'\n\tlist listen '{listen}'\n\toption local_resolver '{value}'\n\nconfig upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\n"
            ))
        };
        for (good, want) in [
            ("192.168.1.1", "192.168.1.1:53"),
            ("10.0.0.53:5353", "10.0.0.53:5353"),
            ("172.31.255.1", "172.31.255.1:53"),
            ("169.254.0.53", "169.254.0.53:53"),
            ("127.0.0.53", "127.0.0.53:53"),
            ("127.0.0.1:5300", "127.0.0.1:5300"),
            ("::1", "[::1]:53"),
            ("[fd00::53]:53", "[fd00::53]:53"),
            ("[fe80::1%3]:53", "[fe80::1%3]:53"),
            ("::ffff:192.168.1.1", "[::ffff:192.168.1.1]:53"),
        ] {
            let c = with("127.0.0.1:53", good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(c.local_resolver, Some(want.parse().unwrap()), "{good}");
            assert_eq!(Config::from_uci_text(&c.to_uci()).unwrap(), c, "{good}");
            assert_eq!(Config::unpack(&c.pack()).unwrap(), c, "{good}");
        }
        for bad in [
            "9.9.9.9",
            "8.8.8.8:53",
            "1.1.1.1:853",
            "100.64.0.1",
            "192.0.2.1",
            "[2001:db8::1]:53",
            "2606:4700:4700::1111",
            "::ffff:9.9.9.9",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.251",
            "255.255.255.255",
            "192.168.1.1:0",
            "router.lan",
            "192.168.1.1:dns",
            "",
        ] {
            let e = with("127.0.0.1:53", bad).unwrap_err();
            assert_eq!(
                (e.line, e.key.as_str()),
                (3, "lanveil[main].local_resolver"),
                "{bad}"
            );
            assert!(matches!(e.reason, Reason::Rule(_)), "{bad}: {e}");
        }
        let e = with("127.0.0.1:53", "9.9.9.9").unwrap_err();
        assert!(e.to_string().contains("leak"), "{e}");
        // lanveil's own listener would be a loop.
        for (listen, resolver) in [
            ("127.0.0.1:53", "127.0.0.1"),
            ("0.0.0.0:53", "127.0.0.53:53"),
            ("[::]:5353", "[::1]:5353"),
            ("192.168.1.1:53", "192.168.1.1"),
        ] {
            let e = with(listen, resolver).unwrap_err();
            assert_eq!(e.key, "local_resolver", "{listen} {resolver}");
            assert!(e.to_string().contains("loop"), "{e}");
        }
        assert!(with("0.0.0.0:53", "192.168.1.2").is_ok());
        assert!(with("127.0.0.1:5453", "127.0.0.1:53").is_ok());
        // Packed configurations are checked too.
        let mut c = with("127.0.0.1:53", "192.168.1.1").unwrap();
        c.local_resolver = Some("9.9.9.9:53".parse().unwrap());
        let e = Config::unpack(&c.pack()).unwrap_err();
        assert_eq!(e.key, "local_resolver");
        // A schema-2 blob (no local_resolver) is refused, not read shifted.
        let body = postcard::to_allocvec(&Config::default()).unwrap();
        assert_eq!(body.last(), Some(&0), "None, the last field");
        let v2 = crate::envelope::seal(PACK_MAGIC, 2, &body[..body.len() - 1]);
        let e = Config::unpack(&v2).unwrap_err();
        assert!(matches!(e.reason, Reason::Packed(_)), "{e}");
    }

    #[test]
    fn pack_unpack_round_trips_and_rejects_damage() {
        // Fuzzer find: IPv6 scope IDs were lost in the packed form.
        let scoped = Config::from_uci_text(
            "config lanveil 'main'\n\tlist listen '[fe80::1%2]:53'\n\nconfig upstream 'u'\n\toption url 'tls://[fe80::9%3]:853#x.example'\n",
        )
        .unwrap();
        assert_eq!(Config::unpack(&scoped.pack()).unwrap(), scoped);
        let c = Config::from_uci_text(GOOD).unwrap();
        let blob = c.pack();
        assert_eq!(&blob[..6], b"LVCF\x03\x00");
        assert_eq!(Config::unpack(&blob).unwrap(), c);
        let mut bad = blob.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert!(matches!(
            Config::unpack(&bad).unwrap_err().reason,
            Reason::Packed(crate::envelope::EnvelopeError::BadChecksum)
        ));
        let mut future = blob.clone();
        future[4] = 4;
        let e = Config::unpack(&future).unwrap_err();
        assert_eq!(
            e.reason,
            Reason::Packed(crate::envelope::EnvelopeError::FutureVersion(4))
        );
        assert_eq!(
            alloc::format!("{e}"),
            "packed configuration: schema version 4 is newer than this lanveil"
        );
        // A blob that decodes but breaks a rule is rejected by validation.
        let mut invalid = c.clone();
        invalid.query_timeout_ms = 5;
        assert!(matches!(
            Config::unpack(&invalid.pack()).unwrap_err().reason,
            Reason::Range { .. }
        ));
    }

    #[test]
    fn to_uci_round_trips() {
        let c = Config::from_uci_text(GOOD).unwrap();
        let again = Config::from_uci_text(&c.to_uci()).unwrap();
        assert_eq!(c, again);
        let d = Config::default();
        assert_eq!(Config::from_uci_text(&d.to_uci()).unwrap(), d);
    }

    fn err_of(text: &str) -> Error {
        Config::from_uci_text(text).unwrap_err()
    }

    #[test]
    fn bad_files_name_line_key_reason() {
        let up = "config upstream 'u'\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n";
        let e = err_of(&alloc::format!(
            "config lanveil\n\toption query_timeout_ms 'soon'\n{up}"
        ));
        assert_eq!(
            (e.line, e.key.as_str()),
            (2, "lanveil[#1].query_timeout_ms")
        );
        assert_eq!(
            e.reason,
            Reason::Range {
                min: 100,
                max: 30_000
            }
        );
        let e = err_of(&alloc::format!(
            "config lanveil 'main'\n\toption max_inflight '1'\n{up}"
        ));
        assert_eq!(e.key, "lanveil[main].max_inflight");
        let e = err_of(&alloc::format!(
            "config lanveil 'main'\n\toption bogus '1'\n{up}"
        ));
        assert_eq!((e.line, e.reason), (2, Reason::UnknownKey));
        let e = err_of(&alloc::format!(
            "config lanveil 'main'\n\tlist listen 'localhost:53'\n{up}"
        ));
        assert_eq!(e.reason, Reason::SocketAddr);
        let e = err_of("config upstream 'u'\n\toption url 'ftp://x'\n");
        assert_eq!(e.key, "upstream[u].url");
        assert!(matches!(e.reason, Reason::Url(_)));
        let e =
            err_of("config upstream 'u'\n\toption url 'tls://9.9.9.9#x'\n\tlist pin 'sha256/zz'\n");
        assert_eq!((e.line, e.key.as_str()), (3, "upstream[u].pin"));
        let e = err_of(
            "config upstream 'u'\n\toption url 'tls://9.9.9.9#x'\n\toption url 'tls://9.9.9.9#y'\n",
        );
        assert_eq!(e.reason, Reason::Duplicate);
        let e = err_of("config upstream 'u'\n\toption ca_file '/x'\n");
        assert_eq!(
            (e.key.as_str(), e.reason),
            ("upstream[u].url", Reason::Missing)
        );
        let e = err_of("config lanveil 'main'\n");
        assert_eq!(e.key, "upstream");
        let e = err_of("config upstream 'd'\n\toption url 'https://dns.example/q'\n");
        assert_eq!(e.key, "upstream[d].bootstrap");
        let e = err_of(
            "config upstream 'd'\n\toption url 'tls://1.1.1.1#x.y'\n\tlist bootstrap '1.1.1.1'\n",
        );
        assert_eq!(e.key, "upstream[d].bootstrap");
        let e = err_of(&alloc::format!(
            "config lanveil 'main'\n\toption upstream_policy 'random'\n{up}"
        ));
        assert_eq!(e.reason, Reason::OneOf("failover, round_robin, fastest"));
        let e = err_of(&alloc::format!("config frob 'x'\n{up}"));
        assert_eq!(e.reason, Reason::UnknownSection);
        let e = err_of(&alloc::format!(
            "config lanveil 'main'\n\tlog_level debug\n{up}"
        ));
        assert!(matches!(e.reason, Reason::Syntax(_)));
        assert_eq!(
            alloc::format!("{}", e.display_with_file("/etc/config/lanveil")),
            "/etc/config/lanveil:2: syntax error: expected 'config', 'option', 'list' or 'package'"
        );
    }
}
