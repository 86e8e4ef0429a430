//! DNS-over-QUIC upstreams (RFC 9250) against servers lanveil did not write: aioquic (PyPI, with a
//! server that reports the bytes it receives) and hickory-dns (crates.io, QUIC feature). Each case
//! behaves as it does over DoT: answers, pipelining, large answers, NXDOMAIN, the upstream's
//! SERVFAIL, a wrong certificate and a wrong pin (SERVFAIL + EDE 23, fail-closed); and from the
//! server's side: ALPN `doq`, ID 0, one stream per query with FIN, every query padded to the
//! 128-octet block, no 0-RTT, no resumption unless `tls_resumption` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil::config::Config;
use lanveil_tests::client::{a_records, ede, query_tcp, query_udp, txt_records};
use lanveil_tests::clock::{FakeWall, start_at, state_file};
use lanveil_tests::doq::{AioquicServer, HICKORY_WWW_A, HickoryDoq};
use lanveil_tests::gateway::{config_urls, start, with_pins};
use lanveil_tests::upstream::{DotUpstream, UpstreamOpts, expected_a};
use lanveil_tests::{Leaf, Pki, TempDir};

const NAME: &str = "doq.test";

fn leaf(pki: &Pki) -> Leaf {
    pki.leaf(&[NAME], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
}

fn quic_url(addr: SocketAddr, name: &str) -> String {
    format!("quic://{addr}#{name}")
}

fn doq_config(addr: SocketAddr, leaf: &Leaf) -> Config {
    config_urls(&[quic_url(addr, NAME)], leaf.ca_pem_path())
}

/// The aioquic server's deterministic A answer.
fn aioquic_a(name: &str) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, (name.len() % 256) as u8)
}

/// Every query the server received: ID 0, padded (EDNS option 12) to a multiple of 128 octets, no
/// edns-tcp-keepalive, ended with FIN, each on its own stream.
/// Against the server at `server` (whose certificate is `leaf`): a URL with another authentication
/// name, then the right name with a pin that matches nothing in the chain. Each fails closed, with
/// SERVFAIL and the verifier's words in EDE 23, as over DoT.
async fn wrong_name_and_wrong_pin_fail_closed(
    pki: &Pki,
    leaf: &Leaf,
    server: SocketAddr,
    qname: &str,
) {
    let other = pki.leaf(&["else.test"], &[]);
    let cases = [
        (
            config_urls(&[quic_url(server, "other.test")], leaf.ca_pem_path()),
            "upstream certificate rejected: name mismatch",
        ),
        (
            with_pins(doq_config(server, leaf), &[other.spki_pin()]),
            "upstream certificate rejected: SPKI pin mismatch",
        ),
    ];
    for (cfg, text) in cases {
        let (running, addr) = start(cfg).await;
        let m = query_udp(addr, qname, RecordType::A, Some(1232)).await;
        assert_eq!(m.response_code(), ResponseCode::ServFail, "{text}");
        assert_eq!(ede(&m), Some((23, text.into())));
        running.shutdown().await;
    }
}

fn assert_queries_on_the_wire(server: &AioquicServer) {
    let queries = server.events_of("query");
    assert!(!queries.is_empty());
    let mut streams = std::collections::HashSet::new();
    for q in &queries {
        assert_eq!(q["id"], 0, "DNS ID 0 on the wire: {q}");
        assert_eq!(q["padding"], true, "padded: {q}");
        assert_eq!(q["len"].as_u64().unwrap() % 128, 0, "128-octet block: {q}");
        assert_eq!(q["keepalive"], false, "no edns-tcp-keepalive: {q}");
        assert_eq!(q["fin"], true, "{q}");
        // Stream IDs repeat only across connections; (connection order is not reported) so count
        // per handshake below.
        streams.insert(q["stream"].as_u64().unwrap());
        assert_eq!(
            q["stream"].as_u64().unwrap() % 4,
            0,
            "client-initiated bidi: {q}"
        );
    }
    for h in server.events_of("handshake") {
        assert_eq!(h["alpn"], "doq", "{h}");
        assert_eq!(h["early_data"], false, "no 0-RTT: {h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_answers_pipelining_large_nxdomain_servfail() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    let server = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;
    let mut cfg = with_pins(doq_config(server.addr(), &leaf), &[leaf.spki_pin()]);
    let dir = TempDir::new("lanveil-doq");
    let sock = dir.join("control.sock");
    cfg.daemon.control_socket = Some(sock.display().to_string());
    let (running, addr) = start(cfg).await;

    let m = query_udp(addr, "www.example.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(&m), [aioquic_a("www.example.")]);

    // Status (what `lanveil-ctl status` shows): the quic:// URL, up, the certificate's expiry.
    let bytes = tokio::task::spawn_blocking(move || {
        lanveil::control::request(&sock, &lanveil::config::control::Request::Status).unwrap()
    })
    .await
    .unwrap();
    let lanveil::config::control::Response::Status(status) =
        lanveil::config::control::Response::decode(&bytes).unwrap()
    else {
        panic!("not a status")
    };
    let up = &status.upstreams[0];
    assert_eq!(up.url, format!("quic://{}#{NAME}", server.addr()));
    assert!(up.up, "{up:?}");
    assert!(up.cert_not_after.is_some(), "{up:?}");

    // Pipelining: 64 queries at once, all on the one connection, each on its own stream.
    let mut tasks = Vec::new();
    for i in 0..64 {
        tasks.push(tokio::spawn(async move {
            let name = format!("p{i}.pipe.example.");
            let m = query_udp(addr, &name, RecordType::A, None).await;
            (name, m)
        }));
    }
    for t in tasks {
        let (name, m) = t.await.unwrap();
        assert_eq!(m.response_code(), ResponseCode::NoError, "{name}");
        assert_eq!(a_records(&m), [aioquic_a(&name)], "{name}");
    }

    // A large answer (over TCP to the client; the upstream stream carries it whole).
    let m = query_tcp(addr, "big-8000.example.", RecordType::TXT, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    let txt: usize = txt_records(&m).iter().map(Vec::len).sum();
    assert!(txt > 7_000, "large TXT answer came through: {txt} octets");

    let m = query_udp(addr, "nx.example.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);

    // The upstream's own SERVFAIL is passed on (as over DoT), not made into a lanveil failure.
    let m = query_udp(addr, "servfail.example.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);

    assert_eq!(
        server.events_of("handshake").len(),
        1,
        "everything on one QUIC connection: {:?}",
        server.events()
    );
    let queries = server.events_of("query");
    assert!(queries.len() >= 68, "{} queries seen", queries.len());
    let streams: std::collections::HashSet<u64> = queries
        .iter()
        .map(|q| q["stream"].as_u64().unwrap())
        .collect();
    assert_eq!(streams.len(), queries.len(), "one stream per query");
    assert_queries_on_the_wire(&server);
    assert!(
        server.events_of("ticket_offered").is_empty(),
        "no resumption attempt"
    );
    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(stats.upstream_connects, 1);
    running.shutdown().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_wrong_certificate_and_wrong_pin_fail_closed() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    let server = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;

    wrong_name_and_wrong_pin_fail_closed(&pki, &leaf, server.addr(), "www.example.").await;

    // A CA the upstream's chain does not lead to.
    let other_pki = Pki::new();
    let cfg = config_urls(&[quic_url(server.addr(), NAME)], other_pki.ca_pem_path());
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "www.example.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_eq!(
        ede(&m),
        Some((23, "upstream certificate rejected: untrusted issuer".into()))
    );
    running.shutdown().await;

    assert!(
        server.events_of("query").is_empty(),
        "no query reached an unauthenticated upstream: {:?}",
        server.events()
    );
    server.stop().await;
}

/// From the server's side: a second connection offers no session ticket and sends no 0-RTT by
/// default; with `tls_resumption '1'` it resumes (which proves the server would have seen it), and
/// still sends no early data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_no_resumption_and_no_0rtt_unless_asked() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    for resumption in [false, true] {
        let server = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;
        let mut cfg = doq_config(server.addr(), &leaf);
        cfg.upstreams.servers[0].tls_resumption = resumption;
        let (running, addr) = start(cfg).await;
        // `close`: the server answers, then closes the connection; the next query redials.
        let m = query_udp(addr, "close.example.", RecordType::A, None).await;
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(server.wait_for("closed", 1, Duration::from_secs(5)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = query_udp(addr, "again.example.", RecordType::A, Some(1232)).await;
        assert_eq!(a_records(&m), [aioquic_a("again.example.")]);
        let handshakes = server.events_of("handshake");
        assert_eq!(handshakes.len(), 2, "{:?}", server.events());
        assert_queries_on_the_wire(&server);
        let offered = server.events_of("ticket_offered").len();
        let resumed = handshakes.iter().filter(|h| h["resumed"] == true).count();
        if resumption {
            assert_eq!((offered, resumed), (1, 1), "{:?}", server.events());
        } else {
            assert_eq!((offered, resumed), (0, 0), "{:?}", server.events());
        }
        running.shutdown().await;
        server.stop().await;
    }
}

/// With `tls_resumption '1'` on a router that booted without the right time: a session kept while
/// the clock was unsynchronized is not resumed once it is set. quinn does not say whether a handshake
/// resumed, so a resumed session would carry the verdict of the one it resumes: the expired, pinned
/// certificate accepted against the time floor would be accepted again (or, with only the driver's
/// re-verification, closed and redialled with the next ticket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_no_session_from_before_the_clock_was_set_is_resumed() {
    let pki = Pki::new();
    let expired = pki.expired_leaf(&[NAME], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let server = AioquicServer::start(&expired, None, Duration::from_secs(60)).await;
    let dir = TempDir::new("lanveil-doq-clock");
    let mut cfg = with_pins(doq_config(server.addr(), &expired), &[expired.spki_pin()]);
    cfg.upstreams.servers[0].tls_resumption = true;
    cfg.daemon.state_file = Some(state_file(&dir).display().to_string());
    cfg.cache.enabled = false;
    let wall = FakeWall::at(1_000_000_000); // 2001
    let (running, addr) = start_at(cfg, &wall).await;

    // Accepted against the floor; the server answers and closes the connection, and lanveil's
    // standby connection resumes the session at once (allowed: the clock is still unsynchronized).
    let m = query_udp(addr, "close.example.", RecordType::A, None).await;
    assert_eq!(
        m.response_code(),
        ResponseCode::NoError,
        "{:?}",
        server.events()
    );
    assert!(server.wait_for("closed", 1, Duration::from_secs(5)).await);
    assert!(
        server
            .wait_for("handshake", 2, Duration::from_secs(5))
            .await,
        "{:?}",
        server.events()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.events_of("handshake");
    assert!(
        before.iter().any(|h| h["resumed"] == true),
        "resumed while unsynchronized (so the check below can fail): {:?}",
        server.events()
    );
    let offered = server.events_of("ticket_offered").len();
    // NTP answers: the relaxed connection is closed (the clock ticker looks every 250 ms).
    wall.set_to_real_time();
    assert!(
        server.wait_for("closed", 2, Duration::from_secs(5)).await,
        "{:?}",
        server.events()
    );
    let m = query_udp(addr, "again.example.", RecordType::A, Some(1232)).await;
    assert_eq!(
        m.response_code(),
        ResponseCode::ServFail,
        "{:?}",
        server.events()
    );
    assert!(ede(&m).unwrap().1.contains("expired"), "{:?}", ede(&m));
    // After it: no ticket offered, nothing resumed; a full handshake whose certificate lanveil's
    // verifier refused (the server sees the alert, not a handshake).
    let after = &server.events_of("handshake")[before.len()..];
    assert!(
        after.iter().all(|h| h["resumed"] != true)
            && server.events_of("ticket_offered").len() == offered
            && server.events_of("closed").iter().any(|c| c["reason"]
                .as_str()
                .is_some_and(|r| r.contains("certificate expired"))),
        "full handshakes only after the clock was set: {:?}",
        server.events()
    );
    running.shutdown().await;
    server.stop().await;
}

/// §4.3: a response with a non-zero ID closes the connection with DOQ_PROTOCOL_ERROR (0x2); a
/// stream the server resets fails that query only; lanveil closes idle connections with
/// DOQ_NO_ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_error_codes() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    let server = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;
    let (running, addr) = start(doq_config(server.addr(), &leaf)).await;

    let m = query_udp(addr, "badid.example.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(server.wait_for("closed", 1, Duration::from_secs(5)).await);
    let closed = server.events_of("closed");
    assert_eq!(closed[0]["error_code"], 2, "DOQ_PROTOCOL_ERROR: {closed:?}");

    let m = query_udp(addr, "cancel.example.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    // The connection survives a reset stream.
    let before = server.events_of("handshake").len();
    let m = query_udp(addr, "fine.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [aioquic_a("fine.example.")]);
    assert_eq!(server.events_of("handshake").len(), before);

    // The bad answer's query was retried once on a new connection, which met the same fate.
    let closed = server.events_of("closed");
    assert!(
        closed.iter().all(|c| c["error_code"] == 2),
        "only protocol errors so far: {closed:?}"
    );
    running.shutdown().await;
    // The live connection is closed with DOQ_NO_ERROR. (Wait for that close itself: the retried
    // bad-ID connection's own close may still be on its way when the daemon stops.)
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let no_error = |server: &AioquicServer| {
        server
            .events_of("closed")
            .iter()
            .any(|c| c["error_code"] == 0)
    };
    while !no_error(&server) && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = server.events_of("closed");
    assert!(no_error(&server), "DOQ_NO_ERROR at the end: {closed:?}");
    assert!(
        closed
            .iter()
            .all(|c| c["error_code"] == 0 || c["error_code"] == 2),
        "only protocol errors before the end: {closed:?}"
    );
    server.stop().await;
}

/// The upstream closes the connection (idle timeout, going away) or disappears and comes back on
/// the same port: the connection is replaced and no query is lost (each is answered, after the
/// restart with the real answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_connection_replaced_after_idle_and_restart() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    // The server's idle timeout (1 s) is shorter than lanveil's (20 s): the server closes first.
    let server = AioquicServer::start(&leaf, None, Duration::from_secs(1)).await;
    let port = server.addr().port();
    let mut cfg = doq_config(server.addr(), &leaf);
    cfg.limits.query_timeout_ms = 2_500;
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "one.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [aioquic_a("one.example.")]);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for i in 0..10 {
        let name = format!("after-idle-{i}.example.");
        let m = query_udp(addr, &name, RecordType::A, None).await;
        assert_eq!(a_records(&m), [aioquic_a(&name)], "{name}");
    }
    assert!(server.events_of("handshake").len() >= 2);

    // Gone: answered SERVFAIL (fail-closed, never lost). Back on the same port: answered again.
    server.stop().await;
    let m = query_udp(addr, "gone.example.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    let server = AioquicServer::start(&leaf, Some(port), Duration::from_secs(60)).await;
    let mut answered = false;
    for i in 0..20 {
        let name = format!("back-{i}.example.");
        let m = query_udp(addr, &name, RecordType::A, None).await;
        if m.response_code() == ResponseCode::NoError {
            assert_eq!(a_records(&m), [aioquic_a(&name)]);
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(answered, "answers again once the upstream is back");
    running.shutdown().await;
    server.stop().await;
}

/// DoT and DoQ upstreams in one configuration: failover both ways, round-robin over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_dot_and_doq_upstreams() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    let doq = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;
    let dot = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dead = SocketAddr::from((
        [127, 0, 0, 1],
        lanveil_tests::util::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ));
    let dot_url = format!("tls://{}#{NAME}", dot.handle().addr());

    // A dead DoQ upstream first: DoT answers.
    let cfg = config_urls(&[quic_url(dead, NAME), dot_url.clone()], leaf.ca_pem_path());
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "a.mixed.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("a.mixed.example.")]);
    running.shutdown().await;

    // A dead DoT upstream first: DoQ answers.
    let cfg = config_urls(
        &[format!("tls://{dead}#{NAME}"), quic_url(doq.addr(), NAME)],
        leaf.ca_pem_path(),
    );
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "b.mixed.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [aioquic_a("b.mixed.example.")]);
    running.shutdown().await;

    // Round-robin: both carry queries.
    let mut cfg = config_urls(&[dot_url, quic_url(doq.addr(), NAME)], leaf.ca_pem_path());
    cfg.upstreams.policy = lanveil::core::engine::SelectPolicy::RoundRobin;
    let (running, addr) = start(cfg).await;
    let before_doq = doq.events_of("query").len();
    let before_dot = dot.handle().queries();
    for i in 0..10 {
        let name = format!("rr{i}.mixed.example.");
        let m = query_udp(addr, &name, RecordType::A, None).await;
        let a = a_records(&m);
        assert!(
            a == [expected_a(&name)] || a == [aioquic_a(&name)],
            "{name}: {a:?}"
        );
    }
    assert!(doq.events_of("query").len() > before_doq, "DoQ took some");
    assert!(dot.handle().queries() > before_dot, "DoT took some");
    running.shutdown().await;
    doq.stop().await;
}

/// hickory-dns (crates.io, QUIC feature) as the DoQ upstream: answers, pipelining, a large answer,
/// NXDOMAIN; a wrong name and a wrong pin fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hickory_dns_interop() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    let hickory = HickoryDoq::start(&leaf).await;
    let cfg = with_pins(doq_config(hickory.addr(), &leaf), &[leaf.spki_pin()]);
    let (running, addr) = start(cfg).await;

    let m = query_udp(addr, "www.hickory.test.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(&m), [HICKORY_WWW_A]);

    // 32 different names at once (none cached), all on the one connection.
    let mut tasks = Vec::new();
    for i in 0..32 {
        tasks.push(tokio::spawn(async move {
            let name = format!("p{i}.hickory.test.");
            query_udp(addr, &name, RecordType::A, None).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().response_code(), ResponseCode::NXDomain);
    }

    let m = query_tcp(addr, "big.hickory.test.", RecordType::TXT, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(txt_records(&m).len(), 40, "the whole large answer");

    let m = query_udp(addr, "missing.hickory.test.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);

    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(stats.upstream_connects, 1, "one QUIC connection for all");
    running.shutdown().await;

    wrong_name_and_wrong_pin_fail_closed(&pki, &leaf, hickory.addr(), "www.hickory.test.").await;
    hickory.stop().await;
}

/// The engine's machinery across DoQ and DoT in one configuration: the DoQ upstream (first, the
/// failover choice) stalls (SIGSTOP: its socket stays, nothing comes back) and every query is
/// still answered, by hedging to DoT; when both stall, an expired DoQ answer is served stale (EDE
/// 3); when the DoQ upstream comes back, it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_hedging_stall_and_serve_stale() {
    let pki = Pki::new();
    let leaf = leaf(&pki);
    let doq = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;
    let dot = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let mut cfg = config_urls(
        &[
            quic_url(doq.addr(), NAME),
            format!("tls://{}#{NAME}", dot.handle().addr()),
        ],
        leaf.ca_pem_path(),
    );
    cfg.limits.query_timeout_ms = 1_500;
    let (running, addr) = start(cfg).await;
    for i in 0..5 {
        let name = format!("warm{i}.example.");
        let m = query_udp(addr, &name, RecordType::A, None).await;
        assert_eq!(a_records(&m), [aioquic_a(&name)], "DoQ first: {name}");
    }
    let m = query_udp(addr, "ttl1.example.", RecordType::A, Some(1232)).await;
    assert_eq!(a_records(&m), [aioquic_a("ttl1.example.")]);

    doq.pause();
    for i in 0..5 {
        let name = format!("hedged{i}.example.");
        let m = query_udp(addr, &name, RecordType::A, None).await;
        assert_eq!(
            a_records(&m),
            [expected_a(&name)],
            "answered by DoT: {name}"
        );
    }
    let (stats, _) = running.stats().await.unwrap();
    assert!(stats.hedged >= 1, "hedged to DoT: {stats:?}");

    // Both stalled; the DoQ answer (TTL 1) has expired: served stale.
    dot.handle().set_stall(true);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let m = query_udp(addr, "ttl1.example.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(&m), [aioquic_a("ttl1.example.")]);
    assert_eq!(ede(&m).map(|e| e.0), Some(3), "stale answer (EDE 3)");

    dot.handle().set_stall(false);
    doq.resume();
    let mut back = false;
    for i in 0..20 {
        let name = format!("back{i}.example.");
        let m = query_udp(addr, &name, RecordType::A, None).await;
        let a = a_records(&m);
        assert!(
            a == [aioquic_a(&name)] || a == [expected_a(&name)],
            "answered: {name} {a:?}"
        );
        if a == [aioquic_a(&name)] {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(back, "the DoQ upstream answers again after it resumed");
    running.shutdown().await;
    doq.stop().await;
}

/// `lanveil-ctl probe quic://…`: the tool's blocking QUIC client authenticates like the daemon,
/// measures a series of queries (ID 0, one stream each) and shows the chain's pins; a wrong pin is
/// named as the daemon names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_probe_speaks_doq() {
    use lanveil_cli::probe::{ProbeOpts, probe};
    use lanveil_cli::tls::Auth;
    let pki = Pki::new();
    let leaf = leaf(&pki);
    let server = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;
    let url: lanveil::config::UpstreamUrl = quic_url(server.addr(), NAME).parse().unwrap();
    let auth = |pins: Vec<String>| Auth {
        auth_name: NAME.into(),
        ca_file: Some(leaf.ca_pem_path().display().to_string()),
        pins: pins.iter().map(|p| p.parse().unwrap()).collect(),
        min_version: lanveil::config::TlsVersion::V1_3,
        sni: true,
    };
    let opts = ProbeOpts {
        name: "probe.example".into(),
        queries: 4,
        ede_name: None,
        timeout: Duration::from_secs(5),
    };
    let (addr, a, o, u) = (
        server.addr(),
        auth(vec![leaf.spki_pin()]),
        opts.clone(),
        url.clone(),
    );
    let r = tokio::task::spawn_blocking(move || probe(&u, addr, &a, &o))
        .await
        .unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.transport, "doq");
    assert_eq!((r.queries_sent, r.queries_answered), (4, 4), "{r:?}");
    assert_eq!(r.rcode.as_deref(), Some("NOERROR"));
    assert_eq!(r.handshake.alpn_selected.as_deref(), Some("doq"));
    assert_eq!(r.handshake.chain[0].pin, leaf.spki_pin());
    assert!(server.wait_for("query", 4, Duration::from_secs(2)).await);
    assert!(server.events_of("query").iter().all(|q| q["id"] == 0));

    let other = pki.leaf(&["else.test"], &[]);
    let (a, o) = (auth(vec![other.spki_pin()]), opts.clone());
    let r = tokio::task::spawn_blocking(move || probe(&url, addr, &a, &o))
        .await
        .unwrap();
    assert!(!r.ok && !r.authenticated, "{r:?}");
    assert_eq!(
        r.error.as_deref(),
        Some("upstream certificate rejected: SPKI pin mismatch"),
        "{r:?}"
    );
    assert_eq!(
        r.handshake.chain[0].pin,
        leaf.spki_pin(),
        "the chain is shown"
    );
    server.stop().await;
}
