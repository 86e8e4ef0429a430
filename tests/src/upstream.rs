//! An in-process DNS-over-TLS upstream (RFC 7858) for lanveil to forward to.
//!
//! It answers deterministic data so that a test can check every answer
//! against its question without keeping state:
//!
//! * `A` for any name: one record, [`expected_a`]`(qname)`; `AAAA`: one
//!   record, [`expected_aaaa`]`(qname)`;
//! * first label `big-N` (e.g. `big-3000.example.`): a TXT answer (whatever
//!   the query type) of about `N` bytes in 255-byte strings, see
//!   [`expected_big_txt`];
//! * first label `nx`: NXDOMAIN; `servfail`: SERVFAIL;
//! * first label `delay-N`: the normal answer, sent after `N` ms;
//! * any other type: NOERROR/NODATA.
//!
//! Every response echoes the query ID and the question bytes exactly, sets
//! QR and RA, copies RD/CD/opcode, and carries an OPT record (UDP size 1232,
//! DO copied) when the query had one, plus an Extended DNS Error option when
//! told to ([`UpstreamHandle::set_ede`]; that forces an OPT even if the query
//! had none).
//!
//! Connections are read continuously (RFC 7766 2-byte framing) and each
//! answer is written as soon as it is ready, so answers go out of order when
//! delays differ. Faults ([`UpstreamHandle::set_stall`],
//! [`UpstreamHandle::close_after`], [`UpstreamHandle::kill_connections`],
//! [`DotUpstream::stop`]/[`DotUpstream::restart`], reversed batches) are
//! switchable at run time, and everything received is recorded.
//!
//! The per-connection read path never panics on network input: a frame that
//! is not a DNS query closes that connection and the server goes on serving
//! the others.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::{ProtocolVersion, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::pki::Leaf;

/// UDP payload size advertised in the OPT record of every EDNS answer.
pub const UPSTREAM_EDNS_UDP_SIZE: u16 = 1232;
/// TTL of every answer record.
pub const ANSWER_TTL: u32 = 300;
/// `big-N` sizes are capped here so the response fits a 64 KiB DNS message.
pub const BIG_TXT_MAX: usize = 60_000;

/// How to start a [`DotUpstream`]. Build with [`UpstreamOpts::new`] and
/// override fields with struct-update syntax.
pub struct UpstreamOpts {
    /// Address to listen on (default `127.0.0.1:0`).
    pub bind: SocketAddr,
    /// Certificate chain presented to clients.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Private key for `cert_chain`.
    pub key: PrivateKeyDer<'static>,
    /// TLS versions accepted (default TLS 1.3 and 1.2).
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// ALPN protocols offered (default none: DoT does not use ALPN).
    pub alpn: Vec<Vec<u8>>,
    /// Hold answers until this many are ready on a connection, then write
    /// them in reverse order (a partial batch is flushed, reversed, when the
    /// client half-closes).
    pub reverse_batches: Option<usize>,
    /// Add this Extended DNS Error (info code, text) to every answer.
    pub add_ede: Option<(u16, String)>,
    /// Bound on the TLS handshake of each accepted connection.
    pub handshake_timeout: Duration,
}

impl UpstreamOpts {
    /// Defaults, presenting `leaf`.
    pub fn new(leaf: &Leaf) -> UpstreamOpts {
        UpstreamOpts {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            cert_chain: leaf.cert_chain.clone(),
            key: leaf.key(),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            alpn: Vec::new(),
            reverse_batches: None,
            add_ede: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What the upstream saw of one TLS connection (recorded after the handshake).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnInfo {
    /// SNI sent by the client, if any.
    pub sni: Option<String>,
    /// Negotiated TLS version.
    pub version: ProtocolVersion,
    /// Negotiated ALPN protocol, if any.
    pub alpn: Option<Vec<u8>>,
    /// Client address.
    pub peer: SocketAddr,
    /// The handshake resumed an earlier session (the server offers resumption).
    pub resumed: bool,
}

struct Shared {
    addr: SocketAddr,
    stall: AtomicBool,
    servfail: AtomicBool,
    /// 0 = never close.
    close_after: AtomicUsize,
    /// 0 or 1 = no batching.
    reverse_batches: AtomicUsize,
    ede: Mutex<Option<(u16, String)>>,
    handshake_timeout: Duration,
    handshakes: AtomicUsize,
    handshake_failures: AtomicUsize,
    queries: AtomicUsize,
    open: AtomicUsize,
    received: Mutex<Vec<Vec<u8>>>,
    connections: Mutex<Vec<ConnInfo>>,
    kill: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cloneable handle on a running [`DotUpstream`]: fault switches and
/// observations. Cheap to clone and move into tasks.
#[derive(Clone)]
pub struct UpstreamHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UpstreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHandle")
            .field("addr", &self.shared.addr)
            .field("handshakes", &self.handshakes())
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

impl UpstreamHandle {
    /// The listening address (fixed for the server's life, across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Stall mode: keep reading (and recording) queries but never answer
    /// them. Queries received while stalled stay unanswered for good.
    pub fn set_stall(&self, stall: bool) {
        self.shared.stall.store(stall, Ordering::SeqCst);
    }

    /// Answer every query SERVFAIL (a resolver having a bad day) until turned off.
    pub fn set_servfail(&self, on: bool) {
        self.shared.servfail.store(on, Ordering::SeqCst);
    }

    /// Close every connection (cleanly: close_notify + FIN) right after it
    /// has written `n` answers. Applies to open connections too. `0` turns
    /// it off.
    pub fn close_after(&self, n: usize) {
        self.shared.close_after.store(n, Ordering::SeqCst);
    }

    /// Turns [`UpstreamHandle::close_after`] off.
    pub fn clear_close_after(&self) {
        self.close_after(0);
    }

    /// Changes the reverse-batch size at run time (`None` = answer at once).
    pub fn set_reverse_batches(&self, n: Option<usize>) {
        self.shared
            .reverse_batches
            .store(n.unwrap_or(0), Ordering::SeqCst);
    }

    /// Adds (or with `None` stops adding) an Extended DNS Error option to
    /// every answer.
    pub fn set_ede(&self, ede: Option<(u16, String)>) {
        *lock(&self.shared.ede) = ede;
    }

    /// Resets (TCP RST) every open connection now. The listener stays up.
    pub fn kill_connections(&self) {
        self.shared.kill.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Number of completed TLS handshakes.
    pub fn handshakes(&self) -> usize {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// Number of TLS handshakes that failed or timed out.
    pub fn handshake_failures(&self) -> usize {
        self.shared.handshake_failures.load(Ordering::SeqCst)
    }

    /// Number of well-formed DNS queries received (answered or not).
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }

    /// Connections currently open (handshake done, not yet closed).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Exact bytes of every frame received, without the 2-byte length, in
    /// arrival order (including frames that were not valid queries).
    pub fn received(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.received).clone()
    }

    /// Every frame received that hickory can parse.
    pub fn received_messages(&self) -> Vec<hickory_proto::op::Message> {
        self.received()
            .iter()
            .filter_map(|b| hickory_proto::op::Message::from_vec(b).ok())
            .collect()
    }

    /// One entry per completed handshake, in order.
    pub fn connections(&self) -> Vec<ConnInfo> {
        lock(&self.shared.connections).clone()
    }

    /// Forgets recorded frames and connections and zeroes the counters.
    pub fn clear_observations(&self) {
        lock(&self.shared.received).clear();
        lock(&self.shared.connections).clear();
        self.shared.handshakes.store(0, Ordering::SeqCst);
        self.shared.handshake_failures.store(0, Ordering::SeqCst);
        self.shared.queries.store(0, Ordering::SeqCst);
    }

    /// Waits until `cond(self)` holds; false on timeout (polls every 5 ms).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        cond: impl Fn(&UpstreamHandle) -> bool,
    ) -> bool {
        wait_until(timeout, || cond(self)).await
    }

    /// Waits until at least `n` queries have been received; false on timeout.
    pub async fn wait_queries(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.queries() >= n).await
    }

    /// Waits until at least `n` handshakes completed; false on timeout.
    pub async fn wait_handshakes(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.handshakes() >= n).await
    }

    /// Waits until exactly `n` connections are open; false on timeout.
    pub async fn wait_open_connections(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.open_connections() == n).await
    }
}

/// Polls `cond` every 5 ms until it holds; false on timeout.
pub(crate) async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The DoT upstream server. Dereferences to its [`UpstreamHandle`].
/// Dropping it stops the listener and resets all connections.
pub struct DotUpstream {
    handle: UpstreamHandle,
    acceptor: TlsAcceptor,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Deref for DotUpstream {
    type Target = UpstreamHandle;
    fn deref(&self) -> &UpstreamHandle {
        &self.handle
    }
}

impl std::fmt::Debug for DotUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handle.fmt(f)
    }
}

async fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let attempt = (|| {
            let sock = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            sock.set_reuseaddr(true)?;
            sock.bind(addr)?;
            sock.listen(128)
        })();
        match attempt {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl DotUpstream {
    /// Binds `opts.bind` and starts serving. Must run inside a tokio runtime.
    ///
    /// # Panics
    /// If the TLS config is invalid or the address cannot be bound.
    pub async fn start(opts: UpstreamOpts) -> DotUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&opts.versions)
            .expect("TLS versions supported by ring provider")
            .with_no_client_auth()
            .with_single_cert(opts.cert_chain, opts.key)
            .expect("upstream certificate and key");
        config.alpn_protocols = opts.alpn;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = bind_listener(opts.bind)
            .await
            .unwrap_or_else(|e| panic!("DotUpstream: cannot bind {}: {e}", opts.bind));
        let addr = listener.local_addr().expect("local_addr of bound listener");
        let (kill, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            addr,
            stall: AtomicBool::new(false),
            servfail: AtomicBool::new(false),
            close_after: AtomicUsize::new(0),
            reverse_batches: AtomicUsize::new(opts.reverse_batches.unwrap_or(0)),
            ede: Mutex::new(opts.add_ede),
            handshake_timeout: opts.handshake_timeout,
            handshakes: AtomicUsize::new(0),
            handshake_failures: AtomicUsize::new(0),
            queries: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
            kill,
        });
        let task = tokio::spawn(accept_loop(listener, acceptor.clone(), Arc::clone(&shared)));
        DotUpstream {
            handle: UpstreamHandle { shared },
            acceptor,
            task: Mutex::new(Some(task)),
        }
    }

    /// A cloneable handle for other tasks.
    pub fn handle(&self) -> UpstreamHandle {
        self.handle.clone()
    }

    /// Whether the listener is currently up.
    pub fn is_running(&self) -> bool {
        lock(&self.task).is_some()
    }

    /// Closes the listener (new connections are refused) and resets every
    /// open connection. Idempotent.
    pub async fn stop(&self) {
        let task = lock(&self.task).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.kill_connections();
    }

    /// Listens again on the same address after [`DotUpstream::stop`]
    /// (no-op if running). Counters and records are kept.
    ///
    /// # Panics
    /// If the address cannot be bound again within 3 s.
    pub async fn restart(&self) {
        if self.is_running() {
            return;
        }
        let addr = self.addr();
        let listener = bind_listener(addr)
            .await
            .unwrap_or_else(|e| panic!("DotUpstream: cannot re-bind {addr}: {e}"));
        let task = tokio::spawn(accept_loop(
            listener,
            self.acceptor.clone(),
            Arc::clone(&self.handle.shared),
        ));
        *lock(&self.task) = Some(task);
    }
}

impl Drop for DotUpstream {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        self.handle.kill_connections();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(serve_conn(Arc::clone(&shared), acceptor.clone(), tcp, peer));
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

struct OpenGuard<'a>(&'a AtomicUsize);

impl<'a> OpenGuard<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        OpenGuard(c)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn write_frame(tls: &mut TlsStream<TcpStream>, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "message > 65535"))?;
    let mut buf = Vec::with_capacity(msg.len() + 2);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(msg);
    tls.write_all(&buf).await?;
    tls.flush().await
}

/// Takes one complete length-prefixed frame off the front of `buf`.
fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    if buf.len() < 2 + len {
        return None;
    }
    let frame = buf.get(2..2 + len)?.to_vec();
    buf.drain(..2 + len);
    Some(frame)
}

async fn serve_conn(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let mut kill_rx = shared.kill.subscribe();
    let handshake = tokio::select! {
        r = tokio::time::timeout(shared.handshake_timeout, acceptor.accept(tcp)) => r,
        _ = kill_rx.changed() => return,
    };
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) | Err(_) => {
            shared.handshake_failures.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    {
        let (_, conn) = tls.get_ref();
        let info = ConnInfo {
            sni: conn.server_name().map(str::to_owned),
            version: conn
                .protocol_version()
                .unwrap_or(ProtocolVersion::Unknown(0)),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer,
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        };
        lock(&shared.connections).push(info);
    }
    shared.handshakes.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard::new(&shared.open);

    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut eof = false;
    let mut in_flight = 0usize;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut written = 0usize;

    loop {
        if eof && in_flight == 0 {
            // Client half-closed and nothing is pending: flush, then close.
            for m in std::mem::take(&mut batch).into_iter().rev() {
                if write_frame(&mut tls, &m).await.is_err() {
                    return;
                }
            }
            let _ = tls.shutdown().await;
            return;
        }
        tokio::select! {
            biased;
            _ = kill_rx.changed() => {
                // SO_LINGER 0, then drop: the peer sees a TCP RST.
                let _ = tls.get_ref().0.set_zero_linger();
                return;
            }
            Some(resp) = rx.recv() => {
                in_flight = in_flight.saturating_sub(1);
                let n = shared.reverse_batches.load(Ordering::SeqCst);
                let to_write = if n > 1 {
                    batch.push(resp);
                    if batch.len() >= n {
                        std::mem::take(&mut batch).into_iter().rev().collect()
                    } else {
                        Vec::new()
                    }
                } else {
                    vec![resp]
                };
                for m in to_write {
                    if write_frame(&mut tls, &m).await.is_err() {
                        return;
                    }
                    written += 1;
                    let limit = shared.close_after.load(Ordering::SeqCst);
                    if limit > 0 && written >= limit {
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            }
            r = tls.read(&mut chunk), if !eof => {
                let n = match r {
                    Ok(0) => {
                        eof = true;
                        continue;
                    }
                    Ok(n) => n,
                    Err(_) => return,
                };
                inbuf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                while let Some(frame) = take_frame(&mut inbuf) {
                    lock(&shared.received).push(frame.clone());
                    let Some(query) = parse_query(&frame) else {
                        // Garbage: drop this connection only.
                        return;
                    };
                    shared.queries.fetch_add(1, Ordering::SeqCst);
                    if shared.stall.load(Ordering::SeqCst) {
                        continue;
                    }
                    let ede = lock(&shared.ede).clone();
                    let (mut resp, delay) = respond(&query, ede.as_ref());
                    if shared.servfail.load(Ordering::SeqCst) && resp.len() >= 4 {
                        resp[3] = (resp[3] & 0xf0) | 2;
                    }
                    in_flight += 1;
                    if delay.is_zero() {
                        let _ = tx.send(resp);
                    } else {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(resp);
                        });
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Wire format (hand-rolled so that the question is echoed byte for byte and
// nothing on this path can panic).

/// What the server needs from a query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    id: u16,
    flags: u16,
    /// `None` for QDCOUNT != 1 (answered with FORMERR).
    question: Option<Question>,
    edns: Option<QueryEdns>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Question {
    /// Raw question bytes (name, type, class) to echo.
    raw: Vec<u8>,
    /// Labels as received.
    labels: Vec<Vec<u8>>,
    qtype: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueryEdns {
    dnssec_ok: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from(self.u16()?) << 16 | u32::from(self.u16()?))
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    /// An uncompressed name (as in a question at offset 12).
    fn plain_name(&mut self) -> Option<Vec<Vec<u8>>> {
        let mut labels = Vec::new();
        let mut total = 1usize;
        loop {
            let len = self.u8()?;
            if len == 0 {
                return Some(labels);
            }
            if len & 0xC0 != 0 {
                return None;
            }
            total += usize::from(len) + 1;
            if total > 255 {
                return None;
            }
            labels.push(self.bytes(usize::from(len))?.to_vec());
        }
    }
    /// Skips a possibly compressed name.
    fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 if len == 0 => return Some(()),
                0x00 => {
                    self.bytes(usize::from(len))?;
                }
                0xC0 => {
                    self.u8()?;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

fn parse_query(msg: &[u8]) -> Option<Query> {
    let mut r = Reader { buf: msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 != 0 {
        return None; // a response, not a query
    }
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let nscount = r.u16()?;
    let arcount = r.u16()?;
    if qdcount != 1 {
        return Some(Query {
            id,
            flags,
            question: None,
            edns: None,
        });
    }
    let start = r.pos;
    let labels = r.plain_name()?;
    let qtype = r.u16()?;
    let _qclass = r.u16()?;
    let raw = msg.get(start..r.pos)?.to_vec();
    let mut edns = None;
    let records = u32::from(ancount) + u32::from(nscount) + u32::from(arcount);
    for i in 0..records {
        r.skip_name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let ttl = r.u32()?;
        let rdlen = r.u16()?;
        r.bytes(usize::from(rdlen))?;
        if rtype == 41 && i >= u32::from(ancount) + u32::from(nscount) {
            edns = Some(QueryEdns {
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
    }
    Some(Query {
        id,
        flags,
        question: Some(Question { raw, labels, qtype }),
        edns,
    })
}

/// `"a.b.c."`, lower-cased; `"."` for the root.
fn canonical_from_labels(labels: &[Vec<u8>]) -> String {
    if labels.is_empty() {
        return ".".to_owned();
    }
    let mut s = String::new();
    for l in labels {
        s.push_str(&String::from_utf8_lossy(l).to_ascii_lowercase());
        s.push('.');
    }
    s
}

fn canonical(name: &str) -> String {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        ".".to_owned()
    } else {
        format!("{}.", trimmed.to_ascii_lowercase())
    }
}

fn name_hash(name: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, canonical(name).as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The A record the upstream returns for `name` (case-insensitive, trailing
/// dot optional): `10.h0.h1.h2` from SHA-256 of the canonical name.
pub fn expected_a(name: &str) -> Ipv4Addr {
    let h = name_hash(name);
    Ipv4Addr::new(10, h[0], h[1], h[2])
}

/// The AAAA record the upstream returns for `name`: `fd` + 15 bytes of the
/// same hash (a ULA address).
pub fn expected_aaaa(name: &str) -> Ipv6Addr {
    let h = name_hash(name);
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[1..].copy_from_slice(&h[..15]);
    Ipv6Addr::from(b)
}

/// The TXT strings answered for a `big-N` name: `min(N, BIG_TXT_MAX)` bytes
/// of `abc…zabc…` split into 255-byte strings (one TXT record).
pub fn expected_big_txt(n: usize) -> Vec<Vec<u8>> {
    let n = n.min(BIG_TXT_MAX);
    let bytes: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    bytes.chunks(255).map(<[u8]>::to_vec).collect()
}

/// Parses `prefix-N` from a first label.
fn label_number(label: &[u8], prefix: &str) -> Option<u64> {
    let s = std::str::from_utf8(label).ok()?.to_ascii_lowercase();
    s.strip_prefix(prefix)?.parse().ok()
}

const RCODE_FORMERR: u16 = 1;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// The deterministic answer to a raw query message and how long to hold it (shared with the DoH
/// upstream); `None` if the bytes are not a query.
pub fn answer_for(query: &[u8], ede: Option<&(u16, String)>) -> Option<(Vec<u8>, Duration)> {
    parse_query(query).map(|q| respond(&q, ede))
}

/// Builds the answer to `q` and says how long to hold it.
fn respond(q: &Query, ede: Option<&(u16, String)>) -> (Vec<u8>, Duration) {
    let opcode = (q.flags >> 11) & 0xF;
    let mut rcode = 0u16;
    let mut delay = Duration::ZERO;
    // (type, rdata) of each answer record; owner is always the qname.
    let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
    match &q.question {
        None => rcode = RCODE_FORMERR,
        Some(_) if opcode != 0 => rcode = RCODE_NOTIMP,
        Some(question) => {
            let name = canonical_from_labels(&question.labels);
            let first = question
                .labels
                .first()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if let Some(ms) = label_number(first, "delay-") {
                delay = Duration::from_millis(ms);
            }
            if first.eq_ignore_ascii_case(b"nx") {
                rcode = RCODE_NXDOMAIN;
            } else if first.eq_ignore_ascii_case(b"servfail") {
                rcode = RCODE_SERVFAIL;
            } else if let Some(n) = label_number(first, "big-") {
                let n = usize::try_from(n).unwrap_or(BIG_TXT_MAX);
                let mut rdata = Vec::new();
                for s in expected_big_txt(n) {
                    rdata.push(s.len() as u8);
                    rdata.extend_from_slice(&s);
                }
                answers.push((16, rdata));
            } else {
                // First label `v4only`: the name has an A record but no AAAA (NODATA), as an
                // IPv4-only site looks to a DNS64 resolver.
                let v4only = first.eq_ignore_ascii_case(b"v4only");
                match question.qtype {
                    1 => answers.push((1, expected_a(&name).octets().to_vec())),
                    28 if !v4only => answers.push((28, expected_aaaa(&name).octets().to_vec())),
                    _ => {}
                }
            }
        }
    }

    let mut out = Vec::with_capacity(512);
    push_u16(&mut out, q.id);
    // QR, copy opcode/RD/CD, set RA.
    let flags = 0x8000 | (q.flags & 0x7800) | (q.flags & 0x0100) | 0x0080 | (q.flags & 0x0010);
    push_u16(&mut out, flags | rcode);
    let with_opt = q.edns.is_some() || ede.is_some();
    push_u16(&mut out, u16::from(q.question.is_some()));
    push_u16(&mut out, answers.len() as u16);
    push_u16(&mut out, 0);
    push_u16(&mut out, u16::from(with_opt));
    if let Some(question) = &q.question {
        out.extend_from_slice(&question.raw);
    }
    for (rtype, rdata) in &answers {
        out.extend_from_slice(&[0xC0, 0x0C]); // pointer to the qname
        push_u16(&mut out, *rtype);
        push_u16(&mut out, 1); // IN
        out.extend_from_slice(&ANSWER_TTL.to_be_bytes());
        push_u16(&mut out, rdata.len() as u16);
        out.extend_from_slice(rdata);
    }
    if with_opt {
        let mut options = Vec::new();
        if let Some((code, text)) = ede {
            let text = text.as_bytes();
            push_u16(&mut options, 15);
            push_u16(&mut options, (2 + text.len()) as u16);
            push_u16(&mut options, *code);
            options.extend_from_slice(text);
        }
        out.push(0); // root
        push_u16(&mut out, 41);
        push_u16(&mut out, UPSTREAM_EDNS_UDP_SIZE);
        let do_bit = q.edns.is_some_and(|e| e.dnssec_ok);
        // ext-rcode 0, version 0, flags (DO copied)
        out.extend_from_slice(&[0, 0]);
        push_u16(&mut out, if do_bit { 0x8000 } else { 0 });
        push_u16(&mut out, options.len() as u16);
        out.extend_from_slice(&options);
    }
    (out, delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};

    fn query(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
        crate::client::build_query(name, rtype, edns.then_some(1232))
            .to_vec()
            .unwrap()
    }

    fn answer(bytes: &[u8]) -> Message {
        let q = parse_query(bytes).unwrap();
        Message::from_vec(&respond(&q, None).0).unwrap()
    }

    #[test]
    fn answers_a_and_echoes() {
        let bytes = query("WwW.Example.", RecordType::A, true);
        let resp_bytes = respond(&parse_query(&bytes).unwrap(), None).0;
        // ID and question echoed byte for byte (case preserved)
        assert_eq!(resp_bytes[..2], bytes[..2]);
        let qlen = "WwW.Example.".len() + 1 + 4;
        assert_eq!(resp_bytes[12..12 + qlen], bytes[12..12 + qlen]);
        let m = Message::from_vec(&resp_bytes).unwrap();
        assert!(m.recursion_available());
        assert!(m.recursion_desired());
        assert_eq!(m.answers().len(), 1);
        assert_eq!(
            m.answers()[0].data(),
            &RData::A(expected_a("www.example").into())
        );
        assert_eq!(m.extensions().as_ref().unwrap().max_payload(), 1232);
    }

    #[test]
    fn rcodes_and_nodata() {
        assert_eq!(
            answer(&query("nx.example.", RecordType::A, false)).response_code(),
            ResponseCode::NXDomain
        );
        assert_eq!(
            answer(&query("servfail.example.", RecordType::A, false)).response_code(),
            ResponseCode::ServFail
        );
        let m = answer(&query("x.example.", RecordType::MX, false));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        assert!(m.extensions().is_none());
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        for bad in [
            &b""[..],
            &b"\x00"[..],
            &[0u8; 11][..],
            &[0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0][..],
            &[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'a'][..],
            &[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1][..],
        ] {
            assert!(parse_query(bad).is_none(), "{bad:?}");
        }
        let mut buf = vec![0, 0];
        assert!(take_frame(&mut buf).is_some_and(|f| f.is_empty()));
    }
}
