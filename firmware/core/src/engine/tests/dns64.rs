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

fn one_upstream() -> [UpstreamSpec; 1] {
    [UpstreamSpec {
        id: U1,
        transport: Transport::Stream,
        tcp: true,
    }]
}

/// The AAAA query `label` answered through DNS64: NODATA, then the A records (10.0.0.<first octet>).
fn synthesize_via(h: &mut Harness, s: SessionId, client: ClientAddr, id: u16, label: &str) {
    let before = h.sends.len();
    h.q(client, &query_aaaa(id, label));
    let f = h.sends[before].1.clone();
    h.data(s, &nodata(&f));
    let f = h.sends[before + 1].1.clone();
    assert_eq!(qtype_of(&f[2..]), dns64::TYPE_A);
    h.data(s, &answer(&f));
}

#[test]
fn changing_dns64_on_reconfigure_drops_answers_cached_under_the_old_setting() {
    let on = EngineConfig {
        dns64: Some(dns64::Nat64Prefix::WELL_KNOWN),
        cache: Some(crate::cache::CacheConfig::default()),
        ..cfg()
    };
    let mut h = Harness::new(on, &[U1]);
    h.q(udp(9), &query(9, "warm", None));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    h.data(s, &answer(&f));
    synthesize_via(&mut h, s, udp(1), 1, "a");
    assert_eq!(h.e.stats().dns64_synthesized, 1);
    // Asked again: from the cache.
    h.q(udp(2), &query_aaaa(2, "a"));
    assert_eq!(h.e.stats().cache_hits, 1);
    let sends = h.sends.len();

    // Another prefix: the answer under the old one is not served again.
    let other = EngineConfig {
        dns64: Some(dns64::Nat64Prefix::new("2001:db8:64::".parse().unwrap(), 96).unwrap()),
        ..on
    };
    h.e.reconfigure(h.now, other, &one_upstream());
    h.drain();
    h.q(udp(3), &query_aaaa(3, "a"));
    assert_eq!(h.e.stats().cache_hits, 1, "not from the cache");
    assert_eq!(h.sends.len(), sends + 1, "asked upstream again");
    let f = h.sends[sends].1.clone();
    h.data(s, &nodata(&f));
    let f = h.sends[sends + 1].1.clone();
    h.data(s, &answer(&f));
    let got = &h.out.last().unwrap().bytes;
    assert_eq!(h.out.last().unwrap().to, udp(3));
    let rdata = &got[got.len() - 16..];
    assert_eq!(&rdata[..6], &[0x20, 0x01, 0x0d, 0xb8, 0, 0x64]);

    // DNS64 off: no synthesized answer from the cache either.
    let off = EngineConfig { dns64: None, ..on };
    h.e.reconfigure(h.now, off, &one_upstream());
    h.drain();
    let sends = h.sends.len();
    h.q(udp(4), &query_aaaa(4, "a"));
    assert_eq!(h.e.stats().cache_hits, 1, "not from the cache");
    assert_eq!(h.sends.len(), sends + 1, "asked upstream again");
    // The cache itself is kept on (its settings did not change), just emptied.
    assert!(h.e.cache_usage().is_some());
}

#[test]
fn dns64_turned_off_while_the_a_query_is_out_answers_with_the_aaaa_nodata() {
    let on = EngineConfig {
        dns64: Some(dns64::Nat64Prefix::WELL_KNOWN),
        cache: Some(crate::cache::CacheConfig::default()),
        ..cfg()
    };
    let mut h = Harness::new(on, &[U1]);
    h.q(udp(1), &query_aaaa(1, "a"));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    h.data(s, &nodata(&f));
    let f = h.sends[1].1.clone();
    assert_eq!(qtype_of(&f[2..]), dns64::TYPE_A);
    h.e.reconfigure(h.now, EngineConfig { dns64: None, ..on }, &one_upstream());
    h.drain();
    // The A answer comes after DNS64 was turned off: the AAAA client gets the AAAA NODATA, never
    // the A records.
    h.data(s, &answer(&f));
    assert_eq!(h.out.len(), 1);
    let got = &h.out[0].bytes;
    assert_eq!(qtype_of(got), dns64::TYPE_AAAA);
    assert_eq!(rcode_and_ede(got).0, rcode::NOERROR);
    assert_eq!(header::Header::parse(got).unwrap().ancount, 0);
    // Nothing of it was cached under the AAAA question: asked again, it goes upstream.
    h.q(udp(2), &query_aaaa(2, "a"));
    assert_eq!(h.e.stats().cache_hits, 0);
    assert_eq!(h.sends.len(), 3);
}

#[test]
fn dns64_answers_repeat_the_askers_own_spelling() {
    let c = EngineConfig {
        dns64: Some(dns64::Nat64Prefix::WELL_KNOWN),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    let asked = query_aaaa(1, "WwW");
    h.q(udp(1), &asked);
    let s = h.connects[0].0;
    h.connected(s);
    // The upstream lower-cases the name in both answers.
    let f = h.sends[0].1.clone();
    let mut n = nodata(&f);
    n[2 + 12..2 + 12 + 13].make_ascii_lowercase();
    h.data(s, &n);
    let f = h.sends[1].1.clone();
    let mut a = answer(&f);
    a[2 + 12..2 + 12 + 13].make_ascii_lowercase();
    h.data(s, &a);
    assert_eq!(h.e.stats().dns64_synthesized, 1);
    assert_eq!(&h.out[0].bytes[12..12 + 13], &asked[12..12 + 13]);
}

#[test]
fn dns64_turned_on_while_an_aaaa_query_is_out_does_not_cache_its_nodata() {
    let off = EngineConfig {
        cache: Some(crate::cache::CacheConfig::default()),
        ..cfg()
    };
    let mut h = Harness::new(off, &[U1]);
    h.q(udp(1), &query_aaaa(1, "a"));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    let on = EngineConfig {
        dns64: Some(dns64::Nat64Prefix::WELL_KNOWN),
        ..off
    };
    h.e.reconfigure(h.now, on, &one_upstream());
    h.drain();
    // A cacheable NODATA (an SOA in the authority section) for the query asked without DNS64.
    let mut n = nodata(&f);
    n[2 + 9] = 1;
    n.extend_from_slice(&[0xc0, 0x0c, 0, 6, 0, 1, 0, 0, 0, 60, 0, 22, 0, 0]);
    for v in [1u32, 3600, 600, 86_400, 60] {
        n.extend_from_slice(&v.to_be_bytes());
    }
    let len = (n.len() - 2) as u16;
    n[..2].copy_from_slice(&len.to_be_bytes());
    h.data(s, &n);
    assert_eq!(h.out.len(), 1);
    assert_eq!(header::Header::parse(&h.out[0].bytes).unwrap().ancount, 0);
    // With DNS64 on, the next AAAA query is not answered with that NODATA: it is synthesized.
    h.q(udp(2), &query_aaaa(2, "a"));
    assert_eq!(h.e.stats().cache_hits, 0, "not from the cache");
    let f = h.sends[1].1.clone();
    h.data(s, &nodata(&f));
    let f = h.sends[2].1.clone();
    h.data(s, &answer(&f));
    assert_eq!(h.e.stats().dns64_synthesized, 1);
}
