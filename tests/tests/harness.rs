//! Self-tests of the integration-test harness (`lanveil_tests`): each piece
//! is checked against real things (dig, kdig, openssl, unbound, rustls) so
//! that a lanveil test failing later can be trusted to be lanveil's fault.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use lanveil_tests::client::{
    self, a_records, aaaa_records, build_query, dot_client_config, ede, txt_records,
};
use lanveil_tests::unbound::{INTEROP_A, INTEROP_AAAA, INTEROP_NAME, INTEROP_TXT};
use lanveil_tests::upstream::expected_big_txt;
use lanveil_tests::util::require_program;
use lanveil_tests::{
    ClientError, Decoy, DotClient, DotUpstream, Leaf, Pki, Unbound, UpstreamOpts, dig, expected_a,
    expected_aaaa, kdig,
};

/// Hard bound on every test body.
const LIMIT: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(3);
const HOST: &str = "dot.test";
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test exceeded its time bound")
}

fn leaf(pki: &Pki) -> Leaf {
    pki.leaf(&[HOST], &[LO])
}

async fn upstream(leaf: &Leaf) -> DotUpstream {
    DotUpstream::start(UpstreamOpts::new(leaf)).await
}

/// A leaf for `HOST` and 127.0.0.1 from a CA of its own, and an upstream presenting it.
async fn fresh_upstream() -> (Leaf, DotUpstream) {
    let leaf = leaf(&Pki::new());
    let up = upstream(&leaf).await;
    (leaf, up)
}

async fn connect(addr: SocketAddr, leaf: &Leaf) -> DotClient {
    DotClient::connect(addr, HOST, leaf.root_store())
        .await
        .expect("DoT connect")
}

/// Asks `c` for `name`'s A record: the upstream's answer for it (the name's case and final dot aside).
async fn assert_a(c: &mut DotClient, name: &str) {
    let r = c.query(name, RecordType::A, None).await.unwrap();
    assert_eq!(a_records(&r), vec![expected_a(name)], "{name}");
}

fn dig_tls_args(addr: SocketAddr, ca: &std::path::Path, host: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("@{}", addr.ip()),
        "-p".to_owned(),
        addr.port().to_string(),
        "+tls".to_owned(),
        format!("+tls-ca={}", ca.display()),
        format!("+tls-hostname={host}"),
    ];
    v.extend(rest.iter().map(|s| (*s).to_owned()));
    v
}

async fn sh(script: &str) -> String {
    let out = tokio::time::timeout(
        SHORT * 5,
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("shell command timed out")
    .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// ---------------------------------------------------------------- pki

#[tokio::test]
async fn pin_equals_openssl_computation() {
    bounded(async {
        require_program("openssl", "openssl");
        let pki = Pki::new();
        let leaf = leaf(&pki);
        let pipeline = |pem: &std::path::Path| {
            format!(
                "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
                 | openssl dgst -sha256 -binary | base64",
                pem.display()
            )
        };
        let leaf_b64 = sh(&pipeline(leaf.cert_pem_path())).await;
        assert_eq!(leaf.spki_pin(), format!("sha256/{leaf_b64}"));
        let ca_b64 = sh(&pipeline(pki.ca_pem_path())).await;
        assert_eq!(pki.ca_spki_pin(), format!("sha256/{ca_b64}"));
        assert_ne!(leaf.spki_pin(), pki.ca_spki_pin());
        // The chain verifies with openssl, and the key file matches the cert.
        let verify = sh(&format!(
            "openssl verify -CAfile '{}' '{}'",
            pki.ca_pem_path().display(),
            leaf.cert_pem_path().display()
        ))
        .await;
        assert!(verify.ends_with("OK"), "{verify}");
        let key_pub = sh(&format!(
            "openssl pkey -in '{}' -pubout -outform der | openssl dgst -sha256 -binary | base64",
            leaf.key_pem_path().display()
        ))
        .await;
        assert_eq!(key_pub, leaf_b64);
        // Expired / not-yet-valid leaves really are, per openssl.
        let expired = pki.expired_leaf(&[HOST], &[]);
        let future = pki.not_yet_valid_leaf(&[HOST], &[]);
        for (l, what) in [(&expired, "expired"), (&future, "not yet valid")] {
            let out = sh(&format!(
                "openssl verify -CAfile '{}' '{}' 2>&1 || true",
                pki.ca_pem_path().display(),
                l.cert_pem_path().display()
            ))
            .await;
            assert!(!out.ends_with(": OK"), "{what} leaf verified: {out}");
            assert!(out.contains("certificate"), "{what}: {out}");
        }
    })
    .await;
}

// ---------------------------------------------------------------- upstream with real clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_tls_gets_expected_a() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        let name = "Www.Example.ORG.";
        let out = dig(&dig_tls_args(
            up.addr(),
            leaf.ca_pem_path(),
            HOST,
            &[name, "A"],
        ))
        .await;
        out.assert_answers("NOERROR", "A", &[expected_a("www.example.org")]);
        assert!(out.has_flag("qr") && out.has_flag("rd") && out.has_flag("ra"));
        assert!(!out.has_flag("tc"));
        assert_eq!(out.edns_udp, Some(1232), "{}", out.transcript());
        assert_eq!(up.handshakes(), 1);
        let conns = up.connections();
        assert_eq!(conns.len(), 1);
        // BIND 9.18's dig verifies +tls-hostname but sends no SNI.
        assert_eq!(conns[0].sni, None);
        assert_eq!(conns[0].version, rustls::ProtocolVersion::TLSv1_3);
        // What dig sent was recorded byte for byte, question case preserved.
        let got = up.received_messages();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].queries()[0].name().to_ascii(), name);
        assert_eq!(up.queries(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdig_with_pin_gets_expected_aaaa_and_wrong_pin_fails() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        let pin = leaf.spki_pin();
        let b64 = pin.strip_prefix("sha256/").unwrap();
        let args = |pin: &str| {
            vec![
                format!("@{}", up.addr().ip()),
                "-p".to_owned(),
                up.addr().port().to_string(),
                "+tls".to_owned(),
                format!("+tls-pin={pin}"),
                "v6.example.".to_owned(),
                "AAAA".to_owned(),
            ]
        };
        let out = kdig(&args(b64)).await;
        out.assert_answers("NOERROR", "AAAA", &[expected_aaaa("v6.example")]);
        let other = Pki::new().leaf(&[HOST], &[]).spki_pin();
        let bad = kdig(&args(other.strip_prefix("sha256/").unwrap())).await;
        assert_eq!(bad.status, None, "wrong pin accepted: {}", bad.transcript());
        assert_eq!(
            up.queries(),
            1,
            "the wrong-pin client must not send its query"
        );
        // kdig sends no SNI without +tls-hostname.
        assert_eq!(up.connections()[0].sni, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_rejects_wrong_ca_and_expired_certificate() {
    bounded(async {
        let pki = Pki::new();
        let good = leaf(&pki);
        let rogue = Pki::new().leaf(&[HOST], &[LO]);
        let expired = pki.expired_leaf(&[HOST], &[LO]);
        for (presented, what) in [(&rogue, "wrong CA"), (&expired, "expired")] {
            let up = upstream(presented).await;
            let out = dig(&dig_tls_args(
                up.addr(),
                good.ca_pem_path(),
                HOST,
                &["x.example."],
            ))
            .await;
            assert_eq!(
                out.status,
                None,
                "{what}: got an answer: {}",
                out.transcript()
            );
            // dig 9.18 exits 0 here: the status line is what tells.
            assert!(
                out.stdout.contains("verification") && out.stdout.contains("failed"),
                "{what}: {}",
                out.transcript()
            );
            assert_eq!(up.queries(), 0, "{what}: a query leaked");
            assert_eq!(up.handshakes(), 0, "{what}: handshake completed");
        }
        // Control: the same command against the good leaf works.
        let up = upstream(&good).await;
        let out = dig(&dig_tls_args(
            up.addr(),
            good.ca_pem_path(),
            HOST,
            &["x.example."],
        ))
        .await;
        assert_eq!(out.status_str(), "NOERROR", "{}", out.transcript());
        // And the hostname is checked too.
        let out = dig(&dig_tls_args(
            up.addr(),
            good.ca_pem_path(),
            "other.test",
            &["x.example."],
        ))
        .await;
        assert_eq!(
            out.status,
            None,
            "wrong hostname accepted: {}",
            out.transcript()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deterministic_answers_echo_id_question_and_edns() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        let mut c = connect(up.addr(), &leaf).await;

        // ID and question bytes are echoed exactly; RD copied, QR/RA set.
        let q = build_query("MiXeD.Case.example.", RecordType::A, Some(4096));
        let qbytes = q.to_vec().unwrap();
        c.send(&qbytes).await.unwrap();
        let rbytes = c.recv(SHORT).await.unwrap();
        let qlen = "MiXeD.Case.example.".len() + 1 + 4;
        assert_eq!(rbytes[..2], qbytes[..2]);
        assert_eq!(rbytes[12..12 + qlen], qbytes[12..12 + qlen]);
        let r = Message::from_vec(&rbytes).unwrap();
        assert!(r.recursion_desired() && r.recursion_available());
        assert_eq!(a_records(&r), vec![expected_a("mixed.case.example")]);
        assert_eq!(r.extensions().as_ref().unwrap().max_payload(), 1232);
        assert_eq!(up.received().last().unwrap(), &qbytes);

        // No OPT in, no OPT out.
        let r = c
            .query("plain.example.", RecordType::AAAA, None)
            .await
            .unwrap();
        assert!(r.extensions().is_none());
        assert_eq!(aaaa_records(&r), vec![expected_aaaa("plain.example.")]);

        let r = c
            .query("nx.example.", RecordType::A, Some(1232))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        let r = c
            .query("servfail.example.", RecordType::A, Some(1232))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::ServFail);
        let r = c
            .query("mx.example.", RecordType::MX, Some(1232))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
        assert_eq!(r.queries()[0].query_type(), RecordType::MX);

        // big-N: a TXT answer of N bytes that cannot fit a 1232-byte datagram.
        let q = build_query("big-3000.example.", RecordType::TXT, Some(1232));
        c.send(&q.to_vec().unwrap()).await.unwrap();
        let raw = c.recv(SHORT).await.unwrap();
        assert!(raw.len() > 3000, "{}", raw.len());
        let r = Message::from_vec(&raw).unwrap();
        let txt = txt_records(&r);
        assert_eq!(txt.len(), 1);
        assert_eq!(txt[0].len(), 3000);
        assert_eq!(txt[0], expected_big_txt(3000).concat());
        assert_eq!(up.handshakes(), 1, "all on one connection");
        assert_eq!(up.queries(), 6);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ede_option_reaches_client_and_dig() {
    bounded(async {
        let pki = Pki::new();
        let leaf = leaf(&pki);
        let up = DotUpstream::start(UpstreamOpts {
            add_ede: Some((22, "upstream says no".to_owned())),
            ..UpstreamOpts::new(&leaf)
        })
        .await;
        let mut c = connect(up.addr(), &leaf).await;
        let r = c
            .query("servfail.example.", RecordType::A, Some(1232))
            .await
            .unwrap();
        assert_eq!(ede(&r), Some((22, "upstream says no".to_owned())));

        up.set_ede(Some((18, "prohibited here".to_owned())));
        let out = dig(&dig_tls_args(
            up.addr(),
            leaf.ca_pem_path(),
            HOST,
            &["servfail.example."],
        ))
        .await;
        assert_eq!(out.status_str(), "SERVFAIL", "{}", out.transcript());
        let e = out
            .ede
            .clone()
            .unwrap_or_else(|| panic!("no EDE: {}", out.transcript()));
        assert_eq!(e.code, 18);
        assert_eq!(e.purpose.as_deref(), Some("Prohibited"));
        assert_eq!(
            e.text.as_deref(),
            Some("prohibited here"),
            "{}",
            out.transcript()
        );

        let out = kdig(&[
            format!("@{}", up.addr().ip()),
            "-p".into(),
            up.addr().port().to_string(),
            "+tls".into(),
            format!("+tls-ca={}", leaf.ca_pem_path().display()),
            format!("+tls-hostname={HOST}"),
            "servfail.example.".into(),
        ])
        .await;
        assert_eq!(out.status_str(), "SERVFAIL", "{}", out.transcript());
        assert_eq!(
            up.connections().last().unwrap().sni.as_deref(),
            Some(HOST),
            "kdig sends SNI"
        );
        let e = out
            .ede
            .clone()
            .unwrap_or_else(|| panic!("no EDE: {}", out.transcript()));
        assert_eq!(
            (e.code, e.text.as_deref()),
            (18, Some("prohibited here")),
            "{}",
            out.transcript()
        );

        up.set_ede(None);
        let r = c
            .query("servfail.example.", RecordType::A, Some(1232))
            .await
            .unwrap();
        assert_eq!(ede(&r), None);
    })
    .await;
}

// ---------------------------------------------------------------- pipelining and faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversed_batches_come_back_reversed() {
    bounded(async {
        let pki = Pki::new();
        let leaf = leaf(&pki);
        let up = DotUpstream::start(UpstreamOpts {
            reverse_batches: Some(4),
            ..UpstreamOpts::new(&leaf)
        })
        .await;
        let mut c = connect(up.addr(), &leaf).await;
        let names = ["q0.example.", "q1.example.", "q2.example.", "q3.example."];
        let queries: Vec<Message> = names
            .iter()
            .map(|n| build_query(n, RecordType::A, Some(1232)))
            .collect();
        // Three first: nothing may come back before the batch is complete.
        for q in &queries[..3] {
            c.send(&q.to_vec().unwrap()).await.unwrap();
        }
        assert!(up.wait_queries(3, SHORT).await);
        assert!(
            c.recv(Duration::from_millis(300))
                .await
                .unwrap_err()
                .is_timeout()
        );
        // The stream is still in step: the timed-out read had not started a frame.
        c.send(&queries[3].to_vec().unwrap()).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(c.recv_message(SHORT).await.unwrap());
        }
        let ids: Vec<u16> = got.iter().map(Message::id).collect();
        let want: Vec<u16> = queries.iter().rev().map(Message::id).collect();
        assert_eq!(ids, want);
        for r in &got {
            let name = r.queries()[0].name().to_ascii();
            assert_eq!(a_records(r), vec![expected_a(&name)]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_answer_does_not_block_later_ones() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        let mut c = connect(up.addr(), &leaf).await;
        let slow = build_query("delay-500.example.", RecordType::A, None);
        let fast = build_query("fast.example.", RecordType::A, None);
        let t0 = Instant::now();
        c.send(&slow.to_vec().unwrap()).await.unwrap();
        c.send(&fast.to_vec().unwrap()).await.unwrap();
        let first = c.recv_message(SHORT).await.unwrap();
        let t_first = t0.elapsed();
        let second = c.recv_message(SHORT).await.unwrap();
        let t_second = t0.elapsed();
        assert_eq!(first.id(), fast.id());
        assert_eq!(second.id(), slow.id());
        assert!(t_first < Duration::from_millis(400), "{t_first:?}");
        assert!(t_second >= Duration::from_millis(500), "{t_second:?}");
        assert_eq!(a_records(&second), vec![expected_a("delay-500.example")]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_mode_reads_but_never_answers() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        up.set_stall(true);
        let mut c = connect(up.addr(), &leaf).await;
        let q = build_query("stalled.example.", RecordType::A, None);
        c.send(&q.to_vec().unwrap()).await.unwrap();
        assert!(
            up.wait_queries(1, SHORT).await,
            "query not read while stalled"
        );
        let err = c.recv(Duration::from_millis(800)).await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(
            up.open_connections(),
            1,
            "stall must keep the connection open"
        );
        up.set_stall(false);
        assert_a(&mut c, "after.example.").await;
        assert_eq!(up.queries(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_connections_resets_open_connections() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        let mut a = connect(up.addr(), &leaf).await;
        let mut b = connect(up.addr(), &leaf).await;
        a.query("a.example.", RecordType::A, None).await.unwrap();
        b.query("b.example.", RecordType::A, None).await.unwrap();
        assert!(up.wait_open_connections(2, SHORT).await);
        up.kill_connections();
        for c in [&mut a, &mut b] {
            match c.wait_closed(SHORT).await {
                Err(ClientError::Io(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                }
                other => panic!("expected a reset, got {other:?}"),
            }
        }
        assert!(up.wait_open_connections(0, SHORT).await);
        // The listener survives.
        let mut c = connect(up.addr(), &leaf).await;
        c.query("c.example.", RecordType::A, None).await.unwrap();
        assert_eq!(up.handshakes(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_n_answers_closes_cleanly() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        up.close_after(2);
        let mut c = connect(up.addr(), &leaf).await;
        for i in 0..3 {
            let q = build_query(&format!("n{i}.example."), RecordType::A, None);
            c.send(&q.to_vec().unwrap()).await.unwrap();
        }
        c.recv_message(SHORT).await.unwrap();
        c.recv_message(SHORT).await.unwrap();
        let end = c.recv(SHORT).await.unwrap_err();
        assert!(matches!(end, ClientError::Closed), "{end:?}");
        // (The third query may or may not have been read before the close.)
        assert!(up.queries() >= 2);
        up.clear_close_after();
        let mut c = connect(up.addr(), &leaf).await;
        for i in 0..3 {
            c.query(&format!("m{i}.example."), RecordType::A, None)
                .await
                .unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_restart_on_the_same_port() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        let addr = up.addr();
        let mut c = connect(addr, &leaf).await;
        c.query("before.example.", RecordType::A, None)
            .await
            .unwrap();
        up.stop().await;
        assert!(!up.is_running());
        assert!(
            c.wait_closed(SHORT).await.is_err(),
            "open connection not reset by stop"
        );
        match DotClient::connect(addr, HOST, leaf.root_store()).await {
            Err(ClientError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
            other => panic!("connect to a stopped upstream: {other:?}"),
        }
        up.restart().await;
        assert_eq!(up.addr(), addr);
        let mut c = connect(addr, &leaf).await;
        assert_a(&mut c, "after.example.").await;
        assert_eq!(up.handshakes(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_closes_only_that_connection() {
    bounded(async {
        let (leaf, up) = fresh_upstream().await;
        let mut good = connect(up.addr(), &leaf).await;
        let mut bad = connect(up.addr(), &leaf).await;
        bad.send(b"\x00\x01\x02").await.unwrap();
        let end = bad.wait_closed(SHORT).await;
        assert!(
            !matches!(end, Err(ClientError::Timeout)),
            "garbage did not close: {end:?}"
        );
        assert_eq!(
            up.received().last().map(Vec::as_slice),
            Some(&b"\x00\x01\x02"[..])
        );
        // A zero-length frame is garbage too.
        let mut bad2 = connect(up.addr(), &leaf).await;
        bad2.send_raw(&[0, 0]).await.unwrap();
        assert!(!matches!(
            bad2.wait_closed(SHORT).await,
            Err(ClientError::Timeout)
        ));
        assert_a(&mut good, "still.example.").await;
        assert_eq!(up.queries(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_and_other_loopback_address() {
    bounded(async {
        let pki = Pki::new();
        let ip2 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let leaf = pki.leaf(&[], &[ip2]);
        let up = DotUpstream::start(UpstreamOpts {
            bind: SocketAddr::new(ip2, 0),
            ..UpstreamOpts::new(&leaf)
        })
        .await;
        assert_eq!(up.addr().ip(), ip2);
        // IP-SAN verification, TLS 1.2 only.
        let cfg12 = dot_client_config(leaf.root_store(), &[&rustls::version::TLS12]);
        let mut c = DotClient::connect_with(up.addr(), "127.0.0.2", cfg12.clone())
            .await
            .unwrap();
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        c.query("v12.example.", RecordType::A, None).await.unwrap();
        let conns = up.connections();
        assert_eq!(conns[0].version, rustls::ProtocolVersion::TLSv1_2);
        assert_eq!(conns[0].sni, None, "rustls sends no SNI for an IP");
        // A TLS-1.3-only upstream refuses a TLS-1.2-only client.
        let up13 = DotUpstream::start(UpstreamOpts {
            bind: SocketAddr::new(ip2, 0),
            versions: vec![&rustls::version::TLS13],
            ..UpstreamOpts::new(&leaf)
        })
        .await;
        let err = DotClient::connect_with(up13.addr(), "127.0.0.2", cfg12)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Io(_)), "{err:?}");
        assert_eq!(up13.handshakes(), 0);
        assert!(up13.wait_for(SHORT, |u| u.handshake_failures() == 1).await);
    })
    .await;
}

// ---------------------------------------------------------------- unbound and decoy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_serves_dot_and_plain() {
    bounded(async {
        let pki = Pki::new();
        let leaf = leaf(&pki);
        let ub = Unbound::start_dot(&leaf).await;
        let out = dig(&dig_tls_args(
            ub.addr(),
            leaf.ca_pem_path(),
            HOST,
            &[INTEROP_NAME, "A"],
        ))
        .await;
        assert_eq!(
            out.status_str(),
            "NOERROR",
            "{}\n{}",
            out.transcript(),
            ub.log()
        );
        assert_eq!(
            out.answer_rdata("A"),
            vec![INTEROP_A.to_string()],
            "{}",
            out.transcript()
        );

        let mut c = DotClient::connect(ub.addr(), ub.server_name(), leaf.root_store())
            .await
            .unwrap();
        let r = c
            .query(INTEROP_NAME, RecordType::TXT, Some(1232))
            .await
            .unwrap();
        assert_eq!(txt_records(&r), vec![INTEROP_TXT.as_bytes().to_vec()]);
        let r = c
            .query("nope.interop.test.", RecordType::A, Some(1232))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::NXDomain);

        let r =
            client::query_udp(ub.plain_addr(), INTEROP_NAME, RecordType::AAAA, Some(1232)).await;
        assert_eq!(aaaa_records(&r), vec![INTEROP_AAAA]);
        let r = client::query_tcp(ub.plain_addr(), INTEROP_NAME, RecordType::A, None).await;
        assert_eq!(a_records(&r), vec![INTEROP_A]);
        // The DoT port does not speak plain TCP DNS.
        let err = client::try_query_tcp(ub.addr(), INTEROP_NAME, RecordType::A, None)
            .await
            .unwrap_err();
        assert!(!matches!(err, ClientError::Parse(_)), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoy_counts_plaintext_hits() {
    bounded(async {
        let addr: SocketAddr = "127.0.0.2:53".parse().unwrap();
        let decoy = Decoy::start(addr).await;
        assert_eq!(decoy.hits(), 0);
        let out = dig(&["@127.0.0.2", "-p", "53", "+time=1", "decoy.example.", "A"]).await;
        assert_eq!(out.status, None, "the decoy answered: {}", out.transcript());
        assert_eq!(decoy.udp_hits(), 1, "{}", out.transcript());
        assert_eq!(decoy.tcp_hits(), 0);
        let out = dig(&[
            "@127.0.0.2",
            "-p",
            "53",
            "+time=1",
            "+tcp",
            "decoy.example.",
        ])
        .await;
        assert_eq!(out.status, None);
        assert!(decoy.tcp_hits() >= 1, "{}", out.transcript());
        let err = client::raw_udp(addr, b"hello", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(decoy.udp_hits(), 2);
    })
    .await;
}
