//! `lanveil --probe URL [--ca-file FILE] [--pin PIN]... [--bootstrap IP]...`: one TCP connect and
//! TLS handshake to an upstream from the router, through the daemon's own verifier (WebPKI against
//! the CA bundle, then the pins), for LuCI's probe button. One JSON object on stdout: `ok`, `error`
//! (the failure in the EDE's words, with rustls's detail), `handshake_ms`, and the leaf's `spki`
//! (`sha256/BASE64`, shown even when the chain is refused, so the owner can pin it) and
//! `not_after`. Checked at the system clock (the daemon's clock rule does not apply to a one-off
//! probe). No query is sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanveil_config::control::json;
use lanveil_config::{Transport, Upstream};
use lanveil_tls::{ChainObserver, Checks};
use rustls_pki_types::CertificateDer;

/// How long the whole probe may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The leaf the server presented: its SPKI pin and notAfter.
#[derive(Debug, Default)]
struct Leaf(Mutex<Option<(Option<[u8; 32]>, Option<u64>)>>);

impl ChainObserver for Leaf {
    fn presented(&self, end_entity: &CertificateDer<'_>, _: &[CertificateDer<'_>]) {
        let spki = lanveil_tls::spki_sha256(end_entity);
        let not_after = lanveil_core::spki::validity(end_entity)
            .ok()
            .map(|v| v.not_after);
        if let Ok(mut g) = self.0.lock() {
            *g = Some((spki, not_after));
        }
    }
}

/// The outcome as one JSON object.
pub fn report(result: &Result<u64, String>, leaf: Option<(Option<[u8; 32]>, Option<u64>)>) -> String {
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
pub fn run(upstream: &Upstream, global_ca: Option<&str>) -> std::process::ExitCode {
    let leaf = Arc::new(Leaf::default());
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async {
            tokio::time::timeout(TIMEOUT, handshake(upstream, global_ca, leaf.clone()))
                .await
                .unwrap_or_else(|_| Err(lanveil_tls::describe(lanveil_core::engine::CloseReason::Timeout).to_string()))
        }),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    let seen = leaf.0.lock().ok().and_then(|g| *g);
    println!("{}", report(&result, seen));
    if result.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

async fn handshake(u: &Upstream, global_ca: Option<&str>, leaf: Arc<Leaf>) -> Result<u64, String> {
    let roots = lanveil_tls::load_roots(
        &crate::upstream::tls::ca_path(u, global_ca).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let checks =
        Arc::new(Checks::new(roots, u.pins.clone(), lanveil_tls::SystemTime).map_err(|e| e.to_string())?);
    let (verifier, _) = checks.verifier(leaf);
    let versions = lanveil_tls::protocol_versions(u.tls_min_version).map_err(|e| e.to_string())?;
    let alpn = match u.url.transport {
        Transport::Tls => vec![b"dot".to_vec()],
        Transport::Https => vec![b"h2".to_vec()],
    };
    let config = lanveil_tls::client_config(versions, verifier, false, u.sni, alpn)
        .map_err(|e| e.to_string())?;
    let name = lanveil_tls::server_name(&u.url.auth_name).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let tcp = crate::upstream::tls::connect_any(&u.addrs())
        .await
        .map_err(|e| format!("{}: {e}", lanveil_tls::describe(lanveil_tls::classify_io(&e))))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => format!("{} ({tls})", lanveil_tls::describe_tls_error(tls)),
            None => format!("{}: {e}", lanveil_tls::describe(lanveil_tls::classify_io(&e))),
        })?;
    Ok(u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX))
}
