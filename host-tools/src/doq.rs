//! A blocking DNS-over-QUIC client (RFC 9250) for `lanveil-ctl probe`: quinn's sans-IO QUIC state
//! machine (`quinn-proto`, no tokio) driven over one std UDP socket, with the daemon's verifier
//! (`lanveil-tls`) at this machine's time, ALPN `doq`, TLS 1.3, no resumption, no 0-RTT. One stream
//! per query: the 2-octet prefix, the query (ID 0), FIN; the answer is checked like the daemon's
//! (`lanveil_core::wire::doq::response`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use lanveil_core::engine::CloseReason;
use lanveil_core::wire::doq::{self, code};
use lanveil_tls::Checks;
use quinn_proto::crypto::rustls::{HandshakeData, QuicClientConfig};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig,
    Event, StreamId, TransportConfig, VarInt,
};

use crate::tls::{self, Auth, ConnectError, Handshake, Seen};

/// One authenticated DoQ connection.
pub struct DoqConn {
    sock: UdpSocket,
    endpoint: Endpoint,
    handle: ConnectionHandle,
    conn: Connection,
    buf: Vec<u8>,
    lost: Option<String>,
}

/// Connects to `addr` over QUIC and authenticates as `auth` (ALPN `doq`), bounded by `timeout`.
pub fn connect(
    addr: SocketAddr,
    auth: &Auth,
    timeout: Duration,
) -> Result<(DoqConn, Handshake), ConnectError> {
    let mut seen = Handshake {
        alpn_offered: vec!["doq".into()],
        ..Handshake::default()
    };
    let fail = |reason: String, seen: &Handshake| ConnectError {
        reason,
        seen: Box::new(seen.clone()),
        alpn_refused: false,
    };
    let path = tls::ca_path(auth.ca_file.as_deref()).map_err(|e| fail(e.message, &seen))?;
    let setup = |e: lanveil_tls::SetupError| fail(e.to_string(), &seen);
    let roots = lanveil_tls::load_roots(&path).map_err(setup)?;
    let checks =
        Arc::new(Checks::new(roots, auth.pins.clone(), lanveil_tls::SystemTime).map_err(setup)?);
    let observed = Arc::new(Seen::default());
    // The decision also keeps the verifier's own verdict on a rejected certificate (QUIC carries
    // only the TLS alert).
    let (verifier, decision) = checks.verifier(observed.clone());
    // QUIC is TLS 1.3 only.
    let versions =
        lanveil_tls::protocol_versions(lanveil_config::TlsVersion::V1_3).map_err(setup)?;
    let mut config = checks
        .client_config(versions, verifier, None, auth.sni, vec![b"doq".to_vec()])
        .map_err(setup)?;
    config.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(Arc::new(config))
        .map_err(|e| fail(format!("QUIC TLS settings rejected: {e}"), &seen))?;
    let mut client = ClientConfig::new(Arc::new(crypto));
    client.token_store(Arc::new(quinn_proto::NoneTokenStore));
    let mut transport = TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(0));
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    transport.max_idle_timeout(
        quinn_proto::IdleTimeout::try_from(timeout.max(Duration::from_secs(1))).ok(),
    );
    client.transport_config(Arc::new(transport));

    let bind = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = UdpSocket::bind(bind).map_err(|e| fail(format!("UDP socket: {e}"), &seen))?;
    let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None);
    let start = Instant::now();
    let (handle, conn) = endpoint
        .connect(start, client, addr, &auth.auth_name)
        .map_err(|e| fail(format!("QUIC connect to {addr}: {e}"), &seen))?;
    let mut c = DoqConn {
        sock,
        endpoint,
        handle,
        conn,
        buf: Vec::with_capacity(2048),
        lost: None,
    };
    let mut connected = false;
    let deadline = start + timeout;
    c.drive(deadline, |_, e| {
        if matches!(e, Event::Connected) {
            connected = true;
        }
        connected
    });
    seen.tls_handshake_ms = tls::ms(start.elapsed());
    seen.chain = tls::describe_chain(&observed.0.lock().unwrap_or_else(PoisonError::into_inner));
    if !connected {
        let reason = match decision.failure() {
            Some(f) => lanveil_tls::describe(CloseReason::Tls(f)).to_string(),
            None => match c.lost.take() {
                Some(lost) if decision.relaxed().is_some() => {
                    format!("QUIC handshake failed: {lost}")
                }
                Some(lost) => format!("QUIC handshake with {addr} failed: {lost}"),
                None => format!("no QUIC handshake with {addr} in time"),
            },
        };
        return Err(fail(reason, &seen));
    }
    seen.tls_version = Some("TLSv1.3".into());
    seen.alpn_selected = c
        .conn
        .crypto_session()
        .handshake_data()
        .and_then(|h| h.downcast::<HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    if seen.alpn_selected.as_deref() != Some("doq") {
        return Err(ConnectError {
            reason: "the server did not select ALPN doq".into(),
            seen: Box::new(seen),
            alpn_refused: true,
        });
    }
    Ok((c, seen))
}

impl DoqConn {
    /// One query on a new stream; returns the answer message (ID 0) or why there is none.
    pub fn exchange(&mut self, query: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
        let prefix = doq::query_prefix(query).map_err(|e| e.to_string())?;
        let Some(id) = self.conn.streams().open(Dir::Bi) else {
            return Err("no stream available".into());
        };
        let mut framed = prefix.to_vec();
        framed.extend_from_slice(query);
        let mut sent = 0;
        let deadline = Instant::now() + timeout;
        let mut answer = Vec::new();
        let mut outcome: Option<Result<(), String>> = None;
        while outcome.is_none() {
            if sent < framed.len() {
                match self.conn.send_stream(id).write(&framed[sent..]) {
                    Ok(n) => sent += n,
                    Err(quinn_proto::WriteError::Blocked) => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
                if sent == framed.len() {
                    self.conn
                        .send_stream(id)
                        .finish()
                        .map_err(|e| format!("finish: {e}"))?;
                }
            }
            outcome = self.read_stream(id, &mut answer);
            if outcome.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                return Err("no answer in time".into());
            }
            let mut readable = false;
            self.drive(deadline, |_, e| {
                if matches!(e, Event::Stream(_)) {
                    readable = true;
                }
                readable
            });
            if let Some(lost) = &self.lost {
                return Err(format!("the connection was lost: {lost}"));
            }
        }
        match outcome {
            Some(Ok(())) => match doq::response(&answer) {
                Ok(msg) => Ok(msg.to_vec()),
                Err(e) => {
                    self.conn.close(
                        Instant::now(),
                        VarInt::from_u32(code::PROTOCOL_ERROR),
                        Bytes::from_static(b"protocol error"),
                    );
                    self.flush();
                    Err(format!("RFC 9250 violation: {}", e.as_str()))
                }
            },
            Some(Err(e)) => Err(e),
            None => Err("no answer in time".into()),
        }
    }

    /// Reads what the stream has; `Some` once it ended (FIN or reset).
    fn read_stream(&mut self, id: StreamId, out: &mut Vec<u8>) -> Option<Result<(), String>> {
        let mut stream = self.conn.recv_stream(id);
        let Ok(mut chunks) = stream.read(true) else {
            return None;
        };
        let result = loop {
            match chunks.next(usize::MAX) {
                Ok(Some(chunk)) => {
                    if out.len() + chunk.bytes.len() > doq::MAX_STREAM {
                        break Some(Err("answer longer than 65,535 octets".into()));
                    }
                    out.extend_from_slice(&chunk.bytes);
                }
                Ok(None) => break Some(Ok(())),
                Err(quinn_proto::ReadError::Blocked) => break None,
                Err(quinn_proto::ReadError::Reset(code)) => {
                    break Some(Err(format!("the server reset the stream (code {code})")));
                }
            }
        };
        let _ = chunks.finalize();
        result
    }

    /// Closes the connection with DOQ_NO_ERROR (and sends the close).
    pub fn close(&mut self) {
        self.conn.close(
            Instant::now(),
            VarInt::from_u32(code::NO_ERROR),
            Bytes::new(),
        );
        self.flush();
    }

    fn flush(&mut self) {
        loop {
            self.buf.clear();
            let Some(t) = self.conn.poll_transmit(Instant::now(), 1, &mut self.buf) else {
                break;
            };
            let _ = self.sock.send_to(&self.buf[..t.size], t.destination);
        }
    }

    /// Runs the connection (sends, timers, received datagrams) until `done` says so for an event,
    /// the connection is lost, or `deadline` passes.
    fn drive(&mut self, deadline: Instant, mut done: impl FnMut(&mut Self, &Event) -> bool) {
        let mut rx = vec![0u8; 65_536];
        loop {
            self.flush();
            while let Some(ev) = self.conn.poll_endpoint_events() {
                if let Some(cev) = self.endpoint.handle_event(self.handle, ev) {
                    self.conn.handle_event(cev);
                }
            }
            let mut finished = false;
            while let Some(ev) = self.conn.poll() {
                if let Event::ConnectionLost { reason } = &ev {
                    self.lost = Some(reason.to_string());
                    finished = true;
                }
                if done(self, &ev) {
                    finished = true;
                }
            }
            self.flush();
            if finished {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wake = self
                .conn
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline));
            let wait = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let _ = self.sock.set_read_timeout(Some(wait));
            // A read timeout is the timer's turn, below.
            if let Ok((n, from)) = self.sock.recv_from(&mut rx) {
                let mut resp = Vec::new();
                match self.endpoint.handle(
                    Instant::now(),
                    from,
                    None,
                    None,
                    BytesMut::from(&rx[..n]),
                    &mut resp,
                ) {
                    Some(DatagramEvent::ConnectionEvent(_, ev)) => self.conn.handle_event(ev),
                    Some(DatagramEvent::Response(t)) => {
                        let _ = self.sock.send_to(&resp[..t.size], t.destination);
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            if self.conn.poll_timeout().is_some_and(|t| t <= now) {
                self.conn.handle_timeout(now);
            }
        }
    }
}
