//! How lanveil authenticates an upstream, in one place for the daemon and for `lanveil-ctl`:
//!
//! * CA discovery ([`ca_path`], [`load_roots`]);
//! * one verifier, [`PinningVerifier`]: WebPKI validation of the chain and the authentication name at
//!   the time a [`VerifyTime`] gives (the daemon's clock rule, or the host's system time), then the
//!   SPKI pin set (RFC 7858 §4.2): a chain that validates but matches no pin is rejected. Each
//!   connection gets its own verifier, which records what it decided ([`Decision`]) and can show the
//!   presented chain to a [`ChainObserver`] (the host's `probe` prints pins, even of a rejected chain);
//! * the classification of a `rustls::Error` into the core's [`TlsFailure`] ([`classify`],
//!   [`classify_io`]) and one table of failure texts ([`describe`]), which the daemon's Extended DNS
//!   Errors and the host's messages both use.
//!
//! No tokio: the host tool links this crate and must never link tokio.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lanveil_config::{SpkiPin, TlsVersion};
use lanveil_core::engine::{CloseReason, TlsFailure};
use lanveil_core::spki::Validity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue, VerifierBuilderError,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore,
    SignatureScheme,
};

/// CA bundles tried, in order, when none is configured.
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The sessions kept for resumption (`tls_resumption '1'`; rustls' in-memory store of 256). A resumed
/// session skips the certificate check, so it carries the verdict of the handshake it resumes: a
/// session kept while the clock was unsynchronized (authenticated against the time floor) is never
/// resumed once the clock is synchronized. The first use after that forgets every session kept so
/// far; [`Tickets::forget`] does at once (the daemon, for a relaxed session that completes its
/// handshake after the clock was set, whose tickets may come later).
pub struct Tickets {
    kept: Mutex<Kept>,
    synchronized: Box<dyn Fn() -> bool + Send + Sync>,
}

struct Kept {
    store: Arc<ClientSessionMemoryCache>,
    /// A session was kept while the clock was unsynchronized.
    unsynchronized: bool,
}

const TICKETS: usize = 256;

impl Kept {
    fn empty() -> Self {
        Self {
            store: Arc::new(ClientSessionMemoryCache::new(TICKETS)),
            unsynchronized: false,
        }
    }
}

impl Tickets {
    /// An empty store; `synchronized` says whether the clock is.
    pub fn new(synchronized: Box<dyn Fn() -> bool + Send + Sync>) -> Self {
        Self {
            kept: Mutex::new(Kept::empty()),
            synchronized,
        }
    }

    /// Drops every session kept so far (those being resumed right now complete as they are).
    pub fn forget(&self) {
        *self.kept.lock().unwrap_or_else(PoisonError::into_inner) = Kept::empty();
    }

    /// The store to use now; `keeping`: a session is about to be kept in it.
    fn store(&self, keeping: bool) -> Arc<ClientSessionMemoryCache> {
        let synchronized = (self.synchronized)();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.unsynchronized && synchronized {
            *kept = Kept::empty();
        }
        kept.unsynchronized |= keeping && !synchronized;
        kept.store.clone()
    }
}

impl core::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tickets").finish_non_exhaustive()
    }
}

impl ClientSessionStore for Tickets {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.store(false).set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.store(false).kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.store(true).set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.store(false).tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.store(false).remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.store(true).insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.store(false).take_tls13_ticket(server_name)
    }
}

/// Why TLS settings could not be built.
#[derive(Debug)]
pub enum SetupError {
    /// No CA bundle found, or it could not be read.
    NoCaBundle(String),
    /// The bundle had no usable certificate.
    EmptyCaBundle(String),
    /// rustls refused the settings (its words).
    Rustls(String),
    /// `tls_min_version '1.2'` in a build without TLS 1.2.
    NoTls12,
    /// The authentication name is not a valid server name.
    BadName(String),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCaBundle(p) => write!(f, "cannot read CA bundle {p}"),
            Self::EmptyCaBundle(p) => write!(f, "CA bundle {p} contains no usable certificate"),
            Self::Rustls(e) => write!(f, "TLS settings rejected: {e}"),
            Self::NoTls12 => f.write_str(
                "tls_min_version '1.2' needs a lanveil built with TLS 1.2 (feature tls12)",
            ),
            Self::BadName(n) => write!(f, "bad authentication name '{n}'"),
        }
    }
}

impl std::error::Error for SetupError {}

/// The CA bundle to use: the configured one, or the first system bundle present.
pub fn ca_path(configured: Option<&str>) -> Result<String, SetupError> {
    if let Some(p) = configured {
        return Ok(p.to_string());
    }
    SYSTEM_CA_FILES
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_string())
        .ok_or_else(|| SetupError::NoCaBundle(SYSTEM_CA_FILES.join(" or ")))
}

/// Loads a PEM CA bundle.
pub fn load_roots(path: &str) -> Result<RootCertStore, SetupError> {
    let iter = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|_| SetupError::NoCaBundle(path.into()))?;
    let mut store = RootCertStore::empty();
    for cert in iter.flatten() {
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(SetupError::EmptyCaBundle(path.into()));
    }
    Ok(store)
}

/// The TLS versions offered for a configured minimum; TLS 1.2 only where it is compiled in.
pub fn protocol_versions(
    min: TlsVersion,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], SetupError> {
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    #[cfg(feature = "tls12")]
    static TLS12: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    match min {
        TlsVersion::V1_3 => Ok(&TLS13),
        #[cfg(feature = "tls12")]
        TlsVersion::V1_2 => Ok(&TLS12),
        #[cfg(not(feature = "tls12"))]
        TlsVersion::V1_2 => Err(SetupError::NoTls12),
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, the RFC 7469 pin.
pub fn spki_sha256(cert: &[u8]) -> Option<[u8; 32]> {
    let spki = lanveil_core::spki::subject_public_key_info(cert).ok()?;
    let d = ring::digest::digest(&ring::digest::SHA256, spki);
    d.as_ref().try_into().ok()
}

/// The time a certificate is checked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckTime {
    /// Unix seconds to verify at.
    pub at: u64,
    /// Checked against a time floor, not a synchronized clock (the daemon's clock rule 3).
    pub relaxed: bool,
}

/// Where the verifier gets its verification time from.
pub trait VerifyTime: Send + Sync {
    /// The time to check a leaf with `validity` at (`now` is rustls's system time, `pinned` whether
    /// the upstream has pins), or the certificate error that rejects it whatever the time.
    fn check_time(
        &self,
        now: UnixTime,
        validity: Validity,
        pinned: bool,
    ) -> Result<CheckTime, CertificateError>;

    /// A leaf with `validity` passed every check (the daemon remembers its expiry for status).
    fn accepted(&self, _validity: Validity) {}
}

/// The system clock, as it is (the host tool: a PC has a real-time clock).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemTime;

impl VerifyTime for SystemTime {
    fn check_time(
        &self,
        now: UnixTime,
        _validity: Validity,
        _pinned: bool,
    ) -> Result<CheckTime, CertificateError> {
        Ok(CheckTime {
            at: now.as_secs(),
            relaxed: false,
        })
    }
}

/// Sees every chain a server presents, accepted or not.
pub trait ChainObserver: Send + Sync {
    /// Called before the chain is checked.
    fn presented(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]);
}

/// No observer (the daemon): compiles to nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl ChainObserver for NoObserver {
    #[inline]
    fn presented(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>]) {}
}

impl<O: ChainObserver> ChainObserver for Arc<O> {
    fn presented(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        (**self).presented(end_entity, intermediates);
    }
}

/// What one connection's verifier decided: the time it checked at (nothing yet or a resumed session,
/// the real time, or a time floor: relaxed), and why it rejected the latest certificate, if it did.
/// The latest verification wins (a verifier shared by connections, for resumption, reports the last
/// handshake's). QUIC hands back only the TLS alert, which cannot tell a pin mismatch from a wrong
/// name; the verdict here can.
#[derive(Clone, Debug, Default)]
pub struct Decision(Arc<Verdict>);

#[derive(Debug, Default)]
struct Verdict {
    time: AtomicU8,
    failure: AtomicU8,
}

const DECIDED_STRICT: u8 = 1;
const DECIDED_RELAXED: u8 = 2;

/// The failure kinds, in the order their codes (1..) are stored.
const FAILURES: [TlsFailure; 7] = [
    TlsFailure::UntrustedCertificate,
    TlsFailure::NameMismatch,
    TlsFailure::Expired,
    TlsFailure::NotYetValid,
    TlsFailure::PinMismatch,
    TlsFailure::BadCertificate,
    TlsFailure::Handshake,
];

impl Decision {
    /// `Some(true)`: the certificate was checked against the time floor; `Some(false)`: at the real
    /// time; `None`: the verifier did not run.
    pub fn relaxed(&self) -> Option<bool> {
        match self.0.time.load(Ordering::Acquire) {
            DECIDED_STRICT => Some(false),
            DECIDED_RELAXED => Some(true),
            _ => None,
        }
    }

    /// Why the verifier rejected the latest certificate or handshake signature it saw; `None`: it
    /// accepted them, or did not run.
    pub fn failure(&self) -> Option<TlsFailure> {
        let code = self.0.failure.load(Ordering::Acquire);
        FAILURES.get(usize::from(code).checked_sub(1)?).copied()
    }

    fn record<T>(&self, result: &Result<T, rustls::Error>) {
        let code = match result {
            Ok(_) => 0,
            Err(e) => {
                let f = classify(e);
                FAILURES
                    .iter()
                    .position(|k| *k == f)
                    .map_or(0, |i| i as u8 + 1)
            }
        };
        self.0.failure.store(code, Ordering::Release);
    }
}

/// What every connection to one upstream is checked against (shared by its connections), at the time
/// `T` gives.
pub struct Checks<T> {
    /// The ring provider, one per upstream, shared by the WebPKI checks and the client settings.
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The trust anchors. The WebPKI checks are rustls's own functions, called as its
    /// `WebPkiServerVerifier` calls them when it has no CRLs (lanveil has none): without that
    /// verifier, its CRL parsing and revocation code is not linked (30 KB on mipsel).
    roots: RootCertStore,
    pins: Vec<SpkiPin>,
    time: T,
}

impl<T: VerifyTime> Checks<T> {
    /// WebPKI against `roots`, then `pins` (if any), at the time `time` gives.
    pub fn new(roots: RootCertStore, pins: Vec<SpkiPin>, time: T) -> Result<Self, SetupError> {
        if roots.is_empty() {
            return Err(SetupError::Rustls(
                VerifierBuilderError::NoRootAnchors.to_string(),
            ));
        }
        Ok(Self {
            provider: Arc::new(provider()),
            roots,
            pins,
            time,
        })
    }

    /// Client settings for this upstream: only `versions`, `verifier` (one of [`Checks::verifier`]'s),
    /// no client auth, no resumption unless asked by giving the `tickets` to keep (resumption links
    /// connections to each other), SNI as asked, `alpn`.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        verifier: Arc<dyn ServerCertVerifier>,
        tickets: Option<Arc<Tickets>>,
        sni: bool,
        alpn: Vec<Vec<u8>>,
    ) -> Result<ClientConfig, SetupError> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| SetupError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.resumption = match tickets {
            Some(tickets) => Resumption::store(tickets),
            None => Resumption::disabled(),
        };
        config.enable_sni = sni;
        config.alpn_protocols = alpn;
        Ok(config)
    }

    /// A verifier for one connection, and the handle to read what it decided.
    pub fn verifier<O: ChainObserver>(
        self: &Arc<Self>,
        observer: O,
    ) -> (Arc<PinningVerifier<T, O>>, Decision) {
        let decision = Decision::default();
        let v = PinningVerifier {
            checks: self.clone(),
            decision: decision.clone(),
            observer,
        };
        (Arc::new(v), decision)
    }
}

/// ring's provider without its key loader: lanveil never presents a certificate (no client auth),
/// and ring's loader links RSA, ECDSA and Ed25519 *signing*, 70 KB of the mipsel binary.
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        key_provider: &NoPrivateKeys,
        ..rustls::crypto::ring::default_provider()
    }
}

/// The [`rustls::crypto::KeyProvider`] of a client that never authenticates itself: it loads no key.
#[derive(Debug)]
struct NoPrivateKeys;

impl rustls::crypto::KeyProvider for NoPrivateKeys {
    fn load_private_key(
        &self,
        _key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "lanveil has no client certificate".into(),
        ))
    }
}

/// The server name for an authentication name.
pub fn server_name(auth_name: &str) -> Result<ServerName<'static>, SetupError> {
    ServerName::try_from(auth_name.to_string()).map_err(|_| SetupError::BadName(auth_name.into()))
}

/// The one certificate verifier: the chain and the name by WebPKI at the [`VerifyTime`]'s time, then
/// the SPKI pins. One per connection ([`Checks::verifier`]).
pub struct PinningVerifier<T, O> {
    checks: Arc<Checks<T>>,
    decision: Decision,
    observer: O,
}

// Shallow by design: rustls wants `Debug` on a verifier, and a derived one would walk into WebPKI's
// verifier, root store and CRL types, whose `Debug` code nothing else on the router needs.
impl<T> std::fmt::Debug for Checks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checks {{ pins: {} }}", self.pins.len())
    }
}

impl<T, O> std::fmt::Debug for PinningVerifier<T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinningVerifier {{ pins: {} }}", self.checks.pins.len())
    }
}

impl<T: VerifyTime, O: ChainObserver> PinningVerifier<T, O> {
    /// The checks, in order: validity dates at the [`VerifyTime`]'s time, WebPKI (chain and name),
    /// then the pins.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.observer.presented(end_entity, intermediates);
        let c = &*self.checks;
        let validity = lanveil_core::spki::validity(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let t = c
            .time
            .check_time(now, validity, !c.pins.is_empty())
            .map_err(rustls::Error::InvalidCertificate)?;
        // Recorded before the checks below: a session is relaxed by the time it was checked at.
        let decided = if t.relaxed {
            DECIDED_RELAXED
        } else {
            DECIDED_STRICT
        };
        self.decision.0.time.store(decided, Ordering::Release);
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.at));
        // What `WebPkiServerVerifier::verify_server_cert` does without CRLs (it does not check a
        // stapled OCSP response either).
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let webpki = || {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                &c.roots,
                intermediates,
                at,
                c.provider.signature_verification_algorithms.all,
            )
        };
        if c.pins.is_empty() {
            webpki()?;
        } else if !c.pinned_path(end_entity, intermediates, at) {
            // No validated chain holds a pin. WebPKI's own error if there is no validated chain at
            // all (expired, unknown issuer, ...), then the name's, else the pins'.
            webpki()?;
            rustls::client::verify_server_name(&cert, server_name)?;
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        // (A pinned path is a chain WebPKI validated: `pinned_path` runs the same
        // `verify_for_usage` as rustls' check, so the chain is built and its signatures checked
        // once per handshake, not twice.)
        rustls::client::verify_server_name(&cert, server_name)?;
        c.time.accepted(validity);
        Ok(ServerCertVerified::assertion())
    }
}

/// rustls' check of a handshake signature (TLS 1.2's or TLS 1.3's) under the provider's algorithms.
type VerifySignature = fn(
    &[u8],
    &CertificateDer<'_>,
    &DigitallySignedStruct,
    &rustls::crypto::WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error>;

impl<T, O> PinningVerifier<T, O> {
    /// A handshake signature checked by `verify` under the provider's algorithms; a failure is
    /// recorded in the decision.
    fn signature(
        &self,
        verify: VerifySignature,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let r = verify(
            message,
            cert,
            dss,
            &self.checks.provider.signature_verification_algorithms,
        );
        if r.is_err() {
            self.decision.record(&r);
        }
        r
    }
}

impl<T> Checks<T> {
    /// Whether a chain WebPKI validates from `end_entity` to one of the roots holds a pinned key: the
    /// leaf's, an intermediate's of that chain, or its trust anchor's (RFC 7469 §2.6: pins are
    /// matched against the validated chain). A certificate the server sent that the chain does
    /// not use proves nothing: with any publicly trusted certificate for the name, an attacker
    /// could append the real, public intermediate whose key is pinned. When the intermediates allow
    /// several chains, WebPKI tries the next one after a chain without a pin.
    fn pinned_path(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        at: UnixTime,
    ) -> bool {
        let pinned = |spki: &[u8]| {
            let h = ring::digest::digest(&ring::digest::SHA256, spki);
            self.pins.iter().any(|p| p.0[..] == *h.as_ref())
        };
        let holds_pin = |path: &webpki::VerifiedPath<'_>| {
            let anchor = webpki::spki_for_anchor(path.anchor());
            let found = pinned(path.end_entity().subject_public_key_info().as_ref())
                || path
                    .intermediate_certificates()
                    .any(|c| pinned(c.subject_public_key_info().as_ref()))
                || pinned(anchor.as_ref());
            // Any error: WebPKI then tries the next chain, and reports failure if none is left.
            found.then_some(()).ok_or(webpki::Error::UnknownIssuer)
        };
        let Ok(leaf) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        leaf.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.roots.roots,
            intermediates,
            at,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&holds_pin),
        )
        .is_ok()
    }
}

impl<T: VerifyTime, O: ChainObserver> ServerCertVerifier for PinningVerifier<T, O> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let _ = ocsp_response;
        let r = self.check(end_entity, intermediates, server_name, now);
        self.decision.record(&r);
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(rustls::crypto::verify_tls12_signature, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(rustls::crypto::verify_tls13_signature, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.checks
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The core's failure kind for a TLS error.
pub fn classify(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsFailure::UntrustedCertificate
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
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
    }
}

/// What a connect/handshake/read/write error means to the engine.
pub fn classify_io(e: &io::Error) -> CloseReason {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return CloseReason::Tls(classify(tls));
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

/// The words for a failure: the text of the Extended DNS Error the daemon sends, which is also what
/// the host tool says (one table, `lanveil_core::engine::ede_for`). Privacy-safe: no names, no
/// addresses.
pub fn describe(reason: CloseReason) -> &'static str {
    lanveil_core::engine::ede_for(Some(reason)).text
}

/// [`describe`] for a TLS error, with what only the handshake can tell (an alert, no common ALPN).
pub fn describe_tls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::AlertReceived(a) => {
            format!(
                "{}: the server sent {a:?}",
                describe(CloseReason::Tls(classify(e)))
            )
        }
        rustls::Error::NoApplicationProtocol => format!(
            "{}: no common ALPN protocol",
            describe(CloseReason::Tls(classify(e)))
        ),
        other => describe(CloseReason::Tls(classify(other))).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_tickets_are_gone_and_new_ones_are_kept() {
        let tickets = Tickets::new(Box::new(|| true));
        let name = ServerName::try_from("dot.test").unwrap();
        tickets.set_kx_hint(name.clone(), NamedGroup::X25519);
        assert_eq!(tickets.kx_hint(&name), Some(NamedGroup::X25519));
        tickets.forget();
        assert_eq!(tickets.kx_hint(&name), None);
        tickets.set_kx_hint(name.clone(), NamedGroup::secp256r1);
        assert_eq!(tickets.kx_hint(&name), Some(NamedGroup::secp256r1));
    }

    #[test]
    fn one_text_per_failure_kind_shared_with_the_edes() {
        let e = rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
        assert_eq!(classify(&e), TlsFailure::PinMismatch);
        assert_eq!(
            describe_tls_error(&e),
            "upstream certificate rejected: SPKI pin mismatch"
        );
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            describe_tls_error(&e),
            lanveil_core::engine::ede_for(Some(CloseReason::Tls(TlsFailure::UntrustedCertificate)))
                .text
        );
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        );
        assert_eq!(classify_io(&io), CloseReason::Tls(TlsFailure::Expired));
        assert_eq!(
            classify_io(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            CloseReason::Refused
        );
    }

    #[test]
    fn the_provider_loads_no_private_key() {
        let rng = ring::rand::SystemRandom::new();
        let Ok(pkcs8) = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng) else {
            panic!("ring generates an Ed25519 key");
        };
        let key = || rustls::pki_types::PrivateKeyDer::Pkcs8(pkcs8.as_ref().to_vec().into());
        // The control: ring's own loader takes this key.
        let ring = rustls::crypto::ring::default_provider();
        assert!(ring.key_provider.load_private_key(key()).is_ok());
        assert!(provider().key_provider.load_private_key(key()).is_err());
        // Everything else is ring's.
        assert_eq!(provider().cipher_suites, ring.cipher_suites);
        assert_eq!(provider().kx_groups.len(), ring.kx_groups.len());
    }

    /// A throwaway CA and a leaf for `dns.example` it signed (ECDSA P-256, rcgen's default).
    struct Pki {
        ca: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
        leaf_key: rustls::pki_types::PrivateKeyDer<'static>,
    }

    fn pki() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["dns.example".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        Pki {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            leaf_key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        }
    }

    fn checks(ca: &CertificateDer<'static>, pins: Vec<SpkiPin>) -> Arc<Checks<SystemTime>> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        Arc::new(Checks::new(roots, pins, SystemTime).unwrap())
    }

    /// One certificate check, as rustls calls it: the failure kind, or `None` when accepted (and the
    /// verifier's recorded verdict agrees).
    fn verdict(
        checks: &Arc<Checks<SystemTime>>,
        leaf: &CertificateDer<'_>,
        name: &str,
    ) -> Option<TlsFailure> {
        verdict_chain(checks, leaf, &[], name)
    }

    /// [`verdict`] with intermediates sent after the leaf.
    fn verdict_chain(
        checks: &Arc<Checks<SystemTime>>,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &str,
    ) -> Option<TlsFailure> {
        let (v, decision) = checks.verifier(NoObserver);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let r = v.verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now());
        let kind = r.as_ref().err().map(classify);
        assert_eq!(decision.failure(), kind);
        // The time is decided before WebPKI runs, from the leaf's validity dates.
        let parsed = kind != Some(TlsFailure::BadCertificate);
        assert_eq!(decision.relaxed(), parsed.then_some(false));
        kind
    }

    #[test]
    fn the_verifier_checks_chain_name_and_pins() {
        let pki = pki();
        let other = pki_other_ca();
        let c = checks(&pki.ca, Vec::new());
        assert_eq!(verdict(&c, &pki.leaf, "dns.example"), None);
        assert_eq!(
            verdict(&c, &pki.leaf, "other.example"),
            Some(TlsFailure::NameMismatch)
        );
        assert_eq!(
            verdict(&checks(&other, Vec::new()), &pki.leaf, "dns.example"),
            Some(TlsFailure::UntrustedCertificate)
        );
        assert_eq!(
            verdict(
                &c,
                &CertificateDer::from(&b"not a certificate"[..]),
                "dns.example"
            ),
            Some(TlsFailure::BadCertificate)
        );
        let ca_pin = SpkiPin(spki_sha256(&pki.ca).unwrap());
        let leaf_pin = SpkiPin(spki_sha256(&pki.leaf).unwrap());
        let wrong_pin = SpkiPin(spki_sha256(&other).unwrap());
        // Pins are checked over the validated chain (here the leaf and the root), after WebPKI.
        assert_eq!(
            verdict(&checks(&pki.ca, vec![leaf_pin]), &pki.leaf, "dns.example"),
            None
        );
        assert_eq!(
            verdict(&checks(&pki.ca, vec![wrong_pin]), &pki.leaf, "dns.example"),
            Some(TlsFailure::PinMismatch)
        );
        // The trust anchor is part of the chain even though the server does not send it.
        assert_eq!(
            verdict(
                &checks(&pki.ca, vec![wrong_pin, ca_pin]),
                &pki.leaf,
                "dns.example"
            ),
            None
        );
        assert_eq!(
            verdict(&checks(&pki.ca, vec![leaf_pin]), &pki.leaf, "other.example"),
            Some(TlsFailure::NameMismatch)
        );
    }

    /// A root, an intermediate it signed, a leaf for `dns.example` signed by each (ECDSA P-256),
    /// and the intermediate's pin.
    struct TwoLevels {
        root: rcgen::Certificate,
        inter: rcgen::Certificate,
        via_inter: rcgen::Certificate,
        direct: rcgen::Certificate,
        inter_pin: SpkiPin,
    }

    fn two_levels() -> TwoLevels {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        // Distinct names: WebPKI tries as issuer each CA whose subject is the certificate's issuer.
        let ca_params = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_owned());
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root = ca_params("root").self_signed(&root_key).unwrap();
        let inter_key = KeyPair::generate().unwrap();
        let inter = ca_params("intermediate")
            .signed_by(&inter_key, &root, &root_key)
            .unwrap();
        let leaf = |issuer: &rcgen::Certificate, issuer_key: &KeyPair| {
            CertificateParams::new(vec!["dns.example".to_owned()])
                .unwrap()
                .signed_by(&KeyPair::generate().unwrap(), issuer, issuer_key)
                .unwrap()
        };
        let via_inter = leaf(&inter, &inter_key);
        let direct = leaf(&root, &root_key);
        let inter_pin = SpkiPin(spki_sha256(inter.der()).unwrap());
        TwoLevels {
            root,
            inter,
            via_inter,
            direct,
            inter_pin,
        }
    }

    /// Signature checks, counted: wraps the provider's algorithms.
    #[derive(Debug)]
    struct Counting(&'static dyn rustls::pki_types::SignatureVerificationAlgorithm);

    static SIGNATURES_CHECKED: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    impl rustls::pki_types::SignatureVerificationAlgorithm for Counting {
        fn verify_signature(
            &self,
            public_key: &[u8],
            message: &[u8],
            signature: &[u8],
        ) -> Result<(), rustls::pki_types::InvalidSignature> {
            SIGNATURES_CHECKED.fetch_add(1, Ordering::SeqCst);
            self.0.verify_signature(public_key, message, signature)
        }
        fn public_key_alg_id(&self) -> rustls::pki_types::AlgorithmIdentifier {
            self.0.public_key_alg_id()
        }
        fn signature_alg_id(&self) -> rustls::pki_types::AlgorithmIdentifier {
            self.0.signature_alg_id()
        }
        fn fips(&self) -> bool {
            self.0.fips()
        }
    }

    /// A pinned chain is built, and its signatures checked, once per handshake (WebPKI's check and
    /// the pin's search for a validated chain were two chain builds).
    #[test]
    fn a_pinned_chain_is_checked_once() {
        let TwoLevels {
            root,
            inter,
            via_inter,
            direct,
            inter_pin,
        } = two_levels();
        let counted = |pins: Vec<SpkiPin>| {
            let base = provider();
            let all: Vec<&'static dyn rustls::pki_types::SignatureVerificationAlgorithm> = base
                .signature_verification_algorithms
                .all
                .iter()
                .map(|a| {
                    let c: &'static Counting = Box::leak(Box::new(Counting(*a)));
                    c as &'static dyn rustls::pki_types::SignatureVerificationAlgorithm
                })
                .collect();
            let mut roots = RootCertStore::empty();
            roots.add(root.der().clone()).unwrap();
            let mut c = Checks::new(roots, pins, SystemTime).unwrap();
            c.provider = Arc::new(rustls::crypto::CryptoProvider {
                signature_verification_algorithms: rustls::crypto::WebPkiSupportedAlgorithms {
                    all: Box::leak(all.into_boxed_slice()),
                    mapping: base.signature_verification_algorithms.mapping,
                },
                ..base
            });
            Arc::new(c)
        };
        let chain = [inter.der().clone()];
        let run = |c: &Arc<Checks<SystemTime>>, leaf: &CertificateDer<'_>, name: &str| {
            SIGNATURES_CHECKED.store(0, Ordering::SeqCst);
            let v = verdict_chain(c, leaf, &chain, name);
            (v, SIGNATURES_CHECKED.load(Ordering::SeqCst))
        };
        // Leaf by intermediate, intermediate by root: two signatures, with a pin as without.
        let pinned = counted(vec![inter_pin]);
        assert_eq!(
            run(&counted(Vec::new()), via_inter.der(), "dns.example"),
            (None, 2)
        );
        assert_eq!(run(&pinned, via_inter.der(), "dns.example"), (None, 2));
        // Failures keep their kinds (WebPKI runs again to say which): the pin, the name.
        assert_eq!(
            run(&pinned, direct.der(), "dns.example").0,
            Some(TlsFailure::PinMismatch)
        );
        assert_eq!(
            run(&pinned, via_inter.der(), "other.example").0,
            Some(TlsFailure::NameMismatch)
        );
    }

    /// A pinned intermediate counts only when the validated chain goes through it: a server with a
    /// leaf the root signed directly cannot satisfy the pin by sending the pinned intermediate along.
    #[test]
    fn a_pin_counts_only_on_the_validated_chain() {
        let TwoLevels {
            root,
            inter,
            via_inter,
            direct,
            inter_pin,
        } = two_levels();
        let c = checks(root.der(), vec![inter_pin]);
        // The intermediate signed the leaf: pinned.
        assert_eq!(
            verdict_chain(&c, via_inter.der(), &[inter.der().clone()], "dns.example"),
            None
        );
        // The root signed the leaf; the pinned intermediate rides along unused.
        assert_eq!(
            verdict_chain(&c, direct.der(), &[inter.der().clone()], "dns.example"),
            Some(TlsFailure::PinMismatch)
        );
        // Without pins the same chain is fine: WebPKI alone accepts it.
        assert_eq!(
            verdict_chain(
                &checks(root.der(), Vec::new()),
                direct.der(),
                &[inter.der().clone()],
                "dns.example"
            ),
            None
        );
    }

    fn pki_other_ca() -> CertificateDer<'static> {
        pki().ca
    }

    #[test]
    fn no_roots_is_a_setup_error() {
        let e = Checks::new(RootCertStore::empty(), Vec::new(), SystemTime).map(|_| ());
        assert!(matches!(e, Err(SetupError::Rustls(_))), "{e:?}");
    }

    /// A whole handshake in memory against a rustls server with the leaf: the server's signature
    /// over the handshake is checked with the provider's algorithms, for each TLS version built in.
    #[test]
    fn handshakes_with_the_verifier_and_rejects_a_wrong_name() {
        let pki = pki();
        let c = checks(&pki.ca, Vec::new());
        let all = protocol_versions(if cfg!(feature = "tls12") {
            TlsVersion::V1_2
        } else {
            TlsVersion::V1_3
        })
        .unwrap();
        for &version in all {
            for (name, ok) in [("dns.example", true), ("other.example", false)] {
                let server = rustls::ServerConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![pki.leaf.clone()], pki.leaf_key.clone_key())
                .unwrap();
                let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
                let (v, decision) = c.verifier(NoObserver);
                let config = c.client_config(all, v, None, true, Vec::new()).unwrap();
                let mut client = rustls::ClientConnection::new(
                    Arc::new(config),
                    ServerName::try_from(name.to_owned()).unwrap(),
                )
                .unwrap();
                let result = handshake(&mut client, &mut server);
                assert_eq!(result.is_ok(), ok, "{version:?} {name}: {result:?}");
                if ok {
                    assert_eq!(client.protocol_version(), Some(version.version));
                    assert_eq!(decision.failure(), None);
                } else {
                    assert_eq!(decision.failure(), Some(TlsFailure::NameMismatch));
                }
            }
        }
    }

    fn handshake(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) -> Result<(), rustls::Error> {
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets()?;
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets()?;
        }
        panic!("no handshake after 10 rounds");
    }

    #[test]
    fn the_decision_keeps_the_latest_verdict() {
        let d = Decision::default();
        assert_eq!((d.relaxed(), d.failure()), (None, None));
        let cases = [
            (
                CertificateError::UnknownIssuer,
                TlsFailure::UntrustedCertificate,
            ),
            (CertificateError::NotValidForName, TlsFailure::NameMismatch),
            (CertificateError::Expired, TlsFailure::Expired),
            (CertificateError::NotValidYet, TlsFailure::NotYetValid),
            (
                CertificateError::ApplicationVerificationFailure,
                TlsFailure::PinMismatch,
            ),
            (CertificateError::BadEncoding, TlsFailure::BadCertificate),
        ];
        for (e, want) in cases {
            d.record::<()>(&Err(rustls::Error::InvalidCertificate(e)));
            assert_eq!(d.failure(), Some(want));
        }
        d.record::<()>(&Err(rustls::Error::HandshakeNotComplete));
        assert_eq!(d.failure(), Some(TlsFailure::Handshake));
        // An accepted certificate clears it; clones share it.
        d.clone().record(&Ok(()));
        assert_eq!(d.failure(), None);
    }

    #[test]
    fn versions_follow_the_build() {
        assert!(protocol_versions(TlsVersion::V1_3).is_ok());
        assert_eq!(
            protocol_versions(TlsVersion::V1_2).is_ok(),
            cfg!(feature = "tls12")
        );
    }

    #[test]
    fn no_ca_bundle_is_a_typed_error() {
        let e = load_roots("/nonexistent/ca.pem").unwrap_err();
        assert!(matches!(e, SetupError::NoCaBundle(_)));
        assert_eq!(e.to_string(), "cannot read CA bundle /nonexistent/ca.pem");
    }
}
