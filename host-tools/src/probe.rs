//! `lanveil-ctl probe`: dial a candidate upstream as the daemon would (same URL notation, same
//! authentication rules, ALPN `dot` for DoT), send N queries on one connection and report handshake
//! time, query RTT, TLS version, padding, EDE and the SPKI pins of the presented chain.
//!
//! DoQ: the same QUIC transport as the daemon (quinn's state machine, driven blocking here), one
//! stream per query; the handshake time is the QUIC handshake's (there is no separate TCP connect).
//!
//! DoH: the daemon speaks HTTP/2. This tool is blocking and tokio-free, so it measures queries over
//! HTTP/1.1 (RFC 8484 works over any HTTP version). The first connection offers `h2, http/1.1`
//! exactly so the report can say what the server picks; if it picks h2, a second connection offering
//! only `http/1.1` carries the queries. A server that accepts only h2 is reported as such: handshake
//! and certificate verified, query RTT not measured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lanveil_config::{Transport, UpstreamUrl};

use crate::dns::{self, QueryOpts, Reply};
use crate::tls::{self, Auth, Handshake, TlsStream};

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
    /// Bound on each connect + handshake and each query.
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
    /// Everything worked: authenticated and at least one answer (or h2-only, see `note`).
    pub ok: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Handshake details (also on failure: the chain the server presented).
    pub handshake: Handshake,
    /// HTTP version the queries used (DoH only).
    pub http_version: Option<String>,
    /// The server offered/selected h2 when we offered `h2, http/1.1` (DoH only).
    pub server_selected_h2: Option<bool>,
    /// Remarks (e.g. "server requires HTTP/2: …").
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

/// Probes one upstream.
pub fn probe(url: &UpstreamUrl, addr: SocketAddr, auth: &Auth, opts: &ProbeOpts) -> ProbeReport {
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
        Transport::Https => probe_doh(&mut r, url, addr, auth, opts),
        Transport::Quic => probe_doq(&mut r, addr, auth, opts),
    }
    r
}

fn probe_dot(r: &mut ProbeReport, addr: SocketAddr, auth: &Auth, opts: &ProbeOpts) {
    let (mut stream, hs) = match tls::connect(addr, auth, &["dot"], opts.timeout) {
        Ok(x) => x,
        Err(e) => {
            r.error = Some(e.reason);
            r.handshake = *e.seen;
            return;
        }
    };
    r.authenticated = true;
    r.handshake = hs;
    let _ = stream.sock.set_read_timeout(Some(opts.timeout));
    let _ = stream.sock.set_write_timeout(Some(opts.timeout));
    run_series(r, opts, |q| dot_query(&mut stream, q));
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

fn probe_doq(r: &mut ProbeReport, addr: SocketAddr, auth: &Auth, opts: &ProbeOpts) {
    let (mut conn, hs) = match crate::doq::connect(addr, auth, opts.timeout) {
        Ok(x) => x,
        Err(e) => {
            r.error = Some(e.reason);
            r.handshake = *e.seen;
            return;
        }
    };
    r.authenticated = true;
    r.handshake = hs;
    r.note =
        Some("DNS over QUIC (RFC 9250): one stream per query, handshake time is QUIC's".into());
    run_series(r, opts, |q| {
        let msg = conn.exchange(q, opts.timeout)?;
        dns::parse_reply(&msg).map_err(|e| e.to_string())
    });
    conn.close();
}

fn dot_query(s: &mut TlsStream, query: &[u8]) -> Result<Reply, String> {
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).map_err(|e| format!("write: {e}"))?;
    s.flush().map_err(|e| format!("write: {e}"))?;
    let msg = dns::read_framed(s).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer in time".to_string()
        }
        std::io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
        _ => format!("read: {e}"),
    })?;
    dns::parse_reply(&msg).map_err(|e| e.to_string())
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
        match exchange(&q) {
            Ok(reply) if reply.id == id => {
                samples.push(tls::ms(start.elapsed()));
                r.queries_answered += 1;
                r.rcode = Some(reply.rcode_name());
                r.padding = Some(r.padding.unwrap_or(false) || reply.padding.is_some());
                r.answer_size = Some(reply.size);
                note_ede(r, &reply);
            }
            Ok(_) => {
                last_error = Some("answer with a different message ID".to_string());
                break;
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
) {
    // First connection: what the daemon would see (it offers h2), plus http/1.1 as a fallback.
    let (first, hs) = match tls::connect(addr, auth, &["h2", "http/1.1"], opts.timeout) {
        Ok(x) => x,
        Err(e) => {
            r.error = Some(e.reason);
            r.handshake = *e.seen;
            return;
        }
    };
    r.authenticated = true;
    let selected_h2 = hs.alpn_selected.as_deref() == Some("h2");
    r.server_selected_h2 = Some(selected_h2);
    r.handshake = hs;
    let stream = if selected_h2 {
        drop(first);
        match tls::connect(addr, auth, &["http/1.1"], opts.timeout) {
            Ok((s, _)) => s,
            Err(e) if e.alpn_refused => {
                r.ok = true;
                r.note = Some(
                    "server requires HTTP/2: handshake and certificate verified, query RTT not measured"
                        .into(),
                );
                return;
            }
            Err(e) => {
                r.error = Some(format!("second connection (HTTP/1.1): {}", e.reason));
                return;
            }
        }
    } else {
        first
    };
    r.http_version = Some("HTTP/1.1".into());
    r.note = Some(if selected_h2 {
        "queries measured over HTTP/1.1 (the server prefers h2, which the daemon uses)".into()
    } else {
        "queries measured over HTTP/1.1 (the server did not select h2; the daemon needs h2)".into()
    });
    let _ = stream.sock.set_read_timeout(Some(opts.timeout));
    let _ = stream.sock.set_write_timeout(Some(opts.timeout));
    let authority = if url.port == lanveil_config::HTTPS_PORT {
        auth.auth_name.clone()
    } else {
        format!("{}:{}", auth.auth_name, url.port)
    };
    let mut reader = BufReader::new(stream);
    run_series(r, opts, |q| doh_post(&mut reader, &authority, &url.path, q));
    let mut stream = reader.into_inner();
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

/// One RFC 8484 POST over HTTP/1.1 (keep-alive).
fn doh_post(
    reader: &mut BufReader<TlsStream>,
    authority: &str,
    path: &str,
    query: &[u8],
) -> Result<Reply, String> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: lanveil-ctl\r\n\
         Accept: application/dns-message\r\nContent-Type: application/dns-message\r\n\
         Content-Length: {}\r\n\r\n",
        query.len()
    );
    let s = reader.get_mut();
    let mut req = head.into_bytes();
    req.extend_from_slice(query);
    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
    s.flush().map_err(|e| format!("write: {e}"))?;
    let (status, headers) = read_head(reader)?;
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        if len > 65_535 {
            return Err(format!("answer too large ({len} octets)"));
        }
        let mut b = vec![0u8; len];
        reader
            .read_exact(&mut b)
            .map_err(|e| format!("read: {e}"))?;
        b
    } else {
        let mut b = Vec::new();
        reader
            .take(65_536)
            .read_to_end(&mut b)
            .map_err(|e| format!("read: {e}"))?;
        b
    };
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    if let Some(ct) = header("content-type")
        && !ct.trim().eq_ignore_ascii_case("application/dns-message")
    {
        return Err(format!("unexpected Content-Type {ct:?}"));
    }
    dns::parse_reply(&body).map_err(|e| e.to_string())
}

fn read_line(reader: &mut BufReader<TlsStream>) -> Result<String, String> {
    let mut line = String::new();
    let n = reader
        .by_ref()
        .take(8192)
        .read_line(&mut line)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                "no answer in time".to_string()
            }
            _ => format!("read: {e}"),
        })?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_head(reader: &mut BufReader<TlsStream>) -> Result<(u16, Vec<(String, String)>), String> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x answer: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        if headers.len() > 100 {
            return Err("too many HTTP headers".into());
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn read_chunked(reader: &mut BufReader<TlsStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader)?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > 65_535 {
            return Err("answer too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| format!("read: {e}"))?;
        read_line(reader)?;
    }
}

/// The report in words.
pub fn render(r: &ProbeReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let kind = if r.transport == "dot" {
        "DNS over TLS"
    } else {
        "DNS over HTTPS"
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
    if h.tcp_connect_ms > 0.0 || h.tls_version.is_some() {
        let _ = writeln!(o, "  TCP connect     {:.2} ms", h.tcp_connect_ms);
    }
    if let Some(v) = &h.tls_version {
        let _ = writeln!(
            o,
            "  TLS handshake   {:.2} ms, {v}, {}",
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
        let _ = writeln!(o, "  HTTP            {hv} for the queries");
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
