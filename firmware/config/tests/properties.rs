//! Property tests of the configuration forms: random valid configurations survive `to_uci` →
//! `from_uci_text` and `pack` → `unpack` unchanged, and random UCI documents survive `uci::write` →
//! `uci::parse`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use lanveil_config::uci::{self, Document, Section, Value};
use lanveil_config::{
    Config, LogLevel, Prefix, SelectPolicy, SpkiPin, TlsVersion, Transport, Upstream, UpstreamUrl,
};
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

/// Socket addresses as UCI and postcard can both carry them (no IPv6 scope ID or flow info: see the
/// fuzz crate's known bug 3).
fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    (ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// Lower-case host names as `parse_auth_name` stores them.
fn host_name() -> impl Strategy<Value = String> {
    let label = "[a-z0-9_]([a-z0-9_-]{0,10}[a-z0-9_])?";
    prop::collection::vec(label, 1..4)
        .prop_map(|l| l.join("."))
        .prop_filter("not an IP literal", |n| n.parse::<IpAddr>().is_err())
}

/// Section and option names as libuci accepts them (`uci_validate_name`).
fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_]{1,13}"
}

/// Section types: libuci allows any printable ASCII but spaces (quoted on writing when needed).
fn section_type() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.#;'-]{0,12}"
}

/// Absolute paths, including characters that need quoting in UCI.
fn path() -> impl Strategy<Value = String> {
    "/[a-zA-Z0-9 ._'\"#\\\\-]{0,30}"
}

fn upstream() -> impl Strategy<Value = Upstream> {
    let url = prop_oneof![
        (socket_addr(), host_name()).prop_map(|(a, n)| (
            Transport::Tls,
            Some(a),
            a.port(),
            n,
            String::new(),
            false
        )),
        (
            socket_addr(),
            host_name(),
            "(/[a-z0-9-]{1,10}){1,2}",
            any::<bool>()
        )
            .prop_map(|(a, n, p, get)| (Transport::Https, Some(a), a.port(), n, p, get)),
        (
            any::<u16>(),
            host_name(),
            "(/[a-z0-9-]{1,10}){1,2}",
            any::<bool>()
        )
            .prop_map(|(port, n, p, get)| (Transport::Https, None, port, n, p, get)),
        (socket_addr(), host_name())
            .prop_filter("DoQ never on port 53", |(a, _)| a.port() != 53)
            .prop_map(|(a, n)| (Transport::Quic, Some(a), a.port(), n, String::new(), false)),
    ];
    (
        ident(),
        url,
        prop::collection::vec(any::<[u8; 32]>(), 0..=8),
        prop::option::of(path()),
        any::<bool>(),
        prop::collection::vec(ip(), 1..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                name,
                (transport, addr, port, auth_name, path, http_get),
                pins,
                ca_file,
                tls12,
                bootstrap,
                sni,
                resumption,
            )| {
                let mut u = Config::default().upstreams.servers[0].clone();
                u.name = name;
                u.url = UpstreamUrl {
                    transport,
                    addr,
                    port,
                    auth_name,
                    path,
                };
                u.pins = pins.into_iter().map(SpkiPin).collect();
                u.ca_file = ca_file;
                u.tls_min_version = if tls12 {
                    TlsVersion::V1_2
                } else {
                    TlsVersion::V1_3
                };
                u.bootstrap = if addr.is_none() {
                    bootstrap
                } else {
                    Vec::new()
                };
                u.http_get = http_get;
                u.sni = sni;
                u.tls_resumption = resumption;
                u
            },
        )
}

fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, l)| (IpAddr::V4(Ipv4Addr::from(a)), l)),
        (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, l)| (IpAddr::V6(Ipv6Addr::from(a)), l)),
    ]
    .prop_map(|(a, l)| Prefix::new(a, l).unwrap())
}

prop_compose! {
    fn knobs()(
        query_timeout_ms in 100u32..=30_000,
        max_inflight in 16u32..=32_768,
        max_tcp_clients in 1u32..=4_096,
        tcp_pipeline in 1u32..=1_024,
        tcp_idle_timeout_ms in 500u32..=300_000,
        upstream_idle_timeout_ms in 1_000u32..=3_600_000,
        upstream_connect_timeout_ms in 100u32..=60_000,
        upstream_max_connections in 1u32..=16,
        upstream_pipeline in 1u32..=4_096,
        reconnect_backoff_max_ms in 100u32..=60_000,
        drain_timeout_ms in 0u32..=60_000,
        query_log in 0u32..=10_000,
        cache_entries in 16u32..=200_000,
        cache_max_kib in 64u32..=65_536,
        cache_min_ttl in 0u32..=3_600,
        cache_max_ttl in 1u32..=604_800,
        serve_stale_max_s in 1u32..=604_800,
    ) -> [u32; 17] {
        [query_timeout_ms, max_inflight, max_tcp_clients, tcp_pipeline, tcp_idle_timeout_ms,
         upstream_idle_timeout_ms, upstream_connect_timeout_ms, upstream_max_connections, upstream_pipeline,
         reconnect_backoff_max_ms, drain_timeout_ms, query_log, cache_entries, cache_max_kib, cache_min_ttl,
         cache_max_ttl, serve_stale_max_s]
    }
}

fn config() -> impl Strategy<Value = Config> {
    let flags = prop::array::uniform8(any::<bool>());
    let texts = (
        prop::option::of(path()),
        prop::option::of("[a-z_][a-z0-9_.-]{0,15}"),
        prop::option::of(path()),
        prop::option::of(path()),
        prop::option::of(host_name()),
    );
    (
        prop::collection::btree_set(socket_addr(), 1..4),
        prop::collection::vec(upstream(), 1..5),
        0usize..5,
        0usize..3,
        knobs(),
        flags,
        texts,
        prop::collection::vec(prefix(), 1..4),
    )
        .prop_map(
            |(
                listen,
                upstreams,
                level,
                policy,
                k,
                f,
                (ca_file, user, state_file, control_socket, local_domain),
                allow,
            )| {
                let mut c = Config::default();
                c.listen.addrs = listen.into_iter().collect();
                c.upstreams.servers = upstreams;
                // Section names are unique in a UCI file (a repeated one reopens the section).
                let mut seen = std::collections::BTreeSet::new();
                for (i, u) in c.upstreams.servers.iter_mut().enumerate() {
                    while !seen.insert(u.name.clone()) {
                        u.name = format!("{}_{i}", u.name);
                    }
                }
                c.upstreams.ca_file = ca_file;
                c.daemon.user = user;
                c.daemon.state_file = state_file;
                c.daemon.control_socket = control_socket;
                c.policy.local_domain = local_domain;
                c.policy.allow = allow;
                c.daemon.log_level = [
                    LogLevel::Error,
                    LogLevel::Warn,
                    LogLevel::Info,
                    LogLevel::Debug,
                    LogLevel::Trace,
                ][level];
                c.upstreams.policy = [
                    SelectPolicy::Failover,
                    SelectPolicy::RoundRobin,
                    SelectPolicy::Fastest,
                ][policy];
                [
                    c.limits.query_timeout_ms,
                    c.limits.max_inflight,
                    c.listen.max_tcp_clients,
                    c.listen.tcp_pipeline,
                    c.listen.tcp_idle_timeout_ms,
                    c.upstreams.idle_timeout_ms,
                    c.upstreams.connect_timeout_ms,
                    c.upstreams.max_connections,
                    c.upstreams.pipeline,
                    c.upstreams.reconnect_backoff_max_ms,
                    c.daemon.drain_timeout_ms,
                    c.daemon.query_log,
                    c.cache.entries,
                    c.cache.max_kib,
                    c.cache.min_ttl,
                    c.cache.max_ttl,
                    c.cache.serve_stale_max_s,
                ] = k;
                [
                    c.cache.enabled,
                    c.cache.serve_stale,
                    c.policy.local_zones,
                    c.policy.canary_firefox,
                    c.policy.canary_icloud,
                    _,
                    _,
                    _,
                ] = f;
                c
            },
        )
}

/// What libuci holds after reading `statements` (`option`/`list` lines of one section, in order):
/// `option` replaces the key's value or list where it is (`uci_set`), `option KEY ''` removes the key,
/// `list` appends, an `option` value becoming the list's first one (`uci_add_list`).
fn libuci_model(statements: Vec<Value>) -> Vec<Value> {
    let mut slots: Vec<(String, Option<Vec<Value>>)> = Vec::new();
    for v in statements {
        let at = slots.iter().position(|(k, vs)| *k == v.key && vs.is_some());
        match (at, v.is_list) {
            (Some(i), true) => {
                let vs = slots[i].1.as_mut().unwrap();
                for old in vs.iter_mut() {
                    old.is_list = true;
                }
                vs.push(v);
            }
            (Some(i), false) if v.value.is_empty() => slots[i].1 = None,
            (Some(i), false) => slots[i].1 = Some(vec![v]),
            (None, false) if v.value.is_empty() => {}
            (None, _) => slots.push((v.key.clone(), Some(vec![v]))),
        }
    }
    slots
        .into_iter()
        .filter_map(|(_, vs)| vs)
        .flatten()
        .collect()
}

/// `option`/`list` statements, any text but NUL in values (newlines, `#`, `;` and quotes included),
/// keys from a few (so that they repeat) or any.
fn statements() -> impl Strategy<Value = Vec<Value>> {
    let key = prop_oneof![
        prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
        ident()
    ];
    let value = (key, "[^\x00]{0,30}", any::<bool>()).prop_map(|(key, value, is_list)| Value {
        key,
        value,
        is_list,
        line: 0,
    });
    prop::collection::vec(value, 0..8)
}

/// UCI documents as the parser produces them (line numbers aside): each key once, as one `option`
/// value or a `list`'s values ([`libuci_model`]); section names unique (a repeated name reopens the
/// section).
fn document() -> impl Strategy<Value = Document> {
    let section = (section_type(), prop::option::of(ident()), statements()).prop_map(
        |(ty, name, statements)| Section {
            ty,
            name,
            line: 0,
            values: libuci_model(statements),
        },
    );
    prop::collection::vec(section, 0..4)
        .prop_filter("section names are unique", |sections| {
            let named: Vec<&str> = sections.iter().filter_map(|s| s.name.as_deref()).collect();
            (1..named.len()).all(|i| !named[..i].contains(&named[i]))
        })
        .prop_map(|sections| Document { sections })
}

fn strip_lines(mut d: Document) -> Document {
    for s in &mut d.sections {
        s.line = 0;
        for v in &mut s.values {
            v.line = 0;
        }
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn to_uci_then_from_uci_text_is_identity(c in config()) {
        prop_assert_eq!(c.validate(), Ok(()));
        let text = c.to_uci();
        prop_assert_eq!(Config::from_uci_text(&text), Ok(c), "{}", text);
    }

    #[test]
    fn pack_then_unpack_is_identity(c in config()) {
        prop_assert_eq!(Config::unpack(&c.pack()), Ok(c));
    }

    #[test]
    fn uci_write_then_parse_is_identity(d in document()) {
        let text = uci::write(&d);
        prop_assert_eq!(strip_lines(uci::parse(&text).unwrap()), d, "{}", text);
    }

    #[test]
    fn statements_mean_what_libuci_makes_of_them(statements in statements()) {
        // Written one statement a line, in order (`uci::write` does not merge anything).
        let raw = Document {
            sections: vec![Section {
                ty: "t".into(),
                name: None,
                line: 0,
                values: statements.clone(),
            }],
        };
        let text = uci::write(&raw);
        let doc = strip_lines(uci::parse(&text).unwrap());
        prop_assert_eq!(&doc.sections[0].values, &libuci_model(statements), "{}", text);
    }
}
