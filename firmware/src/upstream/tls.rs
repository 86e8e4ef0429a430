//! rustls client configuration for one upstream: WebPKI validation of the authentication name against
//! a CA bundle, plus (when configured) an SPKI pin set that must match a certificate of the chain
//! (RFC 7858 §4.2). TLS 1.3 unless the owner allowed 1.2; no session resumption (resumption links
//! connections to each other); SNI is the authentication name.

use std::io;
use std::path::Path;
use std::sync::Arc;

use lanveil_config::{SpkiPin, TlsVersion, Transport, Upstream};
use lanveil_core::clock;

use crate::clock::TimeKeeper;
use lanveil_core::engine::{CloseReason, TlsFailure};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

/// CA bundles tried, in order, when no `ca_file` is configured.
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Why an upstream's TLS settings could not be built.
#[derive(Debug)]
pub enum TlsSetupError {
    /// No CA bundle found or readable.
    NoCaBundle(String),
    /// The bundle had no usable certificate.
    EmptyCaBundle(String),
    /// rustls refused the settings.
    Rustls(rustls::Error),
    /// `tls_min_version '1.2'` in a build without the `tls12` feature.
    NoTls12,
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCaBundle(p) => write!(f, "cannot read CA bundle {p}"),
            Self::EmptyCaBundle(p) => write!(f, "CA bundle {p} contains no usable certificate"),
            Self::Rustls(e) => write!(f, "TLS settings rejected: {e}"),
            Self::NoTls12 => f.write_str(
                "tls_min_version '1.2' needs a lanveil built with TLS 1.2 (feature tls12)",
            ),
        }
    }
}

impl std::error::Error for TlsSetupError {}

/// Everything needed to dial one upstream.
#[derive(Debug)]
pub struct Target {
    pub(crate) upstream: Upstream,
    pub(crate) addrs: Vec<std::net::SocketAddr>,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) tls: Arc<ClientConfig>,
    checks: Arc<Checks>,
    pub(crate) time: Arc<TimeKeeper>,
    cert_not_after: Arc<crate::sync::Shared64>,
}

impl Target {
    /// notAfter of the last leaf certificate accepted from this upstream (Unix seconds).
    pub fn cert_not_after(&self) -> Option<u64> {
        match self.cert_not_after.load() {
            0 => None,
            t => Some(t),
        }
    }
}

fn load_roots(path: &str) -> Result<RootCertStore, TlsSetupError> {
    let iter = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|_| TlsSetupError::NoCaBundle(path.into()))?;
    let mut store = RootCertStore::empty();
    for cert in iter.flatten() {
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(TlsSetupError::EmptyCaBundle(path.into()));
    }
    Ok(store)
}

/// The CA bundle path for an upstream: its own, the global one, or the first system bundle present.
pub fn ca_path(upstream: &Upstream, global: Option<&str>) -> Result<String, TlsSetupError> {
    if let Some(p) = upstream.ca_file.as_deref().or(global) {
        return Ok(p.to_string());
    }
    SYSTEM_CA_FILES
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_string())
        .ok_or_else(|| TlsSetupError::NoCaBundle(SYSTEM_CA_FILES.join(" or ")))
}

impl Target {
    /// Builds the TLS settings for `upstream`.
    pub fn new(
        upstream: &Upstream,
        global_ca: Option<&str>,
        time: Arc<TimeKeeper>,
    ) -> Result<Self, TlsSetupError> {
        let path = ca_path(upstream, global_ca)?;
        let roots = Arc::new(load_roots(&path)?);
        let provider = Arc::new(provider::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
        let versions = protocol_versions(upstream.tls_min_version)?;
        let time_for_target = time.clone();
        let cert_not_after = Arc::new(crate::sync::Shared64::new(0));
        let checks = Arc::new(Checks {
            inner: webpki,
            pins: upstream.pins.clone(),
            time,
            not_after: cert_not_after.clone(),
        });
        // Replaced per connection by `Target::connector` (which records the verifier's decision);
        // this one only makes the shared settings complete.
        let verifier: Arc<dyn ServerCertVerifier> = Arc::new(Verifier {
            checks: checks.clone(),
            decision: Arc::default(),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(TlsSetupError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // Resumption links connections to each other; only on when the owner asks.
        if !upstream.tls_resumption {
            config.resumption = Resumption::disabled();
        }
        config.enable_sni = upstream.sni;
        config.alpn_protocols = match upstream.url.transport {
            Transport::Tls => vec![b"dot".to_vec()],
            Transport::Https => vec![b"h2".to_vec()],
        };
        let server_name = ServerName::try_from(upstream.url.auth_name.clone()).map_err(|_| {
            TlsSetupError::Rustls(rustls::Error::General("bad authentication name".into()))
        })?;
        Ok(Self {
            upstream: upstream.clone(),
            addrs: upstream.addrs(),
            server_name,
            tls: Arc::new(config),
            checks,
            time: time_for_target,
            cert_not_after,
        })
    }

    /// TLS settings for one new connection: the shared settings with a verifier of its own, which
    /// records what it decided (see [`Decision`]). `alpn` replaces the upstream's ALPN list.
    pub(crate) fn connector(&self, alpn: Option<Vec<Vec<u8>>>) -> (TlsConnector, Decision) {
        let decision = Decision::default();
        let mut config = (*self.tls).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(Verifier {
                checks: self.checks.clone(),
                decision: decision.0.clone(),
            }));
        if let Some(alpn) = alpn {
            config.alpn_protocols = alpn;
        }
        (TlsConnector::from(Arc::new(config)), decision)
    }

    /// TCP connect to the first address that accepts, then the TLS handshake. Returns the stream
    /// and whether the session is *relaxed* (authenticated against the time floor, clock rule 3): the
    /// verifier's own decision, not a second look at the clock, which may have synchronized since.
    pub async fn handshake(
        &self,
        alpn: Option<Vec<Vec<u8>>>,
    ) -> io::Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, bool)> {
        let tcp = connect_any(&self.addrs).await?;
        let (connector, decision) = self.connector(alpn);
        let tls = connector.connect(self.server_name.clone(), tcp).await?;
        let relaxed = decision.relaxed().unwrap_or_else(|| {
            // A resumed session (only with `tls_resumption '1'`) skips the verifier: judge it by the
            // clock now, as the full handshake it resumes would have been.
            self.time.state() == clock::ClockState::Unsynchronized
        });
        Ok((tls, relaxed))
    }
}

/// What one connection's verifier decided: nothing yet (or a resumed session), checked at the real
/// time, or checked against the time floor (relaxed).
#[derive(Clone, Debug, Default)]
pub(crate) struct Decision(Arc<std::sync::atomic::AtomicU8>);

const DECIDED_STRICT: u8 = 1;
const DECIDED_RELAXED: u8 = 2;

impl Decision {
    /// `Some(true)` if the certificate was checked against the floor, `Some(false)` if at the real
    /// time, `None` if the verifier did not run.
    pub(crate) fn relaxed(&self) -> Option<bool> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            DECIDED_STRICT => Some(false),
            DECIDED_RELAXED => Some(true),
            _ => None,
        }
    }
}

/// The TLS versions offered for a configured minimum; TLS 1.2 only where it is compiled in.
pub fn protocol_versions(
    min: TlsVersion,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsSetupError> {
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    #[cfg(feature = "tls12")]
    static TLS12: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    match min {
        TlsVersion::V1_3 => Ok(&TLS13),
        #[cfg(feature = "tls12")]
        TlsVersion::V1_2 => Ok(&TLS12),
        #[cfg(not(feature = "tls12"))]
        TlsVersion::V1_2 => Err(TlsSetupError::NoTls12),
    }
}

/// WebPKI validation of the chain and the name at the time the clock rule gives (`lanveil_core::clock`:
/// the wall clock when synchronized, the floor otherwise), then the pin set: a chain that validates but
/// matches no pin is rejected.
#[derive(Debug)]
struct Verifier {
    checks: Arc<Checks>,
    decision: Arc<std::sync::atomic::AtomicU8>,
}

/// What every connection to one upstream is checked against.
#[derive(Debug)]
struct Checks {
    inner: Arc<WebPkiServerVerifier>,
    pins: Vec<SpkiPin>,
    time: Arc<TimeKeeper>,
    not_after: Arc<crate::sync::Shared64>,
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, the RFC 7469 pin.
pub fn spki_sha256(cert: &[u8]) -> Option<[u8; 32]> {
    let spki = lanveil_core::spki::subject_public_key_info(cert).ok()?;
    let d = ring::digest::digest(&ring::digest::SHA256, spki);
    d.as_ref().try_into().ok()
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let this = &*self.checks;
        let validity = lanveil_core::spki::validity(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let (at, relaxed) = match clock::check_at(
            this.time.wall(),
            this.time.floor(),
            validity,
            !this.pins.is_empty(),
        ) {
            clock::CheckAt::Time { at, relaxed } => (at, relaxed),
            clock::CheckAt::ExpiredBeforeFloor => {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
            }
        };
        // The decision travels with the connection (`Target::handshake`); relaxed wins if the
        // verifier were ever to run twice on one connection.
        self.decision.fetch_max(
            if relaxed {
                DECIDED_RELAXED
            } else {
                DECIDED_STRICT
            },
            std::sync::atomic::Ordering::AcqRel,
        );
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at));
        let ok = this.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            at,
        )?;
        let remember = || this.not_after.store(validity.not_after);
        if this.pins.is_empty() {
            remember();
            return Ok(ok);
        }
        let matched = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(|c| spki_sha256(c))
            .any(|h| this.pins.iter().any(|p| p.0 == h));
        if matched {
            remember();
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checks.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checks.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.checks.inner.supported_verify_schemes()
    }
}

/// Maps an I/O error from connect/handshake/read/write to what the engine needs to know.
pub fn classify(e: &io::Error) -> CloseReason {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return CloseReason::Tls(match tls {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UntrustedCertificate
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsFailure::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsFailure::NotYetValid
                }
                CertificateError::ApplicationVerificationFailure => TlsFailure::PinMismatch,
                _ => TlsFailure::BadCertificate,
            },
            _ => TlsFailure::Handshake,
        });
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => CloseReason::Refused,
        io::ErrorKind::UnexpectedEof => CloseReason::Eof,
        io::ErrorKind::TimedOut => CloseReason::Timeout,
        io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::AddrNotAvailable => CloseReason::Unreachable,
        io::ErrorKind::InvalidData => CloseReason::Tls(TlsFailure::Handshake),
        _ => CloseReason::Reset,
    }
}

/// Connects to the first address that accepts.
pub(crate) async fn connect_any(
    addrs: &[std::net::SocketAddr],
) -> io::Result<tokio::net::TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to connect to");
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A short, privacy-safe description for logs.
pub fn describe(reason: CloseReason) -> &'static str {
    lanveil_core::engine::ede_for(Some(reason)).text
}
