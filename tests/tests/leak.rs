//! `lanveil-ctl leak-test` end to end: a real lanveil (behind a real dnsmasq where it matters) with
//! its control socket reached over a real OpenSSH server, the way an owner runs it.
//!
//! The test used to decide "intercepted by the router" from an NXDOMAIN for the canary name; an ISP
//! or filtering resolver answers that NXDOMAIN too, so a leaking network passed. It now registers a
//! one-time label and nonce with the daemon and asks the public addresses for
//! `LABEL.lanveil-leak.resolver.arpa` TXT: only an answer carrying the nonce counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use lanveil_cli::json as serde_json;
use lanveil_config::control::Response;
use lanveil_tests::gateway::Process;
use lanveil_tests::ssh::{CtlOutput, Sshd, ctl_async};
use lanveil_tests::upstream::answer_for;
use lanveil_tests::util::require_program;
use lanveil_tests::{DotUpstream, Leaf, Pki, TempDir, UpstreamOpts, free_tcp_udp_port};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NAME: &str = "dot.test";
const ZONE: &str = "lanveil-leak.resolver.arpa";

/// The check whose name starts with `prefix`.
fn check(v: &serde_json::Value, prefix: &str) -> serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no check {prefix}: {v}"))
        .clone()
}

/// A `leak-test --json` run's report, checked for what every run states: the leak-test probe
/// check's result, the verdict and the exit code (`what` names the run in the failure messages).
/// Returns the report and its first `plain DNS to` check.
#[track_caller]
fn report(
    out: &CtlOutput,
    what: &str,
    probe: &str,
    verdict: &str,
    code: i32,
) -> (serde_json::Value, serde_json::Value) {
    let v = out.json();
    assert_eq!(check(&v, "leak-test probe")["result"], probe, "{what}: {v}");
    assert_eq!(v["verdict"], verdict, "{what}: {v}");
    assert_eq!(out.code, Some(code), "{what}: {out:?}");
    let c = check(&v, "plain DNS to");
    (v, c)
}

/// The names of the queries `up` received.
fn asked_upstream(up: &DotUpstream) -> Vec<String> {
    up.received_messages()
        .iter()
        .filter_map(|m| m.queries().first().map(|q| q.name().to_ascii()))
        .collect()
}

/// lanveil logging at `log_level`, forwarding to a DoT upstream whose certificate it trusts (the
/// leaf, its CA file, kept as long as they run).
async fn start_router(log_level: &str) -> (Leaf, DotUpstream, Router) {
    let leaf = Pki::new().leaf(&[NAME], &[]);
    let up = DotUpstream::start(UpstreamOpts::new(&leaf)).await;
    let router = Router::start(up.addr(), leaf.ca_pem_path(), log_level).await;
    (leaf, up, router)
}

/// A "router": a real lanveil process on a loopback port, its control socket in a temporary root.
struct Router {
    root: TempDir,
    listen: SocketAddr,
    process: Option<Process>,
}

impl Router {
    fn control(&self) -> String {
        self.root.join("control.sock").display().to_string()
    }

    async fn start(upstream: SocketAddr, ca: &Path, log_level: &str) -> Router {
        let root = TempDir::new("leak-router");
        let mut r = Router {
            root,
            listen: SocketAddr::new(LOCAL, free_tcp_udp_port(LOCAL)),
            process: None,
        };
        let config = format!(
            "config lanveil 'main'\n\tlist listen '{}'\n\toption query_timeout_ms '1000'\n\
             \toption log_level '{log_level}'\n\toption control_socket '{}'\n\n\
             config upstream 'home'\n\toption url 'tls://{upstream}#{NAME}'\n\toption ca_file '{}'\n",
            r.listen,
            r.control(),
            ca.display()
        );
        let path = r.root.write("lanveil.conf", config);
        let (path, control) = (path.display().to_string(), r.control());
        let args = ["--config", &path];
        r.process = Some(Process::spawn_serving(&args, r.listen, Path::new(&control)).await);
        r
    }

    /// `lanveil-ctl` arguments that reach this router's control socket through `sshd`.
    fn ssh_args(&self, sshd: &Sshd) -> Vec<String> {
        let mut a = vec!["root@127.0.0.1".to_string()];
        a.extend(sshd.ctl_args());
        a.extend([
            "--lanveil".into(),
            lanveil_tests::gateway::binary().display().to_string(),
            "--control".into(),
            self.control(),
        ]);
        a
    }

    /// Stops lanveil and returns everything it wrote to stderr.
    async fn stop(&mut self) -> String {
        let p = self.process.take().unwrap();
        p.signal(libc::SIGTERM);
        p.wait(Duration::from_secs(10)).await.1
    }
}

/// A plain resolver on loopback that answers every query itself with `rcode` (no records), the way
/// an ISP or filtering resolver answers canary and special-use names. Records what it was asked.
struct FakeResolver {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
}

impl FakeResolver {
    fn start(rcode: ResponseCode) -> FakeResolver {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(question) = q.queries().first() {
                    seen.lock().unwrap().push(question.name().to_ascii());
                }
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(q.recursion_desired())
                    .set_recursion_available(true)
                    .set_response_code(rcode)
                    .add_queries(q.queries().to_vec());
                let _ = sock.send_to(&r.to_vec().unwrap(), from);
            }
        });
        FakeResolver { addr, asked }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// Real dnsmasq in front of lanveil, set up as OpenWrt's is (no resolv.conf, lanveil as its only
/// server, domain-needed, bogus-priv, rebind protection, `lan` local); killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Dnsmasq {
    /// dnsmasq on a free port of `ip`, forwarding to lanveil at `lanveil`.
    fn start(ip: IpAddr, lanveil: SocketAddr) -> Dnsmasq {
        let dnsmasq = require_program("dnsmasq", "dnsmasq-base");
        let dir = TempDir::new("leak-dnsmasq");
        let addr = SocketAddr::new(ip, free_tcp_udp_port(ip));
        let log: PathBuf = dir.join("dnsmasq.log");
        let child = Command::new(dnsmasq)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--user=root",
                "--pid-file=",
                &format!("--listen-address={ip}"),
                "--bind-interfaces",
                &format!("--port={}", addr.port()),
                "--no-resolv",
                "--no-hosts",
                &format!("--server=127.0.0.1#{}", lanveil.port()),
                "--domain-needed",
                "--bogus-priv",
                "--stop-dns-rebind",
                "--rebind-localhost-ok",
                "--local=/lan/",
                "--domain=lan",
                "--cache-size=150",
                "--log-facility=-",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("dnsmasq starts");
        let d = Dnsmasq {
            child,
            addr,
            _dir: dir,
        };
        // Ready once it answers a local name itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut q = Message::new();
        q.add_query(hickory_proto::op::Query::query(
            "ready.lan.".parse().unwrap(),
            RecordType::A,
        ));
        let q = q.to_vec().unwrap();
        let mut buf = [0u8; 512];
        loop {
            let _ = probe.send_to(&q, d.addr);
            if probe.recv_from(&mut buf).is_ok() {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `s` holds `n` lower-case hex digits in a row (a leak-test nonce is 32).
fn has_hex_run(s: &str, n: usize) -> bool {
    let mut run = 0;
    for c in s.chars() {
        run = if c.is_ascii_digit() || ('a'..='f').contains(&c) {
            run + 1
        } else {
            0
        };
        if run >= n {
            return true;
        }
    }
    false
}

fn leak_args(router: SocketAddr, public: &[SocketAddr], control: Vec<String>) -> Vec<String> {
    let mut a = vec!["leak-test".to_string()];
    a.extend(control);
    a.extend(["--router".into(), router.to_string()]);
    for p in public {
        a.extend(["--public".into(), p.to_string()]);
    }
    a.extend(["--timeout".into(), "2000".into(), "--json".into()]);
    a
}

/// The defect: a resolver that answers NXDOMAIN for the canary (and for everything) used to be taken
/// for lanveil. With the probe it is a LEAK; a resolver answering NOERROR is one too.
#[tokio::test(flavor = "multi_thread")]
async fn a_resolver_answering_nxdomain_is_a_leak_not_an_interception() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let (_leaf, _up, mut router) = start_router("info").await;
    let isp = FakeResolver::start(ResponseCode::NXDomain);
    // What fooled the old test: the canary is NXDOMAIN there, just as through lanveil.
    let canary =
        lanveil_tests::client::query_udp(isp.addr, "use-application-dns.net.", RecordType::A, None)
            .await;
    assert_eq!(canary.response_code(), ResponseCode::NXDomain);
    let work = TempDir::new("leak-nx");

    let out = ctl_async(
        work.path(),
        leak_args(router.listen, &[isp.addr], router.ssh_args(&sshd)),
    )
    .await;
    let (v, c) = report(&out, "an NXDOMAIN resolver", "pass", "FAIL", 1);
    assert_eq!(c["result"], "fail", "{v}");
    assert_eq!(c["interception"], "leak", "{v}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .starts_with("LEAK: answered NXDOMAIN without this run's nonce"),
        "{v}"
    );
    assert!(
        !has_hex_run(&out.stdout, 32),
        "the nonce is not printed: {v}"
    );
    // It was asked the probe name (so this is an answer judged, not a time-out).
    let asked = isp.asked();
    assert!(
        asked.iter().any(|n| n.ends_with(&format!(".{ZONE}."))),
        "{asked:?}"
    );

    // A resolver that answers the probe name with data of its own: a leak as well (words too).
    let leaky = UdpSocket::bind("127.0.0.1:0").unwrap();
    let leaky_addr = leaky.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = leaky.recv_from(&mut buf) {
            if let Some((a, _)) = answer_for(&buf[..n], None) {
                let _ = leaky.send_to(&a, from);
            }
        }
    });
    let mut args = leak_args(router.listen, &[leaky_addr], router.ssh_args(&sshd));
    args.pop();
    let out = ctl_async(work.path(), args).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains("LEAK: answered NOERROR"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("verdict: FAIL"), "{}", out.stdout);
    router.stop().await;
}

/// Traffic that really reaches the lanveil that knows the nonce — straight, and through dnsmasq as
/// on OpenWrt (force-DNS redirects to dnsmasq on :53) — is INTERCEPTED, and PASS; the probe name
/// never reaches the upstream, and lanveil never logs the nonce.
#[tokio::test(flavor = "multi_thread")]
async fn traffic_that_reaches_lanveil_is_proved_intercepted() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let (_leaf, up, mut router) = start_router("trace").await;
    let dnsmasq = tokio::task::spawn_blocking({
        let l = router.listen;
        move || Dnsmasq::start(LOCAL, l)
    })
    .await
    .unwrap();
    let work = TempDir::new("leak-ok");

    for (via, args) in [
        (
            router.listen,
            leak_args(router.listen, &[router.listen], router.ssh_args(&sshd)),
        ),
        (
            dnsmasq.addr,
            leak_args(dnsmasq.addr, &[dnsmasq.addr], router.ssh_args(&sshd)),
        ),
        (
            dnsmasq.addr,
            leak_args(
                dnsmasq.addr,
                &[dnsmasq.addr],
                vec!["--socket".into(), router.control()],
            ),
        ),
    ] {
        let out = ctl_async(work.path(), args).await;
        let (v, c) = report(&out, &via.to_string(), "pass", "PASS", 0);
        assert_eq!(check(&v, "router answers")["result"], "pass", "{via}: {v}");
        assert_eq!(c["interception"], "intercepted", "{via}: {v}");
        assert!(
            c["detail"].as_str().unwrap().starts_with("INTERCEPTED"),
            "{via}: {v}"
        );
    }

    // The daemon side on its own, with a label and nonce we know: the answer carries the nonce,
    // through dnsmasq too; an unregistered label is NXDOMAIN.
    let label = "0123456789abcdef0123";
    let nonce = "fedcba98765432100123456789abcdef";
    let reg = Command::new(lanveil_tests::gateway::binary())
        .args(["--control", &router.control(), "leak-probe", label, nonce])
        .output()
        .unwrap();
    assert!(reg.status.success(), "{reg:?}");
    assert_eq!(Response::decode(&reg.stdout), Ok(Response::Done(Ok(()))));
    for server in [router.listen, dnsmasq.addr] {
        let m = lanveil_tests::client::query_udp(
            server,
            &format!("{label}.{ZONE}."),
            RecordType::TXT,
            None,
        )
        .await;
        assert_eq!(m.response_code(), ResponseCode::NoError, "{server}");
        let txt: Vec<String> = m
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(txt, [nonce], "{server}");
        let m = lanveil_tests::client::query_udp(
            server,
            &format!("aaaaaaaaaaaaaaaaaaaa.{ZONE}."),
            RecordType::TXT,
            None,
        )
        .await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{server}");
    }
    let bad = Command::new(lanveil_tests::gateway::binary())
        .args(["--control", &router.control(), "leak-probe", label, "short"])
        .output()
        .unwrap();
    assert_eq!(
        Response::decode(&bad.stdout),
        Ok(Response::Done(Err(
            "leak-test nonce must be 16 to 64 characters a-z, 0-9".into()
        )))
    );

    // The upstream answered the runs' other queries, and never saw a probe name.
    let names = asked_upstream(&up);
    assert!(
        names.iter().any(|n| n.starts_with("example.com")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| !n.to_ascii_lowercase().contains("resolver.arpa")),
        "{names:?}"
    );
    // Even at trace level, the nonce is never logged (nor the label).
    let log = router.stop().await;
    assert!(log.contains("leak-test probe registered"), "{log}");
    assert!(!log.contains(nonce), "{log}");
    assert!(!log.contains(label), "{log}");
}

/// Without the control socket, nothing is proved: INCONCLUSIVE (exit 1), never PASS, even though
/// the traffic did reach lanveil. The same when the socket cannot be reached.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_control_socket_the_test_says_it_cannot_prove_interception() {
    let sshd = tokio::task::spawn_blocking(Sshd::start).await.unwrap();
    let (_leaf, _up, mut router) = start_router("info").await;
    let work = TempDir::new("leak-unproven");

    let out = ctl_async(
        work.path(),
        leak_args(router.listen, &[router.listen], Vec::new()),
    )
    .await;
    let (v, c) = report(&out, "no control socket", "info", "INCONCLUSIVE", 1);
    assert_eq!(c["result"], "unproven", "{v}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("interception is not proved"),
        "{v}"
    );

    let mut args = router.ssh_args(&sshd);
    let at = args.iter().position(|a| a == "--control").unwrap();
    args[at + 1] = "/nonexistent/control.sock".into();
    let mut args = leak_args(router.listen, &[router.listen], args);
    args.pop();
    let out = ctl_async(work.path(), args).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout.contains("could not register this run's probe"),
        "{}",
        out.stdout
    );
    // The failed command is named, but not with the nonce (32 hex digits).
    assert!(
        out.stdout.contains(" NONCE` on root@127.0.0.1 failed"),
        "{}",
        out.stdout
    );
    assert!(!has_hex_run(&out.stdout, 32), "{}", out.stdout);
    assert!(!has_hex_run(&out.stderr, 32), "{}", out.stderr);
    assert!(
        out.stdout.contains("verdict: INCONCLUSIVE"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("interception is NOT proved"),
        "{}",
        out.stdout
    );

    // Registered, but --router is not the lanveil that took the probe (here a resolver answering
    // NXDOMAIN): a missing nonce then proves nothing either way.
    let other = FakeResolver::start(ResponseCode::NXDomain);
    let out = ctl_async(
        work.path(),
        leak_args(other.addr, &[other.addr], router.ssh_args(&sshd)),
    )
    .await;
    let (v, c) = report(
        &out,
        "another resolver as --router",
        "warn",
        "INCONCLUSIVE",
        1,
    );
    assert!(
        check(&v, "leak-test probe")["detail"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{v}"
    );
    assert_eq!(c["result"], "unproven", "{v}");
    router.stop().await;
}

/// OpenWrt's force-DNS, for real: a network namespace for the LAN machine, joined to this one by a
/// veth pair, and lanveil.sh's nft rule on the router side (`fib daddr type != local redirect`) aimed
/// at dnsmasq. Removed on drop.
struct ForceDns {
    ns: String,
    host_if: String,
    table: String,
    router_ip: IpAddr,
}

impl ForceDns {
    fn new() -> ForceDns {
        require_program("nft", "nftables");
        let ip = require_program("ip", "iproute2");
        let pid = std::process::id();
        let subnet = pid % 250;
        let f = ForceDns {
            ns: format!("lvleak{pid}"),
            host_if: format!("lvlk{}h", pid % 100_000),
            table: format!("lvleak{pid}"),
            router_ip: IpAddr::V4(Ipv4Addr::new(10, 232, subnet as u8, 1)),
        };
        let run = |prog: &PathBuf, args: &[&str]| {
            let out = Command::new(prog).args(args).output().unwrap();
            assert!(out.status.success(), "{prog:?} {args:?}: {out:?}");
        };
        let client_if = format!("lvlk{}c", pid % 100_000);
        let (router_cidr, client_cidr) = (
            format!("10.232.{subnet}.1/24"),
            format!("10.232.{subnet}.2/24"),
        );
        run(&ip, &["netns", "add", &f.ns]);
        run(
            &ip,
            &[
                "link", "add", &f.host_if, "type", "veth", "peer", "name", &client_if, "netns",
                &f.ns,
            ],
        );
        run(&ip, &["addr", "add", &router_cidr, "dev", &f.host_if]);
        run(&ip, &["link", "set", &f.host_if, "up"]);
        run(
            &ip,
            &["-n", &f.ns, "addr", "add", &client_cidr, "dev", &client_if],
        );
        run(&ip, &["-n", &f.ns, "link", "set", &client_if, "up"]);
        run(&ip, &["-n", &f.ns, "link", "set", "lo", "up"]);
        let gw = f.router_ip.to_string();
        run(&ip, &["-n", &f.ns, "route", "add", "default", "via", &gw]);
        f
    }

    /// Redirects DNS arriving from the LAN namespace for any address not the router's to `port`.
    fn redirect_to(&self, port: u16) {
        let nft = require_program("nft", "nftables");
        let rules = format!(
            "table inet {t} {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n  \
             iifname \"{i}\" meta l4proto {{ tcp, udp }} th dport 53 fib daddr type != local redirect to :{port}\n }}\n}}\n",
            t = self.table,
            i = self.host_if
        );
        let mut child = Command::new(nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), rules.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "nft -f: {rules}");
    }

    /// Runs `lanveil-ctl ARGS` on the LAN machine.
    fn ctl(&self, args: &[String]) -> CtlOutput {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(lanveil_tests::ssh::ctl_binary())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }
}

impl Drop for ForceDns {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .stderr(Stdio::null())
            .status();
        for args in [
            &["link", "del", &self.host_if][..],
            &["netns", "del", &self.ns],
        ] {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        }
    }
}

/// The default public addresses (9.9.9.9, 1.1.1.1, 8.8.8.8, 94.140.14.140) from a LAN machine whose
/// DNS really is redirected by the nft rule to dnsmasq, and on to lanveil: INTERCEPTED, each of
/// them. Without the rule the same run is not a PASS (the addresses are unreachable here: BLOCKED).
/// The probe name never reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn force_dns_redirect_of_the_default_public_addresses_is_intercepted() {
    let (_leaf, up, mut router) = start_router("info").await;
    let net = tokio::task::spawn_blocking(ForceDns::new).await.unwrap();
    let dnsmasq = tokio::task::spawn_blocking({
        let (ip, l) = (net.router_ip, router.listen);
        move || Dnsmasq::start(ip, l)
    })
    .await
    .unwrap();
    let args = vec![
        "leak-test".to_string(),
        "--socket".into(),
        router.control(),
        "--router".into(),
        dnsmasq.addr.to_string(),
        "--timeout".into(),
        "1500".into(),
        "--json".into(),
    ];
    let net = Arc::new(net);

    let before = tokio::task::spawn_blocking({
        let (net, args) = (net.clone(), args.clone());
        move || net.ctl(&args)
    })
    .await
    .unwrap();
    let v = before.json();
    assert_eq!(check(&v, "leak-test probe")["result"], "pass", "{v}");
    // Unreachable here (blocked), or — on a host that forwards to the internet — Quad9's own answer.
    let how = check(&v, "plain DNS to 9.9.9.9")["interception"].clone();
    assert!(how == "blocked" || how == "leak", "{v}");
    assert_ne!(v["verdict"], "PASS", "{v}");

    net.redirect_to(dnsmasq.addr.port());
    let out = tokio::task::spawn_blocking({
        let net = net.clone();
        move || net.ctl(&args)
    })
    .await
    .unwrap();
    let v = out.json();
    for public in ["9.9.9.9", "1.1.1.1", "8.8.8.8", "94.140.14.140"] {
        let c = check(&v, &format!("plain DNS to {public}:53"));
        assert_eq!(c["interception"], "intercepted", "{public}: {v}");
    }
    assert_eq!(v["verdict"], "PASS", "{v}");
    assert_eq!(out.code, Some(0), "{out:?}");
    let names = asked_upstream(&up);
    assert!(
        names
            .iter()
            .all(|n| !n.to_ascii_lowercase().contains("resolver.arpa")),
        "{names:?}"
    );
    drop(dnsmasq);
    router.stop().await;
}
