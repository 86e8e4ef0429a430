//! One configuration mixing DoT (a stream upstream) with DoH and DoQ (message upstreams: the shell's
//! DoQ session is driven exactly like DoH's, one request per query with ID 0, answered by tag):
//! round-robin, failover, hedging and the retry after a failed request cross the kinds.

use super::*;

const DOT: UpstreamId = UpstreamId(1);
const DOH: UpstreamId = UpstreamId(2);
const DOQ: UpstreamId = UpstreamId(3);

fn mixed(config: EngineConfig, order: &[(UpstreamId, Transport)]) -> Harness {
    let specs: Vec<UpstreamSpec> = order
        .iter()
        .map(|&(id, transport)| UpstreamSpec {
            id,
            transport,
            tcp: true,
        })
        .collect();
    let mut h = Harness::new(config, &[]);
    h.e = Engine::new(config, &specs, ScriptRng::new(11));
    h
}

/// Answers the frame sent on session `s` the way its transport takes answers.
fn reply(h: &mut Harness, s: SessionId, frame: &[u8], message: bool) {
    let a = answer(frame);
    if message {
        let tag = u16::from_be_bytes([frame[2], frame[3]]);
        h.e.handle_upstream_response(h.now, s, tag, &a[2..]);
        h.drain();
    } else {
        h.data(s, &a);
    }
}

fn upstream_of(h: &Harness, s: SessionId) -> UpstreamId {
    h.connects
        .iter()
        .find(|(x, _)| *x == s)
        .map(|c| c.1)
        .unwrap()
}

#[test]
fn round_robin_spreads_over_dot_doh_and_doq() {
    let config = EngineConfig {
        policy: SelectPolicy::RoundRobin,
        ..cfg()
    };
    let all = [
        (DOT, Transport::Stream),
        (DOH, Transport::Message),
        (DOQ, Transport::Message),
    ];
    let mut h = mixed(config, &all);
    for i in 0..3u16 {
        h.q(udp(100 + i), &query(i, "rr", None));
    }
    let mut dialed: Vec<UpstreamId> = h.connects.iter().map(|c| c.1).collect();
    dialed.sort();
    assert_eq!(dialed, [DOT, DOH, DOQ], "one query to each kind");
    for s in h.connects.clone() {
        h.connected(s.0);
    }
    for (s, frame) in h.sends.clone() {
        let message = upstream_of(&h, s) != DOT;
        reply(&mut h, s, &frame, message);
    }
    assert_eq!(h.out.len(), 3);
    assert_eq!(h.e.inflight(), 0);
}

#[test]
fn failover_and_retry_cross_the_kinds() {
    // DoQ first: its authentication fails; the query goes to DoT; DoQ backs off.
    let mut h = mixed(
        cfg(),
        &[(DOQ, Transport::Message), (DOT, Transport::Stream)],
    );
    h.q(udp(1), &query(1, "a", None));
    assert_eq!(h.connects[0].1, DOQ);
    h.closed(h.connects[0].0, CloseReason::Tls(TlsFailure::PinMismatch));
    let dot = h.connects.iter().find(|c| c.1 == DOT).unwrap().0;
    h.connected(dot);
    let frame = h.sends.last().unwrap().1.clone();
    reply(&mut h, dot, &frame, false);
    assert_eq!(h.out.len(), 1, "answered through DoT");
    assert!(
        h.e.upstream_health(h.now)
            .iter()
            .any(|u| u.id == DOQ && u.backing_off),
        "the failed DoQ upstream backs off"
    );

    // DoT first this time, DoQ second: a DoQ request the server resets (request failed) while DoT
    // is down is retried, and answered once.
    let mut h = mixed(
        cfg(),
        &[(DOT, Transport::Stream), (DOQ, Transport::Message)],
    );
    h.q(udp(2), &query(2, "b", None));
    h.closed(h.connects[0].0, CloseReason::Refused);
    let doq = h.connects.iter().find(|c| c.1 == DOQ).unwrap().0;
    h.connected(doq);
    let (_, first) = h.sends.last().unwrap().clone();
    let tag = u16::from_be_bytes([first[2], first[3]]);
    let sent = h.sends.len();
    h.e.handle_upstream_request_failed(h.now, doq, tag);
    h.drain();
    assert!(h.out.is_empty());
    // Tried again (wherever the backoffs allow first) before the deadline.
    for _ in 0..10 {
        if h.sends.len() > sent {
            break;
        }
        h.advance(100);
        for c in h.connects.clone() {
            if !h.closes.contains(&c.0) {
                h.connected(c.0);
            }
        }
    }
    assert!(h.sends.len() > sent, "tried again: {:?}", h.connects);
    assert!(h.out.is_empty(), "not answered yet");
    let (s, again) = h.sends.last().unwrap().clone();
    let message = upstream_of(&h, s) == DOQ;
    reply(&mut h, s, &again, message);
    assert_eq!(h.out.len(), 1, "answered exactly once");
}

#[test]
fn a_silent_doq_upstream_is_hedged_to_dot() {
    let mut h = mixed(
        cfg(),
        &[(DOQ, Transport::Message), (DOT, Transport::Stream)],
    );
    // Measure DoQ's round trip so the hedge timer is armed from it.
    h.q(udp(1), &query(1, "warm", None));
    let doq = h.connects[0].0;
    h.connected(doq);
    let frame = h.sends[0].1.clone();
    h.advance(5);
    reply(&mut h, doq, &frame, true);
    assert_eq!(h.out.len(), 1);
    // DoQ goes quiet: the next query is hedged to DoT after the attempt timeout (3 × SRTT + 100 ms,
    // at least 300 ms), well before the deadline.
    h.q(udp(2), &query(2, "quiet", None));
    h.advance(400);
    let dot = h.connects.iter().find(|c| c.1 == DOT).map(|c| c.0);
    let Some(dot) = dot else {
        panic!("hedged to DoT: {:?}", h.connects)
    };
    h.connected(dot);
    let frame = h
        .sends
        .iter()
        .rev()
        .find(|(s, _)| *s == dot)
        .unwrap()
        .1
        .clone();
    reply(&mut h, dot, &frame, false);
    assert_eq!(h.out.len(), 2, "answered by DoT");
    assert!(h.e.stats().hedged >= 1);
    // The DoQ request (every copy of it) is cancelled; nothing on DoT.
    assert!(!h.cancels.is_empty());
    assert!(h.cancels.iter().all(|c| c.0 == doq), "{:?}", h.cancels);
}
