//! LAN TCP clients: every frame gives back its pipeline slot, whether it is answered or dropped
//! (issue 15, defect 1). Before the fix a connection that sent `tcp_pipeline` frames the engine drops
//! (a response sent as a query, a runt, a rate-limit drop, malformed input from outside `allow`)
//! waited forever and held a `max_tcp_clients` slot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{a_records, build_query};
use lanveil_tests::gateway::{config_for, start};
use lanveil_tests::{DotUpstream, Pki, UpstreamOpts, expected_a};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The pipeline depth configured for these tests: more dropped frames than this wedged a connection.
const PIPELINE: u32 = 4;
/// Dropped frames sent before the real query (10 × the pipeline).
const DROPPED: usize = 40;

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

async fn read_answer(s: &mut TcpStream) -> Option<Message> {
    let read = async {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).await.ok()?;
        Message::from_vec(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// Sends `DROPPED` copies of `junk` (each one a frame the engine drops) and then a real query on one
/// connection; the real query must be answered on that same connection.
async fn junk_then_query(addr: SocketAddr, junk: &[u8], name: &str) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut bytes = Vec::new();
    for _ in 0..DROPPED {
        bytes.extend_from_slice(&framed(junk));
    }
    let q = build_query(name, RecordType::A, Some(1232));
    bytes.extend_from_slice(&framed(&q.to_vec().unwrap()));
    s.write_all(&bytes).await.unwrap();
    let m = read_answer(&mut s)
        .await
        .unwrap_or_else(|| panic!("{name}: no answer after {DROPPED} dropped frames (wedged)"));
    assert_eq!(m.id(), q.id(), "{name}");
    assert_eq!(m.response_code(), ResponseCode::NoError, "{name}");
    assert_eq!(a_records(&m), [expected_a(name)], "{name}");
}

fn query_with_qr_set() -> Vec<u8> {
    let mut m = build_query("qr.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    m[2] |= 0x80;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_frames_give_back_their_pipeline_slot() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let mut cfg = config_for(upstream.addr(), &leaf);
    cfg.listen.tcp_pipeline = PIPELINE;
    let (running, addr) = start(cfg).await;

    // A response sent as a query (QR set).
    junk_then_query(addr, &query_with_qr_set(), "after-qr.example.").await;
    // A runt: shorter than a DNS header.
    junk_then_query(addr, &[0x12, 0x34, 0x01], "after-runt.example.").await;
    running.shutdown().await;

    // A rate-limit drop: loopback limited, 1 query/s, burst 1, drop instead of REFUSED. The real
    // query comes after the bucket refilled.
    let mut cfg = config_for(upstream.addr(), &leaf);
    cfg.listen.tcp_pipeline = PIPELINE;
    cfg.limits.client_rate = 1;
    cfg.limits.client_burst = 1;
    cfg.limits.client_rate_action = lanveil::config::RateAction::Drop;
    cfg.limits.client_limit_loopback = true;
    let (running, addr) = start(cfg).await;
    let junk = build_query("limited.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut bytes = Vec::new();
    for _ in 0..DROPPED {
        bytes.extend_from_slice(&framed(&junk));
    }
    s.write_all(&bytes).await.unwrap();
    // The first one is within the burst and answered; the rest are dropped.
    let first = read_answer(&mut s)
        .await
        .expect("the first query is answered");
    assert_eq!(first.response_code(), ResponseCode::NoError);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let q = build_query("after-limit.example.", RecordType::A, Some(1232));
    s.write_all(&framed(&q.to_vec().unwrap())).await.unwrap();
    let m = read_answer(&mut s)
        .await
        .expect("no answer after rate-limit drops (wedged)");
    assert_eq!(m.id(), q.id());
    assert_eq!(a_records(&m), [expected_a("after-limit.example.")]);
    running.shutdown().await;

    // Malformed input from outside `allow` is never answered (nothing to reflect): the frame is
    // dropped, the slot comes back. Loopback is outside this allow list, so the real query that
    // follows is REFUSED, which is an answer.
    let mut cfg = config_for(upstream.addr(), &leaf);
    cfg.listen.tcp_pipeline = PIPELINE;
    cfg.policy.allow = vec!["10.0.0.0/8".parse().unwrap()];
    let (running, addr) = start(cfg).await;
    let mut malformed = build_query("x.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    malformed.truncate(malformed.len() - 3);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut bytes = Vec::new();
    for _ in 0..DROPPED {
        bytes.extend_from_slice(&framed(&malformed));
    }
    let q = build_query("outside.example.", RecordType::A, None);
    bytes.extend_from_slice(&framed(&q.to_vec().unwrap()));
    s.write_all(&bytes).await.unwrap();
    let m = read_answer(&mut s)
        .await
        .expect("no answer after malformed frames from outside allow (wedged)");
    assert_eq!(m.id(), q.id());
    assert_eq!(m.response_code(), ResponseCode::Refused);
    running.shutdown().await;
}

/// A client that sends queries but never reads the answers (its receive window closes; TCP keeps a
/// zero-window peer alive for ever) loses its connection once an answer could not be written for
/// the idle time, and so gives back its `max_tcp_clients` slot. Before the fix the connection's
/// writer waited for ever, its reader waited for pipeline slots that never came back, and with one
/// slot configured every later TCP client was turned away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_gives_back_its_slot() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let mut cfg = config_for(upstream.addr(), &leaf);
    cfg.listen.max_tcp_clients = 1;
    cfg.listen.tcp_idle_timeout_ms = 500;
    let (running, addr) = start(cfg).await;

    // A small receive buffer, and 40k answers of ~230 octets (long names): 9 MB, more than the
    // daemon's send buffer grows to (4 MiB by default) and this socket's receive buffer hold.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let stuck = sock.connect(addr).await.unwrap();
    let (mut rd, mut wr) = stuck.into_split();
    let label = "x".repeat(60);
    let sender = tokio::spawn(async move {
        for i in 0..40_000 {
            let q = build_query(
                &format!("{i}.{label}.{label}.{label}.example."),
                RecordType::A,
                None,
            );
            if wr.write_all(&framed(&q.to_vec().unwrap())).await.is_err() {
                break;
            }
        }
        // Never closes its side: the connection may end only by the daemon's doing.
        std::future::pending::<()>().await;
        drop(wr);
    });

    // The stuck client holds the only slot; within a few idle times it must be free again.
    let q = build_query("after-stuck.example.", RecordType::A, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let answered = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back: a client that does not read holds it for ever"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(mut s) = TcpStream::connect(addr).await else {
            continue;
        };
        if s.write_all(&framed(&q.to_vec().unwrap())).await.is_err() {
            continue;
        }
        if let Some(m) = read_answer(&mut s).await {
            break m;
        }
    };
    assert_eq!(answered.id(), q.id());
    assert_eq!(a_records(&answered), [expected_a("after-stuck.example.")]);
    // The stuck client's connection was closed: it holds the answers written before, then the end.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the stuck client's connection is still open"
    );
    sender.abort();
    running.shutdown().await;
}
