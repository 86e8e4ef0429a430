//! A real, independent DoT server for interop tests: Debian's
//! `/usr/sbin/unbound` (package `unbound`) started in the foreground with a
//! throwaway config, serving DNS-over-TLS on a free 127.0.0.1 port (with a
//! [`Leaf`] certificate from the test PKI) and plain DNS on a second port,
//! answering a fixed local zone — no internet needed:
//!
//! * `www.interop.test.` A [`INTEROP_A`], AAAA [`INTEROP_AAAA`], TXT
//!   [`INTEROP_TXT`];
//! * any other name under `interop.test.`: NXDOMAIN (static zone).
//!
//! The process is killed when the [`Unbound`] value is dropped. A system
//! unbound service, if any, is ignored: this one uses its own ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::DotClient;
use crate::pki::Leaf;
use crate::util::{TempDir, free_tcp_udp_port, require_program};

/// The local zone served.
pub const INTEROP_ZONE: &str = "interop.test.";
/// The name with data in the zone.
pub const INTEROP_NAME: &str = "www.interop.test.";
/// A of [`INTEROP_NAME`].
pub const INTEROP_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// AAAA of [`INTEROP_NAME`].
pub const INTEROP_AAAA: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
/// TXT of [`INTEROP_NAME`].
pub const INTEROP_TXT: &str = "lanveil interop";

/// How long [`Unbound::start_dot`] waits for a TLS handshake to succeed.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running unbound.
#[derive(Debug)]
pub struct Unbound {
    child: Child,
    addr: SocketAddr,
    plain_addr: SocketAddr,
    server_name: String,
    dir: TempDir,
}

impl Unbound {
    /// Writes `unbound.conf` (plus copies of the leaf's cert and key) into a
    /// temp dir, starts `unbound -d -c unbound.conf`, and returns once a
    /// real TLS handshake (verified against the leaf's CA) succeeds.
    ///
    /// # Panics
    /// If unbound is not installed, exits, or does not serve TLS within
    /// [`STARTUP_TIMEOUT`] (the panic message includes its log).
    pub async fn start_dot(leaf: &Leaf) -> Unbound {
        let bin = require_program("unbound", "unbound");
        let dir = TempDir::new("lanveil-unbound");
        let key = dir.write("key.pem", leaf.key_pem());
        let cert = dir.write("cert.pem", leaf.cert_pem());
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let dot_port = free_tcp_udp_port(lo);
        let mut plain_port = free_tcp_udp_port(lo);
        while plain_port == dot_port {
            plain_port = free_tcp_udp_port(lo);
        }
        let conf = format!(
            r#"server:
    verbosity: 1
    num-threads: 1
    interface: 127.0.0.1@{dot_port}
    interface: 127.0.0.1@{plain_port}
    tls-port: {dot_port}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
    interface-automatic: no
    so-reuseport: no
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    do-daemonize: no
    chroot: ""
    username: ""
    pidfile: ""
    use-syslog: no
    logfile: ""
    log-time-ascii: yes
    directory: "{dir}"
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: yes
    module-config: "iterator"
    local-zone: "{INTEROP_ZONE}" static
    local-data: "{INTEROP_NAME} 300 IN A {INTEROP_A}"
    local-data: "{INTEROP_NAME} 300 IN AAAA {INTEROP_AAAA}"
    local-data: '{INTEROP_NAME} 300 IN TXT "{INTEROP_TXT}"'

remote-control:
    control-enable: no
"#,
            key = key.display(),
            cert = cert.display(),
            dir = dir.path().display(),
        );
        let conf_path = dir.write("unbound.conf", conf);
        let log = std::fs::File::create(dir.join("unbound.log"))
            .unwrap_or_else(|e| panic!("cannot create unbound log: {e}"));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup unbound log: {e}"));
        let child = Command::new(&bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut ub = Unbound {
            child,
            addr: SocketAddr::new(lo, dot_port),
            plain_addr: SocketAddr::new(lo, plain_port),
            server_name: leaf.server_name(),
            dir,
        };
        ub.wait_ready(leaf).await;
        ub
    }

    async fn wait_ready(&mut self, leaf: &Leaf) {
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let roots = leaf.root_store();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "unbound exited during startup ({status}); log:\n{}",
                    self.log()
                );
            }
            let last_err = match tokio::time::timeout(
                Duration::from_secs(2),
                DotClient::connect(self.addr, &self.server_name, roots.clone()),
            )
            .await
            {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "handshake timed out".to_owned(),
            };
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "unbound did not serve TLS on {} within {STARTUP_TIMEOUT:?} (last error: {last_err}); log:\n{}",
                    self.addr,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The DNS-over-TLS address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A plain DNS (UDP and TCP) address of the same instance.
    pub fn plain_addr(&self) -> SocketAddr {
        self.plain_addr
    }

    /// The name its certificate is verified with.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// unbound's log so far (stdout + stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("unbound.log")).unwrap_or_default()
    }

    /// The config file written.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.join("unbound.conf")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
