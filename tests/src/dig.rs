//! Runs the real `dig` (Debian `dnsutils` / `bind9-dnsutils`, BIND 9.18:
//! `+tls`, `+tls-ca=`, `+tls-hostname=`, `+tcp`, `+bufsize=`, `+ednsopt=`)
//! and `kdig` (Debian `knot-dnsutils`: `+tls`, `+tls-ca=`,
//! `+tls-hostname=`, `+tls-pin=`) and parses what they print: status,
//! header flags (including `tc`), answer lines, EDNS UDP size and the
//! Extended DNS Error line.
//!
//! A missing binary is a panic with the package to install, never a silent
//! skip. Each run is killed after [`TOOL_TIMEOUT`]; `+tries=1 +time=3` (dig)
//! or `+retry=0 +timeout=3` (kdig) are passed first so a silent server costs
//! 3 s (later arguments override).

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use crate::util::require_program;

/// Hard bound on one dig/kdig run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// An Extended DNS Error line as printed by the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigEde {
    /// INFO-CODE.
    pub code: u16,
    /// The tool's name for the code, e.g. `No Reachable Authority`.
    pub purpose: Option<String>,
    /// EXTRA-TEXT, without the surrounding `( )` / quotes.
    pub text: Option<String>,
}

/// What a dig/kdig run printed, parsed. When several responses are printed
/// (e.g. `+tries` or a TC retry), the last one wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigOutput {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`…; `None` if no response was printed.
    pub status: Option<String>,
    /// Header flags, lower case (`qr`, `rd`, `ra`, `tc`, `aa`, `ad`, `cd`).
    pub flags: Vec<String>,
    /// Answer section lines, whitespace-normalised (`name ttl class type rdata`).
    pub answers: Vec<String>,
    /// The Extended DNS Error, if printed.
    pub ede: Option<DigEde>,
    /// The UDP size of the response's OPT record, if any.
    pub edns_udp: Option<u16>,
    /// Size of the received message, if printed.
    pub msg_size: Option<usize>,
    /// Exit status (`None` if killed by a signal).
    pub exit_code: Option<i32>,
    /// Raw standard output.
    pub stdout: String,
    /// Raw standard error.
    pub stderr: String,
}

impl DigOutput {
    /// Whether header flag `flag` (e.g. `"tc"`) was set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    /// The rdata (everything after the type column) of answers of `rtype`.
    pub fn answer_rdata(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let pos = cols.iter().position(|c| c.eq_ignore_ascii_case(rtype))?;
                // name ttl class TYPE rdata…: the type is at index 3.
                (pos == 3).then(|| cols.get(4..).unwrap_or_default().join(" "))
            })
            .collect()
    }

    /// Checks the status and the rdata of the answers of `rtype` (in order), with everything
    /// printed in the failure message.
    ///
    /// # Panics
    /// When either differs.
    #[track_caller]
    pub fn assert_answers(&self, status: &str, rtype: &str, rdata: &[impl ToString]) {
        assert_eq!(self.status_str(), status, "{}", self.transcript());
        let want: Vec<String> = rdata.iter().map(ToString::to_string).collect();
        assert_eq!(self.answer_rdata(rtype), want, "{}", self.transcript());
    }

    /// The status, or `""` if none.
    pub fn status_str(&self) -> &str {
        self.status.as_deref().unwrap_or("")
    }

    /// Everything printed, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.exit_code, self.stdout, self.stderr
        )
    }
}

/// Runs `prog DEFAULTS… ARGS…` (`package` names the package to install when it is missing) and parses
/// what it prints the way `dialect` says.
async fn run_tool<S: AsRef<OsStr>>(
    prog: &str,
    package: &str,
    defaults: &[&str],
    dialect: &Dialect,
    args: &[S],
) -> DigOutput {
    let path = require_program(prog, package);
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args(defaults)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    match tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut parsed = parse(&stdout, dialect);
            parsed.exit_code = out.status.code();
            parsed.stdout = stdout;
            parsed.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            parsed
        }
        Ok(Err(e)) => panic!("{prog} failed to run: {e}"),
        Err(_) => panic!("{prog} did not finish within {TOOL_TIMEOUT:?}"),
    }
}

/// Runs `dig ARGS…` (after `+tries=1 +time=3`) and parses its output.
///
/// # Panics
/// If `dig` is not installed or does not finish within [`TOOL_TIMEOUT`].
pub async fn dig<S: AsRef<OsStr>>(args: &[S]) -> DigOutput {
    run_tool(
        "dig",
        "bind9-dnsutils",
        &["+tries=1", "+time=3"],
        &DIG,
        args,
    )
    .await
}

/// Runs `kdig ARGS…` (after `+retry=0 +timeout=3`) and parses its output.
///
/// # Panics
/// If `kdig` is not installed or does not finish within [`TOOL_TIMEOUT`].
pub async fn kdig<S: AsRef<OsStr>>(args: &[S]) -> DigOutput {
    run_tool(
        "kdig",
        "knot-dnsutils",
        &["+retry=0", "+timeout=3"],
        &KDIG,
        args,
    )
    .await
}

fn normalise(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses `22 (No Reachable Authority): (text)` (dig) or
/// `22 (No Reachable Authority): 'text'` (kdig).
fn parse_ede(rest: &str) -> Option<DigEde> {
    let rest = rest.trim();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let code = digits.parse().ok()?;
    let mut rest = rest.get(digits.len()..)?.trim_start();
    let mut purpose = None;
    if let Some(r) = rest.strip_prefix('(') {
        let end = r.find(')')?;
        purpose = Some(r.get(..end)?.to_owned());
        rest = r.get(end + 1..)?.trim_start();
    }
    let text = rest.strip_prefix(':').map(|t| {
        let t = t.trim();
        let t = t
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .or_else(|| t.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
            .or_else(|| t.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
            .unwrap_or(t);
        t.to_owned()
    });
    Some(DigEde {
        code,
        purpose,
        text: text.filter(|t| !t.is_empty()),
    })
}

/// How one tool prints the lines read here. The rest is common: a header line starts a new response
/// (forgetting the previous one), and the answer section runs to the first blank or `;` line.
struct Dialect {
    /// Separates the parts of the header line after `;; ->>HEADER<<-` (one is `status: …`).
    header_sep: char,
    /// Starts the header flags line.
    flags: &'static str,
    /// The response OPT record's UDP size, when the line is the one that shows it.
    edns_udp: fn(&str) -> Option<Option<u16>>,
    /// Starts the Extended DNS Error line.
    ede: &'static str,
    /// The received message's size, when the line is the one that shows it.
    msg_size: fn(&str) -> Option<Option<usize>>,
}

/// BIND `dig`.
const DIG: Dialect = Dialect {
    header_sep: ',',
    flags: ";; flags:",
    edns_udp: |t| {
        let e = t.strip_prefix("; EDNS:")?;
        Some(
            e.split(';')
                .find_map(|p| p.trim().strip_prefix("udp:"))
                .and_then(|u| u.trim().parse().ok()),
        )
    },
    ede: "; EDE:",
    msg_size: |t| {
        let s = t.strip_prefix(";; MSG SIZE  rcvd:")?;
        Some(s.trim().parse().ok())
    },
};

/// Knot `kdig`.
const KDIG: Dialect = Dialect {
    header_sep: ';',
    flags: ";; Flags:",
    edns_udp: |t| {
        t.starts_with(";; Version:").then(|| {
            t.split(';')
                .find_map(|p| p.trim().strip_prefix("UDP size:"))
                .and_then(|u| u.split_whitespace().next())
                .and_then(|u| u.parse().ok())
        })
    },
    ede: ";; EDE:",
    msg_size: |t| {
        let s = t.strip_prefix(";; Received")?;
        Some(s.split_whitespace().next().and_then(|n| n.parse().ok()))
    },
};

/// Parses BIND `dig` output.
pub fn parse_dig(stdout: &str) -> DigOutput {
    parse(stdout, &DIG)
}

/// Parses Knot `kdig` output.
pub fn parse_kdig(stdout: &str) -> DigOutput {
    parse(stdout, &KDIG)
}

fn parse(stdout: &str, dialect: &Dialect) -> DigOutput {
    let mut out = DigOutput::default();
    let mut in_answer = false;
    for line in stdout.lines() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix(";; ->>HEADER<<-") {
            // A new response starts: forget the previous one.
            out = DigOutput::default();
            in_answer = false;
            out.status = h
                .split(dialect.header_sep)
                .find_map(|p| p.trim().strip_prefix("status:"))
                .map(|s| s.trim().to_owned());
            continue;
        }
        if let Some(f) = t.strip_prefix(dialect.flags) {
            let flags = f.split(';').next().unwrap_or_default();
            out.flags = flags
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect();
            continue;
        }
        if let Some(udp) = (dialect.edns_udp)(t) {
            out.edns_udp = udp;
            continue;
        }
        if let Some(e) = t.strip_prefix(dialect.ede) {
            out.ede = parse_ede(e);
            continue;
        }
        if let Some(size) = (dialect.msg_size)(t) {
            out.msg_size = size;
            continue;
        }
        if t == ";; ANSWER SECTION:" {
            in_answer = true;
            continue;
        }
        if in_answer {
            if t.is_empty() || t.starts_with(';') {
                in_answer = false;
            } else {
                out.answers.push(normalise(t));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ede_forms() {
        assert_eq!(
            parse_ede(" 22 (No Reachable Authority): (upstream down)"),
            Some(DigEde {
                code: 22,
                purpose: Some("No Reachable Authority".into()),
                text: Some("upstream down".into()),
            })
        );
        assert_eq!(
            parse_ede(" 22 (No Reachable Authority): 'x y'").and_then(|e| e.text),
            Some("x y".into())
        );
        assert_eq!(
            parse_ede(" 99"),
            Some(DigEde {
                code: 99,
                purpose: None,
                text: None,
            })
        );
        assert_eq!(parse_ede(" x"), None);
    }
}
