//! Debian's dnsdist as a DNS-over-HTTPS server we did not write: a DoH frontend (`addDOHLocal`) in
//! front of a plain backend (e.g. [`crate::Unbound::plain_addr`]). Killed on drop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::pki::Leaf;
use crate::util::{TempDir, free_port, require_program};

/// A running dnsdist.
pub struct Dnsdist {
    child: Child,
    doh: SocketAddr,
    _dir: TempDir,
}

impl Drop for Dnsdist {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Dnsdist {
    /// Starts dnsdist with a DoH frontend at `/dns-query` presenting `leaf`, forwarding to `backend`
    /// (health-checked with `check_name`). Waits until the frontend accepts TCP.
    pub async fn start_doh(leaf: &Leaf, backend: SocketAddr, check_name: &str) -> Dnsdist {
        let bin = require_program("dnsdist", "dnsdist");
        let dir = TempDir::new("lanveil-dnsdist");
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let doh = SocketAddr::new(local, free_port(local));
        let plain = SocketAddr::new(local, free_port(local));
        let conf = format!(
            "setLocal('{plain}')\n\
             newServer({{address='{backend}', checkName='{check_name}', mustResolve=true}})\n\
             addDOHLocal('{doh}', '{}', '{}', '/dns-query', {{}})\n",
            leaf.cert_pem_path().display(),
            leaf.key_pem_path().display(),
        );
        let path = dir.write("dnsdist.conf", conf);
        let child = Command::new(bin)
            .args(["--supervised", "--disable-syslog", "-C"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("dnsdist starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(doh).await.is_ok() {
                // Give the backend health check a moment to mark the server up.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return Dnsdist {
                    child,
                    doh,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dnsdist did not open its DoH port {doh}");
    }

    /// The DoH frontend address.
    pub fn doh_addr(&self) -> SocketAddr {
        self.doh
    }
}
