//! Two network namespaces joined by a veth pair, with processes that die with the guard.
//!
//! Needs root (CAP_NET_ADMIN) and `ip` from iproute2. Names are unique per process and per pair
//! (`lv<pid>s<n>` / `lv<pid>c<n>`), so parallel tests and parallel runs do not clash. Dropping a
//! [`VethPair`] kills what was spawned in it and deletes both namespaces (which deletes the veth).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::util::require_program;

/// One end of the pair: a namespace holding one veth interface.
#[derive(Debug)]
pub struct Side {
    /// Namespace name (for `ip netns exec`).
    pub ns: String,
    /// The veth interface inside it.
    pub ifname: String,
}

/// Two namespaces, `server` and `client`, linked by a veth pair; cleaned up on drop.
#[derive(Debug)]
pub struct VethPair {
    /// The server side (has `server_addr` on its interface).
    pub server: Side,
    /// The client side (interface up, no address).
    pub client: Side,
    ip: PathBuf,
    children: Vec<Child>,
    created: Vec<String>,
}

impl VethPair {
    /// Creates the namespaces and the veth, puts `server_cidr` (e.g. `10.77.0.1/24`) on the server
    /// side, brings everything up and waits until both ends report carrier.
    ///
    /// # Panics
    /// If `ip` is missing or any step fails (after cleaning up what was made).
    pub fn new(server_cidr: &str) -> VethPair {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let side = |c: char| Side {
            ns: format!("lv{pid}{c}{n}"),
            ifname: format!("lv{}{c}{n}", pid % 100_000),
        };
        let mut pair = VethPair {
            server: side('s'),
            client: side('c'),
            ip: require_program("ip", "iproute2"),
            children: Vec::new(),
            created: Vec::new(),
        };
        let (s, c) = (pair.server.ns.clone(), pair.client.ns.clone());
        let (si, ci) = (pair.server.ifname.clone(), pair.client.ifname.clone());
        for ns in [&s, &c] {
            pair.ip(&["netns", "add", ns]);
            pair.created.push(ns.clone());
        }
        pair.ip(&[
            "link", "add", &si, "netns", &s, "type", "veth", "peer", "name", &ci, "netns", &c,
        ]);
        pair.ip(&["-n", &s, "addr", "add", server_cidr, "dev", &si]);
        for (ns, ifname) in [(&s, &si), (&c, &ci)] {
            pair.ip(&["-n", ns, "link", "set", "lo", "up"]);
            pair.ip(&["-n", ns, "link", "set", ifname, "up"]);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while [(&s, &si), (&c, &ci)].iter().any(|(ns, i)| {
            let out = pair.ip(&["-n", ns, "-o", "link", "show", "dev", i]);
            !String::from_utf8_lossy(&out.stdout).contains("state UP")
        }) {
            assert!(Instant::now() < deadline, "veth {si}/{ci} never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        pair
    }

    /// Runs `ip args…` and panics with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> Output {
        let out = Command::new(&self.ip)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
        assert!(
            out.status.success(),
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A command that runs `program args…` inside `side`'s namespace.
    pub fn command(&self, side: &Side, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &side.ns, program]).args(args);
        cmd
    }

    /// Spawns `cmd` (from [`VethPair::command`]); it is killed when the pair is dropped.
    /// Returns its index for [`VethPair::stop`].
    pub fn spawn(&mut self, mut cmd: Command) -> usize {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    /// Sends SIGTERM to a spawned process and waits (≤ 5 s, then SIGKILL) for it to exit.
    pub fn stop(&mut self, index: usize) {
        let Some(child) = self.children.get_mut(index) else {
            return;
        };
        // Not yet reaped, so the pid is still ours.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.created {
            // Anything still running inside (e.g. a grandchild) would keep the veth alive.
            if let Ok(out) = Command::new(&self.ip).args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new(&self.ip).args(["netns", "del", ns]).status();
        }
    }
}
