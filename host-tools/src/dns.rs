//! The little DNS the tool needs: build a query (with EDNS and RFC 7830 padding, as lanveil sends),
//! parse an answer (RCODE, records, EDNS options: RFC 8914 Extended DNS Errors, padding), and plain
//! UDP/TCP exchanges for the LAN side (`push` verification, `leak-test`).
//!
//! Names and messages are read and written with the router's own codec, `lanveil_core::wire`
//! (`scan`, `name::{encode, expand}`, the record iterator), not with `hickory-proto`. Size is no
//! reason either way off the router; the reason is that the tool is there to show what the router
//! does: `probe` must accept and refuse an upstream's answer exactly as the daemon will (same
//! compression pointer rules, same OPT and EDNS option checks), and hickory-proto, which the tests
//! use as the independent reference, would give the tool a second set of rules again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use lanveil_core::wire::{self, edns, header, message, name};

/// Record types used by the tool.
pub mod qtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// EDNS pseudo-record.
    pub const OPT: u16 = 41;
}

/// EDNS option codes.
pub mod option {
    /// RFC 7830 padding.
    pub const PADDING: u16 = 12;
    /// RFC 8914 Extended DNS Error.
    pub const EDE: u16 = 15;
}

/// Why a message could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name is not a valid DNS name.
    BadName(String),
    /// The answer is truncated or malformed.
    Malformed(&'static str),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadName(n) => write!(f, "not a valid DNS name: {n:?}"),
            Self::Malformed(why) => write!(f, "malformed DNS answer: {why}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// Encodes a name in wire form (no compression, case kept) with `lanveil_core::wire::name::encode`.
pub fn encode_name(name: &str) -> Result<Vec<u8>, DnsError> {
    let mut buf = [0u8; name::MAX_NAME_LEN];
    let len = name::encode(name, &mut buf).map_err(|_| DnsError::BadName(name.to_string()))?;
    Ok(buf[..len].to_vec())
}

/// How to build a query.
#[derive(Debug, Clone, Copy)]
pub struct QueryOpts {
    /// Message ID (0 for DoH, RFC 8484 §4.1).
    pub id: u16,
    /// Add an OPT record (UDP size 1232).
    pub edns: bool,
    /// Pad the whole message to a multiple of this many octets (RFC 8467 suggests 128), with EDNS.
    pub pad_block: Option<usize>,
    /// Checking Disabled.
    pub cd: bool,
    /// Query class (1 = IN, 3 = CH).
    pub class: u16,
}

impl Default for QueryOpts {
    fn default() -> Self {
        Self {
            id: 0,
            edns: true,
            pad_block: Some(128),
            cd: false,
            class: 1,
        }
    }
}

/// Builds a recursive query for `name`/`qtype`.
pub fn build_query(name: &str, qtype: u16, opts: QueryOpts) -> Result<Vec<u8>, DnsError> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&opts.id.to_be_bytes());
    let flags: u16 = 0x0100 | if opts.cd { 0x0010 } else { 0 };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&u16::from(opts.edns).to_be_bytes());
    m.extend_from_slice(&encode_name(name)?);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&opts.class.to_be_bytes());
    if opts.edns {
        // Root name, OPT, UDP size, extended RCODE/version/flags, RDLENGTH.
        let opt_start = m.len();
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        if let Some(block) = opts.pad_block.filter(|b| *b > 0) {
            let unpadded = m.len() + 4;
            let pad = (block - unpadded % block) % block;
            m.extend_from_slice(&option::PADDING.to_be_bytes());
            m.extend_from_slice(&(pad as u16).to_be_bytes());
            m.resize(m.len() + pad, 0);
            let rdlen = (4 + pad) as u16;
            m[opt_start + 9..opt_start + 11].copy_from_slice(&rdlen.to_be_bytes());
        }
    }
    Ok(m)
}

/// One resource record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name (text, lower case, no trailing dot).
    pub name: String,
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL.
    pub ttl: u32,
    /// RDATA (names inside are left compressed).
    pub rdata: Vec<u8>,
}

impl Record {
    /// The RDATA as an address (A / AAAA), if it is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match (self.rtype, self.rdata.len()) {
            (qtype::A, 4) => {
                let b: [u8; 4] = self.rdata.as_slice().try_into().ok()?;
                Some(b.into())
            }
            (qtype::AAAA, 16) => {
                let b: [u8; 16] = self.rdata.as_slice().try_into().ok()?;
                Some(b.into())
            }
            _ => None,
        }
    }

    /// The strings of a TXT record, joined.
    pub fn txt(&self) -> Option<String> {
        if self.rtype != qtype::TXT {
            return None;
        }
        let mut out = String::new();
        let mut rest = self.rdata.as_slice();
        while let Some((&len, tail)) = rest.split_first() {
            let s = tail.get(..usize::from(len))?;
            out.push_str(&String::from_utf8_lossy(s));
            rest = &tail[usize::from(len)..];
        }
        Some(out)
    }
}

/// A parsed answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Message ID.
    pub id: u16,
    /// Full RCODE (with the OPT extension).
    pub rcode: u16,
    /// Truncated.
    pub tc: bool,
    /// Authenticated Data.
    pub ad: bool,
    /// Question name (text).
    pub qname: String,
    /// Question type.
    pub qtype: u16,
    /// The (first) question, if the message has one.
    pub question: Option<Question>,
    /// Answer section.
    pub answers: Vec<Record>,
    /// The answer had an OPT record.
    pub edns: bool,
    /// Extended DNS Errors (info code, extra text).
    pub ede: Vec<(u16, String)>,
    /// Length of the padding option, if present.
    pub padding: Option<usize>,
    /// Size of the whole message.
    pub size: usize,
}

/// A message's (first) question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Question {
    /// QNAME as text (lower case, no trailing dot).
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub class: u16,
}

impl Question {
    /// `name type N class N`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} type {} class {}",
            if self.name.is_empty() {
                "."
            } else {
                &self.name
            },
            self.qtype,
            self.class
        )
    }
}

/// The question of a message (a query or an answer) read with the router's codec.
pub fn parse_question(m: &[u8]) -> Result<Question, DnsError> {
    let scan = message::scan(m).map_err(malformed)?;
    let q = scan.question.ok_or(DnsError::Malformed("no question"))?;
    Ok(Question {
        name: read_name(m, header::LEN)?,
        qtype: q.qtype,
        class: q.qclass,
    })
}

impl Reply {
    /// The RCODE in words.
    pub fn rcode_name(&self) -> String {
        rcode_name(self.rcode)
    }
}

/// RCODE in words.
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    }
}

/// The registered name of an Extended DNS Error code (RFC 8914 §4 and the IANA registry).
pub fn ede_name(code: u16) -> &'static str {
    match code {
        0 => "Other Error",
        1 => "Unsupported DNSKEY Algorithm",
        2 => "Unsupported DS Digest Type",
        3 => "Stale Answer",
        4 => "Forged Answer",
        5 => "DNSSEC Indeterminate",
        6 => "DNSSEC Bogus",
        7 => "Signature Expired",
        8 => "Signature Not Yet Valid",
        9 => "DNSKEY Missing",
        10 => "RRSIGs Missing",
        11 => "No Zone Key Bit Set",
        12 => "NSEC Missing",
        13 => "Cached Error",
        14 => "Not Ready",
        15 => "Blocked",
        16 => "Censored",
        17 => "Filtered",
        18 => "Prohibited",
        19 => "Stale NXDomain Answer",
        20 => "Not Authoritative",
        21 => "Not Supported",
        22 => "No Reachable Authority",
        23 => "Network Error",
        24 => "Invalid Data",
        _ => "unassigned",
    }
}

fn malformed(e: wire::Error) -> DnsError {
    DnsError::Malformed(e.as_str())
}

/// Reads the (possibly compressed) name at `pos` as text: lower case, no trailing dot (the root is
/// `""`), octets outside printable ASCII escaped as `\DDD`.
pub fn read_name(m: &[u8], pos: usize) -> Result<String, DnsError> {
    let mut buf = [0u8; name::MAX_NAME_LEN];
    let (_, len) = name::expand(m, pos, &mut buf).map_err(malformed)?;
    let mut text = name::to_text(&buf, 0, len).to_ascii_lowercase();
    text.pop(); // the root's dot
    Ok(text)
}

/// Parses an answer message: accepted and refused exactly as lanveil's `scan` accepts and refuses
/// it, and not a query (QR set).
pub fn parse_reply(m: &[u8]) -> Result<Reply, DnsError> {
    let scan = message::scan(m).map_err(malformed)?;
    let h = scan.header;
    if !h.is_response() {
        return Err(DnsError::Malformed("not a response (QR clear)"));
    }
    let mut r = Reply {
        id: h.id,
        rcode: scan.rcode(),
        tc: h.tc(),
        ad: h.flags & 0x0020 != 0,
        size: m.len(),
        ..Reply::default()
    };
    if let Some(q) = scan.question {
        r.qname = read_name(m, header::LEN)?;
        r.qtype = q.qtype;
        r.question = Some(Question {
            name: r.qname.clone(),
            qtype: q.qtype,
            class: q.qclass,
        });
    }
    for rec in scan.answers(m) {
        r.answers.push(Record {
            name: read_name(m, rec.owner)?,
            rtype: rec.rtype,
            class: rec.class,
            ttl: rec.ttl,
            rdata: m[rec.rdata].to_vec(),
        });
    }
    if let Some(opt) = scan.opt {
        r.edns = true;
        // `scan` checked that the options exactly fill the RDATA.
        for (code, data) in edns::options(&m[opt.rdata_start..opt.end]) {
            match (code, data) {
                (option::PADDING, _) => r.padding = Some(data.len()),
                (option::EDE, &[hi, lo, ref text @ ..]) => {
                    let text = String::from_utf8_lossy(text)
                        .trim_end_matches('\0')
                        .to_string();
                    r.ede.push((u16::from_be_bytes([hi, lo]), text));
                }
                _ => {}
            }
        }
    }
    Ok(r)
}

/// A random 16-bit message ID from the OS CSPRNG.
pub fn random_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_ne_bytes(b)
}

/// A random lower-case label of `n` characters (for cache-busting names).
pub fn random_label(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter()
        .map(|x| char::from(b'a' + x % 26))
        .collect::<String>()
}

/// Sends `query` over UDP to `server` and waits (bounded) for the answer with the same ID; falls back
/// to TCP when the answer is truncated. Returns the answer and the round-trip time.
pub fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> std::io::Result<(Reply, Duration)> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(server)?;
    let start = Instant::now();
    let deadline = start + timeout;
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut sends = 0u32;
    let mut buf = vec![0u8; 65_535];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {server} within {} ms", timeout.as_millis()),
            ));
        }
        // Resend every second (UDP may drop), at most 3 times.
        if sends < 3 && now >= start + Duration::from_secs(u64::from(sends)) {
            sock.send(query)?;
            sends += 1;
        }
        let wait = (deadline - now).min(Duration::from_millis(250));
        sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let Ok(reply) = parse_reply(&buf[..n]) else {
                    continue;
                };
                if reply.id != id {
                    continue;
                }
                if reply.tc {
                    return tcp_exchange(
                        server,
                        query,
                        deadline.saturating_duration_since(Instant::now()),
                    );
                }
                return Ok((reply, start.elapsed()));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("{server} refused (nothing listens on that port)"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One query over plain TCP (RFC 7766 framing).
pub fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> std::io::Result<(Reply, Duration)> {
    let start = Instant::now();
    let timeout = timeout.max(Duration::from_millis(10));
    let mut s = TcpStream::connect_timeout(&server, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)?;
    let reply = read_framed(&mut s)?;
    let reply = parse_reply(&reply).map_err(std::io::Error::other)?;
    Ok((reply, start.elapsed()))
}

/// Reads one 2-byte-length-prefixed message.
pub fn read_framed(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut msg)?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_padded_to_the_block() {
        let q = build_query("example.com", qtype::A, QueryOpts::default()).unwrap();
        assert_eq!(q.len() % 128, 0);
        let q = build_query(
            "example.com",
            qtype::A,
            QueryOpts {
                pad_block: None,
                ..QueryOpts::default()
            },
        )
        .unwrap();
        assert_eq!(q.len(), 12 + 13 + 4 + 11);
        assert!(encode_name("a..b").is_err());
        assert!(encode_name(&"x".repeat(64)).is_err());
    }

    #[test]
    fn reply_with_ede_and_padding() {
        // Turn our own query into a response: QR set, RCODE SERVFAIL, OPT with EDE 22 + padding.
        let mut m = build_query(
            "Example.com.",
            qtype::A,
            QueryOpts {
                id: 7,
                pad_block: None,
                ..QueryOpts::default()
            },
        )
        .unwrap();
        m[2] |= 0x80;
        m[3] |= 2;
        let opts: Vec<u8> = [
            &[0u8, 15, 0, 6, 0, 22][..],
            b"abcd",
            &[0, 12, 0, 3, 0, 0, 0],
        ]
        .concat();
        let rdlen_at = m.len() - 2;
        m[rdlen_at..].copy_from_slice(&(opts.len() as u16).to_be_bytes());
        m.extend_from_slice(&opts);
        let r = parse_reply(&m).unwrap();
        assert_eq!(
            (r.id, r.rcode, r.qname.as_str(), r.qtype),
            (7, 2, "example.com", 1)
        );
        assert_eq!(r.ede, vec![(22, "abcd".to_string())]);
        assert_eq!(r.padding, Some(3));
        assert!(parse_reply(&m[..20]).is_err());
    }

    #[test]
    fn reply_records_and_the_routers_pointer_rules() {
        let mut m = build_query(
            "WWW.example.",
            qtype::A,
            QueryOpts {
                id: 9,
                edns: false,
                ..QueryOpts::default()
            },
        )
        .unwrap();
        m[2] |= 0x80;
        m[7] = 1;
        // www.example. A 192.0.2.1, owner compressed to the question.
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let r = parse_reply(&m).unwrap();
        assert_eq!(
            (r.qname.as_str(), r.edns, r.rcode),
            ("www.example", false, 0)
        );
        assert_eq!(r.answers.len(), 1);
        let a = &r.answers[0];
        assert_eq!(
            (a.name.as_str(), a.rtype, a.class, a.ttl),
            ("www.example", 1, 1, 60)
        );
        assert_eq!(a.ip(), Some([192, 0, 2, 1].into()));
        // The old parser followed any pointer inside the message; the router's rule is strictly
        // backwards, and so is the tool's now: a forward pointer, a self pointer, a header pointer.
        let at = m.len() - 16;
        for target in [at as u8 + 2, at as u8, 2] {
            let mut bad = m.clone();
            bad[at + 1] = target;
            assert_eq!(
                parse_reply(&bad),
                Err(DnsError::Malformed("bad compression pointer")),
                "{target}"
            );
        }
        // A query is not an answer.
        m[2] &= 0x7f;
        assert!(parse_reply(&m).is_err());
    }
}
