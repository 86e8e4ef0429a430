//! Answers and failures: SERVFAIL with the right EDE, retries after a dead session, RFC 8906
//! local answers, UDP sizes, every TCP frame accounted for.

use super::*;

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
fn a_servfail_that_cannot_be_passed_on_is_counted_once() {
    let mut h = Harness::new(cfg(), &[U1, U2]);
    h.q(udp(1), &query(1, "a", None));
    let s1 = h.connects[0].0;
    h.connected(s1);
    let f = h.sends[0].1.clone();
    h.data(s1, &servfail_of(&f));
    assert!(h.out.is_empty(), "tried on the other upstream first");
    // The kept SERVFAIL cannot be re-emitted: lanveil's own SERVFAIL goes out instead.
    let q = h.e.queries.iter_mut().next().unwrap();
    q.servfail = Some(alloc::vec![0; 3]);
    h.advance(3_000);
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::SERVFAIL);
    assert_eq!(h.e.stats().servfail, 1, "one SERVFAIL answer, counted once");
}

#[test]
fn an_upstream_answer_to_another_qtype_in_another_case_is_a_protocol_error() {
    let mut h = Harness::new(cfg(), &[U1]);
    // QTYPE 65 (HTTPS) is 0x0041, an ASCII 'A': an answer for type 97 (0x0061) is to another question.
    let mut q = query(1, "a", None);
    let l = q.len();
    q[l - 4..l - 2].copy_from_slice(&65u16.to_be_bytes());
    h.q(udp(1), &q);
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    let mut other_type = answer(&f);
    let qt = 2 + scan(&f[2..]).unwrap().question_end - 4;
    assert_eq!(other_type[qt..qt + 2], [0x00, 0x41]);
    other_type[qt + 1] = 0x61;
    h.data(s, &other_type);
    assert!(h.out.is_empty(), "an answer for type 97 is not one for 65");
    assert_eq!(h.closes, [s], "the session answered another question");
}

#[test]
fn upstream_answers_repeat_the_askers_own_spelling() {
    let mut h = Harness::new(cfg(), &[U1]);
    // A DNS 0x20 client randomizes the case; the upstream answers in lower case.
    let asked = query(1, "WwW", Some(1232));
    h.q(udp(1), &asked);
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    let mut a = answer(&f);
    a[2 + 12..2 + 12 + 13].make_ascii_lowercase();
    h.data(s, &a);
    assert_eq!(h.out.len(), 1);
    assert_eq!(&h.out[0].bytes[12..12 + 13], &asked[12..12 + 13]);
}
