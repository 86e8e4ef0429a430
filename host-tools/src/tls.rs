//! A blocking rustls client that authenticates an upstream exactly as the daemon does, with the same
//! verifier (`lanveil-tls`'s `PinningVerifier`): WebPKI validation of the authentication name against
//! a CA bundle (the upstream's own, `--ca-file`, or the system bundle), then the SPKI pin set when one
//! is given; TLS 1.3 unless 1.2 is allowed; SNI = the authentication name; no session resumption. The
//! only difference is the time: this machine's clock, where the router applies its clock rule. It also
//! keeps the chain the server presented (a `ChainObserver`), so the owner can see (and pin) it even
//! when it was rejected. Failure texts are the daemon's EDE texts (`lanveil_tls::describe`).

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lanveil_config::{SpkiPin, TlsVersion};
use lanveil_tls::{ChainObserver, Checks};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, StreamOwned};

use crate::error::{Error, Result};

pub use lanveil_tls::{SYSTEM_CA_FILES, describe_tls_error};

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
    lanveil_tls::spki_sha256(cert_der).map(SpkiPin)
}

pub(crate) fn describe_chain(certs: &[CertificateDer<'_>]) -> Vec<ChainCert> {
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

/// The CA bundle to use: the given one or the first system bundle present (as the daemon).
pub fn ca_path(given: Option<&str>) -> Result<String> {
    lanveil_tls::ca_path(given).map_err(|_| {
        Error::failed(format!(
            "no system CA bundle ({}); give --ca-file",
            SYSTEM_CA_FILES.join(" or ")
        ))
    })
}

/// Keeps the chain the server presented, so the owner sees (and can pin) it even when rejected.
#[derive(Debug, Default)]
pub(crate) struct Seen(pub(crate) Mutex<Vec<CertificateDer<'static>>>);

impl ChainObserver for Seen {
    fn presented(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
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
    let setup = |e: lanveil_tls::SetupError| fail(e.to_string(), &seen);
    let roots = lanveil_tls::load_roots(&path).map_err(setup)?;
    // The daemon's verifier, at this machine's time (a PC has a real-time clock).
    let checks =
        Arc::new(Checks::new(roots, auth.pins.clone(), lanveil_tls::SystemTime).map_err(setup)?);
    let observed = Arc::new(Seen::default());
    let (verifier, _) = checks.verifier(observed.clone());
    let versions = lanveil_tls::protocol_versions(auth.min_version).map_err(setup)?;
    let config = checks
        .client_config(
            versions,
            verifier,
            None,
            auth.sni,
            alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
        )
        .map_err(setup)?;
    let name: ServerName<'static> = lanveil_tls::server_name(&auth.auth_name).map_err(setup)?;
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
            seen.chain = describe_chain(&observed.0.lock().unwrap_or_else(PoisonError::into_inner));
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

/// A [`TlsStream`] bound to one deadline: every read and write through it (each socket read, each
/// socket write, however the server trickles its bytes) waits at most until `deadline`, then fails
/// with [`std::io::ErrorKind::TimedOut`]. rustls's own `StreamOwned` loops over socket reads until a
/// whole record is in, each with a fresh socket time-out, so a server sending a byte at a time would
/// hold it for ever; this pumps the records itself.
pub struct Deadline<'a> {
    stream: &'a mut TlsStream,
    deadline: Instant,
}

impl<'a> Deadline<'a> {
    /// `stream` until `deadline`.
    pub fn new(stream: &'a mut TlsStream, deadline: Instant) -> Self {
        Self { stream, deadline }
    }

    fn left(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer in time",
            ));
        }
        Ok(left)
    }

    fn send_tls(&mut self) -> std::io::Result<()> {
        while self.stream.conn.wants_write() {
            let left = self.left()?;
            self.stream.sock.set_write_timeout(Some(left))?;
            self.stream.conn.write_tls(&mut self.stream.sock)?;
        }
        Ok(())
    }
}

impl std::io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.stream.conn.reader().read(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                done => return done,
            }
            self.send_tls()?;
            let left = self.left()?;
            self.stream.sock.set_read_timeout(Some(left))?;
            let n = self.stream.conn.read_tls(&mut self.stream.sock)?;
            self.stream
                .conn
                .process_new_packets()
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, describe_tls_error(&e)))?;
            if n == 0 {
                // The end of the TCP stream: what is left, then a clean or an unexpected end.
                return match self.stream.conn.reader().read(buf) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        Err(std::io::Error::from(ErrorKind::UnexpectedEof))
                    }
                    done => done,
                };
            }
        }
    }
}

impl std::io::Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.stream.conn.writer().write(buf)?;
        self.send_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.conn.writer().flush()?;
        self.send_tls()
    }
}

/// Milliseconds with 0.01 precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}
