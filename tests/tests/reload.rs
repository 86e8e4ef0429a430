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

/// A listen address someone else holds (for as long as the sockets live). A UDP port whose TCP twin
/// is free too: other tests' connections hold ephemeral TCP ports.
fn held_port() -> (std::net::UdpSocket, std::net::TcpListener, SocketAddr) {
    (0..50)
        .find_map(|_| {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
            let addr = udp.local_addr().ok()?;
            let tcp = std::net::TcpListener::bind(addr).ok()?;
            Some((udp, tcp, addr))
        })
        .expect("a port free for UDP and TCP")
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
    let (_held, _held_tcp, taken) = held_port();
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

/// Opens a TCP connection and checks whether it is served (a query answered) or turned away (closed
/// at once: over `max_tcp_clients`). A served connection is returned, to be held open.
async fn tcp_served(addr: SocketAddr, name: &str) -> Option<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let q = lanveil_tests::client::build_query(name, RecordType::A, None)
        .to_vec()
        .unwrap();
    s.write_all(&lanveil_tests::client::frame(&q).unwrap())
        .await
        .ok()?;
    let mut len = [0u8; 2];
    tokio::time::timeout(std::time::Duration::from_secs(3), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body).await.ok()?;
    Some(s)
}

/// Lowering `max_tcp_clients` while more connections than the new limit are open: the slots they
/// hold are taken back as they close, and raising it again restores exactly the new limit. Before
/// the fix only free slots were removed (none here), so the old limit stayed, and a later raise added
/// to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_max_tcp_clients_takes_effect_as_connections_close() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let mut cfg = config_for(upstream.addr(), &leaf);
    cfg.listen.max_tcp_clients = 4;
    cfg.listen.tcp_idle_timeout_ms = 60_000;
    // A fixed port: the listener is kept across the reloads (port 0 would be bound anew).
    cfg.listen.addrs = vec![SocketAddr::new(
        LOCAL,
        lanveil_tests::free_tcp_udp_port(LOCAL),
    )];
    let (mut running, addr) = start(cfg.clone()).await;
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(
            tcp_served(addr, &format!("c{i}.example."))
                .await
                .expect("within the limit"),
        );
    }
    assert!(
        tcp_served(addr, "c4.example.").await.is_none(),
        "a fifth over 4"
    );

    cfg.listen.max_tcp_clients = 2;
    running.reload(cfg.clone()).await.unwrap();
    // Three of four close: one open, and the limit is 2, so one more is served, not three.
    held.truncate(1);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = tcp_served(addr, "d1.example.")
        .await
        .expect("one more under 2");
    assert!(
        tcp_served(addr, "d2.example.").await.is_none(),
        "a third connection served: the old limit of 4 is still in force"
    );

    // Back to 4: exactly 4 (two more), not 4 on top of the slots never taken back.
    cfg.listen.max_tcp_clients = 4;
    running.reload(cfg).await.unwrap();
    let mut more = Vec::new();
    for i in 0..2 {
        more.push(
            tcp_served(addr, &format!("e{i}.example."))
                .await
                .expect("within 4"),
        );
    }
    assert!(
        tcp_served(addr, "e2.example.").await.is_none(),
        "a fifth connection served after raising the limit back to 4"
    );
    drop((held, second, more));
    running.shutdown().await;
}

/// `control_socket` is bound once: a reload that names another path keeps the socket where it is
/// (status still answers there), and shutdown removes the socket it bound, not the new path (which
/// may be anything's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_move_the_control_socket_and_shutdown_removes_the_bound_one() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-reload-sock");
    let sock = dir.join("control.sock");
    let other = dir.join("other.sock");
    std::fs::write(&other, b"someone else's file").unwrap();
    let mut cfg = config_for(up.addr(), &leaf);
    cfg.listen.addrs = vec![SocketAddr::new(
        LOCAL,
        lanveil_tests::free_tcp_udp_port(LOCAL),
    )];
    cfg.daemon.control_socket = Some(sock.display().to_string());
    let (mut running, _addr) = start(cfg.clone()).await;
    cfg.daemon.control_socket = Some(other.display().to_string());
    running.reload(cfg).await.unwrap();
    assert_eq!(
        status_urls(sock.clone()).await,
        [format!("tls://{}#dot.test", up.addr())]
    );
    running.shutdown().await;
    assert!(!sock.exists(), "the bound control socket is left behind");
    assert!(other.exists(), "shutdown removed a path it never bound");
}

/// A reload that removes a listen address also ends the TCP connections made to it: they stop being
/// read (their answers still go out) and close, so the address serves nobody any more. Before, the
/// connections outlived their listener and kept forwarding whatever their clients sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_listen_address_ends_its_tcp_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let keep = SocketAddr::new(LOCAL, lanveil_tests::free_tcp_udp_port(LOCAL));
    let gone = SocketAddr::new(LOCAL, lanveil_tests::free_tcp_udp_port(LOCAL));
    let mut cfg = config_for(up.addr(), &leaf);
    cfg.listen.addrs = vec![keep, gone];
    cfg.listen.tcp_idle_timeout_ms = 60_000;
    let (mut running, _) = start(cfg.clone()).await;
    let mut s = tcp_served(gone, "before.example.")
        .await
        .expect("served before the reload");

    cfg.listen.addrs = vec![keep];
    running.reload(cfg).await.unwrap();
    // The connection is closed by the daemon: a query sent now is not answered, the stream ends.
    let q = lanveil_tests::client::build_query("after.example.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let _ = s
        .write_all(&lanveil_tests::client::frame(&q).unwrap())
        .await;
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the connection to the removed address is still open");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the removed address still answers: {read:?}"
    );
    assert!(tcp_served(keep, "kept.example.").await.is_some());
    running.shutdown().await;
}

/// Starts lanveil with `cfg` and a wall clock of the test's own; the start must fail. Returns the
/// error once every task it spawned is gone: the driver, the clock ticker and the control socket's
/// task each hold the clock, so the test's handle is the last one left.
async fn failed_start(cfg: lanveil::config::Config) -> lanveil::Error {
    use std::sync::Arc;
    let wall: Arc<dyn lanveil::clock::WallClock> = Arc::new(lanveil::clock::SystemWallClock);
    let options = lanveil::Options {
        wall_clock: Some(wall.clone()),
        ..Default::default()
    };
    let e = lanveil::start_with(cfg, options)
        .await
        .expect_err("the start must fail");
    // Aborted tasks are dropped by the runtime, not at once: a short grace.
    for _ in 0..50 {
        if Arc::strong_count(&wall) == 1 {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("a failed start ({e}) left tasks running (driver, clock ticker or control socket)");
}

/// A start that fails once it has spawned its tasks and bound its control socket (here: a listen
/// address someone else holds) ends those tasks and removes the socket, so nothing answers on it and
/// no stale socket is left. Before, the driver, clock ticker and control task kept running and the
/// socket file stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_bind_a_listener_leaves_nothing_behind() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let dir = TempDir::new("lanveil-failed-start");
    let sock = dir.join("control.sock");
    let (_held, _held_tcp, taken) = held_port();
    // Never dialled: the start fails before any query.
    let mut cfg = config_for(SocketAddr::new(LOCAL, 853), &leaf);
    cfg.listen.addrs = vec![SocketAddr::new(LOCAL, 0), taken];
    cfg.daemon.control_socket = Some(sock.display().to_string());
    let e = failed_start(cfg.clone()).await;
    assert!(
        matches!(e, lanveil::Error::Bind { addr, .. } if addr == taken),
        "{e}"
    );
    assert!(!sock.exists(), "the control socket is left behind");
    let sock2 = sock.clone();
    let status =
        tokio::task::spawn_blocking(move || lanveil::control::request(&sock2, &Request::Status))
            .await
            .unwrap();
    assert!(status.is_err(), "something still answers on the socket");

    // The same configuration without the held address starts (the socket path is free again).
    cfg.listen.addrs = vec![SocketAddr::new(LOCAL, 0)];
    let (running, _) = start(cfg).await;
    assert!(sock.exists());
    running.shutdown().await;
}

/// A second lanveil started with a running one's control socket (a manual run while the service is
/// up) does not take that socket: it fails, whatever else it could bind, and the running daemon's
/// socket still answers. A socket file nothing answers on (a daemon that is gone) is taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_leaves_the_running_daemons_control_socket_alone() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let dir = TempDir::new("lanveil-second-start");
    let sock = dir.join("control.sock");
    let mut cfg = config_for(SocketAddr::new(LOCAL, 853), &leaf);
    cfg.listen.addrs = vec![SocketAddr::new(LOCAL, 0)];
    cfg.daemon.control_socket = Some(sock.display().to_string());
    let (running, _) = start(cfg.clone()).await;
    let status = |sock: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || lanveil::control::request(&sock, &Request::Status))
            .await
            .unwrap()
    };
    // One that could bind everything else, and one whose listen address is taken.
    let (_held, _held_tcp, taken) = held_port();
    let mut blocked = cfg.clone();
    blocked.listen.addrs = vec![taken];
    for second in [cfg.clone(), blocked] {
        let e = failed_start(second).await;
        assert!(matches!(e, lanveil::Error::Control { .. }), "{e}");
        assert!(
            status(sock.clone()).await.is_ok(),
            "the running daemon lost its control socket"
        );
    }
    running.shutdown().await;

    // A stale socket file (bound, then its owner gone) does not stop a start.
    drop(std::os::unix::net::UnixListener::bind(&sock));
    assert!(sock.exists());
    let (running, _) = start(cfg).await;
    assert!(status(sock.clone()).await.is_ok());
    running.shutdown().await;
}

/// A daemon that hangs (it never accepts, and its backlog is full) still holds its control socket:
/// a second start does not wait for it (a blocking connect would wait for ever) and does not take
/// the path from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_daemons_control_socket_is_left_alone_without_waiting() {
    use std::os::unix::fs::MetadataExt;
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let dir = TempDir::new("lanveil-hung-daemon");
    let sock = dir.join("control.sock");
    let hung = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    hung.bind(&socket2::SockAddr::unix(&sock).unwrap()).unwrap();
    hung.listen(0).unwrap();
    // A backlog of 0 holds one connection that nobody accepts; after it, the backlog is full.
    let _waiting = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let inode = std::fs::metadata(&sock).unwrap().ino();

    let mut cfg = config_for(SocketAddr::new(LOCAL, 853), &leaf);
    cfg.listen.addrs = vec![SocketAddr::new(LOCAL, 0)];
    cfg.daemon.control_socket = Some(sock.display().to_string());
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), failed_start(cfg))
        .await
        .expect("a start waited on the hung daemon's full backlog");
    assert!(matches!(e, lanveil::Error::Control { .. }), "{e}");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().ino(),
        inode,
        "the hung daemon's control socket was replaced"
    );
    // Still the hung daemon's: its waiting connection is there to accept.
    hung.set_nonblocking(true).unwrap();
    assert!(hung.accept().is_ok());
}

/// A start that cannot create its control socket (its directory cannot be made) ends the driver
/// and the clock ticker it has already spawned, and leaves whatever is at the path alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_bind_the_control_socket_leaves_nothing_running() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let dir = TempDir::new("lanveil-failed-start-ctl");
    let file = dir.write("not-a-dir", "someone else's file");
    let mut cfg = config_for(SocketAddr::new(LOCAL, 853), &leaf);
    cfg.listen.addrs = vec![SocketAddr::new(LOCAL, 0)];
    cfg.daemon.control_socket = Some(file.join("control.sock").display().to_string());
    let e = failed_start(cfg).await;
    assert!(matches!(e, lanveil::Error::Control { .. }), "{e}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "someone else's file"
    );
}
