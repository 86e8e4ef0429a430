//! Reload: status shows only a configuration that is in force (issue 15, defect 5). Before the fix
//! the new upstream set was handed to status before the new listeners were bound, so a reload that
//! failed to bind left status describing a configuration that never ran.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_proto::rr::RecordType;
use lanveil::config::control::{Request, Response};
use lanveil_tests::client::{a_records, query_udp};
use lanveil_tests::gateway::{config_for, start};
use lanveil_tests::{DotUpstream, Pki, TempDir, UpstreamOpts, expected_a};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn status_urls(sock: std::path::PathBuf) -> Vec<String> {
    let bytes = tokio::task::spawn_blocking(move || {
        lanveil::control::request(&sock, &Request::Status).unwrap()
    })
    .await
    .unwrap();
    let Response::Status(s) = Response::decode(&bytes).unwrap() else {
        panic!("not a status")
    };
    s.upstreams.into_iter().map(|u| u.url).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_bind_changes_nothing_status_shows() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let other = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-reload");
    let sock = dir.join("control.sock");
    let listen = SocketAddr::new(LOCAL, lanveil_tests::free_tcp_udp_port(LOCAL));
    let mut cfg = config_for(up.addr(), &leaf);
    cfg.listen.addrs = vec![listen];
    cfg.daemon.control_socket = Some(sock.display().to_string());
    let (mut running, addr) = start(cfg.clone()).await;
    let before = status_urls(sock.clone()).await;
    assert_eq!(before, [format!("tls://{}#dot.test", up.addr())]);

    // A new upstream and a listen address someone else holds: the reload must fail as a whole.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken: SocketAddr = held.local_addr().unwrap();
    let _held_tcp = std::net::TcpListener::bind(taken).unwrap();
    let mut bad = config_for(other.addr(), &leaf);
    bad.daemon.control_socket = cfg.daemon.control_socket.clone();
    bad.listen.addrs = vec![listen, taken];
    assert!(
        running.reload(bad).await.is_err(),
        "binding {taken} must fail"
    );
    assert_eq!(
        status_urls(sock.clone()).await,
        before,
        "status shows the configuration in force"
    );
    let m = query_udp(addr, "still.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("still.example.")]);
    assert_eq!(other.queries(), 0, "the new upstream is not in force");

    // A good reload is shown.
    let mut good = config_for(other.addr(), &leaf);
    good.daemon.control_socket = cfg.daemon.control_socket.clone();
    good.listen.addrs = vec![listen];
    running.reload(good).await.unwrap();
    assert_eq!(
        status_urls(sock.clone()).await,
        [format!("tls://{}#dot.test", other.addr())]
    );
    running.shutdown().await;
}
