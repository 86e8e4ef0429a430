//! Starting lanveil for a test: in-process through `lanveil::start`, or as the real binary (for signals,
//! exit codes, privilege drop and log checks).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use lanveil::config::{Config, SpkiPin, TlsVersion, Upstream};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::pki::Leaf;

/// A configuration listening on a free loopback port (UDP and TCP) and forwarding to `upstreams`
/// (address, authentication name) over DoT with the CA bundle at `ca_file`, a 1 s query deadline.
pub fn config(upstreams: &[(SocketAddr, &str)], ca_file: &Path) -> Config {
    let urls: Vec<String> = upstreams
        .iter()
        .map(|(addr, name)| format!("tls://{addr}#{name}"))
        .collect();
    config_urls(&urls, ca_file)
}

/// Like [`config`], with upstream URLs in any notation lanveil reads (`tls://…`, `https://…`).
pub fn config_urls(urls: &[String], ca_file: &Path) -> Config {
    let mut c = Config::default();
    c.listen.addrs = vec!["127.0.0.1:0".parse().unwrap()];
    c.limits.query_timeout_ms = 1_000;
    c.daemon.drain_timeout_ms = 2_000;
    c.upstreams.servers = urls
        .iter()
        .enumerate()
        .map(|(i, url)| Upstream {
            name: format!("up{}", i + 1),
            url: url.parse().unwrap(),
            pins: Vec::new(),
            ca_file: Some(ca_file.display().to_string()),
            tls_min_version: TlsVersion::V1_3,
            bootstrap: Vec::new(),
            http_get: false,
            sni: true,
            tls_resumption: false,
        })
        .collect();
    c.validate().unwrap();
    c
}

/// Shorthand: a config forwarding to one upstream presenting `leaf`.
pub fn config_for(upstream: SocketAddr, leaf: &Leaf) -> Config {
    config(&[(upstream, &leaf.server_name())], leaf.ca_pem_path())
}

/// Adds pins (text form) to every upstream.
pub fn with_pins(mut c: Config, pins: &[String]) -> Config {
    let pins: Vec<SpkiPin> = pins.iter().map(|p| p.parse().unwrap()).collect();
    for u in &mut c.upstreams.servers {
        u.pins = pins.clone();
    }
    c
}

/// Starts lanveil in-process; returns the handle and its (first) UDP/TCP address.
pub async fn start(config: Config) -> (lanveil::Running, SocketAddr) {
    let running = lanveil::start(config).await.expect("lanveil starts");
    let addr = running.udp_addrs()[0];
    assert_eq!(running.tcp_addrs()[0], addr, "UDP and TCP share the port");
    (running, addr)
}

/// The `lanveil` binary of this build (built on first use, same profile as the tests).
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| crate::util::workspace_binary("lanveil", "lanveil"))
        .clone()
}

/// A lanveil process with what it logs collected: stderr (errors, warnings) and stdout (the rest).
pub struct Process {
    /// The child.
    pub child: Child,
    /// The collectors of stdout and stderr, each returning its text.
    output: [tokio::task::JoinHandle<String>; 2],
}

impl Process {
    /// Starts the binary with `args`.
    pub fn spawn(args: &[&str]) -> Process {
        let mut child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("lanveil starts");
        fn collect(
            stream: impl tokio::io::AsyncRead + Send + Unpin + 'static,
        ) -> tokio::task::JoinHandle<String> {
            tokio::spawn(async move {
                let mut text = String::new();
                let _ = tokio::io::BufReader::new(stream)
                    .read_to_string(&mut text)
                    .await;
                text
            })
        }
        let output = [
            collect(child.stdout.take().unwrap()),
            collect(child.stderr.take().unwrap()),
        ];
        Process { child, output }
    }

    /// Starts the binary with `args`, then waits until it listens at `listen` and (bounded: it
    /// makes it right after) until its control socket `control` exists.
    pub async fn spawn_serving(args: &[&str], listen: SocketAddr, control: &Path) -> Process {
        let p = Process::spawn(args);
        wait_serving(listen).await;
        for _ in 0..100 {
            if control.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id().unwrap()).unwrap()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Waits (bounded) for exit; returns the exit code and everything it wrote (stderr, then stdout).
    pub async fn wait(self, limit: Duration) -> (Option<i32>, String) {
        let (code, out, err) = self.wait_apart(limit).await;
        (code, err + &out)
    }

    /// Like [`Process::wait`], with stdout and stderr apart: (exit code, stdout, stderr).
    pub async fn wait_apart(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("lanveil exits in time")
            .unwrap();
        let [out, err] = self.output;
        (status.code(), out.await.unwrap(), err.await.unwrap())
    }
}

/// Waits until lanveil listens at `addr` (it binds UDP and TCP together, so a TCP connect proves
/// both), bounded. Answering may still depend on the upstream.
pub async fn wait_serving(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("lanveil did not start listening on {addr}");
}
