//! The validated configuration model: grouped settings holding the core's own validated types. Every key
//! of the file is described once, in [`crate::keys`]: parsing, writing, defaults and the reference.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;
use core::time::Duration;

use lanveil_core::cache::CacheConfig;
use lanveil_core::engine::{ClientLimits, EngineConfig, RateAction, SelectPolicy};
use lanveil_core::nat64::{Nat64Error, Nat64Prefix};
use lanveil_core::policy::{PolicyConfig, Prefix};

use crate::error::{Error, Reason};
use crate::field::{Words, words};
use crate::keys::{self, Key};
use crate::uci::{self, Document, Section, Value};
use crate::upstream::{SpkiPin, UpstreamUrl};

/// Log verbosity. Query names never appear at `Info` or above.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// State changes (default).
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

/// The words of `log_level` (and `--log-level`).
pub(crate) const LOG_LEVELS: &Words<LogLevel> = words!(LogLevel:
    "error" => LogLevel::Error,
    "warn" | "warning" => LogLevel::Warn,
    "info" => LogLevel::Info,
    "debug" => LogLevel::Debug,
    "trace" => LogLevel::Trace,
);

impl FromStr for LogLevel {
    type Err = Reason;
    fn from_str(s: &str) -> Result<Self, Reason> {
        LOG_LEVELS.parse(s)
    }
}

impl LogLevel {
    /// The word used in config files.
    pub fn as_str(self) -> &'static str {
        LOG_LEVELS.word(self)
    }
}

/// Lowest TLS version lanveil accepts from an upstream.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum TlsVersion {
    /// TLS 1.2 (only when the owner asks for it).
    V1_2,
    /// TLS 1.3 (default).
    #[default]
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

/// The LAN listeners (`listen`, `max_tcp_clients`, `tcp_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listen {
    /// Addresses to listen on (UDP and TCP each).
    #[serde(with = "crate::scoped::vec")]
    pub addrs: Vec<SocketAddr>,
    /// Most LAN TCP clients at once.
    pub max_tcp_clients: u32,
    /// Most pipelined queries outstanding per LAN TCP client.
    pub tcp_pipeline: u32,
    /// Idle time after which a LAN TCP client is disconnected (ms).
    pub tcp_idle_timeout_ms: u32,
    /// LAN TCP connections per client source address.
    pub tcp_clients_per_source: u32,
}

/// The upstreams and how they are used (`upstream` sections, `upstream_*`, `ca_file`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upstreams {
    /// The upstreams, in failover order.
    pub servers: Vec<Upstream>,
    /// How a query's upstream is chosen.
    #[serde(with = "crate::serde_core::SelectPolicyDef")]
    pub policy: SelectPolicy,
    /// Default CA bundle for upstreams without their own; `None` = the system bundle.
    pub ca_file: Option<String>,
    /// Idle time after which an upstream connection is closed (ms).
    pub idle_timeout_ms: u32,
    /// After a query, keep the upstream warm this long: a connection that ends cleanly is dialled
    /// again in the background (s; 0 = off).
    pub standby_s: u32,
    /// Lowest TCP retransmission timeout of upstream connections (ms; 0 = the kernel's).
    pub tcp_rto_min_ms: u32,
    /// Send a query unanswered for about 1.33 round trips once more on its DoT or DoH (HTTP/2) connection.
    pub loss_probe: bool,
    /// Time allowed for TCP connect + TLS handshake (ms).
    pub connect_timeout_ms: u32,
    /// Most connections per upstream.
    pub max_connections: u32,
    /// In-flight queries per upstream connection before another connection is opened.
    pub pipeline: u32,
    /// Upper bound of the reconnect backoff (ms).
    pub reconnect_backoff_max_ms: u32,
}

/// The answer cache (`cache*`, `serve_stale*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cache {
    /// Cache answers (turn off when dnsmasq caches in front).
    pub enabled: bool,
    /// Most cached answers.
    pub entries: u32,
    /// Most bytes of cached answers, in KiB.
    pub max_kib: u32,
    /// Lowest TTL a cached answer keeps (s).
    pub min_ttl: u32,
    /// Highest TTL a cached answer keeps (s).
    pub max_ttl: u32,
    /// Answer from expired cache entries when no upstream answers (RFC 8767).
    pub serve_stale: bool,
    /// How long after expiry an entry may still be served stale (s).
    pub serve_stale_max_s: u32,
}

/// Time and admission limits (`query_timeout_ms`, `max_inflight`, `client_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Time a client query may take before it is answered SERVFAIL (ms).
    pub query_timeout_ms: u32,
    /// Most client queries in flight at once.
    pub max_inflight: u32,
    /// Sustained queries per second per client source address (0 = no rate limit).
    pub client_rate: u32,
    /// Burst allowance per client above the rate.
    pub client_burst: u32,
    /// What happens to a query over the rate (`client_rate_action`).
    #[serde(with = "crate::serde_core::RateActionDef")]
    pub client_rate_action: RateAction,
    /// Queries in flight per client source address.
    pub client_max_inflight: u32,
    /// Apply the per-client limits to loopback sources too (off: dnsmasq in front carries everyone).
    pub client_limit_loopback: bool,
}

/// The process itself (`log_level`, `user`, files, `drain_timeout_ms`, `query_log`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Daemon {
    /// Log verbosity.
    pub log_level: LogLevel,
    /// When started as root: the user to switch to once the listeners are bound.
    pub user: Option<String>,
    /// Where the clock floor and learned state are kept across restarts (postcard), if anywhere.
    pub state_file: Option<String>,
    /// The local control socket (status, query log, reload) for `lanveil-ctl`, if any.
    pub control_socket: Option<String>,
    /// Time SIGTERM waits for in-flight queries (ms).
    pub drain_timeout_ms: u32,
    /// Entries of the opt-in in-memory query log (0 = off, the default).
    pub query_log: u32,
}

/// What the OpenWrt init script announces to LAN clients (`captive_portal_uri`, `v6only_wait`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signals {
    /// Captive-portal API URI announced to LAN clients (RFC 8910: DHCPv4 114, DHCPv6 103, RA 37);
    /// `https://…` or `urn:ietf:params:capport:unrestricted`.
    pub captive_portal_uri: Option<String>,
    /// DHCPv4 option 108 IPv6-Only Preferred V6ONLY_WAIT in seconds (0 = off; RFC 8925, needs
    /// `dns64_prefix`: NAT64 must exist before IPv4 is taken away from clients).
    pub v6only_wait: u32,
}

/// Behind someone else's captive portal (`captive_plaintext*`, `captive_poll_s`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Captive {
    /// Resolve just the portal's host names in plaintext through the WAN's DNS, for a bounded time.
    pub plaintext: bool,
    /// Longest the plaintext exception stays open after a portal is signalled (s).
    pub plaintext_max_s: u32,
    /// How often the captive-portal API (RFC 8908) is polled while the WAN is captive (s).
    pub poll_s: u32,
}

/// What is answered locally, and for whom (`allow`, `local_*`, `canary_*`, `dns64_prefix`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Client source prefixes allowed to query; others get REFUSED.
    #[serde(with = "crate::serde_core::prefixes")]
    pub allow: Vec<Prefix>,
    /// Answer RFC 6303 zones, home.arpa, local, lan, single-label names locally.
    pub local_zones: bool,
    /// The LAN's own domain, also answered locally.
    pub local_domain: Option<String>,
    /// `use-application-dns.net` → NXDOMAIN.
    pub canary_firefox: bool,
    /// `mask.icloud.com`, `mask-h2.icloud.com` → NXDOMAIN.
    pub canary_icloud: bool,
    /// DNS64 (RFC 6147) with this NAT64 prefix, or off.
    #[serde(with = "crate::serde_core::nat64")]
    pub dns64_prefix: Option<Nat64Prefix>,
    /// A resolver on the LAN (loopback, RFC 1918, link-local or ULA address; see
    /// [`parse_local_resolver`]) that gets the local names (`local_domain`, home.arpa, the RFC 6303
    /// zones, single labels) in plaintext instead of lanveil answering them NXDOMAIN; for installs
    /// without dnsmasq in front. Off by default; never an upstream.
    #[serde(with = "crate::scoped::option")]
    pub local_resolver: Option<SocketAddr>,
}

/// The whole, validated configuration. [`Config::default`] is the built-in one: every key at its
/// default (from [`keys::MAIN`]), listening on 127.0.0.1:5353 and forwarding to Quad9 over strict DoT.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// The LAN listeners.
    pub listen: Listen,
    /// The upstreams.
    pub upstreams: Upstreams,
    /// The answer cache.
    pub cache: Cache,
    /// Time and admission limits.
    pub limits: Limits,
    /// The process.
    pub daemon: Daemon,
    /// LAN signals (applied by the OpenWrt init script).
    pub signals: Signals,
    /// WAN captive portals.
    pub captive: Captive,
    /// Local answers and client access. (Last, ending in `local_resolver`: a packed configuration of
    /// an older schema is refused by its version, and would not decode anyway.)
    pub policy: Policy,
}

/// Parses a NAT64 prefix by the one rule of [`Nat64Prefix::new`] (RFC 6052 §2.2): IPv6 `ADDR/LEN`, LEN
/// one of 32, 40, 48, 56, 64, 96, bits 64–71 zero, no bits set past LEN.
pub fn parse_nat64_prefix(s: &str) -> Result<Nat64Prefix, Reason> {
    Nat64Prefix::parse(s).map_err(|e| match e {
        Nat64Error::HostBits => {
            Reason::Rule("must have no bits set past its length (e.g. 64:ff9b::/96)")
        }
        Nat64Error::Syntax | Nat64Error::Length | Nat64Error::UOctet => Reason::Rule(
            "must be an IPv6 prefix of length 32, 40, 48, 56, 64 or 96 (e.g. 64:ff9b::/96)",
        ),
    })
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

/// Parses `ADDR/LEN` (the length is required and must fit the address).
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

/// Parses an `allow` entry: [`parse_prefix`], as the policy's [`Prefix`] (host bits cleared).
pub fn parse_allow(s: &str) -> Result<Prefix, Reason> {
    let (addr, len) = parse_prefix(s)?;
    Prefix::new(addr, len).ok_or(Reason::Rule(
        "must be ADDRESS/LENGTH, e.g. 192.168.1.0/24 or 2001:db8:1::/48",
    ))
}

/// Magic of a packed configuration.
pub const PACK_MAGIC: &[u8; 4] = b"LVCF";
/// Schema version of packed configurations written by this build (bump on any model change); the only
/// one it reads: an older layout is refused, never read shifted.
pub const PACK_VERSION: u16 = 4;

/// Section type holding settings for the OpenWrt init script only; the daemon does not use them.
pub const INIT_ONLY_SECTION: &str = "openwrt";

/// The keys of [`INIT_ONLY_SECTION`] the init script reads (`lanveil_opt`/`lanveil_bool` in
/// `openwrt/lanveil/files/lanveil.sh`), and whether each may be a `list`. Any other key is refused
/// like an unknown key elsewhere: the script would silently ignore a misspelt one.
pub const INIT_ONLY_KEYS: &[(&str, bool)] = &[
    ("dnsmasq", false),
    ("start_timeout", false),
    ("force_dns", false),
    ("force_dns_zone", true),
    ("block_dot", false),
    ("canary_domains", false),
    ("relay_wan_portal", false),
    ("leak_guard", false),
    ("leak_guard_zone", true),
];

/// Checks the keys of an [`INIT_ONLY_SECTION`] (their values are the init script's to check): each is
/// known, and a non-list key is an `option`.
fn check_init_only_section(section: &Section, label: &str) -> Result<(), Error> {
    for (key, values) in grouped(section) {
        let Some(&(_, list)) = INIT_ONLY_KEYS.iter().find(|(k, _)| *k == key) else {
            let line = values.first().map_or(section.line, |v| v.line);
            return Err(Error::new(line, field(label, key), Reason::UnknownKey));
        };
        if !list {
            one_value(&values, label, key)?;
        }
    }
    Ok(())
}

/// What libuci makes of a key's values in document order: an `option` replaces everything before
/// it, a `list` value is appended. (The parser's documents already are that; one made by hand
/// means what its text would.)
fn libuci_values<'a, 'v>(values: &'a [&'v Value]) -> &'a [&'v Value] {
    let start = values.iter().rposition(|v| !v.is_list).unwrap_or(0);
    values.get(start..).unwrap_or_default()
}

/// The one value of a key that is not a list: an `option`, never a `list` ([`Reason::NotAList`]:
/// libuci would hand the list's values out joined by spaces). `None`: the key is not there.
fn one_value<'v>(values: &[&'v Value], label: &str, key: &str) -> Result<Option<&'v Value>, Error> {
    match libuci_values(values) {
        [] => Ok(None),
        [v] if !v.is_list => Ok(Some(v)),
        more => {
            let line = more.iter().find(|v| v.is_list).map_or(0, |v| v.line);
            Err(Error::new(line, field(label, key), Reason::NotAList))
        }
    }
}

/// The most upstreams a configuration may name.
pub const MAX_UPSTREAMS: usize = 16;
/// The most listeners a configuration may name.
pub const MAX_LISTENERS: usize = 16;
/// The most pins one upstream may carry.
pub const MAX_PINS: usize = 8;
/// Most `allow` prefixes: every query's source is checked against the list in order.
pub const MAX_ALLOW: usize = 256;
/// Most `bootstrap` addresses per upstream.
pub const MAX_BOOTSTRAP: usize = 8;

/// Source addresses the per-client limits track at once.
const CLIENT_TABLE_SIZE: usize = 4_096;

impl Upstream {
    /// An upstream with every key at its default (from [`keys::UPSTREAM`]) and the given name and
    /// URL.
    pub fn with_url(name: &str, url: UpstreamUrl) -> Self {
        let mut d = keys::UpstreamDraft::new();
        d.up.name = name.to_string();
        d.up.url = url;
        d.up
    }
}

impl Config {
    /// Every group empty or zero: not a valid configuration, the base the key defaults apply to.
    fn zero() -> Self {
        Self {
            listen: Listen::default(),
            upstreams: Upstreams::default(),
            cache: Cache::default(),
            limits: Limits::default(),
            daemon: Daemon::default(),
            signals: Signals::default(),
            captive: Captive::default(),
            policy: Policy::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut c = Self::zero();
        for k in keys::MAIN {
            k.apply_default(&mut c);
        }
        let quad9 = |name: &str, ip: [u8; 4]| {
            Upstream::with_url(
                name,
                UpstreamUrl {
                    transport: crate::Transport::Tls,
                    addr: Some(SocketAddr::from((ip, 853))),
                    port: 853,
                    auth_name: "dns.quad9.net".to_string(),
                    path: String::new(),
                },
            )
        };
        c.upstreams.servers = vec![
            quad9("quad9", [9, 9, 9, 9]),
            quad9("quad9_2", [149, 112, 112, 112]),
        ];
        c
    }
}

pub(crate) fn field(label: &str, key: &str) -> String {
    let mut s = String::with_capacity(label.len() + key.len() + 1);
    s.push_str(label);
    s.push('.');
    s.push_str(key);
    s
}

/// Groups a section's values by key, in first-seen order.
fn grouped(section: &Section) -> Vec<(&str, Vec<&Value>)> {
    let mut out: Vec<(&str, Vec<&Value>)> = Vec::new();
    // Keyed by `String` as the parser's indexes are: one map type in the (small-flash) binary.
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for v in &section.values {
        match index.get(v.key.as_str()).and_then(|&i| out.get_mut(i)) {
            Some((_, vs)) => vs.push(v),
            None => {
                index.insert(v.key.clone(), out.len());
                out.push((v.key.as_str(), vec![v]));
            }
        }
    }
    out
}

/// Applies a section's values to `target` through `table`: a list key replaces its default with the
/// values given (one `option` is a list of one, as in libuci); any other key takes one `option` (a
/// `list` is [`Reason::NotAList`]).
/// `after` runs after each key (for rules that need the whole key, such as the pin count).
fn apply_section<T>(
    target: &mut T,
    table: &[Key<T>],
    section: &Section,
    label: &str,
    mut after: impl FnMut(&T, &str) -> Result<(), Error>,
) -> Result<(), Error> {
    for (key, values) in grouped(section) {
        let known = table.iter().find(|k| k.name == key);
        if let Some(k) = known.filter(|k| k.list) {
            k.clear(target);
            for v in libuci_values(&values) {
                k.set(target, &v.value)
                    .map_err(|r| Error::new(v.line, field(label, key), r))?;
            }
        } else {
            let Some(k) = known else {
                let line = values.first().map_or(section.line, |v| v.line);
                return Err(Error::new(line, field(label, key), Reason::UnknownKey));
            };
            let Some(v) = one_value(&values, label, key)? else {
                continue;
            };
            k.set(target, &v.value)
                .map_err(|r| Error::new(v.line, field(label, key), r))?;
        }
        after(target, key)?;
    }
    Ok(())
}

impl Config {
    /// Validates a parsed UCI document. Missing keys take their defaults; a file with no `upstream`
    /// section is an error (there is nothing to forward to), a file with no `listen` keeps the default.
    pub fn from_uci(doc: &Document) -> Result<Self, Error> {
        let mut cfg = Self::default();
        let mut upstreams: Vec<Upstream> = Vec::new();
        let mut seen_main = false;
        let mut seen_init_only = false;
        // Every section name of the file and every name generated so far: an anonymous upstream's
        // generated name is none of them.
        // Inserted one by one: `collect` into a map sorts first, a sort instantiation of its own
        // (7 KB of the mipsel binary).
        let mut taken: BTreeMap<String, usize> = BTreeMap::new();
        for name in doc.sections.iter().filter_map(|s| s.name.clone()) {
            taken.insert(name, 0);
        }
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
                    apply_section(&mut cfg, keys::MAIN, section, &label, |_, _| Ok(()))?;
                }
                "upstream" => {
                    if let Some(mut u) = parse_upstream(section, &label)? {
                        if upstreams.len() >= MAX_UPSTREAMS {
                            return Err(Error::new(
                                section.line,
                                label,
                                Reason::Rule("at most 16 upstreams"),
                            ));
                        }
                        if section.name.is_none() {
                            u.name = anonymous_name(upstreams.len() + 1, &taken);
                            taken.insert(u.name.clone(), 0);
                        }
                        upstreams.push(u);
                    }
                }
                // Settings only the OpenWrt init script reads (dnsmasq wiring, force-DNS, …); it
                // validates their values itself, the keys are checked here.
                INIT_ONLY_SECTION => {
                    // The init script reads the first one only (`@openwrt[0]`): a second would be
                    // shown by `uci` and LuCI but never applied (force-DNS silently off).
                    if seen_init_only {
                        return Err(Error::new(
                            section.line,
                            label,
                            Reason::Rule("only one 'config openwrt' section is allowed"),
                        ));
                    }
                    seen_init_only = true;
                    check_init_only_section(section, &label)?
                }
                _ => return Err(Error::new(section.line, label, Reason::UnknownSection)),
            }
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
        cfg.upstreams.servers = upstreams;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates UCI text in one step.
    pub fn from_uci_text(text: &str) -> Result<Self, Error> {
        Self::from_uci(&uci::parse(text)?)
    }

    /// Parses and validates a file's bytes in one step ([`uci::parse_bytes`]: comments may hold any
    /// bytes, the rest must be UTF-8; at most [`uci::MAX_FILE_BYTES`]).
    pub fn from_uci_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::from_uci(&uci::parse_bytes(bytes)?)
    }

    /// Cross-field rules and ranges, for configurations that did not come from a file too (packed
    /// ones, command-line overrides). Values of the core's types (prefixes, policies) are valid by
    /// construction; numbers are checked against their key's range in [`keys::MAIN`].
    pub fn validate(&self) -> Result<(), Error> {
        if self.listen.addrs.is_empty() {
            return Err(Error::new(0, "listen", Reason::Missing));
        }
        if self.listen.addrs.len() > MAX_LISTENERS {
            return Err(Error::new(
                0,
                "listen",
                Reason::Rule("at most 16 listen addresses"),
            ));
        }
        let servers = &self.upstreams.servers;
        if servers.is_empty() {
            return Err(Error::new(0, "upstream", Reason::Missing));
        }
        if servers.len() > MAX_UPSTREAMS {
            return Err(Error::new(
                0,
                "upstream",
                Reason::Rule("at most 16 upstreams"),
            ));
        }
        for (i, u) in servers.iter().enumerate() {
            if servers[..i].iter().any(|o| o.name == u.name) {
                // A UCI file cannot hold two sections of one name: `to_uci` would not read back.
                return Err(Error::new(
                    0,
                    "upstream",
                    Reason::Rule("two upstreams have the same name"),
                ));
            }
            if !uci::is_valid_name(&u.name) {
                return Err(Error::new(
                    0,
                    "upstream",
                    Reason::Rule(
                        "an upstream's name must be letters, digits and '_' only (a UCI section name)",
                    ),
                ));
            }
            if u.pins.len() > MAX_PINS {
                return Err(Error::new(
                    0,
                    "pin",
                    Reason::Rule("at most 8 pins per upstream"),
                ));
            }
            if u.bootstrap.len() > MAX_BOOTSTRAP {
                return Err(Error::new(
                    0,
                    "bootstrap",
                    Reason::Rule("at most 8 bootstrap addresses per upstream"),
                ));
            }
        }
        if self.policy.allow.len() > MAX_ALLOW {
            return Err(Error::new(
                0,
                "allow",
                Reason::Rule("at most 256 allow prefixes"),
            ));
        }
        for k in keys::MAIN {
            if let Some((n, min, max)) = k.number(self)
                && !(min..=max).contains(&n)
            {
                return Err(Error::new(
                    0,
                    k.name,
                    Reason::Range {
                        min: min.into(),
                        max: max.into(),
                    },
                ));
            }
        }
        if self.signals.v6only_wait != 0 && self.policy.dns64_prefix.is_none() {
            return Err(Error::new(
                0,
                "v6only_wait",
                Reason::Rule(
                    "needs dns64_prefix: RFC 8925 §4 allows IPv6-Only Preferred only where NAT64 exists",
                ),
            ));
        }
        let wait = self.signals.v6only_wait;
        if wait != 0 && wait < lanveil_core::capport::MIN_V6ONLY_WAIT {
            return Err(Error::new(
                0,
                "v6only_wait",
                Reason::Range {
                    min: lanveil_core::capport::MIN_V6ONLY_WAIT.into(),
                    max: u32::MAX.into(),
                },
            ));
        }
        if let Some(r) = &self.policy.local_resolver {
            check_local_resolver(r).map_err(|e| Error::new(0, "local_resolver", e))?;
            // lanveil itself: every local name would go round in a loop. (A wildcard listener also
            // owns the port on loopback; whether another LAN address is this host is not known here.)
            let own = |l: &SocketAddr| {
                let wildcard = l.ip().is_unspecified() && r.ip().to_canonical().is_loopback();
                l.port() == r.port() && (l.ip() == r.ip() || wildcard)
            };
            if self.listen.addrs.iter().any(own) {
                return Err(Error::new(
                    0,
                    "local_resolver",
                    Reason::Rule("is one of lanveil's own listen addresses (a loop)"),
                ));
            }
        }
        Ok(())
    }

    /// The compact binary form (postcard in an `LVCF` envelope with a checksum) for images and boards.
    pub fn pack(&self) -> Vec<u8> {
        crate::envelope::seal_value(PACK_MAGIC, PACK_VERSION, self)
    }

    /// Reads a packed configuration back and validates it. Only [`PACK_VERSION`] is read: a blob of an
    /// older schema is refused ([`crate::envelope::EnvelopeError::OldVersion`]), never read shifted.
    pub fn unpack(blob: &[u8]) -> Result<Self, Error> {
        let packed = |e| Error::new(0, "packed configuration", Reason::Packed(e));
        let (version, body) =
            crate::envelope::open(PACK_MAGIC, PACK_VERSION, blob).map_err(packed)?;
        if version != PACK_VERSION {
            return Err(packed(crate::envelope::EnvelopeError::OldVersion(version)));
        }
        let cfg: Self = postcard::from_bytes(body)
            .map_err(|_| packed(crate::envelope::EnvelopeError::BadBody))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes the configuration as UCI text that [`Config::from_uci_text`] reads back identically.
    /// The main section is `config lanveil 'main'`, or anonymous when an upstream is named `main`.
    pub fn to_uci(&self) -> String {
        let taken = self.upstreams.servers.iter().any(|u| u.name == "main");
        let mut main = Section {
            ty: "lanveil".into(),
            name: (!taken).then(|| "main".into()),
            line: 0,
            values: Vec::new(),
        };
        write_keys(&mut main, keys::MAIN, self, true);
        let mut doc = Document {
            sections: vec![main],
        };
        for u in &self.upstreams.servers {
            let mut s = Section {
                ty: "upstream".into(),
                name: Some(u.name.clone()),
                line: 0,
                values: Vec::new(),
            };
            write_keys(&mut s, keys::UPSTREAM, &keys::UpstreamDraft::of(u), false);
            doc.sections.push(s);
        }
        uci::write(&doc)
    }

    /// The engine's settings.
    pub fn engine(&self) -> EngineConfig {
        let ms = |v: u32| Duration::from_millis(u64::from(v));
        let (l, u, c) = (&self.limits, &self.upstreams, &self.cache);
        EngineConfig {
            query_timeout: ms(l.query_timeout_ms),
            max_inflight: l.max_inflight as usize,
            pipeline: u.pipeline as usize,
            max_connections: u.max_connections as usize,
            idle_timeout: ms(u.idle_timeout_ms),
            standby: Duration::from_secs(u64::from(u.standby_s)),
            loss_probes: u.loss_probe,
            connect_timeout: ms(u.connect_timeout_ms),
            backoff_max: ms(u.reconnect_backoff_max_ms),
            policy: u.policy,
            cache: c.enabled.then(|| CacheConfig {
                max_entries: c.entries as usize,
                max_bytes: c.max_kib as usize * 1024,
                min_ttl: c.min_ttl,
                max_ttl: c.max_ttl,
                max_stale: if c.serve_stale {
                    c.serve_stale_max_s
                } else {
                    0
                },
                ..CacheConfig::default()
            }),
            query_log: self.daemon.query_log as usize,
            clients: ClientLimits {
                rate_qps: l.client_rate,
                burst: l.client_burst,
                action: l.client_rate_action,
                max_inflight: l.client_max_inflight as usize,
                limit_loopback: l.client_limit_loopback,
                table_size: CLIENT_TABLE_SIZE,
            },
            dns64: self.policy.dns64_prefix,
        }
    }

    /// The local answer policy's settings.
    pub fn policy_config(&self) -> PolicyConfig {
        let p = &self.policy;
        PolicyConfig {
            allow: p.allow.clone(),
            local_zones: p.local_zones,
            local_domain: p.local_domain.clone(),
            local_forward: p.local_resolver.is_some(),
            canary_firefox: p.canary_firefox,
            canary_icloud: p.canary_icloud,
        }
    }
}

impl Captive {
    /// The WAN captive-portal tracker's settings.
    pub fn settings(&self) -> lanveil_core::captive::Settings {
        lanveil_core::captive::Settings {
            plaintext: self.plaintext,
            plaintext_max: Duration::from_secs(self.plaintext_max_s.into()),
            poll: Duration::from_secs(self.poll_s.into()),
        }
    }
}

/// Writes the keys of `table` in `from` to `s`; without `defaults`, not a key whose one value is its
/// default (an upstream section says only what differs).
fn write_keys<T>(s: &mut Section, table: &[Key<T>], from: &T, defaults: bool) {
    let mut text = Vec::new();
    for k in table {
        text.clear();
        k.get(from, &mut text);
        if !defaults && !k.list && k.default.is_some_and(|d| text == [d]) {
            continue;
        }
        for value in text.drain(..) {
            s.values.push(Value {
                key: k.name.into(),
                value,
                is_list: k.list,
                line: 0,
            });
        }
    }
}

/// The name of an anonymous upstream, the `n`th enabled one: `upstreamN`, or the next free number when
/// a section of the file (or another anonymous upstream) has that name already. (Unique names keep
/// logs and status unambiguous, and [`Config::to_uci`]'s text readable.)
fn anonymous_name(n: usize, taken: &BTreeMap<String, usize>) -> String {
    let mut n = n;
    loop {
        let mut name = String::from("upstream");
        name.push_str(&n.to_string());
        if !taken.contains_key(&name) {
            return name;
        }
        n += 1;
    }
}

/// An upstream section; `None` when it is disabled. An anonymous one is named by the caller.
fn parse_upstream(section: &Section, label: &str) -> Result<Option<Upstream>, Error> {
    let mut d = keys::UpstreamDraft::new();
    apply_section(&mut d, keys::UPSTREAM, section, label, |d, key| {
        if key == "pin" && d.up.pins.len() > MAX_PINS {
            return Err(Error::new(
                section.line,
                field(label, key),
                Reason::Rule("at most 8 pins per upstream"),
            ));
        }
        Ok(())
    })?;
    if !d.has_url {
        return Err(Error::new(
            section.line,
            field(label, "url"),
            Reason::Missing,
        ));
    }
    let u = d.up;
    if u.url.addr.is_none() && u.bootstrap.is_empty() {
        return Err(Error::new(
            section.line,
            field(label, "bootstrap"),
            Reason::Rule(
                "an https://NAME upstream needs its addresses: list bootstrap 'IP' (never looked up in plaintext)",
            ),
        ));
    }
    if u.url.addr.is_some() && !u.bootstrap.is_empty() {
        return Err(Error::new(
            section.line,
            field(label, "bootstrap"),
            Reason::Rule("bootstrap addresses only go with an https://NAME upstream"),
        ));
    }
    if u.http_get && u.url.transport != crate::Transport::Https {
        return Err(Error::new(
            section.line,
            field(label, "http_method"),
            Reason::Rule("only for https:// upstreams"),
        ));
    }
    if !d.enabled {
        return Ok(None);
    }
    let name = section.name.clone().unwrap_or_default();
    Ok(Some(Upstream { name, ..u }))
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
        assert_eq!(c.listen.addrs.len(), 2);
        assert_eq!(c.limits.query_timeout_ms, 1500);
        assert_eq!(c.daemon.log_level, LogLevel::Debug);
        assert_eq!(c.upstreams.servers.len(), 3);
        assert_eq!(
            c.upstreams.servers[2].addrs(),
            [
                "192.0.2.1:443".parse().unwrap(),
                "[2001:db8::1]:443".parse().unwrap()
            ]
        );
        assert!(c.upstreams.servers[2].http_get);
        assert_eq!(c.upstreams.servers[0].name, "quad9");
        assert_eq!(c.upstreams.servers[0].pins.len(), 1);
        assert_eq!(c.upstreams.servers[1].name, "upstream2");
        assert_eq!(c.upstreams.servers[1].tls_min_version, TlsVersion::V1_2);
        assert_eq!(c.limits.max_inflight, Config::default().limits.max_inflight);
        assert_eq!(c.daemon.user.as_deref(), Some("lanveil"));
        assert_eq!(
            c.policy.allow,
            [
                "192.168.1.0/24".parse::<Prefix>().unwrap(),
                "2001:db8:1::/48".parse().unwrap()
            ]
        );
        assert_eq!(c.policy.local_domain.as_deref(), Some("home.example"));
        assert_eq!(
            c.policy.local_resolver,
            Some("[fe80::53%2]:5353".parse().unwrap())
        );
        assert_eq!(Config::default().policy.local_resolver, None);
        assert_eq!(c.policy.dns64_prefix, Some(Nat64Prefix::WELL_KNOWN));
        assert!(parse_nat64_prefix("2001:db8::/80").is_err());
        assert!(parse_nat64_prefix("192.0.2.0/24").is_err());
        assert!(parse_nat64_prefix("2001:db8:0:0:ff00::/64").is_err());
        // One rule with the core (RFC 6052): no bits past the length; the old message otherwise.
        let e = parse_nat64_prefix("64:ff9b::1/96").unwrap_err();
        assert!(e.to_string().contains("no bits set past its length"), "{e}");
        assert_eq!(
            parse_nat64_prefix("2001:db8::/80").unwrap_err().to_string(),
            "must be an IPv6 prefix of length 32, 40, 48, 56, 64 or 96 (e.g. 64:ff9b::/96)"
        );
        assert!(!c.policy.canary_icloud && c.policy.canary_firefox && c.policy.local_zones);
        assert!(Config::default().policy.allow.len() == 9);
        assert_eq!(
            c.signals.captive_portal_uri.as_deref(),
            Some("https://portal.home.example/api")
        );
        assert_eq!(c.signals.v6only_wait, 1800);
        assert!(!c.captive.plaintext && c.captive.plaintext_max_s == 300);
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
        assert_eq!(c.signals.v6only_wait, 300);
        assert_eq!(
            with("\toption v6only_wait '0'\n")
                .unwrap()
                .signals
                .v6only_wait,
            0
        );
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
            assert_eq!(
                c.policy.local_resolver,
                Some(want.parse().unwrap()),
                "{good}"
            );
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
        // `option local_resolver ''` is how uci spells "unset" (libuci deletes the option).
        assert_eq!(
            with("127.0.0.1:53", "").unwrap().policy.local_resolver,
            None
        );
        assert!(with("0.0.0.0:53", "192.168.1.2").is_ok());
        assert!(with("127.0.0.1:5453", "127.0.0.1:53").is_ok());
        // Packed configurations are checked too.
        let mut c = with("127.0.0.1:53", "192.168.1.1").unwrap();
        c.policy.local_resolver = Some("9.9.9.9:53".parse().unwrap());
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
        assert_eq!(&blob[..6], b"LVCF\x04\x00");
        assert_eq!(Config::unpack(&blob).unwrap(), c);
        let mut bad = blob.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert!(matches!(
            Config::unpack(&bad).unwrap_err().reason,
            Reason::Packed(crate::envelope::EnvelopeError::BadChecksum)
        ));
        let mut future = blob.clone();
        future[4] = 5;
        let e = Config::unpack(&future).unwrap_err();
        assert_eq!(
            e.reason,
            Reason::Packed(crate::envelope::EnvelopeError::FutureVersion(5))
        );
        assert_eq!(
            alloc::format!("{e}"),
            "packed configuration: schema version 5 is newer than this lanveil"
        );
        // An older schema is refused by its version, even when its body would decode.
        let body = postcard::to_allocvec(&c).unwrap();
        let v3 = crate::envelope::seal(PACK_MAGIC, 3, &body);
        assert_eq!(
            Config::unpack(&v3).unwrap_err().reason,
            Reason::Packed(crate::envelope::EnvelopeError::OldVersion(3))
        );
        // A blob that decodes but breaks a rule is rejected by validation.
        let mut invalid = c.clone();
        invalid.limits.query_timeout_ms = 5;
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

    #[test]
    fn anonymous_upstreams_get_names_no_section_has() {
        let up = |name: &str, ip: u8| {
            alloc::format!("config upstream{name}\n\toption url 'tls://192.0.2.{ip}#dns.example'\n")
        };
        let names = |c: &Config| -> Vec<String> {
            c.upstreams.servers.iter().map(|u| u.name.clone()).collect()
        };
        // An anonymous section first, then one named as the anonymous one would be.
        let text = alloc::format!(
            "{}{}{}{}config openwrt 'upstream4'\n",
            up("", 1),
            up(" 'upstream1'", 2),
            up("", 3),
            up("", 4)
        );
        let c = Config::from_uci_text(&text).unwrap();
        assert_eq!(
            names(&c),
            ["upstream2", "upstream1", "upstream3", "upstream5"]
        );
        assert_eq!(Config::from_uci_text(&c.to_uci()).unwrap(), c);
        // A named section after the anonymous ones keeps its name too.
        let text = alloc::format!("{}{}{}", up("", 1), up("", 2), up(" 'upstream2'", 3));
        let c = Config::from_uci_text(&text).unwrap();
        assert_eq!(names(&c), ["upstream1", "upstream3", "upstream2"]);
        assert_eq!(Config::from_uci_text(&c.to_uci()).unwrap(), c);
        // An upstream named `main`: the main section is written without a name.
        let text = alloc::format!(
            "config lanveil 'lan'\n\toption log_level 'debug'\n{}",
            up(" 'main'", 1)
        );
        let c = Config::from_uci_text(&text).unwrap();
        assert_eq!(names(&c), ["main"]);
        assert_eq!(Config::from_uci_text(&c.to_uci()).unwrap(), c);
        // Two upstreams of one name (only possible outside a file) are refused.
        let mut twice = c.clone();
        twice.upstreams.servers.push(c.upstreams.servers[0].clone());
        let e = twice.validate().unwrap_err();
        assert_eq!(e.key, "upstream");
        assert!(e.to_string().contains("same name"), "{e}");
        assert!(Config::unpack(&twice.pack()).is_err());
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
            "config upstream 'u'\n\toption url 'tls://9.9.9.9#x'\n\tlist url 'tls://9.9.9.9#y'\n",
        );
        assert_eq!(
            (e.line, e.key.as_str(), e.reason.clone()),
            (2, "upstream[u].url", Reason::NotAList)
        );
        assert_eq!(
            e.to_string(),
            "upstream[u].url: takes one value: write it as 'option KEY VALUE', not 'list'"
        );
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

    #[test]
    fn openwrt_section_keys_are_checked() {
        let up = "config upstream 'u'\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n";
        let ok = alloc::format!(
            "{up}config openwrt 'openwrt'\n\toption dnsmasq '1'\n\toption start_timeout '10'\n\toption force_dns '1'\n\tlist force_dns_zone 'lan'\n\tlist force_dns_zone 'guest'\n\toption block_dot '0'\n\toption canary_domains '1'\n\toption relay_wan_portal '1'\n"
        );
        Config::from_uci_text(&ok).unwrap();
        // One zone written as an option is what `uci set` makes of a single value.
        Config::from_uci_text(&alloc::format!(
            "{up}config openwrt 'openwrt'\n\toption force_dns_zone 'lan'\n"
        ))
        .unwrap();
        // A misspelt key: the init script would silently use its default.
        let e = err_of(&alloc::format!(
            "{up}config openwrt 'openwrt'\n\toption dnsmasq '1'\n\toption force_dsn '0'\n"
        ));
        assert_eq!(
            (e.line, e.key.as_str(), e.reason.clone()),
            (5, "openwrt[openwrt].force_dsn", Reason::UnknownKey)
        );
        assert_eq!(
            alloc::format!("{}", e.display_with_file("/etc/config/lanveil")),
            "/etc/config/lanveil:5: openwrt[openwrt].force_dsn: unknown option"
        );
        // Given twice: the last one, as the init script's `config_get` sees it.
        Config::from_uci_text(&alloc::format!(
            "{up}config openwrt 'openwrt'\n\toption force_dns '1'\n\toption force_dns '0'\n"
        ))
        .unwrap();
        let e = err_of(&alloc::format!(
            "{up}config openwrt 'openwrt'\n\toption force_dns '1'\n\tlist force_dns '0'\n"
        ));
        assert_eq!((e.line, e.reason), (4, Reason::NotAList));
        let e = err_of(&alloc::format!(
            "{up}config openwrt\n\tlist block_dot '1'\n"
        ));
        assert_eq!(
            (e.key.as_str(), e.reason),
            ("openwrt[#2].block_dot", Reason::NotAList)
        );
        assert!(keys::is_list("openwrt", "force_dns_zone"));
        // A second openwrt section (named or not) is refused: the init script reads the first.
        let e = err_of(&alloc::format!(
            "{up}config openwrt\n\toption force_dns '0'\nconfig openwrt 'openwrt'\n\toption force_dns '1'\n"
        ));
        assert_eq!(
            e.reason,
            Reason::Rule("only one 'config openwrt' section is allowed")
        );
    }

    /// `config lanveil 'main'` with `main`, and an upstream.
    fn with_main(main: &str) -> Result<Config, Error> {
        Config::from_uci_text(&alloc::format!(
            "config lanveil 'main'\n{main}\nconfig upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\n"
        ))
    }

    #[test]
    fn option_replaces_a_key_list_appends_as_libuci_does() {
        let prefixes =
            |v: &[&str]| -> Vec<Prefix> { v.iter().map(|p| p.parse().unwrap()).collect() };
        // libuci's uci_set replaces the whole list: `uci get` and LuCI show 192.168.1.0/24 only,
        // and the daemon must not answer everyone.
        let c = with_main("\tlist allow '0.0.0.0/0'\n\toption allow '192.168.1.0/24'\n").unwrap();
        assert_eq!(c.policy.allow, prefixes(&["192.168.1.0/24"]));
        let c = with_main(
            "\tlist allow '0.0.0.0/0'\n\tlist allow '::/0'\n\toption log_level 'debug'\n\toption allow '192.168.1.0/24'\n\tlist allow '10.0.0.0/8'\n",
        )
        .unwrap();
        assert_eq!(c.policy.allow, prefixes(&["192.168.1.0/24", "10.0.0.0/8"]));
        // Two `option listen`: the last one.
        let c =
            with_main("\toption listen '0.0.0.0:53'\n\toption listen '127.0.0.1:53'\n").unwrap();
        assert_eq!(c.listen.addrs, ["127.0.0.1:53".parse().unwrap()]);
        // `option` then `list`: uci_add_list makes the option's value the list's first one.
        let c = with_main("\toption listen '127.0.0.1:53'\n\tlist listen '[::1]:53'\n").unwrap();
        assert_eq!(
            c.listen.addrs,
            ["127.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        // `option KEY ''` removes the list: the default again.
        let c = with_main("\tlist allow '0.0.0.0/0'\n\toption allow ''\n").unwrap();
        assert_eq!(c.policy.allow, Config::default().policy.allow);
        // A pin list replaced by one option.
        let (p1, p2, p3) = (
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "sha256/BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=",
        );
        let c = Config::from_uci_text(&alloc::format!(
            "config upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\n\tlist pin '{p1}'\n\tlist pin '{p2}'\n\toption pin '{p3}'\n"
        ))
        .unwrap();
        let pins: Vec<String> = c.upstreams.servers[0]
            .pins
            .iter()
            .map(SpkiPin::to_text)
            .collect();
        assert_eq!(pins, [p3]);
        // A key of one value given twice as `option`: the last one, as `uci get` shows it.
        let c = Config::from_uci_text(
            "config upstream 'u'\n\toption url 'tls://192.0.2.1#one.example'\n\toption url 'tls://192.0.2.2#two.example'\n",
        )
        .unwrap();
        assert_eq!(c.upstreams.servers[0].url.auth_name, "two.example");
        let c = with_main("\toption log_level 'debug'\n\toption log_level 'error'\n").unwrap();
        assert_eq!(c.daemon.log_level, LogLevel::Error);
        // Also across a reopened section.
        let c = Config::from_uci_text(
            "config lanveil 'main'\n\tlist allow '0.0.0.0/0'\nconfig upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\nconfig lanveil 'main'\n\toption allow '10.0.0.0/8'\n",
        )
        .unwrap();
        assert_eq!(c.policy.allow, prefixes(&["10.0.0.0/8"]));
        // A document made by hand means what its text means.
        let mut doc = uci::parse(
            "config lanveil 'main'\nconfig upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\n",
        )
        .unwrap();
        for (value, is_list) in [("0.0.0.0/0", true), ("192.168.1.0/24", false)] {
            doc.sections[0].values.push(Value {
                key: "allow".into(),
                value: value.into(),
                is_list,
                line: 0,
            });
        }
        let c = Config::from_uci(&doc).unwrap();
        assert_eq!(c.policy.allow, prefixes(&["192.168.1.0/24"]));
        assert_eq!(Config::from_uci_text(&uci::write(&doc)).unwrap(), c);
    }

    #[test]
    fn a_long_listen_list_is_refused_at_its_seventeenth_address() {
        // Refused where it happens (the line is known), before the duplicate check gets long.
        let mut text = String::from("config lanveil 'main'\n");
        for i in 0..1000 {
            text.push_str(&alloc::format!("\tlist listen '127.0.0.1:{}'\n", 1000 + i));
        }
        text.push_str("config upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\n");
        let e = err_of(&text);
        assert_eq!(
            (e.line, e.key.as_str(), e.reason),
            (
                18,
                "lanveil[main].listen",
                Reason::Rule("at most 16 listen addresses")
            )
        );
    }

    #[test]
    fn long_allow_and_bootstrap_lists_are_refused_with_their_line() {
        // `allow` is checked for every query: 256 prefixes at most, refused at the 257th line.
        let mut text = String::from("config lanveil 'main'\n");
        for i in 0..300u32 {
            text.push_str(&alloc::format!(
                "\tlist allow '10.{}.{}.0/24'\n",
                i / 256,
                i % 256
            ));
        }
        text.push_str("config upstream 'u'\n\toption url 'tls://192.0.2.1#dns.example'\n");
        let e = err_of(&text);
        assert_eq!(
            (e.line, e.key.as_str(), e.reason),
            (
                258,
                "lanveil[main].allow",
                Reason::Rule("at most 256 allow prefixes")
            )
        );
        // 256 are fine.
        let ok: String =
            text.lines()
                .take(257)
                .chain(text.lines().skip(301))
                .fold(String::new(), |mut t, l| {
                    t.push_str(l);
                    t.push('\n');
                    t
                });
        let c = Config::from_uci_text(&ok).unwrap();
        assert_eq!(c.policy.allow.len(), MAX_ALLOW);
        // A configuration that did not come from a file (packed, overridden) is checked too.
        let mut big = c.clone();
        big.policy.allow.push(parse_allow("10.9.9.0/24").unwrap());
        let e = big.validate().unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.reason),
            ("allow", Reason::Rule("at most 256 allow prefixes"))
        );

        let mut text =
            String::from("config upstream 'u'\n\toption url 'https://dns.example/dns-query'\n");
        for i in 0..9 {
            text.push_str(&alloc::format!("\tlist bootstrap '192.0.2.{i}'\n"));
        }
        let e = err_of(&text);
        assert_eq!(
            (e.line, e.key.as_str(), e.reason),
            (
                11,
                "upstream[u].bootstrap",
                Reason::Rule("at most 8 bootstrap addresses per upstream")
            )
        );
        let mut c = Config::from_uci_text(
            "config upstream 'u'\n\toption url 'https://dns.example/dns-query'\n\tlist bootstrap '192.0.2.1'\n",
        )
        .unwrap();
        c.upstreams.servers[0].bootstrap = (0..9).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let e = c.validate().unwrap_err();
        assert_eq!(e.key.as_str(), "bootstrap");
    }

    #[test]
    fn files_mean_what_uci_makes_of_them() {
        // An unquoted '#' starts a comment in libuci: `uci get` and LuCI see `tls://9.9.9.9`, and so
        // must the daemon (here: no authentication name, refused, instead of silently using one).
        let e = err_of("config upstream 'u'\n\toption url tls://9.9.9.9#dns.quad9.net\n");
        assert_eq!((e.line, e.key.as_str()), (2, "upstream[u].url"));
        assert!(matches!(e.reason, Reason::Url(_)), "{e}");
        // libuci refuses '-' in section and option names: so does lanveil, naming file, line, key.
        let e = err_of("config upstream 'my-dns'\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n");
        assert_eq!(
            alloc::format!("{}", e.display_with_file("/etc/config/lanveil")),
            "/etc/config/lanveil:1: upstream[my-dns]: syntax error: section name must be letters, digits and '_' only (uci refuses the whole file otherwise)"
        );
    }
}
