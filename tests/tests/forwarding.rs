//! The encrypted path end to end: LAN UDP/TCP in, DoT out, through an in-process rustls upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{
    self, a_records, build_query, ede, query_tcp, query_udp, raw_tcp, raw_udp,
};
use lanveil_tests::gateway::{config_for, start};
use lanveil_tests::{DotUpstream, Pki, UpstreamOpts, dig, expected_a};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const T: Duration = Duration::from_secs(5);

async fn setup() -> (Pki, lanveil_tests::Leaf, DotUpstream) {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    (pki, leaf, upstream)
}

fn port(a: SocketAddr) -> String {
    a.port().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_queries_go_out_over_authenticated_dot() {
    let (_pki, leaf, upstream) = setup().await;
    let (running, addr) = start(config_for(upstream.addr(), &leaf)).await;

    // A real client over UDP and over TCP.
    let out = dig(&["@127.0.0.1", "-p", &port(addr), "www.example.org", "A"]).await;
    out.assert_answers("NOERROR", "A", &[expected_a("www.example.org")]);
    assert_eq!(
        out.edns_udp,
        Some(1232),
        "lanveil advertises 1232 to clients"
    );
    let out = dig(&[
        "+tcp",
        "@127.0.0.1",
        "-p",
        &port(addr),
        "tcp.example.org",
        "A",
    ])
    .await;
    assert_eq!(
        out.answer_rdata("A"),
        [expected_a("tcp.example.org").to_string()]
    );

    // What the upstream saw: TLS 1.3, SNI = the authentication name, one connection, padded queries
    // with random IDs and no client options.
    let conns = upstream.connections();
    assert_eq!(
        conns.len(),
        1,
        "one persistent connection carried both queries: {conns:?}"
    );
    assert_eq!(conns[0].version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(conns[0].sni.as_deref(), Some("dot.test"));
    for q in upstream.received() {
        assert_eq!(q.len() % 128, 0, "RFC 8467 padding");
    }
    assert_eq!(upstream.queries(), 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_queries_each_get_their_own_answer() {
    let (_pki, leaf, upstream) = setup().await;
    let mut cfg = config_for(upstream.addr(), &leaf);
    cfg.limits.query_timeout_ms = 5_000;
    let (running, addr) = start(cfg).await;

    let mut tasks = Vec::new();
    for i in 0..1000 {
        tasks.push(tokio::spawn(async move {
            let name = format!("n{i}.load.test.");
            let q = build_query(&name, RecordType::A, Some(1232));
            let r = client::exchange_udp(addr, &q, T).await.unwrap();
            assert_eq!(r.id(), q.id(), "answer matched to its question ID");
            assert_eq!(r.queries()[0].name().to_ascii(), name);
            assert_eq!(a_records(&r), [expected_a(&name)], "answer for {name}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (stats, inflight) = running.stats().await.unwrap();
    assert_eq!(inflight, 0);
    assert_eq!(stats.answered, 1000);
    assert!(
        upstream.connections().len() <= 4,
        "bounded connections: {}",
        upstream.connections().len()
    );

    // 200 pipelined queries on one LAN TCP connection come back, each matched.
    let mut wire = Vec::new();
    let mut expected = std::collections::HashMap::new();
    for i in 0..200u16 {
        let name = format!("p{i}.pipe.test.");
        let mut q = build_query(&name, RecordType::A, None);
        q.set_id(i);
        let b = q.to_vec().unwrap();
        wire.extend_from_slice(&(b.len() as u16).to_be_bytes());
        wire.extend_from_slice(&b);
        expected.insert(i, name);
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(&wire).await.unwrap();
    for _ in 0..200 {
        let mut len = [0u8; 2];
        tokio::time::timeout(T, s.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).await.unwrap();
        let m = Message::from_vec(&body).unwrap();
        let name = expected.remove(&m.id()).expect("each ID answered once");
        assert_eq!(a_records(&m), [expected_a(&name)]);
    }
    assert!(expected.is_empty());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_upstream_answers_are_matched() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let upstream = DotUpstream::start(UpstreamOpts {
        reverse_batches: Some(8),
        ..UpstreamOpts::new(&leaf)
    })
    .await;
    let (running, addr) = start(config_for(upstream.addr(), &leaf)).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        tasks.push(tokio::spawn(async move {
            let name = format!("r{i}.reverse.test.");
            let m = query_udp(addr, &name, RecordType::A, Some(1232)).await;
            assert_eq!(a_records(&m), [expected_a(&name)]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        upstream.connections().len(),
        1,
        "all on one pipelined connection"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_mid_stream_loses_no_query() {
    let (_pki, leaf, upstream) = setup().await;
    let mut cfg = config_for(upstream.addr(), &leaf);
    cfg.limits.query_timeout_ms = 3_000;
    let (running, addr) = start(cfg).await;
    // Warm the connection, then put 50 slow queries in flight and reset every connection under them.
    let _ = query_udp(addr, "warm.test.", RecordType::A, None).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        tasks.push(tokio::spawn(async move {
            let name = format!("delay-300.q{i}.restart.test.");
            let m = client::try_query_udp(addr, &name, RecordType::A, None)
                .await
                .unwrap();
            (m.response_code(), a_records(&m), name)
        }));
    }
    assert!(upstream.wait_queries(51, T).await);
    upstream.kill_connections();
    for t in tasks {
        let (rc, a, name) = t.await.unwrap();
        assert_eq!(
            rc,
            ResponseCode::NoError,
            "{name} retried on a new connection"
        );
        assert_eq!(a, [expected_a(&name)]);
    }
    // Full restart: stop, queries fail fast or wait, restart on the same port, service resumes within seconds.
    upstream.stop().await;
    let m = query_udp(addr, "during.restart.test.", RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(ede(&m).is_some(), "SERVFAIL carries an EDE");
    upstream.restart().await;
    let start = Instant::now();
    loop {
        let m = query_udp(addr, "after.restart.test.", RecordType::A, None).await;
        if m.response_code() == ResponseCode::NoError {
            assert_eq!(a_records(&m), [expected_a("after.restart.test.")]);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "upstream back but lanveil still failing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_answers_fit_1232_and_tcp_gets_everything() {
    let (_pki, leaf, upstream) = setup().await;
    let (running, addr) = start(config_for(upstream.addr(), &leaf)).await;
    // A client offering 4096 still gets at most 1232 bytes, with TC.
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &port(addr),
        "+bufsize=4096",
        "+ignore",
        "big-3000.test",
        "TXT",
    ])
    .await;
    assert!(out.has_flag("tc"), "{}", out.transcript());
    assert!(out.msg_size.unwrap() <= 1232, "{}", out.transcript());
    // Without EDNS: at most 512.
    let q = build_query("big-3000.test.", RecordType::TXT, None);
    let r = raw_udp(addr, &q.to_vec().unwrap(), T).await.unwrap();
    assert!(r.len() <= 512);
    assert!(Message::from_vec(&r).unwrap().truncated());
    // TCP: the whole answer.
    let m = query_tcp(addr, "big-3000.test.", RecordType::TXT, Some(1232)).await;
    assert!(!m.truncated());
    let total: usize = client::txt_records(&m).iter().map(Vec::len).sum();
    assert!(total >= 2900, "{total}");
    // dig retries over TCP on its own after TC and gets the full answer.
    let out = dig(&["@127.0.0.1", "-p", &port(addr), "big-3000.test", "TXT"]).await;
    assert_eq!(out.status.as_deref(), Some("NOERROR"));
    assert!(!out.has_flag("tc"));
    running.shutdown().await;
}

/// Answers longer than one TLS record (16 KiB), which the DoT task receives as several records over
/// several reads (a partial record held between them), arrive whole, among small answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_answers_longer_than_a_tls_record_arrive_whole() {
    let (_pki, leaf, upstream) = setup().await;
    let (running, addr) = start(config_for(upstream.addr(), &leaf)).await;
    let small = async {
        for i in 0..40 {
            let name = format!("small-{i}.test.");
            let m = query_udp(addr, &name, RecordType::A, Some(1232)).await;
            assert_eq!(a_records(&m), vec![expected_a(&name)], "{name}");
        }
    };
    let big = async {
        for n in [17_000, 40_000, 60_000] {
            let name = format!("big-{n}.test.");
            let m = query_tcp(addr, &name, RecordType::TXT, Some(1232)).await;
            assert!(!m.truncated());
            let whole: Vec<u8> = lanveil_tests::upstream::expected_big_txt(n).concat();
            assert_eq!(client::txt_records(&m), [whole], "{name}");
        }
    };
    tokio::join!(small, big);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_answer_and_service_continues() {
    let (_pki, leaf, upstream) = setup().await;
    let (running, addr) = start(config_for(upstream.addr(), &leaf)).await;
    // Readable header, garbage body → FORMERR (UDP and TCP).
    let garbage = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x3f, b'x',
    ];
    for r in [
        raw_udp(addr, &garbage, T).await.unwrap(),
        raw_tcp(addr, &garbage, T).await.unwrap(),
    ] {
        let m = Message::from_vec(&r).unwrap();
        assert_eq!((m.id(), m.response_code()), (0x1234, ResponseCode::FormErr));
    }
    // Unreadable header → dropped (no answer), never a crash.
    assert!(
        raw_udp(addr, &[1, 2, 3], Duration::from_millis(300))
            .await
            .unwrap_err()
            .is_timeout()
    );
    // Two questions → FORMERR; opcode UPDATE → NOTIMP; EDNS version 1 → BADVERS.
    let mut two = build_query("a.test.", RecordType::A, None);
    two.add_query(hickory_proto::op::Query::query(
        "b.test.".parse().unwrap(),
        RecordType::A,
    ));
    let r = client::exchange_udp(addr, &two, T).await.unwrap();
    assert_eq!(r.response_code(), ResponseCode::FormErr);
    let mut upd = build_query("a.test.", RecordType::SOA, None);
    upd.set_op_code(OpCode::Update);
    let r = client::exchange_udp(addr, &upd, T).await.unwrap();
    assert_eq!(
        (r.message_type(), r.response_code()),
        (MessageType::Response, ResponseCode::NotImp)
    );
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &port(addr),
        "+edns=1",
        "+noednsnegotiation",
        "a.test",
    ])
    .await;
    assert_eq!(
        out.status.as_deref(),
        Some("BADVERS"),
        "{}",
        out.transcript()
    );
    // Unknown type and class are forwarded unchanged.
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &port(addr),
        "-t",
        "TYPE65400",
        "odd.test",
    ])
    .await;
    assert_eq!(
        out.status.as_deref(),
        Some("NOERROR"),
        "{}",
        out.transcript()
    );
    // None of that reached the upstream except the one unknown-type query; service goes on.
    assert_eq!(upstream.queries(), 1);
    let m = query_udp(addr, "still.alive.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("still.alive.test.")]);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_upstream_and_keeps_serving() {
    let (_pki, leaf, up1) = setup().await;
    let up2 = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let (mut running, addr) = start(config_for(up1.addr(), &leaf)).await;
    let _ = query_udp(addr, "one.test.", RecordType::A, None).await;
    assert_eq!(up1.queries(), 1);
    running.reload(config_for(up2.addr(), &leaf)).await.unwrap();
    assert_eq!(running.udp_addrs()[0].ip(), addr.ip());
    // Port 0 listeners are re-bound on reload; take the new address.
    let addr2 = running.udp_addrs()[0];
    let m = query_udp(addr2, "two.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("two.test.")]);
    assert_eq!((up1.queries(), up2.queries()), (1, 1));
    // A reload that cannot be applied (CA file missing) keeps the running configuration.
    let mut bad = config_for(up1.addr(), &leaf);
    bad.upstreams.servers[0].ca_file = Some("/nonexistent/ca.pem".into());
    assert!(running.reload(bad).await.is_err());
    let m = query_udp(addr2, "three.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("three.test.")]);
    assert_eq!(up2.queries(), 2);
    running.shutdown().await;
}

/// A UDP query longer than a receive slot (4 KiB) arrives cut, wherever it lands in a batch: here
/// alone (the first slot, which used to take up to 64 KiB), with an EDNS padding option of 5,000
/// octets. Its OPT record is then cut short: FORMERR with the query's ID, and service continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_query_longer_than_4_kib_is_answered_formerr() {
    let (_pki, leaf, upstream) = setup().await;
    let (running, addr) = start(config_for(upstream.addr(), &leaf)).await;
    // Header: ID 0x4242, RD, one question, one additional (the OPT record).
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x04long\x04test\x00\x00\x01\x00\x01");
    // OPT: root name, TYPE 41, UDP size 1232, TTL 0, RDLENGTH, then option 12 (padding).
    let pad = 5_000u16;
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    q.extend_from_slice(&(pad + 4).to_be_bytes());
    q.extend_from_slice(&12u16.to_be_bytes());
    q.extend_from_slice(&pad.to_be_bytes());
    q.resize(q.len() + usize::from(pad), 0);
    assert!(q.len() > 4096);
    let r = raw_udp(addr, &q, T).await.unwrap();
    let m = Message::from_vec(&r).unwrap();
    assert_eq!((m.id(), m.response_code()), (0x4242, ResponseCode::FormErr));
    let m = query_udp(addr, "after.long.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), vec![expected_a("after.long.test.")]);
    running.shutdown().await;
}
