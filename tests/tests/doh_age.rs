//! DNS over HTTPS behind an HTTP cache (RFC 8484 §5.1): the `Age` of a response lowers the TTLs
//! lanveil hands out and caches, for POST and for GET.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{a_records, query_udp};
use lanveil_tests::doh::DohUpstream;
use lanveil_tests::gateway::{config_urls, start};
use lanveil_tests::upstream::ANSWER_TTL;
use lanveil_tests::{Pki, expected_a};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_age_lowers_ttls_of_the_answer_and_of_its_cached_copy() {
    assert_eq!(ANSWER_TTL, 300);
    let pki = Pki::new();
    let leaf = pki.leaf(&["doh.test"], &[LOCAL]);
    for get in [false, true] {
        let up = DohUpstream::start("127.0.0.1:0".parse().unwrap(), &leaf).await;
        // As an HTTP cache in front of the server would: the answer (TTL 300) is 250 s old.
        up.set_extra_headers(&[("age", "250")]);
        let url = format!("https://{}/dns-query#doh.test", up.addr());
        let mut cfg = config_urls(std::slice::from_ref(&url), pki.ca_pem_path());
        cfg.upstreams.servers[0].http_get = get;
        cfg.cache.enabled = true;
        let (running, addr) = start(cfg).await;
        let name = "aged.doh.example.";
        let first = query_udp(addr, name, RecordType::A, Some(1232)).await;
        assert_eq!(first.response_code(), ResponseCode::NoError);
        assert_eq!(a_records(&first), [expected_a(name)]);
        let ttl = first.answers()[0].ttl();
        assert!(
            (45..=50).contains(&ttl),
            "GET {get}: first answer TTL {ttl}"
        );
        let asked = up.requests().len();
        let second = query_udp(addr, name, RecordType::A, Some(1232)).await;
        assert_eq!(a_records(&second), [expected_a(name)]);
        assert_eq!(up.requests().len(), asked, "GET {get}: from the cache");
        let ttl = second.answers()[0].ttl();
        assert!(
            (1..=50).contains(&ttl),
            "GET {get}: cached answer TTL {ttl}"
        );
        assert!(
            up.requests()
                .iter()
                .all(|r| r.method == if get { "GET" } else { "POST" })
        );
        let (stats, _) = running.stats().await.unwrap();
        assert_eq!(stats.cache_hits, 1);
        running.shutdown().await;
    }
}
