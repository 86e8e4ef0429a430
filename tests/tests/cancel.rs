//! A request lanveil stops waiting for is cancelled on the wire instead of staying open until the
//! server answers: over DNS over HTTPS its stream is reset (RST_STREAM with CANCEL), over DNS over
//! QUIC its answer is stopped with DOQ_REQUEST_CANCELLED (RFC 9250 §4.5), and the connection stays.
//! The case: the first upstream does not answer, the query is hedged to a second one (DoT), whose
//! answer ends the first request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use lanveil_tests::client::{a_records, query_udp};
use lanveil_tests::doh::DohUpstream;
use lanveil_tests::doq::AioquicServer;
use lanveil_tests::gateway::{config_urls, start};
use lanveil_tests::upstream::{DotUpstream, UpstreamOpts};
use lanveil_tests::{Pki, expected_a};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NAME: &str = "cancel.test";
/// HTTP/2's CANCEL error code (RFC 9113 §7).
const H2_CANCEL: u32 = 0x8;
/// DOQ_REQUEST_CANCELLED (RFC 9250 §4.3).
const DOQ_REQUEST_CANCELLED: u64 = 0x3;

/// How many requests for `name` the DoH upstream got.
fn requests_for(doh: &DohUpstream, name: &str) -> usize {
    doh.requests()
        .iter()
        .filter(|r| {
            hickory_proto::op::Message::from_vec(&r.message)
                .is_ok_and(|m| m.queries().iter().any(|q| q.name().to_ascii() == name))
        })
        .count()
}

fn asked(doh: &DohUpstream, name: &str) -> bool {
    requests_for(doh, name) > 0
}

fn held_requests(doh: &DohUpstream) -> usize {
    requests_for(doh, "held.example.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doh_request_answered_elsewhere_is_reset_with_cancel() {
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[LOCAL]);
    let doh = DohUpstream::start("127.0.0.1:0".parse().unwrap(), &leaf).await;
    let dot = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let cfg = config_urls(
        &[
            format!("https://{}/dns-query#{NAME}", doh.addr()),
            format!("tls://{}#{NAME}", dot.handle().addr()),
        ],
        pki.ca_pem_path(),
    );
    let (running, addr) = start(cfg).await;
    // The first upstream answers (and has a round-trip time, so the attempt timeout is short).
    let m = query_udp(addr, "warm.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("warm.example.")]);
    assert!(asked(&doh, "warm.example."));

    doh.set_stall(true);
    let m = query_udp(addr, "held.example.", RecordType::A, None).await;
    assert_eq!(
        a_records(&m),
        [expected_a("held.example.")],
        "answered over DoT"
    );
    assert!(
        asked(&doh, "held.example."),
        "the DoH upstream got the query first"
    );
    // Every copy it got (a loss probe may have sent a second on the same connection) is reset.
    let held = held_requests(&doh);
    assert!(held >= 1);
    let mut resets = doh.resets();
    for _ in 0..40 {
        if resets.len() >= held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        resets = doh.resets();
    }
    assert_eq!(
        resets,
        vec![H2_CANCEL; held],
        "each held request was reset with CANCEL"
    );
    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(stats.hedged, 1, "{stats:?}");
    // The stream went, not the connection: the next query still uses it.
    doh.set_stall(false);
    let m = query_udp(addr, "after.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("after.example.")]);
    assert!(asked(&doh, "after.example."));
    assert_eq!(doh.connections(), 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doq_request_answered_elsewhere_is_stopped_with_doq_request_cancelled() {
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[LOCAL]);
    let doq = AioquicServer::start(&leaf, None, Duration::from_secs(60)).await;
    let dot = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let cfg = config_urls(
        &[
            format!("quic://{}#{NAME}", doq.addr()),
            format!("tls://{}#{NAME}", dot.handle().addr()),
        ],
        pki.ca_pem_path(),
    );
    let (running, addr) = start(cfg).await;
    let m = query_udp(addr, "warm.example.", RecordType::A, None).await;
    assert_eq!(m.answers().len(), 1, "answered over DoQ");
    assert_eq!(doq.events_of("query").len(), 1);

    // Frozen: the query waits in its socket; the hedge to DoT answers; lanveil stops the DoQ
    // stream. Thawed, the server reads the query and the STOP_SENDING behind it.
    doq.pause();
    let m = query_udp(addr, "held.example.", RecordType::A, None).await;
    assert_eq!(
        a_records(&m),
        [expected_a("held.example.")],
        "answered over DoT"
    );
    // The cancel follows the DoT answer within moments; a server thawed at once could answer first
    // (then there is nothing to stop).
    tokio::time::sleep(Duration::from_millis(300)).await;
    doq.resume();
    // Every copy it got (a loss probe may have sent a second on the same connection) is stopped.
    let mut held: Vec<serde_json::Value> = Vec::new();
    for _ in 0..50 {
        held = doq
            .events_of("query")
            .into_iter()
            .filter(|e| e["name"] == "held.example.")
            .map(|e| e["stream"].clone())
            .collect();
        if !held.is_empty() && doq.events_of("stop_sending").len() >= held.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !held.is_empty(),
        "the DoQ upstream got the held query: {:?}",
        doq.events()
    );
    let stops = doq.events_of("stop_sending");
    let mut stopped: Vec<u64> = stops.iter().filter_map(|e| e["stream"].as_u64()).collect();
    let mut held: Vec<u64> = held.iter().filter_map(serde_json::Value::as_u64).collect();
    // A STOP_SENDING the paused server did not acknowledge is sent again: each stream once or more.
    stopped.sort_unstable();
    stopped.dedup();
    held.sort_unstable();
    assert_eq!(stopped, held, "{:?}", doq.events());
    assert!(
        stops
            .iter()
            .all(|e| e["error_code"] == DOQ_REQUEST_CANCELLED),
        "{stops:?}"
    );
    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(stats.hedged, 1, "{stats:?}");
    // The connection stays: no close reported, and the next query is answered over it.
    let m = query_udp(addr, "after.example.", RecordType::A, None).await;
    assert_eq!(m.answers().len(), 1);
    assert!(doq.events_of("closed").is_empty(), "{:?}", doq.events());
    assert_eq!(doq.events_of("handshake").len(), 1);
    running.shutdown().await;
    doq.stop().await;
}
