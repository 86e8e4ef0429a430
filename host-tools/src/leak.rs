//! `lanveil-ctl leak-test`, run from a LAN machine:
//!
//! 1. the router answers plain DNS;
//! 2. canary domains (`use-application-dns.net`, `mask.icloud.com`) are NXDOMAIN through the router,
//!    so browsers and iCloud Private Relay keep using it;
//! 3. plain DNS sent to public resolver addresses never reaches them: it is either dropped or
//!    answered by the router (force-DNS). The canary name tells them apart: public resolvers do not
//!    answer it NXDOMAIN, lanveil does;
//! 4. the resolver the router uses, as seen by whoami-style authoritative names
//!    (`whoami.akamai.net`, `o-o.myaddr.l.google.com`): the egress address is printed, and compared
//!    with `--expect-egress` prefixes when given.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::dns::{self, QueryOpts, Reply};
use crate::error::{Error, Result};

/// Leak-test settings.
#[derive(Debug, Clone)]
pub struct LeakOpts {
    /// The router's DNS listener.
    pub router: SocketAddr,
    /// Public resolver addresses to try plain DNS against.
    pub public: Vec<SocketAddr>,
    /// Expected resolver egress prefixes (`IP/LEN`).
    pub expect_egress: Vec<(IpAddr, u8)>,
    /// Per-query bound.
    pub timeout: Duration,
}

/// Public resolvers tried by default.
pub const DEFAULT_PUBLIC: &[&str] = &["9.9.9.9:53", "1.1.1.1:53", "8.8.8.8:53", "94.140.14.140:53"];

/// One check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// pass | fail | warn | info.
    pub result: &'static str,
    /// What was seen.
    pub detail: String,
}

/// The whole outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeakReport {
    /// Every check.
    pub checks: Vec<Check>,
    /// PASS, WARN or FAIL.
    pub verdict: &'static str,
}

fn ask(addr: SocketAddr, name: &str, qtype: u16, t: Duration) -> std::io::Result<Reply> {
    let q = dns::build_query(
        name,
        qtype,
        QueryOpts {
            id: dns::random_id(),
            ..QueryOpts::default()
        },
    )
    .map_err(std::io::Error::other)?;
    dns::udp_exchange(addr, &q, t).map(|(r, _)| r)
}

fn in_prefix(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Runs the checks.
pub fn run(opts: &LeakOpts) -> LeakReport {
    let mut checks = Vec::new();
    let mut add = |name: String, result: &'static str, detail: String| {
        checks.push(Check {
            name,
            result,
            detail,
        })
    };
    let t = opts.timeout;
    match ask(opts.router, "example.com", dns::qtype::A, t) {
        Ok(r) if r.rcode == 0 || r.rcode == 3 => add(
            "router answers".into(),
            "pass",
            format!("{} answered example.com {}", opts.router, r.rcode_name()),
        ),
        Ok(r) => add(
            "router answers".into(),
            "fail",
            format!(
                "{} answered example.com {}{}",
                opts.router,
                r.rcode_name(),
                r.ede
                    .iter()
                    .map(|(c, t)| format!(" (EDE {c}: {t})"))
                    .collect::<String>()
            ),
        ),
        Err(e) => add(
            "router answers".into(),
            "fail",
            format!("{}: {e}", opts.router),
        ),
    }
    for canary in ["use-application-dns.net", "mask.icloud.com"] {
        match ask(opts.router, canary, dns::qtype::A, t) {
            Ok(r) if r.rcode == 3 => add(
                format!("canary {canary}"),
                "pass",
                "NXDOMAIN through the router".into(),
            ),
            Ok(r) => add(
                format!("canary {canary}"),
                "fail",
                format!(
                    "{} through the router (expected NXDOMAIN: devices may bypass it)",
                    r.rcode_name()
                ),
            ),
            Err(e) => add(format!("canary {canary}"), "fail", e.to_string()),
        }
    }
    for p in &opts.public {
        let name = format!("plain DNS to {p}");
        match ask(*p, "use-application-dns.net", dns::qtype::A, t) {
            Ok(r) if r.rcode == 3 => add(
                name,
                "pass",
                "answered with lanveil's canary NXDOMAIN: intercepted by the router (force-DNS works)"
                    .into(),
            ),
            Ok(r) => add(
                name,
                "fail",
                format!(
                    "LEAK: answered {} by something other than lanveil: plain DNS leaves the network",
                    r.rcode_name()
                ),
            ),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionRefused) => add(
                name,
                "warn",
                format!("no answer ({e}): blocked, not redirected — devices with hard-coded DNS will fail instead of using the router"),
            ),
            Err(e) => add(name, "warn", e.to_string()),
        }
    }
    let mut egress = Vec::new();
    match ask(opts.router, "whoami.akamai.net", dns::qtype::A, t) {
        Ok(r) => egress.extend(r.answers.iter().filter_map(|a| a.ip())),
        Err(e) => add("whoami.akamai.net".into(), "info", e.to_string()),
    }
    match ask(opts.router, "o-o.myaddr.l.google.com", dns::qtype::TXT, t) {
        Ok(r) => egress.extend(
            r.answers
                .iter()
                .filter_map(|a| a.txt())
                .filter_map(|s| s.parse::<IpAddr>().ok()),
        ),
        Err(e) => add("o-o.myaddr.l.google.com".into(), "info", e.to_string()),
    }
    egress.sort();
    egress.dedup();
    if egress.is_empty() {
        add(
            "resolver identity".into(),
            if opts.expect_egress.is_empty() {
                "info"
            } else {
                "fail"
            },
            "whoami names gave no address (offline, or the upstream does not resolve them)".into(),
        );
    } else if opts.expect_egress.is_empty() {
        add(
            "resolver identity".into(),
            "info",
            format!(
                "the resolver asking authoritative servers comes from {}; compare with your operator's published ranges (or pass --expect-egress)",
                egress
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    } else {
        let bad: Vec<String> = egress
            .iter()
            .filter(|ip| !opts.expect_egress.iter().any(|p| in_prefix(**ip, *p)))
            .map(ToString::to_string)
            .collect();
        if bad.is_empty() {
            add(
                "resolver identity".into(),
                "pass",
                "egress inside the expected prefixes".into(),
            );
        } else {
            add(
                "resolver identity".into(),
                "fail",
                format!("egress {} is outside the expected prefixes", bad.join(", ")),
            );
        }
    }
    let verdict = if checks.iter().any(|c| c.result == "fail") {
        "FAIL"
    } else if checks.iter().any(|c| c.result == "warn") {
        "WARN"
    } else {
        "PASS"
    };
    LeakReport { checks, verdict }
}

/// The report in words.
pub fn render(r: &LeakReport) -> String {
    let mut o = String::new();
    for c in &r.checks {
        o.push_str(&format!(
            "[{:<4}] {}: {}\n",
            c.result.to_uppercase(),
            c.name,
            c.detail
        ));
    }
    o.push_str(&format!("verdict: {}\n", r.verdict));
    o
}

/// The default gateway (Linux `/proc/net/route`), port 53.
pub fn default_router() -> Result<SocketAddr> {
    let text = std::fs::read_to_string("/proc/net/route")
        .map_err(|_| Error::usage("cannot find the default gateway here; give --router IP"))?;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 2 && f[1] == "00000000" {
            let gw = u32::from_str_radix(f[2], 16)
                .map_err(|_| Error::usage("unreadable /proc/net/route; give --router IP"))?;
            // The kernel prints the address as a native-endian u32.
            let ip = std::net::Ipv4Addr::from(gw.to_be());
            return Ok(SocketAddr::new(ip.into(), 53));
        }
    }
    Err(Error::usage("no default route; give --router IP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p = ("192.0.2.0".parse().unwrap(), 24);
        assert!(in_prefix("192.0.2.77".parse().unwrap(), p));
        assert!(!in_prefix("192.0.3.1".parse().unwrap(), p));
        assert!(!in_prefix("::1".parse().unwrap(), p));
    }
}
