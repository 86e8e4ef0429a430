//! Several upstreams: backoff, failover, reconfiguration, hedging, SERVFAIL retries, the `Fastest`
//! policy, the timer heap.

use alloc::collections::BTreeMap;

use super::*;

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
            tcp: true,
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
        h.e.queries.timers_len() <= 4 * 4 + 16,
        "compaction ran: {} timers",
        h.e.queries.timers_len()
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

/// The frame sent for the query whose first label starts with `label`, if one was sent.
fn sent_for(h: &Harness, label: u8) -> Option<(SessionId, Vec<u8>)> {
    h.sends
        .iter()
        .rev()
        .find(|(_, f)| f.get(15) == Some(&label))
        .cloned()
}

/// One upstream, `pipeline` 1: session S1 ready, S2 still connecting (opened when S1 was full),
/// SERVFAILs on S1 put the upstream in backoff, and query `w` waits for the backoff's end.
fn waiting_for_backoff_while_s2_connects() -> (Harness, SessionId, SessionId) {
    let c = EngineConfig {
        pipeline: 1,
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    h.q(udp(1), &query(1, "a", None));
    let s1 = h.connects[0].0;
    h.connected(s1);
    h.q(udp(2), &query(2, "b", None));
    assert_eq!(
        h.connects.len(),
        2,
        "S1 is full: a second session is dialled"
    );
    let s2 = h.connects[1].0;
    for i in 0..SOFT_LIMIT as u16 {
        if i > 0 {
            h.q(udp(10 + i), &query(10 + i, "c", None));
        }
        let (s, f) = h.sends.last().unwrap().clone();
        assert_eq!(s, s1);
        h.data(s1, &servfail_of(&f));
    }
    assert!(h.e.upstream_health(h.now)[0].backing_off);
    let sent = h.sends.len();
    h.q(udp(20), &query(20, "w", None));
    assert_eq!(h.sends.len(), sent, "w waits for the backoff's end");
    assert_eq!(h.connects.len(), 2);
    (h, s1, s2)
}

fn answered_noerror(h: &Harness, client: ClientAddr) -> bool {
    h.out
        .iter()
        .any(|t| t.to == client && rcode_and_ede(&t.bytes).0 == rcode::NOERROR)
}

#[test]
fn a_connect_that_clears_the_backoff_places_the_waiting_queries() {
    let (mut h, _, s2) = waiting_for_backoff_while_s2_connects();
    // S2's handshake clears the backoff: `w` goes at once, not at its deadline.
    h.connected(s2);
    let (s, f) = sent_for(&h, b'w').expect("w sent once the backoff was cleared");
    h.data(s, &answer(&f));
    assert!(answered_noerror(&h, udp(20)));
}

#[test]
fn a_reset_that_clears_the_backoff_places_the_waiting_queries() {
    let (mut h, s1, _) = waiting_for_backoff_while_s2_connects();
    // The working S1 breaks: its upstream is redialled at once, and `w` goes with it.
    h.closed(s1, CloseReason::Reset);
    assert_eq!(h.connects.len(), 3, "w dials a session of its own");
    let s3 = h.connects[2].0;
    h.connected(s3);
    let (s, f) = sent_for(&h, b'w').expect("w sent once the backoff was cleared");
    assert_eq!(s, s3);
    h.data(s, &answer(&f));
    assert!(answered_noerror(&h, udp(20)));
}
