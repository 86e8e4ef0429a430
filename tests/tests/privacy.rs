//! What the upstream and the path learn is the minimum: proven from the exact bytes the upstream receives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use lanveil_core::wire::{edns, message};
use lanveil_tests::client::{
    self, a_records, add_edns_option, build_query, ede, query_tcp, query_udp,
};
use lanveil_tests::gateway::{config_for, start};
use lanveil_tests::{DotUpstream, Pki, UpstreamOpts, dig, expected_a};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn setup() -> (Pki, lanveil_tests::Leaf, DotUpstream) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    (pki, leaf, up)
}

/// The EDNS option codes of a message's OPT record.
fn option_codes(msg: &[u8]) -> Vec<u16> {
    let s = message::scan(msg).unwrap();
    let o = s.opt.expect("lanveil always sends an OPT record upstream");
    edns::options(&msg[o.rdata_start..o.end])
        .map(|(c, _)| c)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sees_padded_queries_with_random_ids_and_no_client_options() {
    let (_pki, leaf, up) = setup().await;
    let (running, addr) = start(config_for(up.addr(), &leaf)).await;
    // Clients send ECS (RFC 7871), a cookie (RFC 7873), NSID and an unknown option, all with ID 0x1234.
    for i in 0..20 {
        let mut q = build_query(&format!("n{i}.privacy.example."), RecordType::A, Some(4096));
        q.set_id(0x1234);
        add_edns_option(&mut q, 8, vec![0, 1, 24, 0, 192, 168, 1]); // ECS 192.168.1.0/24
        add_edns_option(&mut q, 10, vec![1, 2, 3, 4, 5, 6, 7, 8]); // client cookie
        add_edns_option(&mut q, 3, vec![]); // NSID
        add_edns_option(&mut q, 65001, vec![0xab, 0xcd]);
        let r = client::exchange_udp(addr, &q, Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!(r.id(), 0x1234);
        assert_eq!(
            a_records(&r),
            [expected_a(&format!("n{i}.privacy.example."))]
        );
    }
    let received = up.received();
    assert_eq!(received.len(), 20);
    let mut ids = std::collections::HashSet::new();
    for m in &received {
        assert_eq!(
            m.len() % 128,
            0,
            "RFC 8467: padded to a multiple of 128 ({} bytes)",
            m.len()
        );
        // 11: RFC 7828 edns-tcp-keepalive, empty (issue 17), the same in every lanveil's DoT queries.
        assert_eq!(
            option_codes(m),
            [11, edns::OPTION_PADDING],
            "only keepalive and padding leave the house"
        );
        ids.insert(u16::from_be_bytes([m[0], m[1]]));
    }
    assert!(
        ids.len() >= 19,
        "upstream IDs are random, not the client's: {ids:?}"
    );
    assert!(ids.iter().filter(|&&id| id == 0x1234).count() <= 1);
    let conns = up.connections();
    assert!(
        conns
            .iter()
            .all(|c| c.version == rustls::ProtocolVersion::TLSv1_3)
    );
    assert!(conns.iter().all(|c| c.sni.as_deref() == Some("dot.test")));
    // Answers to LAN clients are not padded.
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "+padding=128",
        "plain.privacy.example",
    ])
    .await;
    assert!(!out.stdout.contains("PADDING"), "{}", out.transcript());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resumption_by_default_and_sni_only_as_configured() {
    let (_pki, leaf, up) = setup().await;
    let (running, addr) = start(config_for(up.addr(), &leaf)).await;
    let _ = query_udp(addr, "one.resume.example.", RecordType::A, None).await;
    up.kill_connections();
    let _ = query_udp(addr, "two.resume.example.", RecordType::A, None).await;
    running.shutdown().await;
    let conns = up.connections();
    assert_eq!(conns.len(), 2);
    assert!(
        conns.iter().all(|c| !c.resumed),
        "every handshake is a full one: {conns:?}"
    );

    // The same upstream does resume when the owner turns resumption on: the check above can fail.
    up.clear_observations();
    let mut cfg = config_for(up.addr(), &leaf);
    cfg.upstreams.servers[0].tls_resumption = true;
    cfg.upstreams.servers[0].sni = false;
    let (running, addr) = start(cfg).await;
    let _ = query_udp(addr, "three.resume.example.", RecordType::A, None).await;
    up.kill_connections();
    let _ = query_udp(addr, "four.resume.example.", RecordType::A, None).await;
    running.shutdown().await;
    let conns = up.connections();
    assert_eq!(conns.len(), 2);
    assert!(conns[1].resumed, "resumption on request: {conns:?}");
    assert!(
        conns.iter().all(|c| c.sni.is_none()),
        "no SNI when the owner asks: {conns:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_names_canaries_and_ddr_never_leave_the_house() {
    let (_pki, leaf, up) = setup().await;
    let mut cfg = config_for(up.addr(), &leaf);
    cfg.policy.local_domain = Some("home.example".into());
    let (running, addr) = start(cfg).await;
    let cases: &[(&str, RecordType, ResponseCode)] = &[
        (
            "use-application-dns.net.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        ("mask.icloud.com.", RecordType::A, ResponseCode::NXDomain),
        (
            "mask-h2.icloud.com.",
            RecordType::AAAA,
            ResponseCode::NXDomain,
        ),
        (
            "_dns.resolver.arpa.",
            RecordType::SVCB,
            ResponseCode::NoError,
        ),
        (
            "1.1.168.192.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NXDomain,
        ),
        (
            "5.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NXDomain,
        ),
        ("printer.home.arpa.", RecordType::A, ResponseCode::NXDomain),
        ("nas.local.", RecordType::A, ResponseCode::NXDomain),
        ("router.lan.", RecordType::A, ResponseCode::NXDomain),
        ("tv.home.example.", RecordType::A, ResponseCode::NXDomain),
        ("printer.", RecordType::A, ResponseCode::NXDomain),
    ];
    for (name, rtype, rcode) in cases {
        let m = query_udp(addr, name, *rtype, Some(1232)).await;
        assert_eq!(m.response_code(), *rcode, "{name}");
        if *rtype == RecordType::SVCB {
            assert!(
                m.answers().is_empty(),
                "DDR: NODATA, never the upstream's designation"
            );
        }
    }
    // The same over TCP.
    let m = query_tcp(addr, "mask.icloud.com.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    assert_eq!(up.queries(), 0, "none of these reached the upstream");
    // Near misses are ordinary names and do go out.
    let m = query_udp(addr, "evil-lan.com.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("evil-lan.com.")]);
    assert_eq!(up.queries(), 1);
    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(stats.local_answers, cases.len() as u64 + 1);
    running.shutdown().await;

    // Canaries are switchable.
    let mut cfg = config_for(up.addr(), &leaf);
    cfg.policy.canary_firefox = false;
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "use-application-dns.net.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(up.queries(), 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_outside_the_lan_prefixes_are_refused_with_ede18() {
    let (_pki, leaf, up) = setup().await;
    let mut cfg = config_for(up.addr(), &leaf);
    cfg.policy.allow = vec!["127.0.0.1/32".parse().unwrap()];
    let (running, addr) = start(cfg).await;
    let outsider = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
    let q = build_query("outside.example.", RecordType::A, Some(1232));
    outsider.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), outsider.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.response_code(), ResponseCode::Refused);
    assert_eq!(ede(&m).map(|e| e.0), Some(18), "EDE 18 Prohibited");
    // TCP from outside: refused too.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from(([127, 0, 0, 9], 0))).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = q.to_vec().unwrap();
    s.write_all(&(b.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&b).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(
        Message::from_vec(&body).unwrap().response_code(),
        ResponseCode::Refused
    );
    // Garbage from outside gets nothing at all.
    outsider
        .send_to(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f], addr)
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), outsider.recv_from(&mut buf))
            .await
            .is_err()
    );
    // A UDP flood from outside (spoofed sources, say) gets the budget's 20 answers, and 20 more a
    // second for as long as the daemon takes to work through it.
    let (before, _) = running.stats().await.unwrap();
    let t0 = std::time::Instant::now();
    for _ in 0..100 {
        outsider.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
    }
    let mut answered = 0u64;
    let mut last = t0;
    while tokio::time::timeout(Duration::from_millis(500), outsider.recv_from(&mut buf))
        .await
        .is_ok()
    {
        answered += 1;
        last = std::time::Instant::now();
    }
    let (after, _) = running.stats().await.unwrap();
    let refill = last.duration_since(t0).as_millis() as u64 * 20 / 1000 + 1;
    assert!(
        (10..=20 + refill).contains(&answered),
        "{answered} answers to 100 in {:?}",
        last.duration_since(t0)
    );
    assert_eq!(after.refused - before.refused, answered);
    assert_eq!(after.dropped - before.dropped, 100 - answered);
    // The allowed source is served; the upstream never saw the outsider's query.
    let m = query_udp(addr, "inside.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("inside.example.")]);
    assert_eq!(up.queries(), 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_log_is_off_by_default_and_in_memory_when_on() {
    let (_pki, leaf, up) = setup().await;
    let (running, addr) = start(config_for(up.addr(), &leaf)).await;
    let _ = query_udp(addr, "unlogged.example.", RecordType::A, None).await;
    assert!(
        running.query_log().await.unwrap().is_empty(),
        "no query log by default"
    );
    running.shutdown().await;

    let mut cfg = config_for(up.addr(), &leaf);
    cfg.daemon.query_log = 3;
    let (running, addr) = start(cfg).await;
    for n in [
        "a.logged.example.",
        "b.logged.example.",
        "mask.icloud.com.",
        "d.logged.example.",
    ] {
        let _ = query_udp(addr, n, RecordType::A, None).await;
    }
    let log = running.query_log().await.unwrap();
    let names: Vec<_> = log.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["b.logged.example.", "mask.icloud.com.", "d.logged.example."],
        "bounded ring, oldest dropped"
    );
    assert_eq!(log[1].source, lanveil_core::engine::AnswerSource::Local);
    assert_eq!(log[1].rcode, 3);
    running.shutdown().await;
}
