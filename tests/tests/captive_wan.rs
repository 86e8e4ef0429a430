//! The travel router behind a hotel's captive portal (issue 7): the real `lanveil` binary, the WAN
//! hook's control command, an in-process HTTPS captive-portal API (RFC 8908) that flips from captive
//! to free, the hotel's plaintext DNS (which records every name it is asked), an in-process DoT
//! upstream that is unreachable until "login", and dig as the LAN client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use lanveil::config::control::{CaptiveReport, Request, Response, StatusReport};
use lanveil_tests::gateway::{Process, binary};
use lanveil_tests::portal::{FakePortal, WanDns};
use lanveil_tests::{DigOutput, DotUpstream, Pki, TempDir, UpstreamOpts, dig, free_tcp_udp_port};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Router {
    _root: TempDir,
    listen: SocketAddr,
    control: String,
    process: Process,
}

impl Router {
    async fn start(upstream: SocketAddr, ca: &Path, extra: &str) -> Router {
        Router::start_in(TempDir::new("captive-wan"), upstream, ca, extra, &[]).await
    }

    /// As [`Router::start`], in `root`, with further command-line arguments.
    async fn start_in(
        root: TempDir,
        upstream: SocketAddr,
        ca: &Path,
        extra: &str,
        args: &[&str],
    ) -> Router {
        let listen = SocketAddr::new(LOCAL, free_tcp_udp_port(LOCAL));
        let control = root.join("control.sock").display().to_string();
        let config = root.join("lanveil.conf");
        std::fs::write(
            &config,
            format!(
                "config lanveil 'main'\n\tlist listen '{listen}'\n\toption query_timeout_ms '1000'\n\
                 \toption control_socket '{control}'\n\toption ca_file '{}'\n\toption log_level 'debug'\n{extra}\n\
                 config upstream 'home'\n\toption url 'tls://{upstream}#dot.test'\n",
                ca.display()
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        let mut argv = vec!["--config", config.as_str()];
        argv.extend_from_slice(args);
        let process = Process::spawn_serving(&argv, listen, Path::new(&control)).await;
        Router {
            _root: root,
            listen,
            control,
            process,
        }
    }

    /// `lanveil --control SOCKET ARGS…` as the WAN hook runs it: (exit code, stdout, stderr).
    async fn hook(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = tokio::process::Command::new(binary())
            .arg("--control")
            .arg(&self.control)
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn status(&self) -> StatusReport {
        let raw = lanveil::control::request(Path::new(&self.control), &Request::Status).unwrap();
        match Response::decode(&raw).unwrap() {
            Response::Status(s) => *s,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    async fn wait_phase(&self, phase: &str) -> CaptiveReport {
        for _ in 0..100 {
            let c = self.status().captive;
            if c.phase == phase {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "captive phase never became {phase}: {:?}",
            self.status().captive
        );
    }

    async fn dig(&self, name: &str) -> DigOutput {
        let port = self.listen.port().to_string();
        dig(&["@127.0.0.1", "-p", &port, name, "A"]).await
    }

    /// dig once; the answer must have status `want`.
    async fn dig_expect(&self, name: &str, want: &str) -> DigOutput {
        let out = self.dig(name).await;
        assert_eq!(out.status.as_deref(), Some(want), "{}", out.transcript());
        out
    }

    /// dig until the answer has status `want` (the upstream may be backing off for a few seconds).
    async fn dig_until(&self, name: &str, want: &str) -> DigOutput {
        let mut last = None;
        for _ in 0..20 {
            let out = self.dig(name).await;
            if out.status.as_deref() == Some(want) {
                return out;
            }
            last = Some(out);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{name}: never {want}: {}", last.unwrap().transcript());
    }
}

/// A hotel WAN: its portal API and DNS, a DoT upstream it blocks (stopped) until login, and a router
/// running lanveil with `extra` configuration lines.
struct Hotel {
    _pki: Pki,
    upstream: DotUpstream,
    portal: FakePortal,
    wan_dns: WanDns,
    router: Router,
}

/// The hotel's side alone: its portal API and DNS, and the DoT upstream it blocks until login.
async fn hotel_wan() -> (Pki, DotUpstream, FakePortal, WanDns) {
    let pki = Pki::new();
    let dot_leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let portal_leaf = pki.leaf(&["portal.test", "login.portal.test"], &[]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&dot_leaf)).await;
    // The hotel blocks everything until the guest logs in.
    upstream.stop().await;
    let portal = FakePortal::start(&portal_leaf).await;
    let wan_dns = WanDns::start().await;
    (pki, upstream, portal, wan_dns)
}

impl Hotel {
    async fn start(extra: &str) -> Hotel {
        let (pki, upstream, portal, wan_dns) = hotel_wan().await;
        let router = Router::start(upstream.addr(), pki.ca_pem_path(), extra).await;
        Hotel {
            _pki: pki,
            upstream,
            portal,
            wan_dns,
            router,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotel_portal_plaintext_only_for_portal_names_until_free() {
    let Hotel {
        _pki,
        upstream,
        portal,
        wan_dns,
        router,
    } = Hotel::start("\toption captive_plaintext '1'\n\toption captive_poll_s '1'\n").await;

    // Before the WAN announced a portal: strict, nothing in plaintext.
    router.dig_expect("portal.test", "SERVFAIL").await;
    assert_eq!(router.status().captive.phase, "open");

    // The WAN's DHCP announced the portal (RFC 8910 option 114): the hook tells lanveil.
    let dns = wan_dns.addr().to_string();
    let (code, stdout, stderr) = router
        .hook(&["wan-portal", "set", &portal.uri(), &dns])
        .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "ok");

    // lanveil looks the API host up through the WAN's DNS (exception), asks the API, reports it.
    let c = router.wait_phase("captive").await;
    assert_eq!(c.api_uri.as_deref(), Some(portal.uri().as_str()));
    assert_eq!(
        c.user_portal_url.as_deref(),
        Some("https://login.portal.test/")
    );
    assert_eq!(c.seconds_remaining, Some(600));
    assert!(c.plaintext_allowed);
    assert!(
        c.plaintext_left_s.is_some_and(|s| s > 200 && s <= 300),
        "{c:?}"
    );
    assert_eq!(c.plaintext_names, ["portal.test.", "login.portal.test."]);
    assert_eq!(c.wan_dns, std::slice::from_ref(&dns));
    assert!(
        portal
            .accept_headers()
            .iter()
            .all(|a| a == "application/captive+json"),
        "{:?}",
        portal.accept_headers()
    );

    // LAN clients resolve the portal's names (through the exception, marked as unauthenticated) …
    for name in ["portal.test", "LOGIN.portal.test"] {
        let out = router.dig_expect(name, "NOERROR").await;
        assert_eq!(out.answer_rdata("A"), ["127.0.0.1"], "{}", out.transcript());
        let ede = out.ede.clone().unwrap();
        assert_eq!(ede.code, 0);
        assert!(
            ede.text.unwrap_or_default().contains("unauthenticated"),
            "{}",
            out.transcript()
        );
    }
    // … and nothing else: other names (and subdomains of the portal) get SERVFAIL, not the hotel's DNS.
    for name in ["example.com", "x.portal.test", "hotel.test"] {
        router.dig_expect(name, "SERVFAIL").await;
    }
    let st = router.status();
    assert!(
        st.counters
            .iter()
            .any(|(k, v)| k == "plaintext_portal" && *v == 2),
        "{:?}",
        st.counters
    );
    assert_eq!(st.captive.plaintext_queries, 2);
    // lanveil-ctl shows it to the owner.
    let ctl = lanveil_tests::util::workspace_binary("lanveil-cli", "lanveil-ctl");
    let text = tokio::process::Command::new(&ctl)
        .args(["status", "--socket", &router.control])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("captive portal captive"), "{text}");
    assert!(
        text.contains("log in at https://login.portal.test/"),
        "{text}"
    );
    assert!(
        text.contains("PLAINTEXT for portal.test., login.portal.test."),
        "{text}"
    );

    // The guest logs in: the API says free, the upstream becomes reachable.
    portal.set_captive(false);
    upstream.restart().await;
    let c = router.wait_phase("free").await;
    assert_eq!(
        c.plaintext_left_s, None,
        "the exception ends with captive: false"
    );
    let asked_before = wan_dns.names().len();
    let requests = portal.requests();
    // Everything is encrypted again, the portal's names included.
    let out = router.dig_until("example.com", "NOERROR").await;
    assert_eq!(
        out.answer_rdata("A"),
        [lanveil_tests::expected_a("example.com.").to_string()]
    );
    let out = router.dig_until("portal.test", "NOERROR").await;
    assert!(out.ede.is_none(), "{}", out.transcript());
    assert_ne!(out.answer_rdata("A"), ["127.0.0.1"], "{}", out.transcript());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(portal.requests(), requests, "no more API polling once free");
    assert_eq!(wan_dns.names().len(), asked_before);

    // The hotel's DNS only ever heard the portal's names.
    let names = wan_dns.names();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n == "portal.test" || n == "login.portal.test"),
        "{names:?}"
    );

    // A hostile WAN cannot hand lanveil a plain-http or malformed portal URI.
    for bad in [
        "http://portal.test/api",
        "https://a b/",
        "https://user@portal.test/",
    ] {
        let (code, _, stderr) = router.hook(&["wan-portal", "set", bad, &dns]).await;
        assert_eq!(code, Some(1), "{bad}");
        assert!(stderr.contains("captive-portal URI refused"), "{stderr}");
    }
    let (code, _, stderr) = router
        .hook(&["wan-portal", "set", &portal.uri(), "dns.hotel"])
        .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not an IP address"), "{stderr}");
    assert_eq!(router.status().captive.phase, "free");
    // The lease ends: back to open.
    let (code, ..) = router.hook(&["wan-portal", "clear"]).await;
    assert_eq!(code, Some(0));
    router.wait_phase("open").await;
    drop(router.process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotel_portal_without_the_owners_consent_stays_strict() {
    let Hotel {
        _pki,
        upstream: _upstream,
        portal,
        wan_dns,
        router,
    } = Hotel::start("\toption captive_poll_s '1'\n").await;
    let dns = wan_dns.addr().to_string();
    let (code, ..) = router
        .hook(&["wan-portal", "set", &portal.uri(), &dns])
        .await;
    assert_eq!(code, Some(0));
    let c = router.wait_phase("signalled").await;
    assert!(!c.plaintext_allowed);
    // The API host would need a plaintext lookup: refused, and said so.
    for _ in 0..50 {
        if router.status().captive.api_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = router.status().captive;
    assert!(
        c.api_error
            .as_deref()
            .is_some_and(|e| e.contains("plaintext lookup")),
        "{c:?}"
    );
    router.dig_expect("portal.test", "SERVFAIL").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(wan_dns.names().is_empty(), "{:?}", wan_dns.names());
    assert_eq!(portal.requests(), 0);
    drop(router.process);
}

/// A daemon that procd respawns after a crash runs no init script, so nobody replays the WAN
/// portal to it over the control socket: it reads the udhcpc hook's record itself
/// (`--wan-portal-record`, which the init script passes). A record it cannot trust is ignored
/// with a warning, and the start goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_daemon_reads_the_hooks_portal_record() {
    let (pki, upstream, portal, wan_dns) = hotel_wan().await;
    let extra = "\toption captive_plaintext '1'\n\toption captive_poll_s '1'\n";
    // The hook records bare addresses (port 53); the daemon also takes IP:PORT, as on the socket.
    let dns = wan_dns.addr().to_string();

    let root = TempDir::new("captive-wan-record");
    let record = root.join("wan_portal");
    std::fs::write(&record, format!("wan {} {dns}\n", portal.uri())).unwrap();
    let record_arg = record.display().to_string();
    let args = ["--wan-portal-record", record_arg.as_str()];
    let router = Router::start_in(root, upstream.addr(), pki.ca_pem_path(), extra, &args).await;
    let c = router.wait_phase("captive").await;
    assert_eq!(c.api_uri.as_deref(), Some(portal.uri().as_str()));
    assert_eq!(c.wan_dns, std::slice::from_ref(&dns));
    router.dig_expect("portal.test", "NOERROR").await;

    // A crash (SIGKILL: no clean-up, the control socket file stays), then the respawn with the
    // same command line: the new daemon knows the portal without any hook call.
    router.process.signal(libc::SIGKILL);
    let Router {
        _root: root,
        process,
        ..
    } = router;
    let _ = process.wait(Duration::from_secs(5)).await;
    let router = Router::start_in(root, upstream.addr(), pki.ca_pem_path(), extra, &args).await;
    let c = router.wait_phase("captive").await;
    assert_eq!(c.api_uri.as_deref(), Some(portal.uri().as_str()));
    router.dig_expect("login.portal.test", "NOERROR").await;
    let Router {
        _root: root,
        process,
        ..
    } = router;
    process.signal(libc::SIGTERM);
    let _ = process.wait(Duration::from_secs(15)).await;

    // A record a hostile WAN could have shaped: ignored, said once, and the daemon serves strictly.
    for (bad, why) in [
        (
            format!("wan http://portal.test/api {dns}"),
            "captive-portal URI refused",
        ),
        (
            format!("wan {} dns.hotel", portal.uri()),
            "not an IP address",
        ),
        ("wan".to_string(), "not INTERFACE URI"),
    ] {
        std::fs::write(&record, format!("{bad}\n")).unwrap();
        let router = Router::start_in(
            TempDir::new("captive-wan-bad"),
            upstream.addr(),
            pki.ca_pem_path(),
            extra,
            &args,
        )
        .await;
        assert_eq!(router.status().captive.phase, "open", "{bad}");
        router.dig_expect("portal.test", "SERVFAIL").await;
        let Router { process, .. } = router;
        process.signal(libc::SIGTERM);
        let (code, out) = process.wait(Duration::from_secs(15)).await;
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("ignoring the recorded WAN captive portal") && out.contains(why),
            "{bad}: {out}"
        );
    }
    drop(root);
}
