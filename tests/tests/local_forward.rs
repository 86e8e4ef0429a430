//! `option local_resolver`: the real `lanveil` binary with an in-process DoT upstream and a tiny plain
//! UDP "LAN resolver" on 127.0.0.9, queried with `dig`. Local names (`lan`, `home.arpa`, the LAN's
//! reverse zones, `local_domain`) must reach the LAN resolver and never the upstream; public names the
//! upstream and never the LAN resolver. Without the key, local names are answered here as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanveil_tests::gateway::{Process, wait_serving};
use lanveil_tests::{
    DigOutput, DotUpstream, Leaf, Pki, TempDir, UpstreamOpts, dig, expected_a, free_tcp_udp_port,
};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Where the LAN resolver lives (any 127/8 address is on loopback).
const LAN_RESOLVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
/// The LAN resolver's answer to every A query.
const LAN_A: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 50);
/// The LAN resolver's answer to every PTR query.
const LAN_PTR: &[u8] = b"\x07printer\x03lan\x00";

/// A plain UDP resolver that records the question names it gets and answers (after `delay`) A with
/// [`LAN_A`], PTR with `printer.lan.`, anything else NODATA, always with AD set (lanveil must clear
/// it).
struct LanResolver {
    addr: SocketAddr,
    names: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl LanResolver {
    async fn start(delay: Duration) -> LanResolver {
        let sock = UdpSocket::bind(SocketAddr::new(LAN_RESOLVER_IP, 0))
            .await
            .unwrap();
        let sock = Arc::new(sock);
        let addr = sock.local_addr().unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let seen = names.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Some((name, reply)) = lan_answer(&buf[..n]) else {
                    continue;
                };
                seen.lock().unwrap().push(name);
                let sock = sock.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = sock.send_to(&reply, from).await;
                });
            }
        });
        LanResolver { addr, names, task }
    }

    fn names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}

impl Drop for LanResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The question name (lower case, dotted with a trailing dot) and the answer to `query`.
fn lan_answer(query: &[u8]) -> Option<(String, Vec<u8>)> {
    let msg = hickory_proto::op::Message::from_vec(query).ok()?;
    let name = msg
        .queries()
        .first()?
        .name()
        .to_ascii()
        .to_ascii_lowercase();
    // The question, uncompressed, straight after the header.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let qtype = u16::from_be_bytes([*query.get(end + 1)?, *query.get(end + 2)?]);
    let question_end = end + 5;
    let mut r = query[..2].to_vec();
    // QR, opcode 0, RD copied, RA, AD.
    r.extend_from_slice(&[0x80 | (query[2] & 0x01), 0xa0, 0, 1]);
    let rdata: Option<&[u8]> = match qtype {
        1 => Some(&LAN_A.octets()),
        12 => Some(LAN_PTR),
        _ => None,
    };
    r.extend_from_slice(&[0, u8::from(rdata.is_some()), 0, 0, 0, 0]);
    r.extend_from_slice(query.get(12..question_end)?);
    if let Some(rdata) = rdata {
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&qtype.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
    }
    Some((name, r))
}

fn conf(listen: SocketAddr, upstream: SocketAddr, ca: &std::path::Path, extra: &str) -> String {
    format!(
        "config lanveil 'main'\n\tlist listen '{listen}'\n\toption query_timeout_ms '2000'\n\
         \toption local_domain 'home.example'\n{extra}\n\
         config upstream 'test'\n\toption url 'tls://{upstream}#dot.test'\n\toption ca_file '{}'\n",
        ca.display()
    )
}

/// Local names, each with the type asked and the dig arguments.
const LOCAL_QUERIES: [(&str, &str); 4] = [
    ("printer.lan", "A"),
    ("nas.home.arpa", "A"),
    ("tv.home.example", "A"),
    ("50.1.168.192.in-addr.arpa", "PTR"),
];

struct Setup {
    _pki: Pki,
    _dir: TempDir,
    file: std::path::PathBuf,
    leaf: Leaf,
    upstream: DotUpstream,
    lan: LanResolver,
    listen: SocketAddr,
    process: Process,
}

async fn setup(with_key: bool, delay: Duration) -> Setup {
    let pki = Pki::new();
    let leaf = pki.leaf(&["dot.test"], &[LOCAL]);
    let upstream = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let lan = LanResolver::start(delay).await;
    let listen = SocketAddr::new(LOCAL, free_tcp_udp_port(LOCAL));
    let extra = match with_key {
        true => format!("\toption local_resolver '{}'\n", lan.addr),
        false => String::new(),
    };
    let dir = TempDir::new("lanveil-localfwd");
    let file = dir.write(
        "lanveil",
        conf(listen, upstream.addr(), leaf.ca_pem_path(), &extra),
    );
    let process = Process::spawn(&["--config", file.to_str().unwrap()]);
    wait_serving(listen).await;
    Setup {
        _pki: pki,
        _dir: dir,
        file,
        leaf,
        upstream,
        lan,
        listen,
        process,
    }
}

async fn ask(listen: SocketAddr, name: &str, qtype: &str) -> DigOutput {
    let port = listen.port().to_string();
    dig(&["@127.0.0.1", "-p", &port, "+adflag", name, qtype]).await
}

/// Question names the DoT upstream received, lower case with a trailing dot.
fn upstream_names(upstream: &DotUpstream) -> Vec<String> {
    upstream
        .received_messages()
        .iter()
        .filter_map(|m| m.queries().first().map(|q| q.name().to_ascii()))
        .map(|n| n.to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_names_go_to_the_lan_resolver_and_public_names_upstream() {
    let s = setup(true, Duration::ZERO).await;
    for (name, qtype) in LOCAL_QUERIES {
        let out = ask(s.listen, name, qtype).await;
        assert_eq!(out.status_str(), "NOERROR", "{name}: {}", out.transcript());
        let want = match qtype {
            "PTR" => "printer.lan.".to_string(),
            _ => LAN_A.to_string(),
        };
        assert_eq!(out.answer_rdata(qtype), [want], "{name}");
        assert_eq!(out.ede, None, "no EDE of lanveil's: {}", out.transcript());
        assert!(!out.has_flag("ad"), "AD cleared: {}", out.transcript());
    }
    let out = ask(s.listen, "example.com", "A").await;
    assert_eq!(
        out.answer_rdata("A"),
        [expected_a("example.com").to_string()],
        "{}",
        out.transcript()
    );

    let lan = s.lan.names();
    let want: Vec<String> = LOCAL_QUERIES.iter().map(|(n, _)| format!("{n}.")).collect();
    assert_eq!(
        lan, want,
        "every local name, and only those, reached the LAN"
    );
    let up = upstream_names(&s.upstream);
    assert_eq!(up, ["example.com."], "only the public name went upstream");

    // Reloaded without the key: answered here again, the LAN resolver hears nothing more.
    std::fs::write(
        &s.file,
        conf(s.listen, s.upstream.addr(), s.leaf.ca_pem_path(), ""),
    )
    .unwrap();
    s.process.signal(libc::SIGHUP);
    let mut status = String::new();
    for _ in 0..50 {
        status = ask(s.listen, "scanner.lan", "A")
            .await
            .status_str()
            .to_string();
        if status == "NXDOMAIN" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if status != "NXDOMAIN" {
        s.process.signal(libc::SIGTERM);
        let (_, log) = s.process.wait(Duration::from_secs(10)).await;
        panic!("still {status} after the reload: {log}");
    }
    let before = s.lan.names().len();
    assert_eq!(
        ask(s.listen, "printer.lan", "A").await.status_str(),
        "NXDOMAIN"
    );
    assert_eq!(s.lan.names().len(), before);
    assert!(
        !upstream_names(&s.upstream)
            .iter()
            .any(|n| n.ends_with(".lan."))
    );

    s.process.signal(libc::SIGTERM);
    let (code, stderr) = s.process.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("LAN resolver {}", s.lan.addr)),
        "the start-up log says where local names go: {stderr}"
    );
    for (name, _) in LOCAL_QUERIES {
        assert!(!stderr.contains(name), "no query name in the log: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_local_names_are_answered_here_and_go_nowhere() {
    let s = setup(false, Duration::ZERO).await;
    for (name, qtype) in LOCAL_QUERIES {
        let out = ask(s.listen, name, qtype).await;
        assert_eq!(out.status_str(), "NXDOMAIN", "{name}: {}", out.transcript());
        assert!(out.has_flag("aa"), "{name}: {}", out.transcript());
    }
    let out = ask(s.listen, "example.com", "A").await;
    assert_eq!(out.status_str(), "NOERROR", "{}", out.transcript());
    assert!(s.lan.names().is_empty(), "{:?}", s.lan.names());
    assert_eq!(upstream_names(&s.upstream), ["example.com."]);
    s.process.signal(libc::SIGTERM);
    let (code, stderr) = s.process.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_queries_in_flight_to_the_lan_resolver() {
    let s = setup(true, Duration::from_millis(600)).await;
    let listen = s.listen;
    let query = tokio::spawn(async move { ask(listen, "printer.lan", "A").await });
    for _ in 0..100 {
        if !s.lan.names().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.lan.names(), ["printer.lan."], "the query is in flight");
    s.process.signal(libc::SIGTERM);
    let out = query.await.unwrap();
    assert_eq!(
        out.answer_rdata("A"),
        [LAN_A.to_string()],
        "drained, not dropped: {}",
        out.transcript()
    );
    let (code, stderr) = s.process.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn a_public_local_resolver_is_refused_with_file_line_key_and_reason() {
    let dir = TempDir::new("lanveil-localfwd-check");
    let up: SocketAddr = "192.0.2.1:853".parse().unwrap();
    // A real CA bundle: `--check-config` also loads it, as a start would.
    let pki = Pki::new();
    let ca = pki.ca_pem_path().to_path_buf();
    let listen: SocketAddr = "127.0.0.1:53".parse().unwrap();
    for (value, ok) in [
        ("9.9.9.9", false),
        ("[2001:db8::53]:53", false),
        ("100.64.0.1", false),
        ("127.0.0.1", false),
        ("192.168.1.1", true),
        ("[fd00::53]:5353", true),
    ] {
        let text = conf(
            listen,
            up,
            &ca,
            &format!("\toption local_resolver '{value}'\n"),
        );
        let path = dir.write("lanveil", text);
        let (code, stderr) = Process::spawn(&["--check-config", path.to_str().unwrap()])
            .wait(Duration::from_secs(10))
            .await;
        assert_eq!(code, Some(if ok { 0 } else { 2 }), "{value}: {stderr}");
        if !ok {
            assert!(stderr.contains("local_resolver"), "{value}: {stderr}");
        }
    }
    let text = conf(listen, up, &ca, "\toption local_resolver '8.8.8.8'\n");
    let path = dir.write("lanveil", text);
    let (_, stderr) = Process::spawn(&["--check-config", path.to_str().unwrap()])
        .wait(Duration::from_secs(10))
        .await;
    let want = format!(
        "{}:5: lanveil[main].local_resolver: must be a resolver on the LAN",
        path.display()
    );
    assert!(stderr.contains(&want), "{stderr:?} should contain {want:?}");
}
