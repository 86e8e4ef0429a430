//! DNS over HTTPS, several upstreams that fail over well, the cache and serve-stale.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil::config::SelectPolicy;
use lanveil_tests::client::{a_records, ede, query_udp};
use lanveil_tests::dnsdist::Dnsdist;
use lanveil_tests::doh::DohUpstream;
use lanveil_tests::gateway::{config, config_urls, start};
use lanveil_tests::unbound::{INTEROP_A, INTEROP_NAME};
use lanveil_tests::{DotUpstream, Pki, Unbound, UpstreamOpts, dig, expected_a, kdig};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_post_and_get_with_minimal_headers_and_id_zero() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["doh.test"], &[LOCAL]);
    let up = DohUpstream::start("127.0.0.1:0".parse().unwrap(), &leaf).await;
    let url = format!("https://{}/dns-query#doh.test", up.addr());
    let (running, addr) = start(config_urls(std::slice::from_ref(&url), pki.ca_pem_path())).await;
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "www.doh.example",
        "A",
    ])
    .await;
    assert_eq!(
        out.answer_rdata("A"),
        [expected_a("www.doh.example").to_string()],
        "{}",
        out.transcript()
    );
    let m = lanveil_tests::client::query_tcp(addr, "tcp.doh.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("tcp.doh.example.")]);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(up.connections(), 1, "one HTTP/2 connection carries both");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/dns-query");
        assert_eq!(
            r.authority.as_deref(),
            Some(format!("doh.test:{}", up.addr().port()).as_str())
        );
        let mut headers = r.headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            ["accept", "content-length", "content-type"],
            "no User-Agent, no cookies"
        );
        assert_eq!(&r.message[..2], &[0, 0], "RFC 8484 §4.1: DNS ID 0");
        assert_eq!(r.message.len() % 128, 0, "padded");
    }
    running.shutdown().await;

    // GET as an option.
    let mut cfg = config_urls(&[url], pki.ca_pem_path());
    cfg.upstreams.servers[0].http_get = true;
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "get.doh.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("get.doh.example.")]);
    let last = up.requests().pop().unwrap();
    assert_eq!(last.method, "GET");
    assert!(last.path.starts_with("/dns-query?dns="), "{}", last.path);
    running.shutdown().await;
}

/// How many requests `up` received for `name` (the question's labels, lower case).
fn requests_for(up: &DohUpstream, name: &str) -> usize {
    up.requests()
        .iter()
        .filter_map(|r| hickory_proto::op::Message::from_vec(&r.message).ok())
        .filter(|m| {
            m.queries()
                .first()
                .is_some_and(|q| q.name().to_ascii().eq_ignore_ascii_case(name))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_doh_connection_sends_one_loss_probe_on_the_same_connection() {
    // The loss probe on DoH (issue 17): an answer later than the wait (≈ 30 ms against this loopback
    // upstream) brings the same request once more, on the same HTTP/2 connection; the client gets
    // its answer once. With the probe off, the request goes once.
    let pki = Pki::new();
    let leaf = pki.leaf(&["doh.test"], &[LOCAL]);
    for probe in [true, false] {
        let up = DohUpstream::start("127.0.0.1:0".parse().unwrap(), &leaf).await;
        let url = format!("https://{}/dns-query#doh.test", up.addr());
        let mut cfg = config_urls(std::slice::from_ref(&url), pki.ca_pem_path());
        cfg.upstreams.loss_probe = probe;
        let (running, addr) = start(cfg).await;
        for i in 0..5 {
            let m = query_udp(addr, &format!("warm{i}.doh.example."), RecordType::A, None).await;
            assert_eq!(m.response_code(), ResponseCode::NoError);
        }
        // 250 ms: past the probe's wait, short of the 300-ms attempt timeout (which would try the
        // query again anyway).
        let name = "delay-250.slow.doh.example.";
        let m = query_udp(addr, name, RecordType::A, None).await;
        assert_eq!(a_records(&m), [expected_a(name)]);
        assert_eq!(
            requests_for(&up, name),
            if probe { 2 } else { 1 },
            "probe {probe}"
        );
        assert_eq!(up.connections(), 1, "on the same connection");
        running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_to_dnsdist_in_front_of_unbound() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dnsdist.test"], &[LOCAL]);
    let unbound = Unbound::start_dot(&leaf).await;
    let dnsdist = Dnsdist::start_doh(&leaf, unbound.plain_addr(), INTEROP_NAME).await;
    let url = format!("https://{}/dns-query#dnsdist.test", dnsdist.doh_addr());
    let (running, addr) = start(config_urls(&[url], pki.ca_pem_path())).await;
    let port = addr.port().to_string();
    let name = INTEROP_NAME.trim_end_matches('.');
    let out = dig(&["@127.0.0.1", "-p", &port, name, "A"]).await;
    assert_eq!(
        out.answer_rdata("A"),
        [INTEROP_A.to_string()],
        "{}",
        out.transcript()
    );
    let out = kdig(&["@127.0.0.1", "-p", &port, "missing.interop.test", "A"]).await;
    assert_eq!(
        out.status.as_deref(),
        Some("NXDOMAIN"),
        "{}",
        out.transcript()
    );
    running.shutdown().await;
}

async fn two_dot(pki: &Pki) -> (lanveil_tests::Leaf, DotUpstream, DotUpstream) {
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let a = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let b = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    (leaf, a, b)
}

/// Runs `n` queries one after another, returns (answers lost, worst latency).
async fn run_queries(addr: SocketAddr, tag: &str, n: usize) -> (usize, Duration) {
    let mut lost = 0;
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let name = format!("q{i}.{tag}.test.");
        let t0 = Instant::now();
        let m = query_udp(addr, &name, RecordType::A, None).await;
        worst = worst.max(t0.elapsed());
        if m.response_code() != ResponseCode::NoError || a_records(&m) != [expected_a(&name)] {
            lost += 1;
        }
    }
    (lost, worst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_answers_flowing_and_traffic_returns() {
    let pki = Pki::new();
    let (leaf, primary, secondary) = two_dot(&pki).await;
    let mut cfg = config(
        &[(primary.addr(), "dot.test"), (secondary.addr(), "dot.test")],
        leaf.ca_pem_path(),
    );
    cfg.limits.query_timeout_ms = 2_500;
    cfg.cache.enabled = false;
    let (running, addr) = start(cfg).await;
    let (lost, _) = run_queries(addr, "warm", 5).await;
    assert_eq!(lost, 0);
    assert_eq!(
        (primary.queries(), secondary.queries()),
        (5, 0),
        "failover: the first upstream takes everything"
    );

    // Primary stalls: every answer still comes, from the secondary, within the client deadline.
    primary.set_stall(true);
    let (lost, worst) = run_queries(addr, "stall", 20).await;
    eprintln!("stall: lost {lost}, worst {worst:?}");
    assert_eq!(lost, 0);
    assert!(worst < Duration::from_millis(2_500), "{worst:?}");
    assert!(
        secondary.queries() >= 17,
        "secondary took over: {}",
        secondary.queries()
    );

    // Primary answers SERVFAIL: the secondary's real answers are passed on instead.
    primary.set_stall(false);
    primary.set_servfail(true);
    tokio::time::sleep(Duration::from_millis(4_500)).await; // primary's backoff ends
    let (lost, worst) = run_queries(addr, "servfail", 20).await;
    eprintln!("servfail: lost {lost}, worst {worst:?}");
    assert_eq!(lost, 0);

    // Primary resets and goes away: still no answer lost.
    primary.set_servfail(false);
    primary.kill_connections();
    let (lost, worst) = run_queries(addr, "reset", 20).await;
    eprintln!("reset: lost {lost}, worst {worst:?}");
    assert_eq!(lost, 0);

    // Primary healthy again: within the backoff cap, traffic returns to it.
    let before = primary.queries();
    let t0 = Instant::now();
    while primary.queries() == before {
        let (lost, _) = run_queries(addr, "back", 1).await;
        assert_eq!(lost, 0);
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "traffic did not return to the primary"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("traffic back on the primary after {:?}", t0.elapsed());
    let b = primary.queries();
    let (lost, _) = run_queries(addr, "after", 5).await;
    assert_eq!(lost, 0);
    assert_eq!(primary.queries(), b + 5, "failover order restored");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_and_survives_a_dead_upstream() {
    let pki = Pki::new();
    let (leaf, a, b) = two_dot(&pki).await;
    let mut cfg = config(
        &[(a.addr(), "dot.test"), (b.addr(), "dot.test")],
        leaf.ca_pem_path(),
    );
    cfg.upstreams.policy = SelectPolicy::RoundRobin;
    cfg.cache.enabled = false;
    cfg.limits.query_timeout_ms = 2_500;
    let (running, addr) = start(cfg).await;
    let (lost, _) = run_queries(addr, "rr", 20).await;
    assert_eq!(lost, 0);
    assert!(
        a.queries() >= 8 && b.queries() >= 8,
        "{} / {}",
        a.queries(),
        b.queries()
    );
    a.stop().await;
    let (lost, worst) = run_queries(addr, "rrdead", 20).await;
    eprintln!("round robin, one dead: lost {lost}, worst {worst:?}");
    assert_eq!(lost, 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_answers_repeats_and_serves_stale_with_ede3_when_all_are_down() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let mut cfg = config(&[(up.addr(), "dot.test")], leaf.ca_pem_path());
    cfg.cache.max_ttl = 1; // answers expire after 1 s
    let (running, addr) = start(cfg).await;
    let m1 = query_udp(addr, "cached.test.", RecordType::A, Some(1232)).await;
    let m2 = query_udp(addr, "CACHED.test.", RecordType::A, Some(1232)).await;
    assert_eq!(a_records(&m2), [expected_a("cached.test.")]);
    assert_eq!(
        up.queries(),
        1,
        "the repeat came from the cache (names are case-insensitive)"
    );
    assert!(m2.answers()[0].ttl() <= m1.answers()[0].ttl());
    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(stats.cache_hits, 1);

    // Expired, and the only upstream is gone: the stale answer with EDE 3, TTL 30.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    up.stop().await;
    let t0 = Instant::now();
    let m = query_udp(addr, "cached.test.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(&m), [expected_a("cached.test.")]);
    assert_eq!(m.answers()[0].ttl(), 30);
    let (code, _) = ede(&m).expect("EDE on a stale answer");
    assert_eq!(code, 3, "EDE 3 Stale Answer");
    assert!(
        t0.elapsed() < Duration::from_millis(1_200),
        "{:?}",
        t0.elapsed()
    );
    // A name never cached: SERVFAIL with EDE, as before.
    let m = query_udp(addr, "never.test.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    running.shutdown().await;
}
