//! The control protocol between the daemon and `lanveil-ctl` (or `lanveil --control SOCKET …` on the
//! router): one request, one response, each a postcard body in an [`crate::envelope`] (`LVCQ` for
//! requests, `LVCR` for responses), over a local Unix socket. Nothing here carries a client address.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::envelope::{self, EnvelopeError};

/// Request magic.
pub const REQUEST_MAGIC: &[u8; 4] = b"LVCQ";
/// Response magic.
pub const RESPONSE_MAGIC: &[u8; 4] = b"LVCR";
/// Protocol version.
pub const CONTROL_VERSION: u16 = 2;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Health, counters, clock, certificate expiry.
    Status,
    /// The opt-in in-memory query log.
    QueryLog,
    /// Re-read the configuration file (like SIGHUP); the answer says whether it was applied.
    Reload,
    /// From the router's WAN DHCP hook: the captive-portal URI the WAN announced (RFC 8910 option
    /// 114/103/37; `None` when the lease has none or is gone) and the WAN's DNS servers (`IP` or
    /// `IP:PORT`). Validated by the daemon.
    WanPortal {
        /// The announced API URI.
        uri: Option<String>,
        /// The lease's DNS servers.
        dns: Vec<String>,
    },
    /// From `lanveil-ctl leak-test`: answer `LABEL.lanveil-leak.resolver.arpa` TXT with `nonce` for
    /// the next few minutes (`lanveil_core::leak_probe`; validated by the daemon). Answered
    /// `Done`.
    LeakProbe {
        /// The probe name's first label.
        label: String,
        /// What the TXT answer carries.
        nonce: String,
    },
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The status report.
    Status(alloc::boxed::Box<StatusReport>),
    /// The query log, oldest first (empty when off).
    QueryLog(Vec<LogLine>),
    /// The outcome of a reload: `Ok(())`, or the error (file, line, key, reason).
    Reloaded(Result<(), String>),
    /// The request could not be served.
    Error(String),
    /// A request that changes state was taken (`Ok`), or refused with the reason.
    Done(Result<(), String>),
}

/// Everything `lanveil-ctl status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `lanveil X.Y.Z`.
    pub version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// The configuration file in use, if any.
    pub config_file: Option<String>,
    /// Wall clock is at or past the time floor.
    pub clock_synchronized: bool,
    /// Wall clock, Unix seconds.
    pub wall_unix: u64,
    /// Time floor, Unix seconds.
    pub floor_unix: u64,
    /// Each upstream, in configuration order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Named counters (queries, answered, cache hits, …).
    pub counters: Vec<(String, u64)>,
    /// SERVFAILs lanveil made, by Extended DNS Error code.
    pub failures_by_ede: Vec<(u16, u64)>,
    /// Queries in flight now.
    pub inflight: u64,
    /// Cached answers and their bytes (0 when the cache is off).
    pub cache_entries: u64,
    /// Bytes held by the cache.
    pub cache_bytes: u64,
    /// The WAN's captive-portal state (travel routers).
    pub captive: CaptiveReport,
}

/// What lanveil knows about a captive portal on the WAN side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptiveReport {
    /// `open`, `suspected`, `signalled`, `captive` or `free`.
    pub phase: String,
    /// The API URI the WAN announced.
    pub api_uri: Option<String>,
    /// Where to log in (from the API).
    pub user_portal_url: Option<String>,
    /// Session seconds left (from the API).
    pub seconds_remaining: Option<u64>,
    /// The owner allowed the plaintext exception (`captive_plaintext`).
    pub plaintext_allowed: bool,
    /// Seconds the exception stays open, when open.
    pub plaintext_left_s: Option<u64>,
    /// The names under the exception.
    pub plaintext_names: Vec<String>,
    /// Queries answered in plaintext under it so far.
    pub plaintext_queries: u64,
    /// The WAN's DNS servers the exception uses.
    pub wan_dns: Vec<String>,
    /// The last API request's error.
    pub api_error: Option<String>,
}

/// One upstream's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// Section name.
    pub name: String,
    /// URL (`tls://…`, `https://…`).
    pub url: String,
    /// An authenticated connection succeeded since the last failure.
    pub up: bool,
    /// Backing off after failures.
    pub backing_off: bool,
    /// Smoothed RTT, ms.
    pub srtt_ms: Option<u32>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// notAfter of the last leaf certificate seen, Unix seconds.
    pub cert_not_after: Option<u64>,
}

/// One query log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// How long ago, ms.
    pub age_ms: u64,
    /// Query name.
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// RCODE answered.
    pub rcode: u16,
    /// `upstream`, `cache`, `stale`, `local`, `failed`.
    pub source: String,
}

impl Request {
    /// Sealed request.
    pub fn encode(&self) -> Vec<u8> {
        envelope::seal_value(REQUEST_MAGIC, CONTROL_VERSION, self)
    }
    /// Opens a request.
    pub fn decode(blob: &[u8]) -> Result<Self, EnvelopeError> {
        envelope::open_value(REQUEST_MAGIC, CONTROL_VERSION, blob)
    }
}

impl Response {
    /// Sealed response.
    pub fn encode(&self) -> Vec<u8> {
        envelope::seal_value(RESPONSE_MAGIC, CONTROL_VERSION, self)
    }
    /// Opens a response.
    pub fn decode(blob: &[u8]) -> Result<Self, EnvelopeError> {
        envelope::open_value(RESPONSE_MAGIC, CONTROL_VERSION, blob)
    }
}

/// JSON for the router's web page (`lanveil --control SOCKET status-json`, read by LuCI's rpcd
/// plugin): the same shape serde_json gives this struct (`lanveil-ctl status --json`; checked
/// against it in host-tools), written by hand so the router binary carries no JSON library.
pub mod json {
    use super::{CaptiveReport, StatusReport, UpstreamStatus};
    use alloc::string::String;
    use core::fmt::Write as _;

    /// A JSON string literal: quotes, backslashes and every control character escaped.
    pub fn string(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn key(out: &mut String, k: &str) {
        if !out.ends_with('{') {
            out.push(',');
        }
        string(out, k);
        out.push(':');
    }
    fn opt_str(out: &mut String, k: &str, v: Option<&String>) {
        key(out, k);
        match v {
            Some(v) => string(out, v),
            None => out.push_str("null"),
        }
    }
    fn num(out: &mut String, k: &str, v: impl core::fmt::Display) {
        key(out, k);
        let _ = write!(out, "{v}");
    }
    fn opt_num(out: &mut String, k: &str, v: Option<impl core::fmt::Display>) {
        key(out, k);
        match v {
            Some(v) => {
                let _ = write!(out, "{v}");
            }
            None => out.push_str("null"),
        }
    }
    fn boolean(out: &mut String, k: &str, v: bool) {
        key(out, k);
        out.push_str(if v { "true" } else { "false" });
    }
    fn strings(out: &mut String, k: &str, v: &[String]) {
        key(out, k);
        out.push('[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            string(out, s);
        }
        out.push(']');
    }

    fn upstream(out: &mut String, u: &UpstreamStatus) {
        out.push('{');
        key(out, "name");
        string(out, &u.name);
        key(out, "url");
        string(out, &u.url);
        boolean(out, "up", u.up);
        boolean(out, "backing_off", u.backing_off);
        opt_num(out, "srtt_ms", u.srtt_ms);
        opt_str(out, "last_error", u.last_error.as_ref());
        opt_num(out, "cert_not_after", u.cert_not_after);
        out.push('}');
    }

    fn captive(out: &mut String, c: &CaptiveReport) {
        out.push('{');
        key(out, "phase");
        string(out, &c.phase);
        opt_str(out, "api_uri", c.api_uri.as_ref());
        opt_str(out, "user_portal_url", c.user_portal_url.as_ref());
        opt_num(out, "seconds_remaining", c.seconds_remaining);
        boolean(out, "plaintext_allowed", c.plaintext_allowed);
        opt_num(out, "plaintext_left_s", c.plaintext_left_s);
        strings(out, "plaintext_names", &c.plaintext_names);
        num(out, "plaintext_queries", c.plaintext_queries);
        strings(out, "wan_dns", &c.wan_dns);
        opt_str(out, "api_error", c.api_error.as_ref());
        out.push('}');
    }

    /// The report as one JSON object.
    pub fn status(r: &StatusReport) -> String {
        let mut out = String::with_capacity(1024);
        out.push('{');
        key(&mut out, "version");
        string(&mut out, &r.version);
        num(&mut out, "uptime_s", r.uptime_s);
        opt_str(&mut out, "config_file", r.config_file.as_ref());
        boolean(&mut out, "clock_synchronized", r.clock_synchronized);
        num(&mut out, "wall_unix", r.wall_unix);
        num(&mut out, "floor_unix", r.floor_unix);
        key(&mut out, "upstreams");
        out.push('[');
        for (i, u) in r.upstreams.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            upstream(&mut out, u);
        }
        out.push(']');
        key(&mut out, "counters");
        out.push('[');
        for (i, (k, v)) in r.counters.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            string(&mut out, k);
            let _ = write!(out, ",{v}]");
        }
        out.push(']');
        key(&mut out, "failures_by_ede");
        out.push('[');
        for (i, (k, v)) in r.failures_by_ede.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "[{k},{v}]");
        }
        out.push(']');
        num(&mut out, "inflight", r.inflight);
        num(&mut out, "cache_entries", r.cache_entries);
        num(&mut out, "cache_bytes", r.cache_bytes);
        key(&mut out, "captive");
        captive(&mut out, &r.captive);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn request_and_response_round_trip() {
        for r in [
            Request::Status,
            Request::QueryLog,
            Request::Reload,
            Request::WanPortal {
                uri: Some("https://portal.example/api".into()),
                dns: vec!["192.0.2.53".into()],
            },
            Request::LeakProbe {
                label: "k3v9q2m7x1c8b4n6".into(),
                nonce: "0123456789abcdefghijklmnopqrstuv".into(),
            },
        ] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        let resp = Response::Status(alloc::boxed::Box::new(StatusReport {
            version: "lanveil 0.1.0".into(),
            upstreams: vec![UpstreamStatus {
                name: "q".into(),
                srtt_ms: Some(12),
                ..Default::default()
            }],
            counters: vec![("queries".into(), 7)],
            ..Default::default()
        }));
        assert_eq!(Response::decode(&resp.encode()), Ok(resp.clone()));
        assert_eq!(
            Request::decode(&resp.encode()),
            Err(EnvelopeError::BadMagic)
        );
    }
}
