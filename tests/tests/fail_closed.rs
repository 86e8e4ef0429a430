//! Strict by default: when the upstream cannot be reached or authenticated, clients get a prompt
//! SERVFAIL with an Extended DNS Error — never a plaintext fallback, never silence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{a_records, ede, query_tcp, query_udp};
use lanveil_tests::gateway::{config, config_for, start, with_pins};
use lanveil_tests::{Decoy, DotUpstream, Pki, UpstreamOpts, dig, expected_a};

const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
const EDE_NETWORK_ERROR: u16 = 23;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upstream_gets_servfail_with_ede22_within_the_deadline() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let (running, addr) = start(config_for(upstream.addr(), &leaf)).await; // deadline 1 s
    let m = query_udp(addr, "before.stall.test.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    upstream.set_stall(true);
    for tcp in [false, true] {
        let t0 = Instant::now();
        let m = if tcp {
            query_tcp(addr, "stalled.test.", RecordType::A, Some(1232)).await
        } else {
            query_udp(addr, "stalled.test.", RecordType::A, Some(1232)).await
        };
        let took = t0.elapsed();
        assert_eq!(m.response_code(), ResponseCode::ServFail);
        let (code, text) = ede(&m).expect("EDE present");
        assert_eq!(code, EDE_NO_REACHABLE_AUTHORITY, "{text}");
        assert!(
            took >= Duration::from_millis(900),
            "not before the deadline: {took:?}"
        );
        assert!(
            took <= Duration::from_millis(1_500),
            "at the deadline: {took:?}"
        );
    }
    // dig shows the EDE too.
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "stalled2.test",
    ])
    .await;
    assert_eq!(
        out.status.as_deref(),
        Some("SERVFAIL"),
        "{}",
        out.transcript()
    );
    assert_eq!(
        out.ede.as_ref().map(|e| e.code),
        Some(EDE_NO_REACHABLE_AUTHORITY),
        "{}",
        out.transcript()
    );
    // The stalled connection is replaced; when the upstream answers again, so does lanveil.
    upstream.set_stall(false);
    let t0 = Instant::now();
    loop {
        let m = query_udp(addr, "after.stall.test.", RecordType::A, None).await;
        if m.response_code() == ResponseCode::NoError {
            assert_eq!(a_records(&m), [expected_a("after.stall.test.")]);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "did not recover from the stall"
        );
    }
    running.shutdown().await;
}

/// One test (the decoy owns 127.0.0.2:53): every way authentication can fail gives SERVFAIL + EDE 23
/// with a precise text, promptly, and not one plaintext packet reaches port 53 of the upstream's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures_fail_closed_and_never_leak_plaintext() {
    let upstream_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let decoy = Decoy::start(SocketAddr::new(upstream_ip, 53)).await;
    let good_pki = Pki::new();
    let other_pki = Pki::new();
    let leaf = good_pki.leaf(&["dot.test"], &[upstream_ip]);
    let expired = good_pki.expired_leaf(&["dot.test"], &[upstream_ip]);
    let bind = SocketAddr::new(upstream_ip, 0);
    let up = DotUpstream::start(UpstreamOpts {
        bind,
        ..UpstreamOpts::new(&leaf)
    })
    .await;
    let up_expired = DotUpstream::start(UpstreamOpts {
        bind,
        ..UpstreamOpts::new(&expired)
    })
    .await;
    let wrong_pin = other_pki.leaf(&["x.test"], &[]).spki_pin();

    let cases = [
        (
            "wrong CA",
            config(&[(up.addr(), "dot.test")], other_pki.ca_pem_path()),
            "untrusted issuer",
        ),
        (
            "wrong name",
            config(&[(up.addr(), "other.test")], good_pki.ca_pem_path()),
            "name mismatch",
        ),
        (
            "wrong pin",
            with_pins(
                config(&[(up.addr(), "dot.test")], good_pki.ca_pem_path()),
                &[wrong_pin],
            ),
            "pin mismatch",
        ),
        (
            "expired",
            config(&[(up_expired.addr(), "dot.test")], good_pki.ca_pem_path()),
            "expired",
        ),
    ];
    for (what, cfg, text) in cases {
        let (running, addr) = start(cfg).await;
        let t0 = Instant::now();
        let m = query_udp(addr, "secret.example.", RecordType::A, Some(1232)).await;
        let took = t0.elapsed();
        assert_eq!(m.response_code(), ResponseCode::ServFail, "{what}");
        let (code, got) = ede(&m).unwrap_or_else(|| panic!("{what}: no EDE"));
        assert_eq!(code, EDE_NETWORK_ERROR, "{what}: {got}");
        assert!(
            got.contains(text),
            "{what}: EDE text {got:?} should say {text:?}"
        );
        assert!(
            took < Duration::from_millis(900),
            "{what}: prompt, not at the deadline: {took:?}"
        );
        // TCP clients and dig see the same.
        let m = query_tcp(addr, "secret2.example.", RecordType::A, Some(1232)).await;
        assert_eq!(m.response_code(), ResponseCode::ServFail, "{what} (tcp)");
        let out = dig(&[
            "@127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "secret3.example",
        ])
        .await;
        assert_eq!(
            out.ede.as_ref().map(|e| e.code),
            Some(EDE_NETWORK_ERROR),
            "{what}: {}",
            out.transcript()
        );
        running.shutdown().await;
    }
    assert_eq!(
        up.queries() + up_expired.queries(),
        0,
        "no query was ever sent over an unauthenticated session"
    );
    assert_eq!(
        decoy.hits(),
        0,
        "plaintext reached port 53 of the upstream address"
    );

    // The right pin (the leaf's) works, over the same upstream.
    let cfg = with_pins(
        config(&[(up.addr(), "dot.test")], good_pki.ca_pem_path()),
        &[leaf.spki_pin()],
    );
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "pinned.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("pinned.example.")]);
    running.shutdown().await;
    assert_eq!(decoy.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_answers_with_ede23_not_silence() {
    let pki = Pki::new();
    // Nothing listens on this port: connection refused.
    let port = lanveil_tests::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let dead = SocketAddr::from(([127, 0, 0, 1], port));
    let (running, addr) = start(config(&[(dead, "dot.test")], pki.ca_pem_path())).await;
    let t0 = Instant::now();
    let m = query_udp(addr, "nowhere.test.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    let (code, text) = ede(&m).unwrap();
    assert_eq!(
        (code, text.as_str()),
        (EDE_NETWORK_ERROR, "upstream refused the connection")
    );
    assert!(t0.elapsed() < Duration::from_millis(900));
    running.shutdown().await;
}
