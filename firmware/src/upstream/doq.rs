//! One DNS-over-QUIC session (RFC 9250): a QUIC connection (quinn, on the same rustls/ring stack and
//! the same `lanveil-tls` verifier as DoT) with ALPN `doq`, then one client-initiated bidirectional
//! stream per query: the 2-octet length prefix and the query (ID 0, padded by the engine to the
//! 128-octet block), then FIN; the answer is the whole stream up to the server's FIN
//! (`lanveil_core::wire::doq::response` checks it). No 0-RTT ever; TLS resumption only with
//! `tls_resumption '1'`, as for DoT; no QUIC address-validation tokens kept either. The server may
//! open no streams (its stream limits are 0).
//!
//! Error codes (§4.3): a response that breaks the protocol closes the connection with
//! DOQ_PROTOCOL_ERROR; a stream the server resets (DOQ_REQUEST_CANCELLED, DOQ_EXCESSIVE_LOAD, …) fails
//! that one query, which the engine then tries elsewhere; a query the engine stops waiting for
//! (answered elsewhere, given up) has its stream stopped with DOQ_REQUEST_CANCELLED (§4.5); the
//! connection is closed with DOQ_NO_ERROR when the engine lets it go (idle, reload, shutdown).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lanveil_core::engine::{CloseReason, SessionId, TlsFailure};
use lanveil_core::wire::doq::{self, StreamError, code};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, ReadError, ReadToEndError, VarInt, WriteError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::tls::Target;
use super::{Cancels, Outgoing};
use crate::events::{UpstreamEvent, UpstreamSender};

/// QUIC's idle timeout: longer than the engine's (20 s), so the engine closes idle sessions itself
/// with DOQ_NO_ERROR and only a dead path is timed out here.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Closes the connection with DOQ_NO_ERROR when the session ends, however it ends (the driver aborts
/// the task of a session the engine let go).
struct CloseOnDrop(Connection);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(VarInt::from_u32(code::NO_ERROR), b"");
    }
}

/// How one query ended.
enum Outcome {
    Answer(Vec<u8>),
    /// The server reset the stream (or the stream could not be opened): this query failed.
    Failed,
    /// The response broke RFC 9250: the connection goes.
    Protocol(StreamError),
    /// The connection is gone; its close is reported once, by the session.
    Lost,
    /// The engine stopped waiting for it (answered elsewhere, or given up): nothing to report.
    Cancelled,
}

pub(super) async fn session_io(
    session: SessionId,
    target: &Target,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    events: &UpstreamSender,
) -> Result<(), CloseReason> {
    let (tls, decision) = target.quic_client_config();
    let crypto = QuicClientConfig::try_from(Arc::new(tls))
        .map_err(|_| CloseReason::Tls(TlsFailure::Handshake))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config());
    // No NEW_TOKEN address-validation tokens kept for later connections: like a resumption
    // ticket, a token would link this connection to the next.
    client.token_store(Arc::new(quinn::NoneTokenStore));
    let conn = connect_any(target, client, &decision).await?;
    let conn = CloseOnDrop(conn);
    let alpn = conn
        .0
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    if alpn.as_deref() != Some(b"doq") {
        log::debug!("upstream {}: no doq ALPN", target.upstream.name);
        return Err(CloseReason::Tls(TlsFailure::Handshake));
    }
    let relaxed = target.relaxed(decision.relaxed());
    log::debug!(
        "upstream {}: session {} up (QUIC)",
        target.upstream.name,
        session.0
    );
    if events
        .send(UpstreamEvent::Connected { session, relaxed })
        .await
        .is_err()
    {
        return Ok(());
    }
    // The queries in flight: dropped (and so aborted) with the session; and how to cancel each.
    let mut queries: JoinSet<(u16, u64, Outcome)> = JoinSet::new();
    let mut cancels = Cancels::default();
    loop {
        tokio::select! {
            e = conn.0.closed() => return Err(close_reason(&e, decision.failure())),
            Some(done) = queries.join_next(), if !queries.is_empty() => {
                let Ok((tag, n, outcome)) = done else { continue };
                cancels.finished(tag, n);
                let event = match outcome {
                    Outcome::Answer(bytes) => UpstreamEvent::Response { session, tag, bytes },
                    Outcome::Failed => UpstreamEvent::RequestFailed { session, tag },
                    Outcome::Protocol(e) => {
                        log::debug!("upstream {}: {}", target.upstream.name, e.as_str());
                        conn.0.close(VarInt::from_u32(code::PROTOCOL_ERROR), e.as_str().as_bytes());
                        return Err(CloseReason::Protocol);
                    }
                    Outcome::Lost | Outcome::Cancelled => continue,
                };
                if events.send(event).await.is_err() {
                    return Ok(());
                }
            }
            msg = rx.recv() => {
                let (tag, message) = match msg {
                    Some(Outgoing::Request { tag, message }) => (tag, message),
                    Some(Outgoing::Cancel { tag }) => {
                        cancels.cancel(tag);
                        continue;
                    }
                    // The engine let the session go (or, never, sent stream bytes).
                    Some(Outgoing::Bytes(_)) | None => {
                        log::debug!("upstream {}: session {} let go", target.upstream.name, session.0);
                        return Ok(());
                    }
                };
                let conn = conn.0.clone();
                let (n, cancelled) = cancels.register(tag);
                queries.spawn(async move { (tag, n, query(&conn, &message, cancelled).await) });
            }
        }
    }
}

/// One query on its own stream (§4.2): prefix + message, FIN, then the answer up to the server's FIN.
/// A cancel (only a sent one: a dropped sender is none) while it waits for a stream or for the
/// answer ends it; a stream already open is stopped with DOQ_REQUEST_CANCELLED (§4.5).
async fn query(conn: &Connection, message: &[u8], mut cancel: oneshot::Receiver<()>) -> Outcome {
    let Ok(prefix) = doq::query_prefix(message) else {
        return Outcome::Failed;
    };
    let opened = tokio::select! {
        opened = conn.open_bi() => opened,
        Ok(()) = &mut cancel => return Outcome::Cancelled,
    };
    let (mut send, mut recv) = match opened {
        Ok(s) => s,
        Err(_) => return Outcome::Lost,
    };
    // Both writes land in the stream's buffer before the connection task runs: one STREAM frame.
    let written = async {
        send.write_all(&prefix).await?;
        send.write_all(message).await?;
        Ok::<(), WriteError>(())
    }
    .await;
    match written {
        Ok(()) => {}
        // §4.3.3: a client receiving STOP_SENDING is a protocol error.
        Err(WriteError::Stopped(_)) => return Outcome::Protocol(StreamError::ExtraData),
        Err(WriteError::ConnectionLost(_)) => return Outcome::Lost,
        Err(_) => return Outcome::Failed,
    }
    if send.finish().is_err() {
        return Outcome::Failed;
    }
    let read = tokio::select! {
        read = recv.read_to_end(doq::MAX_STREAM) => read,
        Ok(()) = &mut cancel => {
            let _ = recv.stop(VarInt::from_u32(code::REQUEST_CANCELLED));
            return Outcome::Cancelled;
        }
    };
    match read {
        Ok(mut stream) => match doq::response(&stream) {
            Ok(_) => {
                stream.drain(..2);
                Outcome::Answer(stream)
            }
            Err(e) => Outcome::Protocol(e),
        },
        Err(ReadToEndError::TooLong) => Outcome::Protocol(StreamError::ExtraData),
        Err(ReadToEndError::Read(ReadError::ConnectionLost(_))) => Outcome::Lost,
        Err(ReadToEndError::Read(_)) => Outcome::Failed,
    }
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    static CONFIG: OnceLock<Arc<quinn::TransportConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut t = quinn::TransportConfig::default();
            // §4.2: the server opens no streams of its own.
            t.max_concurrent_bidi_streams(VarInt::from_u32(0));
            t.max_concurrent_uni_streams(VarInt::from_u32(0));
            t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
            t.keep_alive_interval(None);
            // One answer per stream (≤ 64 KiB + prefix): small windows bound what a server can make
            // us buffer on streams.
            t.stream_receive_window(VarInt::from_u32(doq::MAX_STREAM as u32));
            t.receive_window(VarInt::from_u32(1 << 20));
            t.send_window(1 << 20);
            // No QUIC DATAGRAM support (RFC 9221) advertised: DoQ never uses it and lanveil never
            // reads datagrams, yet quinn's default (a ~1.25 MB receive buffer) would let a server
            // make every connection hold that much, outside the stream windows above. Without the
            // transport parameter a DATAGRAM frame is a protocol violation that ends the connection.
            t.datagram_receive_buffer_size(None);
            Arc::new(t)
        })
        .clone()
}

/// Dials the upstream's addresses in turn, on the upstream's shared endpoint.
async fn connect_any(
    target: &Target,
    client: quinn::ClientConfig,
    decision: &lanveil_tls::Decision,
) -> Result<Connection, CloseReason> {
    let mut last = CloseReason::Unreachable;
    for addr in &target.addrs {
        let endpoint = match target.quic.get(addr.is_ipv6()) {
            Ok(e) => e,
            Err(_) => continue,
        };
        let connecting =
            match endpoint.connect_with(client.clone(), *addr, &target.upstream.url.auth_name) {
                Ok(c) => c,
                Err(_) => {
                    last = CloseReason::Unreachable;
                    continue;
                }
            };
        // Never `into_0rtt`: the handshake completes before any query is sent.
        match connecting.await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                last = close_reason(&e, decision.failure());
                if matches!(last, CloseReason::Tls(_)) {
                    // Authentication failed: another address of the same upstream will not differ.
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

/// What a closed connection means to the engine.
/// The verifier's verdict (`failure`), if it rejected the certificate, wins: QUIC carries only the
/// TLS alert.
fn close_reason(e: &ConnectionError, failure: Option<TlsFailure>) -> CloseReason {
    if let Some(f) = failure {
        return CloseReason::Tls(f);
    }
    match e {
        ConnectionError::ApplicationClosed(c)
            if c.error_code == VarInt::from_u32(code::NO_ERROR) =>
        {
            CloseReason::Eof
        }
        ConnectionError::ApplicationClosed(_) | ConnectionError::Reset => CloseReason::Reset,
        ConnectionError::TimedOut => CloseReason::Timeout,
        ConnectionError::LocallyClosed => CloseReason::Eof,
        ConnectionError::ConnectionClosed(c) => crypto_reason(u64::from(c.error_code)),
        ConnectionError::TransportError(t) => crypto_reason(u64::from(t.code)),
        _ => CloseReason::Protocol,
    }
}

/// A TLS alert carried as a QUIC CRYPTO_ERROR (0x0100 + alert, RFC 9001 §4.8) is a TLS failure;
/// any other transport error is the connection failing.
fn crypto_reason(code: u64) -> CloseReason {
    match code {
        0x0100..=0x01ff => CloseReason::Tls(TlsFailure::Handshake),
        _ => CloseReason::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

    /// A self-signed Ed25519 certificate for `doq.test` (100 years) and its key, for a loopback
    /// quinn server.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBUjCCAQSgAwIBAgIUd1/0aGkiBpQdqSLvcHxcvRJF7sQwBQYDK2VwMBMxETAP
BgNVBAMMCGRvcS50ZXN0MCAXDTI2MTIwNzAxMjIwMloYDzIxMjYxMTEzMDEyMjAy
WjATMREwDwYDVQQDDAhkb3EudGVzdDAqMAUGAytlcAMhAHhXdAvgfTOYkWATKt99
gG1QwYDV3lNC9PsmVQ3SHZeuo2gwZjAdBgNVHQ4EFgQUzrPVxYNAk2GGEzWJkNU7
XMDpRXMwHwYDVR0jBBgwFoAUzrPVxYNAk2GGEzWJkNU7XMDpRXMwDwYDVR0TAQH/
BAUwAwEB/zATBgNVHREEDDAKgghkb3EudGVzdDAFBgMrZXADQQDuJXV1RuCPdO7D
s9Rf9yO/WXO6pxGP6UjIF3tkvvIsQHezssG8NwQJNOPKUMmwqXuG0WWHA5WmTMf1
1K3pltYO
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMyC8mAVUWAGf6hRVdesCPjD2XRFcahegpK1b54alAxG
-----END PRIVATE KEY-----
";

    /// Accepts any certificate: this test is about transport parameters, not authentication.
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// From the server's side: a client with lanveil's transport configuration advertises no QUIC
    /// DATAGRAM support (no max_datagram_frame_size transport parameter), so no server can make it
    /// buffer datagrams.
    #[tokio::test]
    async fn no_datagram_support_is_advertised() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
        let server_config = quinn::ServerConfig::with_single_cert(vec![cert], key).unwrap();
        let server = quinn::Endpoint::server(
            server_config,
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .unwrap();
        let server_addr = server.local_addr().unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let crypto = QuicClientConfig::try_from(Arc::new(tls)).unwrap();
        let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
        client_config.transport_config(transport_config());
        let client =
            quinn::Endpoint::client(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let connecting = client
            .connect_with(client_config, server_addr, "doq.test")
            .unwrap();
        let (client_conn, server_conn) =
            tokio::join!(connecting, async { server.accept().await.unwrap().await });
        let (client_conn, server_conn) = (client_conn.unwrap(), server_conn.unwrap());
        // The server (quinn's defaults) offers datagrams; lanveil does not.
        assert!(client_conn.max_datagram_size().is_some());
        assert_eq!(server_conn.max_datagram_size(), None);
        client_conn.close(VarInt::from_u32(code::NO_ERROR), b"");
    }

    #[test]
    fn the_verifiers_verdict_wins_over_the_connection_error() {
        for f in [TlsFailure::PinMismatch, TlsFailure::NameMismatch] {
            assert_eq!(
                close_reason(&ConnectionError::TimedOut, Some(f)),
                CloseReason::Tls(f)
            );
        }
    }

    #[test]
    fn connection_errors() {
        let none = None;
        let app = |code: u32| {
            ConnectionError::ApplicationClosed(quinn::ApplicationClose {
                error_code: VarInt::from_u32(code),
                reason: Default::default(),
            })
        };
        assert_eq!(close_reason(&app(code::NO_ERROR), none), CloseReason::Eof);
        for c in [
            code::INTERNAL_ERROR,
            code::PROTOCOL_ERROR,
            code::EXCESSIVE_LOAD,
            code::ERROR_RESERVED,
        ] {
            assert_eq!(close_reason(&app(c), none), CloseReason::Reset);
        }
        assert_eq!(
            close_reason(&ConnectionError::TimedOut, none),
            CloseReason::Timeout
        );
        assert_eq!(
            close_reason(&ConnectionError::Reset, none),
            CloseReason::Reset
        );
        // A TLS alert (CRYPTO_ERROR 0x100 + alert) without a verdict of ours: the server refused.
        assert_eq!(
            crypto_reason(0x100 + 120),
            CloseReason::Tls(TlsFailure::Handshake)
        );
        assert_eq!(crypto_reason(0x1), CloseReason::Reset);
    }
}
