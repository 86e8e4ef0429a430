//! Per-query policy: answer here, refuse, forward upstream, or forward to the local resolver.
//!
//! [`Policy::decide`] runs on every scanned query, allocation-free. The first rule that applies wins:
//!
//! 1. **Access control.** Clients outside [`PolicyConfig::allow`] get REFUSED with EDE 18
//!    (Prohibited, RFC 8914). IPv4-mapped IPv6 sources match as IPv4. `None` (address unknown) is
//!    allowed: only in-process callers may pass it. An empty list refuses every address.
//! 2. **DDR** (RFC 9462 §6.4): `resolver.arpa` and below is answered here whatever the configuration,
//!    never forwarded (that would hand clients the upstream's designation): `_dns.resolver.arpa` and
//!    the apex get NODATA (lanveil serves no encrypted DNS on the LAN), other names NXDOMAIN.
//! 3. **Canaries**, each switchable: `use-application-dns.net` and below (Firefox), exactly
//!    `mask.icloud.com` and `mask-h2.icloud.com` (iCloud Private Relay): NXDOMAIN, not AA and without
//!    SOA, so stubs do not cache it for hours after a canary is switched off.
//! 4. **Locally served zones** ([`PolicyConfig::local_zones`]): the RFC 6303 §4 zones, the 100.64/10
//!    reverse zones (RFC 6598, RFC 7793), `home.arpa` (RFC 8375), `local` (RFC 6762), `lan`,
//!    `internal`, `localhost` and `invalid` (RFC 6761); and [`PolicyConfig::local_domain`] (even with
//!    `local_zones` off). Answered as RFC 6303 §3 empty zones: NODATA at the apex, NXDOMAIN below, AA,
//!    the apex SOA (MNAME = apex, RNAME `nobody.invalid.`, serial 1, 3600/1200/604800/10800, TTL
//!    10800) in the authority section (the answer, for an SOA query at the apex). DDR answers look
//!    the same with a `resolver.arpa` SOA. With [`PolicyConfig::local_forward`] these names go to the
//!    local resolver ([`Verdict::ForwardLocal`]) instead, except `localhost` (A 127.0.0.1, AAAA ::1,
//!    else NODATA) and `invalid`, which RFC 6761 §6.3/§6.4 has resolvers answer themselves.
//! 5. **Single-label names** (`printer.`; with `local_zones`): NXDOMAIN without SOA (no zone to
//!    claim), or the local resolver. Not `arpa.`, and not the types NS, SOA, DS, DNSKEY, RRSIG, NSEC,
//!    NSEC3, NSEC3PARAM, CDS, CDNSKEY: validating stubs still reach the TLDs (like dnsmasq's
//!    `domain-needed`, which keeps only host lookups of plain names local).
//! 6. Everything else, including the root, `arpa`, `in-addr.arpa`, `ip6.arpa`: [`Verdict::Forward`].
//!
//! Names are compared label-wise from the right, ignoring ASCII case (RFC 4343), on the wire QNAME.
//! [`crate::wire::message::scan`] rejects compression pointers in the first question (they could
//! only point into the header); a QNAME that does not split into labels would get FORMERR, never be
//! forwarded.

use alloc::{boxed::Box, format, string::String, vec, vec::Vec};
use core::net::{IpAddr, Ipv6Addr};
use core::{fmt, str::FromStr};

use crate::wire::edns::{Ede, ede};
use crate::wire::header::{self, Header, rcode};
use crate::wire::respond::{self, respond};
use crate::wire::{CLASS_ANY, CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_SOA};
use crate::wire::{Error, message::Scan, name};

/// Largest message [`Policy::answer`] writes (255-octet QNAME with an SOA, or a REFUSED with EDE).
pub const MAX_ANSWER_LEN: usize = respond::MAX_LOCAL_ANSWER;
/// The text of the EDE 18 in REFUSED answers.
pub const REFUSED_TEXT: &str = "lanveil: source address not allowed";

/// RFC 6303 §3: TTL of the SOA (and of lanveil's localhost records).
const TTL: u32 = 10800;
/// SOA RDATA after the two names: serial, refresh, retry, expire, minimum.
const SOA_TIMERS: [u32; 5] = [1, 3600, 1200, 604800, 10800];
const RNAME: &[u8] = b"\x06nobody\x07invalid\x00";
/// NS, SOA, DS, RRSIG, NSEC, DNSKEY, NSEC3, NSEC3PARAM, CDS, CDNSKEY.
const INFRA_TYPES: [u16; 10] = [2, 6, 43, 46, 47, 48, 50, 51, 59, 60];
/// RFC 6303 §4 zones, `home.arpa`, `local`, `lan`, `internal` (plus 16–31.172, 64–127.100 and the
/// two 32-nibble IPv6 zones, generated in [`Policy::new`]).
const ZONES: &str = "0.in-addr.arpa 10.in-addr.arpa 127.in-addr.arpa 254.169.in-addr.arpa \
    168.192.in-addr.arpa 2.0.192.in-addr.arpa 100.51.198.in-addr.arpa 113.0.203.in-addr.arpa \
    255.255.255.255.in-addr.arpa d.f.ip6.arpa 8.e.f.ip6.arpa 9.e.f.ip6.arpa a.e.f.ip6.arpa \
    b.e.f.ip6.arpa 8.b.d.0.1.0.0.2.ip6.arpa home.arpa local lan internal";

/// An address prefix, host bits cleared. Parses from `addr/len` or a bare address (full length).
/// IPv4 prefixes are kept as IPv4-mapped IPv6 prefixes, so IPv4-mapped IPv6 clients match them and
/// `::ffff:10.0.0.0/104` is the same prefix as `10.0.0.0/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    bits: u128,
    len: u8,
}

/// The default [`PolicyConfig::allow`]: loopback, RFC 1918, 100.64/10 (LANs behind CGNAT-style
/// addressing), 169.254/16, `::1`, `fc00::/7`, `fe80::/10`. Global IPv6 LAN prefixes cannot be known
/// statically; the shell adds the LAN's delegated prefixes.
pub const DEFAULT_ALLOW: &str = "127.0.0.0/8 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 \
    100.64.0.0/10 169.254.0.0/16 ::1/128 fc00::/7 fe80::/10";

impl Prefix {
    /// `addr/len` with the host bits cleared; `None` if `len` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let (a, len) = match addr {
            IpAddr::V4(a) if len <= 32 => (a.to_ipv6_mapped(), len + 96),
            IpAddr::V6(a) if len <= 128 => (a, len),
            _ => return None,
        };
        let bits = a.to_bits() & mask(len);
        Some(Self { bits, len })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let a = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        a.to_bits() & mask(self.len) == self.bits
    }
}

fn mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// A [`Prefix`] or [`PolicyConfig::local_domain`] that is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// Not `address/length` (or a bare address) with a length that fits the address.
    Prefix,
    /// The local domain is empty, the root, or not a valid domain name.
    LocalDomain,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Prefix => "not an address prefix such as 192.168.0.0/16 or fd00::/8",
            Self::LocalDomain => "local domain is not a valid non-root domain name",
        })
    }
}

impl core::error::Error for PolicyError {}

impl FromStr for Prefix {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let addr: IpAddr = a.parse().map_err(|_| PolicyError::Prefix)?;
        let len = match l {
            None => Some(if addr.is_ipv4() { 32 } else { 128 }),
            Some(l) if l.bytes().all(|b| b.is_ascii_digit()) => l.parse().ok(),
            Some(_) => None,
        };
        len.and_then(|len| Self::new(addr, len))
            .ok_or(PolicyError::Prefix)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = Ipv6Addr::from_bits(self.bits);
        match a.to_ipv4_mapped() {
            Some(v4) if self.len >= 96 => write!(f, "{v4}/{}", self.len - 96),
            _ => write!(f, "{a}/{}", self.len),
        }
    }
}

/// What the policy does; see the module documentation for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Client source prefixes allowed to query (default: [`DEFAULT_ALLOW`]).
    pub allow: Vec<Prefix>,
    /// Serve the RFC 6303 zones, `home.arpa`, `local`, `lan`, `internal`, `localhost`, `invalid` and
    /// single-label names locally (default `true`).
    pub local_zones: bool,
    /// The LAN's own domain (`lan`, `home.example`; a trailing dot is optional), also served locally.
    pub local_domain: Option<String>,
    /// The shell has a resolver on the LAN (`local_resolver`, for installs without dnsmasq in
    /// front): local names go there ([`Verdict::ForwardLocal`]) instead of being answered here.
    pub local_forward: bool,
    /// `use-application-dns.net` → NXDOMAIN (default `true`).
    pub canary_firefox: bool,
    /// `mask.icloud.com`, `mask-h2.icloud.com` → NXDOMAIN (default `true`).
    pub canary_icloud: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            allow: DEFAULT_ALLOW
                .split_whitespace()
                .flat_map(str::parse)
                .collect(),
            local_zones: true,
            local_domain: None,
            local_forward: false,
            canary_firefox: true,
            canary_icloud: true,
        }
    }
}

/// The decision for one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward upstream (encrypted).
    Forward,
    /// Forward in plaintext to the resolver on the LAN, never upstream (only with
    /// [`PolicyConfig::local_forward`]).
    ForwardLocal,
    /// Answer here with [`Policy::answer`].
    Answer(LocalAnswer),
}

/// A locally made answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalAnswer {
    /// NXDOMAIN; with the apex of a zone lanveil serves: authoritative, with the zone's SOA in the
    /// authority section.
    NxDomain(Option<Apex>),
    /// NOERROR without answer records; the apex as for [`LocalAnswer::NxDomain`] (an SOA query at
    /// the apex gets the SOA as its answer).
    NoData(Option<Apex>),
    /// An A (127.0.0.1) or AAAA (::1) record for a `localhost` name, as QTYPE asks; authoritative.
    Loopback,
    /// REFUSED with EDE 18 (Prohibited) and [`REFUSED_TEXT`].
    Refused,
    /// FORMERR: no question, or a QNAME that does not split into labels.
    FormErr,
}

/// Where the zone apex starts inside the query's QNAME (an offset into the query, used as the
/// compression pointer target of the SOA's owner and MNAME).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apex(u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ddr,
    CanaryTree,
    CanaryExact,
    Localhost,
    Invalid,
    Local,
}

/// Every [`Kind`] in order: bit `k` of [`Node::kinds`] stands for `KINDS[k]`.
const KINDS: [Kind; 6] = [
    Kind::Ddr,
    Kind::CanaryTree,
    Kind::CanaryExact,
    Kind::Localhost,
    Kind::Invalid,
    Kind::Local,
];

#[derive(Clone, Debug)]
struct Rule {
    /// Lower-case wire form, root label included.
    name: Box<[u8]>,
    kind: Kind,
}

/// One name of the suffix table: a zone some rule names, or a name on the way to one (`in-addr.arpa`
/// for `10.in-addr.arpa`). Together the nodes form a tree of labels read from the right; a query name
/// is looked up one label at a time from its TLD, and the walk stops at the first suffix that is no
/// node, so a name under no rule costs one lookup.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// [`label_hash`] of the parent's hash and this node's label.
    hash: u32,
    /// Index of the parent node (this name without its first label), [`NO_PARENT`] for a TLD.
    parent: u16,
    /// This node's label (lower case, no length octet) in [`Policy::labels`].
    label_start: u16,
    label_len: u8,
    /// Bit `k` set: a rule of kind `KINDS[k]` names exactly this name.
    kinds: u8,
}

const NO_PARENT: u16 = u16::MAX;
/// FNV-1a offset basis: the hash of the root.
const ROOT_HASH: u32 = 0x811c_9dc5;

/// FNV-1a over a label (ASCII lower-cased, length octet first), continuing from the parent's hash.
fn label_hash(parent: u32, label: &[u8]) -> u32 {
    let mut h = (parent ^ label.len() as u32).wrapping_mul(0x0100_0193);
    for &b in label {
        h = (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193);
    }
    h
}

/// The compiled [`PolicyConfig`]: allowed prefixes and the suffix table of the names served here.
#[derive(Clone, Debug)]
pub struct Policy {
    allow: Vec<Prefix>,
    /// Sorted by hash.
    nodes: Vec<Node>,
    labels: Vec<u8>,
    single_label: bool,
    local_forward: bool,
}

/// Encodes a dotted name (one trailing dot allowed) to lower-case wire form with [`name::encode`];
/// `None` for the root or an invalid name.
pub(crate) fn encode(dotted: &str) -> Option<Box<[u8]>> {
    let mut buf = [0u8; name::MAX_NAME_LEN];
    let len = name::encode(dotted, &mut buf).ok().filter(|&len| len > 1)?;
    let wire = buf.get_mut(..len)?;
    wire.make_ascii_lowercase(); // length octets are below b'A'
    Some(Box::from(&*wire))
}

/// The names `config` serves here, each with its kind (duplicates possible: `local_domain 'lan'`).
fn rules(config: &PolicyConfig) -> Result<Vec<Rule>, PolicyError> {
    let mut rules = Vec::new();
    let mut add = |zone: &str, kind| -> Result<(), PolicyError> {
        let name = encode(zone).ok_or(PolicyError::LocalDomain)?;
        rules.push(Rule { name, kind });
        Ok(())
    };
    add("resolver.arpa", Kind::Ddr)?;
    if config.canary_firefox {
        add("use-application-dns.net", Kind::CanaryTree)?;
    }
    if config.canary_icloud {
        add("mask.icloud.com", Kind::CanaryExact)?;
        add("mask-h2.icloud.com", Kind::CanaryExact)?;
    }
    if config.local_zones {
        add("localhost", Kind::Localhost)?;
        add("invalid", Kind::Invalid)?;
        let v4 = (16..=31).map(|i| format!("{i}.172.in-addr.arpa"));
        let cgnat = (64..=127).map(|i| format!("{i}.100.in-addr.arpa"));
        let unspec = format!("{}ip6.arpa", "0.".repeat(32));
        let loopback = format!("1.{}ip6.arpa", "0.".repeat(31));
        let generated = v4.chain(cgnat).chain([unspec, loopback]);
        for zone in ZONES.split_whitespace().map(String::from).chain(generated) {
            add(&zone, Kind::Local)?;
        }
    }
    if let Some(domain) = &config.local_domain {
        add(domain, Kind::Local)?;
    }
    Ok(rules)
}

/// Builds the suffix table of `rules`: nodes sorted by hash, and the label bytes they point into.
/// `None` only if it outgrows its 16-bit indices (it cannot: a few hundred labels at most).
fn suffix_table(rules: &[Rule]) -> Option<(Vec<Node>, Vec<u8>)> {
    let (mut nodes, mut labels) = (Vec::<Node>::new(), Vec::new());
    let mut starts = [0u8; name::MAX_LABELS];
    for rule in rules {
        let n = name::label_starts(&rule.name, &mut starts)?;
        let (mut parent, mut hash) = (NO_PARENT, ROOT_HASH);
        for k in (0..n).rev() {
            let at = usize::from(starts[k]);
            let label = rule.name.get(at + 1..at + 1 + usize::from(rule.name[at]))?;
            hash = label_hash(hash, label);
            let found = nodes.iter().position(|m| {
                let start = usize::from(m.label_start);
                let own = labels.get(start..start + usize::from(m.label_len));
                m.parent == parent && own == Some(label)
            });
            let i = match found {
                Some(i) => i,
                None => {
                    nodes.push(Node {
                        hash,
                        parent,
                        label_start: u16::try_from(labels.len()).ok()?,
                        label_len: u8::try_from(label.len()).ok()?,
                        kinds: 0,
                    });
                    labels.extend_from_slice(label);
                    nodes.len() - 1
                }
            };
            parent = u16::try_from(i).ok().filter(|&i| i != NO_PARENT)?;
        }
        nodes[usize::from(parent)].kinds |= 1 << rule.kind as u8;
    }
    // Sort by hash and point the parents at the new positions.
    // By hash only: nodes of equal hash are told apart by `find`, their order does not matter. An
    // insertion sort: a few hundred nodes, sorted once per configuration, and a library sort is an
    // instantiation of its own (6.6 KB of the mipsel binary for `sort_by_key`).
    let mut order: Vec<usize> = Vec::with_capacity(nodes.len());
    for i in 0..nodes.len() {
        let at = order.partition_point(|&j| nodes[j].hash <= nodes[i].hash);
        order.insert(at, i);
    }
    let mut position = vec![0u16; nodes.len()];
    for (new, &old) in order.iter().enumerate() {
        position[old] = u16::try_from(new).ok()?;
    }
    let sorted = order
        .iter()
        .map(|&old| {
            let mut node = nodes[old];
            if node.parent != NO_PARENT {
                node.parent = position[usize::from(node.parent)];
            }
            node
        })
        .collect();
    Some((sorted, labels))
}

impl Policy {
    /// Compiles `config`; fails only for an invalid [`PolicyConfig::local_domain`].
    pub fn new(config: &PolicyConfig) -> Result<Self, PolicyError> {
        let (nodes, labels) = suffix_table(&rules(config)?).ok_or(PolicyError::LocalDomain)?;
        Ok(Self {
            allow: config.allow.clone(),
            nodes,
            labels,
            single_label: config.local_zones,
            local_forward: config.local_forward,
        })
    }

    /// The node for `label` under `parent` whose hash is `hash`.
    fn find(&self, parent: u16, hash: u32, label: &[u8]) -> Option<u16> {
        let first = self.nodes.partition_point(|n| n.hash < hash);
        let mut same = self
            .nodes
            .get(first..)?
            .iter()
            .take_while(|n| n.hash == hash);
        let i = same.position(|n| {
            let start = usize::from(n.label_start);
            let own = self.labels.get(start..start + usize::from(n.label_len));
            n.parent == parent && own.is_some_and(|own| own.eq_ignore_ascii_case(label))
        })?;
        u16::try_from(first + i).ok()
    }

    /// Whether a client may query at all (`None`: an in-process caller, always allowed).
    pub fn allowed(&self, client: Option<IpAddr>) -> bool {
        client.is_none_or(|ip| self.allow.iter().any(|p| p.contains(ip)))
    }

    /// Decides what to do with `query` (already accepted by `scan`) from `client`.
    pub fn decide(&self, client: Option<IpAddr>, query: &[u8], scan: &Scan) -> Verdict {
        use LocalAnswer::{FormErr, Loopback, NoData, NxDomain};
        if !self.allowed(client) {
            return Verdict::Answer(LocalAnswer::Refused);
        }
        let mut starts = [0u8; name::MAX_LABELS];
        let parsed = scan.question.and_then(|q| {
            let name = query.get(header::LEN..q.name_end)?;
            Some((q, name, name::label_starts(name, &mut starts)?))
        });
        let Some((q, name, n)) = parsed else {
            return Verdict::Answer(FormErr);
        };
        // The rule that applies: the lowest kind, then the longest name. Walk from the TLD.
        let mut best: Option<(Kind, usize)> = None;
        let (mut parent, mut hash) = (NO_PARENT, ROOT_HASH);
        for k in (0..n).rev() {
            let at = usize::from(starts[k]);
            let Some(label) = name.get(at + 1..at + 1 + usize::from(name[at])) else {
                break;
            };
            hash = label_hash(hash, label);
            let Some(i) = self.find(parent, hash, label) else {
                break;
            };
            parent = i;
            let mut kinds = self.nodes[usize::from(i)].kinds;
            if k != 0 {
                kinds &= !(1 << Kind::CanaryExact as u8);
            }
            if let Some(&kind) = KINDS.get(kinds.trailing_zeros() as usize)
                && best.is_none_or(|(b, _)| kind <= b)
            {
                best = Some((kind, k));
            }
        }
        let Some((kind, k)) = best else {
            let local = n == 1
                && self.single_label
                && !INFRA_TYPES.contains(&q.qtype)
                && !name.eq_ignore_ascii_case(b"\x04arpa\x00");
            return match (local, self.local_forward) {
                (false, _) => Verdict::Forward,
                (true, true) => Verdict::ForwardLocal,
                (true, false) => Verdict::Answer(NxDomain(None)),
            };
        };
        let soa = Some(Apex((header::LEN + usize::from(starts[k])) as u16));
        let at_apex = k == 0;
        Verdict::Answer(match kind {
            Kind::Ddr if at_apex || (n == 3 && name[..5].eq_ignore_ascii_case(b"\x04_dns")) => {
                NoData(soa)
            }
            Kind::CanaryTree | Kind::CanaryExact => NxDomain(None),
            Kind::Localhost => {
                let address = matches!(q.qtype, TYPE_A | TYPE_AAAA);
                if address && matches!(q.qclass, CLASS_IN | CLASS_ANY) {
                    Loopback
                } else {
                    NoData(soa)
                }
            }
            Kind::Local if self.local_forward => return Verdict::ForwardLocal,
            _ if at_apex => NoData(soa),
            _ => NxDomain(soa),
        })
    }

    /// Writes `answer` to `query` into `out` (at most [`MAX_ANSWER_LEN`] octets) and returns its
    /// length: the query's ID, opcode, RD and CD, RA, AA when lanveil serves the name, the first
    /// question echoed, the records described at [`LocalAnswer`], and an OPT record (UDP size 1232,
    /// DO echoed) only if the query had one. `answer` must come from [`Policy::decide`] on this query.
    pub fn answer(
        &self,
        query: &[u8],
        scan: &Scan,
        answer: &LocalAnswer,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let (rc, soa) = match *answer {
            LocalAnswer::Refused => {
                let e = Ede {
                    code: ede::PROHIBITED,
                    text: REFUSED_TEXT,
                };
                return respond(query, Some(scan), rcode::REFUSED, Some(e), out);
            }
            LocalAnswer::FormErr => return respond(query, Some(scan), rcode::FORMERR, None, out),
            LocalAnswer::NxDomain(soa) => (rcode::NXDOMAIN, soa),
            LocalAnswer::NoData(soa) => (rcode::NOERROR, soa),
            LocalAnswer::Loopback => (rcode::NOERROR, None),
        };
        let q = scan.question.ok_or(Error::Truncated)?;
        let question = query
            .get(header::LEN..q.name_end + 4)
            .ok_or(Error::Truncated)?;
        if soa.is_some_and(|Apex(at)| !(header::LEN..q.name_end).contains(&usize::from(at))) {
            return Err(Error::BadPointer);
        }
        let address: &[u8] = match (answer, q.qtype) {
            (LocalAnswer::Loopback, TYPE_AAAA) => &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            (LocalAnswer::Loopback, _) => &[127, 0, 0, 1],
            _ => &[],
        };
        let soa_in_answer =
            q.qtype == TYPE_SOA && rc == rcode::NOERROR && soa == Some(Apex(header::LEN as u16));
        let aa = soa.is_some() || !address.is_empty();
        let h = Header {
            id: scan.header.id,
            flags: Header::response_flags(scan.header.flags, rc) | if aa { header::AA } else { 0 },
            qdcount: 1,
            ancount: u16::from(!address.is_empty() || soa_in_answer),
            nscount: u16::from(soa.is_some() && !soa_in_answer),
            arcount: u16::from(scan.opt.is_some()),
        };
        let mut w = respond::start(out, &h, question)?;
        if !address.is_empty() {
            respond::record(&mut w, header::LEN as u16, q.qtype, TTL, address.len())?;
            w.put(address)?;
        }
        if let Some(Apex(at)) = soa {
            let rdlen = 2 + RNAME.len() + 4 * SOA_TIMERS.len();
            respond::record(&mut w, at, TYPE_SOA, TTL, rdlen)?;
            w.put_u16(0xc000 | at)?;
            w.put(RNAME)?;
            for v in SOA_TIMERS {
                w.put_u32(v)?;
            }
        }
        respond::finish(w, scan.opt, rc, None)
    }
}

#[cfg(test)]
mod tests;
