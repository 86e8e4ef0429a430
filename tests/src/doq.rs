//! DNS-over-QUIC servers lanveil did not write, for the DoQ interop tests: a small aioquic server
//! (`tests/doq/aioquic_server.py`, PyPI aioquic in a venv under `target/`, created on first use) that
//! reports what it receives, and hickory-dns built from crates.io with its QUIC feature.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::pki::Leaf;

/// The aioquic version the tests pin.
pub const AIOQUIC: &str = "aioquic==1.7.2";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The venv's python with aioquic, created under `target/doq-venv` if missing (needs `python3` with
/// `venv` and PyPI). Panics with the reason when it cannot be made: the test never skips.
pub fn aioquic_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = workspace().join("target/doq-venv");
        let py = venv.join("bin/python");
        let ok = |py: &Path| {
            std::process::Command::new(py)
                .args(["-c", "import aioquic"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&py) {
            let status = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs (install python3 and python3-venv)");
            assert!(status.success(), "python3 -m venv {}", venv.display());
            let status = std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", AIOQUIC])
                .status()
                .expect("pip runs");
            assert!(status.success(), "pip install {AIOQUIC}");
            assert!(ok(&py), "aioquic imports after installing it");
        }
        py
    })
    .clone()
}

/// One line the aioquic server reported (see the script's header).
pub type ServerEvent = serde_json::Value;

/// A running aioquic DoQ server.
pub struct AioquicServer {
    child: Child,
    addr: SocketAddr,
    events: Arc<Mutex<Vec<ServerEvent>>>,
}

impl AioquicServer {
    /// Starts the server presenting `leaf` on a free loopback UDP port (or `port`), with QUIC idle
    /// timeout `idle`.
    pub async fn start(leaf: &Leaf, port: Option<u16>, idle: Duration) -> AioquicServer {
        let script = workspace().join("tests/doq/aioquic_server.py");
        let mut child = Command::new(aioquic_python())
            .arg(script)
            .arg(leaf.cert_pem_path())
            .arg(leaf.key_pem_path())
            .arg(port.unwrap_or(0).to_string())
            .arg(idle.as_secs_f64().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the aioquic server starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = events.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<ServerEvent>(&line) else {
                    continue;
                };
                if v["event"] == "listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                    }
                    continue;
                }
                sink.lock().unwrap().push(v);
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("the aioquic server reports its port in time")
            .expect("the aioquic server reports its port");
        AioquicServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            events,
        }
    }

    /// Where it listens (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything reported so far, but the `listening` line.
    pub fn events(&self) -> Vec<ServerEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The reported events of one kind.
    pub fn events_of(&self, kind: &str) -> Vec<ServerEvent> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// Waits until `n` events of `kind` were reported (or `limit` passes); returns whether they were.
    pub async fn wait_for(&self, kind: &str, n: usize, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            if self.events_of(kind).len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.events_of(kind).len() >= n
    }

    /// Freezes the server (SIGSTOP): its socket stays, nothing is answered, as a stalled upstream.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id().expect("the server runs")).expect("a pid");
        // SAFETY: kill(2) on our own child's pid with a valid signal number; no memory involved.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Stops the server (the UDP port is free again).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// The hickory-dns version the tests build (crates.io, `--features quic-ring`).
pub const HICKORY_VERSION: &str = "0.26.3";

/// The hickory-dns binary built for the DoQ tests (`target/hickory-dns/bin/hickory-dns`, built by
/// the `DoQ interop server` step of tests/all.sh). Panics with the command to build it when missing.
pub fn hickory_binary() -> PathBuf {
    let bin = workspace().join("target/hickory-dns/bin/hickory-dns");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo install --locked --root target/hickory-dns hickory-dns@{HICKORY_VERSION} --no-default-features --features quic-ring` (tests/all.sh does)",
        bin.display()
    );
    bin
}

/// The names hickory-dns serves (zone `hickory.test`): `www` A 192.0.2.53, `big` 40 TXT strings of
/// 200 octets (an answer of over 8 KB); anything else NXDOMAIN.
pub const HICKORY_ZONE: &str = "hickory.test.";
/// `www.hickory.test.`'s address.
pub const HICKORY_WWW_A: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 53);

/// hickory-dns serving [`HICKORY_ZONE`] over DoQ only, with `leaf`'s certificate.
pub struct HickoryDoq {
    child: Child,
    addr: SocketAddr,
    _dir: crate::util::TempDir,
}

impl HickoryDoq {
    /// Starts it on a free loopback UDP port and waits until it answers the QUIC handshake port
    /// (it logs when its listeners are up; this waits for the UDP port to be taken).
    pub async fn start(leaf: &Leaf) -> HickoryDoq {
        let bin = hickory_binary();
        let dir = crate::util::TempDir::new("hickory-doq");
        std::fs::copy(leaf.cert_pem_path(), dir.join("cert.pem")).unwrap();
        std::fs::copy(leaf.key_pem_path(), dir.join("key.pem")).unwrap();
        let big: String = (0..40)
            .map(|i| format!("big IN TXT \"{}\"\n", format!("{i:02}").repeat(100)))
            .collect();
        dir.write(
            "hickory.test.zone",
            format!(
                "$ORIGIN hickory.test.\n$TTL 300\n@ IN SOA ns admin 1 3600 600 86400 300\n@ IN NS ns\nns IN A 192.0.2.1\nwww IN A {HICKORY_WWW_A}\n{big}"
            ),
        );
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let quic = free_udp_port();
        let plain = crate::util::free_tcp_udp_port(ip);
        dir.write(
            "hickory.toml",
            format!(
                "listen_addrs_ipv4 = [\"127.0.0.1\"]\nlisten_port = {plain}\ndrop_privileges = false\ntls_cert = {{ path = \"cert.pem\", private_key = \"key.pem\" }}\n\n[[zones]]\nzone = \"hickory.test\"\nzone_type = \"Primary\"\nfile = \"hickory.test.zone\"\n"
            ),
        );
        let child = Command::new(bin)
            .arg("-q")
            .arg("-c")
            .arg(dir.join("hickory.toml"))
            .arg("-z")
            .arg(dir.path())
            .args(["--disable-tls", "--quic-port"])
            .arg(quic.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("hickory-dns starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], quic));
        // Up when its UDP port is taken.
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while std::net::UdpSocket::bind(addr).is_ok() {
            assert!(
                tokio::time::Instant::now() < end,
                "hickory-dns did not bind {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        HickoryDoq {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Its DoQ address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}
