//! DNS client helpers for tests: plain UDP and TCP queries (parsed with
//! hickory-proto 0.25), raw byte exchanges for malformed input, a small
//! DNS-over-TLS client that can pipeline, and readers for answers and
//! Extended DNS Errors (RFC 8914).
//!
//! Everything is bounded by a timeout so a test can never hang. The
//! `query_*` helpers panic with a clear message on failure (for the common
//! "this must be answered" case); the `try_*`/`raw_*` ones return
//! [`ClientError`] so a test can assert that nothing came back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::util::DEFAULT_TIMEOUT;

/// Why an exchange produced no usable answer.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing (complete) arrived in time.
    Timeout,
    /// The peer closed the connection cleanly before answering.
    Closed,
    /// Socket or TLS error (including connection refused / reset and
    /// certificate verification failures).
    Io(std::io::Error),
    /// The bytes received are not a DNS message.
    Parse(ProtoError),
    /// Bad input to the helper itself (e.g. an unparsable name).
    Usage(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Timeout => write!(f, "timed out"),
            ClientError::Closed => write!(f, "connection closed by peer"),
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Parse(e) => write!(f, "unparsable DNS message: {e}"),
            ClientError::Usage(e) => write!(f, "bad helper input: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ClientError::Closed
        } else {
            ClientError::Io(e)
        }
    }
}

impl From<ProtoError> for ClientError {
    fn from(e: ProtoError) -> Self {
        ClientError::Parse(e)
    }
}

impl ClientError {
    /// True for [`ClientError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout)
    }
}

async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

/// A random 16-bit message ID.
pub fn random_id() -> u16 {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 2];
    // SystemRandom only fails if the OS RNG is unusable; 0x4242 is still a valid ID.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0x4242;
    }
    u16::from_be_bytes(b)
}

/// A standard query (random ID, RD set) for `name`/`rtype`, with an OPT
/// record advertising `edns` as UDP size when given.
///
/// # Panics
/// If `name` is not a valid domain name.
pub fn build_query(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad query name {name:?}: {e}"));
    let mut m = Message::new();
    m.set_id(random_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// Adds an EDNS option (code, data) to `msg`, creating the OPT record
/// (UDP size 1232) if needed.
pub fn add_edns_option(msg: &mut Message, code: u16, data: Vec<u8>) {
    msg.extensions_mut()
        .get_or_insert_with(|| {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e
        })
        .options_mut()
        .insert(EdnsOption::Unknown(code, data));
}

fn local_for(server: SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// Sends `bytes` in one UDP datagram and returns the first datagram that
/// comes back from `server`.
pub async fn raw_udp(
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    bounded(timeout, async {
        let sock = UdpSocket::bind(local_for(server)).await?;
        sock.connect(server).await?;
        sock.send(bytes).await?;
        let mut buf = vec![0u8; 65_535];
        let n = sock.recv(&mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    })
    .await
}

/// Sends `msg` over UDP and waits for the response with the same ID
/// (datagrams with another ID are ignored).
pub async fn exchange_udp(
    server: SocketAddr,
    msg: &Message,
    timeout: Duration,
) -> Result<Message, ClientError> {
    let bytes = msg.to_vec()?;
    bounded(timeout, async {
        let sock = UdpSocket::bind(local_for(server)).await?;
        sock.connect(server).await?;
        sock.send(&bytes).await?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = sock.recv(&mut buf).await?;
            let Ok(resp) = Message::from_vec(buf.get(..n).unwrap_or_default()) else {
                continue;
            };
            if resp.id() == msg.id() && resp.message_type() == MessageType::Response {
                return Ok(resp);
            }
        }
    })
    .await
}

/// Opens a TCP connection, writes `bytes` verbatim (no framing added), and
/// returns everything read until the peer closes or `read_for` elapses.
/// For malformed-framing tests.
pub async fn raw_tcp_stream(
    server: SocketAddr,
    bytes: &[u8],
    read_for: Duration,
) -> Result<Vec<u8>, ClientError> {
    let mut s = bounded(DEFAULT_TIMEOUT, async {
        Ok(TcpStream::connect(server).await?)
    })
    .await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(read_for, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
    })
    .await;
    Ok(out)
}

async fn read_frame<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, ClientError> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// `msg` with its DNS-over-TCP length prefix (RFC 1035 §4.2.2).
pub fn frame(msg: &[u8]) -> Result<Vec<u8>, ClientError> {
    let len = u16::try_from(msg.len())
        .map_err(|_| ClientError::Usage(format!("message of {} bytes", msg.len())))?;
    let mut v = Vec::with_capacity(msg.len() + 2);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(msg);
    Ok(v)
}

/// Sends `bytes` as one length-prefixed DNS-over-TCP message and returns the
/// first framed message received (without its length).
pub async fn raw_tcp(
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    let framed = frame(bytes)?;
    bounded(timeout, async {
        let mut s = TcpStream::connect(server).await?;
        s.write_all(&framed).await?;
        read_frame(&mut s).await
    })
    .await
}

/// Sends `msg` over TCP and returns the parsed response.
pub async fn exchange_tcp(
    server: SocketAddr,
    msg: &Message,
    timeout: Duration,
) -> Result<Message, ClientError> {
    let bytes = raw_tcp(server, &msg.to_vec()?, timeout).await?;
    Ok(Message::from_vec(&bytes)?)
}

/// UDP query with [`DEFAULT_TIMEOUT`]; errors are returned.
pub async fn try_query_udp(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
) -> Result<Message, ClientError> {
    exchange_udp(server, &build_query(name, rtype, edns), DEFAULT_TIMEOUT).await
}

/// TCP query with [`DEFAULT_TIMEOUT`]; errors are returned.
pub async fn try_query_tcp(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
) -> Result<Message, ClientError> {
    exchange_tcp(server, &build_query(name, rtype, edns), DEFAULT_TIMEOUT).await
}

/// UDP query that must be answered within [`DEFAULT_TIMEOUT`].
///
/// # Panics
/// On timeout or any error, naming the server and question.
pub async fn query_udp(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
) -> Message {
    try_query_udp(server, name, rtype, edns)
        .await
        .unwrap_or_else(|e| panic!("UDP query {name} {rtype} to {server} failed: {e}"))
}

/// TCP query that must be answered within [`DEFAULT_TIMEOUT`].
///
/// # Panics
/// On timeout or any error, naming the server and question.
pub async fn query_tcp(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
) -> Message {
    try_query_tcp(server, name, rtype, edns)
        .await
        .unwrap_or_else(|e| panic!("TCP query {name} {rtype} to {server} failed: {e}"))
}

/// Every Extended DNS Error (EDNS option 15: info code + UTF-8 text) in
/// `msg`, in order.
pub fn ede_all(msg: &Message) -> Vec<(u16, String)> {
    let Some(edns) = msg.extensions() else {
        return Vec::new();
    };
    edns.options()
        .as_ref()
        .iter()
        .filter_map(|(code, opt)| match (code, opt) {
            (EdnsCode::Unknown(15), EdnsOption::Unknown(15, data)) => {
                let info = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
                let text = String::from_utf8_lossy(data.get(2..).unwrap_or_default()).into_owned();
                Some((info, text))
            }
            _ => None,
        })
        .collect()
}

/// The first Extended DNS Error in `msg`, if any.
pub fn ede(msg: &Message) -> Option<(u16, String)> {
    ede_all(msg).into_iter().next()
}

/// The A addresses in the answer section.
pub fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The AAAA addresses in the answer section.
pub fn aaaa_records(msg: &Message) -> Vec<Ipv6Addr> {
    msg.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The TXT answers, each as the concatenation of its strings.
pub fn txt_records(msg: &Message) -> Vec<Vec<u8>> {
    msg.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::TXT(t) => Some(
                t.txt_data()
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// A rustls client config (ring provider) trusting `roots`, limited to
/// `versions`.
///
/// # Panics
/// If `versions` is empty.
pub fn dot_client_config(
    roots: Arc<RootCertStore>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("TLS versions supported by the ring provider")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A DNS-over-TLS client connection that can pipeline: `send` any number
/// of messages, then `recv` the answers in whatever order they come.
pub struct DotClient {
    stream: TlsStream<TcpStream>,
}

impl std::fmt::Debug for DotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotClient")
            .field("version", &self.protocol_version())
            .finish_non_exhaustive()
    }
}

impl DotClient {
    /// Connects and handshakes (TLS 1.3 or 1.2), verifying `server_name`
    /// (a DNS name or an IP literal) against `roots`.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        roots: Arc<RootCertStore>,
    ) -> Result<DotClient, ClientError> {
        let config = dot_client_config(roots, &[&rustls::version::TLS13, &rustls::version::TLS12]);
        Self::connect_with(addr, server_name, config).await
    }

    /// Connects with a caller-made rustls config.
    pub async fn connect_with(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> Result<DotClient, ClientError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| ClientError::Usage(format!("server name {server_name:?}: {e}")))?;
        bounded(DEFAULT_TIMEOUT, async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(DotClient { stream })
        })
        .await
    }

    /// The negotiated TLS version.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }

    /// Writes one DNS message with its 2-byte length prefix.
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), ClientError> {
        self.send_raw(&frame(msg)?).await
    }

    /// Writes bytes verbatim inside the TLS stream (no framing added).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        bounded(DEFAULT_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await?;
            Ok(())
        })
        .await
    }

    /// Reads one framed message (without its length). After a
    /// [`ClientError::Timeout`] the framing may be out of step: drop the
    /// client.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        bounded(timeout, read_frame(&mut self.stream)).await
    }

    /// Reads one framed message and parses it.
    pub async fn recv_message(&mut self, timeout: Duration) -> Result<Message, ClientError> {
        Ok(Message::from_vec(&self.recv(timeout).await?)?)
    }

    /// Sends a fresh query and reads the next message (no pipelining).
    pub async fn query(
        &mut self,
        name: &str,
        rtype: RecordType,
        edns: Option<u16>,
    ) -> Result<Message, ClientError> {
        let q = build_query(name, rtype, edns);
        self.send(&q.to_vec()?).await?;
        self.recv_message(DEFAULT_TIMEOUT).await
    }

    /// Sends close_notify and shuts down the write side (half-close).
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        bounded(DEFAULT_TIMEOUT, async { Ok(self.stream.shutdown().await?) }).await
    }

    /// Waits until the server closes the connection: `Ok(())` on a clean
    /// close, `Err(Io)` on a reset, `Err(Timeout)` if it stays open. Any
    /// messages still arriving are discarded.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<(), ClientError> {
        bounded(timeout, async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(ClientError::Io(e)),
                }
            }
        })
        .await
    }
}
