//! Random sequences of engine inputs (client queries, upstream connects/data/answers/failures/closes,
//! reconfigurations, time passing on a virtual clock, captive-portal exceptions opened and closed
//! both through a real `captive::Tracker` and directly) against `engine::Engine` with
//! `rng::TestRng`: never panics, `inflight() ≤ max_inflight`, every answer scans and goes to a client
//! that asked (at most once per query), a `PlainQuery` goes out only while `captive_plaintext` is on,
//! only for a name the exception in force covers (compared here, independently of the engine) and
//! only before that exception's end, nothing under `resolver.arpa` (leak probes, registered by
//! `LeakProbe`) goes upstream while the policy is on, and once time runs past every deadline with no
//! more upstream answers, nothing is in flight and every answerable query got exactly one answer.
#![no_main]

use core::net::SocketAddr;
use core::time::Duration;

use arbitrary::Arbitrary;
use lanveil_core::cache::CacheConfig;
use lanveil_core::capport::CaptivePortalUri;
use lanveil_core::captive::{ApiState, Exception, Settings, Tracker};
use lanveil_core::engine::{
    Action, ClientAddr, CloseReason, Engine, EngineConfig, PlainTarget, SelectPolicy, SessionId,
    TlsFailure, Transport, UpstreamId, UpstreamSpec,
};
use lanveil_core::leak_probe::{self, Probe};
use lanveil_core::policy::{Policy, PolicyConfig};
use lanveil_core::rng::TestRng;
use lanveil_core::time::Instant;
use lanveil_core::wire::framing;
use lanveil_core::wire::header::Header;
use lanveil_core::wire::message::scan;
use lanveil_core::wire::name;
use lanveil_fuzz::{hex, must_scan};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Setup {
    upstreams: u8,
    max_inflight: u8,
    pipeline: u8,
    max_connections: u8,
    timeout_ms: u16,
    connect_ms: u16,
    idle_ms: u16,
    backoff_ms: u16,
    select: u8,
    cache: bool,
    policy: bool,
    query_log: u8,
    seed: u64,
    /// `captive_plaintext` at start.
    captive_plaintext: bool,
    plaintext_max_ms: u16,
    /// DNS64 (the well-known prefix): AAAA queries may go on as A and be synthesized.
    dns64: bool,
}

/// Portal API URIs the WAN may announce (hosts among the names the queries ask for).
const PORTALS: [&str; 5] = [
    "https://a.example/api",
    "https://B.example:8443/captive",
    "https://c.lan/portal",
    "https://192.0.2.1/api",
    "urn:ietf:params:capport:unrestricted",
];
/// `user-portal-url`s an API may return.
const LOGINS: [&str; 4] = [
    "https://d.example/login",
    "https://A.EXAMPLE/",
    "http://e.example/",
    "https://[2001:db8::1]/",
];

#[derive(Arbitrary, Debug)]
enum Op {
    RawQuery {
        client: u8,
        bytes: Vec<u8>,
    },
    Query {
        client: u8,
        id: u16,
        label: u8,
        qtype: u8,
        flags: u8,
        edns: Option<(u16, bool, u8)>,
    },
    Connected(u8),
    Data(u8, Vec<u8>),
    Answer {
        which: u8,
        kind: u8,
        split: u8,
    },
    RequestFailed(u8),
    Closed(u8, u8),
    Advance(u16),
    Timeout,
    Reconfigure(u8),
    /// The WAN announces portal `PORTALS[i]` (or withdraws it): the tracker's exception is handed to
    /// the engine, as the driver does.
    Portal(Option<u8>),
    /// The portal's API answered.
    PortalApi {
        captive: bool,
        login: Option<u8>,
    },
    /// `captive_plaintext` changed (a reload).
    Plaintext(bool),
    /// An exception set directly (while `captive_plaintext` is on): the names `<a-f>.example` /
    /// `<a-f>.lan` picked by the bits of `names`, ending `until_ms` from now (0: already ended).
    Exception {
        names: u16,
        until_ms: u16,
    },
    /// The exception ends (`set_plain_exception(None)`).
    CloseException,
    /// The WAN's DNS answers plaintext query `which`.
    PlainAnswer {
        which: u8,
        kind: u8,
    },
    /// `lanveil-ctl leak-test` registers probe `PROBE_LABELS[label % 4]` with a nonce (at most
    /// `leak_probe::MAX_PROBES` live; each for `leak_probe::LIFETIME`).
    LeakProbe {
        label: u8,
        nonce: u8,
    },
}

/// Leak-probe labels (16 octets, lowercase and digits); `Query` asks for `LABEL.<ZONE>` when its
/// `label` has bits 0x30 set (upper case with its 0x40 bit).
const PROBE_LABELS: [&str; 4] = [
    "probe0aaaaaaaaaa",
    "probe1bbbbbbbbbb",
    "probe2cccccccccc",
    "probe3dddddddddd",
];

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

/// A message sent upstream and not yet answered by the harness.
struct Sent {
    session: SessionId,
    message: bool,
    tag: u16,
    msg: Vec<u8>,
}

struct Harness {
    e: Engine<TestRng>,
    now: Instant,
    max_inflight: usize,
    sessions: Vec<SessionId>,
    sent: Vec<Sent>,
    /// Every (session, tag) of a request to a message session, answered or not.
    requested: Vec<(SessionId, u16)>,
    transports: Vec<(SessionId, bool)>,
    specs: Vec<UpstreamSpec>,
    /// (client, ID) of queries still owed an answer.
    pending: Vec<(ClientAddr, u16)>,
    policy: bool,
    tracker: Tracker,
    settings: Settings,
    portal: Option<CaptivePortalUri>,
    /// The exception last handed to the engine.
    exception: Option<Exception>,
    /// Plaintext queries sent and not answered by the harness.
    plain_sent: Vec<Sent>,
}

fn upstream_specs(sel: u8) -> Vec<UpstreamSpec> {
    let n = 1 + usize::from(sel % 3);
    (0..n)
        .map(|i| UpstreamSpec {
            id: UpstreamId(u32::from(sel >> 2 & 1) + i as u32),
            transport: if sel >> (3 + i) & 1 == 0 {
                Transport::Stream
            } else {
                Transport::Message
            },
            tcp: sel >> 6 & 1 == 0 || i == 0,
        })
        .collect()
}

fn client(sel: u8) -> ClientAddr {
    let ip = if sel & 0x40 != 0 {
        [203, 0, 113, 5]
    } else {
        [192, 168, 1, 2 + sel % 4]
    };
    let peer = SocketAddr::from((ip, 40_000 + u16::from(sel % 4)));
    if sel & 0x80 != 0 {
        ClientAddr::Tcp {
            conn: u64::from(sel % 4),
            peer,
        }
    } else {
        ClientAddr::Udp { listener: 0, peer }
    }
}

impl Harness {
    fn drain(&mut self) {
        assert!(
            self.e.inflight() <= self.max_inflight,
            "inflight {} > {}",
            self.e.inflight(),
            self.max_inflight
        );
        while let Some(t) = self.e.poll_transmit() {
            let s = must_scan(&t.bytes, "answer to a client");
            assert!(s.header.is_response(), "answers are responses");
            let Some(i) = self
                .pending
                .iter()
                .position(|&(c, id)| c == t.to && id == s.header.id)
            else {
                panic!(
                    "answer to nobody (or a second answer): {:?} {}",
                    t.to,
                    hex(&t.bytes)
                );
            };
            self.pending.swap_remove(i);
        }
        while let Some(a) = self.e.poll_action() {
            match a {
                Action::Connect { session, upstream } => {
                    self.sessions.push(session);
                    let message = self
                        .specs
                        .iter()
                        .find(|s| s.id == upstream)
                        .is_some_and(|s| s.transport == Transport::Message);
                    self.transports.push((session, message));
                }
                Action::Send { session, bytes } => {
                    let mut rest = &bytes[..];
                    while let Ok(Some((m, used))) = framing::split(rest) {
                        must_scan(m, "query sent upstream");
                        self.not_a_probe(m);
                        let tag = Header::parse(m).map(|h| h.id).unwrap_or(0);
                        self.sent.push(Sent {
                            session,
                            message: false,
                            tag,
                            msg: m.to_vec(),
                        });
                        rest = &rest[used..];
                    }
                    assert!(rest.is_empty(), "Send holds whole frames");
                }
                Action::Request {
                    session,
                    tag,
                    message,
                } => {
                    let s = must_scan(&message, "request sent upstream");
                    assert_eq!(s.header.id, 0, "DoH requests use ID 0");
                    self.not_a_probe(&message);
                    self.requested.push((session, tag));
                    self.sent.push(Sent {
                        session,
                        message: true,
                        tag,
                        msg: message,
                    });
                }
                Action::Cancel { session, tag } => {
                    // Only for a request sent on a message session; its answer may still be
                    // delivered (a late one, as on the wire).
                    assert!(
                        self.requested.contains(&(session, tag)),
                        "a Cancel for a request never sent: {session:?} {tag}"
                    );
                }
                Action::Close { session } => {
                    self.sessions.retain(|&s| s != session);
                }
                Action::PlainQuery { tag, message, to } => {
                    let s = must_scan(&message, "plaintext query");
                    // No local resolver is configured here: a Local query would be a leak.
                    assert_eq!(to, PlainTarget::Wan, "a plaintext query to a LAN resolver");
                    assert_eq!(s.header.id, tag, "the tag is the message ID");
                    let q = s.question.expect("a plaintext query has a question");
                    let qname = &message[12..q.name_end];
                    assert!(
                        self.settings.plaintext,
                        "a plaintext query with captive_plaintext off: {}",
                        hex(qname)
                    );
                    let Some(ex) = &self.exception else {
                        panic!("a plaintext query without an exception: {}", hex(qname));
                    };
                    assert!(
                        self.now < ex.until,
                        "a plaintext query after the exception's end: {}",
                        hex(qname)
                    );
                    assert!(
                        ex.names.iter().any(|n| n.eq_ignore_ascii_case(qname)),
                        "a plaintext query for a name the exception does not cover: {}",
                        hex(qname)
                    );
                    self.plain_sent.push(Sent {
                        session: SessionId(0),
                        message: false,
                        tag,
                        msg: message,
                    });
                }
            }
        }
        while self.e.poll_event().is_some() {}
    }

    fn query(&mut self, to: ClientAddr, bytes: &[u8]) {
        if let Ok(h) = Header::parse(bytes) {
            let allowed =
                !self.policy || matches!(to.peer(), SocketAddr::V4(a) if a.ip().is_private());
            let dropped = self.e.stats().dropped;
            self.e.handle_query(self.now, to, bytes);
            // Sources outside `allow` are answered within a budget shared by all of them; a query
            // over it is dropped (and counted) without an answer.
            let over_budget = !allowed && self.e.stats().dropped > dropped;
            if !h.is_response() && (allowed || scan(bytes).is_ok()) && !over_budget {
                self.pending.push((to, h.id));
            }
            return;
        }
        self.e.handle_query(self.now, to, bytes);
    }

    /// With the policy on, nothing under `resolver.arpa` (where the leak probes live) goes upstream.
    fn not_a_probe(&self, msg: &[u8]) {
        if !self.policy {
            return;
        }
        let Some(q) = scan(msg).ok().and_then(|s| s.question) else {
            return;
        };
        let name = msg[12..q.name_end].to_ascii_lowercase();
        assert!(
            !name.ends_with(b"\x08resolver\x04arpa\x00"),
            "a resolver.arpa name sent upstream: {}",
            hex(&name)
        );
    }

    fn session(&self, i: u8) -> Option<SessionId> {
        self.sessions
            .get(usize::from(i) % self.sessions.len().max(1))
            .copied()
    }

    /// What the driver does after any WAN change: the tracker's exception goes to the engine.
    fn sync_exception(&mut self) {
        let ex = self.tracker.exception(self.now);
        self.exception.clone_from(&ex);
        self.e.set_plain_exception(ex);
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        if self.e.poll_timeout().is_some_and(|t| t <= self.now) {
            self.e.handle_timeout(self.now);
        }
    }
}

fn engine_config(s: &Setup) -> EngineConfig {
    EngineConfig {
        query_timeout: Duration::from_millis(100 + u64::from(s.timeout_ms % 3000)),
        max_inflight: 1 + usize::from(s.max_inflight % 8),
        pipeline: 1 + usize::from(s.pipeline % 4),
        max_connections: 1 + usize::from(s.max_connections % 3),
        idle_timeout: Duration::from_millis(1_000 + u64::from(s.idle_ms % 20_000)),
        connect_timeout: Duration::from_millis(100 + u64::from(s.connect_ms % 5_000)),
        backoff_max: Duration::from_millis(100 + u64::from(s.backoff_ms % 4_000)),
        policy: match s.select % 3 {
            0 => SelectPolicy::Failover,
            1 => SelectPolicy::RoundRobin,
            _ => SelectPolicy::Fastest,
        },
        cache: s.cache.then(|| CacheConfig {
            max_entries: 8,
            max_bytes: 16 * 1024,
            ..CacheConfig::default()
        }),
        query_log: usize::from(s.query_log % 4),
        dns64: s
            .dns64
            .then_some(lanveil_core::dns64::Nat64Prefix::WELL_KNOWN),
        ..EngineConfig::default()
    }
}

/// An upstream answer to `sent`, shaped by `kind`.
fn answer(sent: &Sent, kind: u8) -> Vec<u8> {
    let Ok(s) = scan(&sent.msg) else {
        return sent.msg.clone();
    };
    let mut r = sent.msg[..2].to_vec();
    let rcode = [0u8, 0, 0, 2, 3, 5, 0, 2][usize::from(kind % 8)];
    let answers = (kind >> 3) % 4;
    r.extend_from_slice(&[
        0x81,
        0x80 | rcode,
        0,
        1,
        0,
        answers,
        0,
        0,
        0,
        u8::from(kind & 0x20 != 0),
    ]);
    let mut q = sent.msg[12..s.question_end].to_vec();
    if kind & 0x40 != 0 {
        q.make_ascii_uppercase(); // the same question, other case: still accepted
    }
    if kind & 0x80 != 0 && q.len() > 2 {
        q[1] ^= 0x01; // another question: the session is closed as hostile
    }
    r.extend_from_slice(&q);
    for i in 0..answers {
        r.extend_from_slice(&[
            0xc0,
            0x0c,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            30 * (i + 1),
            0,
            4,
            10,
            0,
            0,
            i,
        ]);
    }
    if kind & 0x20 != 0 {
        r.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 6, 0, 15, 0, 2, 0, 22]);
    }
    r
}

fuzz_target!(|input: Input| {
    let s = &input.setup;
    let config = engine_config(s);
    let specs = upstream_specs(s.upstreams);
    let settings = Settings {
        plaintext: s.captive_plaintext,
        plaintext_max: Duration::from_millis(u64::from(s.plaintext_max_ms)),
        poll: Duration::from_secs(60),
    };
    let mut h = Harness {
        e: Engine::new(config, &specs, TestRng::new(s.seed)),
        now: Instant::from_millis(1_000),
        max_inflight: config.max_inflight,
        sessions: Vec::new(),
        sent: Vec::new(),
        requested: Vec::new(),
        transports: Vec::new(),
        specs,
        pending: Vec::new(),
        policy: s.policy,
        tracker: Tracker::new(settings),
        settings,
        portal: None,
        exception: None,
        plain_sent: Vec::new(),
    };
    if s.policy {
        h.e.set_policy(Some(
            Policy::new(&PolicyConfig::default()).expect("default policy"),
        ));
    }
    for op in input.ops.iter().take(128) {
        match op {
            Op::RawQuery { client: c, bytes } => h.query(client(*c), bytes),
            Op::LeakProbe { label, nonce } => {
                let nonce = format!("nonce{:011}", nonce);
                let probe = Probe::new(PROBE_LABELS[usize::from(label % 4)], &nonce)
                    .expect("a valid probe");
                h.e.add_leak_probe(h.now, probe);
            }
            Op::Query {
                client: c,
                id,
                label,
                qtype,
                flags,
                edns,
            } => {
                let mut q = id.to_be_bytes().to_vec();
                q.extend_from_slice(&[
                    flags & 0x7b,
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    u8::from(edns.is_some()),
                ]);
                let letter = b'a' + label % 6;
                if label & 0x30 == 0x30 {
                    let mut dotted = format!(
                        "{}.{}",
                        PROBE_LABELS[usize::from(label % 4)],
                        leak_probe::ZONE
                    );
                    if label & 0x40 != 0 {
                        dotted.make_ascii_uppercase();
                    }
                    let mut buf = [0u8; name::MAX_NAME_LEN];
                    let n = name::encode(&dotted, &mut buf).expect("a valid name");
                    // Without its root label: the question's end below adds it.
                    q.extend_from_slice(&buf[..n - 1]);
                } else {
                    q.extend_from_slice(&[
                        1,
                        if label & 0x40 != 0 {
                            letter.to_ascii_uppercase()
                        } else {
                            letter
                        },
                    ]);
                    if label & 0x80 != 0 {
                        q.extend_from_slice(b"\x03lan");
                    } else {
                        q.extend_from_slice(b"\x07example");
                    }
                }
                q.extend_from_slice(&[
                    0,
                    0,
                    [1, 28, 16, 6, 255, 65][usize::from(*qtype % 6)],
                    0,
                    1,
                ]);
                if let Some((size, dnssec_ok, version)) = edns {
                    q.extend_from_slice(&[0, 0, 41]);
                    q.extend_from_slice(&size.to_be_bytes());
                    q.extend_from_slice(&[
                        0,
                        version % 2,
                        if *dnssec_ok { 0x80 } else { 0 },
                        0,
                        0,
                        0,
                    ]);
                }
                h.query(client(*c), &q);
            }
            Op::Connected(i) => {
                if let Some(sid) = h.session(*i) {
                    h.e.handle_upstream_connected(h.now, sid);
                }
            }
            Op::Data(i, bytes) => {
                if let Some(sid) = h.session(*i) {
                    h.e.handle_upstream_data(h.now, sid, bytes);
                }
            }
            Op::Answer { which, kind, split } => {
                if h.sent.is_empty() {
                    continue;
                }
                let i = usize::from(*which) % h.sent.len();
                let a = answer(&h.sent[i], *kind);
                let sent = &h.sent[i];
                let (sid, tag, message) = (sent.session, sent.tag, sent.message);
                if kind & 0x10 == 0 {
                    h.sent.swap_remove(i); // else answer it again later (a late duplicate)
                }
                if message {
                    h.e.handle_upstream_response(h.now, sid, tag, &a);
                } else {
                    let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&a);
                    let at = usize::from(*split) % (framed.len() + 1);
                    h.e.handle_upstream_data(h.now, sid, &framed[..at]);
                    h.drain();
                    h.e.handle_upstream_data(h.now, sid, &framed[at..]);
                }
            }
            Op::RequestFailed(which) => {
                let requests: Vec<usize> =
                    (0..h.sent.len()).filter(|&i| h.sent[i].message).collect();
                if let Some(&i) = requests.get(usize::from(*which) % requests.len().max(1)) {
                    let s = h.sent.swap_remove(i);
                    h.e.handle_upstream_request_failed(h.now, s.session, s.tag);
                }
            }
            Op::Closed(i, reason) => {
                if let Some(sid) = h.session(*i) {
                    let reason = match reason % 12 {
                        0 => CloseReason::Eof,
                        1 => CloseReason::Reset,
                        2 => CloseReason::Refused,
                        3 => CloseReason::Unreachable,
                        4 => CloseReason::Timeout,
                        5 => CloseReason::Stalled,
                        6 => CloseReason::Protocol,
                        7 => CloseReason::Tls(TlsFailure::PinMismatch),
                        8 => CloseReason::Tls(TlsFailure::Expired),
                        9 => CloseReason::Tls(TlsFailure::NameMismatch),
                        10 => CloseReason::Tls(TlsFailure::Handshake),
                        _ => CloseReason::Tls(TlsFailure::UntrustedCertificate),
                    };
                    h.e.handle_upstream_closed(h.now, sid, reason);
                }
            }
            Op::Advance(ms) => h.advance(u64::from(*ms)),
            Op::Timeout => {
                if let Some(t) = h.e.poll_timeout() {
                    h.now = h.now.max(t);
                    h.e.handle_timeout(h.now);
                }
            }
            Op::Reconfigure(sel) => {
                h.specs = upstream_specs(*sel);
                let mut c = config;
                c.query_log = usize::from(sel % 3);
                h.e.reconfigure(h.now, c, &h.specs.clone());
            }
            Op::Portal(sel) => {
                let uri = sel.and_then(|i| {
                    CaptivePortalUri::parse(PORTALS[usize::from(i) % PORTALS.len()].as_bytes()).ok()
                });
                h.tracker.signal(h.now, uri.clone());
                h.portal = uri;
                h.sync_exception();
            }
            Op::PortalApi { captive, login } => {
                if let Some(uri) = h.portal.clone() {
                    let st = ApiState {
                        captive: *captive,
                        user_portal_url: login
                            .map(|i| LOGINS[usize::from(i) % LOGINS.len()].into()),
                        ..ApiState::default()
                    };
                    h.tracker.api_result(h.now, &uri, Ok(st));
                }
                h.sync_exception();
            }
            Op::Plaintext(on) => {
                h.settings.plaintext = *on;
                h.tracker.set_settings(h.now, h.settings);
                h.sync_exception();
            }
            Op::Exception { names, until_ms } => {
                // The shell only ever has an exception to give while the owner allows plaintext.
                if h.settings.plaintext {
                    let names = (0..12u8)
                        .filter(|i| (*names >> i) & 1 == 1)
                        .map(|i| {
                            let mut n = vec![1, b'a' + i % 6];
                            n.extend_from_slice(if i < 6 {
                                &b"\x07example\0"[..]
                            } else {
                                b"\x03lan\0"
                            });
                            n
                        })
                        .collect();
                    let ex = Exception {
                        names,
                        until: h.now + Duration::from_millis(u64::from(*until_ms)),
                    };
                    h.exception = Some(ex.clone());
                    h.e.set_plain_exception(Some(ex));
                }
            }
            Op::CloseException => {
                h.exception = None;
                h.e.set_plain_exception(None);
            }
            Op::PlainAnswer { which, kind } => {
                if !h.plain_sent.is_empty() {
                    let i = usize::from(*which) % h.plain_sent.len();
                    let a = answer(&h.plain_sent[i], *kind);
                    let tag = h.plain_sent[i].tag;
                    if kind & 0x10 == 0 {
                        h.plain_sent.swap_remove(i);
                    }
                    h.e.handle_plain_answer(h.now, tag, &a);
                }
            }
        }
        h.drain();
    }
    // No more upstream answers: run the clock past every deadline.
    for _ in 0..10_000 {
        if h.e.inflight() == 0 && h.pending.is_empty() {
            break;
        }
        let Some(t) = h.e.poll_timeout() else { break };
        h.now = h.now.max(t);
        h.e.handle_timeout(h.now);
        h.drain();
    }
    assert_eq!(
        h.e.inflight(),
        0,
        "queries left in flight after every deadline"
    );
    assert!(h.pending.is_empty(), "unanswered queries: {:?}", h.pending);
});
