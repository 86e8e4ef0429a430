//! A router that boots with a wrong clock still comes up private: certificates are checked against the
//! time floor until the clock is set, then every connection made under that relaxed rule is re-verified.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Host-only test code: 64-bit atomics are fine here (the rule is for router builds).
#![allow(clippy::disallowed_types)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil::clock::WallClock;
use lanveil::config::TlsVersion;
use lanveil::config::state::State;
use lanveil_tests::client::{a_records, ede, query_udp};
use lanveil_tests::clock::{FakeWall, real_now, start_at, state_file};
use lanveil_tests::gateway::{config, with_pins};
use lanveil_tests::proxy::{HoldProxy, SecondFlight};
use lanveil_tests::{DotUpstream, Pki, TempDir, UpstreamOpts, expected_a};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DAY: Duration = Duration::from_secs(86_400);

/// A leaf issued *after* the floor (renewed while the router was off), valid for a month.
fn renewed_leaf(pki: &Pki) -> lanveil_tests::Leaf {
    let now = SystemTime::now();
    pki.leaf_with_validity(
        &["dot.test"],
        &[LOCAL],
        now - Duration::from_secs(600),
        now + 30 * DAY,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_in_1970_checks_against_the_floor_then_reverifies_when_the_clock_is_set() {
    let pki = Pki::new();
    let renewed = renewed_leaf(&pki);
    let up = DotUpstream::start(UpstreamOpts::new(&renewed)).await;
    let dir = TempDir::new("lanveil-clock");
    let mut cfg = config(&[(up.addr(), "dot.test")], pki.ca_pem_path());
    cfg.daemon.state_file = Some(state_file(&dir).display().to_string());
    cfg.cache.enabled = false;
    let wall = FakeWall::at(0); // the router thinks it is 1970
    let (running, addr) = start_at(cfg, &wall).await;

    // Without the rule this certificate is "not valid yet" in 1970; with it, lanveil is private at once.
    let m = query_udp(addr, "boot.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("boot.test.")]);
    assert_eq!(up.handshakes(), 1);

    // NTP sets the clock: the relaxed connection is closed and a strictly verified one replaces it.
    wall.set_to_real_time();
    assert!(
        up.wait_for(Duration::from_secs(3), |h| h.open_connections() == 0)
            .await,
        "relaxed connection closed"
    );
    let m = query_udp(addr, "synced.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("synced.test.")]);
    assert_eq!(
        up.handshakes(),
        2,
        "a fresh handshake verified at the real time"
    );
    running.shutdown().await;
    // The floor advanced to the real time and was written atomically.
    let saved = State::decode(&std::fs::read(dir.join("state")).unwrap()).unwrap();
    assert!(
        saved.last_good_wall >= real_now() - 5,
        "floor persisted: {}",
        saved.last_good_wall
    );
    assert!(!dir.join("state.tmp").exists());
}

/// An upstream whose certificate ended yesterday (before the floor), and a router that thinks it is
/// 2001: its configuration for that upstream (cache off) and its clock (the CA's and the state
/// file's directories live as long as it).
struct Expired {
    leaf: lanveil_tests::Leaf,
    up: DotUpstream,
    wall: Arc<FakeWall>,
    cfg: lanveil::config::Config,
    _pki: Pki,
    _dir: TempDir,
}

impl Expired {
    async fn start(name: &str) -> Self {
        let pki = Pki::new();
        let leaf = pki.expired_leaf(&["dot.test"], &[LOCAL]);
        let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
        let dir = TempDir::new(name);
        let mut cfg = config(&[(up.addr(), "dot.test")], pki.ca_pem_path());
        cfg.daemon.state_file = Some(state_file(&dir).display().to_string());
        cfg.cache.enabled = false;
        let wall = FakeWall::at(1_000_000_000);
        Self {
            leaf,
            up,
            wall,
            cfg,
            _pki: pki,
            _dir: dir,
        }
    }

    /// NTP sets the clock; the connections authenticated against the floor are closed.
    async fn set_clock(&self) {
        self.wall.set_to_real_time();
        assert!(
            self.up
                .wait_for(Duration::from_secs(3), |h| h.open_connections() == 0)
                .await,
            "relaxed connections closed: {:?}",
            self.up.connections()
        );
    }
}

/// `name` is answered SERVFAIL with the EDE that says the certificate expired.
async fn refused_as_expired(addr: std::net::SocketAddr, name: &str) {
    let m = query_udp(addr, name, RecordType::A, Some(1232)).await;
    assert_eq!(m.response_code(), ResponseCode::ServFail, "{name}");
    assert!(ede(&m).unwrap().1.contains("expired"), "{:?}", ede(&m));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_before_the_floor_is_rejected_unless_pinned_and_only_until_the_clock_is_set() {
    let x = Expired::start("lanveil-clock2").await;

    // Not pinned: expired whatever the real time is.
    let (running, addr) = start_at(x.cfg.clone(), &x.wall).await;
    refused_as_expired(addr, "expired.test.").await;
    running.shutdown().await;

    // Pinned: accepted regardless of time while the clock is unsynchronized...
    let (running, addr) = start_at(with_pins(x.cfg.clone(), &[x.leaf.spki_pin()]), &x.wall).await;
    let m = query_udp(addr, "pinned.test.", RecordType::A, Some(1232)).await;
    assert_eq!(a_records(&m), [expected_a("pinned.test.")]);
    // ...and rejected as soon as it is set.
    x.set_clock().await;
    refused_as_expired(addr, "pinned2.test.").await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_ignored_and_replaced() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-clock3");
    let path = dir.write("state", b"LVST\x01\x00garbage");
    let mut cfg = config(&[(up.addr(), "dot.test")], pki.ca_pem_path());
    cfg.daemon.state_file = Some(path.display().to_string());
    let wall = FakeWall::at(real_now());
    let (running, addr) = start_at(cfg, &wall).await;
    let m = query_udp(addr, "ok.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("ok.test.")]);
    running.shutdown().await;
    let saved = State::decode(&std::fs::read(&path).unwrap()).unwrap();
    assert!(saved.last_good_wall >= real_now() - 5);
}

/// A wall clock that reads as 1970 until armed, then as 1970 for `left` more reads, then as the real
/// time: the clock synchronizes right after the certificate verifier looked at it.
struct SyncsAfter(AtomicU64);

impl WallClock for SyncsAfter {
    fn now_unix(&self) -> u64 {
        match self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        {
            Ok(_) => 0,
            Err(_) => real_now(),
        }
    }
}

/// Issue 15, defect 3: "relaxed" is what the verifier decided for this connection, not a second look
/// at the clock after the handshake. Here the clock synchronizes between the two: the old code read
/// the clock again, called the session strict, and it was never re-verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifiers_decision_travels_with_the_connection() {
    let pki = Pki::new();
    let renewed = renewed_leaf(&pki);
    let up = DotUpstream::start(UpstreamOpts::new(&renewed)).await;
    let cfg = config(&[(up.addr(), "dot.test")], pki.ca_pem_path());
    let wall = Arc::new(SyncsAfter(AtomicU64::new(u64::MAX)));
    let time = Arc::new(lanveil::clock::TimeKeeper::new(wall.clone(), None, 0));
    let target = lanveil::upstream::tls::Target::new(
        &cfg.upstreams.servers[0],
        Some(&pki.ca_pem_path().display().to_string()),
        time.clone(),
    )
    .unwrap();
    // The verifier's read is the last one in 1970.
    wall.0.store(1, Ordering::SeqCst);
    let (_tls, relaxed) = target.handshake(None).await.unwrap();
    assert_eq!(
        time.state(),
        lanveil::core::clock::ClockState::Synchronized,
        "a second look at the clock would call this session strict"
    );
    assert!(relaxed, "checked against the floor: relaxed");

    // Synchronized before the handshake: strict.
    let (_tls, relaxed) = target.handshake(None).await.unwrap();
    assert!(!relaxed, "checked at the real time: strict");
}

/// A wall clock that reads as 1970 until the relay's first client has begun its second TLS flight
/// (its certificate check is done), then as the real time.
struct SetAfterCheck(SecondFlight);

impl WallClock for SetAfterCheck {
    fn now_unix(&self) -> u64 {
        if self.0.begun() { real_now() } else { 0 }
    }
}

/// A connection whose handshake straddles the moment the clock is set: a TLS 1.2-only upstream
/// presenting `leaf`, behind a relay that holds the first connection's end of handshake back for
/// `hold`; lanveil's configuration for it through the relay (TLS 1.2 allowed, a state file in `dir`,
/// cache off); and a wall clock that reads 1970 until that connection's certificate was checked.
/// TLS 1.2 puts a round trip between the certificate check and the end of the handshake.
struct Straddle {
    up: DotUpstream,
    proxy: HoldProxy,
    cfg: lanveil::config::Config,
    wall: Arc<SetAfterCheck>,
}

impl Straddle {
    async fn start(pki: &Pki, leaf: &lanveil_tests::Leaf, hold: Duration, dir: &TempDir) -> Self {
        let mut opts = UpstreamOpts::new(leaf);
        opts.versions = vec![&rustls::version::TLS12];
        let up = DotUpstream::start(opts).await;
        let proxy = HoldProxy::start(up.addr(), hold).await;
        let mut cfg = config(&[(proxy.addr(), "dot.test")], pki.ca_pem_path());
        cfg.upstreams.servers[0].tls_min_version = TlsVersion::V1_2;
        cfg.daemon.state_file = Some(state_file(dir).display().to_string());
        cfg.cache.enabled = false;
        let wall = Arc::new(SetAfterCheck(proxy.second_flight()));
        Self {
            up,
            proxy,
            cfg,
            wall,
        }
    }
}

/// The clock is set while a connection is being made: its certificate was checked against the floor,
/// but its handshake completes only after the daemon handled the clock's synchronization (which then
/// found no relaxed connection to re-verify). The driver re-verifies it as it comes up: that
/// connection is closed, and the query goes out on a strictly verified one. A relay holds the
/// server's Finished back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaxed_connection_that_comes_up_after_the_clock_is_set_is_reverified() {
    let pki = Pki::new();
    let renewed = renewed_leaf(&pki);
    let dir = TempDir::new("lanveil-clock");
    // The clock is set right after the first connection's certificate was checked (in 1970, at the
    // floor), the daemon sees it within 0.25 s, and that handshake ends 1.5 s after the check.
    let Straddle {
        up,
        proxy,
        mut cfg,
        wall,
    } = Straddle::start(&pki, &renewed, Duration::from_millis(1500), &dir).await;
    cfg.limits.query_timeout_ms = 10_000;
    let (running, addr) = start_at(cfg, &wall).await;

    let m = query_udp(addr, "late.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("late.test.")]);
    assert!(
        proxy.wait_first_ended(Duration::from_secs(3)).await,
        "the connection checked against the floor is closed once it is up"
    );
    assert!(
        up.handshakes() >= 2,
        "the query went out on a connection verified at the real time"
    );
    assert!(
        up.connections()
            .iter()
            .all(|c| c.version == rustls::ProtocolVersion::TLSv1_2)
    );
    // Nothing relaxed is left: the strict connection keeps serving.
    let m = query_udp(addr, "after.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("after.test.")]);
    assert!(proxy.first_ended());
    running.shutdown().await;
}

/// With `tls_resumption '1'`, the session a straddling handshake keeps: its certificate (expired,
/// pinned) was accepted against the floor, but the handshake ends, and the session is kept, after the
/// clock was set, so the ticket store takes it for one kept at the real time. The driver forgets it
/// as it re-verifies the connection; resumed, it would skip the certificate check and the expired
/// certificate would pass as verified at the real time. The relay holds nothing back: the driver
/// reads the clock itself when the connection comes up, whether or not the clock ticker has told it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_kept_by_a_handshake_that_straddles_the_clock_being_set_is_forgotten() {
    let pki = Pki::new();
    let expired = pki.expired_leaf(&["dot.test"], &[LOCAL]);
    let dir = TempDir::new("lanveil-clock-straddle");
    let Straddle {
        up,
        proxy,
        cfg,
        wall,
    } = Straddle::start(&pki, &expired, Duration::ZERO, &dir).await;
    let mut cfg = with_pins(cfg, &[expired.spki_pin()]);
    cfg.upstreams.servers[0].tls_resumption = true;
    let (running, addr) = start_at(cfg, &wall).await;

    // The straddling connection is closed as it comes up; the query's next one is a full handshake at
    // the real time, and the certificate is refused.
    refused_as_expired(addr, "straddle.test.").await;
    assert!(
        proxy.wait_first_ended(Duration::from_secs(3)).await,
        "the straddling connection is closed"
    );
    assert!(
        up.wait_for(Duration::from_secs(3), |h| h.handshake_failures() >= 1)
            .await,
        "a full handshake after the straddling one: {:?}",
        up.connections()
    );
    refused_as_expired(addr, "again.test.").await;
    // The server completed one handshake, the straddling one (its side ends before lanveil's), and
    // resumed nothing.
    let conns = up.connections();
    assert!(
        conns.len() == 1 && !conns[0].resumed,
        "no session of the straddling handshake resumed: {conns:?}"
    );
    running.shutdown().await;
}

/// With `tls_resumption '1'`, a session ticket from a connection authenticated against the floor
/// does not outlive the clock's synchronization: resuming it skips the certificate check, so the
/// relaxed verdict would pass the moment the real time is known (here: an expired, pinned
/// certificate, refused once the clock is set, accepted again through the ticket). Both when the
/// relaxed connection is still open as the clock is set, and when the upstream closed it before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tickets_from_before_the_clock_was_set_are_forgotten() {
    for closed_before in [false, true] {
        let x = Expired::start("lanveil-clock-tickets").await;
        let mut cfg = with_pins(x.cfg.clone(), &[x.leaf.spki_pin()]);
        cfg.upstreams.servers[0].tls_resumption = true;
        let (running, addr) = start_at(cfg, &x.wall).await;

        let m = query_udp(addr, "floor.test.", RecordType::A, Some(1232)).await;
        assert_eq!(a_records(&m), [expected_a("floor.test.")]);
        if closed_before {
            // The upstream's idle timeout, say: closed while the clock is still unsynchronized.
            x.up.kill_connections();
            assert!(
                x.up.wait_for(Duration::from_secs(3), |h| h.open_connections() == 0)
                    .await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        x.set_clock().await;
        refused_as_expired(addr, "synced.test.").await;
        let conns = x.up.connections();
        assert!(
            conns.iter().all(|c| !c.resumed),
            "closed before the clock was set: {closed_before}; no session resumed after: {conns:?}"
        );
        running.shutdown().await;
    }
}
