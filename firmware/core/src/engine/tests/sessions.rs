//! Forwarding over upstream sessions: IDs, pipelining, framing, message transports, idle and
//! mismatched sessions.

use super::*;

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
    // Without the warm standby (tests/warm.rs has it): the plain idle timeout.
    let c = EngineConfig {
        standby: Duration::ZERO,
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
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
fn message_transport_uses_id_zero_and_tags() {
    let (mut e, now, session, tag, framed) = message_request(true, &query(0x7777, "a", None));
    assert_eq!(&framed[2..4], &[0, 0], "RFC 8484 §4.1");
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

/// The engine writes messages into buffers it had before (answers the shell handed back with
/// `recycle`, upstream forms of answered queries): what goes out is the same as from fresh buffers,
/// with nothing of a longer earlier message left in it.
#[test]
fn recycled_buffers_carry_nothing_of_earlier_messages() {
    let long = "l".repeat(60);
    // (upstream frame without its ID, client answer) per query, with and without recycling
    let run = |recycle: bool| {
        let mut h = Harness::new(cfg(), &[U1]);
        let s = {
            h.q(udp(1), &query(1, "warm", Some(1232)));
            let s = h.connects[0].0;
            h.connected(s);
            s
        };
        let mut seen = Vec::new();
        for (i, label) in [long.as_str(), "s", long.as_str(), "t"]
            .into_iter()
            .enumerate()
        {
            let sent = h.sends.len();
            h.q(udp(2), &query(i as u16 + 2, label, Some(1232)));
            let frame = h.sends[sent].1.clone();
            let before = h.out.len();
            h.data(s, &answer(&frame));
            let out = h.out.remove(before);
            seen.push(([&frame[..2], &frame[4..]].concat(), out.bytes.clone()));
            if recycle {
                h.e.recycle(out.bytes);
            }
        }
        seen
    };
    let (fresh, reused) = (run(false), run(true));
    assert_eq!(fresh, reused);
    assert!(
        reused[1].1.len() < reused[0].1.len(),
        "a short answer after a long one"
    );
}

/// The spares are bounded: at most `SPARE_BUFFERS` of them, none larger than `SPARE_BUFFER_MAX`.
#[test]
fn spare_buffers_stay_bounded() {
    use super::super::answer::{SPARE_BUFFER_MAX, SPARE_BUFFERS};
    let mut h = Harness::new(cfg(), &[U1]);
    h.e.recycle(Vec::with_capacity(SPARE_BUFFER_MAX + 1));
    assert!(h.e.spare_buffers.is_empty(), "a large buffer is dropped");
    for _ in 0..2 * SPARE_BUFFERS {
        h.e.recycle(Vec::with_capacity(512));
    }
    assert_eq!(h.e.spare_buffers.len(), SPARE_BUFFERS);
}

/// A header-only response (no question) to a framed query: QR set, `rc`, the query's RD.
fn questionless(frame: &[u8], rc: u8) -> Vec<u8> {
    let msg = &frame[2..];
    let r = [
        msg[0],
        msg[1],
        0x80 | (msg[2] & 0x01),
        0x80 | rc,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

#[test]
fn a_questionless_error_answer_fails_its_query_not_the_session() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    h.q(udp(2), &query(2, "b", Some(1232)));
    let s = h.connects[0].0;
    h.connected(s);
    assert_eq!(h.sends.len(), 2);
    let (fa, fb) = (h.sends[0].1.clone(), h.sends[1].1.clone());
    assert_eq!((fa[2 + 13], fb[2 + 13]), (b'a', b'b'));
    // RFC 1035 lets an error answer leave the question out (a resolver's FORMERR to an odd query).
    h.data(s, &questionless(&fa, rcode::FORMERR as u8));
    assert!(h.closes.is_empty(), "the session stays up");
    assert_eq!(h.sends.len(), 2, "nothing re-placed");
    // The query gets lanveil's own SERVFAIL with an EDE, repeating its question: never the
    // question-less message.
    let got = h.out.iter().find(|t| t.to == udp(1)).unwrap();
    assert_eq!(&got.bytes[..2], &[0, 1]);
    assert_eq!(&got.bytes[12..14], &[1, b'a']);
    let (rc, e) = rcode_and_ede(&got.bytes);
    assert_eq!((rc, e.unwrap().0), (rcode::SERVFAIL, ede::NETWORK_ERROR));
    // The other query on the session is answered as usual.
    h.data(s, &answer(&fb));
    let got = h.out.iter().find(|t| t.to == udp(2)).unwrap();
    assert_eq!(rcode_and_ede(&got.bytes).0, rcode::NOERROR);
    assert_eq!(h.e.inflight(), 0);
    assert_eq!(h.connects.len(), 1);
    // A question-less NOERROR is not an error answer: still a protocol error, the session closes.
    h.q(udp(3), &query(3, "c", Some(1232)));
    let fc = h.sends[2].1.clone();
    h.data(s, &questionless(&fc, 0));
    assert_eq!(h.closes, [s]);
}

#[test]
fn a_questionless_refusal_sends_the_query_to_another_upstream() {
    let mut h = Harness::new(cfg(), &[U1, U2]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    let (s1, u1) = h.connects[0];
    h.connected(s1);
    let f = h.sends[0].1.clone();
    h.data(s1, &questionless(&f, rcode::REFUSED as u8));
    assert!(h.closes.is_empty());
    assert!(h.out.is_empty(), "not answered yet: tried elsewhere");
    let (s2, u2) = h.connects[1];
    assert_ne!(u1, u2);
    h.connected(s2);
    let f = h.sends[1].1.clone();
    h.data(s2, &answer(&f));
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NOERROR);
}

/// A request the engine stops waiting for is cancelled on the wire: here the first upstream is
/// slow, the query is hedged to the second, whose answer withdraws the first request (one
/// `Cancel` for it, none for the answered one). Stream sessions never get one.
#[test]
fn a_request_answered_elsewhere_is_cancelled_on_its_message_session() {
    for transport in [Transport::Message, Transport::Stream] {
        let specs = [U1, U2].map(|id| UpstreamSpec {
            id,
            transport,
            tcp: true,
        });
        let mut e = Engine::new(cfg(), &specs, TestRng::new(3));
        let mut now = Instant::from_millis(5);
        let mut actions = Vec::new();
        let drain = |e: &mut Engine<TestRng>, actions: &mut Vec<Action>| {
            while let Some(a) = e.poll_action() {
                actions.push(a);
            }
        };
        e.handle_query(now, udp(1), &query(0x4242, "a", None));
        drain(&mut e, &mut actions);
        let Some(&Action::Connect { session: first, .. }) = actions.first() else {
            panic!("{actions:?}")
        };
        e.handle_upstream_connected(now, first);
        actions.clear();
        drain(&mut e, &mut actions);
        let first_tag = match &actions[..] {
            [Action::Request { tag, .. }] => Some(*tag),
            [Action::Send { .. }] => None,
            other => panic!("{other:?}"),
        };
        // No answer within the attempt timeout (half the query timeout): hedged to U2.
        now = now + Duration::from_millis(1_300);
        e.handle_timeout(now);
        actions.clear();
        drain(&mut e, &mut actions);
        assert_eq!(e.stats().hedged, 1);
        let Some(&Action::Connect {
            session: second, ..
        }) = actions.iter().find(|a| matches!(a, Action::Connect { .. }))
        else {
            panic!("{actions:?}")
        };
        e.handle_upstream_connected(now, second);
        actions.clear();
        drain(&mut e, &mut actions);
        let framed = match &actions[..] {
            [Action::Request { tag, message, .. }] => {
                let mut f = (message.len() as u16).to_be_bytes().to_vec();
                f.extend_from_slice(message);
                f[2..4].copy_from_slice(&tag.to_be_bytes());
                f
            }
            [Action::Send { bytes, .. }] => bytes.clone(),
            other => panic!("{other:?}"),
        };
        let resp = answer(&framed);
        let (id, msg) = (u16::from_be_bytes([resp[2], resp[3]]), &resp[2..]);
        actions.clear();
        match transport {
            Transport::Message => e.handle_upstream_response(now, second, id, msg),
            Transport::Stream => e.handle_upstream_data(now, second, &resp),
        }
        drain(&mut e, &mut actions);
        assert_eq!(&e.poll_transmit().unwrap().bytes[..2], &[0x42, 0x42]);
        let cancels: Vec<(SessionId, u16)> = actions
            .iter()
            .filter_map(|a| match *a {
                Action::Cancel { session, tag } => Some((session, tag)),
                _ => None,
            })
            .collect();
        match first_tag {
            Some(tag) => assert_eq!(cancels, [(first, tag)]),
            None => assert!(cancels.is_empty(), "{cancels:?}"),
        }
    }
}
