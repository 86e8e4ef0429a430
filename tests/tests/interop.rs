//! lanveil in front of a DoT server we did not write: Debian's unbound, queried with dig and kdig.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use lanveil_tests::gateway::{config, start, with_pins};
use lanveil_tests::unbound::{INTEROP_A, INTEROP_AAAA, INTEROP_NAME};
use lanveil_tests::{Pki, Unbound, dig, kdig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_unbound_over_dot() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["unbound.test"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let unbound = Unbound::start_dot(&leaf).await;
    let cfg = with_pins(
        config(&[(unbound.addr(), "unbound.test")], pki.ca_pem_path()),
        &[leaf.spki_pin()],
    );
    let (running, addr) = start(cfg).await;
    let port = addr.port().to_string();
    let name = INTEROP_NAME.trim_end_matches('.');

    let out = dig(&["@127.0.0.1", "-p", &port, name, "A"]).await;
    out.assert_answers("NOERROR", "A", &[INTEROP_A]);

    let out = kdig(&["@127.0.0.1", "-p", &port, name, "AAAA"]).await;
    out.assert_answers("NOERROR", "AAAA", &[INTEROP_AAAA]);

    let out = kdig(&[
        "+tcp",
        "@127.0.0.1",
        "-p",
        &port,
        "missing.interop.test",
        "A",
    ])
    .await;
    assert_eq!(
        out.status.as_deref(),
        Some("NXDOMAIN"),
        "{}",
        out.transcript()
    );

    let (stats, _) = running.stats().await.unwrap();
    assert_eq!(stats.answered, 3);
    assert_eq!(
        stats.upstream_connects, 1,
        "one persistent DoT connection to unbound"
    );
    running.shutdown().await;
}
