//! A blocking rustls client that authenticates an upstream the way the daemon does
//! (`firmware/src/upstream/tls.rs`): WebPKI validation of the authentication name against a CA bundle
//! (the upstream's own, `--ca-file`, or the system bundle), then the SPKI pin set when one is given;
//! TLS 1.3 unless 1.2 is allowed; SNI = the authentication name; no session resumption. It also keeps
//! the chain the server presented, so the owner can see (and pin) it even when it was rejected.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lanveil_config::{SpkiPin, TlsVersion};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};

use crate::error::{Error, Result};

/// CA bundles tried, in order, when none is given (the daemon's list).
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A blocking TLS stream.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// How to authenticate one upstream.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The name the certificate must carry (also SNI unless `sni` is off).
    pub auth_name: String,
    /// CA bundle (PEM); `None` = the system bundle.
    pub ca_file: Option<String>,
    /// SPKI pins; when non-empty one must match a certificate of the chain.
    pub pins: Vec<SpkiPin>,
    /// Lowest TLS version.
    pub min_version: TlsVersion,
    /// Send SNI.
    pub sni: bool,
}

/// One certificate of the presented chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainCert {
    /// `leaf` or `intermediate`.
    pub role: &'static str,
    /// `sha256/BASE64` of its SubjectPublicKeyInfo.
    pub pin: String,
    /// notAfter, Unix seconds.
    pub not_after: Option<u64>,
    /// notBefore, Unix seconds.
    pub not_before: Option<u64>,
}

/// What a completed (or rejected) handshake showed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Handshake {
    /// TCP connect time, ms.
    pub tcp_connect_ms: f64,
    /// TLS handshake time (after TCP), ms.
    pub tls_handshake_ms: f64,
    /// `TLSv1.3`, `TLSv1.2`.
    pub tls_version: Option<String>,
    /// Cipher suite.
    pub cipher_suite: Option<String>,
    /// ALPN offered.
    pub alpn_offered: Vec<String>,
    /// ALPN the server selected.
    pub alpn_selected: Option<String>,
    /// The certificates the server presented, leaf first.
    pub chain: Vec<ChainCert>,
}

/// SHA-256 SPKI pin of a DER certificate.
pub fn spki_pin(cert_der: &[u8]) -> Option<SpkiPin> {
    let spki = lanveil_core::spki::subject_public_key_info(cert_der).ok()?;
    let d = ring::digest::digest(&ring::digest::SHA256, spki);
    Some(SpkiPin(d.as_ref().try_into().ok()?))
}

fn describe_chain(certs: &[CertificateDer<'_>]) -> Vec<ChainCert> {
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = lanveil_core::spki::validity(c).ok();
            ChainCert {
                role: if i == 0 { "leaf" } else { "intermediate" },
                pin: spki_pin(c).map_or_else(|| "(unreadable certificate)".into(), |p| p.to_text()),
                not_after: v.map(|v| v.not_after),
                not_before: v.map(|v| v.not_before),
            }
        })
        .collect()
}

/// Loads a PEM CA bundle.
pub fn load_roots(path: &str) -> Result<RootCertStore> {
    let iter = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| Error::failed(format!("cannot read CA bundle {path}: {e}")))?;
    let mut store = RootCertStore::empty();
    for cert in iter.flatten() {
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(Error::failed(format!(
            "CA bundle {path} contains no usable certificate"
        )));
    }
    Ok(store)
}

/// The CA bundle to use: the given one or the first system bundle present.
pub fn ca_path(given: Option<&str>) -> Result<String> {
    if let Some(p) = given {
        return Ok(p.to_string());
    }
    SYSTEM_CA_FILES
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_string())
        .ok_or_else(|| {
            Error::failed(format!(
                "no system CA bundle ({}); give --ca-file",
                SYSTEM_CA_FILES.join(" or ")
            ))
        })
}

#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    pins: Vec<SpkiPin>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if self.pins.is_empty() {
            return Ok(ok);
        }
        let matched = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(|c| spki_pin(c))
            .any(|h| self.pins.contains(&h));
        if matched {
            Ok(ok)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Words for a TLS failure, as the daemon's EDE texts put them.
pub fn describe_tls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "certificate rejected: not issued by a trusted CA".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "certificate rejected: not valid for the authentication name".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate rejected: expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate rejected: not valid yet (check this machine's clock)".into()
            }
            CertificateError::ApplicationVerificationFailure => {
                "certificate rejected: SPKI pin mismatch".into()
            }
            other => format!("certificate rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(a) => format!("handshake refused by the server: {a:?}"),
        rustls::Error::NoApplicationProtocol => "handshake refused: no common ALPN protocol".into(),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// A failed connection: why, and whatever the handshake showed before it failed.
#[derive(Debug)]
pub struct ConnectError {
    /// Why.
    pub reason: String,
    /// What was seen (chain, timings) up to the failure.
    pub seen: Box<Handshake>,
    /// The server refused our ALPN offer.
    pub alpn_refused: bool,
}

/// Connects to `addr`, authenticates as `auth`, offering `alpn`; everything bounded by `timeout`.
pub fn connect(
    addr: SocketAddr,
    auth: &Auth,
    alpn: &[&str],
    timeout: Duration,
) -> std::result::Result<(TlsStream, Handshake), ConnectError> {
    let mut seen = Handshake {
        alpn_offered: alpn.iter().map(|s| (*s).to_string()).collect(),
        ..Handshake::default()
    };
    let fail = |reason: String, seen: &Handshake| ConnectError {
        reason,
        seen: Box::new(seen.clone()),
        alpn_refused: false,
    };
    let path = ca_path(auth.ca_file.as_deref()).map_err(|e| fail(e.message, &seen))?;
    let roots = Arc::new(load_roots(&path).map_err(|e| fail(e.message, &seen))?);
    let provider = Arc::new(provider::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| fail(format!("CA bundle {path}: {e}"), &seen))?;
    let verifier = Arc::new(Verifier {
        inner: webpki,
        pins: auth.pins.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let versions: &[&rustls::SupportedProtocolVersion] = match auth.min_version {
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| fail(format!("TLS settings rejected: {e}"), &seen))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.enable_sni = auth.sni;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = ServerName::try_from(auth.auth_name.clone()).map_err(|_| {
        fail(
            format!("bad authentication name {:?}", auth.auth_name),
            &seen,
        )
    })?;
    let mut conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| fail(format!("TLS settings rejected: {e}"), &seen))?;

    let start = Instant::now();
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| fail(format!("TCP connect to {addr} failed: {e}"), &seen))?;
    seen.tcp_connect_ms = ms(start.elapsed());
    let _ = tcp.set_nodelay(true);
    let deadline = start + timeout;
    let tls_start = Instant::now();
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(format!("TLS handshake with {addr} timed out"), &seen));
        }
        let _ = tcp.set_read_timeout(Some(left));
        let _ = tcp.set_write_timeout(Some(left));
        if let Err(e) = conn.complete_io(&mut tcp) {
            seen.chain =
                describe_chain(&verifier.seen.lock().unwrap_or_else(PoisonError::into_inner));
            let tls_err = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned();
            let alpn_refused = matches!(
                tls_err,
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::NoApplicationProtocol
                )) | Some(rustls::Error::NoApplicationProtocol)
            );
            let reason = match tls_err {
                Some(t) => describe_tls_error(&t),
                None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    "the server closed the connection during the TLS handshake".into()
                }
                None if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
                {
                    format!("TLS handshake with {addr} timed out")
                }
                None => format!("TLS handshake failed: {e}"),
            };
            return Err(ConnectError {
                reason,
                seen: Box::new(seen),
                alpn_refused,
            });
        }
    }
    seen.tls_handshake_ms = ms(tls_start.elapsed());
    seen.tls_version = conn.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    });
    seen.cipher_suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    seen.alpn_selected = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    seen.chain = match conn.peer_certificates() {
        Some(c) => describe_chain(c),
        None => Vec::new(),
    };
    Ok((StreamOwned::new(conn, tcp), seen))
}

/// Milliseconds with 0.01 precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}
