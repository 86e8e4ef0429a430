//! Reaching the router: the system's `ssh` client (BatchMode, so it never hangs on a prompt), and the
//! daemon's control protocol — over ssh (`lanveil --control SOCKET CMD` prints the raw response
//! envelope) or, on the router itself, straight over the Unix socket.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use lanveil_config::control::{Request, Response};
use lanveil_config::envelope;

use crate::error::{Error, Result};

/// OpenWrt's defaults.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/config/lanveil";
/// The daemon binary on the router (found in `PATH`).
pub const DEFAULT_LANVEIL: &str = "lanveil";
/// The daemon's control socket.
pub const DEFAULT_CONTROL: &str = "/var/run/lanveil/daemon/control.sock";

/// Seconds between ssh keep-alives (`ServerAliveInterval`).
pub const SERVER_ALIVE_INTERVAL: u32 = 5;
/// Unanswered keep-alives after which ssh gives up (`ServerAliveCountMax`).
pub const SERVER_ALIVE_COUNT: u32 = 3;

/// How to reach the router over ssh.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// `[USER@]HOST` (`root@` is added when no user is given).
    pub host: String,
    /// `-p PORT`.
    pub port: Option<u16>,
    /// `-i FILE`.
    pub identity: Option<String>,
    /// Extra `-o OPTION=VALUE`.
    pub options: Vec<String>,
    /// The ssh program.
    pub program: String,
    /// `ConnectTimeout`, seconds.
    pub connect_timeout: u32,
}

impl SshTarget {
    /// A target with defaults (`root@HOST`, port 22, the user's keys and known_hosts).
    pub fn new(host: &str) -> Self {
        let host = if host.contains('@') {
            host.to_string()
        } else {
            format!("root@{host}")
        };
        Self {
            host,
            port: None,
            identity: None,
            options: Vec::new(),
            program: "ssh".into(),
            connect_timeout: 10,
        }
    }

    /// The host part (without `user@`), e.g. to send DNS to it.
    pub fn hostname(&self) -> &str {
        self.host
            .rsplit_once('@')
            .map_or(self.host.as_str(), |(_, h)| h)
    }

    fn command(&self, remote: &str) -> Command {
        let mut c = Command::new(&self.program);
        c.args(["-o", "BatchMode=yes", "-o"])
            .arg(format!("ConnectTimeout={}", self.connect_timeout))
            .args(["-o", "LogLevel=ERROR"]);
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        if let Some(i) = &self.identity {
            c.arg("-i").arg(i);
        }
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        // A router that stops answering mid-session (power, Wi-Fi, a hung link) ends the session
        // after 3 unanswered keep-alives 5 s apart, instead of never. After the owner's options:
        // ssh takes the first value it is given, so `--ssh-option ServerAliveInterval=N` wins.
        for (key, value) in [
            ("ServerAliveInterval", SERVER_ALIVE_INTERVAL),
            ("ServerAliveCountMax", SERVER_ALIVE_COUNT),
        ] {
            c.arg("-o").arg(format!("{key}={value}"));
        }
        c.arg(&self.host).arg("--").arg(remote);
        c
    }

    /// Runs `remote` (a shell command line on the router), feeding `stdin`; returns (exit code,
    /// stdout, stderr). Exit 255 is ssh's own failure and becomes an error here.
    pub fn run(&self, remote: &str, stdin: Option<&[u8]>) -> Result<(i32, Vec<u8>, String)> {
        let mut child = self
            .command(remote)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::failed(format!(
                    "cannot run {}: {e} (install an OpenSSH client)",
                    self.program
                ))
            })?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(data)
                .map_err(|e| Error::failed(format!("ssh {}: sending data: {e}", self.host)))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::failed(format!("ssh {}: {e}", self.host)))?;
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if code == 255 {
            return Err(Error::failed(format!(
                "ssh {} failed: {}{}",
                self.host,
                if stderr.is_empty() {
                    "no detail"
                } else {
                    &stderr
                },
                if stderr.contains("Host key verification failed") {
                    " (connect once with plain `ssh` to accept the router's host key)"
                } else {
                    ""
                }
            )));
        }
        Ok((code, out.stdout, stderr))
    }

    /// Runs `remote` and requires exit 0; returns stdout.
    pub fn run_ok(&self, remote: &str, stdin: Option<&[u8]>, what: &str) -> Result<Vec<u8>> {
        let (code, out, err) = self.run(remote, stdin)?;
        if code != 0 {
            return Err(Error::failed(format!(
                "{what} on {} failed (exit {code}){}",
                self.host,
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            )));
        }
        Ok(out)
    }
}

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where the daemon's control socket is.
#[derive(Debug, Clone)]
pub enum Control {
    /// Through ssh: `LANVEIL --control SOCKET CMD` on the router.
    Ssh {
        /// The router.
        target: SshTarget,
        /// The daemon binary there.
        lanveil: String,
        /// The socket there.
        socket: String,
    },
    /// Directly (on the router, or in tests).
    Local(String),
}

impl Control {
    /// Sends one request and decodes the response.
    pub fn request(&self, req: &Request) -> Result<Response> {
        let bytes = match self {
            Self::Ssh {
                target,
                lanveil,
                socket,
            } => {
                // `shown` is the request as error messages name it (never the leak-test nonce).
                let (word, shown) = match req {
                    Request::Status => ("status".to_string(), None),
                    Request::QueryLog => ("log".to_string(), None),
                    Request::Reload => ("reload".to_string(), None),
                    Request::LeakProbe { label, nonce } => (
                        format!("leak-probe {} {}", sh_quote(label), sh_quote(nonce)),
                        Some(format!("leak-probe {} NONCE", sh_quote(label))),
                    ),
                    Request::WanPortal { .. } => {
                        return Err(Error::failed(
                            "wan-portal is sent by the router's own WAN hook, not over ssh",
                        ));
                    }
                };
                let cmd = format!(
                    "{} --control {} {word}",
                    sh_quote(lanveil),
                    sh_quote(socket)
                );
                let (code, out, err) = target.run(&cmd, None)?;
                if code != 0 {
                    let cmd = match shown {
                        Some(w) => {
                            format!("{} --control {} {w}", sh_quote(lanveil), sh_quote(socket))
                        }
                        None => cmd,
                    };
                    return Err(Error::failed(format!(
                        "`{cmd}` on {} failed (exit {code}): {}",
                        target.host,
                        if err.is_empty() { "no detail" } else { &err }
                    )));
                }
                out
            }
            Self::Local(path) => local_request(path, req)?,
        };
        Response::decode(&bytes).map_err(|e| {
            Error::failed(format!(
                "the daemon's answer could not be read ({e}); are lanveil and lanveil-ctl the same version?"
            ))
        })
    }
}

#[cfg(unix)]
fn local_request(path: &str, req: &Request) -> Result<Vec<u8>> {
    use std::os::unix::net::UnixStream;
    let ctx = |e: std::io::Error| Error::failed(format!("control socket {path}: {e}"));
    let mut s = UnixStream::connect(path).map_err(ctx)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(ctx)?;
    s.write_all(&req.encode()).map_err(ctx)?;
    let mut blob = vec![0u8; envelope::HEADER_LEN];
    s.read_exact(&mut blob).map_err(ctx)?;
    let total = envelope::total_len(&blob)
        .filter(|n| *n <= 16 << 20)
        .ok_or_else(|| Error::failed(format!("control socket {path}: bad answer length")))?;
    blob.resize(total, 0);
    s.read_exact(&mut blob[envelope::HEADER_LEN..])
        .map_err(ctx)?;
    Ok(blob)
}

#[cfg(not(unix))]
fn local_request(path: &str, _req: &Request) -> Result<Vec<u8>> {
    Err(Error::usage(format!(
        "{path}: Unix sockets need a Unix system"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_hosts() {
        assert_eq!(sh_quote("a'b c"), r"'a'\''b c'");
        let t = SshTarget::new("192.168.1.1");
        assert_eq!(
            (t.host.as_str(), t.hostname()),
            ("root@192.168.1.1", "192.168.1.1")
        );
        assert_eq!(SshTarget::new("me@r").hostname(), "r");
    }

    #[test]
    fn ssh_gives_up_on_a_silent_router() {
        let mut t = SshTarget::new("r");
        t.options = vec!["ServerAliveInterval=2".into()];
        let args: Vec<String> = t
            .command("true")
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |s: &str| args.iter().position(|a| a == s);
        let (Some(mine), Some(interval), Some(count), Some(host)) = (
            at("ServerAliveInterval=2"),
            at("ServerAliveInterval=5"),
            at("ServerAliveCountMax=3"),
            at("root@r"),
        ) else {
            panic!("{args:?}");
        };
        assert_eq!(args[interval - 1], "-o");
        assert_eq!(args[count - 1], "-o");
        // The owner's value comes first (ssh keeps the first), ours before the host.
        assert!(
            mine < interval && interval < host && count < host,
            "{args:?}"
        );
    }
}
