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
