//! The cache on the query path: hits, stale answers, which SERVFAILs are cached.

use super::*;

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

#[test]
fn cached_and_stale_answers_repeat_the_askers_own_spelling() {
    let c = EngineConfig {
        cache: Some(crate::cache::CacheConfig {
            max_ttl: 60,
            ..Default::default()
        }),
        ..cfg()
    };
    let qname = |msg: &[u8]| msg[12..12 + 13].to_vec();
    let mut h = Harness::new(c, &[U1]);
    h.q(udp(1), &query(1, "www", Some(1232)));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    h.data(s, &answer(&f));
    // A DNS 0x20 resolver asks again in mixed case: the cached answer carries its spelling.
    let asked = query(2, "WwW", Some(1232));
    h.q(udp(2), &asked);
    assert_eq!(h.e.stats().cache_hits, 1);
    assert_eq!(qname(&h.out[1].bytes), qname(&asked));
    // Once stale, and with the upstream gone, the stale answer does too.
    h.closed(s, CloseReason::Reset);
    h.advance(61_000);
    let asked = query(3, "wWW", Some(1232));
    h.q(udp(3), &asked);
    let pending = h.connects.len();
    h.closed(h.connects[pending - 1].0, CloseReason::Refused);
    h.advance(3_000);
    assert_eq!(h.e.stats().stale_answers, 1);
    let last = h.out.last().unwrap();
    assert_eq!(last.to, udp(3));
    assert_eq!(qname(&last.bytes), qname(&asked));
}

/// The upstream's NXDOMAIN to a framed query, with an SOA (TTL and MINIMUM 60) so it is cached.
fn nxdomain(frame: &[u8]) -> Vec<u8> {
    let msg = &frame[2..];
    let s = scan(msg).unwrap();
    let mut r = msg[..2].to_vec();
    r.extend_from_slice(&[0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0]);
    r.extend_from_slice(&msg[12..s.question_end]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 6, 0, 1, 0, 0, 0, 60, 0, 22, 0, 0]);
    for v in [1u32, 3600, 600, 86_400, 60] {
        r.extend_from_slice(&v.to_be_bytes());
    }
    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

#[test]
fn stale_nxdomain_answers_carry_ede19() {
    let c = EngineConfig {
        cache: Some(crate::cache::CacheConfig::default()),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    h.q(udp(1), &query(1, "nx", Some(1232)));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    h.data(s, &nxdomain(&f));
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NXDOMAIN);
    h.closed(s, CloseReason::Reset);
    h.advance(61_000);
    h.q(udp(2), &query(2, "nx", Some(1232)));
    let pending = h.connects.len();
    h.closed(h.connects[pending - 1].0, CloseReason::Refused);
    h.advance(3_000);
    let last = h.out.last().unwrap();
    assert_eq!(last.to, udp(2));
    let (rc, e) = rcode_and_ede(&last.bytes);
    assert_eq!(
        (rc, e.unwrap().0),
        (rcode::NXDOMAIN, ede::STALE_NXDOMAIN_ANSWER),
        "RFC 8914 §4.20"
    );
    assert_eq!(h.e.stats().stale_answers, 1);
}

#[test]
fn answers_to_non_recursive_queries_are_cached_apart_from_recursive_ones() {
    let c = EngineConfig {
        cache: Some(crate::cache::CacheConfig::default()),
        ..cfg()
    };
    let norec = |id: u16| {
        let mut q = query(id, "a", Some(1232));
        q[2] &= !0x01;
        q
    };
    let mut h = Harness::new(c, &[U1]);
    h.q(udp(1), &norec(1));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    assert_eq!(
        f[2 + 2] & 0x01,
        0,
        "RD=0 forwarded as asked (RFC 5625 §4.1)"
    );
    // The resolver refuses non-recursive queries.
    let mut refused = answer(&f);
    refused[2 + 2] &= !0x01;
    refused[2 + 3] = (refused[2 + 3] & 0xf0) | rcode::REFUSED as u8;
    h.data(s, &refused);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::REFUSED);
    // A recursive query for the same name is not answered with that refusal.
    h.q(udp(2), &query(2, "a", Some(1232)));
    assert_eq!(h.e.stats().cache_hits, 0);
    assert_eq!(h.sends.len(), 2, "asked upstream");
    let f = h.sends[1].1.clone();
    assert_eq!(f[2 + 2] & 0x01, 0x01);
    h.data(s, &answer(&f));
    assert_eq!(rcode_and_ede(&h.out[1].bytes).0, rcode::NOERROR);
    // Each kind is answered from its own entry, its RD echoed.
    h.q(udp(3), &norec(3));
    h.q(udp(4), &query(4, "a", Some(1232)));
    assert_eq!(h.e.stats().cache_hits, 2);
    assert_eq!(h.sends.len(), 2);
    assert_eq!(rcode_and_ede(&h.out[2].bytes).0, rcode::REFUSED);
    assert_eq!(h.out[2].bytes[2] & 0x01, 0);
    assert_eq!(rcode_and_ede(&h.out[3].bytes).0, rcode::NOERROR);
    assert_eq!(h.out[3].bytes[2] & 0x01, 0x01);
}

/// An upstream answer whose second owner name is a pointer into the first answer's TTL (octet 35:
/// 0x00, the root, while that TTL is 65536): cached, but a second later the copy's TTL is 65535
/// and octet 35 is 0xff, so the copy no longer scans. Such a hit is a miss: the query goes upstream
/// and is answered, never dropped.
#[test]
fn a_cached_copy_that_no_longer_scans_is_a_miss_not_silence() {
    let c = EngineConfig {
        cache: Some(crate::cache::CacheConfig {
            max_ttl: 86_400,
            ..Default::default()
        }),
        ..cfg()
    };
    let mut h = Harness::new(c, &[U1]);
    let odd = |frame: &[u8]| {
        let msg = &frame[2..];
        let s = scan(msg).unwrap();
        assert_eq!(s.question_end, 27, "a.example./A");
        let mut r = msg[..2].to_vec();
        r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]);
        r.extend_from_slice(&msg[12..27]);
        // Answer 1 at 27: TTL octets 33..37 = 0x00010000.
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 1, 0, 0, 0, 4, 10, 0, 0, 1]);
        r.extend_from_slice(&[0xc0, 35, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 2]);
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&r);
        framed
    };
    h.q(udp(1), &query(1, "a", None));
    let s = h.connects[0].0;
    h.connected(s);
    let f = h.sends[0].1.clone();
    h.data(s, &odd(&f));
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NOERROR);
    // Within the same second the copy is the answer as it came: a hit.
    h.q(udp(2), &query(2, "a", None));
    assert_eq!((h.sends.len(), h.out.len()), (1, 2), "a hit");
    assert_eq!(h.e.stats().cache_hits, 1);
    // A second later: the aged copy does not scan, so the upstream is asked and its answer sent.
    h.advance(1_000);
    h.q(udp(3), &query(3, "a", None));
    assert_eq!(
        h.sends.len(),
        2,
        "the unusable copy sent the query upstream"
    );
    assert_eq!(h.e.stats().cache_hits, 1);
    let f = h.sends[1].1.clone();
    h.data(s, &answer(&f));
    assert_eq!(h.out.len(), 3);
    assert_eq!(&h.out[2].bytes[..2], &[0, 3]);
    assert_eq!(rcode_and_ede(&h.out[2].bytes).0, rcode::NOERROR);
}
