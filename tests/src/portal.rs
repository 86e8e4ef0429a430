//! A hotel WAN for travel-router tests: a captive-portal API (RFC 8908, HTTPS, in-process) that can
//! flip from captive to free, and the hotel's plaintext DNS server, which records every name it is
//! asked (so a test can prove that nothing but the portal's names ever went out in the clear).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, rdata::A};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::pki::Leaf;

/// The captive-portal API server.
pub struct FakePortal {
    addr: SocketAddr,
    captive: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    accept_headers: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for FakePortal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePortal {
    /// Serves `GET /api` over TLS with `leaf` on a free loopback port, captive at first. The
    /// document names `https://login.portal.test/` as the login page.
    pub async fn start(leaf: &Leaf) -> FakePortal {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.cert_chain.clone(), leaf.key())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let captive = Arc::new(AtomicBool::new(true));
        let requests = Arc::new(AtomicUsize::new(0));
        let accept_headers = Arc::new(Mutex::new(Vec::new()));
        let (c, r, h) = (captive.clone(), requests.clone(), accept_headers.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, c, r, h) = (acceptor.clone(), c.clone(), r.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&req).to_string();
                    r.fetch_add(1, Ordering::SeqCst);
                    if let Some(a) = text
                        .lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("accept:"))
                    {
                        h.lock().unwrap().push(a[7..].trim().to_string());
                    }
                    let body = if c.load(Ordering::SeqCst) {
                        r#"{"captive": true, "user-portal-url": "https://login.portal.test/", "seconds-remaining": 600, "can-extend-session": false}"#
                    } else {
                        r#"{"captive": false}"#
                    };
                    let resp = if text.starts_with("GET /api ") {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/captive+json\r\nCache-Control: private\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
                    };
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        FakePortal {
            addr,
            captive,
            requests,
            accept_headers,
            task,
        }
    }

    /// The API URI (`https://portal.test:PORT/api`).
    pub fn uri(&self) -> String {
        format!("https://portal.test:{}/api", self.addr.port())
    }

    /// Flips the API's `captive` member (the user logged in: `false`).
    pub fn set_captive(&self, captive: bool) {
        self.captive.store(captive, Ordering::SeqCst);
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The `Accept` header of every request.
    pub fn accept_headers(&self) -> Vec<String> {
        self.accept_headers.lock().unwrap().clone()
    }
}

/// The hotel's plaintext DNS server: `*.portal.test` and `portal.test` → 127.0.0.1, anything else →
/// 192.0.2.66 (a typical captive hijack). Records every question name, lower-case, without the
/// final dot.
pub struct WanDns {
    addr: SocketAddr,
    names: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for WanDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WanDns {
    /// Listens on a free loopback UDP port.
    pub async fn start() -> WanDns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let n = names.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let Some(question) = q.queries().first().cloned() else {
                    continue;
                };
                let name = question.name().to_ascii().to_ascii_lowercase();
                let name = name.trim_end_matches('.').to_string();
                n.lock().unwrap().push(name.clone());
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(q.recursion_desired())
                    .set_recursion_available(true)
                    .set_response_code(ResponseCode::NoError)
                    .add_query(question.clone());
                if let Some(edns) = q.extensions().clone() {
                    r.set_edns(edns);
                }
                if question.query_type() == hickory_proto::rr::RecordType::A {
                    let ip = if name == "portal.test" || name.ends_with(".portal.test") {
                        Ipv4Addr::LOCALHOST
                    } else {
                        Ipv4Addr::new(192, 0, 2, 66)
                    };
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        60,
                        RData::A(A(ip)),
                    ));
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        WanDns { addr, names, task }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every name asked so far, in order.
    pub fn names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}
