//! Reaching the router: the system's `ssh` client (BatchMode, so it never hangs on a prompt; each
//! command bounded by a wall-clock limit, so a remote that accepts and then hangs cannot hold the tool
//! forever), and the daemon's control protocol — over ssh (`lanveil --control SOCKET CMD` prints the
//! raw response envelope) or, on the router itself, straight over the Unix socket.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// The most one command on the router may take, connecting included (`--ssh-timeout`): past it ssh
/// is killed. A push's steps take seconds; a stuck `/etc/init.d/lanveil reload` would take forever.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a running ssh is looked at.
const POLL: Duration = Duration::from_millis(10);

/// How long the output pipes may stay open after ssh has exited.
const PIPE_GRACE: Duration = Duration::from_millis(500);

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
    /// The wall-clock limit of one remote command ([`DEFAULT_COMMAND_TIMEOUT`]).
    pub command_timeout: Duration,
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
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
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
    /// stdout, stderr). Exit 255 is ssh's own failure and becomes an error here, and so does a
    /// command that has not ended within [`SshTarget::command_timeout`] (ssh is killed).
    pub fn run(&self, remote: &str, stdin: Option<&[u8]>) -> Result<(i32, Vec<u8>, String)> {
        self.run_shown(remote, stdin, remote)
    }

    /// [`SshTarget::run`], with `shown` naming the command in errors (it may hide a secret).
    fn run_shown(
        &self,
        remote: &str,
        stdin: Option<&[u8]>,
        shown: &str,
    ) -> Result<(i32, Vec<u8>, String)> {
        let started = Instant::now();
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
        let Finished {
            status,
            stdout,
            stderr,
            sent,
        } = match self.collect(&mut child, stdin, started, shown) {
            Ok(done) => done,
            Err(e) => {
                // Never leave it running, nor unreaped.
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let code = status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
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
        // A failed exit says more than the input it did not read.
        if let (0, Err(e)) = (code, sent) {
            return Err(Error::failed(format!(
                "ssh {}: sending data: {e}",
                self.host
            )));
        }
        Ok((code, stdout, stderr))
    }

    /// Feeds `child` its input and gathers its output (each pipe in a thread of its own, so a remote
    /// that reads nothing or writes without end cannot block us) until it has ended and its pipes
    /// are closed: its status, output, error output, and whether all the input went. An error once
    /// the limit passes (the caller kills and reaps the child).
    fn collect(
        &self,
        child: &mut Child,
        stdin: Option<&[u8]>,
        started: Instant,
        shown: &str,
    ) -> Result<Finished> {
        let failed = |e: std::io::Error| Error::failed(format!("ssh {}: {e}", self.host));
        let input = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.to_vec();
                Some(
                    std::thread::Builder::new()
                        .name("ssh-stdin".into())
                        .spawn(move || pipe.write_all(&data))
                        .map_err(failed)?,
                )
            }
            _ => None,
        };
        let out = child.stdout.take().map(drain).transpose().map_err(failed)?;
        let err = child.stderr.take().map(drain).transpose().map_err(failed)?;
        let deadline = started + self.command_timeout;
        let mut status = None;
        let mut exited_at = None;
        loop {
            if status.is_none() {
                status = child.try_wait().map_err(failed)?;
                exited_at = status.map(|_| Instant::now());
            }
            // Once ssh has exited, its pipes get a moment to drain: a process it left behind (a
            // ControlPersist master, a ProxyCommand helper) may hold them open for good.
            let drained = ended(input.as_ref())
                && ended(out.as_ref().map(|(t, _)| t))
                && ended(err.as_ref().map(|(t, _)| t));
            if let Some(status) = status
                && (drained || exited_at.is_some_and(|t| t.elapsed() >= PIPE_GRACE))
            {
                let sent = match input {
                    Some(h) if h.is_finished() => match h.join() {
                        Ok(sent) => sent,
                        Err(_) => Err(std::io::Error::other("the input thread failed")),
                    },
                    Some(_) => Err(std::io::Error::other(
                        "the remote did not read all its input",
                    )),
                    None => Ok(()),
                };
                return Ok(Finished {
                    status,
                    stdout: gathered(&out),
                    stderr: gathered(&err),
                    sent,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::failed(format!(
                    "ssh {}: `{}` did not finish within {} s; stopped it (a hung command on the \
                     router, or a link that stays up without answering; --ssh-timeout S to allow \
                     more)",
                    self.host,
                    brief(shown),
                    self.command_timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
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

/// How a remote command ended.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Whether all of its input went.
    sent: std::io::Result<()>,
}

/// Most output kept of one remote command (stdout and stderr each): the router's answers are a few
/// KiB; a runaway command's output beyond this is read and thrown away, so it cannot fill our memory.
const MAX_OUTPUT: usize = 16 << 20;

/// Output a thread gathers from one pipe.
type Gathered = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads `pipe` to its end in a thread of its own, keeping at most [`MAX_OUTPUT`] octets (readable
/// before the thread ends: a process ssh left behind may hold the pipe open).
fn drain(pipe: impl Read + Send + 'static) -> std::io::Result<(JoinHandle<()>, Gathered)> {
    let kept = Gathered::default();
    let into = kept.clone();
    let thread = std::thread::Builder::new()
        .name("ssh-output".into())
        .spawn(move || keep_start(pipe, MAX_OUTPUT, &into))?;
    Ok((thread, kept))
}

/// Reads `pipe` to its end into `into`, keeping its first `max` octets.
fn keep_start(mut pipe: impl Read, max: usize, into: &std::sync::Mutex<Vec<u8>>) {
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Ok(mut kept) = into.lock() {
                    let room = max.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The thread has ended (or there was none).
fn ended<T>(h: Option<&JoinHandle<T>>) -> bool {
    h.is_none_or(JoinHandle::is_finished)
}

/// What a [`drain`] read so far (nothing if there was no pipe).
fn gathered(g: &Option<(JoinHandle<()>, Gathered)>) -> Vec<u8> {
    g.as_ref()
        .and_then(|(_, kept)| kept.lock().ok().map(|mut k| std::mem::take(&mut *k)))
        .unwrap_or_default()
}

/// A command as an error message names it: its first line, at most 120 characters.
fn brief(cmd: &str) -> String {
    let line = cmd.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let more = line.len() < cmd.trim_end().len();
    let mut s: String = line.chars().take(120).collect();
    if more || s.len() < line.len() {
        s.push_str(" …");
    }
    s
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
                let shown = match shown {
                    Some(w) => format!("{} --control {} {w}", sh_quote(lanveil), sh_quote(socket)),
                    None => cmd.clone(),
                };
                let (code, out, err) = target.run_shown(&cmd, None, &shown)?;
                if code != 0 {
                    let cmd = shown;
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
    use crate::test_util::{TempDir, write_script};

    /// A stand-in for ssh (as `--ssh` allows) that records its process ID and then sleeps, long past
    /// any limit the tests set: a router that took the connection and hangs.
    fn hanging_ssh(dir: &TempDir) -> (SshTarget, std::path::PathBuf) {
        let pid = dir.join("pid");
        let fake = dir.join("fake-ssh");
        write_script(
            &fake,
            &format!("#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n", pid.display()),
        );
        let mut t = SshTarget::new("r");
        t.program = fake.display().to_string();
        t.command_timeout = Duration::from_secs(1);
        (t, pid)
    }

    /// The process `pid` file names is gone: killed and reaped (`kill -0` succeeds on a zombie).
    fn assert_gone(pid_file: &std::path::Path) {
        let pid = std::fs::read_to_string(pid_file).unwrap();
        let pid = pid.trim();
        assert!(!pid.is_empty());
        let alive = Command::new("sh")
            .args(["-c", &format!("kill -0 {pid} 2>/dev/null")])
            .status()
            .unwrap()
            .success();
        assert!(!alive, "ssh stand-in {pid} is still there");
    }

    /// A remote command that never ends (a stuck `/etc/init.d/lanveil reload`) is stopped at the limit:
    /// an error naming the command and the limit, soon after it, and no ssh process left behind.
    #[test]
    fn a_hanging_remote_command_is_stopped_at_the_limit() {
        let dir = TempDir::new("ssh-hang");
        let (t, pid) = hanging_ssh(&dir);
        let start = Instant::now();
        let e = t
            .run("/etc/init.d/lanveil reload </dev/null", None)
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert_eq!(
            e.message,
            "ssh root@r: `/etc/init.d/lanveil reload </dev/null` did not finish within 1 s; stopped \
             it (a hung command on the router, or a link that stays up without answering; \
             --ssh-timeout S to allow more)"
        );
        assert_eq!(e.exit, crate::error::EXIT_FAILED);
        assert_gone(&pid);
    }

    /// Also when it never reads what it is sent (more than a pipe holds), and through `run_ok`.
    #[test]
    fn a_remote_that_reads_nothing_is_stopped_at_the_limit() {
        let dir = TempDir::new("ssh-hang-in");
        let (t, pid) = hanging_ssh(&dir);
        let start = Instant::now();
        let e = t
            .run_ok(
                "umask 022 && cat > '/etc/config/lanveil.lanveil-ctl-new'",
                Some(&vec![b'x'; 1 << 20]),
                "uploading the configuration",
            )
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(4), "{e}");
        assert!(
            e.message.starts_with(
                "ssh root@r: `umask 022 && cat > '/etc/config/lanveil.lanveil-ctl-new'` did not \
                 finish within 1 s"
            ),
            "{e}"
        );
        assert_gone(&pid);
    }

    /// A control request that hangs is named as errors name it: the leak-test nonce stays out.
    #[test]
    fn a_hanging_control_request_keeps_the_nonce_out_of_the_error() {
        let dir = TempDir::new("ssh-hang-ctl");
        let (target, pid) = hanging_ssh(&dir);
        let control = Control::Ssh {
            target,
            lanveil: "lanveil".into(),
            socket: "/s".into(),
        };
        let e = control
            .request(&Request::LeakProbe {
                label: "k3v9q2m7".into(),
                nonce: "secret0123456789".into(),
            })
            .unwrap_err();
        assert!(
            e.message.starts_with(
                "ssh root@r: `'lanveil' --control '/s' leak-probe 'k3v9q2m7' NONCE` did not finish"
            ),
            "{e}"
        );
        assert!(!e.message.contains("secret"), "{e}");
        assert_gone(&pid);
    }

    #[test]
    fn output_past_the_limit_is_read_and_dropped() {
        let data = vec![7u8; 100_000];
        let mut reader = std::io::Cursor::new(data);
        let kept = std::sync::Mutex::new(Vec::new());
        keep_start(&mut reader, 10, &kept);
        assert_eq!(*kept.lock().unwrap(), [7; 10]);
        // All of it was read (a writer past the limit is not blocked on a full pipe).
        assert_eq!(reader.position(), 100_000);
        let kept = std::sync::Mutex::new(Vec::new());
        keep_start(std::io::Cursor::new(b"abc".to_vec()), 10, &kept);
        assert_eq!(*kept.lock().unwrap(), b"abc");
    }

    /// ssh exits, but a process it left behind (a ControlPersist master, a ProxyCommand helper)
    /// keeps its output pipes open: the command's own exit code and output come back at once, not
    /// a time-out at the limit.
    #[test]
    fn a_leftover_process_holding_the_pipes_does_not_hold_the_result() {
        let dir = TempDir::new("ssh-leftover");
        let fake = dir.join("fake-ssh");
        write_script(
            &fake,
            "#!/bin/sh
echo out
echo 'no route' >&2
(sleep 5 &)
exit 3
",
        );
        let mut t = SshTarget::new("r");
        t.program = fake.display().to_string();
        t.command_timeout = Duration::from_secs(4);
        let start = Instant::now();
        let (code, out, err) = t.run("x", None).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            (code, out.as_slice(), err.as_str()),
            (3, &b"out\n"[..], "no route")
        );
    }

    /// Within the limit nothing changes: exit code, output, error output, and the input delivered.
    #[test]
    fn a_command_that_ends_gives_its_code_and_output() {
        let dir = TempDir::new("ssh-quick");
        let fake = dir.join("fake-ssh");
        write_script(
            &fake,
            "#!/bin/sh\nwc -c | tr -d ' '\necho oops >&2\nexit 3\n",
        );
        let mut t = SshTarget::new("r");
        t.program = fake.display().to_string();
        let (code, out, err) = t.run("x", Some(&vec![b'x'; 200_000])).unwrap();
        assert_eq!(
            (code, out.as_slice(), err.as_str()),
            (3, &b"200000\n"[..], "oops")
        );
        let e = t.run_ok("x", None, "checking").unwrap_err();
        assert_eq!(e.message, "checking on root@r failed (exit 3): oops");
        // ssh's own failure (255) is still named as such.
        write_script(
            &fake,
            "#!/bin/sh\necho 'Connection refused' >&2\nexit 255\n",
        );
        let e = t.run("x", None).unwrap_err();
        assert_eq!(e.message, "ssh root@r failed: Connection refused");
        // ... also when it never took the input it was given.
        let big = vec![b'x'; 1 << 20];
        let e = t.run("x", Some(&big)).unwrap_err();
        assert_eq!(e.message, "ssh root@r failed: Connection refused");
        // A command that succeeds without taking all its input: that is the error.
        write_script(&fake, "#!/bin/sh\nexit 0\n");
        let e = t.run("x", Some(&big)).unwrap_err();
        assert!(e.message.starts_with("ssh root@r: sending data: "), "{e}");
    }

    #[test]
    fn commands_are_named_by_their_first_line() {
        assert_eq!(brief("a b"), "a b");
        assert_eq!(brief("set -e\nif x; then y; fi\n"), "set -e …");
        assert_eq!(brief(&"x".repeat(200)), format!("{} …", "x".repeat(120)));
    }

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
