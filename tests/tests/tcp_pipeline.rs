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
