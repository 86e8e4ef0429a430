//! The one table of configuration keys. Each key is written here once, with its section, whether it is
//! a list, its default, its range or words, what it means, how its text is parsed into the model and
//! how it is written back. [`crate::Config::from_uci`], [`crate::Config::to_uci`],
//! [`crate::Config::default`], [`crate::Config::validate`], the README's key reference
//! ([`reference()`]) and `lanveil-ctl config` all read it.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
#[cfg(feature = "reference")]
use core::fmt::Write as _;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

use lanveil_core::engine::{RateAction, SelectPolicy};

use crate::error::Reason;
use crate::field::{Field, WordField, Words, field, words};
use crate::model::{
    Config, LOG_LEVELS, LogLevel, MAX_ALLOW, MAX_BOOTSTRAP, MAX_LISTENERS, TlsVersion, Upstream,
    parse_allow, parse_captive_uri, parse_local_resolver, parse_nat64_prefix, parse_v6only_wait,
};
use crate::upstream::{SpkiPin, Transport, UpstreamUrl};

/// What kind of value a key takes (for the reference and for typed JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in `min..=max`.
    Number {
        /// Smallest accepted value.
        min: u32,
        /// Largest accepted value.
        max: u32,
    },
    /// `0` or `1` (also `no`/`yes`, `off`/`on`, `false`/`true`, `disabled`/`enabled`).
    Bool,
    /// Text of the form described (only with the `reference` feature).
    Text {
        /// The form, e.g. `IP:PORT`.
        #[cfg(feature = "reference")]
        form: &'static str,
    },
}

/// One key of a section whose model is `T`.
pub struct Key<T: 'static> {
    /// The key as written in the file.
    pub name: &'static str,
    /// Written `list KEY 'VALUE'`, repeatable; the values given replace the default.
    pub list: bool,
    /// The value's kind.
    pub kind: Kind,
    /// The default as written in the file (a list's values separated by spaces); `None`: unset.
    pub default: Option<&'static str>,
    /// What the key does, in one line (for the reference; only with the `reference` feature, so the
    /// router's binary carries neither the prose nor its relocations).
    #[cfg(feature = "reference")]
    pub doc: &'static str,
    /// Where the value lives in the model, and how its text is read and written.
    pub(crate) access: Access<T>,
}

/// How a key reaches the model. The common kinds are data (a field's offset and the shared parser),
/// so each costs a table row, not a parser, a printer or accessors of its own.
pub(crate) enum Access<T: 'static> {
    /// A `u32` field in the key's [`Kind::Number`] range, always written.
    Number(Field<T, u32>),
    /// A `bool` field, always written.
    Flag(Field<T, bool>),
    /// A text checked by its parser (an absolute path, a user name, …), written when set.
    Text(Field<T, Option<String>>, fn(&str) -> Result<String, Reason>),
    /// A word out of a fixed list, naming a value of an enum or `bool` field, always written.
    Word(WordField<T>),
    /// Anything else.
    Custom {
        /// Parses one value into the model (a list key: appends one value).
        set: fn(&mut T, &str) -> Result<(), Reason>,
        /// A list key: empties the list before the values given are appended. Other keys: `None`.
        clear: Option<fn(&mut T)>,
        /// The values as written in the file (none: the key is not written).
        get: fn(&T, &mut Vec<String>),
    },
}

impl<T> Key<T> {
    /// The values of this key in `from`, as written in the file.
    pub fn values(&self, from: &T) -> Vec<String> {
        let mut out = Vec::new();
        self.get(from, &mut out);
        out
    }

    /// Parses one value into `to` (a list key: appends it).
    pub(crate) fn set(&self, to: &mut T, text: &str) -> Result<(), Reason> {
        match &self.access {
            Access::Number(field) => {
                let Kind::Number { min, max } = self.kind else {
                    return Err(Reason::Range { min: 0, max: 0 });
                };
                *field.get_mut(to) = parse_u32(text, min, max)?;
            }
            Access::Flag(field) => *field.get_mut(to) = parse_bool(text)?,
            Access::Text(field, parse) => *field.get_mut(to) = Some(parse(text)?),
            Access::Word(field) => field.set(to, text)?,
            Access::Custom { set, .. } => set(to, text)?,
        }
        Ok(())
    }

    /// A number key's value in `from` and its range.
    pub(crate) fn number(&self, from: &T) -> Option<(u32, u32, u32)> {
        match (&self.access, self.kind) {
            (Access::Number(field), Kind::Number { min, max }) => {
                Some((*field.get(from), min, max))
            }
            _ => None,
        }
    }

    /// A list key: empties the list before the values given are appended.
    pub(crate) fn clear(&self, to: &mut T) {
        if let Access::Custom {
            clear: Some(clear), ..
        } = &self.access
        {
            clear(to);
        }
    }

    /// Appends the values as written in the file (none: the key is not written).
    pub(crate) fn get(&self, from: &T, out: &mut Vec<String>) {
        match &self.access {
            Access::Number(field) => out.push(field.get(from).to_string()),
            Access::Flag(field) => out.push(bool_text(*field.get(from))),
            Access::Text(field, _) => push_opt(out, field.get(from)),
            Access::Word(field) => out.push(String::from(field.get(from))),
            Access::Custom { get, .. } => get(from, out),
        }
    }

    pub(crate) fn apply_default(&self, to: &mut T) {
        let Some(text) = self.default else { return };
        self.clear(to);
        // Every default parses (tested); a list's values are separated by spaces.
        if self.list {
            for v in text.split_whitespace() {
                let _ = self.set(to, v);
            }
        } else {
            let _ = self.set(to, text);
        }
    }
}

/// `0`/`1` and the usual synonyms.
pub(crate) fn parse_bool(s: &str) -> Result<bool, Reason> {
    match s {
        "1" | "yes" | "on" | "true" | "enabled" => Ok(true),
        "0" | "no" | "off" | "false" | "disabled" => Ok(false),
        _ => Err(Reason::OneOf("0, 1")),
    }
}

fn bool_text(b: bool) -> String {
    String::from(if b { "1" } else { "0" })
}

pub(crate) fn parse_u32(s: &str, min: u32, max: u32) -> Result<u32, Reason> {
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
    if !ok {
        return Err(Reason::Rule(
            "must be a user name (letters, digits, '_', '-', '.')",
        ));
    }
    if s == "root" {
        // The daemon switches to this user after binding: root would keep every privilege.
        return Err(Reason::Rule(
            "must not be root (the daemon drops its privileges to this user)",
        ));
    }
    Ok(s.to_string())
}

fn parse_path(s: &str) -> Result<String, Reason> {
    if !s.starts_with('/') {
        return Err(Reason::Rule("must be an absolute path"));
    }
    Ok(s.to_string())
}

fn parse_local_domain(s: &str) -> Result<String, Reason> {
    crate::parse_auth_name(s)
        .map_err(|_| Reason::Rule("must be a domain name such as lan or home.example"))
}

fn push_opt(out: &mut Vec<String>, v: &Option<impl ToString>) {
    if let Some(v) = v {
        out.push(v.to_string());
    }
}

/// A whole number in `min..=max`, always written.
macro_rules! number {
    ($name:literal, $($field:ident).+, $min:expr, $max:expr, $default:literal, $doc:literal) => {
        Key {
            name: $name,
            list: false,
            kind: Kind::Number { min: $min, max: $max },
            default: Some($default),
            #[cfg(feature = "reference")]
            doc: $doc,
            access: Access::Number(field!(Config, $($field).+: u32)),
        }
    };
}

/// `0`/`1`, always written (of a section of type `T`; without it, of [`Config`]).
macro_rules! flag {
    ($name:literal, $($rest:tt)+) => {
        flag!(Config: $name, $($rest)+)
    };
    ($t:ty: $name:literal, $($field:ident).+, $default:literal, $doc:literal) => {
        Key {
            name: $name,
            list: false,
            kind: Kind::Bool,
            default: Some($default),
            #[cfg(feature = "reference")]
            doc: $doc,
            access: Access::Flag(field!($t, $($field).+: bool)),
        }
    };
}

/// A text of the given form, read by `parse`, unset by default, written when set (of a section of
/// type `T`; without it, of [`Config`]).
macro_rules! text {
    ($name:literal, $($rest:tt)+) => {
        text!(Config: $name, $($rest)+)
    };
    ($t:ty: $name:literal, $($field:ident).+, $parse:expr, $form:literal, $doc:literal) => {
        Key {
            name: $name,
            list: false,
            kind: Kind::Text {
                #[cfg(feature = "reference")]
                form: $form,
            },
            default: None,
            #[cfg(feature = "reference")]
            doc: $doc,
            access: Access::Text(field!($t, $($field).+: Option<String>), $parse),
        }
    };
}

/// An absolute path, unset by default, written when set (of a section of type `T`; without it, of
/// [`Config`]).
macro_rules! path {
    ($($t:ty:)? $name:literal, $($field:ident).+, $doc:literal) => {
        text!($($t:)? $name, $($field).+, parse_path, "absolute path", $doc)
    };
}

/// A word out of a fixed list ([`words!`]) naming a value of the field, of type `V`, always written
/// (of a section of type `T`); the reference's form is the written words.
macro_rules! word {
    ($t:ty: $name:literal, $($field:ident).+: $v:ty, $words:expr, $default:literal, $doc:literal) => {{
        const WORDS: &Words<$v> = $words;
        Key {
            name: $name,
            list: false,
            kind: Kind::Text {
                #[cfg(feature = "reference")]
                form: WORDS.form(),
            },
            default: Some($default),
            #[cfg(feature = "reference")]
            doc: $doc,
            access: Access::Word(WordField::new(field!($t, $($field).+: $v), WORDS)),
        }
    }};
}

/// The words of `upstream_policy`.
const POLICY: &Words<SelectPolicy> = words!(SelectPolicy:
    "failover" => SelectPolicy::Failover,
    "round_robin" | "round-robin" => SelectPolicy::RoundRobin,
    "fastest" => SelectPolicy::Fastest,
);

/// The word `upstream_policy` uses for `p`.
pub fn policy_word(p: SelectPolicy) -> &'static str {
    POLICY.word(p)
}

/// The keys of `config lanveil 'main'`, grouped as [`Config`] is.
pub static MAIN: &[Key<Config>] = &[
    // The LAN listeners.
    Key {
        name: "listen",
        list: true,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "IP:PORT (IPv6 as [ADDR]:PORT)",
        },
        default: Some("127.0.0.1:5353"),
        #[cfg(feature = "reference")]
        doc: "addresses served, UDP and TCP each (at most 16)",
        access: Access::Custom {
            set: |c, s| {
                let sa = SocketAddr::from_str(s).map_err(|_| Reason::SocketAddr)?;
                if c.listen.addrs.contains(&sa) {
                    return Err(Reason::Duplicate);
                }
                // Here, not only in `validate`: the line is known, and `contains` stays short.
                if c.listen.addrs.len() >= MAX_LISTENERS {
                    return Err(Reason::Rule("at most 16 listen addresses"));
                }
                c.listen.addrs.push(sa);
                Ok(())
            },
            clear: Some(|c| c.listen.addrs.clear()),
            get: |c, out| out.extend(c.listen.addrs.iter().map(ToString::to_string)),
        },
    },
    number!(
        "max_tcp_clients",
        listen.max_tcp_clients,
        1,
        4_096,
        "64",
        "LAN TCP connections at once"
    ),
    number!(
        "tcp_pipeline",
        listen.tcp_pipeline,
        1,
        1_024,
        "32",
        "pipelined queries outstanding per LAN TCP connection"
    ),
    number!(
        "tcp_idle_timeout_ms",
        listen.tcp_idle_timeout_ms,
        500,
        300_000,
        "10000",
        "an idle LAN TCP connection is closed after this, and so is one whose client does not take an answer for this long (or leaves answers queued behind 64 KiB of unread ones for 2 s)"
    ),
    number!(
        "tcp_clients_per_source",
        listen.tcp_clients_per_source,
        1,
        4_096,
        "16",
        "LAN TCP connections per client address (to all listening addresses together; the exact address: LAN hosts share their IPv6 /64)"
    ),
    // The upstreams.
    word!(Config: "upstream_policy", upstreams.policy: SelectPolicy, POLICY, "failover",
        "first healthy upstream in file order, each in turn, or the lowest smoothed RTT"),
    path!(
        "ca_file",
        upstreams.ca_file,
        "CA bundle (PEM) for upstreams without their own; unset: the system bundle"
    ),
    number!(
        "upstream_idle_timeout_ms",
        upstreams.idle_timeout_ms,
        1_000,
        3_600_000,
        "20000",
        "an idle upstream connection is closed after this"
    ),
    number!(
        "upstream_standby_s",
        upstreams.standby_s,
        0,
        3_600,
        "600",
        "after a query, an upstream connection that ends cleanly is redialled in the background for this long (0: off)"
    ),
    number!(
        "upstream_tcp_rto_min_ms",
        upstreams.tcp_rto_min_ms,
        0,
        1_000,
        "50",
        "lowest TCP retransmission timeout of upstream connections, Linux 6.15+ (0: the kernel's 200 ms)"
    ),
    flag!(
        "upstream_loss_probe",
        upstreams.loss_probe,
        "1",
        "a query unanswered for about 1.33 round trips on a DoT or DoH (HTTP/2) connection is sent once more on it (a lost segment then costs two round trips more, not a 200-ms timeout)"
    ),
    number!(
        "upstream_connect_timeout_ms",
        upstreams.connect_timeout_ms,
        100,
        60_000,
        "5000",
        "TCP connect + TLS handshake limit"
    ),
    number!(
        "upstream_max_connections",
        upstreams.max_connections,
        1,
        16,
        "4",
        "connections per upstream"
    ),
    number!(
        "upstream_pipeline",
        upstreams.pipeline,
        1,
        4_096,
        "100",
        "queries in flight per upstream connection before another is opened"
    ),
    number!(
        "reconnect_backoff_max_ms",
        upstreams.reconnect_backoff_max_ms,
        100,
        60_000,
        "4000",
        "upper bound of the reconnect backoff"
    ),
    // Time and admission limits.
    number!(
        "query_timeout_ms",
        limits.query_timeout_ms,
        100,
        30_000,
        "2500",
        "a client gets an answer (SERVFAIL with EDE at worst) within this"
    ),
    // Half the upstream ID space: a session never holds more IDs than queries are in flight, so
    // drawing a free random ID takes two tries on average at worst.
    number!(
        "max_inflight",
        limits.max_inflight,
        16,
        32_768,
        "2048",
        "client queries in flight at once"
    ),
    number!(
        "client_rate",
        limits.client_rate,
        0,
        1_000_000,
        "300",
        "sustained queries/s per client address (0: no rate limit)"
    ),
    number!(
        "client_burst",
        limits.client_burst,
        1,
        1_000_000,
        "600",
        "burst per client address above the rate"
    ),
    word!(Config: "client_rate_action", limits.client_rate_action: RateAction,
        words!(RateAction: "refuse" => RateAction::Refuse, "drop" => RateAction::Drop),
        "refuse",
        "over the rate: answer REFUSED (EDE \"rate limited\") or drop silently"),
    number!(
        "client_max_inflight",
        limits.client_max_inflight,
        0,
        65_536,
        "256",
        "queries in flight per client address"
    ),
    flag!(
        "client_limit_loopback",
        limits.client_limit_loopback,
        "0",
        "apply the per-client limits to loopback too (off: dnsmasq in front carries everyone)"
    ),
    // The cache.
    flag!(
        "cache",
        cache.enabled,
        "1",
        "cache answers (an upstream's final SERVFAIL is kept 5 s, lanveil's own never)"
    ),
    number!(
        "cache_entries",
        cache.entries,
        16,
        200_000,
        "4096",
        "cached answers at most"
    ),
    number!(
        "cache_max_kib",
        cache.max_kib,
        64,
        65_536,
        "2048",
        "KiB of cached answers at most"
    ),
    number!(
        "cache_min_ttl",
        cache.min_ttl,
        0,
        3_600,
        "0",
        "lowest TTL a cached answer keeps (s)"
    ),
    number!(
        "cache_max_ttl",
        cache.max_ttl,
        1,
        604_800,
        "86400",
        "highest TTL a cached answer keeps (s)"
    ),
    flag!(
        "serve_stale",
        cache.serve_stale,
        "1",
        "RFC 8767: expired answers with EDE 3 when no upstream answers"
    ),
    number!(
        "serve_stale_max_s",
        cache.serve_stale_max_s,
        1,
        604_800,
        "86400",
        "how long past expiry an answer may be served stale (s)"
    ),
    // The process.
    word!(Config: "log_level", daemon.log_level: LogLevel, LOG_LEVELS, "info",
        "log verbosity; query names never appear at info or above"),
    text!(
        "user",
        daemon.user,
        parse_user,
        "user name",
        "started as root: switch to this user once the listeners are bound"
    ),
    path!(
        "state_file",
        daemon.state_file,
        "the clock floor across reboots (routers without RTC)"
    ),
    path!(
        "control_socket",
        daemon.control_socket,
        "status, query log and reload for lanveil-ctl"
    ),
    number!(
        "drain_timeout_ms",
        daemon.drain_timeout_ms,
        0,
        60_000,
        "3000",
        "SIGTERM waits this long for queries in flight"
    ),
    number!(
        "query_log",
        daemon.query_log,
        0,
        10_000,
        "0",
        "opt-in in-memory query log of N entries (never written anywhere)"
    ),
    // LAN signals.
    text!(
        "captive_portal_uri",
        signals.captive_portal_uri,
        parse_captive_uri,
        "https:// URI or urn:ietf:params:capport:unrestricted",
        "RFC 8910 captive-portal API announced to LAN clients (DHCPv4 114, DHCPv6 103, RA 37)"
    ),
    Key {
        name: "v6only_wait",
        list: false,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "0 or 300..4294967295",
        },
        default: Some("0"),
        #[cfg(feature = "reference")]
        doc: "RFC 8925 option 108 V6ONLY_WAIT (s); 0: off; needs dns64_prefix",
        access: Access::Custom {
            set: |c, s| {
                c.signals.v6only_wait = parse_v6only_wait(s)?;
                Ok(())
            },
            clear: None,
            get: |c, out| out.push(c.signals.v6only_wait.to_string()),
        },
    },
    // WAN captive portals.
    flag!(
        "captive_plaintext",
        captive.plaintext,
        "0",
        "behind a WAN captive portal: resolve only the portal's names in plaintext, for a while"
    ),
    number!(
        "captive_plaintext_max_s",
        captive.plaintext_max_s,
        30,
        3_600,
        "300",
        "longest the plaintext exception stays open (s)"
    ),
    number!(
        "captive_poll_s",
        captive.poll_s,
        1,
        300,
        "10",
        "RFC 8908 API poll interval while captive (s)"
    ),
    // Local answers and client access.
    Key {
        name: "allow",
        list: true,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "ADDRESS/LENGTH",
        },
        default: Some(lanveil_core::policy::DEFAULT_ALLOW),
        #[cfg(feature = "reference")]
        doc: "client prefixes allowed to query (at most 256); others get REFUSED (over UDP at most 20 answers a second to all of them together, the rest dropped)",
        access: Access::Custom {
            set: |c, s| {
                // Here, not only in `validate`: the line is known.
                if c.policy.allow.len() >= MAX_ALLOW {
                    return Err(Reason::Rule("at most 256 allow prefixes"));
                }
                c.policy.allow.push(parse_allow(s)?);
                Ok(())
            },
            clear: Some(|c| c.policy.allow.clear()),
            get: |c, out| out.extend(c.policy.allow.iter().map(ToString::to_string)),
        },
    },
    flag!(
        "local_zones",
        policy.local_zones,
        "1",
        "answer RFC 6303 zones, home.arpa, local, lan, internal and single labels here"
    ),
    text!(
        "local_domain",
        policy.local_domain,
        parse_local_domain,
        "domain name",
        "the LAN's own domain, answered locally too"
    ),
    flag!(
        "canary_firefox",
        policy.canary_firefox,
        "1",
        "use-application-dns.net → NXDOMAIN"
    ),
    flag!(
        "canary_icloud",
        policy.canary_icloud,
        "1",
        "mask.icloud.com, mask-h2.icloud.com → NXDOMAIN"
    ),
    Key {
        name: "dns64_prefix",
        list: false,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "IPv6 prefix /32, /40, /48, /56, /64 or /96",
        },
        default: None,
        #[cfg(feature = "reference")]
        doc: "DNS64 (RFC 6147) with this NAT64 prefix (RFC 6052)",
        access: Access::Custom {
            set: |c, s| {
                c.policy.dns64_prefix = Some(parse_nat64_prefix(s)?);
                Ok(())
            },
            clear: None,
            get: |c, out| push_opt(out, &c.policy.dns64_prefix),
        },
    },
    Key {
        name: "local_resolver",
        list: false,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "IP or IP:PORT on the LAN",
        },
        default: None,
        #[cfg(feature = "reference")]
        doc: "local names go to this LAN resolver in plaintext instead of NXDOMAIN; never upstream",
        access: Access::Custom {
            set: |c, s| {
                c.policy.local_resolver = Some(parse_local_resolver(s)?);
                Ok(())
            },
            clear: None,
            get: |c, out| push_opt(out, &c.policy.local_resolver),
        },
    },
];

/// An upstream section being read: the upstream, whether `url` was given, `enabled`.
pub struct UpstreamDraft {
    /// The upstream so far.
    pub up: Upstream,
    /// `url` was given.
    pub has_url: bool,
    /// `enabled` (a disabled section is checked, then skipped).
    pub enabled: bool,
}

impl UpstreamDraft {
    /// Every key at its default (no URL yet).
    pub fn new() -> Self {
        let mut d = Self {
            up: Upstream {
                name: String::new(),
                url: UpstreamUrl {
                    transport: Transport::Tls,
                    addr: None,
                    port: crate::DOT_PORT,
                    auth_name: String::new(),
                    path: String::new(),
                },
                pins: Vec::new(),
                ca_file: None,
                tls_min_version: TlsVersion::default(),
                bootstrap: Vec::new(),
                http_get: false,
                sni: false,
                tls_resumption: false,
            },
            has_url: false,
            enabled: false,
        };
        for k in UPSTREAM {
            k.apply_default(&mut d);
        }
        d
    }

    /// A kept upstream, for writing.
    pub fn of(u: &Upstream) -> Self {
        Self {
            up: u.clone(),
            has_url: true,
            enabled: true,
        }
    }
}

impl Default for UpstreamDraft {
    fn default() -> Self {
        Self::new()
    }
}

/// The keys of a `config upstream` section.
pub static UPSTREAM: &[Key<UpstreamDraft>] = &[
    Key {
        name: "url",
        list: false,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "tls://IP[:PORT]#AUTHNAME, https://IP[:PORT]/PATH#AUTHNAME, https://NAME/PATH or quic://IP[:PORT]#AUTHNAME",
        },
        default: None,
        #[cfg(feature = "reference")]
        doc: "required: the upstream and the name its certificate must carry",
        access: Access::Custom {
            set: |d, s| {
                d.up.url = s.parse::<UpstreamUrl>()?;
                d.has_url = true;
                Ok(())
            },
            clear: None,
            get: |d, out| out.push(d.up.url.to_string()),
        },
    },
    Key {
        name: "pin",
        list: true,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "sha256/BASE64",
        },
        default: None,
        #[cfg(feature = "reference")]
        doc: "SPKI pins (RFC 7858 §4.2), checked on top of WebPKI (at most 8)",
        access: Access::Custom {
            set: |d, s| {
                d.up.pins.push(s.parse::<SpkiPin>()?);
                Ok(())
            },
            clear: Some(|d| d.up.pins.clear()),
            get: |d, out| out.extend(d.up.pins.iter().map(SpkiPin::to_text)),
        },
    },
    path!(UpstreamDraft: "ca_file", up.ca_file,
        "CA bundle (PEM) for this upstream; unset: the main ca_file"),
    word!(UpstreamDraft: "tls_min_version", up.tls_min_version: TlsVersion,
        words!(TlsVersion: "1.2" => TlsVersion::V1_2, "1.3" => TlsVersion::V1_3),
        "1.3",
        "lowest TLS version accepted ('1.2' only if the upstream needs it)"),
    Key {
        name: "bootstrap",
        list: true,
        kind: Kind::Text {
            #[cfg(feature = "reference")]
            form: "IP",
        },
        default: None,
        #[cfg(feature = "reference")]
        doc: "addresses of an https://NAME upstream (at most 8; never looked up in plaintext)",
        access: Access::Custom {
            set: |d, s| {
                // Here: the line that goes over is known.
                if d.up.bootstrap.len() >= MAX_BOOTSTRAP {
                    return Err(Reason::Rule("at most 8 bootstrap addresses per upstream"));
                }
                d.up.bootstrap
                    .push(IpAddr::from_str(s).map_err(|_| Reason::Rule("must be an IP address"))?);
                Ok(())
            },
            clear: Some(|d| d.up.bootstrap.clear()),
            get: |d, out| out.extend(d.up.bootstrap.iter().map(ToString::to_string)),
        },
    },
    word!(UpstreamDraft: "http_method", up.http_get: bool,
        words!(bool: "POST" | "post" => false, "GET" | "get" => true),
        "POST",
        "DoH request method (https:// upstreams only)"),
    flag!(UpstreamDraft: "sni", up.sni, "1",
        "send the authentication name as SNI (it is verified either way)"),
    flag!(UpstreamDraft: "tls_resumption", up.tls_resumption, "0",
        "allow TLS session resumption (it links connections to each other)"),
    flag!(UpstreamDraft: "enabled", enabled, "1", "0: the section is checked but not used"),
];

/// Whether `key` of a section of type `section_type` is a list key (`list KEY 'VALUE'`).
pub fn is_list(section_type: &str, key: &str) -> bool {
    match section_type {
        "lanveil" => MAIN.iter().any(|k| k.list && k.name == key),
        "upstream" => UPSTREAM.iter().any(|k| k.list && k.name == key),
        crate::model::INIT_ONLY_SECTION => crate::model::INIT_ONLY_KEYS
            .iter()
            .any(|&(k, list)| list && k == key),
        _ => false,
    }
}

/// The key reference as Markdown tables (one per section), as the README carries it.
#[cfg(feature = "reference")]
pub fn reference() -> String {
    let mut out = String::new();
    table(&mut out, "config lanveil 'main'", MAIN);
    out.push('\n');
    table(&mut out, "config upstream 'NAME'", UPSTREAM);
    out
}

#[cfg(feature = "reference")]
fn table<T>(out: &mut String, title: &str, keys: &[Key<T>]) {
    let _ = writeln!(out, "`{title}`:\n");
    out.push_str("| key | default | values | meaning |\n|---|---|---|---|\n");
    for k in keys {
        let default = match k.default {
            Some(d) if k.list => d.split_whitespace().collect::<Vec<_>>().join(" "),
            Some(d) => String::from(d),
            None => String::new(),
        };
        let default = if default.is_empty() {
            String::from("(unset)")
        } else {
            alloc::format!("`{default}`")
        };
        let values = match k.kind {
            Kind::Number { min, max } => alloc::format!("{min}..{max}"),
            Kind::Bool => String::from("0 | 1"),
            Kind::Text { form } => String::from(form),
        };
        let list = if k.list { " (list)" } else { "" };
        let _ = writeln!(
            out,
            "| `{}`{list} | {default} | {} | {} |",
            k.name,
            values.replace('|', "\\|"),
            k.doc.replace('|', "\\|")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses_and_every_name_is_unique() {
        fn check<T>(keys: &[Key<T>], mut fresh: impl FnMut() -> T) {
            for (i, k) in keys.iter().enumerate() {
                assert!(
                    keys[..i].iter().all(|o| o.name != k.name),
                    "{} twice",
                    k.name
                );
                if let Some(d) = k.default {
                    let mut t = fresh();
                    k.clear(&mut t);
                    if k.list {
                        for v in d.split_whitespace() {
                            assert_eq!(k.set(&mut t, v), Ok(()), "{} {v}", k.name);
                        }
                    } else {
                        assert_eq!(k.set(&mut t, d), Ok(()), "{} {d}", k.name);
                    }
                }
                assert_eq!(
                    matches!(k.access, Access::Custom { clear: Some(_), .. }),
                    k.list,
                    "{}: a list key, and only a list key, can be emptied",
                    k.name
                );
                assert_eq!(
                    matches!(k.access, Access::Number(..)),
                    matches!(k.kind, Kind::Number { .. }),
                    "{}: a number key has its range",
                    k.name
                );
                if let Kind::Number { min, max } = k.kind {
                    let mut t = fresh();
                    assert!(k.set(&mut t, &min.to_string()).is_ok(), "{}", k.name);
                    assert!(k.set(&mut t, &max.to_string()).is_ok(), "{}", k.name);
                    let over = u64::from(max) + 1;
                    assert_eq!(
                        k.set(&mut t, &over.to_string()),
                        Err(Reason::Range {
                            min: min.into(),
                            max: max.into()
                        }),
                        "{}",
                        k.name
                    );
                }
            }
        }
        check(MAIN, Config::default);
        check(UPSTREAM, UpstreamDraft::new);
    }

    #[test]
    fn defaults_come_from_the_table() {
        let c = Config::default();
        for k in MAIN {
            let want: Vec<String> = match k.default {
                Some(d) => d.split_whitespace().map(String::from).collect(),
                None => Vec::new(),
            };
            assert_eq!(k.values(&c), want, "{}", k.name);
        }
        let d = UpstreamDraft::new();
        assert!(d.enabled && d.up.sni && !d.up.tls_resumption && !d.up.http_get);
        assert_eq!(d.up.tls_min_version, TlsVersion::V1_3);
        assert_eq!(LogLevel::default(), c.daemon.log_level);
    }

    #[test]
    fn keyword_keys_read_their_words_and_write_the_first() {
        fn key<'a, T>(keys: &'a [Key<T>], name: &str) -> &'a Key<T> {
            keys.iter().find(|k| k.name == name).unwrap()
        }
        let mut c = Config::default();
        for (name, word, written) in [
            ("upstream_policy", "round-robin", "round_robin"),
            ("upstream_policy", "fastest", "fastest"),
            ("client_rate_action", "drop", "drop"),
            ("log_level", "warning", "warn"),
        ] {
            let k = key(MAIN, name);
            assert_eq!(k.set(&mut c, word), Ok(()), "{name} {word}");
            assert_eq!(k.values(&c), [written], "{name} {word}");
        }
        assert_eq!(c.upstreams.policy, SelectPolicy::Fastest);
        assert_eq!(c.limits.client_rate_action, RateAction::Drop);
        assert_eq!(c.daemon.log_level, LogLevel::Warn);
        let mut d = UpstreamDraft::new();
        for (name, word, written) in [
            ("tls_min_version", "1.2", "1.2"),
            ("http_method", "get", "GET"),
        ] {
            let k = key(UPSTREAM, name);
            assert_eq!(k.set(&mut d, word), Ok(()), "{name} {word}");
            assert_eq!(k.values(&d), [written], "{name} {word}");
        }
        assert_eq!(d.up.tls_min_version, TlsVersion::V1_2);
        assert!(d.up.http_get);
        let one_of = |name: &str| {
            let k = key(MAIN, name);
            k.set(&mut Config::default(), "x").err()
        };
        assert_eq!(
            one_of("upstream_policy"),
            Some(Reason::OneOf("failover, round_robin, fastest"))
        );
        assert_eq!(
            one_of("client_rate_action"),
            Some(Reason::OneOf("refuse, drop"))
        );
        assert_eq!(
            one_of("log_level"),
            Some(Reason::OneOf("error, warn, info, debug, trace"))
        );
        let one_of = |name: &str| {
            key(UPSTREAM, name)
                .set(&mut UpstreamDraft::new(), "x")
                .err()
        };
        assert_eq!(one_of("tls_min_version"), Some(Reason::OneOf("1.2, 1.3")));
        assert_eq!(one_of("http_method"), Some(Reason::OneOf("POST, GET")));
        assert_eq!(policy_word(SelectPolicy::RoundRobin), "round_robin");
        assert_eq!(LogLevel::Trace.as_str(), "trace");
        assert_eq!("warning".parse::<LogLevel>(), Ok(LogLevel::Warn));
    }

    #[test]
    fn an_upstream_section_writes_only_what_differs_from_the_defaults() {
        let mut c = Config::default();
        let text = c.to_uci();
        for key in [
            "tls_min_version",
            "http_method",
            "sni",
            "tls_resumption",
            "enabled",
        ] {
            assert!(!text.contains(key), "{key} in\n{text}");
        }
        let u = &mut c.upstreams.servers[0];
        u.tls_min_version = TlsVersion::V1_2;
        u.http_get = true;
        u.sni = false;
        u.tls_resumption = true;
        u.ca_file = Some("/etc/ca.pem".into());
        let text = c.to_uci();
        for line in [
            "\toption ca_file '/etc/ca.pem'\n",
            "\toption tls_min_version '1.2'\n",
            "\toption http_method 'GET'\n",
            "\toption sni '0'\n",
            "\toption tls_resumption '1'\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("enabled"), "{text}");
    }

    #[test]
    fn the_daemons_user_is_never_root() {
        assert!(parse_user("root").is_err());
        assert_eq!(parse_user("lanveil").as_deref(), Ok("lanveil"));
        assert!(parse_user("-x").is_err());
    }
}
