//! Faults, floods and hostile input: every client query gets an answer within its deadline, resources
//! stay bounded, and the daemon keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Host-only test code: 64-bit atomics are fine here (the rule is for router builds).
#![allow(clippy::disallowed_types)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{a_records, build_query, ede, query_udp, try_query_udp};
use lanveil_tests::gateway::{Process, config, config_for, start, wait_serving};
use lanveil_tests::upstream::answer_for;
use lanveil_tests::{DotUpstream, Pki, TempDir, UpstreamOpts, expected_a, free_tcp_udp_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Misbehave {
    Garbage,
    WrongId,
    Truncated,
    SlowDrip,
    OtherQuestion,
}

/// A DoT server that answers every query in one scripted hostile way.
async fn hostile_upstream(leaf: &lanveil_tests::Leaf, how: Misbehave) -> SocketAddr {
    let acceptor = TlsAcceptor::from(leaf.tls13_server_config(&[]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                loop {
                    let mut len = [0u8; 2];
                    if tls.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if tls.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    let Some((mut a, _)) = answer_for(&q, None) else {
                        return;
                    };
                    let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                    let result = match how {
                        Misbehave::Garbage => {
                            tls.write_all(b"\x00\x05HTTP/1.1 400 Bad Request\r\n").await
                        }
                        Misbehave::WrongId => {
                            a[0] ^= 0x55;
                            framed.extend_from_slice(&a);
                            tls.write_all(&framed).await
                        }
                        Misbehave::Truncated => {
                            framed.extend_from_slice(&a[..a.len() / 2]);
                            let _ = tls.write_all(&framed).await;
                            let _ = tls.shutdown().await;
                            return;
                        }
                        Misbehave::SlowDrip => {
                            framed.extend_from_slice(&a);
                            let mut r = Ok(());
                            for b in framed {
                                r = tls.write_all(&[b]).await;
                                let _ = tls.flush().await;
                                tokio::time::sleep(Duration::from_millis(3)).await;
                            }
                            r
                        }
                        Misbehave::OtherQuestion => {
                            // Same ID, another name: a spoofing attempt.
                            if let Some(p) = a.iter().position(|&b| b == b'x') {
                                a[p] = b'y';
                            }
                            framed.extend_from_slice(&a);
                            tls.write_all(&framed).await
                        }
                    };
                    if result.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstream_bytes_never_reach_clients_and_every_query_is_answered() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    for how in [
        Misbehave::Garbage,
        Misbehave::WrongId,
        Misbehave::Truncated,
        Misbehave::OtherQuestion,
    ] {
        let up = hostile_upstream(&leaf, how).await;
        let (running, addr) = start(config(&[(up, "dot.test")], leaf.ca_pem_path())).await;
        for i in 0..3 {
            let t0 = Instant::now();
            let m = query_udp(
                addr,
                &format!("x{i}.hostile.example."),
                RecordType::A,
                Some(1232),
            )
            .await;
            assert_eq!(m.response_code(), ResponseCode::ServFail, "{how:?}");
            assert!(ede(&m).is_some(), "{how:?}: SERVFAIL carries an EDE");
            assert!(
                t0.elapsed() < Duration::from_millis(1_300),
                "{how:?}: within the deadline: {:?}",
                t0.elapsed()
            );
        }
        let (stats, inflight) = running.stats().await.unwrap();
        assert_eq!(inflight, 0);
        assert_eq!(stats.answered, 0, "{how:?}: nothing forged passed");
        running.shutdown().await;
    }
    // A slow drip of bytes is just a slow answer: reassembled and delivered.
    let up = hostile_upstream(&leaf, Misbehave::SlowDrip).await;
    let (running, addr) = start(config(&[(up, "dot.test")], leaf.ca_pem_path())).await;
    let m = query_udp(addr, "drip.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("drip.example.")]);
    running.shutdown().await;
}

fn status_field(pid: i32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The real binary under a 100k-query flood from one source to a stalled upstream, and 5k idle TCP
/// connections: memory and descriptors stay bounded, other clients keep getting answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_and_idle_tcp_clients_stay_bounded_and_others_are_served() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let dir = TempDir::new("lanveil-flood");
    let listen = SocketAddr::new(LOCAL, free_tcp_udp_port(LOCAL));
    let conf = format!(
        "config lanveil 'main'\n\tlist listen '{listen}'\n\toption query_timeout_ms '1000'\n\toption client_limit_loopback '1'\n\
         \toption log_level 'warn'\n\nconfig upstream 'u'\n\toption url 'tls://{}#dot.test'\n\toption ca_file '{}'\n",
        up.addr(),
        leaf.ca_pem_path().display()
    );
    let path = dir.write("lanveil", conf);
    let p = Process::spawn(&["--config", path.to_str().unwrap()]);
    wait_serving(listen).await;
    let pid = p.pid();
    // Warm the cache for the legitimate client, then stall the upstream.
    let warm = query_udp(listen, "family.example.", RecordType::A, None).await;
    assert_eq!(a_records(&warm), [expected_a("family.example.")]);
    up.set_stall(true);
    let rss_before = status_field(pid, "VmRSS:");

    // 100k queries, unique names, from one flooding source as fast as the socket takes them.
    let flood = tokio::spawn(async move {
        let s = Arc::new(tokio::net::UdpSocket::bind("127.0.0.66:0").await.unwrap());
        let rx = s.clone();
        let counter = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut got = 0usize;
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(2), rx.recv_from(&mut buf)).await
            {
                got += 1;
            }
            got
        });
        let queries: Vec<Vec<u8>> = (0..100_000u32)
            .map(|i| {
                build_query(&format!("f{i}.flood.example."), RecordType::A, None)
                    .to_vec()
                    .unwrap()
            })
            .collect();
        for (i, q) in queries.iter().enumerate() {
            let _ = s.send_to(q, listen).await;
            if i % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
        counter.await.unwrap()
    });
    // Meanwhile the family keeps asking (from another source) and keeps getting answers.
    let answered = Arc::new(AtomicUsize::new(0));
    let worst = Arc::new(AtomicU64::new(0));
    let mut lost = 0;
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)), 0);
    // Like a real stub resolver (dig: 3 tries), the family asks up to three times, 1 s apart: a
    // datagram the kernel dropped while the socket buffer was full of flood is asked again. (With two
    // tries this failed now and then on a 2-core machine also busy with builds: both datagrams of one
    // question were dropped by the kernel before lanveil could read them.)
    let mut first_try_misses = 0;
    while !flood.is_finished() {
        let t0 = Instant::now();
        let s = tokio::net::UdpSocket::bind(client).await.unwrap();
        let q = build_query("family.example.", RecordType::A, None)
            .to_vec()
            .unwrap();
        let mut buf = [0u8; 512];
        let mut ok = false;
        for attempt in 0..3 {
            s.send_to(&q, listen).await.unwrap();
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), s.recv_from(&mut buf)).await
            {
                ok = true;
                break;
            }
            if attempt == 0 {
                first_try_misses += 1;
            }
        }
        if ok {
            answered.fetch_add(1, Ordering::Relaxed);
            worst.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        } else {
            lost += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood_answers = flood.await.unwrap();
    let peak = status_field(pid, "VmHWM:");
    eprintln!(
        "flood: family answered {}, lost {lost} (first-try misses {first_try_misses}), worst {} us; flooder got {flood_answers} answers; \
         lanveil RSS before {rss_before} KiB, peak {peak} KiB, fds {}",
        answered.load(Ordering::Relaxed),
        worst.load(Ordering::Relaxed),
        fd_count(pid)
    );
    assert_eq!(lost, 0, "the family lost answers during the flood");
    assert!(answered.load(Ordering::Relaxed) > 0);
    assert!(
        peak < 40 * 1024,
        "peak RSS {peak} KiB (debug build) is bounded"
    );

    // 5k idle TCP connections from two sources: at most max_tcp_clients kept, per-source cap 16,
    // and a TCP client from a third source is still served.
    let mut idle = Vec::new();
    for i in 0..5_000u32 {
        let src = Ipv4Addr::new(127, 0, 1, 1 + (i % 2) as u8);
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(IpAddr::V4(src), 0)).unwrap();
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), sock.connect(listen)).await
        {
            idle.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds = fd_count(pid);
    eprintln!(
        "idle TCP: {} connects attempted, lanveil holds {fds} fds",
        idle.len()
    );
    assert!(
        fds < 16 * 2 + 40,
        "lanveil keeps only the per-source share of idle connections: {fds} fds"
    );
    up.set_stall(false);
    let m = lanveil_tests::client::query_tcp(listen, "family.example.", RecordType::A, None).await;
    assert_eq!(m.response_code(), ResponseCode::NoError);
    drop(idle);
    p.signal(libc::SIGTERM);
    let (code, _) = p.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
}

/// Load with faults mixed in: two upstreams, each broken in turn (reset, stall, SERVFAIL, restart).
/// No client query may go unanswered, and every answer comes within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_mixed_faults_loses_no_answer() {
    let secs: u64 = std::env::var("LANVEIL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let a = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let b = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let mut cfg = config(
        &[(a.addr(), "dot.test"), (b.addr(), "dot.test")],
        leaf.ca_pem_path(),
    );
    cfg.limits.query_timeout_ms = 2_500;
    let (running, addr) = start(cfg).await;
    let end = Instant::now() + Duration::from_secs(secs);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut sent, mut lost, mut worst) = (0u64, 0u64, Duration::ZERO);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Mostly unique names (every one crosses TLS), some repeats (cache, stale).
                let name = if i.is_multiple_of(5) {
                    format!("r{}.soak.example.", i % 17)
                } else {
                    format!("c{c}-{i}.soak.example.")
                };
                let t0 = Instant::now();
                sent += 1;
                match try_query_udp(addr, &name, RecordType::A, Some(1232)).await {
                    Ok(m)
                        if matches!(
                            m.response_code(),
                            ResponseCode::NoError | ResponseCode::ServFail
                        ) =>
                    {
                        worst = worst.max(t0.elapsed());
                    }
                    _ => lost += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (sent, lost, worst)
        }));
    }
    let mut step = 0;
    while Instant::now() < end {
        let (victim, other) = if step % 2 == 0 { (&a, &b) } else { (&b, &a) };
        other.set_stall(false);
        other.set_servfail(false);
        match step % 4 {
            0 => victim.kill_connections(),
            1 => victim.set_stall(true),
            2 => victim.set_servfail(true),
            _ => {
                victim.stop().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                victim.restart().await;
            }
        }
        step += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut lost, mut worst) = (0, 0, Duration::ZERO);
    for c in clients {
        let (s, l, w) = c.await.unwrap();
        sent += s;
        lost += l;
        worst = worst.max(w);
    }
    let (stats, inflight) = running.stats().await.unwrap();
    eprintln!(
        "soak {secs}s: sent {sent}, lost {lost}, worst {worst:?}, answered by upstream {}, servfail {}, stale {}, hedged {}, retries {}",
        stats.answered, stats.servfail, stats.stale_answers, stats.hedged, stats.retries
    );
    assert_eq!(lost, 0, "answers lost");
    assert!(
        worst <= Duration::from_millis(2_700),
        "worst answer {worst:?}"
    );
    assert!(
        stats.answered > sent / 2,
        "most answers came from an upstream"
    );
    running.shutdown().await;
    assert!(inflight < 64);
    let _ = config_for;
}

/// The driver task's end is reported while the listeners still stand: the daemon's main loop exits
/// on it (so procd restarts lanveil) instead of keeping sockets that no longer answer. A panic in
/// the engine ends the task as the abort here does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_driver_is_reported() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let (mut running, addr) = start(config_for(upstream.addr(), &leaf)).await;
    let mut gone = running.take_driver_gone().expect("taken once");
    assert!(running.take_driver_gone().is_none());
    let m = query_udp(addr, "before.example.", RecordType::A, None).await;
    assert_eq!(a_records(&m), [expected_a("before.example.")]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut gone)
            .await
            .is_err(),
        "reported while the driver runs"
    );
    running.abort_driver();
    tokio::time::timeout(Duration::from_secs(2), gone)
        .await
        .expect("the driver's end was not reported");
    // What the main loop does next: no answer comes any more.
    assert!(
        try_query_udp(addr, "after.example.", RecordType::A, None)
            .await
            .is_err()
    );
    running.shutdown().await;
}
