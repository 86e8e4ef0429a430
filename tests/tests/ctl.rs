//! `lanveil-ctl`, the owner's host tool, end to end: probe against in-process DoT/DoH upstreams (pins
//! compared with openssl's), config check/pack/unpack, and push/status over a real OpenSSH server on
//! loopback to a real lanveil process, including the rollback path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lanveil_cli::json as serde_json;
use lanveil_tests::doh::DohUpstream;
use lanveil_tests::gateway::Process;
use lanveil_tests::ssh::{CtlOutput, Sshd, ctl_async};
use lanveil_tests::upstream::answer_for;
use lanveil_tests::{DotUpstream, Leaf, Pki, TempDir, UpstreamOpts, free_tcp_udp_port};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NAME: &str = "dot.test";

/// `lanveil-ctl ARGS` in `cwd`.
async fn run(cwd: &Path, args: &[&str]) -> CtlOutput {
    ctl_async(cwd, args.iter().map(|s| (*s).to_string()).collect()).await
}

/// `run`, checked to exit with `code`; the output, for the checks that follow.
async fn run_code(cwd: &Path, args: &[&str], code: i32) -> CtlOutput {
    let out = run(cwd, args).await;
    assert_eq!(out.code, Some(code), "lanveil-ctl {args:?}: {out:?}");
    out
}

/// A file's text.
fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pin as openssl computes it (the issue's reference command).
fn openssl_pin(cert_pem: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert_pem.display()
        ))
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success());
    format!("sha256/{}", String::from_utf8(out.stdout).unwrap().trim())
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_dot_reports_the_openssl_pin_rtt_tls_and_ede() {
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    up.set_ede(Some((17, "filtered by test".into())));
    let dir = TempDir::new("ctl-probe");
    let url = format!("tls://{}#{NAME}", up.addr());
    let ca = leaf.ca_pem_path().to_str().unwrap();
    let want = openssl_pin(leaf.cert_pem_path());
    assert_eq!(want, leaf.spki_pin(), "harness and openssl agree");

    let out = run_code(
        dir.path(),
        &["probe", &url, "--ca-file", ca, "--queries", "7", "--json"],
        0,
    )
    .await;
    let v = out.json();
    let r = &v[0];
    assert_eq!(r["ok"], true);
    assert_eq!(r["authenticated"], true);
    assert_eq!(r["transport"], "dot");
    assert_eq!(r["handshake"]["tls_version"], "TLSv1.3");
    assert_eq!(r["handshake"]["chain"][0]["role"], "leaf");
    assert_eq!(r["handshake"]["chain"][0]["pin"], want.as_str());
    assert_eq!(r["queries_sent"], 7);
    assert_eq!(r["queries_answered"], 7);
    assert_eq!(r["rcode"], "NOERROR");
    assert_eq!(r["rtt_ms"]["samples"].as_array().unwrap().len(), 7);
    assert!(r["rtt_ms"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(r["padding"], false);
    assert_eq!(r["ede"][0][0], 17);
    assert_eq!(r["ede"][0][2], "filtered by test");

    // The person-readable form shows the same pin and the line to paste.
    let out = run_code(dir.path(), &["probe", &url, "--ca-file", ca], 0).await;
    assert!(
        out.stdout.contains(&format!("list pin '{want}'")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("TLSv1.3"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("EDE             17 Filtered: filtered by test"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_refuses_untrusted_certificates_and_wrong_pins_but_shows_the_chain() {
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let other = Pki::new();
    let dir = TempDir::new("ctl-probe-bad");
    let url = format!("tls://{}#{NAME}", up.addr());

    let out = run_code(
        dir.path(),
        &[
            "probe",
            &url,
            "--ca-file",
            other.ca_pem_path().to_str().unwrap(),
            "--json",
        ],
        1,
    )
    .await;
    let r = &out.json()[0];
    assert_eq!(r["authenticated"], false);
    // The same words as the daemon's Extended DNS Error for this failure (one table, lanveil-tls).
    let ede_text = lanveil::core::engine::ede_for(Some(lanveil::core::engine::CloseReason::Tls(
        lanveil::core::engine::TlsFailure::UntrustedCertificate,
    )))
    .text;
    assert_eq!(r["error"], ede_text);
    assert_eq!(ede_text, "upstream certificate rejected: untrusted issuer");
    assert_eq!(r["handshake"]["chain"][0]["pin"], leaf.spki_pin().as_str());
    assert_eq!(
        r["queries_sent"], 0,
        "nothing is sent before authentication"
    );
    assert_eq!(up.queries(), 0);

    let ca = leaf.ca_pem_path().to_str().unwrap();
    let wrong = other.ca_spki_pin();
    let out = run_code(
        dir.path(),
        &["probe", &url, "--ca-file", ca, "--pin", &wrong],
        1,
    )
    .await;
    assert!(out.stdout.contains("SPKI pin mismatch"), "{}", out.stdout);
    assert!(out.stdout.contains("NOT authenticated"), "{}", out.stdout);

    run_code(
        dir.path(),
        &["probe", &url, "--ca-file", ca, "--pin", &leaf.spki_pin()],
        0,
    )
    .await;

    let wrong_name = format!("tls://{}#other.test", up.addr());
    let out = run_code(dir.path(), &["probe", &wrong_name, "--ca-file", ca], 1).await;
    assert!(
        out.stdout
            .contains("upstream certificate rejected: name mismatch"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_doh_queries_over_http2_as_the_daemon() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["doh.test"], &[]);
    let doh = DohUpstream::start("127.0.0.1:0".parse().unwrap(), &leaf).await;
    let dir = TempDir::new("ctl-probe-doh");
    let url = format!("https://{}/dns-query#doh.test", doh.addr());
    let ca = leaf.ca_pem_path().to_str().unwrap();
    let out = run_code(
        dir.path(),
        &["probe", &url, "--ca-file", ca, "--queries", "4", "--json"],
        0,
    )
    .await;
    let r = &out.json()[0];
    assert_eq!(r["ok"], true);
    assert_eq!(r["authenticated"], true);
    assert_eq!(r["server_selected_h2"], true);
    assert_eq!(r["handshake"]["alpn_offered"], serde_json::json!(["h2"]));
    assert_eq!(r["handshake"]["alpn_selected"], "h2");
    assert_eq!(r["http_version"], "HTTP/2");
    assert_eq!(r["queries_answered"], 4);
    assert_eq!(r["rcode"], "NOERROR");
    assert!(r["rtt_ms"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(
        r["handshake"]["chain"][0]["pin"],
        openssl_pin(leaf.cert_pem_path()).as_str()
    );
    // The daemon's request: POST application/dns-message, DNS ID 0, no User-Agent, one connection.
    let seen = doh.requests();
    assert!(seen.len() >= 4, "{seen:?}");
    for q in &seen {
        assert_eq!(q.method, "POST");
        assert_eq!(q.path, "/dns-query");
        assert_eq!(q.authority, Some(format!("doh.test:{}", doh.addr().port())));
        assert_eq!(&q.message[..2], &[0, 0]);
        for h in ["content-type", "accept", "content-length"] {
            assert!(q.headers.iter().any(|n| n == h), "{h}: {q:?}");
        }
        assert!(!q.headers.iter().any(|n| n == "user-agent"), "{q:?}");
    }
    assert_eq!(doh.connections(), 1);

    // Not found (a wrong path, a web server): FAILED.
    doh.set_status(404);
    let out = run_code(dir.path(), &["probe", &url, "--ca-file", ca, "--json"], 1).await;
    let r = &out.json()[0];
    assert_eq!(r["ok"], false);
    assert_eq!(r["queries_answered"], 0);
    assert!(
        r["error"].as_str().unwrap().contains("HTTP status 404"),
        "{r}"
    );
}

type ServerTls = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

/// A blocking TLS server on loopback; `serve` gets each connection on its own thread.
fn start_tls_server(
    leaf: &Leaf,
    alpn: &[&[u8]],
    serve: impl Fn(ServerTls) + Send + Sync + 'static,
) -> SocketAddr {
    let cfg = leaf.tls13_server_config(alpn);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let cfg = cfg.clone();
            let serve = serve.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                serve(rustls::StreamOwned::new(conn, tcp));
            });
        }
    });
    addr
}

/// A correct DoH server speaking HTTP/1.1 only (keep-alive POSTs), with the harness's answers.
fn serve_http1_doh(tls: ServerTls) {
    let mut tls = BufReader::new(tls);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if tls.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if tls.read_exact(&mut body).is_err() {
            return;
        }
        let Some((answer, _)) = answer_for(&body, None) else {
            return;
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        let s = tls.get_mut();
        if s.write_all(head.as_bytes()).is_err() || s.write_all(&answer).is_err() {
            return;
        }
        let _ = s.flush();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_doh_fails_when_the_server_does_not_select_h2() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["doh.test"], &[]);
    let dir = TempDir::new("ctl-probe-doh1");
    let ca = leaf.ca_pem_path().to_str().unwrap();
    // HTTP/1.1 only (it answers DoH correctly over it), and a server that ignores ALPN.
    for (alpn, want) in [
        (&[&b"http/1.1"[..]][..], "the server refused ALPN h2"),
        (
            &[][..],
            "the server selected no ALPN protocol instead of ALPN h2",
        ),
    ] {
        let addr = start_tls_server(&leaf, alpn, serve_http1_doh);
        let url = format!("https://{addr}/dns-query#doh.test");
        let out = run(dir.path(), &["probe", &url, "--ca-file", ca, "--json"]).await;
        assert_eq!(out.code, Some(1), "{alpn:?}: {out:?}");
        let r = &out.json()[0];
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["server_selected_h2"], false, "{r}");
        assert_eq!(r["queries_sent"], 0, "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains(want) && error.contains("HTTP/2 only"),
            "{alpn:?}: {error}"
        );
        let out = run_code(dir.path(), &["probe", &url, "--ca-file", ca], 1).await;
        assert!(out.stdout.contains("(DNS over HTTPS) — FAILED"), "{out:?}");
    }
}

/// An HTTP/2 server on loopback answering every request with `answer(request body)`: (status,
/// content-type, body).
async fn start_h2_server(
    leaf: &Leaf,
    answer: impl Fn(&[u8]) -> (u16, Option<&'static str>, Vec<u8>) + Send + Sync + 'static,
) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(leaf.tls13_server_config(&[b"h2"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let mut message = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            message.extend_from_slice(&chunk);
                        }
                        let (status, ct, payload) = answer(&message);
                        let mut resp = http::Response::builder().status(status);
                        if let Some(ct) = ct {
                            resp = resp.header("content-type", ct);
                        }
                        if let Ok(mut s) = respond.send_response(resp.body(()).unwrap(), false) {
                            let _ = s.send_data(bytes::Bytes::from(payload), true);
                        }
                    });
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_doh_fails_when_an_h2_server_gives_no_dns_answer() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["doh.test"], &[]);
    let dir = TempDir::new("ctl-probe-doh-bad");
    let ca = leaf.ca_pem_path().to_str().unwrap();
    type Answer = fn(&[u8]) -> (u16, Option<&'static str>, Vec<u8>);
    let cases: [(Answer, &str); 6] = [
        (
            |_| (404, Some("text/html"), b"<h1>Not Found</h1>".to_vec()),
            "HTTP status 404",
        ),
        (
            |_| (200, Some("text/html"), b"<html>welcome</html>".to_vec()),
            "Content-Type \"text/html\", not a DNS answer",
        ),
        (
            |q| (200, None, answer_for(q, None).unwrap().0),
            "without a Content-Type",
        ),
        (
            |_| (200, Some("application/dns-message"), b"hello".to_vec()),
            "malformed DNS answer",
        ),
        (
            // A DNS answer, but to another question: the type changed to AAAA.
            |q| {
                let mut a = answer_for(q, None).unwrap().0;
                let mut at = 12;
                while a[at] != 0 {
                    at += usize::from(a[at]) + 1;
                }
                a[at + 1..at + 3].copy_from_slice(&28u16.to_be_bytes());
                (200, Some("application/dns-message"), a)
            },
            "the answer is not for the question asked",
        ),
        (
            // The query itself echoed back: not a response.
            |q| (200, Some("application/dns-message"), q.to_vec()),
            "not a response",
        ),
    ];
    for (answer, want) in cases {
        let addr = start_h2_server(&leaf, answer).await;
        let url = format!("https://{addr}/dns-query#doh.test");
        let out = run(
            dir.path(),
            &["probe", &url, "--ca-file", ca, "--queries", "2", "--json"],
        )
        .await;
        assert_eq!(out.code, Some(1), "{want}: {out:?}");
        let r = &out.json()[0];
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["server_selected_h2"], true, "{r}");
        assert_eq!(r["queries_answered"], 0, "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains(want), "want {want:?}: {error}");
    }
}

/// How long one `lanveil-ctl` run took, the build of the binary aside.
async fn timed_run(cwd: &Path, args: &[&str]) -> (CtlOutput, Duration) {
    tokio::task::spawn_blocking(lanveil_tests::ssh::ctl_binary)
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let out = run(cwd, args).await;
    (out, start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_gives_up_on_a_trickling_server_at_the_timeout() {
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let dir = TempDir::new("ctl-probe-slow");
    let ca = leaf.ca_pem_path().to_str().unwrap();
    // DoT: the right answer, one octet every 150 ms (a read time-out alone never fires).
    let dot = start_tls_server(&leaf, &[b"dot"], |mut tls| {
        let mut len = [0u8; 2];
        if tls.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if tls.read_exact(&mut q).is_err() {
            return;
        }
        let Some((a, _)) = answer_for(&q, None) else {
            return;
        };
        let framed = [&(a.len() as u16).to_be_bytes()[..], &a].concat();
        for b in framed {
            if tls.write_all(&[b]).and_then(|()| tls.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    // DoH: HTTP/2 SETTINGS, then a PING every 50 ms and never an answer.
    let doh = start_tls_server(&leaf, &[b"h2"], |mut tls| {
        if tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).is_err() {
            return;
        }
        for i in 0u64.. {
            let mut ping = vec![0, 0, 8, 6, 0, 0, 0, 0, 0];
            ping.extend_from_slice(&i.to_be_bytes());
            if tls.write_all(&ping).and_then(|()| tls.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    for url in [
        format!("tls://{dot}#{NAME}"),
        format!("https://{doh}/dns-query#{NAME}"),
    ] {
        let (out, took) = timed_run(
            dir.path(),
            &[
                "probe",
                &url,
                "--ca-file",
                ca,
                "--timeout",
                "1000",
                "--queries",
                "1",
                "--no-ede-test",
                "--json",
            ],
        )
        .await;
        assert_eq!(out.code, Some(1), "{url}: {out:?}");
        let r = &out.json()[0];
        assert_eq!(r["authenticated"], true, "{r}");
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error"], "query 1 of 1: no answer in time", "{r}");
        // Handshake (≤ 1 s) + the query (≤ 1 s) + starting the process.
        assert!(took < Duration::from_millis(3500), "{url}: {took:?}");
    }
}

#[tokio::test]
async fn config_check_rejects_each_kind_of_bad_input_with_the_daemons_message() {
    let dir = TempDir::new("ctl-check");
    let up = "config upstream 'q'\n\toption url 'tls://9.9.9.9#dns.quad9.net'\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("config lanveil 'main'\n\toption query_timeout_ms 'fast'\n{up}"),
            "bad.conf:2: lanveil[main].query_timeout_ms: must be a whole number from 100 to 30000",
        ),
        (
            "config upstream 'q'\n\toption url 'tls://dns.quad9.net#dns.quad9.net'\n".into(),
            "bad.conf:2: upstream[q].url: bad upstream URL: the address must be an IP literal",
        ),
        (
            "config upstream 'q'\n\toption url 'tls://9.9.9.9'\n".into(),
            "bad.conf:2: upstream[q].url: bad upstream URL: missing #AUTHNAME",
        ),
        (
            format!("{up}\tlist pin 'sha256/short'\n"),
            "bad.conf:3: upstream[q].pin: bad SPKI pin",
        ),
        (
            format!("config lanveil 'main'\n\toption bogus '1'\n{up}"),
            "bad.conf:2: lanveil[main].bogus: unknown option",
        ),
        (
            format!("config lanveil 'main'\n\tlist listen 'router.lan:53'\n{up}"),
            "bad.conf:2: lanveil[main].listen: must be IP:PORT",
        ),
        (
            // A quote may span lines (as in libuci): unterminated only when the file ends inside it.
            format!("{up}config lanveil 'main'\n\toption log_level 'loud\n"),
            "bad.conf:4: lanveil[main].log_level: syntax error: unterminated ' quote",
        ),
        (
            "config lanveil 'main'\n\tlist listen '127.0.0.1:53'\n".into(),
            "bad.conf: upstream: no enabled 'config upstream' section",
        ),
        (
            format!("config frob 'x'\n{up}"),
            "bad.conf:1: frob[x]: unknown section type",
        ),
    ];
    for (text, want) in cases {
        dir.write("bad.conf", &text);
        let out = run(dir.path(), &["config", "check", "bad.conf"]).await;
        assert_eq!(out.code, Some(2), "{text:?}: {out:?}");
        assert!(
            out.stderr.starts_with(&format!("lanveil-ctl: {want}")),
            "{text:?}: want {want:?}, got {:?}",
            out.stderr
        );
    }
    dir.write("good.conf", up);
    let out = run_code(dir.path(), &["config", "check", "--file", "good.conf"], 0).await;
    assert!(out.stdout.starts_with("good.conf: OK"), "{out:?}");
}

#[tokio::test]
async fn config_init_set_unset_show() {
    let dir = TempDir::new("ctl-init");
    let p = dir.path();
    run_code(
        p,
        &[
            "config",
            "init",
            "--preset",
            "quad9",
            "--listen",
            "192.168.1.1:53",
        ],
        0,
    )
    .await;
    let text = read(dir.join("lanveil.conf"));
    assert!(
        text.contains("option url 'tls://9.9.9.9:853#dns.quad9.net'"),
        "{text}"
    );
    assert!(text.contains("https://quad9.net/privacy/policy/"), "{text}");
    // init refuses to overwrite.
    run_code(p, &["config", "init", "--preset", "google"], 2).await;

    run_code(p, &["config", "set", "query_timeout_ms", "1500"], 0).await;
    run_code(
        p,
        &[
            "config",
            "set",
            "upstream.mine.url",
            "tls://192.0.2.53#dns.example",
        ],
        0,
    )
    .await;
    run_code(
        p,
        &[
            "config",
            "set",
            "upstream.mine.pin",
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        ],
        0,
    )
    .await;
    // A bad value is refused with the daemon's words and the file is left alone.
    let before = read(dir.join("lanveil.conf"));
    let out = run_code(p, &["config", "set", "max_inflight", "1"], 2).await;
    assert!(
        out.stderr
            .contains("lanveil[main].max_inflight: must be a whole number from 16 to 32768"),
        "{out:?}"
    );
    let out = run_code(
        p,
        &[
            "config",
            "set",
            "upstream.mine.url",
            "tls://dns.example#dns.example",
        ],
        2,
    )
    .await;
    assert!(
        out.stderr.contains("upstream[mine].url: bad upstream URL"),
        "{out:?}"
    );
    assert_eq!(read(dir.join("lanveil.conf")), before);

    let out = run_code(p, &["config", "show", "--json"], 0).await;
    let v = out.json();
    assert_eq!(v["query_timeout_ms"], 1500);
    assert_eq!(v["listen"][0], "192.168.1.1:53");
    let ups = v["upstreams"].as_array().unwrap();
    assert_eq!(ups.len(), 3);
    assert_eq!(ups[2]["name"], "mine");
    assert_eq!(
        ups[2]["pins"][0],
        "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );

    run_code(p, &["config", "unset", "upstream.mine"], 0).await;
    let v = run(p, &["config", "show", "--json"]).await.json();
    assert_eq!(v["upstreams"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn config_set_edits_the_unnamed_sections_config_check_shows() {
    let dir = TempDir::new("ctl-unnamed");
    let p = dir.path();
    let text = "config lanveil 'main'\n\tlist listen '127.0.0.1:5453'\n\n\
                config upstream\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n\n\
                config openwrt\n\toption force_dns '0'\n";
    dir.write("lanveil.conf", text);
    let out = run_code(p, &["config", "check"], 0).await;
    // The name check shows for the unnamed upstream.
    let shown = out
        .stdout
        .lines()
        .find(|l| l.contains("tls://9.9.9.9:853#dns.quad9.net"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let key = format!("upstream.{shown}.url");
    run_code(
        p,
        &["config", "set", &key, "tls://1.1.1.1:853#one.one.one.one"],
        0,
    )
    .await;
    run_code(p, &["config", "set", "openwrt.force_dns", "1"], 0).await;
    let out = run_code(p, &["config", "check"], 0).await;
    assert!(
        out.stdout.contains("1 upstream (")
            && out.stdout.contains("tls://1.1.1.1:853#one.one.one.one")
            && !out.stdout.contains("9.9.9.9"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("openwrt section (the init script's): force_dns '1'\n"),
        "{out:?}"
    );
    let text = read(dir.join("lanveil.conf"));
    assert_eq!(text.matches("config upstream").count(), 1, "{text}");
    assert_eq!(text.matches("config openwrt").count(), 1, "{text}");

    // Two openwrt sections: check refuses the file, set refuses to pick one and writes nothing.
    let two = format!("{text}\nconfig openwrt 'openwrt'\n\toption force_dns '0'\n");
    dir.write("two.conf", &two);
    let out = run_code(p, &["config", "check", "two.conf"], 2).await;
    assert!(
        out.stderr.contains(
            "two.conf:10: openwrt[openwrt]: only one 'config openwrt' section is allowed"
        ),
        "{out:?}"
    );
    run_code(
        p,
        &["config", "set", "-f", "two.conf", "openwrt.force_dns", "1"],
        2,
    )
    .await;
    assert_eq!(read(dir.join("two.conf")), two);
}

#[tokio::test]
async fn config_set_keeps_comments_mode_and_symlink() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("ctl-keep");
    let p = dir.path();
    let text = "# my router (do not lose this)\n\
                config lanveil 'main'\n\tlist listen '127.0.0.1:5453' # LAN side\n\n\
                # the resolver I pay for\n\
                config upstream 'q'\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n";
    std::fs::create_dir(dir.join("etc")).unwrap();
    let real = dir.write("etc/lanveil", text);
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("etc/lanveil", dir.join("lanveil.conf")).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;

    let out = run_code(p, &["config", "set", "query_timeout_ms", "1500"], 0).await;
    assert_eq!(out.stdout, "lanveil.conf: query_timeout_ms = 1500\n");
    let out = run(p, &["config", "unset", "upstream.q.url"]).await;
    assert_eq!(
        out.code,
        Some(2),
        "an upstream without url is refused: {out:?}"
    );
    run_code(
        p,
        &[
            "config",
            "set",
            "upstream.two.url",
            "tls://192.0.2.1#x.example",
        ],
        0,
    )
    .await;
    // Still a symlink, the file it points to edited in place: comments kept, mode kept.
    assert!(
        std::fs::symlink_metadata(dir.join("lanveil.conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(mode(&real), 0o600);
    assert_eq!(
        read(&real),
        text.replace(
            "# LAN side\n",
            "# LAN side\n\toption query_timeout_ms '1500'\n"
        ) + "\nconfig upstream 'two'\n\toption url 'tls://192.0.2.1#x.example'\n"
    );
    assert!(!dir.join("lanveil.conf.bak").exists());

    // When the change cannot be made in place (here: a later `option KEY ''` would undo it), the
    // file is written anew and the previous one kept as FILE.bak, with the same mode; both said.
    let before = format!("{}\toption sni ''\n", read(&real));
    std::fs::write(&real, &before).unwrap();
    let out = run_code(p, &["config", "set", "upstream.two.sni", "0"], 0).await;
    assert!(
        out.stdout
            .contains("note: its comments and layout could not be kept"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("the previous file is lanveil.conf.bak"),
        "{out:?}"
    );
    let bak = dir.join("lanveil.conf.bak");
    assert_eq!(read(&bak), before);
    assert_eq!(mode(&bak), 0o600);
    assert_eq!(mode(&real), 0o600);
    let now = read(&real);
    assert!(
        now.contains("option sni '0'") && !now.contains("# my router"),
        "{now}"
    );
}

#[tokio::test]
async fn pack_unpack_round_trips_and_rejects_damage() {
    let dir = TempDir::new("ctl-pack");
    let p = dir.path();
    run_code(
        p,
        &[
            "config",
            "init",
            "--upstream",
            "tls://192.0.2.1:853#dns.example",
            "--set",
            "log_level=debug",
        ],
        0,
    )
    .await;
    run_code(p, &["config", "pack", "--output", "cfg.lvcf"], 0).await;
    let blob = std::fs::read(dir.join("cfg.lvcf")).unwrap();
    let version = lanveil_config::PACK_VERSION;
    assert_eq!(&blob[..4], b"LVCF");
    assert_eq!(blob[4..6], version.to_le_bytes());
    run_code(
        p,
        &["config", "unpack", "cfg.lvcf", "--output", "back.conf"],
        0,
    )
    .await;
    let a = run(p, &["config", "show", "--json"]).await.stdout;
    let b = run(p, &["config", "show", "--json", "back.conf"])
        .await
        .stdout;
    assert_eq!(a, b, "round trip");
    // check accepts the packed form too.
    run_code(p, &["config", "check", "cfg.lvcf"], 0).await;

    let mut bad = blob.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    dir.write("bad.lvcf", &bad);
    let out = run_code(p, &["config", "unpack", "bad.lvcf"], 2).await;
    assert_eq!(
        out.stderr.trim(),
        "lanveil-ctl: bad.lvcf: packed configuration: checksum mismatch"
    );

    let mut future = blob.clone();
    future[4..6].copy_from_slice(&(version + 1).to_le_bytes());
    dir.write("future.lvcf", &future);
    let out = run_code(p, &["config", "unpack", "future.lvcf"], 2).await;
    assert_eq!(
        out.stderr.trim(),
        format!(
            "lanveil-ctl: future.lvcf: packed configuration: schema version {} is newer than this lanveil",
            version + 1
        )
    );

    dir.write("short.lvcf", &blob[..blob.len() - 3]);
    let out = run_code(p, &["config", "unpack", "short.lvcf"], 2).await;
    assert!(out.stderr.contains("truncated or bad length"), "{out:?}");
}

#[tokio::test]
async fn pack_and_unpack_never_overwrite_a_file_without_force() {
    let dir = TempDir::new("ctl-pack-force");
    let p = dir.path();
    run_code(
        p,
        &[
            "config",
            "init",
            "--upstream",
            "tls://192.0.2.1:853#dns.example",
        ],
        0,
    )
    .await;
    let router = "config lanveil 'main'\n\tlist listen '127.0.0.1:5453'\n\n\
                  config upstream 'q'\n\toption url 'tls://9.9.9.9:853#dns.quad9.net'\n\n\
                  config openwrt 'openwrt'\n\toption force_dns '1'\n";
    dir.write("router.conf", router);
    run_code(p, &["config", "pack", "-o", "cfg.lvcf"], 0).await;
    let blob = std::fs::read(dir.join("cfg.lvcf")).unwrap();

    // unpack over an existing file: refused, the file (and its openwrt section) untouched.
    let out = run_code(p, &["config", "unpack", "cfg.lvcf", "-o", "router.conf"], 2).await;
    assert_eq!(
        out.stderr.trim(),
        "lanveil-ctl: router.conf exists; not overwritten (use --force to replace it, or choose another --output)"
    );
    assert_eq!(read(dir.join("router.conf")), router);
    // pack over an existing file: the same.
    let out = run_code(p, &["config", "pack", "--output", "router.conf"], 2).await;
    assert!(out.stderr.contains("use --force"), "{out:?}");
    assert_eq!(read(dir.join("router.conf")), router);
    // Also an explicit --output that holds a packed configuration.
    run_code(p, &["config", "pack", "-o", "cfg.lvcf"], 2).await;

    // --force replaces.
    run_code(
        p,
        &[
            "config",
            "unpack",
            "cfg.lvcf",
            "-o",
            "router.conf",
            "--force",
        ],
        0,
    )
    .await;
    let text = read(dir.join("router.conf"));
    assert!(
        text.contains("dns.example") && !text.contains("openwrt"),
        "{text}"
    );
    run_code(p, &["config", "pack", "-o", "router.conf", "--force"], 0).await;
    assert_eq!(std::fs::read(dir.join("router.conf")).unwrap(), blob);

    // The default FILE.lvcf is re-packed freely while it is a packed configuration, not otherwise.
    for _ in 0..2 {
        run_code(p, &["config", "pack"], 0).await;
    }
    dir.write("lanveil.conf.lvcf", "notes\n");
    run_code(p, &["config", "pack"], 2).await;
    assert_eq!(read(dir.join("lanveil.conf.lvcf")), "notes\n");
}

#[tokio::test]
async fn ssh_is_told_to_give_up_on_a_router_that_stops_answering() {
    let dir = TempDir::new("ctl-ssh-alive");
    let log = dir.join("args");
    // A stand-in for ssh (as `--ssh` allows): it records its arguments and fails like ssh does.
    let fake = dir.write(
        "fake-ssh",
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n\
             echo 'ssh: connect to host r port 22: Connection timed out' >&2\nexit 255\n",
            log.display()
        ),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run_code(
        dir.path(),
        &["status", "r", "--ssh", fake.to_str().unwrap()],
        1,
    )
    .await;
    assert!(
        out.stderr
            .contains("ssh root@r failed: ssh: connect to host r port 22: Connection timed out"),
        "{out:?}"
    );
    let args: Vec<String> = read(&log).lines().map(String::from).collect();
    let host = args.iter().position(|a| a == "root@r").unwrap();
    for opt in ["ServerAliveInterval=5", "ServerAliveCountMax=3"] {
        assert!(
            args[..host].windows(2).any(|w| w[0] == "-o" && w[1] == opt),
            "{opt}: {args:?}"
        );
    }
}

/// A "router": a temporary root with etc/config/lanveil, a real lanveil process reading it, listening
/// on a loopback port, with its control socket under the root.
struct Router {
    root: TempDir,
    listen: SocketAddr,
    process: Option<Process>,
}

impl Router {
    fn config_path(&self) -> PathBuf {
        self.root.join("etc/config/lanveil")
    }

    fn control(&self) -> String {
        self.root
            .join("var/run/lanveil/control.sock")
            .display()
            .to_string()
    }

    fn config_text(&self, upstream: SocketAddr, ca: &Path) -> String {
        format!(
            "config lanveil 'main'\n\tlist listen '{}'\n\toption query_timeout_ms '1000'\n\
             \toption control_socket '{}'\n\n\
             config upstream 'home'\n\toption url 'tls://{upstream}#{NAME}'\n\toption ca_file '{}'\n",
            self.listen,
            self.control(),
            ca.display()
        )
    }

    async fn start(upstream: SocketAddr, ca: &Path) -> Router {
        let root = TempDir::new("ctl-router");
        std::fs::create_dir_all(root.join("etc/config")).unwrap();
        let mut r = Router {
            root,
            listen: SocketAddr::new(LOCAL, free_tcp_udp_port(LOCAL)),
            process: None,
        };
        std::fs::write(r.config_path(), r.config_text(upstream, ca)).unwrap();
        let cfg = r.config_path().display().to_string();
        let control = r.control();
        let args = ["--config", &cfg];
        r.process = Some(Process::spawn_serving(&args, r.listen, Path::new(&control)).await);
        r
    }

    /// `lanveil-ctl COMMAND root@127.0.0.1` with the router options for this router behind `sshd`,
    /// then `extra`.
    fn command(&self, sshd: &Sshd, command: &str, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![command.into(), "root@127.0.0.1".into()];
        a.extend(sshd.ctl_args());
        a.extend([
            "--config-path".into(),
            self.config_path().display().to_string(),
            "--lanveil".into(),
            lanveil_tests::gateway::binary().display().to_string(),
            "--control".into(),
            self.control(),
        ]);
        a.extend(extra.iter().map(|s| (*s).to_string()));
        a
    }

    /// `push` to this router, verified through its listener within `deadline` s, the router-side
    /// watchdog restoring `grace` s after that; then `extra`.
    fn push(&self, sshd: &Sshd, deadline: &str, grace: &str, extra: &[&str]) -> Vec<String> {
        let listen = self.listen.to_string();
        let mut a = vec!["--verify-addr", &listen, "--deadline", deadline];
        a.extend(["--watchdog-grace", grace]);
        a.extend(extra);
        self.command(sshd, "push", &a)
    }
}

/// `run_code` with owned arguments (a [`Router::command`]'s).
async fn run_owned_code(cwd: &Path, args: Vec<String>, code: i32) -> CtlOutput {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_code(cwd, &refs, code).await
}

#[tokio::test(flavor = "multi_thread")]
async fn push_switches_upstream_and_status_reports_it() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let old_up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let new_up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let router = Router::start(old_up.addr(), leaf.ca_pem_path()).await;
    let work = TempDir::new("ctl-push");
    let original = read(router.config_path());
    work.write(
        "lanveil.conf",
        router.config_text(new_up.addr(), leaf.ca_pem_path()),
    );

    let out = run_owned_code(work.path(), router.push(&sshd, "8", "2", &[]), 0).await;
    assert!(
        out.stderr
            .contains("lanveil reloaded the new configuration"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("verified:"), "{}", out.stderr);
    assert!(
        new_up.queries() > 0,
        "the verification query went to the new upstream"
    );
    let live = read(router.config_path());
    assert!(live.contains(&new_up.addr().to_string()));
    let bak = read(format!("{}.bak", router.config_path().display()));
    assert_eq!(bak, original, "previous configuration kept as .bak");
    assert!(
        !Path::new(&format!(
            "{}.lanveil-ctl-pending",
            router.config_path().display()
        ))
        .exists()
    );

    let args = router.command(&sshd, "status", &["--json"]);
    let v = run_owned_code(work.path(), args, 0).await.json();
    assert_eq!(v["upstreams"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["upstreams"][0]["url"],
        format!("tls://{}#{NAME}", new_up.addr())
    );
    assert_eq!(v["upstreams"][0]["up"], true);
    assert!(v["upstreams"][0]["cert_not_after"].as_u64().is_some());

    let out = run_owned_code(work.path(), router.command(&sshd, "status", &[]), 0).await;
    assert!(out.stdout.contains("home"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("up            tls://{}#{NAME}", new_up.addr())),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("cert until"), "{}", out.stdout);
    // Shown for the transcript in the test log.
    println!("{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_rolls_back_when_the_new_upstream_does_not_answer() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let old_up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    // The new upstream presents a certificate from a CA the pushed configuration does not trust.
    let rogue = Pki::new();
    let rogue_leaf = rogue.leaf(&[NAME], &[]);
    let bad_up = DotUpstream::start(UpstreamOpts::new(&rogue_leaf)).await;
    let router = Router::start(old_up.addr(), leaf.ca_pem_path()).await;
    let work = TempDir::new("ctl-rollback");
    let original = read(router.config_path());
    let pushed = router.config_text(bad_up.addr(), leaf.ca_pem_path());
    work.write("lanveil.conf", &pushed);

    let started = std::time::Instant::now();
    let out = run_owned_code(work.path(), router.push(&sshd, "3", "2", &[]), 1).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        out.stderr
            .contains("push failed: no good answer through the new upstream within 3 s"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("SERVFAIL"), "{}", out.stderr);
    assert!(out.stderr.contains("the previous configuration was restored and lanveil reloaded the previous configuration"), "{}", out.stderr);
    assert_eq!(read(router.config_path()), original, "restored");
    let rejected = read(format!("{}.rejected", router.config_path().display()));
    assert_eq!(rejected, pushed, "the failing file is kept for inspection");

    // The daemon runs the old upstream again and answers through it.
    let args = router.command(&sshd, "status", &["--json"]);
    let v = ctl_async(work.path(), args).await.json();
    assert_eq!(
        v["upstreams"][0]["url"],
        format!("tls://{}#{NAME}", old_up.addr())
    );
    let q = lanveil_tests::client::query_udp(
        router.listen,
        "after-rollback.example.",
        hickory_proto::rr::RecordType::A,
        None,
    )
    .await;
    assert_eq!(q.response_code(), hickory_proto::op::ResponseCode::NoError);

    // A file the local schema rejects never leaves this machine.
    work.write(
        "lanveil.conf",
        "config upstream 'x'\n\toption url 'tls://nope#x'\n",
    );
    let out = run_owned_code(work.path(), router.command(&sshd, "push", &[]), 2).await;
    assert!(
        out.stderr
            .contains("lanveil.conf:2: upstream[x].url: bad upstream URL"),
        "{out:?}"
    );
    assert_eq!(read(router.config_path()), original);
}

/// The wiring (the `openwrt` section, read only by the init script) reaches the router now, not at the
/// next reboot: push runs the init script's reload exactly when the section changed, refuses to lose the
/// router's section without --replace-wiring, and says when that reload failed (the new file stays:
/// the daemon verified it).
#[tokio::test(flavor = "multi_thread")]
async fn push_reloads_the_init_script_exactly_when_the_openwrt_section_changes() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let router = Router::start(up.addr(), leaf.ca_pem_path()).await;
    let work = TempDir::new("ctl-push-wiring");
    // A stand-in for /etc/init.d/lanveil that records each call (and fails on request).
    let calls = router.root.join("init-calls");
    let fail = router.root.join("init-fail");
    std::fs::create_dir_all(router.root.join("etc/init.d")).unwrap();
    let init = router.root.join("etc/init.d/lanveil");
    std::fs::write(
        &init,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nif [ -f '{}' ]; then echo 'nft: could not load table' >&2; exit 1; fi\n",
            calls.display(),
            fail.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let calls_now = || std::fs::read_to_string(&calls).unwrap_or_default();
    let base = router.config_text(up.addr(), leaf.ca_pem_path());
    let with_openwrt = |zones: &[&str], block_dot: &str| {
        let mut t = format!("{base}\nconfig openwrt 'openwrt'\n\toption block_dot '{block_dot}'\n");
        for z in zones {
            t.push_str(&format!("\tlist force_dns_zone '{z}'\n"));
        }
        t
    };
    let init_arg = init.display().to_string();
    let push = |file: String, extra: &[&str], code| {
        work.write("lanveil.conf", &file);
        let mut extra = extra.to_vec();
        extra.extend(["--init-script", &init_arg]);
        run_owned_code(work.path(), router.push(&sshd, "8", "2", &extra), code)
    };

    // Same wiring (no openwrt section on either side): the init script is not run.
    let out = push(base.clone(), &[], 0).await;
    assert!(out.stderr.contains("wiring kept"), "{}", out.stderr);
    assert_eq!(calls_now(), "");

    // An openwrt section where the router had none: nothing lost, so no refusal, but applied now.
    let tuned = with_openwrt(&["lan", "guest"], "1");
    let out = push(tuned.clone(), &[], 0).await;
    assert!(
        out.stderr.contains(&format!(
            "the wiring changed (adds an 'openwrt' section): ran {} reload on root@127.0.0.1",
            init.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(calls_now(), "reload\n");

    // The same section, its list in another order: kept, not run again.
    let out = push(with_openwrt(&["guest", "lan"], "1"), &[], 0).await;
    assert!(out.stderr.contains("wiring kept"), "{}", out.stderr);
    assert_eq!(calls_now(), "reload\n");

    // The README recipe's default section over the tuned one: refused, each loss named.
    let live = read(router.config_path());
    let default = with_openwrt(&["lan"], "0");
    let out = push(default.clone(), &[], 2).await;
    for want in [
        "changes openwrt option block_dot from '1' to '0'",
        "drops openwrt list force_dns_zone 'guest'",
        "--replace-wiring",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    assert_eq!(read(router.config_path()), live);
    assert_eq!(calls_now(), "reload\n");

    // --replace-wiring: pushed, and the init script applies it at once.
    let out = push(default.clone(), &["--replace-wiring"], 0).await;
    assert!(
        out.stderr.contains("the wiring changed (changes openwrt option block_dot from '1' to '0'; drops openwrt list force_dns_zone 'guest'): ran"),
        "{}",
        out.stderr
    );
    assert_eq!(calls_now(), "reload\nreload\n");

    // A failing init reload is reported; the daemon's verified file stays.
    std::fs::write(&fail, "").unwrap();
    let out = push(tuned.clone(), &["--replace-wiring"], 1).await;
    assert!(
        out.stderr
            .contains("lanveil reloaded the new configuration"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "the daemon runs the new configuration (verified and confirmed; {} is the new file",
            router.config_path().display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("reload on root@127.0.0.1 failed (exit 1: nft: could not load table)"),
        "{}",
        out.stderr
    );
    assert_eq!(read(router.config_path()), tuned);
    assert_eq!(calls_now(), "reload\nreload\nreload\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_watchdog_on_the_router_restores_when_this_machine_vanishes() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let old_up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let rogue = Pki::new();
    let bad_up = DotUpstream::start(UpstreamOpts::new(&rogue.leaf(&[NAME], &[]))).await;
    let router = Router::start(old_up.addr(), leaf.ca_pem_path()).await;
    let work = TempDir::new("ctl-watchdog");
    let original = read(router.config_path());
    work.write(
        "lanveil.conf",
        router.config_text(bad_up.addr(), leaf.ca_pem_path()),
    );
    // An ssh that loses the network after 4 sessions: upload, check, switch, reload get through;
    // nothing after that (no verification, no host-side rollback).
    let count = work.join("count");
    let wrapper = work.write(
        "flaky-ssh",
        format!(
            "#!/bin/sh\nn=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'\n\
             if [ $n -gt 4 ]; then echo 'ssh: connect to host 127.0.0.1 port 22: Network is unreachable' >&2; exit 255; fi\n\
             exec ssh \"$@\"\n",
            c = count.display()
        ),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let ssh = wrapper.display().to_string();
    let args = router.push(&sshd, "2", "1", &["--ssh", &ssh]);
    let out = run_owned_code(work.path(), args, 1).await;
    assert!(
        out.stderr.contains("the router-side watchdog will restore"),
        "{}",
        out.stderr
    );
    // The router restores and reloads on its own, 3 s after the switch.
    let mut restored = false;
    for _ in 0..100 {
        if read(router.config_path()) == original {
            restored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restored, "the watchdog restored the previous file");
    let args = router.command(&sshd, "status", &["--json"]);
    let mut url = serde_json::Value::Null;
    for _ in 0..50 {
        let v = ctl_async(work.path(), args.clone()).await.json();
        url = v["upstreams"][0]["url"].clone();
        if url == format!("tls://{}#{NAME}", old_up.addr()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        url,
        format!("tls://{}#{NAME}", old_up.addr()),
        "and reloaded it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_every_engine_counter_in_text_and_json() {
    let pki = Pki::new();
    let leaf = pki.leaf(&[NAME], &[]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let router = Router::start(up.addr(), leaf.ca_pem_path()).await;
    let work = TempDir::new("ctl-counters");
    // One query with EDNS version 1: BADVERS (RFC 6891 §6.1.3), counted as `badvers`.
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 1, 0, 0, 0, 0]);
    let r = lanveil_tests::client::raw_udp(router.listen, &q, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(&r[..2], &[0x12, 0x34]);

    let socket = router.control();
    let out = run_code(work.path(), &["status", "--socket", &socket], 0).await;
    let text = out.stdout.clone();
    let out = run_code(work.path(), &["status", "--socket", &socket, "--json"], 0).await;
    let v = out.json();
    let counters: Vec<(String, u64)> = v["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap()))
        .collect();
    let names: Vec<&str> = lanveil_core::engine::Stats::default()
        .counters()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for name in [
        "badvers",
        "late_answers",
        "rate_limited",
        "client_overloaded",
        "dns64_synthesized",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    for name in names {
        assert!(
            counters.iter().any(|(n, _)| n == name),
            "{name} missing from the JSON status: {counters:?}"
        );
        assert!(
            text.contains(&format!(" {name} ")),
            "{name} missing from the text status:\n{text}"
        );
    }
    assert!(
        counters.contains(&("badvers".to_string(), 1)),
        "{counters:?}"
    );
    assert!(text.contains(", badvers 1,"), "{text}");
}
