//! A real OpenSSH server on loopback for `lanveil-ctl push`/`status` tests, and the `lanveil-ctl`
//! binary of this build.
//!
//! [`Sshd::start`] runs Debian's `/usr/sbin/sshd -D` as the current user (root) on `127.0.0.1` with a
//! throwaway host key and one authorized throwaway client key (both made with `ssh-keygen` in a
//! temporary directory), `StrictModes no`, `UsePAM no`, public-key authentication only.
//! [`Sshd::ctl_args`] gives the `lanveil-ctl` options that reach it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{TempDir, free_port, require_program};

const INSTALL_HINT: &str = "openssh-server openssh-client";

/// A running sshd; killed on drop.
pub struct Sshd {
    child: Child,
    port: u16,
    client_key: PathBuf,
    dir: TempDir,
}

impl std::fmt::Debug for Sshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sshd")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn keygen(path: &Path) {
    let status = Command::new(require_program("ssh-keygen", INSTALL_HINT))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "lanveil-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

impl Sshd {
    /// Starts sshd on a free loopback port and waits until a real `ssh … true` succeeds.
    ///
    /// # Panics
    /// If OpenSSH is not installed (with the `apt-get install` hint), if not running as root, or if
    /// sshd does not come up within 10 s.
    pub fn start() -> Sshd {
        let sshd = require_program("/usr/sbin/sshd", INSTALL_HINT);
        require_program("ssh", INSTALL_HINT);
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the push/status tests start sshd and log in as root: run them as root"
        );
        // Privilege separation directory Debian's sshd insists on.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = TempDir::new("lanveil-sshd");
        let host_key = dir.join("host_ed25519");
        let client_key = dir.join("client_ed25519");
        keygen(&host_key);
        keygen(&client_key);
        let pubkey = std::fs::read_to_string(dir.join("client_ed25519.pub")).unwrap();
        let authorized = dir.write("authorized_keys", pubkey);
        let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let config = dir.write(
            "sshd_config",
            format!(
                "ListenAddress 127.0.0.1\n\
                 HostKey {host}\n\
                 AuthorizedKeysFile {auth}\n\
                 PidFile {pid}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 MaxStartups 100\n\
                 LogLevel ERROR\n",
                host = host_key.display(),
                auth = authorized.display(),
                pid = dir.join("sshd.pid").display(),
            ),
        );
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sshd starts");
        let s = Sshd {
            child,
            port,
            client_key,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A real login (a bare TCP probe would make sshd log a kex_exchange_identification error).
            let ok = Command::new("ssh")
                .args(s.ssh_args())
                .args(["root@127.0.0.1", "true"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|st| st.success());
            if ok {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not accept a login on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `ssh` arguments that log in (before the destination).
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-p".into(),
            self.port.to_string(),
            "-i".into(),
            self.client_key.display().to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// The `lanveil-ctl` router options that reach this server (append the ROUTER `root@127.0.0.1`).
    pub fn ctl_args(&self) -> Vec<String> {
        vec![
            "--ssh-port".into(),
            self.port.to_string(),
            "--identity".into(),
            self.client_key.display().to_string(),
            "--ssh-option".into(),
            "StrictHostKeyChecking=no".into(),
            "--ssh-option".into(),
            "UserKnownHostsFile=/dev/null".into(),
        ]
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `lanveil-ctl` binary of this build (built on first use, same profile as the tests).
pub fn ctl_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| crate::util::workspace_binary("lanveil-cli", "lanveil-ctl"))
        .clone()
}

/// The outcome of one `lanveil-ctl` run.
#[derive(Debug)]
pub struct CtlOutput {
    /// Exit status (`None` if killed).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CtlOutput {
    /// Standard output read as JSON (a `--json` run's).
    ///
    /// # Panics
    /// When it is not JSON (everything the run printed in the message).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl From<std::process::Output> for CtlOutput {
    fn from(out: std::process::Output) -> CtlOutput {
        CtlOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `lanveil-ctl ARGS` in `cwd` (blocking; [`ctl_async`] from async tests).
pub fn ctl(cwd: &Path, args: &[&str]) -> CtlOutput {
    Command::new(ctl_binary())
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("lanveil-ctl runs")
        .into()
}

/// [`ctl`] from async code, on a blocking thread.
pub async fn ctl_async(cwd: &Path, args: Vec<String>) -> CtlOutput {
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&cwd, &refs)
    })
    .await
    .expect("the lanveil-ctl thread finishes")
}
