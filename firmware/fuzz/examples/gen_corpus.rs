//! Writes the committed seed corpus: `cargo run --example gen_corpus` (from firmware/fuzz). Small,
//! hand-made but realistic inputs per target (queries as dig sends them, answers as resolvers send
//! them, UCI files, packed configurations, sealed envelopes, DHCP/RA options).

use std::fs;
use std::path::Path;

use lanveil_config::Config;
use lanveil_config::control::{Request, Response, StatusReport};
use lanveil_config::state::State;

fn name(dotted: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for l in dotted.split('.').filter(|l| !l.is_empty()) {
        w.push(l.len() as u8);
        w.extend_from_slice(l.as_bytes());
    }
    w.push(0);
    w
}

/// `dig [+dnssec] [+bufsize=N | +noedns] NAME TYPE`.
fn query(id: u16, qname: &str, qtype: u16, edns: Option<(u16, bool, &[u8])>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    q.extend_from_slice(&name(qname));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((size, dnssec_ok, opts)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
        q.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        q.extend_from_slice(opts);
    }
    q
}

/// An answer to `q` (its question echoed) with the given records (owner compressed to the QNAME).
fn answer(q: &[u8], rcode: u8, records: &[(u16, u32, Vec<u8>)], opt: Option<&[u8]>) -> Vec<u8> {
    let qend = 12 + q[12..].iter().position(|&b| b == 0).unwrap() + 1 + 4;
    let mut r = q[..2].to_vec();
    r.extend_from_slice(&[
        0x81,
        0x80 | rcode,
        0,
        1,
        0,
        records.len() as u8,
        0,
        0,
        0,
        u8::from(opt.is_some()),
    ]);
    r.extend_from_slice(&q[12..qend]);
    for (t, ttl, rdata) in records {
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
    }
    if let Some(opts) = opt {
        r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        r.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        r.extend_from_slice(opts);
    }
    r
}

fn write(target: &str, file: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(file), bytes).unwrap();
}

fn prefixed(prefix: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(msg);
    v
}

const UCI_FULL: &str = "\
package lanveil

config lanveil 'main'
\tlist listen '127.0.0.1:53'
\tlist listen '[::1]:53'
\tlist listen '[fe80::1%2]:53'
\toption query_timeout_ms '1500'
\toption log_level 'debug'
\toption user 'lanveil'
\tlist allow '192.168.1.0/24'
\tlist allow '2001:db8:1::/48'
\toption local_domain 'home.example'
\toption canary_icloud '0'
\toption cache_entries '1024'
\toption serve_stale '1'
\toption state_file '/var/lib/lanveil/state'
\toption control_socket '/var/run/lanveil.sock'
\toption upstream_policy 'round_robin'

config upstream 'quad9'
\toption url 'tls://9.9.9.9:853#dns.quad9.net'
\tlist pin 'sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='

config upstream
\toption url 'tls://[2620:fe::fe]#dns.quad9.net'
\toption tls_min_version '1.2'
\toption sni '0'

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
";

const UCI_MIN: &str = "config upstream\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n";

const UCI_QUOTING: &str = "# comment\nconfig lanveil main # trailing\n\toption ca_file \"/etc/ssl/it\\\"s.pem\"\n\toption user lan'veil'\nconfig upstream 'a'\n\toption url 'https://192.0.2.7:8443/q#doh.example'\n\toption ca_file '/it'\\''s'\n";

fn main() {
    for (name, doc) in [
        (
            "rfc8908-example",
            &br#"{"captive": true, "user-portal-url": "https://example.org/portal.html", "venue-info-url": "https://flight.example.com/entertainment", "seconds-remaining": 326, "can-extend-session": true}"#[..],
        ),
        ("free", br#"{"captive":false}"#),
        (
            "nested",
            br#"{"x":[1,{"y":null},-2.5e3,"a\"b\u0041"],"captive":true,"user-portal-url":"http://plain.example/"}"#,
        ),
    ] {
        write("captive_api", name, doc);
    }
    let plain = query(0xbeef, "example.com", 1, None);
    let edns = query(0x1234, "example.com", 28, Some((4096, false, &[])));
    let dnssec = query(
        0x4321,
        "www.example.org",
        48,
        Some((1232, true, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])),
    );
    let ecs = query(
        7,
        "a.b.c.d.example",
        16,
        Some((512, false, &[0, 8, 0, 7, 0, 1, 24, 0, 192, 168, 1])),
    );
    let local = query(9, "printer.lan", 1, Some((1232, false, &[])));
    let ddr = query(10, "_dns.resolver.arpa", 64, None);
    let localhost = query(11, "localhost", 28, None);
    let canary = query(12, "use-application-dns.net", 1, None);
    let soa_apex = query(13, "home.arpa", 6, Some((1232, false, &[])));
    let mut long = String::new();
    for _ in 0..3 {
        long.push_str(&"x".repeat(63));
        long.push('.');
    }
    long.push_str("example");
    let long_q = query(14, &long, 1, Some((1232, false, &[])));
    let queries = [
        &plain, &edns, &dnssec, &ecs, &local, &ddr, &localhost, &canary, &soa_apex, &long_q,
    ];

    let a = answer(&plain, 0, &[(1, 3600, vec![93, 184, 216, 34])], None);
    let aaaa = answer(
        &edns,
        0,
        &[(
            28,
            300,
            [
                0x26, 0x06, 0x28, 0, 2, 0x20, 0, 1, 2, 0x48, 0x18, 0x93, 0x25, 0xc8, 0x19, 0x46,
            ]
            .to_vec(),
        )],
        Some(&[]),
    );
    let cname_rdata = vec![3, b'w', b'w', b'w', 0xc0, 0x0c];
    let cname = answer(
        &dnssec,
        0,
        &[(5, 60, cname_rdata.clone()), (1, 60, vec![10, 0, 0, 1])],
        Some(&[0, 12, 0, 4, 0, 0, 0, 0]),
    );
    let _ = &cname_rdata;
    let txt = answer(
        &ecs,
        0,
        &[
            (16, 30, b"\x0bhello world".to_vec()),
            (16, 30, vec![200; 201]),
        ],
        Some(&[0, 15, 0, 6, 0, 3, b's', b't', b'a', b'l']),
    );
    let servfail = answer(&edns, 2, &[], Some(&[0, 15, 0, 2, 0, 22]));
    let nx = {
        // NXDOMAIN with an SOA in the authority section.
        let mut r = answer(&plain, 3, &[], None);
        r[9] = 1;
        r.extend_from_slice(&[
            0xc0, 0x14, 0, 6, 0, 1, 0, 0, 0x0e, 0x10, 0, 22, 1, b'a', 0xc0, 0x14, 1, b'b', 0xc0,
            0x14, 0, 0, 0, 1, 0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08, 0, 0, 0x0e, 0x10,
        ]);
        let n = r.len();
        r[n - 4..].copy_from_slice(&300u32.to_be_bytes());
        r
    };
    let big: Vec<(u16, u32, Vec<u8>)> = (0..12).map(|i| (16, 60 + i, vec![b'x'; 150])).collect();
    let big = answer(&long_q, 0, &big, Some(&[0, 15, 0, 4, 0, 6, b'h', b'i']));
    let answers = [&a, &aaaa, &cname, &txt, &servfail, &nx, &big];

    let long_text = format!("{}.example.", ["x"; 60].concat());
    for (i, text) in ["www.Example.com.", "a..b", ".", &long_text]
        .iter()
        .enumerate()
    {
        write("dns_names", &format!("text-{i:02}"), text.as_bytes());
    }
    for (i, m) in queries.iter().chain(answers.iter()).enumerate() {
        write("dns_scan", &format!("msg-{i:02}"), m);
        write("dns_names", &format!("msg-{i:02}"), m);
        write(
            "rewrite_query",
            &format!("q-{i:02}"),
            &prefixed(&[0x42, 0x42], m),
        );
        write(
            "respond",
            &format!("q-{i:02}"),
            &prefixed(&[((i as u8) << 3) | (i as u8 % 8)], m),
        );
        write(
            "policy_decide",
            &format!("q-{i:02}"),
            &prefixed(
                &[
                    (i as u8).wrapping_mul(17),
                    1,
                    192,
                    168,
                    1,
                    10,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
                m,
            ),
        );
    }
    for (i, m) in answers.iter().enumerate() {
        for (j, view) in [
            [0xab, 0xcd, 0, 2, 0],
            [0, 7, 1, 4, 0xd0],
            [0, 9, 0x16, 0xff, 0xff],
            [0, 1, 2, 1, 0x20],
        ]
        .iter()
        .enumerate()
        {
            write(
                "rewrite_answer",
                &format!("a-{i:02}-{j}"),
                &prefixed(view, m),
            );
        }
        write("cache_ops", &format!("raw-{i:02}"), m);
    }
    // Framing: chunk sizes, then a stream of framed messages (and a zero-length frame).
    let mut stream = Vec::new();
    for m in answers.iter().take(3) {
        stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
        stream.extend_from_slice(m);
    }
    write("framing", "three", &prefixed(&[2, 0, 6], &stream));
    write("framing", "bytewise", &prefixed(&[1, 0], &stream[..40]));
    write(
        "framing",
        "zero-len",
        &[3, 5, 1, 200, 0, 2, 0xaa, 0xbb, 0, 0, 0, 1, 0xcc],
    );
    // Engine: random op streams (structured by `arbitrary`): seed with raw message bytes.
    for (i, m) in queries
        .iter()
        .take(4)
        .chain(answers.iter().take(2))
        .enumerate()
    {
        write("engine_ops", &format!("seed-{i:02}"), m);
    }

    // Configuration.
    write("uci_config", "full", UCI_FULL.as_bytes());
    write("uci_config", "minimal", UCI_MIN.as_bytes());
    write("uci_config", "quoting", UCI_QUOTING.as_bytes());
    let d = Config::default();
    write("uci_config", "default", d.to_uci().as_bytes());
    for (i, text) in [UCI_FULL, UCI_MIN, UCI_QUOTING].iter().enumerate() {
        if let Ok(c) = Config::from_uci_text(text) {
            write(
                "packed_config",
                &format!("packed-{i}"),
                &prefixed(&[0], &c.pack()),
            );
            write(
                "envelope",
                &format!("config-{i}"),
                &prefixed(&[0], &c.pack()),
            );
        }
    }
    write("packed_config", "default", &prefixed(&[0], &d.pack()));
    write(
        "envelope",
        "state",
        &prefixed(
            &[0],
            &State {
                last_good_wall: 1_795_478_108,
            }
            .encode(),
        ),
    );
    for (i, r) in [Request::Status, Request::QueryLog, Request::Reload]
        .iter()
        .enumerate()
    {
        write(
            "envelope",
            &format!("request-{i}"),
            &prefixed(&[0], &r.encode()),
        );
    }
    let status = Response::Status(Box::new(StatusReport {
        version: "lanveil 0.1.0".into(),
        counters: vec![("queries".into(), 7)],
        ..Default::default()
    }));
    write(
        "envelope",
        "response-status",
        &prefixed(&[0], &status.encode()),
    );
    write(
        "envelope",
        "response-reload",
        &prefixed(
            &[0],
            &Response::Reloaded(Err("line 3: bad".into())).encode(),
        ),
    );

    // Captive portal / IPv6-only preferred.
    let uri = b"https://portal.example.net:8443/api?x=1";
    let mut dhcp4 = vec![53, 1, 5, 114, uri.len() as u8];
    dhcp4.extend_from_slice(uri);
    dhcp4.extend_from_slice(&[108, 4, 0, 0, 0x07, 0x08, 0, 255]);
    write("capport", "dhcpv4", &prefixed(&[0x80], &dhcp4));
    let mut dhcp4_split = vec![114, 10];
    dhcp4_split.extend_from_slice(&uri[..10]);
    dhcp4_split.push(114);
    dhcp4_split.push((uri.len() - 10) as u8);
    dhcp4_split.extend_from_slice(&uri[10..]);
    dhcp4_split.push(255);
    write(
        "capport",
        "dhcpv4-split",
        &prefixed(&[0x80 | 7], &dhcp4_split),
    );
    let mut dhcp6 = vec![2, 0x12, 0x34, 0x56, 0, 103, 0, uri.len() as u8];
    dhcp6.extend_from_slice(uri);
    write("capport", "dhcpv6", &prefixed(&[1], &dhcp6));
    let unrestricted = b"urn:ietf:params:capport:unrestricted";
    let units = (2 + unrestricted.len()).div_ceil(8);
    let mut ra = vec![37, units as u8];
    ra.extend_from_slice(unrestricted);
    ra.resize(units * 8, 0);
    write(
        "capport",
        "ra",
        &prefixed(
            &[0x80 | 2],
            &[&[1u8, 1, 0, 0x11, 0x22, 0x33, 0x44, 0x55][..], &ra].concat(),
        ),
    );
    write("capport", "ra-option", &prefixed(&[3 | 2 << 3], &ra));
    write("capport", "v6only", &[4, 108, 4, 0, 0, 0, 60]);
    write(
        "capport",
        "uri",
        &prefixed(&[5], b"https://[2001:db8::1]:443/capport"),
    );
    write("capport", "nat64", &prefixed(&[6], b"64:ff9b::/96"));
    println!("corpus written");
}
