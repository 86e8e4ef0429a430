//! DNS64 for IPv6-mostly networks (RFC 6147): synthesis from A records, none when AAAA exists, and
//! `ipv4only.arpa` for prefix discovery (RFC 7050, RFC 8880) — through a real upstream and dig.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{aaaa_records, query_tcp, query_udp};
use lanveil_tests::gateway::{config_for, start};
use lanveil_tests::{DotUpstream, Pki, UpstreamOpts, dig, expected_a, expected_aaaa};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// RFC 6052 §2.2 for a /96 prefix: the IPv4 address in the last 32 bits.
fn embed96(prefix: Ipv6Addr, v4: Ipv4Addr) -> Ipv6Addr {
    let mut b = prefix.octets();
    b[12..].copy_from_slice(&v4.octets());
    Ipv6Addr::from(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns64_synthesizes_only_when_there_is_no_aaaa() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let mut cfg = config_for(up.addr(), &leaf);
    let prefix: Ipv6Addr = "64:ff9b::".parse().unwrap();
    cfg.policy.dns64_prefix = Some(lanveil::config::Nat64Prefix::new(prefix, 96).unwrap());
    let (running, addr) = start(cfg).await;

    // An IPv4-only name: AAAA synthesized from its A record.
    let name = "v4only.site.example.";
    let m = query_udp(addr, name, RecordType::AAAA, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(aaaa_records(&m), [embed96(prefix, expected_a(name))]);
    // The same over TCP, and from the cache.
    let m = query_tcp(addr, name, RecordType::AAAA, None).await;
    assert_eq!(aaaa_records(&m), [embed96(prefix, expected_a(name))]);
    // A name with its own AAAA: passed through untouched, no synthesis.
    let m = query_udp(addr, "dual.site.example.", RecordType::AAAA, None).await;
    assert_eq!(aaaa_records(&m), [expected_aaaa("dual.site.example.")]);
    // A queries are not affected.
    let m = query_udp(addr, name, RecordType::A, None).await;
    assert_eq!(lanveil_tests::client::a_records(&m), [expected_a(name)]);
    // NXDOMAIN stays NXDOMAIN.
    let m = query_udp(addr, "nx.site.example.", RecordType::AAAA, None).await;
    assert_eq!(m.response_code(), ResponseCode::NXDomain);

    // ipv4only.arpa answered from the configured prefix (what clients use to discover it), by dig.
    let port = addr.port().to_string();
    let out = dig(&["@127.0.0.1", "-p", &port, "ipv4only.arpa", "AAAA"]).await;
    let mut got = out.answer_rdata("AAAA");
    got.sort();
    assert_eq!(
        got,
        ["64:ff9b::c000:aa", "64:ff9b::c000:ab"],
        "{}",
        out.transcript()
    );
    let out = dig(&["@127.0.0.1", "-p", &port, "ipv4only.arpa", "A"]).await;
    let mut got = out.answer_rdata("A");
    got.sort();
    assert_eq!(got, ["192.0.0.170", "192.0.0.171"]);
    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(
        stats.dns64_synthesized, 1,
        "the TCP repeat came from the cache"
    );
    running.shutdown().await;

    // Without DNS64 the AAAA answer for the IPv4-only name stays empty.
    let (running, addr) = start(config_for(up.addr(), &leaf)).await;
    let m = query_udp(addr, "v4only.other.example.", RecordType::AAAA, None).await;
    assert!(aaaa_records(&m).is_empty());
    running.shutdown().await;
}
