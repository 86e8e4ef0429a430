//! `lanveil-ctl status`: the daemon's own report, for people or (`--json`) scripts.

use std::fmt::Write as _;

use lanveil_config::control::{Request, Response, StatusReport};

use crate::dns;
use crate::error::{Error, Result};
use crate::remote::Control;
use crate::time_fmt;

/// Asks the daemon for its status.
pub fn fetch(control: &Control) -> Result<StatusReport> {
    match control.request(&Request::Status)? {
        Response::Status(r) => Ok(*r),
        Response::Error(e) => Err(Error::failed(format!("lanveil: {e}"))),
        other => Err(Error::failed(format!("unexpected answer: {other:?}"))),
    }
}

fn counter(r: &StatusReport, name: &str) -> Option<u64> {
    r.counters.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

/// The report in words.
pub fn render(r: &StatusReport, router: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} on {router}, up {}{}",
        r.version,
        time_fmt::span(r.uptime_s),
        r.config_file
            .as_ref()
            .map(|f| format!(", configuration {f}"))
            .unwrap_or_default()
    );
    if r.clock_synchronized {
        let _ = writeln!(
            o,
            "clock       synchronized ({})",
            time_fmt::utc(r.wall_unix)
        );
    } else {
        let _ = writeln!(
            o,
            "clock       NOT synchronized: wall clock {}, floor {} (certificates are checked at the floor)",
            time_fmt::utc(r.wall_unix),
            time_fmt::utc(r.floor_unix)
        );
    }
    let _ = writeln!(o, "upstreams");
    let width = r.upstreams.iter().map(|u| u.name.len()).max().unwrap_or(4);
    for u in &r.upstreams {
        let state = if u.up {
            "up"
        } else if u.backing_off {
            "BACKING OFF"
        } else {
            "not connected"
        };
        let _ = write!(o, "  {:<width$}  {state:<13} {}", u.name, u.url);
        if let Some(rtt) = u.srtt_ms {
            let _ = write!(o, "  rtt {rtt} ms");
        }
        if let Some(na) = u.cert_not_after {
            let days = (na as i64 - r.wall_unix as i64) / 86_400;
            let _ = write!(o, "  cert until {} ({days} days)", time_fmt::date(na));
        }
        let _ = writeln!(o);
        if let Some(e) = &u.last_error {
            let _ = writeln!(o, "  {:<width$}  last error: {e}", "");
        }
    }
    if !r.counters.is_empty() {
        let list = r
            .counters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(o, "counters    {list}");
    }
    if let (Some(q), Some(h)) = (counter(r, "queries"), counter(r, "cache_hits"))
        && q > 0
    {
        let _ = writeln!(
            o,
            "cache       {} % of queries answered from the cache",
            h * 100 / q
        );
    }
    if r.failures_by_ede.is_empty() {
        let _ = writeln!(o, "failures    none");
    } else {
        let _ = writeln!(
            o,
            "failures    SERVFAIL answers lanveil made, by Extended DNS Error:"
        );
        for (code, n) in &r.failures_by_ede {
            let _ = writeln!(
                o,
                "              EDE {code:<3} {:<24} {n}",
                dns::ede_name(*code)
            );
        }
    }
    let c = &r.captive;
    match c.phase.as_str() {
        "" | "open" => {}
        "suspected" => {
            let _ = writeln!(
                o,
                "WAN         every upstream failing and no portal announced: perhaps a captive portal (open any http:// page on a device to log in)"
            );
        }
        phase => {
            let _ = writeln!(
                o,
                "WAN         captive portal {phase}: API {}",
                c.api_uri.as_deref().unwrap_or("-")
            );
            if let Some(u) = &c.user_portal_url {
                let _ = writeln!(o, "            log in at {u}");
            }
            if let Some(s) = c.seconds_remaining {
                let _ = writeln!(o, "            session: {} left", time_fmt::span(s));
            }
            if let Some(e) = &c.api_error {
                let _ = writeln!(o, "            API: {e}");
            }
            let names = c.plaintext_names.join(", ");
            match (c.plaintext_allowed, c.plaintext_left_s) {
                (false, _) => {
                    let _ = writeln!(
                        o,
                        "            plaintext exception off (captive_plaintext '0'): nothing is resolved in plaintext"
                    );
                }
                (true, Some(left)) => {
                    let _ = writeln!(
                        o,
                        "            PLAINTEXT for {names} via {} for {} more ({} queries so far)",
                        c.wan_dns.join(" "),
                        time_fmt::span(left),
                        c.plaintext_queries
                    );
                }
                (true, None) => {
                    let _ = writeln!(
                        o,
                        "            plaintext exception closed ({} queries were answered under it)",
                        c.plaintext_queries
                    );
                }
            }
        }
    }
    let _ = writeln!(
        o,
        "now         {} in flight; cache {} entries, {} KiB",
        r.inflight,
        r.cache_entries,
        r.cache_bytes.div_ceil(1024)
    );
    o
}

#[cfg(test)]
mod tests {
    use lanveil_config::control::{CaptiveReport, StatusReport, UpstreamStatus, json};

    /// The daemon's hand-written JSON (`lanveil --control SOCKET status-json`, read by LuCI) is
    /// what serde_json makes of the same report, and reads back to it.
    #[test]
    fn daemon_json_matches_serde_json() {
        let r = StatusReport {
            version: "lanveil 0.1.0".into(),
            uptime_s: 42,
            config_file: Some("/etc/config/lanveil".into()),
            clock_synchronized: false,
            wall_unix: 1_700_000_000,
            floor_unix: 1_690_000_000,
            upstreams: vec![
                UpstreamStatus {
                    name: "q<b>\"9\"</b>".into(),
                    url: "tls://9.9.9.9:853#dns.quad9.net".into(),
                    up: true,
                    backing_off: false,
                    srtt_ms: Some(12),
                    last_error: None,
                    cert_not_after: Some(1_800_000_000),
                },
                UpstreamStatus {
                    name: "x\\y\n\t\u{1}\u{2028}é".into(),
                    last_error: Some("certificate name <img src=x onerror=alert(1)>".into()),
                    backing_off: true,
                    ..Default::default()
                },
            ],
            counters: vec![("queries".into(), 7), ("cache_hits".into(), 0)],
            failures_by_ede: vec![(22, 3), (9, 1)],
            inflight: 1,
            cache_entries: 5,
            cache_bytes: 900,
            captive: CaptiveReport {
                phase: "captive".into(),
                api_uri: Some("https://portal.example/api".into()),
                plaintext_allowed: true,
                plaintext_left_s: Some(300),
                plaintext_names: vec!["portal.example".into()],
                wan_dns: vec!["192.0.2.53".into()],
                ..Default::default()
            },
        };
        let ours = json::status(&r);
        let theirs: serde_json::Value = serde_json::to_value(&r).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&ours).unwrap();
        assert_eq!(parsed, theirs);
        assert_eq!(serde_json::from_str::<StatusReport>(&ours).unwrap(), r);
        assert_eq!(
            json::status(&StatusReport::default())
                .parse::<serde_json::Value>()
                .unwrap(),
            serde_json::to_value(StatusReport::default()).unwrap()
        );
    }
}
