//! `lanveil-ctl probe`: dial a candidate upstream as the daemon would (same URL notation, same
//! authentication rules, the daemon's ALPN: `dot`, `h2`, `doq`), send N queries on one connection and
//! report handshake time, query RTT, TLS version, padding, EDE and the SPKI pins of the presented chain.
//! OK means a real answer to each query: a DNS response to the question asked, with the message ID
//! sent (0 for DoH and DoQ, as the daemon sends them).
//!
//! DoQ: the same QUIC transport as the daemon (quinn's state machine, driven blocking here), one
//! stream per query; the handshake time is the QUIC handshake's (there is no separate TCP connect).
//!
//! DoH: the daemon speaks HTTP/2 only (ALPN `h2`), so the probe does too ([`crate::http2`], blocking,
//! no tokio): ALPN `h2` offered alone, one request per query on one connection, sent with the
//! upstream's `http_method` as the daemon sends it (POST `application/dns-message` by default, GET
//! `?dns=` base64url when asked: [`probe_with_method`]) and judged as the daemon judges the answer.
//! A server that does not select h2 FAILS: the daemon would refuse it.
//!
//! Each query (write and read, however the server trickles its bytes) is bounded by `--timeout`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lanveil_config::{Transport, UpstreamUrl};

use crate::dns::{self, QueryOpts, Reply};
use crate::http2;
use crate::tls::{self, Auth, ConnectError, Deadline, Handshake, TlsStream};

/// Why a server without h2 fails the probe.
const NO_H2: &str =
    "the daemon speaks DNS over HTTPS over HTTP/2 only and would refuse this upstream";

/// Probe settings.
#[derive(Debug, Clone)]
pub struct ProbeOpts {
    /// Name asked for the RTT series.
    pub name: String,
    /// How many queries in the series.
    pub queries: usize,
    /// Name whose answer should carry an Extended DNS Error at a validating resolver (DNSSEC-bogus);
    /// `None` to skip.
    pub ede_name: Option<String>,
    /// Bound on the connect + handshake, and on each query (one deadline for all its I/O).
    pub timeout: Duration,
}

impl Default for ProbeOpts {
    fn default() -> Self {
        Self {
            name: "example.com".into(),
            queries: 5,
            ede_name: Some("dnssec-failed.org".into()),
            timeout: Duration::from_secs(5),
        }
    }
}

/// RTT statistics, ms.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Rtt {
    /// Fastest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Slowest.
    pub max: f64,
    /// max − min.
    pub spread: f64,
    /// Every sample, in order.
    pub samples: Vec<f64>,
}

impl Rtt {
    fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            ((s[n / 2 - 1] + s[n / 2]) * 50.0).round() / 100.0
        };
        Some(Self {
            min: s[0],
            median,
            max: s[n - 1],
            spread: ((s[n - 1] - s[0]) * 100.0).round() / 100.0,
            samples: samples.to_vec(),
        })
    }
}

/// The outcome of probing one upstream.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProbeReport {
    /// The upstream as given.
    pub upstream: String,
    /// `dot`, `doh` or `doq`.
    pub transport: &'static str,
    /// The address dialled.
    pub address: Option<SocketAddr>,
    /// The authentication name.
    pub auth_name: String,
    /// The CA bundle used.
    pub ca_file: Option<String>,
    /// Certificate chain valid for the name (and pins matched, if given).
    pub authenticated: bool,
    /// Everything worked: authenticated, and every query of the series got a valid answer to its
    /// question.
    pub ok: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Handshake details (also on failure: the chain the server presented).
    pub handshake: Handshake,
    /// HTTP version the queries used (DoH only: always HTTP/2, as the daemon's).
    pub http_version: Option<String>,
    /// The request method the DoH queries used (`POST` or `GET`, the upstream's `http_method`).
    pub http_method: Option<http2::Method>,
    /// The server selected ALPN h2 (DoH only); without it the probe fails.
    pub server_selected_h2: Option<bool>,
    /// Remarks.
    pub note: Option<String>,
    /// Queries sent in the series.
    pub queries_sent: usize,
    /// Queries answered.
    pub queries_answered: usize,
    /// RCODE of the series' answers (the last one).
    pub rcode: Option<String>,
    /// RTT of the series.
    pub rtt_ms: Option<Rtt>,
    /// Answers carried an EDNS padding option (RFC 7830/8467).
    pub padding: Option<bool>,
    /// Size of the last answer, octets.
    pub answer_size: Option<usize>,
    /// Extended DNS Errors seen in any answer (code, name, text).
    pub ede: Vec<(u16, String, String)>,
    /// The answer to the EDE test name: RCODE.
    pub ede_test: Option<String>,
}

/// Probes one upstream (DoH with POST, the daemon's default).
pub fn probe(url: &UpstreamUrl, addr: SocketAddr, auth: &Auth, opts: &ProbeOpts) -> ProbeReport {
    probe_with_method(url, addr, auth, opts, http2::Method::Post)
}

/// Probes one upstream, DoH queries sent with `method` (the upstream's `http_method`; DoT and DoQ
/// have none).
pub fn probe_with_method(
    url: &UpstreamUrl,
    addr: SocketAddr,
    auth: &Auth,
    opts: &ProbeOpts,
    method: http2::Method,
) -> ProbeReport {
    let mut r = ProbeReport {
        upstream: url.to_string(),
        transport: match url.transport {
            Transport::Tls => "dot",
            Transport::Https => "doh",
            Transport::Quic => "doq",
        },
        address: Some(addr),
        auth_name: auth.auth_name.clone(),
        ca_file: tls::ca_path(auth.ca_file.as_deref()).ok(),
        ..ProbeReport::default()
    };
    match url.transport {
        Transport::Tls => probe_dot(&mut r, addr, auth, opts),
        Transport::Https => probe_doh(&mut r, url, addr, auth, opts, method),
        Transport::Quic => probe_doq(&mut r, addr, auth, opts),
    }
    r
}

/// The connection, once its handshake authenticated the server (recorded in `r` with what the
/// handshake showed); `None` when it did not, the reason and what was seen recorded instead.
fn authenticated<C>(
    r: &mut ProbeReport,
    connected: Result<(C, Handshake), ConnectError>,
) -> Option<C> {
    match connected {
        Ok((conn, hs)) => {
            r.authenticated = true;
            r.handshake = hs;
            Some(conn)
        }
        Err(e) => {
            r.error = Some(e.reason);
            r.handshake = *e.seen;
            None
        }
    }
}

fn probe_dot(r: &mut ProbeReport, addr: SocketAddr, auth: &Auth, opts: &ProbeOpts) {
    let Some(mut stream) = authenticated(r, tls::connect(addr, auth, &["dot"], opts.timeout))
    else {
        return;
    };
    run_series(r, opts, |q| dot_query(&mut stream, q, opts.timeout));
    let _ = stream.sock.set_write_timeout(Some(opts.timeout));
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

fn probe_doq(r: &mut ProbeReport, addr: SocketAddr, auth: &Auth, opts: &ProbeOpts) {
    let Some(mut conn) = authenticated(r, crate::doq::connect(addr, auth, opts.timeout)) else {
        return;
    };
    r.note =
        Some("DNS over QUIC (RFC 9250): one stream per query, handshake time is QUIC's".into());
    run_series(r, opts, |q| {
        let msg = conn.exchange(q, opts.timeout)?;
        dns::parse_reply(&msg).map_err(|e| e.to_string())
    });
    conn.close();
}

fn dot_query(s: &mut TlsStream, query: &[u8], timeout: Duration) -> Result<Reply, String> {
    let mut io = Deadline::new(s, Instant::now() + timeout);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    let io_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer in time".to_string()
        }
        std::io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => format!("{e}"),
    };
    io.write_all(&framed).map_err(io_error)?;
    io.flush().map_err(io_error)?;
    let msg = dns::read_framed(&mut io).map_err(io_error)?;
    dns::parse_reply(&msg).map_err(|e| e.to_string())
}

/// The reply answers `query`: same ID, same question (name, type, class; the name's case aside).
fn check_answer(reply: &Reply, query: &[u8], id: u16) -> Result<(), String> {
    if reply.id != id {
        return Err(format!(
            "answer with message ID {} to a query with ID {id}",
            reply.id
        ));
    }
    let Ok(asked) = dns::parse_question(query) else {
        return Err("internal: the query does not parse".into());
    };
    if reply.question != Some(asked.clone()) {
        return Err(format!(
            "the answer is not for the question asked ({}): it carries {}",
            asked.describe(),
            reply
                .question
                .as_ref()
                .map_or_else(|| "no question".to_string(), dns::Question::describe)
        ));
    }
    Ok(())
}

/// Sends the RTT series and the EDE test through `exchange`, filling the report.
fn run_series(
    r: &mut ProbeReport,
    opts: &ProbeOpts,
    mut exchange: impl FnMut(&[u8]) -> Result<Reply, String>,
) {
    let mut samples = Vec::new();
    let mut last_error = None;
    for _ in 0..opts.queries.max(1) {
        let id = if r.transport == "doh" || r.transport == "doq" {
            0
        } else {
            dns::random_id()
        };
        let q = match dns::build_query(
            &opts.name,
            dns::qtype::A,
            QueryOpts {
                id,
                ..QueryOpts::default()
            },
        ) {
            Ok(q) => q,
            Err(e) => {
                r.error = Some(e.to_string());
                return;
            }
        };
        r.queries_sent += 1;
        let start = Instant::now();
        match exchange(&q).and_then(|reply| check_answer(&reply, &q, id).map(|()| reply)) {
            Ok(reply) => {
                samples.push(tls::ms(start.elapsed()));
                r.queries_answered += 1;
                r.rcode = Some(reply.rcode_name());
                r.padding = Some(r.padding.unwrap_or(false) || reply.padding.is_some());
                r.answer_size = Some(reply.size);
                note_ede(r, &reply);
            }
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
    }
    r.rtt_ms = Rtt::of(&samples);
    if let (Some(name), None) = (&opts.ede_name, &last_error) {
        let id = if r.transport == "doh" || r.transport == "doq" {
            0
        } else {
            dns::random_id()
        };
        if let Ok(q) = dns::build_query(
            name,
            dns::qtype::A,
            QueryOpts {
                id,
                ..QueryOpts::default()
            },
        ) && let Ok(reply) = exchange(&q)
            && check_answer(&reply, &q, id).is_ok()
        {
            r.ede_test = Some(reply.rcode_name());
            note_ede(r, &reply);
        }
    }
    r.ok = r.authenticated && r.queries_answered > 0 && last_error.is_none();
    if let Some(e) = last_error {
        r.error = Some(format!(
            "query {} of {}: {e}",
            r.queries_answered + 1,
            opts.queries.max(1)
        ));
    }
}

fn note_ede(r: &mut ProbeReport, reply: &Reply) {
    for (code, text) in &reply.ede {
        let e = (*code, dns::ede_name(*code).to_string(), text.clone());
        if !r.ede.contains(&e) {
            r.ede.push(e);
        }
    }
}

fn probe_doh(
    r: &mut ProbeReport,
    url: &UpstreamUrl,
    addr: SocketAddr,
    auth: &Auth,
    opts: &ProbeOpts,
    method: http2::Method,
) {
    r.http_method = Some(method);
    // As the daemon dials it: ALPN `h2` only, and nothing but HTTP/2 after it.
    let connected = tls::connect(addr, auth, &["h2"], opts.timeout).map_err(|mut e| {
        if e.alpn_refused {
            e.reason = format!("the server refused ALPN h2 ({}): {NO_H2}", e.reason);
            r.server_selected_h2 = Some(false);
        }
        e
    });
    let Some(mut stream) = authenticated(r, connected) else {
        return;
    };
    let selected_h2 = r.handshake.alpn_selected.as_deref() == Some("h2");
    r.server_selected_h2 = Some(selected_h2);
    if !selected_h2 {
        r.error = Some(format!(
            "the server selected {} instead of ALPN h2: {NO_H2}",
            match r.handshake.alpn_selected.as_deref() {
                Some(p) => format!("ALPN {p}"),
                None => "no ALPN protocol".to_string(),
            }
        ));
        stream.conn.send_close_notify();
        let _ = stream.flush();
        return;
    }
    r.http_version = Some("HTTP/2".into());
    let authority = if url.port == lanveil_config::HTTPS_PORT {
        auth.auth_name.clone()
    } else {
        format!("{}:{}", auth.auth_name, url.port)
    };
    let mut client = http2::Client::new(&authority, &url.path).with_method(method);
    run_series(r, opts, |q| {
        let mut io = Deadline::new(&mut stream, Instant::now() + opts.timeout);
        doh_exchange(&mut client, &mut io, q)
    });
    let mut io = Deadline::new(&mut stream, Instant::now() + opts.timeout);
    client.goodbye(&mut io);
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

/// One DoH query on `client`'s connection, the answer judged as the daemon judges it (`read_answer`
/// in `firmware/src/upstream/doh.rs`): status 200, `Content-Type: application/dns-message`, a body of
/// at most 65,535 octets that is a DNS response.
fn doh_exchange(
    client: &mut http2::Client,
    io: &mut (impl std::io::Read + Write),
    query: &[u8],
) -> Result<Reply, String> {
    let resp = client.request(io, query).map_err(|e| e.to_string())?;
    if resp.status != 200 {
        let other = match client.method() {
            http2::Method::Post => http2::Method::Get,
            http2::Method::Get => http2::Method::Post,
        };
        let hint = if resp.status == 405 {
            format!(
                "; the server refuses {} (405 Method Not Allowed): does it take {other}? \
                 (probe --http-method {}, or the upstream's option http_method '{other}')",
                client.method(),
                other.as_str().to_ascii_lowercase()
            )
        } else {
            String::new()
        };
        return Err(format!(
            "HTTP status {} (not a DoH answer){hint}",
            resp.status
        ));
    }
    // The daemon takes exactly this content type, and nothing without one.
    match resp.content_type.as_deref() {
        Some(ct) if ct.eq_ignore_ascii_case(http2::DNS_MESSAGE) => {}
        Some(ct) => {
            return Err(format!(
                "HTTP 200 with Content-Type {ct:?}, not a DNS answer"
            ));
        }
        None => return Err("HTTP 200 without a Content-Type, not a DNS answer".into()),
    }
    dns::parse_reply(&resp.body).map_err(|e| e.to_string())
}

/// The report in words.
pub fn render(r: &ProbeReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let kind = match r.transport {
        "dot" => "DNS over TLS",
        "doq" => "DNS over QUIC",
        _ => "DNS over HTTPS",
    };
    let verdict = if r.ok { "OK" } else { "FAILED" };
    let _ = writeln!(o, "{} ({kind}) — {verdict}", r.upstream);
    if let Some(a) = r.address {
        let _ = writeln!(o, "  address         {a}");
    }
    let _ = writeln!(
        o,
        "  authenticated   {}",
        if r.authenticated {
            format!(
                "yes: certificate valid for {} (CA bundle {})",
                r.auth_name,
                r.ca_file.as_deref().unwrap_or("?")
            )
        } else {
            "NO".to_string()
        }
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "  error           {e}");
    }
    let h = &r.handshake;
    // QUIC has no TCP connect (its handshake time is on the next line).
    if r.transport != "doq" && (h.tcp_connect_ms > 0.0 || h.tls_version.is_some()) {
        let _ = writeln!(o, "  TCP connect     {:.2} ms", h.tcp_connect_ms);
    }
    if let Some(v) = &h.tls_version {
        let _ = writeln!(
            o,
            "  {:<15} {:.2} ms, {v}, {}",
            if r.transport == "doq" {
                "QUIC handshake"
            } else {
                "TLS handshake"
            },
            h.tls_handshake_ms,
            h.cipher_suite.as_deref().unwrap_or("?")
        );
        let _ = writeln!(
            o,
            "  ALPN            offered {}; server selected {}",
            h.alpn_offered.join(", "),
            h.alpn_selected.as_deref().unwrap_or("none")
        );
    }
    if let Some(hv) = &r.http_version {
        match r.http_method {
            Some(m) => {
                let _ = writeln!(o, "  HTTP            {hv}, {m}");
            }
            None => {
                let _ = writeln!(o, "  HTTP            {hv}");
            }
        }
    }
    if let Some(n) = &r.note {
        let _ = writeln!(o, "  note            {n}");
    }
    if r.queries_sent > 0 {
        let _ = write!(
            o,
            "  queries         {}/{} answered",
            r.queries_answered, r.queries_sent
        );
        if let Some(rc) = &r.rcode {
            let _ = write!(o, " ({rc})");
        }
        let _ = writeln!(o);
    }
    if let Some(rtt) = &r.rtt_ms {
        let _ = writeln!(
            o,
            "  query RTT       median {:.2} ms (min {:.2}, max {:.2}, spread {:.2}; n={})",
            rtt.median,
            rtt.min,
            rtt.max,
            rtt.spread,
            rtt.samples.len()
        );
    }
    if let Some(p) = r.padding {
        let _ = writeln!(
            o,
            "  padding         {}",
            if p {
                format!(
                    "yes (answers carry RFC 7830 padding; last answer {} octets)",
                    r.answer_size.unwrap_or(0)
                )
            } else {
                format!(
                    "no (answers are not padded; last answer {} octets)",
                    r.answer_size.unwrap_or(0)
                )
            }
        );
    }
    if r.queries_answered > 0 {
        if r.ede.is_empty() {
            let _ = writeln!(
                o,
                "  EDE             none seen{}",
                r.ede_test
                    .as_ref()
                    .map(|rc| format!(" (DNSSEC-bogus test name answered {rc})"))
                    .unwrap_or_default()
            );
        } else {
            for (i, (code, name, text)) in r.ede.iter().enumerate() {
                let label = if i == 0 { "EDE" } else { "" };
                let _ = writeln!(
                    o,
                    "  {label:<15} {code} {name}{}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                );
            }
        }
    }
    for (i, c) in h.chain.iter().enumerate() {
        let label = if i == 0 { "pins" } else { "" };
        let exp = c
            .not_after
            .map(|t| format!("  expires {}", crate::time_fmt::date(t)))
            .unwrap_or_default();
        let _ = writeln!(o, "  {label:<15} {:<12} {}{exp}", c.role, c.pin);
    }
    if !h.chain.is_empty() && r.authenticated {
        let _ = writeln!(
            o,
            "  to pin          list pin '{}'   (add an intermediate's pin too, so a leaf renewal keeps working)",
            h.chain[0].pin
        );
    } else if !h.chain.is_empty() {
        let _ = writeln!(
            o,
            "  (pins above are of a chain that was NOT authenticated — do not pin without checking it)"
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::{Method, test_server};

    /// The DoH series of [`probe_doh`] after its handshake, against the in-process server: the
    /// report, and the requests the server saw.
    fn doh_series(method: Method, opts: &ProbeOpts) -> (ProbeReport, Vec<test_server::Seen>) {
        let (mut io, server) = test_server::spawn(test_server::get_only);
        let mut client = http2::Client::new("doh.test", "/dns-query").with_method(method);
        let mut r = ProbeReport {
            transport: "doh",
            authenticated: true,
            http_method: Some(method),
            ..ProbeReport::default()
        };
        run_series(&mut r, opts, |q| doh_exchange(&mut client, &mut io, q));
        client.goodbye(&mut io);
        drop(io);
        (r, server.join().unwrap())
    }

    /// A server that takes only GET (405 to POST): OK when the probe sends GET, as the daemon does
    /// for `http_method GET` (`PATH?dns=` base64url, ID 0, no body), and FAILED with POST, the reason
    /// naming the way out.
    #[test]
    fn a_get_only_doh_server_is_ok_with_get_and_fails_with_post() {
        use base64::Engine as _;
        let opts = ProbeOpts {
            queries: 3,
            ..ProbeOpts::default()
        };
        let (r, seen) = doh_series(Method::Get, &opts);
        assert!(r.ok, "{r:?}");
        assert_eq!((r.queries_sent, r.queries_answered), (3, 3), "{r:?}");
        assert_eq!(r.rcode.as_deref(), Some("NOERROR"));
        assert_eq!(r.ede_test.as_deref(), Some("NOERROR"));
        assert_eq!(r.error, None);
        // The series, then the EDE test name.
        let names = [
            "example.com",
            "example.com",
            "example.com",
            "dnssec-failed.org",
        ];
        assert_eq!(seen.len(), names.len(), "{seen:?}");
        for (s, name) in seen.iter().zip(names) {
            assert_eq!(s.get(":method"), Some("GET"));
            let path = s.get(":path").unwrap();
            let (p, dns) = path.split_once("?dns=").unwrap();
            assert_eq!(p, "/dns-query");
            let query = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(dns)
                .unwrap();
            assert_eq!(query[..2], [0, 0], "DoH queries carry ID 0");
            assert_eq!(dns::parse_question(&query).unwrap().name, name);
            assert!(s.body.is_empty() && s.end_stream_on_headers, "{s:?}");
        }

        let (r, seen) = doh_series(Method::Post, &opts);
        assert!(!r.ok, "{r:?}");
        assert_eq!((r.queries_sent, r.queries_answered), (1, 0), "{r:?}");
        let error = r.error.unwrap();
        assert!(
            error.starts_with("query 1 of 3: HTTP status 405 (not a DoH answer)")
                && error.contains("probe --http-method get"),
            "{error}"
        );
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            (seen[0].get(":method"), seen[0].get(":path")),
            (Some("POST"), Some("/dns-query"))
        );
    }

    /// End to end, over TLS and HTTP/2 to the in-process server that takes only GET:
    /// [`probe_with_method`] with GET (what `--file` picks for `http_method GET`) is OK, POST FAILS.
    #[test]
    fn probing_a_get_only_server_over_tls() {
        let url: UpstreamUrl = "https://127.0.0.1:443/q#doh.test".parse().unwrap();
        let auth = Auth {
            auth_name: "doh.test".into(),
            ca_file: Some(test_server::CA_FILE.into()),
            pins: Vec::new(),
            min_version: lanveil_config::TlsVersion::V1_3,
            sni: true,
        };
        let opts = ProbeOpts {
            queries: 2,
            ede_name: None,
            ..ProbeOpts::default()
        };
        let run = |method| {
            let (addr, server) = test_server::spawn_tls(test_server::get_only);
            let r = probe_with_method(&url, addr, &auth, &opts, method);
            (r, server.join().unwrap())
        };
        let (r, seen) = run(Method::Get);
        assert!(r.ok, "{r:?}");
        assert_eq!((r.queries_sent, r.queries_answered), (2, 2), "{r:?}");
        assert_eq!(
            (r.http_version.as_deref(), r.http_method),
            (Some("HTTP/2"), Some(Method::Get))
        );
        assert_eq!(seen.len(), 2, "{seen:?}");
        for s in &seen {
            assert_eq!(s.get(":method"), Some("GET"));
            assert_eq!(s.get(":authority"), Some("doh.test"), "{s:?}");
            assert!(
                s.get(":path").unwrap().starts_with("/q?dns=AAABAAAB"),
                "{s:?}"
            );
        }
        let (r, seen) = run(Method::Post);
        assert!(!r.ok && r.authenticated, "{r:?}");
        assert!(
            r.error.as_deref().unwrap().contains("HTTP status 405"),
            "{r:?}"
        );
        assert_eq!(seen[0].get(":method"), Some("POST"));
    }

    #[test]
    fn the_doh_method_is_rendered() {
        let r = ProbeReport {
            upstream: "https://192.0.2.1/dns-query#doh.test".into(),
            transport: "doh",
            http_version: Some("HTTP/2".into()),
            http_method: Some(Method::Get),
            ..ProbeReport::default()
        };
        assert!(render(&r).contains("  HTTP            HTTP/2, GET\n"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            (&json["http_version"], &json["http_method"]),
            (&"HTTP/2".into(), &"GET".into())
        );
    }

    #[test]
    fn doq_is_rendered_as_quic_without_a_tcp_line() {
        let r = ProbeReport {
            upstream: "quic://192.0.2.1:853#doq.test".into(),
            transport: "doq",
            authenticated: true,
            ok: true,
            handshake: Handshake {
                tls_handshake_ms: 12.5,
                tls_version: Some("TLSv1.3".into()),
                alpn_offered: vec!["doq".into()],
                alpn_selected: Some("doq".into()),
                ..Handshake::default()
            },
            ..ProbeReport::default()
        };
        let text = render(&r);
        assert!(
            text.starts_with("quic://192.0.2.1:853#doq.test (DNS over QUIC) — OK\n"),
            "{text}"
        );
        assert!(!text.contains("TCP connect"), "{text}");
        assert!(
            text.contains("  QUIC handshake  12.50 ms, TLSv1.3"),
            "{text}"
        );
        // DoT and DoH keep their TCP line.
        for (transport, kind) in [("dot", "(DNS over TLS)"), ("doh", "(DNS over HTTPS)")] {
            let text = render(&ProbeReport {
                transport,
                ..r.clone()
            });
            assert!(text.contains(kind), "{text}");
            assert!(text.contains("  TCP connect     0.00 ms"), "{text}");
            assert!(text.contains("  TLS handshake   12.50 ms"), "{text}");
        }
    }
}
