//! Scenario tests: an engine, a virtual clock and a scripted upstream.

use alloc::vec::Vec;
use core::time::Duration;

use super::*;
use crate::rng::TestRng;
use crate::wire::edns::{self, ede};
use crate::wire::message::scan;

const U1: UpstreamId = UpstreamId(1);
const U2: UpstreamId = UpstreamId(2);

fn udp(port: u16) -> ClientAddr {
    ClientAddr::Udp {
        listener: 0,
        peer: core::net::SocketAddr::from(([192, 168, 1, 10], port)),
    }
}

/// A query for `<label>.example.` type A, with an OPT record advertising `edns` if given.
fn query(id: u16, label: &str, edns: Option<u16>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    q.push(label.len() as u8);
    q.extend_from_slice(label.as_bytes());
    q.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
    if let Some(size) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

/// The upstream's answer to a framed query: the question echoed, one A record 10.0.0.<first byte of
/// the label>, an OPT record.
fn answer(frame: &[u8]) -> Vec<u8> {
    let msg = &frame[2..];
    let s = scan(msg).unwrap();
    let mut r = Vec::new();
    r.extend_from_slice(&msg[..2]);
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1]);
    r.extend_from_slice(&msg[12..s.question_end]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, msg[13]]);
    r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

/// Engine settings for scenario tests: defaults without the cache (cache tests turn it on).
fn cfg() -> EngineConfig {
    EngineConfig {
        cache: None,
        ..EngineConfig::default()
    }
}

struct Harness {
    e: Engine<TestRng>,
    now: Instant,
    out: Vec<Transmit>,
    connects: Vec<(SessionId, UpstreamId)>,
    sends: Vec<(SessionId, Vec<u8>)>,
    closes: Vec<SessionId>,
    events: Vec<Event>,
    plains: Vec<(u16, Vec<u8>)>,
    locals: Vec<(u16, Vec<u8>)>,
}

impl Harness {
    fn new(config: EngineConfig, ups: &[UpstreamId]) -> Self {
        let specs: Vec<UpstreamSpec> = ups
            .iter()
            .map(|&id| UpstreamSpec {
                id,
                transport: Transport::Stream,
            })
            .collect();
        Self {
            e: Engine::new(config, &specs, TestRng::new(7)),
            now: Instant::from_millis(1_000),
            out: Vec::new(),
            connects: Vec::new(),
            sends: Vec::new(),
            closes: Vec::new(),
            events: Vec::new(),
            plains: Vec::new(),
            locals: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.e.poll_transmit() {
            self.out.push(t);
        }
        while let Some(a) = self.e.poll_action() {
            match a {
                Action::Connect { session, upstream } => self.connects.push((session, upstream)),
                Action::Send { session, bytes } => self.sends.push((session, bytes)),
                Action::Request {
                    session,
                    tag,
                    message,
                } => {
                    // Message transports: keep the tag as the frame's ID so `answer` works unchanged.
                    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&message);
                    framed[2..4].copy_from_slice(&tag.to_be_bytes());
                    self.sends.push((session, framed));
                }
                Action::Close { session } => self.closes.push(session),
                Action::PlainQuery { tag, message, to } => match to {
                    PlainTarget::Wan => self.plains.push((tag, message)),
                    PlainTarget::Local => self.locals.push((tag, message)),
                },
            }
        }
        while let Some(ev) = self.e.poll_event() {
            self.events.push(ev);
        }
    }

    fn q(&mut self, client: ClientAddr, bytes: &[u8]) {
        self.e.handle_query(self.now, client, bytes);
        self.drain();
    }

    fn advance(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        // Step through every deadline on the way, like the shell's timer would.
        while let Some(t) = self.e.poll_timeout() {
            if t > target {
                break;
            }
            self.now = t.max(self.now);
            self.e.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
        self.e.handle_timeout(self.now);
        self.drain();
    }

    fn connected(&mut self, s: SessionId) {
        self.e.handle_upstream_connected(self.now, s);
        self.drain();
    }

    fn data(&mut self, s: SessionId, bytes: &[u8]) {
        self.e.handle_upstream_data(self.now, s, bytes);
        self.drain();
    }

    fn closed(&mut self, s: SessionId, r: CloseReason) {
        self.e.handle_upstream_closed(self.now, s, r);
        self.drain();
    }
}

fn rcode_and_ede(msg: &[u8]) -> (u16, Option<(u16, Vec<u8>)>) {
    let s = scan(msg).unwrap();
    let ede = s.opt.and_then(|o| {
        edns::options(&msg[o.rdata_start..o.end])
            .find(|(c, _)| *c == edns::OPTION_EDE)
            .map(|(_, d)| (u16::from_be_bytes([d[0], d[1]]), d[2..].to_vec()))
    });
    (s.rcode(), ede)
}

#[test]
fn forwards_over_one_session_and_restores_id() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1000), &query(0xbeef, "a", Some(4096)));
    assert_eq!(h.connects.len(), 1);
    assert!(
        h.sends.is_empty(),
        "nothing may be sent before the TLS session is up"
    );
    let (s, u) = h.connects[0];
    assert_eq!(u, U1);
    h.connected(s);
    assert_eq!(h.sends.len(), 1);
    let frame = h.sends[0].1.clone();
    assert_eq!((frame.len() - 2) % 128, 0, "RFC 8467 padding");
    let upstream_id = u16::from_be_bytes([frame[2], frame[3]]);
    assert_ne!(upstream_id, 0xbeef);
    h.data(s, &answer(&frame));
    assert_eq!(h.out.len(), 1);
    let a = &h.out[0];
    assert_eq!(a.to, udp(1000));
    assert_eq!(&a.bytes[..2], &[0xbe, 0xef]);
    assert_eq!(*a.bytes.last().unwrap(), 0, "answer ends with OPT");
    assert_eq!(h.e.inflight(), 0);
    assert_eq!(h.e.stats().answered, 1);
}

#[test]
fn pipelined_answers_in_any_order_match_their_questions() {
    let mut h = Harness::new(cfg(), &[U1]);
    for i in 0..50u16 {
        let label = alloc::format!("{}", char::from(b'A' + (i % 26) as u8));
        h.q(udp(2000 + i), &query(i, &label, None));
    }
    assert_eq!(h.connects.len(), 1, "one connection carries them all");
    let s = h.connects[0].0;
    h.connected(s);
    assert_eq!(h.sends.len(), 50);
    let mut ids: Vec<u16> = h
        .sends
        .iter()
        .map(|(_, f)| u16::from_be_bytes([f[2], f[3]]))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50, "upstream IDs unique on the session");
    let frames: Vec<_> = h.sends.iter().rev().map(|(_, f)| answer(f)).collect();
    // Deliver all answers in one burst, reversed, split at odd boundaries.
    let stream: Vec<u8> = frames.concat();
    for chunk in stream.chunks(37) {
        h.data(s, chunk);
    }
    assert_eq!(h.out.len(), 50);
    for t in &h.out {
        let ClientAddr::Udp { peer, .. } = t.to else {
            panic!()
        };
        let i = peer.port() - 2000;
        assert_eq!(u16::from_be_bytes([t.bytes[0], t.bytes[1]]), i);
        assert_eq!(
            t.bytes[13],
            b'A' + (i % 26) as u8,
            "question is the client's"
        );
        let s = scan(&t.bytes).unwrap();
        assert_eq!(
            &t.bytes[s.answer_end - 4..s.answer_end],
            &[10, 0, 0, b'A' + (i % 26) as u8]
        );
    }
}

#[test]
fn stalled_upstream_gives_servfail_ede22_at_deadline() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    let s = h.connects[0].0;
    h.connected(s);
    h.advance(2_499);
    assert!(h.out.is_empty(), "not before the deadline");
    h.advance(1);
    assert_eq!(h.out.len(), 1);
    let (rc, ede) = rcode_and_ede(&h.out[0].bytes);
    assert_eq!(rc, rcode::SERVFAIL);
    assert_eq!(ede.unwrap().0, ede::NO_REACHABLE_AUTHORITY);
    assert_eq!(h.e.inflight(), 0);
}

#[test]
fn tls_failure_answers_promptly_with_ede23() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    let s1 = h.connects[0].0;
    h.advance(20);
    h.closed(s1, CloseReason::Tls(TlsFailure::PinMismatch));
    // One retry after the first backoff (≤ 250 ms), then an immediate answer.
    assert!(h.out.is_empty());
    h.advance(250);
    assert_eq!(h.connects.len(), 2, "retried once on a new connection");
    let s2 = h.connects[1].0;
    h.advance(20);
    h.closed(s2, CloseReason::Tls(TlsFailure::PinMismatch));
    assert_eq!(h.out.len(), 1, "answered without waiting for the deadline");
    let (rc, ede) = rcode_and_ede(&h.out[0].bytes);
    assert_eq!(rc, rcode::SERVFAIL);
    let (code, text) = ede.unwrap();
    assert_eq!(code, ede::NETWORK_ERROR);
    assert_eq!(text, b"upstream certificate rejected: SPKI pin mismatch");
    assert!(
        h.sends.is_empty(),
        "no query bytes ever left on an unauthenticated session"
    );
    // A new query during a short backoff waits for it to end (it can still succeed in time) ...
    h.q(udp(2), &query(2, "b", Some(1232)));
    assert_eq!((h.out.len(), h.connects.len()), (1, 2));
    h.advance(500);
    assert_eq!(h.connects.len(), 3);
    // ... but once the backoff is longer than a query's deadline, queries are answered at once.
    for _ in 0..6 {
        if let Some(&(s, _)) = h.connects.last() {
            h.closed(s, CloseReason::Tls(TlsFailure::PinMismatch));
        }
        h.advance(4_000);
        h.out.clear();
        h.q(udp(3), &query(3, "c", Some(1232)));
    }
    let before = h.connects.len();
    h.closed(
        h.connects[before - 1].0,
        CloseReason::Tls(TlsFailure::PinMismatch),
    );
    h.out.clear();
    h.q(udp(4), &query(4, "d", Some(1232)));
    assert_eq!(
        h.out.len(),
        1,
        "backoff (≥ 2 s after many failures) outlasts the deadline: prompt SERVFAIL"
    );
    assert_eq!(
        rcode_and_ede(&h.out[0].bytes).1.unwrap().0,
        ede::NETWORK_ERROR
    );
}

#[test]
fn query_in_flight_when_connection_dies_is_retried_once() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(9, "a", None));
    let s1 = h.connects[0].0;
    h.connected(s1);
    assert_eq!(h.sends.len(), 1);
    h.closed(s1, CloseReason::Reset);
    assert_eq!(
        h.connects.len(),
        2,
        "working connection broke: redial at once"
    );
    let s2 = h.connects[1].0;
    h.connected(s2);
    assert_eq!(h.sends.len(), 2);
    assert_eq!(h.sends[1].0, s2);
    let f = h.sends[1].1.clone();
    h.data(s2, &answer(&f));
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NOERROR);
    assert_eq!(h.e.stats().retries, 1);
    // A second death of the retried query's session ends it with SERVFAIL.
    h.q(udp(2), &query(10, "b", None));
    let s = h.sends.last().unwrap().0;
    h.closed(s, CloseReason::Reset);
    let s3 = h.connects.last().unwrap().0;
    h.connected(s3);
    h.closed(s3, CloseReason::Reset);
    assert_eq!(h.out.len(), 2);
    assert_eq!(rcode_and_ede(&h.out[1].bytes).0, rcode::SERVFAIL);
}

#[test]
fn backoff_is_capped_and_recovery_is_quick() {
    let cfg = cfg();
    let mut h = Harness::new(cfg, &[U1]);
    // Fail many connects in a row while clients keep asking.
    let mut attempts = 0;
    for i in 0..40u16 {
        h.q(udp(i), &query(i, "a", None));
        while let Some(&(s, _)) = h.connects.get(attempts) {
            attempts += 1;
            h.closed(s, CloseReason::Refused);
        }
        h.advance(500);
    }
    assert!(attempts >= 8, "kept trying while clients asked: {attempts}");
    // The upstream recovers: within backoff_max + a query timeout, a new query is forwarded.
    let mut served = false;
    for i in 0..20u16 {
        h.q(udp(100 + i), &query(100 + i, "b", None));
        if let Some(&(s, _)) = h.connects.get(attempts) {
            h.connected(s);
            served = !h.sends.is_empty();
            break;
        }
        h.advance(500);
        assert!(
            u64::from(i) * 500 <= 4_000 + 500,
            "no connect attempt within the backoff cap"
        );
    }
    assert!(served);
}

#[test]
fn failover_to_second_upstream() {
    let mut h = Harness::new(cfg(), &[U1, U2]);
    h.q(udp(1), &query(1, "a", None));
    let (s1, u) = h.connects[0];
    assert_eq!(u, U1);
    h.closed(s1, CloseReason::Refused);
    let (s2, u) = h.connects[1];
    assert_eq!(u, U2, "U1 in backoff: the query goes to U2");
    h.connected(s2);
    let f = h.sends[0].1.clone();
    h.data(s2, &answer(&f));
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NOERROR);
}

#[test]
fn pipeline_bound_opens_more_connections_up_to_the_limit() {
    let cfg = EngineConfig {
        pipeline: 4,
        max_connections: 2,
        ..cfg()
    };
    let mut h = Harness::new(cfg, &[U1]);
    for i in 0..12u16 {
        h.q(udp(i), &query(i, "a", None));
    }
    assert_eq!(h.connects.len(), 2);
    for (s, _) in h.connects.clone() {
        h.connected(s);
    }
    assert_eq!(
        h.sends.len(),
        12,
        "over the soft bound the least-loaded session takes the rest"
    );
}

#[test]
fn inflight_limit_answers_overloaded() {
    let cfg = EngineConfig {
        max_inflight: 3,
        ..cfg()
    };
    let mut h = Harness::new(cfg, &[U1]);
    for i in 0..4u16 {
        h.q(udp(i), &query(i, "a", Some(1232)));
    }
    assert_eq!(h.out.len(), 1);
    let (rc, ede) = rcode_and_ede(&h.out[0].bytes);
    assert_eq!((rc, ede.unwrap().0), (rcode::SERVFAIL, ede::OTHER));
    assert_eq!(h.e.inflight(), 3);
}

#[test]
fn rfc8906_answers_everything_locally() {
    let mut h = Harness::new(cfg(), &[U1]);
    // Opcode NOTIFY (4) → NOTIMP.
    let mut q = query(1, "a", None);
    q[2] = 0x20;
    h.q(udp(1), &q);
    // Two questions → FORMERR.
    let mut q2 = query(2, "a", None);
    q2[5] = 2;
    q2.extend_from_slice(b"\x01b\x00\x00\x01\x00\x01");
    h.q(udp(2), &q2);
    // EDNS version 1 → BADVERS.
    let mut q3 = query(3, "a", Some(1232));
    let l = q3.len();
    q3[l - 5] = 1;
    h.q(udp(3), &q3);
    // Garbage body → FORMERR; short header → dropped; a response → dropped.
    h.q(udp(4), &[0, 4, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]);
    h.q(udp(5), &[1, 2, 3]);
    let mut r = query(6, "a", None);
    r[2] |= 0x80;
    h.q(udp(6), &r);
    let codes: Vec<_> = h
        .out
        .iter()
        .map(|t| (t.bytes[1], rcode_and_ede(&t.bytes).0))
        .collect();
    assert_eq!(
        codes,
        [
            (1, rcode::NOTIMP),
            (2, rcode::FORMERR),
            (3, rcode::BADVERS),
            (4, rcode::FORMERR)
        ]
    );
    assert!(h.connects.is_empty(), "none of these went upstream");
    assert_eq!(h.e.stats().dropped, 2);
    // Unknown types and classes are forwarded unchanged.
    let mut q = query(7, "a", None);
    let l = q.len();
    q[l - 4..].copy_from_slice(&[0xff, 0x00, 0x00, 0xfe]);
    h.q(udp(7), &q);
    let s = h.connects[0].0;
    h.connected(s);
    let f = &h.sends[0].1;
    let sc = scan(&f[2..]).unwrap();
    assert_eq!(
        &f[2 + sc.question_end - 4..2 + sc.question_end],
        &[0xff, 0x00, 0x00, 0xfe]
    );
}

#[test]
fn mismatched_answer_closes_session_and_retries() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", None));
    let s = h.connects[0].0;
    h.connected(s);
    let mut bad = answer(&h.sends[0].1);
    bad[2 + 13] = b'z'; // a different question under the right ID
    h.data(s, &bad);
    assert_eq!(h.closes, [s]);
    assert!(h.out.is_empty(), "a forged answer is never passed on");
    assert_eq!(h.connects.len(), 2);
    let s2 = h.connects[1].0;
    h.connected(s2);
    let good = answer(&h.sends[1].1);
    h.data(s2, &good);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NOERROR);
}

#[test]
fn idle_sessions_close_and_stalled_ones_are_replaced() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", None));
    let s = h.connects[0].0;
    h.connected(s);
    h.data(s, &answer(&h.sends[0].1.clone()));
    h.advance(19_999);
    assert!(h.closes.is_empty());
    h.advance(1);
    assert_eq!(h.closes, [s], "idle timeout");
    assert_eq!(h.e.sessions(), 0);
    // Stall: queries outstanding and no bytes for a whole query timeout → session replaced.
    h.q(udp(2), &query(2, "b", None));
    let s2 = h.connects[1].0;
    h.connected(s2);
    h.advance(2_600);
    assert!(h.closes.contains(&s2));
    h.q(udp(3), &query(3, "c", None));
    // The stalled upstream backs off briefly (it is the only one), then a fresh connection is dialed.
    assert_eq!(h.connects.len(), 2);
    h.advance(300);
    assert_eq!(h.connects.len(), 3, "next query dials a fresh connection");
}

#[test]
fn udp_client_gets_at_most_1232_tcp_gets_all() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", Some(4096)));
    h.q(
        ClientAddr::Tcp {
            conn: 5,
            peer: core::net::SocketAddr::from(([192, 168, 1, 10], 40000)),
        },
        &query(2, "a", None),
    );
    let s = h.connects[0].0;
    h.connected(s);
    for i in 0..2 {
        let f = h.sends[i].1.clone();
        let msg = &f[2..];
        let sc = scan(msg).unwrap();
        let mut r = msg[..sc.question_end].to_vec();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 12;
        r[11] = 0;
        for _ in 0..12 {
            r.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, 0, 201, 200]);
            r.extend_from_slice(&[b'x'; 200]);
        }
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&r);
        h.data(s, &framed);
    }
    let udp_answer = h
        .out
        .iter()
        .find(|t| matches!(t.to, ClientAddr::Udp { .. }))
        .unwrap();
    assert!(udp_answer.bytes.len() <= 1232);
    assert!(scan(&udp_answer.bytes).unwrap().header.tc());
    let tcp_answer = h
        .out
        .iter()
        .find(|t| matches!(t.to, ClientAddr::Tcp { .. }))
        .unwrap();
    assert!(tcp_answer.bytes.len() > 2400);
    assert!(!scan(&tcp_answer.bytes).unwrap().header.tc());
}

#[test]
fn reconfigure_retires_removed_upstream_sessions() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", None));
    let s = h.connects[0].0;
    h.connected(s);
    h.e.reconfigure(
        h.now,
        cfg(),
        &[UpstreamSpec {
            id: U2,
            transport: Transport::Stream,
        }],
    );
    h.drain();
    assert!(
        h.closes.is_empty(),
        "old session drains its in-flight query first"
    );
    let f = h.sends[0].1.clone();
    h.data(s, &answer(&f));
    assert_eq!(h.out.len(), 1);
    assert_eq!(h.closes, [s]);
    h.q(udp(2), &query(2, "b", None));
    assert_eq!(h.connects.last().unwrap().1, U2);
}

fn servfail_of(frame: &[u8]) -> Vec<u8> {
    let mut a = answer(frame);
    a[2 + 3] = (a[2 + 3] & 0xf0) | 2;
    a
}

#[test]
fn unanswered_attempt_is_hedged_to_the_next_upstream() {
    let mut h = Harness::new(cfg(), &[U1, U2]);
    h.q(udp(1), &query(1, "a", None));
    let (s1, _) = h.connects[0];
    h.connected(s1);
    // No answer within the attempt timeout (half the deadline for an upstream with no RTT yet).
    h.advance(1_250);
    assert_eq!(h.connects.len(), 2);
    assert_eq!(h.connects[1].1, U2);
    let s2 = h.connects[1].0;
    h.connected(s2);
    let f = h.sends.iter().find(|(s, _)| *s == s2).unwrap().1.clone();
    h.data(s2, &answer(&f));
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NOERROR);
    // The late answer of the first upstream is ignored, not sent twice.
    let f1 = h.sends.iter().find(|(s, _)| *s == s1).unwrap().1.clone();
    h.data(s1, &answer(&f1));
    assert_eq!(h.out.len(), 1);
    assert_eq!(h.e.stats().hedged, 1);
    assert_eq!(h.e.stats().late_answers, 1);
}

#[test]
fn servfail_is_retried_elsewhere_and_passed_on_only_if_all_fail() {
    let mut h = Harness::new(cfg(), &[U1, U2]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    let s1 = h.connects[0].0;
    h.connected(s1);
    let f = h.sends[0].1.clone();
    h.data(s1, &servfail_of(&f));
    assert!(
        h.out.is_empty(),
        "not passed on while another upstream can answer"
    );
    let (s2, u) = h.connects[1];
    assert_eq!(u, U2);
    h.connected(s2);
    let f2 = h.sends[1].1.clone();
    h.data(s2, &servfail_of(&f2));
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::SERVFAIL);
    assert_eq!(h.e.stats().upstream_servfail, 2);
}

#[test]
fn fastest_policy_prefers_the_lower_rtt() {
    let c = EngineConfig {
        policy: SelectPolicy::Fastest,
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1, U2]);
    let mut sessions = BTreeMap::new();
    // Teach the engine the RTTs: U1 answers after 200 ms, U2 after 10 ms.
    for i in 0..40u16 {
        h.q(udp(i), &query(i, "a", None));
        while let Some((s, u)) = h.connects.pop() {
            h.connected(s);
            sessions.insert(s, u);
        }
        let (s, f) = h.sends.pop().unwrap();
        let delay = if sessions[&s] == U1 { 200 } else { 10 };
        h.advance(delay);
        h.data(s, &answer(&f));
    }
    let mut to_u2 = 0;
    for i in 100..132u16 {
        h.q(udp(i), &query(i, "b", None));
        let (s, f) = h.sends.pop().unwrap();
        if sessions[&s] == U2 {
            to_u2 += 1;
        }
        h.data(s, &answer(&f));
    }
    assert!(
        to_u2 >= 28,
        "most queries go to the faster upstream: {to_u2}/32"
    );
}

#[test]
fn message_transport_uses_id_zero_and_tags() {
    let specs = [UpstreamSpec {
        id: U1,
        transport: Transport::Message,
    }];
    let mut e = Engine::new(cfg(), &specs, TestRng::new(3));
    let now = Instant::from_millis(5);
    e.handle_query(now, udp(1), &query(0x7777, "a", None));
    let Some(Action::Connect { session, .. }) = e.poll_action() else {
        panic!()
    };
    e.handle_upstream_connected(now, session);
    let Some(Action::Request { tag, message, .. }) = e.poll_action() else {
        panic!()
    };
    assert_eq!(&message[..2], &[0, 0], "RFC 8484 §4.1");
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    let resp = answer(&framed);
    e.handle_upstream_response(now, session, tag, &resp[2..]);
    let t = e.poll_transmit().unwrap();
    assert_eq!(&t.bytes[..2], &[0x77, 0x77]);
    // A failed request tries again (on the same upstream, the only one) and never answers twice.
    e.handle_query(now, udp(2), &query(0x8888, "b", None));
    let Some(Action::Request { tag, .. }) = e.poll_action() else {
        panic!()
    };
    e.handle_upstream_request_failed(now, session, tag);
    assert!(e.poll_transmit().is_none());
    let Some(Action::Request {
        tag: tag2, message, ..
    }) = e.poll_action()
    else {
        panic!()
    };
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    e.handle_upstream_response(now, session, tag2, &answer(&framed)[2..]);
    assert_eq!(&e.poll_transmit().unwrap().bytes[..2], &[0x88, 0x88]);
    let _ = tag;
}

#[test]
fn cache_hits_skip_the_upstream_and_stale_answers_carry_ede3() {
    let c = EngineConfig {
        cache: Some(crate::cache::CacheConfig {
            max_ttl: 60,
            ..Default::default()
        }),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    h.data(s, &answer(&f));
    h.q(udp(2), &query(2, "A", Some(1232)));
    assert_eq!(h.sends.len(), 1, "second query answered from the cache");
    assert_eq!(h.out.len(), 2);
    assert_eq!(&h.out[1].bytes[..2], &[0, 2]);
    assert_eq!(h.e.stats().cache_hits, 1);
    // 61 s later the entry is stale; the upstream is gone: the stale answer comes with EDE 3.
    h.closed(s, CloseReason::Reset);
    h.advance(61_000);
    h.q(udp(3), &query(3, "a", Some(1232)));
    let pending = h.connects.len();
    h.closed(h.connects[pending - 1].0, CloseReason::Refused);
    h.advance(3_000);
    let last = h.out.last().unwrap();
    let (rc, ede) = rcode_and_ede(&last.bytes);
    assert_eq!((rc, ede.unwrap().0), (rcode::NOERROR, ede::STALE_ANSWER));
    assert_eq!(h.e.stats().stale_answers, 1);
}

#[test]
fn per_client_rate_and_inflight_limits_keep_others_served() {
    let limits = ClientLimits {
        rate_qps: 10,
        burst: 5,
        max_inflight: 3,
        ..ClientLimits::default()
    };
    let mut h = Harness::new(
        EngineConfig {
            clients: limits,
            ..cfg()
        },
        &[U1],
    );
    let flooder = |p: u16| ClientAddr::Udp {
        listener: 0,
        peer: core::net::SocketAddr::from(([192, 168, 1, 66], p)),
    };
    // Burst of 5 allowed, the rest refused at once; in flight capped at 3.
    for i in 0..20u16 {
        h.q(flooder(i), &query(i, "a", Some(1232)));
    }
    assert_eq!(h.e.inflight(), 3, "per-client in-flight cap");
    assert_eq!(h.e.stats().rate_limited, 15);
    assert_eq!(h.e.stats().client_overloaded, 2);
    let refused = h
        .out
        .iter()
        .filter(|t| rcode_and_ede(&t.bytes).0 == rcode::REFUSED)
        .count();
    assert_eq!(refused, 15);
    // Another client is served normally.
    h.q(udp(9), &query(99, "b", None));
    assert_eq!(h.e.inflight(), 4);
    // Tokens come back with time: 10 per second.
    h.advance(1_000);
    h.out.clear();
    let before = h.e.stats().rate_limited;
    for i in 0..8u16 {
        h.q(flooder(100 + i), &query(100 + i, "c", Some(1232)));
    }
    assert!(
        h.e.stats().rate_limited - before <= 3,
        "refilled: {}",
        h.e.stats().rate_limited - before
    );
    // Loopback (dnsmasq in front) is exempt by default.
    let lo = |p: u16| ClientAddr::Udp {
        listener: 0,
        peer: core::net::SocketAddr::from(([127, 0, 0, 1], p)),
    };
    let limited = h.e.stats().rate_limited;
    for i in 0..50u16 {
        h.q(lo(i), &query(i, "d", None));
    }
    assert_eq!(h.e.stats().rate_limited, limited);
}

#[test]
fn drop_action_sends_nothing() {
    let limits = ClientLimits {
        rate_qps: 1,
        burst: 1,
        action: RateAction::Drop,
        ..ClientLimits::default()
    };
    let mut h = Harness::new(
        EngineConfig {
            clients: limits,
            ..cfg()
        },
        &[U1],
    );
    for i in 0..5u16 {
        h.q(udp(i), &query(i, "a", None));
    }
    assert!(h.out.is_empty());
    assert_eq!(h.e.stats().rate_limited, 4);
}

#[test]
fn short_deadlines_do_not_panic_when_hedging() {
    // Fuzzer find: a valid 100-500 ms query_timeout made the attempt-timeout clamp panic (min > max).
    let c = EngineConfig {
        query_timeout: Duration::from_millis(100),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1, U2]);
    for i in 0..5u16 {
        h.q(udp(i), &query(i, "a", None));
        if let Some(&(s, _)) = h.connects.last() {
            h.connected(s);
        }
        if let Some((s, f)) = h.sends.pop() {
            h.advance(20);
            h.data(s, &answer(&f));
        }
        h.advance(200);
    }
    assert_eq!(h.e.inflight(), 0);
}

#[test]
fn captive_exception_sends_only_its_names_in_plaintext_and_never_caches() {
    use crate::captive::Exception;
    let portal = b"\x06portal\x07example\x00".to_vec();
    let mut h = Harness::new(
        EngineConfig {
            cache: Some(crate::cache::CacheConfig::default()),
            ..cfg()
        },
        &[U1],
    );
    // No exception: the portal's name goes over the encrypted path like any other.
    h.q(udp(1), &query(1, "portal", None));
    assert!(h.plains.is_empty());
    assert_eq!(h.connects.len(), 1);
    let until = h.now + Duration::from_secs(60);
    h.e.set_plain_exception(Some(Exception {
        names: alloc::vec![portal],
        until,
    }));
    h.q(udp(2), &query(0x2222, "PORTAL", Some(1232)));
    h.q(udp(3), &query(3, "other", None));
    h.q(udp(4), &query(4, "x", None));
    assert_eq!(
        h.plains.len(),
        1,
        "only the portal's name leaves in plaintext"
    );
    assert_eq!(h.e.stats().plaintext_portal, 1);
    let (tag, msg) = h.plains[0].clone();
    assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), tag);
    // A reply with another ID, or to another question, is ignored.
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    let good = answer(&framed)[2..].to_vec();
    let mut wrong_id = good.clone();
    wrong_id[0] ^= 1;
    h.e.handle_plain_answer(h.now, tag, &wrong_id);
    let mut wrong_q = good.clone();
    wrong_q[13] = b'q';
    h.e.handle_plain_answer(h.now, tag, &wrong_q);
    h.drain();
    assert!(h.out.iter().all(|t| t.to != udp(2)));
    h.e.handle_plain_answer(h.now, tag, &good);
    h.drain();
    let got = h.out.iter().find(|t| t.to == udp(2)).unwrap();
    assert_eq!(&got.bytes[..2], &0x2222u16.to_be_bytes());
    let (rc, e) = rcode_and_ede(&got.bytes);
    assert_eq!(rc, 0);
    let (code, text) = e.unwrap();
    assert_eq!(code, ede::OTHER);
    assert!(
        core::str::from_utf8(&text)
            .unwrap()
            .contains("unauthenticated")
    );
    // Never cached: after the exception the same name goes over the encrypted path again.
    h.e.set_plain_exception(None);
    let sends = h.sends.len() + h.connects.len();
    h.q(udp(5), &query(5, "portal", None));
    assert_eq!(h.plains.len(), 1);
    assert!(
        h.out.iter().all(|t| t.to != udp(5)),
        "not answered from a cache"
    );
    assert!(h.sends.len() + h.connects.len() >= sends);
    // An exception past its end covers nothing; an unanswered plaintext query gets SERVFAIL + EDE 23.
    h.e.set_plain_exception(Some(Exception {
        names: alloc::vec![b"\x06portal\x07example\x00".to_vec()],
        until: h.now + Duration::from_secs(1),
    }));
    h.q(udp(6), &query(6, "portal", Some(1232)));
    assert_eq!(h.plains.len(), 2);
    h.advance(5_000);
    let failed = h.out.iter().find(|t| t.to == udp(6)).unwrap();
    let (rc, e) = rcode_and_ede(&failed.bytes);
    assert_eq!(
        (rc, e.map(|e| e.0)),
        (rcode::SERVFAIL, Some(ede::NETWORK_ERROR))
    );
    h.q(udp(7), &query(7, "portal", None));
    assert_eq!(h.plains.len(), 2, "the exception ended");
    assert_eq!(h.e.plain_inflight(), 0);
}

#[test]
fn answers_split_anywhere_or_coalesced_in_one_read_all_arrive() {
    // handle_upstream_data reads whole answers straight from the bytes when nothing is buffered and
    // reassembles otherwise; every way of cutting the stream must give the same answers.
    for chunk in [1, 2, 3, 37, 130, 1000, usize::MAX] {
        let mut h = Harness::new(cfg(), &[U1]);
        for i in 0..20u16 {
            h.q(udp(3000 + i), &query(i, "x", None));
        }
        let s = h.connects[0].0;
        h.connected(s);
        let stream: Vec<u8> = h.sends.iter().flat_map(|(_, f)| answer(f)).collect();
        for part in stream.chunks(chunk.min(stream.len())) {
            h.data(s, part);
        }
        assert_eq!(h.out.len(), 20, "chunk {chunk}");
        assert!(h.closes.is_empty(), "chunk {chunk}");
        assert_eq!(h.e.inflight(), 0, "chunk {chunk}");
    }
}

/// A query for the dotted `name`, type `qtype`, RD set, with an OPT record if `edns`.
fn query_for(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// A harness whose policy keeps local names on the LAN: with a local resolver (`local_forward`) or
/// without one (answered here).
fn local_harness(local_forward: bool) -> Harness {
    let mut h = Harness::new(
        EngineConfig {
            cache: Some(crate::cache::CacheConfig::default()),
            ..cfg()
        },
        &[U1],
    );
    let p = policy::PolicyConfig {
        local_domain: Some("home.example".into()),
        local_forward,
        ..Default::default()
    };
    h.e.set_policy(Some(Policy::new(&p).unwrap()));
    h
}

/// Local names: `local_domain`, `lan`, `home.arpa`, the RFC 6303 reverse zones of the LAN, a single
/// label.
const LOCAL_NAMES: [&str; 7] = [
    "printer.lan",
    "nas.home.arpa",
    "7.1.168.192.in-addr.arpa",
    "9.0.0.10.in-addr.arpa",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa",
    "tv.home.example",
    "printer",
];

#[test]
fn local_names_go_to_the_local_resolver_and_never_upstream() {
    let mut h = local_harness(true);
    for (i, name) in LOCAL_NAMES.iter().enumerate() {
        h.q(
            udp(100 + i as u16),
            &query_for(i as u16, name, 1, i % 2 == 0),
        );
    }
    assert!(
        h.connects.is_empty() && h.sends.is_empty(),
        "never upstream"
    );
    assert!(h.plains.is_empty(), "never to the WAN's DNS");
    assert_eq!(h.locals.len(), LOCAL_NAMES.len());
    assert_eq!(h.e.stats().forwarded, 0);
    assert_eq!(h.e.stats().plaintext_portal, 0);
    for ((tag, msg), name) in h.locals.iter().zip(LOCAL_NAMES) {
        assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), *tag);
        let asked = query_for(0, name, 1, false);
        assert_eq!(
            &msg[12..scan(msg).unwrap().question_end],
            &asked[12..],
            "{name}"
        );
    }
    // A public name goes upstream, never to the local resolver.
    h.q(udp(200), &query_for(200, "example.com", 1, false));
    assert_eq!(h.connects.len(), 1);
    assert_eq!(h.locals.len(), LOCAL_NAMES.len());
    // The local resolver's answer reaches the client: its ID, no EDE of lanveil's, AD cleared.
    let (tag, msg) = h.locals[0].clone();
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    let mut good = answer(&framed)[2..].to_vec();
    good[3] |= 0x20;
    // The same tag from the WAN's DNS, or a wrong question, completes nothing.
    h.e.handle_plain_answer(h.now, tag, &good);
    let mut wrong_q = good.clone();
    wrong_q[13] = b'q';
    h.e.handle_local_answer(h.now, tag, &wrong_q);
    h.drain();
    assert!(h.out.iter().all(|t| t.to != udp(100)));
    h.e.handle_local_answer(h.now, tag, &good);
    h.drain();
    let got = h.out.iter().find(|t| t.to == udp(100)).unwrap();
    assert_eq!(&got.bytes[..2], &0u16.to_be_bytes());
    assert_eq!(got.bytes[3] & 0x20, 0, "AD cleared");
    let (rc, e) = rcode_and_ede(&got.bytes);
    assert_eq!((rc, e), (rcode::NOERROR, None));
    assert_eq!(h.e.stats().local_answers, 1);
    // Not cached: the same name goes to the local resolver again.
    h.q(udp(300), &query_for(300, "printer.lan", 1, false));
    assert_eq!(h.locals.len(), LOCAL_NAMES.len() + 1);
    assert!(h.out.iter().all(|t| t.to != udp(300)));
    // Unanswered: SERVFAIL with EDE 23 and the local resolver's text (not the captive one).
    h.advance(5_000);
    let failed = h.out.iter().find(|t| t.to == udp(102)).unwrap();
    let (rc, e) = rcode_and_ede(&failed.bytes);
    let (code, text) = e.unwrap();
    assert_eq!((rc, code), (rcode::SERVFAIL, ede::NETWORK_ERROR));
    let text = core::str::from_utf8(&text).unwrap();
    assert!(
        text.contains("local resolver") && !text.contains("captive"),
        "{text}"
    );
    assert_eq!(h.e.plain_inflight(), 0);
    assert!(h.connects.len() == 1 && h.e.stats().forwarded <= 1);
}

#[test]
fn without_a_local_resolver_local_names_are_answered_here() {
    let mut h = local_harness(false);
    for (i, name) in LOCAL_NAMES.iter().enumerate() {
        h.q(udp(100 + i as u16), &query_for(i as u16, name, 1, false));
    }
    assert!(h.locals.is_empty() && h.plains.is_empty());
    assert!(h.connects.is_empty() && h.sends.is_empty());
    assert_eq!(h.out.len(), LOCAL_NAMES.len());
    for t in &h.out {
        assert_eq!(rcode_and_ede(&t.bytes), (rcode::NXDOMAIN, None));
    }
    assert_eq!(h.e.stats().local_answers, LOCAL_NAMES.len() as u64);
}

#[test]
fn local_and_captive_plaintext_paths_stay_apart_and_each_is_bounded() {
    use crate::captive::Exception;
    let mut h = local_harness(true);
    h.e.set_plain_exception(Some(Exception {
        names: alloc::vec![b"\x06portal\x07example\x00".to_vec()],
        until: h.now + Duration::from_secs(60),
    }));
    h.q(udp(1), &query(1, "portal", None));
    h.q(udp(2), &query_for(2, "printer.lan", 1, false));
    assert_eq!((h.plains.len(), h.locals.len()), (1, 1));
    // A WAN answer for the portal completes only the portal's query, with the captive EDE.
    let (tag, msg) = h.plains[0].clone();
    h.e.handle_local_answer(h.now, tag, &answer_to(&msg));
    h.drain();
    assert!(
        h.out.is_empty(),
        "a local answer never completes a WAN query"
    );
    h.e.handle_plain_answer(h.now, tag, &answer_to(&msg));
    h.drain();
    let (_, e) = rcode_and_ede(&h.out[0].bytes);
    assert_eq!(h.out[0].to, udp(1));
    assert!(e.is_none(), "no OPT without client EDNS");
    // Fill the local table: the next local name gets SERVFAIL, the portal still goes out.
    for i in 1..MAX_PLAIN_INFLIGHT as u16 {
        h.q(udp(10 + i), &query_for(i, "nas.lan", 1, false));
    }
    assert_eq!(h.locals.len(), MAX_PLAIN_INFLIGHT);
    h.q(udp(99), &query_for(99, "tv.lan", 1, true));
    let full = h.out.iter().find(|t| t.to == udp(99)).unwrap();
    let (rc, e) = rcode_and_ede(&full.bytes);
    assert_eq!(rc, rcode::SERVFAIL);
    let text = e.unwrap().1;
    assert!(
        core::str::from_utf8(&text)
            .unwrap()
            .contains("local resolver")
    );
    h.q(udp(98), &query(98, "portal", None));
    assert_eq!(h.plains.len(), 2, "the captive path has its own bound");
    assert!(h.connects.is_empty());
}

/// The answer to an unframed plaintext query (see [`answer`]).
fn answer_to(msg: &[u8]) -> Vec<u8> {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    answer(&framed)[2..].to_vec()
}

/// Issue 15, defect 1: every TCP frame ends in one answer or one `Event::NoAnswer`, so the shell can
/// give back the frame's pipeline slot (before, dropped frames wedged the connection).
#[test]
fn every_dropped_tcp_frame_is_reported_and_answered_ones_are_not() {
    let tcp = |conn| ClientAddr::Tcp {
        conn,
        peer: core::net::SocketAddr::from(([192, 168, 1, 10], 5353)),
    };
    let no_answers = |h: &Harness, conn| {
        h.events
            .iter()
            .filter(|e| **e == Event::NoAnswer { conn })
            .count()
    };
    let mut h = Harness::new(
        EngineConfig {
            clients: ClientLimits {
                rate_qps: 1,
                burst: 1,
                action: RateAction::Drop,
                ..ClientLimits::default()
            },
            ..cfg()
        },
        &[U1],
    );
    // A response sent as a query.
    let mut qr = query(1, "qr", None);
    qr[2] |= 0x80;
    h.q(tcp(1), &qr);
    assert_eq!(no_answers(&h, 1), 1, "QR set");
    // A runt under 12 octets.
    h.q(tcp(2), &[0x12, 0x34, 0x01]);
    assert_eq!(no_answers(&h, 2), 1, "runt");
    // Within the burst: accepted and forwarded, no NoAnswer.
    h.q(tcp(3), &query(3, "a", None));
    assert_eq!(no_answers(&h, 3), 0, "accepted");
    // Over the rate with the drop action.
    h.q(tcp(4), &query(4, "b", None));
    assert_eq!(no_answers(&h, 4), 1, "rate-limit drop");
    assert!(h.out.is_empty(), "nothing was answered");
    // The accepted one is answered later, still without a NoAnswer.
    let (s, _) = h.connects[0];
    h.connected(s);
    let frame = h.sends[0].1.clone();
    h.data(s, &answer(&frame));
    assert_eq!(h.out.len(), 1);
    assert_eq!(no_answers(&h, 3), 0, "answered");
    assert_eq!(
        h.events
            .iter()
            .filter(|e| matches!(e, Event::NoAnswer { .. }))
            .count(),
        3
    );
}

/// Malformed input from outside `allow` is dropped without an answer: reported for TCP too.
#[test]
fn malformed_tcp_frame_from_outside_allow_is_reported() {
    let mut h = Harness::new(cfg(), &[U1]);
    let policy = Policy::new(&policy::PolicyConfig {
        allow: alloc::vec![policy::Prefix::new([10, 0, 0, 0].into(), 8).unwrap()],
        ..policy::PolicyConfig::default()
    })
    .unwrap();
    h.e.set_policy(Some(policy));
    let mut bad = query(9, "x", None);
    bad.truncate(bad.len() - 3);
    let client = ClientAddr::Tcp {
        conn: 7,
        peer: core::net::SocketAddr::from(([192, 168, 1, 10], 5353)),
    };
    h.q(client, &bad);
    assert!(h.out.is_empty());
    assert_eq!(h.events, [Event::NoAnswer { conn: 7 }]);
}

#[test]
fn timer_compaction_keeps_the_hedges_of_live_queries() {
    // max_inflight 4: the timer heap is compacted once it holds more than 4 × 4 + 16 = 32 entries.
    let c = EngineConfig {
        max_inflight: 4,
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1, U2]);
    h.q(udp(1), &query(1, "s", None));
    let s1 = h.connects[0].0;
    h.connected(s1);
    // The primary never answers this one; 40 other queries are answered at once, each leaving a
    // dead deadline and a dead hedge timer behind.
    for i in 0..40u16 {
        h.q(udp(100 + i), &query(100 + i, "q", None));
        let f = h.sends.last().unwrap().1.clone();
        h.data(s1, &answer(&f));
    }
    assert_eq!(h.out.len(), 40);
    assert!(
        h.e.timers.len() <= 4 * 4 + 16,
        "compaction ran: {} timers",
        h.e.timers.len()
    );
    assert_eq!(h.connects.len(), 1, "nothing hedged yet");
    // The stalled query's attempt timeout (half the deadline: no RTT when it was placed) passes.
    h.advance(1_250);
    assert_eq!(h.e.stats().hedged, 1, "the hedge survived compaction");
    assert_eq!(h.connects.len(), 2);
    assert_eq!(h.connects[1].1, U2);
    let s2 = h.connects[1].0;
    h.connected(s2);
    let f = h.sends.iter().find(|(s, _)| *s == s2).unwrap().1.clone();
    h.data(s2, &answer(&f));
    let got = h.out.iter().find(|t| t.to == udp(1)).unwrap();
    assert_eq!(rcode_and_ede(&got.bytes).0, rcode::NOERROR);
}

/// `<label>.example.` type AAAA, without EDNS.
fn query_aaaa(id: u16, label: &str) -> Vec<u8> {
    let mut q = query(id, label, None);
    let n = q.len();
    q[n - 3] = 28;
    q
}

/// The upstream's NOERROR answer without records to a framed query.
fn nodata(frame: &[u8]) -> Vec<u8> {
    let msg = &frame[2..];
    let s = scan(msg).unwrap();
    let mut r = msg[..2].to_vec();
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
    r.extend_from_slice(&msg[12..s.question_end]);
    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

fn qtype_of(msg: &[u8]) -> u16 {
    scan(msg).unwrap().question.unwrap().qtype
}

#[test]
fn dns64_answers_clear_ad_and_failures_show_the_clients_qtype() {
    let c = EngineConfig {
        dns64: Some(dns64::Nat64Prefix::WELL_KNOWN),
        query_log: 10,
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    h.q(udp(1), &query_aaaa(1, "a"));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    assert_eq!(qtype_of(&f[2..]), dns64::TYPE_AAAA);
    h.data(s, &nodata(&f));
    // No AAAA record: the A records are asked for; the upstream says they were validated (AD).
    let f = h.sends[1].1.clone();
    assert_eq!(qtype_of(&f[2..]), dns64::TYPE_A);
    let mut a = answer(&f);
    a[2 + 3] |= 0x20;
    h.data(s, &a);
    assert_eq!(h.out.len(), 1);
    let got = &h.out[0].bytes;
    assert_eq!(qtype_of(got), dns64::TYPE_AAAA);
    assert_eq!(h.e.stats().dns64_synthesized, 1);
    assert_eq!(
        header::Header::parse(got).unwrap().flags & 0x0020,
        0,
        "RFC 6147 §5.5: a synthesized answer is not authenticated data"
    );

    // A query that fails while its A records are being asked for: the SERVFAIL and the query log
    // show the AAAA the client asked for, not the A asked upstream in its place. (The AAAA answer
    // normally stands then; here it is made unusable, so the failure path itself is reached.)
    h.q(udp(2), &query_aaaa(2, "b"));
    let f = h.sends[2].1.clone();
    h.data(s, &nodata(&f));
    assert_eq!(qtype_of(&h.sends[3].1[2..]), dns64::TYPE_A);
    let q = h.e.slots.iter_mut().flatten().next().unwrap();
    q.dns64 = Dns64Phase::A(Vec::new());
    h.advance(3_000);
    let failed = h.out.iter().find(|t| t.to == udp(2)).unwrap();
    assert_eq!(rcode_and_ede(&failed.bytes).0, rcode::SERVFAIL);
    assert_eq!(qtype_of(&failed.bytes), dns64::TYPE_AAAA);
    let logged = h.e.query_log().last().unwrap();
    assert_eq!(
        (logged.qtype, logged.source),
        (dns64::TYPE_AAAA, AnswerSource::Failed)
    );
}

#[test]
fn a_servfail_that_cannot_be_passed_on_is_counted_once() {
    let mut h = Harness::new(cfg(), &[U1, U2]);
    h.q(udp(1), &query(1, "a", None));
    let s1 = h.connects[0].0;
    h.connected(s1);
    let f = h.sends[0].1.clone();
    h.data(s1, &servfail_of(&f));
    assert!(h.out.is_empty(), "tried on the other upstream first");
    // The kept SERVFAIL cannot be re-emitted: lanveil's own SERVFAIL goes out instead.
    let q = h.e.slots.iter_mut().flatten().next().unwrap();
    q.servfail = Some(alloc::vec![0; 3]);
    h.advance(3_000);
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::SERVFAIL);
    assert_eq!(h.e.stats().servfail, 1, "one SERVFAIL answer, counted once");
}

#[test]
fn a_final_upstream_servfail_is_cached_for_servfail_ttl_but_never_our_own_failures() {
    let c = EngineConfig {
        cache: Some(crate::cache::CacheConfig::default()),
        ..cfg()
    };
    assert_eq!(crate::cache::CacheConfig::default().servfail_ttl, 5);
    let mut h = Harness::new(c, &[U1]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    h.data(s, &servfail_of(&f));
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::SERVFAIL);
    // The same question within servfail_ttl: from the cache, nothing sent upstream.
    h.advance(4_000);
    h.q(udp(2), &query(2, "a", Some(1232)));
    assert_eq!(h.sends.len(), 1, "answered from the cache");
    assert_eq!(h.out.len(), 2);
    assert_eq!(&h.out[1].bytes[..2], &[0, 2]);
    assert_eq!(rcode_and_ede(&h.out[1].bytes).0, rcode::SERVFAIL);
    assert_eq!(h.e.stats().cache_hits, 1);
    // After servfail_ttl the upstream is asked again (and answers this time).
    h.advance(1_100);
    h.q(udp(3), &query(3, "a", Some(1232)));
    assert_eq!(h.sends.len(), 2, "the cached SERVFAIL expired");
    let f = h.sends[1].1.clone();
    h.data(s, &answer(&f));
    assert_eq!(rcode_and_ede(&h.out[2].bytes).0, rcode::NOERROR);

    // Our own time-out is never cached: the next query goes upstream again.
    h.q(udp(4), &query(4, "t", Some(1232)));
    assert_eq!(h.sends.len(), 3);
    h.advance(3_000);
    let (rc, e) = rcode_and_ede(&h.out.last().unwrap().bytes);
    assert_eq!(
        (rc, e.unwrap().0),
        (rcode::SERVFAIL, ede::NO_REACHABLE_AUTHORITY)
    );
    let before = h.sends.len() + h.connects.len();
    h.q(udp(5), &query(5, "t", Some(1232)));
    assert!(
        h.sends.len() + h.connects.len() > before,
        "not from the cache"
    );
    assert_eq!(h.e.stats().cache_hits, 1);
}

#[test]
fn an_upstream_servfail_passed_on_after_a_connection_failure_is_not_cached() {
    let c = EngineConfig {
        cache: Some(crate::cache::CacheConfig::default()),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1, U2]);
    h.q(udp(1), &query(1, "a", None));
    let s1 = h.connects[0].0;
    h.connected(s1);
    let f = h.sends[0].1.clone();
    h.data(s1, &servfail_of(&f));
    // The other upstream fails its TLS handshake every time until the query gives up.
    let mut handled = 1;
    while h.out.is_empty() && h.connects.len() < 20 {
        if h.connects.len() > handled {
            let (s, u) = h.connects[handled];
            assert_eq!(u, U2);
            handled += 1;
            h.closed(s, CloseReason::Tls(TlsFailure::PinMismatch));
        } else {
            h.advance(100);
        }
    }
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::SERVFAIL);
    let before = h.sends.len() + h.connects.len();
    h.q(udp(2), &query(2, "a", None));
    assert!(
        h.sends.len() + h.connects.len() > before,
        "not from the cache"
    );
    assert_eq!(h.e.stats().cache_hits, 0);
}
