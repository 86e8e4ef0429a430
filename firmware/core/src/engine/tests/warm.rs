//! Issue 17: RFC 7828 edns-tcp-keepalive on stream sessions and the bounded warm standby.

use super::*;
use crate::engine::warm::{OPTION_TCP_KEEPALIVE, STANDBY_SPACING};

/// `answer(frame)` with an edns-tcp-keepalive option announcing `units` × 100 ms.
fn answer_with_keepalive(frame: &[u8], units: u16) -> Vec<u8> {
    let mut r = answer(frame)[2..].to_vec();
    let n = r.len();
    r[n - 2..].copy_from_slice(&6u16.to_be_bytes()); // OPT RDLENGTH
    r.extend_from_slice(&OPTION_TCP_KEEPALIVE.to_be_bytes());
    r.extend_from_slice(&2u16.to_be_bytes());
    r.extend_from_slice(&units.to_be_bytes());
    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

fn keepalive_in(frame: &[u8]) -> Option<Vec<u8>> {
    let msg = &frame[2..];
    let s = scan(msg).unwrap();
    let o = s.opt?;
    edns::options(&msg[o.rdata_start..o.end])
        .find(|(c, _)| *c == OPTION_TCP_KEEPALIVE)
        .map(|(_, d)| d.to_vec())
}

/// One query answered on the first session of a fresh harness; returns the session.
fn one_answered(h: &mut Harness, port: u16, units: Option<u16>) -> SessionId {
    h.q(udp(port), &query(port, "a", None));
    let s = h.connects[0].0;
    h.connected(s);
    let frame = h.sends[0].1.clone();
    let a = match units {
        Some(u) => answer_with_keepalive(&frame, u),
        None => answer(&frame),
    };
    h.data(s, &a);
    assert_eq!(h.out.len(), 1, "answered");
    s
}

#[test]
fn stream_queries_carry_an_empty_keepalive_option_and_stay_padded() {
    let mut h = Harness::new(cfg(), &[U1]);
    h.q(udp(1), &query(1, "a", Some(1232)));
    h.connected(h.connects[0].0);
    let frame = &h.sends[0].1;
    assert_eq!(keepalive_in(frame), Some(Vec::new()), "RFC 7828 §3.2.1");
    assert_eq!((frame.len() - 2) % 128, 0, "RFC 8467 padding kept");
    let msg = &frame[2..];
    let o = scan(msg).unwrap().opt.unwrap();
    assert!(
        edns::options(&msg[o.rdata_start..o.end]).any(|(c, _)| c == edns::OPTION_PADDING),
        "padding option still there"
    );
}

#[test]
fn message_sessions_do_not_carry_it() {
    let (_, _, _, _, framed) = message_request(true, &query(1, "a", None));
    assert_eq!(keepalive_in(&framed), None);
}

#[test]
fn announced_idle_timeout_closes_the_session_before_the_server_does() {
    // No standby: only the RFC 7828 behaviour.
    let c = EngineConfig {
        standby: Duration::ZERO,
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    let s = one_answered(&mut h, 1, Some(50)); // 5 s
    h.advance(4_499);
    assert!(h.closes.is_empty());
    h.advance(1);
    assert_eq!(h.closes, [s], "closed 0.5 s before the server's 5 s");
    assert_eq!(h.connects.len(), 1, "no standby when it is off");
    // The keepalive option never reaches the client.
    let t = &h.out[0].bytes;
    let st = scan(t).unwrap();
    if let Some(o) = st.opt {
        assert!(!edns::options(&t[o.rdata_start..o.end]).any(|(c, _)| c == OPTION_TCP_KEEPALIVE));
    }
}

#[test]
fn a_server_close_after_recent_traffic_is_redialled_in_the_background() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None);
    h.advance(10_000);
    assert!(
        h.closes.is_empty(),
        "lanveil's own idle timeout waits while the upstream is warm"
    );
    h.closed(s, CloseReason::Eof); // the server's idle close, after 10 s
    assert_eq!(h.connects.len(), 2, "a standby connection is dialled");
    let s2 = h.connects[1].0;
    h.connected(s2);
    assert_eq!(h.e.stats().standby_dials, 1);
    // The server's 10 s are now known: the successor is dialled 2 s ahead and ready before the old
    // session closes 1 s ahead of the server (make before break).
    h.advance(7_999);
    assert_eq!(h.connects.len(), 2);
    h.advance(1);
    assert_eq!(h.connects.len(), 3, "successor dialled");
    assert!(
        h.closes.is_empty(),
        "the old one stays until its successor is up"
    );
    let s3 = h.connects[2].0;
    // Its handshake is slow (a lost SYN): the old session stays past its own deadline until the
    // successor is up, then closes at once.
    h.advance(1_500);
    assert!(h.closes.is_empty(), "no break before the make");
    h.connected(s3);
    h.advance(1);
    assert_eq!(h.closes, [s2], "closed before the server would");
    assert_eq!(h.e.sessions(), 1);
    // The next query goes out at once on the warm session: no connect, no handshake.
    h.advance(3_000);
    let (sends, connects) = (h.sends.len(), h.connects.len());
    h.q(udp(2), &query(2, "b", None));
    assert_eq!(h.connects.len(), connects);
    assert_eq!(h.sends.len(), sends + 1);
    assert_eq!(h.sends[sends].0, s3);
}

#[test]
fn a_query_goes_to_the_successor_not_to_the_connection_it_replaces() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, Some(100)); // the server keeps idle connections 10 s
    h.advance(8_000);
    assert_eq!(h.connects.len(), 2, "successor dialled 2 s ahead");
    let s2 = h.connects[1].0;
    h.connected(s2);
    assert!(h.closes.is_empty(), "the old one is closed at 9 s");
    // Both are ready and idle; the old one is the server's to close within 2 s.
    h.advance(500);
    h.q(udp(2), &query(2, "b", None));
    assert_eq!(
        h.sends.last().unwrap().0,
        s2,
        "the fresh connection carries it"
    );
    h.advance(500);
    assert_eq!(h.closes, [s], "the old one closes, unused");
}

#[test]
fn a_successor_the_server_sheds_after_a_query_is_redialled_when_its_predecessor_closes() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, Some(100)); // the server keeps idle connections 10 s
    h.advance(8_000);
    let s2 = h.connects[1].0; // the successor, dialled 2 s ahead (the standby spacing starts)
    h.connected(s2);
    h.advance(500);
    h.q(udp(2), &query(2, "b", None));
    let b = h.sends.last().unwrap().clone();
    assert_eq!(b.0, s2);
    h.data(s2, &answer(&b.1));
    // The server sheds the fresh connection right after its answer; the old one is still there
    // (closing at 9 s), so nothing is dialled yet.
    h.closed(s2, CloseReason::Eof);
    assert_eq!(h.connects.len(), 2);
    h.advance(500);
    assert_eq!(h.closes, [s], "the old one closes at 9 s");
    assert_eq!(
        h.connects.len(),
        3,
        "a query came since the last standby dial: redialled within the spacing"
    );
}

#[test]
fn without_a_query_since_the_last_dial_the_spacing_holds() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, Some(100));
    h.advance(8_000);
    let s2 = h.connects[1].0;
    h.connected(s2);
    h.advance(500);
    h.closed(s2, CloseReason::Eof); // shed while idle: no query since the dial
    h.advance(500);
    assert_eq!(h.closes, [s]);
    assert_eq!(h.connects.len(), 2, "no redial within the spacing");
}

#[test]
fn the_standby_is_bounded_by_its_window_and_spacing() {
    let c = EngineConfig {
        standby: Duration::from_secs(60),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    let s = one_answered(&mut h, 1, Some(100)); // the server keeps idle connections 10 s
    let last_query = h.now;
    h.advance(8_000);
    assert_eq!(h.connects.len(), 2, "its successor is dialled 2 s ahead");
    h.connected(h.connects[1].0);
    h.advance(999);
    assert!(h.closes.is_empty());
    h.advance(1);
    assert_eq!(h.closes, [s], "closed before the announced 10 s");
    // Every session, ours to close 1 s ahead of the server, gets its successor until the last query is
    // older than the window; then nothing more is dialled and the last session closes.
    let mut seen = 2;
    let mut last_dial = h.now;
    for _ in 0..2_000 {
        h.advance(100);
        while seen < h.connects.len() {
            let s = h.connects[seen].0;
            h.connected(s);
            last_dial = h.now;
            seen += 1;
        }
    }
    let dials = h.e.stats().standby_dials;
    assert_eq!(dials as usize, h.connects.len() - 1);
    assert!(dials >= 5, "kept warm inside the window ({dials} dials)");
    assert!(
        dials <= 60 / STANDBY_SPACING.as_secs() + 1,
        "at most one dial per spacing ({dials})"
    );
    assert!(
        last_dial < last_query + Duration::from_secs(60),
        "none after the window"
    );
    assert_eq!(h.e.sessions(), 0, "an idle house stops redialling");
    // A failed session is not redialled by the standby.
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None);
    h.closed(s, CloseReason::Reset);
    assert_eq!(h.connects.len(), 1);
}

#[test]
fn a_quiet_session_sends_one_loss_probe_and_the_first_answer_wins() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None); // srtt 0 ms: the probe waits PROBE_MIN (30 ms)
    h.q(udp(2), &query(2, "b", None));
    assert_eq!(h.sends.len(), 2);
    h.advance(29);
    assert_eq!(
        h.sends.len(),
        2,
        "not before srtt + max(4 × rttvar, srtt / 3), at least 30 ms"
    );
    h.advance(1);
    assert_eq!(h.sends.len(), 3, "probe sent");
    let (orig, probe) = (h.sends[1].clone(), h.sends[2].clone());
    assert_eq!(probe.0, s, "on the same connection");
    assert_ne!(orig.1[2..4], probe.1[2..4], "under a new ID");
    assert_eq!(
        orig.1[4..],
        probe.1[4..],
        "the same question, padded the same"
    );
    h.advance(500);
    assert_eq!(h.sends.len(), 3, "one probe per quiet spell");
    assert_eq!(h.e.stats().loss_probes, 1);
    // The probe's answer comes first (the original answer was lost and is resent later).
    h.data(s, &answer(&probe.1));
    assert_eq!(h.out.len(), 2);
    assert_eq!(&h.out[1].bytes[..2], &[0, 2]);
    h.data(s, &answer(&orig.1));
    assert_eq!(h.out.len(), 2, "the client gets one answer");
    assert_eq!(h.e.inflight(), 0);
    // Bytes arrived: the next quiet spell may probe again.
    h.q(udp(3), &query(3, "c", None));
    // The probe's answer came 500 ms after the probe, but a probed query's sample counts for at most
    // the wait its probe beat (30 ms): srtt 30 / 8 = 3.75 ms, rttvar 30 / 4 = 7.5 ms, so the next
    // probe waits 3.75 + 4 × 7.5 = 33.75 ms (the engine's clock counts whole milliseconds: 33): a slow
    // answer widens the wait, a step at a time.
    h.advance(32);
    assert_eq!(h.e.stats().loss_probes, 1, "a slow answer widens the wait");
    h.advance(1);
    assert_eq!(h.e.stats().loss_probes, 2);
}

/// A session to a steady 30-ms upstream (80 answers): srtt 30 ms, rttvar ≈ 0, so a query's loss
/// probe waits 30 + 30 / 3 = 40 ms.
fn steady_30ms_session() -> (Harness, SessionId) {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None);
    steady_answers(&mut h, s, 80, 30);
    (h, s)
}

/// `n` queries on session `s`, one at a time, each answered `ms` after it was sent.
fn steady_answers(h: &mut Harness, s: SessionId, n: u16, ms: u64) {
    for i in 0..n {
        h.q(udp(100 + i), &query(100 + i, &alloc::format!("n{i}"), None));
        let frame = h.sends.last().unwrap().1.clone();
        h.advance(ms);
        h.data(s, &answer(&frame));
    }
}

#[test]
fn a_recovered_loss_barely_moves_the_next_probes_wait() {
    let (mut h, s) = steady_30ms_session(); // the probe waits 40 ms
    let probes = h.e.stats().loss_probes;
    // An answer is lost: the probe goes out after 40 ms, and the original answer, resent by the
    // server's TCP once the probe's answer is acknowledged selectively, comes 104 ms after the query.
    h.q(udp(7), &query(7, "lost", None));
    let orig = h.sends.last().unwrap().clone();
    h.advance(39);
    assert_eq!(h.e.stats().loss_probes, probes);
    h.advance(1);
    assert_eq!(h.e.stats().loss_probes, probes + 1, "probed at 40 ms");
    let probe = h.sends.last().unwrap().clone();
    h.advance(64);
    h.data(s, &answer(&orig.1));
    h.data(s, &answer(&probe.1));
    // The sample counts as the 40 ms the probe beat, not 104: srtt 31.25 ms, rttvar 2.5 ms, the next
    // wait 31.25 + 31.25 / 3 = 41.7 ms, 41 on the engine's millisecond clock (a 104-ms sample would
    // make it 39.25 + 4 × 18.5 = 113 ms, and a second loss soon after would cost 2.5 round trips more).
    h.q(udp(8), &query(8, "next", None));
    h.advance(40);
    assert_eq!(h.e.stats().loss_probes, probes + 1);
    h.advance(1);
    assert_eq!(
        h.e.stats().loss_probes,
        probes + 2,
        "the next probe still waits about 1.4 round trips"
    );
}

/// The message ID of a framed query (the two octets after the length prefix).
fn frame_id(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[2], frame[3]])
}

#[test]
fn a_late_answer_to_a_probes_copy_never_meets_a_newer_query_under_its_id() {
    let (mut h, s) = steady_30ms_session(); // the probe waits 40 ms
    h.q(udp(7), &query(7, "lost", None));
    let orig = h.sends.last().unwrap().1.clone();
    h.advance(40);
    let copy = h.sends.last().unwrap().1.clone();
    assert_ne!(frame_id(&copy), frame_id(&orig), "probed under a second ID");
    // The original's answer wins: the copy's ID is given up while its answer is on the way.
    h.data(s, &answer(&orig));
    let answered = h.out.len();
    // The next query's first draw is that ID.
    h.e.rng.ids.push_back(frame_id(&copy));
    h.q(udp(8), &query(8, "newer", None));
    let newer = h.sends.last().unwrap().1.clone();
    assert_ne!(
        frame_id(&newer),
        frame_id(&copy),
        "a retired ID is not drawn again"
    );
    // The copy's answer comes late: dropped as late, the session stays, the newer query waits for
    // its own answer (had it taken the ID, this answer would carry another question: a protocol
    // error, the session closed and its queries re-placed).
    let late = h.e.stats().late_answers;
    h.data(s, &answer(&copy));
    assert_eq!(h.e.stats().late_answers, late + 1);
    assert!(h.closes.is_empty(), "session kept");
    assert_eq!(h.out.len(), answered, "nothing for the client yet");
    h.data(s, &answer(&newer));
    assert_eq!(h.out.len(), answered + 1, "the newer query's own answer");
    assert!(h.closes.is_empty());
}

#[test]
fn a_retired_id_comes_back_once_later_ones_pushed_it_out() {
    let mut r = session::RetiredIds::default();
    r.push(7);
    assert!(r.contains(7));
    assert!(
        !r.contains(0),
        "only what was pushed (the ring starts zeroed)"
    );
    for id in 100..131 {
        r.push(id);
    }
    assert!(r.contains(7), "32 kept");
    r.push(131);
    assert!(!r.contains(7), "the oldest makes room");
    assert!((100..132).all(|id| r.contains(id)));
}

#[test]
fn a_session_the_shell_drops_is_not_taken_for_a_server_close() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None);
    h.advance(3_000);
    h.e.handle_upstream_dropped(h.now, s);
    h.drain();
    assert_eq!(h.connects.len(), 1, "no standby dial");
    assert_eq!(h.e.sessions(), 0);
    // Nothing was learnt: the next session stays open past 3 s while the upstream is warm.
    h.q(udp(2), &query(2, "b", None));
    let s2 = h.connects[1].0;
    h.connected(s2);
    h.data(s2, &answer(&h.sends[1].1.clone()));
    h.advance(10_000);
    assert!(h.closes.is_empty());
    assert_eq!(h.e.sessions(), 1);
}

#[test]
fn the_probe_waits_for_the_round_trip_and_its_variation() {
    use crate::engine::probe::probe_delay;
    let ms = Duration::from_millis;
    assert_eq!(probe_delay(0, 0), ms(30), "at least PROBE_MIN");
    assert_eq!(
        probe_delay(30_000, 1_000),
        ms(40),
        "a steady 30-ms upstream: 1.33 round trips"
    );
    assert_eq!(
        probe_delay(30_000, 10_000),
        ms(70),
        "a varying one: srtt + 4 × rttvar"
    );
    assert_eq!(
        probe_delay(u32::MAX, u32::MAX),
        Duration::from_micros(u64::from(u32::MAX) * 5)
    );
}

#[test]
fn round_trip_samples_set_the_probe_delay() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None);
    // Steady 40-ms answers (the early ones probed while srtt was still low): srtt → 40, rttvar
    // shrinks; the probe waits 40 + 40 / 3 = 53 ms.
    steady_answers(&mut h, s, 60, 40);
    let probes = h.e.stats().loss_probes;
    h.q(udp(7), &query(7, "late", None));
    h.advance(52);
    assert_eq!(h.e.stats().loss_probes, probes, "not before 53 ms");
    h.advance(1);
    assert_eq!(h.e.stats().loss_probes, probes + 1, "at 40 + 40 / 3 ms");
}

#[test]
fn slow_answers_widen_the_wait_instead_of_being_sent_twice() {
    // A recursing resolver: half its answers in 30 ms (its cache), half in 150 ms (a miss).
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None);
    let mut probes_late = 0;
    for i in 0..60u16 {
        let before = h.e.stats().loss_probes;
        h.q(udp(100 + i), &query(100 + i, &alloc::format!("r{i}"), None));
        let frame = h.sends.last().unwrap().1.clone();
        h.advance(if i % 2 == 0 { 30 } else { 150 });
        h.data(s, &answer(&frame));
        if i >= 40 {
            probes_late += h.e.stats().loss_probes - before;
        }
    }
    assert_eq!(
        probes_late, 0,
        "once the deviation is learnt, a 150-ms answer is not taken for a loss"
    );
}

/// One query answered on a message (DoH or DoQ) session at 30 ms, then a second one left unanswered
/// for 200 ms: the requests the engine made for it.
fn message_session_quiet_spell(tcp: bool) -> Vec<(u16, Vec<u8>)> {
    let (mut e, mut now, session, tag, framed) = message_request(tcp, &query(1, "a", None));
    now = now + Duration::from_millis(30);
    e.handle_upstream_response(now, session, tag, &answer(&framed)[2..]);
    assert!(e.poll_transmit().is_some());
    e.handle_query(now, udp(2), &query(2, "b", None));
    let mut requests = Vec::new();
    let end = now + Duration::from_millis(200);
    loop {
        while let Some(a) = e.poll_action() {
            if let Action::Request { tag, message, .. } = a {
                requests.push((tag, message));
            }
        }
        match e.poll_timeout() {
            Some(t) if t <= end => {
                now = t.max(now);
                e.handle_timeout(now);
            }
            _ => break,
        }
    }
    requests
}

#[test]
fn a_quiet_doh_session_probes_with_a_second_request_and_a_quic_one_does_not() {
    let doh = message_session_quiet_spell(true);
    assert_eq!(doh.len(), 2, "the request and one probe: {doh:?}");
    assert_ne!(
        doh[0].0, doh[1].0,
        "a new request tag (a new HTTP/2 stream)"
    );
    assert_eq!(
        doh[0].1, doh[1].1,
        "the same message, ID 0 and padding alike"
    );
    let doq = message_session_quiet_spell(false);
    assert_eq!(doq.len(), 1, "QUIC recovers its own losses: {doq:?}");
}

#[test]
fn a_lost_query_behind_an_answered_one_is_probed_from_its_own_send() {
    let (mut h, s) = steady_30ms_session(); // the probe waits 40 ms
    let probes = h.e.stats().loss_probes;
    // Two queries leave together, in separate writes; the second one's segment is lost. The first
    // is answered after a round trip: that must not push the second one's probe back to 30 + 40 ms.
    h.q(udp(7), &query(7, "first", None));
    let first = h.sends.last().unwrap().clone();
    h.q(udp(8), &query(8, "second", None));
    let second = h.sends.last().unwrap().clone();
    h.advance(30);
    h.data(s, &answer(&first.1));
    h.advance(9);
    assert_eq!(h.e.stats().loss_probes, probes);
    h.advance(1);
    assert_eq!(
        h.e.stats().loss_probes,
        probes + 1,
        "40 ms after the lost query"
    );
    let probe = h.sends.last().unwrap().clone();
    assert_eq!(probe.1[4..], second.1[4..], "the second query again");
    h.advance(500);
    assert_eq!(
        h.e.stats().loss_probes,
        probes + 1,
        "each query at most once"
    );
    h.data(s, &answer(&probe.1));
    assert_eq!(h.e.inflight(), 0);
}

#[test]
fn a_stalled_session_sends_one_probe_until_something_arrives() {
    let (mut h, s) = steady_30ms_session();
    let probes = h.e.stats().loss_probes;
    let mut frames = Vec::new();
    for i in 0..5u16 {
        h.q(udp(20 + i), &query(20 + i, &alloc::format!("s{i}"), None));
        frames.push(h.sends.last().unwrap().1.clone());
    }
    // Nothing comes back (the server's answers are stuck behind a lost segment, or it died).
    h.advance(1_000);
    assert_eq!(
        h.e.stats().loss_probes,
        probes + 1,
        "one probe, not one per query"
    );
    // Bytes arrive: the next oldest query may be probed again, a wait later.
    h.data(s, &answer(&frames[0]));
    h.advance(40);
    assert_eq!(h.e.stats().loss_probes, probes + 2);
    h.advance(1_000);
    assert_eq!(h.e.stats().loss_probes, probes + 2);
}

#[test]
fn the_probe_bookkeeping_stays_bounded_behind_a_stuck_query() {
    let mut config = cfg();
    config.loss_probes = false; // the stuck query is never probed: it stays first in the list
    config.query_timeout = Duration::from_secs(3_600);
    let mut h = Harness::new(config, &[U1]);
    let s = one_answered(&mut h, 1, None);
    h.q(udp(2), &query(2, "stuck", None));
    for i in 0..500u16 {
        h.q(udp(100 + i), &query(100 + i, &alloc::format!("n{i}"), None));
        let frame = h.sends.last().unwrap().1.clone();
        h.advance(1);
        h.data(s, &answer(&frame));
        // At most about twice the outstanding queries plus a few, not one entry per query sent.
        let session = &h.e.sessions[0];
        assert!(
            session.unprobed.len() <= 24,
            "{} entries for {} outstanding",
            session.unprobed.len(),
            session.inflight.len()
        );
    }
    assert_eq!(h.e.inflight(), 1);
}

#[test]
fn a_successor_found_due_after_the_window_ended_is_no_timer_any_more() {
    // The window ends 8.5 s after the query, between the successor's time (8 s: the server keeps idle
    // connections 10 s) and the session's own close (9 s).
    let c = EngineConfig {
        standby: Duration::from_millis(8_500),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    let s = one_answered(&mut h, 1, Some(100));
    // The shell's timer fires late: after the window's end, before the idle close.
    h.now = h.now + Duration::from_millis(8_700);
    h.e.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.connects.len(), 1, "no successor after the window");
    let next = h.e.poll_timeout().unwrap();
    assert!(next > h.now, "a timer in the past that changes nothing");
    h.advance(300);
    assert_eq!(h.closes, [s], "the session closes at 9 s, as before");
    assert_eq!(h.connects.len(), 1);
}

#[test]
fn a_probed_query_answered_servfail_counts_once_against_its_upstream() {
    let mut h = Harness::new(cfg(), &[U1]);
    let s = one_answered(&mut h, 1, None); // srtt 0 ms: the probe waits PROBE_MIN (30 ms)
    h.q(udp(2), &query(2, "b", None));
    h.advance(30);
    assert_eq!(h.e.stats().loss_probes, 1);
    let (orig, probe) = (h.sends[1].1.clone(), h.sends[2].1.clone());
    // The upstream answers SERVFAIL, to the query and to its probe's copy.
    h.data(s, &servfail_of(&orig));
    assert_eq!(h.out.len(), 2, "passed on: nothing else is outstanding");
    assert_eq!(rcode_and_ede(&h.out[1].bytes).0, rcode::SERVFAIL);
    h.data(s, &servfail_of(&probe));
    assert_eq!(h.out.len(), 2);
    // One more SERVFAIL: two in a row, not three, so the upstream does not back off.
    h.q(udp(3), &query(3, "c", None));
    let f = h.sends.last().unwrap().1.clone();
    h.data(s, &servfail_of(&f));
    assert_eq!(h.out.len(), 3);
    assert!(
        !h.e.upstream_health(h.now)[0].backing_off,
        "the probed query counted once"
    );
}
