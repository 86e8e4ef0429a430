//! `lanveil --probe URL [--ca-file FILE] [--pin PIN]... [--bootstrap IP]...`: one TCP connect and
//! TLS handshake to an upstream from the router, through the daemon's own verifier (WebPKI against
//! the CA bundle, then the pins), for LuCI's probe button. One JSON object on stdout: `ok`, `error`
//! (the failure in the EDE's words, with rustls's detail, which quotes the certificate's names),
//! `handshake_ms`, and the accepted leaf's `spki` (`sha256/BASE64`, to pin it) and `not_after`. The
//! daemon's own dialing code (`Target`), so the probe adds no second verifier to the binary. No
//! query is sent.

use std::sync::Arc;
use std::time::Duration;

use lanveil_config::Upstream;
use lanveil_config::control::json;
use lanveil_core::engine::CloseReason;

use crate::clock::{SystemWallClock, TimeKeeper};
use crate::upstream::tls::Target;

/// How long the whole probe may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome as one JSON object.
pub fn report(result: &Result<u64, String>, leaf: Leaf) -> String {
    let mut out = String::from("{\"ok\":");
    out.push_str(if result.is_ok() { "true" } else { "false" });
    out.push_str(",\"error\":");
    match result {
        Err(e) => json::string(&mut out, e),
        Ok(_) => out.push_str("null"),
    }
    out.push_str(",\"handshake_ms\":");
    match result {
        Ok(ms) => out.push_str(&ms.to_string()),
        Err(_) => out.push_str("null"),
    }
    let (spki, not_after) = leaf.unwrap_or((None, None));
    out.push_str(",\"spki\":");
    match spki {
        Some(d) => json::string(&mut out, &lanveil_config::SpkiPin(d).to_string()),
        None => out.push_str("null"),
    }
    out.push_str(",\"not_after\":");
    match not_after {
        Some(t) => out.push_str(&t.to_string()),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// Probes `upstream`; prints the report. Exit status 0 when the handshake was authenticated.
pub async fn run(upstream: Upstream, global_ca: Option<String>) -> std::process::ExitCode {
    let (result, leaf) = tokio::time::timeout(TIMEOUT, handshake(&upstream, global_ca.as_deref()))
        .await
        .unwrap_or_else(|_| {
            (
                Err(lanveil_tls::describe(CloseReason::Timeout).to_string()),
                None,
            )
        });
    println!("{}", report(&result, leaf));
    if result.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

type Leaf = Option<(Option<[u8; 32]>, Option<u64>)>;

/// The daemon's own dialing path (`Target`: its verifier, its clock rule with the build time as
/// the floor, no state file): TCP connect, TLS handshake. The leaf's pin from the accepted chain.
async fn handshake(u: &Upstream, global_ca: Option<&str>) -> (Result<u64, String>, Leaf) {
    let time = Arc::new(TimeKeeper::new(
        Arc::new(SystemWallClock),
        None,
        crate::clock::FLOOR_SETTLE_SECS,
    ));
    let target = match Target::new(u, global_ca, time) {
        Ok(t) => t,
        Err(e) => return (Err(e.to_string()), None),
    };
    let t0 = crate::clock::mono_now();
    match target.handshake(None).await {
        Ok((tls, _relaxed)) => {
            let ms = u64::try_from(
                crate::clock::mono_now()
                    .saturating_duration_since(t0)
                    .as_millis(),
            )
            .unwrap_or(u64::MAX);
            let spki = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|leaf| lanveil_tls::spki_sha256(leaf));
            (Ok(ms), Some((spki, target.cert_not_after())))
        }
        Err(e) => {
            let text = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls) => format!("{} ({tls})", lanveil_tls::describe_tls_error(tls)),
                None => format!(
                    "{}: {e}",
                    lanveil_tls::describe(lanveil_tls::classify_io(&e))
                ),
            };
            (Err(text), None)
        }
    }
}
