//! Admission: the in-flight limit, per-client rate and in-flight limits.

use super::*;

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

/// Sources outside `allow` get REFUSED, but all of them together at most 20 answers a second (burst
/// 20): spoofed queries cannot turn the router into a reflector. Sources inside are not touched.
#[test]
fn answers_outside_allow_share_a_small_budget() {
    let mut h = Harness::new(cfg(), &[U1]);
    let policy = Policy::new(&policy::PolicyConfig {
        allow: alloc::vec![policy::Prefix::new([192, 168, 1, 0].into(), 24).unwrap()],
        ..policy::PolicyConfig::default()
    })
    .unwrap();
    h.e.set_policy(Some(policy));
    let outside = |i: u16| ClientAddr::Udp {
        listener: 0,
        peer: core::net::SocketAddr::from(([203, 0, 113, (i % 200) as u8], 4000 + i)),
    };
    let refused = |h: &Harness| {
        h.out
            .iter()
            .filter(|t| rcode_and_ede(&t.bytes).0 == rcode::REFUSED)
            .count()
    };
    // Malformed input from outside is dropped without an answer, and spends nothing.
    let mut bad = query(1, "x", None);
    bad.truncate(bad.len() - 3);
    for i in 0..30u16 {
        h.q(outside(i), &bad);
    }
    assert!(h.out.is_empty());
    for i in 0..100u16 {
        h.q(outside(i), &query(i, "a", None));
    }
    assert_eq!(refused(&h), 20, "the burst, from many sources together");
    assert_eq!(h.e.stats().refused, 20);
    assert_eq!(h.e.stats().dropped, 30 + 80);
    // TCP from outside cannot be spoofed: refused, whatever the budget.
    h.out.clear();
    let tcp = ClientAddr::Tcp {
        conn: 3,
        peer: core::net::SocketAddr::from(([203, 0, 113, 7], 5000)),
    };
    h.q(tcp, &query(400, "t", None));
    assert_eq!(refused(&h), 1);
    // A client inside is served while the budget is spent.
    h.q(udp(1), &query(500, "b", None));
    assert_eq!(h.e.inflight(), 1);
    // The budget comes back at 20 a second: 10 after half a second.
    h.advance(500);
    h.out.clear();
    for i in 0..50u16 {
        h.q(outside(i), &query(600 + i, "c", None));
    }
    assert_eq!(refused(&h), 10);
    // Never more than the burst, however long the quiet.
    h.advance(3_600_000);
    h.out.clear();
    for i in 0..50u16 {
        h.q(outside(i), &query(700 + i, "d", None));
    }
    assert_eq!(refused(&h), 20);
}
