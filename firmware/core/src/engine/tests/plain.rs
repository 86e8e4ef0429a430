//! The plaintext paths: the captive-portal exception and the local resolver.

use super::*;

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
    let mut good = answer(&framed)[2..].to_vec();
    // The hotel's resolver claims its answer was validated (AD): a plaintext hop cannot vouch.
    good[3] |= 0x20;
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
    assert_eq!(got.bytes[3] & 0x20, 0, "AD cleared");
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

#[test]
fn a_local_answer_to_another_qtype_in_another_case_completes_nothing() {
    let mut h = local_harness(true);
    // QTYPE 65 (HTTPS) is 0x0041, an ASCII 'A': an answer for type 97 (0x0061) is to another question.
    h.q(udp(1), &query_for(1, "printer.lan", 65, false));
    let (tag, msg) = h.locals[0].clone();
    let good = answer_to(&msg);
    let qt = scan(&good).unwrap().question_end - 4;
    let mut other_type = good.clone();
    other_type[qt + 1] = 0x61;
    h.e.handle_local_answer(h.now, tag, &other_type);
    h.drain();
    assert!(h.out.is_empty(), "an answer for type 97 is not one for 65");
    h.e.handle_local_answer(h.now, tag, &good);
    h.drain();
    assert_eq!(h.out.len(), 1);
    assert_eq!(rcode_and_ede(&h.out[0].bytes).0, rcode::NOERROR);
}

#[test]
fn plaintext_answers_repeat_the_askers_own_spelling() {
    use crate::captive::Exception;
    let mut h = Harness::new(cfg(), &[U1]);
    h.e.set_plain_exception(Some(Exception {
        names: alloc::vec![b"\x06portal\x07example\x00".to_vec()],
        until: h.now + Duration::from_secs(60),
    }));
    let asked = query(1, "PoRtAl", None);
    h.q(udp(1), &asked);
    let (tag, msg) = h.plains[0].clone();
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    let mut a = answer(&framed)[2..].to_vec();
    a[12..12 + 16].make_ascii_lowercase();
    h.e.handle_plain_answer(h.now, tag, &a);
    h.drain();
    let got = h.out.iter().find(|t| t.to == udp(1)).unwrap();
    assert_eq!(rcode_and_ede(&got.bytes).0, rcode::NOERROR);
    assert_eq!(&got.bytes[12..12 + 16], &asked[12..12 + 16]);
}
