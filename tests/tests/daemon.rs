//! The real `lanveil` binary: command line, configuration errors, signals, privilege drop, logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{a_records, ede, query_udp, try_query_udp};
use lanveil_tests::gateway::{Process, wait_serving};
use lanveil_tests::{DotUpstream, Pki, TempDir, UpstreamOpts, expected_a, free_tcp_udp_port};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn conf(listen: SocketAddr, upstream: SocketAddr, ca: &std::path::Path, extra: &str) -> String {
    format!(
        "config lanveil 'main'\n\tlist listen '{listen}'\n\toption query_timeout_ms '1500'\n{extra}\n\
         config upstream 'test'\n\toption url 'tls://{upstream}#dot.test'\n\toption ca_file '{}'\n",
        ca.display()
    )
}

/// Asks new names under `zone` (the cache would answer a repeat without asking any upstream) until
/// `up` has been asked one, within 5 s; else fails with `what`.
async fn query_until_asked(listen: SocketAddr, up: &DotUpstream, zone: &str, what: &str) {
    let t0 = Instant::now();
    let mut n = 0;
    while up.queries() == 0 {
        n += 1;
        let _ = try_query_udp(listen, &format!("n{n}.{zone}."), RecordType::A, None).await;
        assert!(t0.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn listen_addr() -> SocketAddr {
    SocketAddr::new(LOCAL, free_tcp_udp_port(LOCAL))
}

#[tokio::test]
async fn check_config_names_file_line_key_and_reason() {
    let dir = TempDir::new("lanveil-check");
    let good = dir.write(
        "good",
        "config lanveil 'main'\n\tlist listen '127.0.0.1:53'\n\nconfig upstream 'q'\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n",
    );
    let (code, _) = Process::spawn(&["--check-config", good.to_str().unwrap()])
        .wait(Duration::from_secs(10))
        .await;
    assert_eq!(code, Some(0));

    let cases = [
        (
            "config lanveil 'main'\n\toption query_timeout_ms 'fast'\n",
            ":2: lanveil[main].query_timeout_ms: must be a whole number from 100 to 30000",
        ),
        (
            "config upstream 'q'\n\toption url 'tls://dns.quad9.net#dns.quad9.net'\n",
            ":2: upstream[q].url: bad upstream URL",
        ),
        (
            "config upstream 'q'\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n\tlist pin 'sha256/short'\n",
            ":3: upstream[q].pin: bad SPKI pin",
        ),
        (
            "config lanveil 'main'\n\toption bogus '1'\n",
            ":2: lanveil[main].bogus: unknown option",
        ),
        (
            "config lanveil 'main'\n\toption log_level 'loud\n",
            ":2: lanveil[main].log_level: syntax error: unterminated ' quote",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.write(&format!("bad{i}"), text);
        let (code, stderr) = Process::spawn(&["--check-config", path.to_str().unwrap()])
            .wait(Duration::from_secs(10))
            .await;
        assert_eq!(code, Some(2), "{text}");
        let expected = format!("{}{want}", path.display());
        assert!(
            stderr.contains(&expected),
            "stderr {stderr:?} should contain {expected:?}"
        );
    }
    // The daemon refuses to start on a bad file the same way, and on bad flags.
    let bad = dir.write("bad-run", cases[0].0);
    let (code, stderr) = Process::spawn(&["--config", bad.to_str().unwrap()])
        .wait(Duration::from_secs(10))
        .await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("query_timeout_ms"), "{stderr}");
    let (code, stderr) = Process::spawn(&["--upstream", "8.8.8.8"])
        .wait(Duration::from_secs(10))
        .await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--upstream 8.8.8.8: bad upstream URL"),
        "{stderr}"
    );
    let (code, stdout_ok) = Process::spawn(&["--version"])
        .wait(Duration::from_secs(10))
        .await;
    assert_eq!(code, Some(0), "{stdout_ok}");
}

/// What only a start would find (here a CA bundle that cannot be read; also a transport the build lacks) is
/// found by `--check-config` too, and a start with `--last-good` runs on that copy instead of
/// exiting (a restart loop that leaves a wired LAN refused).
#[tokio::test]
async fn check_config_and_last_good_cover_what_only_a_start_finds() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-startable");
    let listen = listen_addr();
    let missing = dir.join("no-such-ca.pem");
    let no_ca = dir.write("no-ca", conf(listen, up.addr(), &missing, ""));
    let (code, stderr) = Process::spawn(&["--check-config", no_ca.to_str().unwrap()])
        .wait(Duration::from_secs(10))
        .await;
    assert_eq!(code, Some(2), "{stderr}");
    let want = format!(
        "{}: upstream test: cannot read CA bundle {}",
        no_ca.display(),
        missing.display()
    );
    assert!(stderr.contains(&want), "{stderr:?} should contain {want:?}");
    // Started on it with a good copy: serves on the copy, says why.
    let copy = dir.write("last-good", conf(listen, up.addr(), leaf.ca_pem_path(), ""));
    let p = Process::spawn(&[
        "--config",
        no_ca.to_str().unwrap(),
        "--last-good",
        copy.to_str().unwrap(),
    ]);
    wait_serving(listen).await;
    let m = query_udp(listen, "copy.startable.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("copy.startable.test.")]);
    p.signal(libc::SIGTERM);
    let (code, stdout, stderr) = p.wait_apart(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "{stderr}{stdout}");
    assert!(
        stderr.contains(&want) && stderr.contains("starting on the last good configuration"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_validated_config_and_sigterm_drains() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up1 = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let up2 = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-reload");
    let listen = listen_addr();
    let path = dir.write("lanveil", conf(listen, up1.addr(), leaf.ca_pem_path(), ""));
    let p = Process::spawn(&["--config", path.to_str().unwrap()]);
    wait_serving(listen).await;
    let base = up1.queries();
    let m = query_udp(listen, "one.reload.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("one.reload.test.")]);

    // A broken file on SIGHUP: error logged with file and line, old config keeps serving.
    dir.write(
        "lanveil",
        "config lanveil 'main'\n\toption max_inflight '0'\n",
    );
    p.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = query_udp(listen, "two.reload.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("two.reload.test.")]);
    assert_eq!(up1.queries(), base + 2);

    // A good file switches the upstream without dropping the listener.
    dir.write("lanveil", conf(listen, up2.addr(), leaf.ca_pem_path(), ""));
    p.signal(libc::SIGHUP);
    query_until_asked(listen, &up2, "reload.test", "reload did not take effect").await;

    // SIGTERM with a query in flight: it is answered, then lanveil exits 0.
    let inflight = tokio::spawn(async move {
        try_query_udp(listen, "delay-400.drain.test.", RecordType::A, None).await
    });
    assert!(
        up2.wait_for(Duration::from_secs(3), |h| h.received().len() >= 2)
            .await
            || up2.queries() >= 2
    );
    p.signal(libc::SIGTERM);
    let answer = inflight
        .await
        .unwrap()
        .expect("the in-flight query is answered while draining");
    assert_eq!(a_records(&answer), [expected_a("delay-400.drain.test.")]);
    let (code, stdout, stderr) = p.wait_apart(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "{stderr}{stdout}");
    // Errors on stderr, information on stdout: procd logs them at daemon.err and daemon.info.
    let path_shown = format!("{}:2: lanveil[main].max_inflight", path.display());
    assert!(
        stderr.contains(&path_shown),
        "reload error names file and line: {stderr}"
    );
    assert!(
        stderr.contains("error: reload failed, keeping the running configuration"),
        "{stderr}"
    );
    assert!(stdout.contains("info: configuration reloaded"), "{stdout}");
    assert!(
        stderr.lines().all(|l| !l.starts_with("lanveil: info:")),
        "information on stderr: {stderr}"
    );
    assert!(
        stdout
            .lines()
            .all(|l| !l.starts_with("lanveil: error:") && !l.starts_with("lanveil: warn:")),
        "an error on stdout: {stdout}"
    );
}

/// `--last-good COPY`: the daemon keeps the file it started or reloaded cleanly from (written only
/// when it changed, never an invalid one), and a start whose file is invalid (an edit nothing
/// checked, then a restart or a reboot) runs on the copy and says so; a fixed file then applies on
/// SIGHUP. Without a usable copy an invalid file still refuses the start.
#[tokio::test]
async fn a_start_with_an_invalid_file_runs_on_the_last_good_copy() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up1 = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let up2 = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-last-good");
    let listen = listen_addr();
    let good = conf(listen, up1.addr(), leaf.ca_pem_path(), "");
    let path = dir.write("lanveil", &good);
    let copy = dir.join("last-good");
    let args = [
        "--config",
        path.to_str().unwrap(),
        "--last-good",
        copy.to_str().unwrap(),
    ];
    let p = Process::spawn(&args);
    wait_serving(listen).await;
    // Written once the daemon runs (after the privilege drop).
    let t0 = Instant::now();
    while std::fs::read_to_string(&copy).ok().as_deref() != Some(good.as_str()) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "no last good copy kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A reload of the same file leaves the copy alone (flash: written only when it changed).
    let inode = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&copy).unwrap().ino()
    };
    let before = inode();
    dir.write("lanveil", &good);
    p.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inode(), before, "the unchanged copy was written again");
    // An invalid file on SIGHUP is refused and not kept.
    let bad = "config lanveil 'main'\n\toption max_inflight '0'\n";
    dir.write("lanveil", bad);
    p.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), good);
    p.signal(libc::SIGTERM);
    let (code, out) = p.wait(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "{out}");

    // Restarted with the invalid file: it serves on the copy and says why.
    let p = Process::spawn(&args);
    wait_serving(listen).await;
    let m = query_udp(listen, "one.last-good.test.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("one.last-good.test.")]);
    assert!(up1.queries() > 0);
    // Fixed (another upstream) and reloaded: applied, and kept as the new copy.
    let fixed = conf(listen, up2.addr(), leaf.ca_pem_path(), "");
    dir.write("lanveil", &fixed);
    p.signal(libc::SIGHUP);
    query_until_asked(
        listen,
        &up2,
        "last-good.test",
        "the fixed file was not applied",
    )
    .await;
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), fixed);
    p.signal(libc::SIGTERM);
    let (code, stdout, stderr) = p.wait_apart(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "{stderr}{stdout}");
    assert!(
        stderr.contains(&format!("{}:2: lanveil[main].max_inflight", path.display()))
            && stderr.contains("starting on the last good configuration"),
        "{stderr}"
    );

    // No usable copy: the invalid file refuses the start (exit 2), as without --last-good.
    dir.write("lanveil", bad);
    std::fs::write(&copy, bad).unwrap();
    let p = Process::spawn(&args);
    let (code, out) = p.wait(Duration::from_secs(5)).await;
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), bad);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_root_after_binding_and_logs_no_names_or_addresses() {
    assert!(
        lanveil::sys::is_root(),
        "this test checks the switch from root; run the suite as root (CI does)"
    );
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-priv");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // A privileged port proves the bind happened as root; the rest runs as nobody.
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 53);
    let path = dir.write(
        "lanveil",
        conf(
            listen,
            up.addr(),
            leaf.ca_pem_path(),
            "\toption user 'nobody'\n\toption log_level 'info'\n",
        ),
    );
    let p = Process::spawn(&["--config", path.to_str().unwrap()]);
    wait_serving(listen).await;
    // The switch happens right after binding: wait for it (bounded).
    let mut status = String::new();
    for _ in 0..100 {
        status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
        if status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(field("Gid:"), ["65534"; 4], "{status}");
    assert_eq!(field("CapEff:"), ["0000000000000000"]);
    assert_eq!(field("CapPrm:"), ["0000000000000000"]);

    // Some traffic, including failures, with a distinctive name, from a distinctive client address.
    let client = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
    let q = lanveil_tests::client::build_query("very-private-name.example.", RecordType::A, None);
    client.send_to(&q.to_vec().unwrap(), listen).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(a_records(&m), [expected_a("very-private-name.example.")]);
    up.set_stall(true);
    let m = query_udp(
        listen,
        "another-private-name.example.",
        RecordType::A,
        Some(1232),
    )
    .await;
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(ede(&m).is_some());
    p.signal(libc::SIGTERM);
    let (code, stderr) = p.wait(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0));
    assert!(stderr.contains("running as nobody"), "{stderr}");
    assert!(
        !stderr.contains("private-name"),
        "a query name was logged: {stderr}"
    );
    assert!(
        !stderr.contains("127.0.0.9"),
        "a client address was logged: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_arguments_runs_the_builtin_default() {
    // Built-in default: 127.0.0.1:5353, Quad9 over strict DoT. This machine may have no internet: then
    // the answer must be a prompt SERVFAIL with an EDE; with internet, a real answer.
    let p = Process::spawn(&[]);
    let listen: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    wait_serving(listen).await;
    let t0 = Instant::now();
    let m = query_udp(listen, "example.com.", RecordType::A, Some(1232)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "answered within the 2.5 s deadline"
    );
    match m.response_code() {
        ResponseCode::NoError => assert!(!m.answers().is_empty()),
        ResponseCode::ServFail => assert!(ede(&m).is_some(), "SERVFAIL without EDE"),
        other => panic!("unexpected {other:?}"),
    }
    p.signal(libc::SIGTERM);
    let (code, stderr) = p.wait(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("tls://9.9.9.9:853#dns.quad9.net"),
        "{stderr}"
    );
    // Started as root with no `user` to switch to: said, not silent.
    let root = lanveil::sys::is_root();
    assert_eq!(
        stderr.contains("running as root: set option user"),
        root,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_reports_status_log_and_reloads() {
    use lanveil::config::control::Response;
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-control");
    let listen = listen_addr();
    let sock = dir.join("run/control.sock");
    let extra = format!(
        "\toption control_socket '{}'\n\toption query_log '10'\n",
        sock.display()
    );
    let path = dir.write(
        "lanveil",
        conf(listen, up.addr(), leaf.ca_pem_path(), &extra),
    );
    let p = Process::spawn(&["--config", path.to_str().unwrap()]);
    wait_serving(listen).await;
    let m = query_udp(listen, "status.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("status.example.")]);

    let ask = |what: &'static str| {
        let sock = sock.clone();
        async move {
            let out = tokio::process::Command::new(lanveil_tests::gateway::binary())
                .args(["--control", sock.to_str().unwrap(), what])
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Response::decode(&out.stdout).expect("a control response envelope")
        }
    };
    let Response::Status(s) = ask("status").await else {
        panic!("not a status")
    };
    assert!(s.version.starts_with("lanveil "));
    assert_eq!(s.config_file.as_deref(), path.to_str());
    assert!(s.clock_synchronized);
    assert_eq!(s.upstreams.len(), 1);
    assert!(s.upstreams[0].up);
    assert!(s.upstreams[0].srtt_ms.is_some());
    let not_after = s.upstreams[0]
        .cert_not_after
        .expect("certificate expiry reported");
    assert!(
        not_after > s.wall_unix + 300 * 86_400,
        "the test leaf is valid for a year"
    );
    let counter = |k: &str| s.counters.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(counter("answered"), Some(1));
    // Every engine counter is reported, including those once counted and never shown.
    for (name, _) in lanveil_core::engine::Stats::default().counters() {
        assert!(counter(name).is_some(), "{name} missing: {:?}", s.counters);
    }
    for name in [
        "badvers",
        "late_answers",
        "rate_limited",
        "client_overloaded",
        "dns64_synthesized",
    ] {
        assert_eq!(counter(name), Some(0), "{name}");
    }
    let Response::QueryLog(log) = ask("log").await else {
        panic!("not a log")
    };
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].name.as_str(), log[0].source.as_str()),
        ("status.example.", "upstream")
    );

    // Reload over the socket: a bad file is refused with file and line, a good one applied.
    dir.write("lanveil", "config lanveil 'main'\n\toption cache 'maybe'\n");
    let Response::Reloaded(Err(e)) = ask("reload").await else {
        panic!("bad reload accepted")
    };
    assert!(
        e.contains(&format!("{}:2: lanveil[main].cache", path.display())),
        "{e}"
    );
    dir.write(
        "lanveil",
        conf(listen, up.addr(), leaf.ca_pem_path(), &extra),
    );
    assert_eq!(ask("reload").await, Response::Reloaded(Ok(())));
    p.signal(libc::SIGTERM);
    let (code, _) = p.wait(Duration::from_secs(5)).await;
    assert_eq!(code, Some(0));
    assert!(!sock.exists(), "socket removed on exit");
}
