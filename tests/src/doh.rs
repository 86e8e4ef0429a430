//! An in-process DNS-over-HTTPS upstream (RFC 8484, HTTP/2 over TLS 1.3) answering the same
//! deterministic data as [`crate::upstream`], recording every request it receives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::pki::Leaf;
use crate::upstream::answer_for;

/// What one HTTP request looked like.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// `POST` or `GET`.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `:authority`.
    pub authority: Option<String>,
    /// All header names (lower case).
    pub headers: Vec<String>,
    /// The DNS message (from the body or `?dns=`).
    pub message: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<SeenRequest>>,
    connections: AtomicUsize,
    stall: AtomicBool,
    status: AtomicU16,
    extra_headers: Mutex<Vec<(String, String)>>,
    /// The error codes of the streams the client reset while they were held (stall mode).
    resets: Mutex<Vec<u32>>,
}

/// The server; stops when dropped.
pub struct DohUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for DohUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DohUpstream {
    /// Starts on `bind` (e.g. `127.0.0.1:0`) presenting `leaf`, offering ALPN `h2`.
    pub async fn start(bind: SocketAddr, leaf: &Leaf) -> DohUpstream {
        let acceptor = TlsAcceptor::from(leaf.tls13_server_config(&[b"h2"]));
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            status: AtomicU16::new(200),
            ..Shared::default()
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    s.connections.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        tokio::spawn(serve(s.clone(), req, respond));
                    }
                });
            }
        });
        DohUpstream { addr, shared, task }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// HTTP/2 connections accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The HTTP/2 error codes (RST_STREAM) of requests the client reset while they were held
    /// unanswered (stall mode), in order.
    pub fn resets(&self) -> Vec<u32> {
        self.shared.resets.lock().unwrap().clone()
    }

    /// Stop answering (requests stay open) or answer again.
    pub fn set_stall(&self, on: bool) {
        self.shared.stall.store(on, Ordering::SeqCst);
    }

    /// Answer every request with this HTTP status (200 = normal).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Add these header fields (name, value) to every 200 answer from now on, e.g. `age` as an
    /// HTTP cache in front of the server would; none by default.
    pub fn set_extra_headers(&self, headers: &[(&str, &str)]) {
        *self.shared.extra_headers.lock().unwrap() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    }
}

async fn serve(
    s: Arc<Shared>,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let (parts, mut body) = req.into_parts();
    let mut message = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    if parts.method == http::Method::GET {
        let q = parts.uri.query().unwrap_or("");
        if let Some(b64) = q.split('&').find_map(|kv| kv.strip_prefix("dns=")) {
            message = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .unwrap_or_default();
        }
    }
    s.requests.lock().unwrap().push(SeenRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authority: parts.uri.authority().map(|a| a.to_string()),
        headers: parts
            .headers
            .keys()
            .map(|k| k.as_str().to_string())
            .collect(),
        message: message.clone(),
    });
    if s.stall.load(Ordering::SeqCst) {
        // Held open; a client that gives up on it may reset the stream (recorded).
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            reset = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                if let Ok(reason) = reset {
                    s.resets.lock().unwrap().push(reason.into());
                }
            }
        }
        return;
    }
    let status = s.status.load(Ordering::SeqCst);
    let Some((answer, delay)) = answer_for(&message, None).filter(|_| status == 200) else {
        let resp = http::Response::builder()
            .status(if status == 200 { 400 } else { status })
            .body(())
            .unwrap();
        let _ = respond.send_response(resp, true);
        return;
    };
    tokio::time::sleep(delay).await;
    let mut resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/dns-message")
        .header("content-length", answer.len());
    for (name, value) in s.extra_headers.lock().unwrap().iter() {
        resp = resp.header(name.as_str(), value.as_str());
    }
    let resp = resp.body(()).unwrap();
    if let Ok(mut stream) = respond.send_response(resp, false) {
        let _ = stream.send_data(Bytes::from(answer), true);
    }
}
