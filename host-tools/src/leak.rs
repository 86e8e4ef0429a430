//! `lanveil-ctl leak-test`, run from a LAN machine:
//!
//! 1. the router answers plain DNS;
//! 2. canary domains (`use-application-dns.net`, `mask.icloud.com`) are NXDOMAIN through the router,
//!    so browsers and iCloud Private Relay keep using it;
//! 3. plain DNS sent to public resolver addresses never reaches them: it is either dropped or
//!    answered by the router (force-DNS). Only an answer this lanveil alone can give tells the two
//!    apart: the test draws a random label and nonce, registers them with the daemon over its control
//!    socket (`lanveil --control SOCKET leak-probe LABEL NONCE` over ssh, as `status` does), and asks
//!    each public address for `LABEL.lanveil-leak.resolver.arpa` TXT
//!    ([`lanveil_core::leak_probe`]). An answer carrying the nonce was made by this lanveil:
//!    INTERCEPTED. NXDOMAIN or any other answer came from something that never saw the nonce: LEAK
//!    (ISP and filtering resolvers answer canary names NXDOMAIN too, so an NXDOMAIN proves nothing).
//!    Without the control socket nothing can be proved, and the verdict says so (INCONCLUSIVE);
//! 4. the resolver the router uses, as seen by whoami-style authoritative names
//!    (`whoami.akamai.net`, `o-o.myaddr.l.google.com`): the egress address is printed, and compared
//!    with `--expect-egress` prefixes when given.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lanveil_config::control::{Request, Response};
use lanveil_core::leak_probe;

use crate::dns::{self, QueryOpts, Reply};
use crate::error::{Error, Result};
use crate::remote::Control;

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
    /// The daemon's control socket, to register this run's probe. `None`: interception cannot be
    /// proved.
    pub control: Option<Control>,
}

/// Public resolvers tried by default.
pub const DEFAULT_PUBLIC: &[&str] = &["9.9.9.9:53", "1.1.1.1:53", "8.8.8.8:53", "94.140.14.140:53"];

/// One check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// pass | fail | warn | info | unproven.
    pub result: &'static str,
    /// What was seen.
    pub detail: String,
    /// For plain DNS to a public address: what happened to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interception: Option<Interception>,
}

impl Check {
    /// A check of anything but plain DNS to a public address.
    fn new(name: String, result: &'static str, detail: String) -> Check {
        Check {
            name,
            result,
            detail,
            interception: None,
        }
    }
}

/// The whole outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeakReport {
    /// Every check.
    pub checks: Vec<Check>,
    /// PASS, WARN, INCONCLUSIVE (interception could not be proved) or FAIL.
    pub verdict: &'static str,
}

/// What became of plain DNS sent to a public resolver address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interception {
    /// Answered with this run's nonce: the router's lanveil answered (force-DNS works).
    Intercepted,
    /// Answered without the nonce: something else answered, plain DNS leaves the network.
    Leak,
    /// No answer: dropped on the way (devices with hard-coded DNS fail instead of using the router).
    Blocked,
    /// Answered, but no probe was registered (or the router itself did not answer it): who
    /// answered cannot be told.
    Unproven,
}

impl Interception {
    /// The check result it maps to.
    pub fn result(self) -> &'static str {
        match self {
            Self::Intercepted => "pass",
            Self::Leak => "fail",
            Self::Blocked => "warn",
            Self::Unproven => "unproven",
        }
    }
}

/// This run's probe: `label.lanveil-leak.resolver.arpa`, answered by the daemon with `nonce`.
#[derive(Clone, PartialEq, Eq)]
pub struct Probe {
    /// The random first label.
    pub label: String,
    /// The random secret the answer must carry.
    pub nonce: String,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// A fresh random probe (OS CSPRNG): an 80-bit label, a 128-bit nonce, both lower-case hex.
    pub fn random() -> Result<Self> {
        Ok(Self {
            label: random_hex(10)?,
            nonce: random_hex(16)?,
        })
    }

    /// The name to ask for.
    pub fn name(&self) -> String {
        format!("{}.{}", self.label, leak_probe::ZONE)
    }

    /// Whether `reply` carries this probe's nonce (NOERROR, a TXT record equal to it).
    pub fn answered_by(&self, reply: &Reply) -> bool {
        reply.rcode == 0
            && reply
                .answers
                .iter()
                .filter_map(dns::Record::txt)
                .any(|t| t == self.nonce)
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::failed("the system's random number generator failed"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Registers `probe` with the daemon behind `control`.
pub fn register(control: &Control, probe: &Probe) -> Result<()> {
    let req = Request::LeakProbe {
        label: probe.label.clone(),
        nonce: probe.nonce.clone(),
    };
    match control.request(&req)? {
        Response::Done(Ok(())) => Ok(()),
        Response::Done(Err(e)) | Response::Error(e) => Err(Error::failed(format!("lanveil: {e}"))),
        other => Err(Error::failed(format!("unexpected answer: {other:?}"))),
    }
}

/// The decision for one public resolver address. `probe` is this run's probe if the daemon took it;
/// `confirmed` says the router itself answered it with the nonce (so the probe survives the path
/// from this machine to lanveil); `outcome` is what the address answered to the probe's name. Only
/// the nonce proves interception. An NXDOMAIN (what ISP and filtering resolvers answer for canary
/// and special-use names too) or any other answer is a leak — if the router answers the probe, else
/// nothing is proved.
pub fn judge(
    probe: Option<&Probe>,
    confirmed: bool,
    outcome: &std::io::Result<Reply>,
) -> (Interception, String) {
    match (outcome, probe) {
        (Ok(r), Some(p)) if p.answered_by(r) => (
            Interception::Intercepted,
            "INTERCEPTED: answered with this run's nonce, which only the router's lanveil knows (force-DNS works)"
                .into(),
        ),
        (Ok(r), Some(_)) if confirmed => (
            Interception::Leak,
            format!(
                "LEAK: answered {} without this run's nonce: something other than this lanveil answered, plain DNS leaves the network",
                r.rcode_name()
            ),
        ),
        (Ok(r), Some(_)) => (
            Interception::Unproven,
            format!(
                "UNPROVEN: answered {} without this run's nonce, but the router did not answer the probe either: interception is not proved",
                r.rcode_name()
            ),
        ),
        (Ok(r), None) => (
            Interception::Unproven,
            format!(
                "UNPROVEN: answered {}, but without a probe registered with the router's lanveil that answer cannot be told from the public resolver's own: interception is not proved",
                r.rcode_name()
            ),
        ),
        (Err(e), _)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            (
                Interception::Blocked,
                format!(
                    "BLOCKED: no answer ({e}): dropped, not redirected — devices with hard-coded DNS will fail instead of using the router"
                ),
            )
        }
        (Err(e), _) => (
            Interception::Unproven,
            format!("UNPROVEN: {e}"),
        ),
    }
}

/// The verdict over all checks: FAIL if any failed, else INCONCLUSIVE if interception was not
/// proved somewhere, else WARN if any warned, else PASS.
pub fn verdict(checks: &[Check]) -> &'static str {
    let any = |r: &str| checks.iter().any(|c| c.result == r);
    if any("fail") {
        "FAIL"
    } else if any("unproven") {
        "INCONCLUSIVE"
    } else if any("warn") {
        "WARN"
    } else {
        "PASS"
    }
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
    let mut add = |name, result, detail| checks.push(Check::new(name, result, detail));
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
    // This run's probe: registered with the daemon, then answered through the router with its nonce.
    let probe = match &opts.control {
        None => {
            add(
                "leak-test probe".into(),
                "info",
                "no control socket given (lanveil-ctl leak-test ROUTER, or --socket on the router): \
                 no probe registered, so an answer from lanveil cannot be told from a public \
                 resolver's own"
                    .into(),
            );
            None
        }
        Some(control) => match Probe::random().and_then(|p| register(control, &p).map(|()| p)) {
            Err(e) => {
                add(
                    "leak-test probe".into(),
                    "warn",
                    format!(
                        "could not register this run's probe ({}): interception cannot be proved",
                        e.message
                    ),
                );
                None
            }
            Ok(p) => Some(p),
        },
    };
    let confirmed = match &probe {
        None => false,
        Some(p) => match ask(opts.router, &p.name(), dns::qtype::TXT, t) {
            Ok(r) if p.answered_by(&r) => {
                add(
                    "leak-test probe".into(),
                    "pass",
                    format!(
                        "registered with lanveil; {} answers {} with its nonce",
                        opts.router,
                        p.name()
                    ),
                );
                true
            }
            other => {
                add(
                    "leak-test probe".into(),
                    "warn",
                    format!(
                        "registered with lanveil, but {} did not answer {} with its nonce ({}): \
                         is --router the address that forwards to this lanveil?",
                        opts.router,
                        p.name(),
                        match other {
                            Ok(r) => r.rcode_name(),
                            Err(e) => e.to_string(),
                        }
                    ),
                );
                false
            }
        },
    };
    let probe_name = match &probe {
        Some(p) => p.name(),
        // Nothing to prove with; still tells "blocked" from "answered".
        None => format!(
            "{}.{}",
            random_hex(10).unwrap_or_default(),
            leak_probe::ZONE
        ),
    };
    for p in &opts.public {
        let outcome = ask(*p, &probe_name, dns::qtype::TXT, t);
        let (how, detail) = judge(probe.as_ref(), confirmed, &outcome);
        checks.push(Check {
            name: format!("plain DNS to {p}"),
            result: how.result(),
            detail,
            interception: Some(how),
        });
    }
    let mut add = |name, result, detail| checks.push(Check::new(name, result, detail));
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
    let verdict = verdict(&checks);
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
    if r.verdict == "INCONCLUSIVE" {
        o.push_str(
            "plain DNS to public addresses was answered, but not provably by this lanveil: \
             interception is NOT proved (see the leak-test probe line)\n",
        );
    }
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

    fn reply(rcode: u16, txt: &[&str]) -> std::io::Result<Reply> {
        Ok(Reply {
            rcode,
            answers: txt
                .iter()
                .map(|t| dns::Record {
                    name: "x".into(),
                    rtype: dns::qtype::TXT,
                    class: 1,
                    ttl: 0,
                    rdata: [&[t.len() as u8][..], t.as_bytes()].concat(),
                })
                .collect(),
            ..Reply::default()
        })
    }

    fn probe() -> Probe {
        Probe {
            label: "0123456789abcdef0123".into(),
            nonce: "00112233445566778899aabbccddeeff".into(),
        }
    }

    fn check(result: &'static str) -> Check {
        Check {
            name: String::new(),
            result,
            detail: String::new(),
            interception: None,
        }
    }

    /// The defect: an ISP or filtering resolver answers NXDOMAIN for special-use and canary names
    /// too; that used to read as "intercepted". Only the nonce proves it.
    #[test]
    fn only_the_nonce_proves_interception() {
        let p = probe();
        let nonce = p.nonce.clone();
        for (outcome, want) in [
            (reply(3, &[]), Interception::Leak),
            (reply(0, &[]), Interception::Leak),
            (
                reply(0, &["00112233445566778899aabbccddeefe"]),
                Interception::Leak,
            ),
            (reply(3, &[&nonce]), Interception::Leak),
            (reply(2, &[]), Interception::Leak),
            (reply(0, &[&nonce]), Interception::Intercepted),
            (reply(0, &["other", &nonce]), Interception::Intercepted),
            (
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "t")),
                Interception::Blocked,
            ),
        ] {
            let (got, detail) = judge(Some(&p), true, &outcome);
            assert_eq!(got, want, "{outcome:?}");
            assert!(
                detail.starts_with(&format!("{want:?}").to_uppercase()),
                "{detail}"
            );
            assert!(!detail.contains(&nonce), "the nonce is never shown");
        }
        // Without a registered probe no answer proves anything either way.
        for outcome in [reply(3, &[]), reply(0, &[&nonce])] {
            assert_eq!(judge(None, false, &outcome).0, Interception::Unproven);
        }
        // Registered, but the router itself did not give the nonce back: a missing nonce proves
        // nothing; the nonce still proves interception.
        assert_eq!(
            judge(Some(&p), false, &reply(3, &[])).0,
            Interception::Unproven
        );
        assert_eq!(
            judge(Some(&p), false, &reply(0, &[&nonce])).0,
            Interception::Intercepted
        );
        let refused = Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(judge(None, false, &refused).0, Interception::Blocked);
    }

    #[test]
    fn verdicts() {
        let v = |r: &[&'static str]| verdict(&r.iter().map(|r| check(r)).collect::<Vec<_>>());
        assert_eq!(v(&["pass", "info"]), "PASS");
        assert_eq!(v(&["pass", "warn"]), "WARN");
        assert_eq!(v(&["pass", "warn", "unproven"]), "INCONCLUSIVE");
        assert_eq!(v(&["unproven", "fail"]), "FAIL");
        assert_eq!(Interception::Unproven.result(), "unproven");
        assert_eq!(Interception::Leak.result(), "fail");
    }

    #[test]
    fn random_probes_are_what_the_daemon_accepts() {
        let (a, b) = (Probe::random().unwrap(), Probe::random().unwrap());
        assert_ne!(a.label, b.label);
        assert_ne!(a.nonce, b.nonce);
        assert!(leak_probe::Probe::new(&a.label, &a.nonce).is_ok());
        assert_eq!(a.name(), format!("{}.lanveil-leak.resolver.arpa", a.label));
        assert!(!format!("{a:?}").contains(&a.nonce));
    }

    #[test]
    fn prefixes() {
        let p = ("192.0.2.0".parse().unwrap(), 24);
        assert!(in_prefix("192.0.2.77".parse().unwrap(), p));
        assert!(!in_prefix("192.0.3.1".parse().unwrap(), p));
        assert!(!in_prefix("::1".parse().unwrap(), p));
    }
}
