//! DNS64's second phase.

use super::*;
use crate::dns64;
use crate::engine::dns64::Dns64Phase;

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
    let q = h.e.queries.iter_mut().next().unwrap();
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
fn the_aaaa_placements_hedge_does_not_fire_against_the_a_placement() {
    let c = EngineConfig {
        dns64: Some(dns64::Nat64Prefix::WELL_KNOWN),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1, U2]);
    h.q(udp(1), &query_aaaa(1, "a"));
    let s = h.connects[0].0;
    h.connected(s);
    // The AAAA placement's attempt timeout is 1.25 s (half the deadline: no RTT yet). Its NODATA comes
    // after 1 s; the A placement goes to the same upstream, with an attempt timeout of its own.
    h.advance(1_000);
    let f = h.sends[0].1.clone();
    h.data(s, &nodata(&f));
    assert_eq!(qtype_of(&h.sends[1].1[2..]), dns64::TYPE_A);
    // The AAAA placement's old timer passes: the A placement, 300 ms old, is not hedged.
    h.advance(300);
    assert_eq!(
        h.e.stats().hedged,
        0,
        "the A placement was not counted slow"
    );
    assert_eq!(h.connects.len(), 1, "nothing sent to the second upstream");
    let f = h.sends[1].1.clone();
    h.data(s, &answer(&f));
    assert_eq!(h.out.len(), 1);
    assert_eq!(qtype_of(&h.out[0].bytes), dns64::TYPE_AAAA);
    assert_eq!(h.e.stats().dns64_synthesized, 1);
}
