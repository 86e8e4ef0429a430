//! A plaintext DNS "decoy": listens on UDP and TCP at one address (tests use
//! `127.0.0.2:53`), never answers, and counts every datagram and every
//! connection it gets. A test points something that must never speak
//! clear-text DNS at it (for example as a bogus fallback) and asserts
//! `hits() == 0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// The decoy listener. Dropping it closes both sockets.
#[derive(Debug)]
pub struct Decoy {
    addr: SocketAddr,
    udp_hits: Arc<AtomicUsize>,
    tcp_hits: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Decoy {
    /// Binds UDP and TCP on `addr` (port 0 picks one port free for both).
    ///
    /// # Panics
    /// If either socket cannot be bound (e.g. port 53 without root, or
    /// already in use), with the reason.
    pub async fn start(addr: SocketAddr) -> Decoy {
        let (udp, tcp) = if addr.port() == 0 {
            bind_any_port(addr).await
        } else {
            let udp = UdpSocket::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("Decoy: cannot bind UDP {addr}: {e}"));
            let tcp = TcpListener::bind(addr)
                .await
                .unwrap_or_else(|e| panic!("Decoy: cannot bind TCP {addr}: {e}"));
            (udp, tcp)
        };
        let addr = tcp.local_addr().expect("local_addr of bound listener");
        let udp_hits = Arc::new(AtomicUsize::new(0));
        let tcp_hits = Arc::new(AtomicUsize::new(0));
        let u = Arc::clone(&udp_hits);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                // Errors (e.g. ICMP-induced) are not hits; keep listening.
                if udp.recv_from(&mut buf).await.is_ok() {
                    u.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let t = Arc::clone(&tcp_hits);
        let tcp_task = tokio::spawn(async move {
            loop {
                if let Ok((mut s, _)) = tcp.accept().await {
                    t.fetch_add(1, Ordering::SeqCst);
                    // Swallow whatever is sent; close when the client does
                    // (or after a minute).
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), async {
                            let mut buf = [0u8; 4096];
                            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                        })
                        .await;
                    });
                }
            }
        });
        Decoy {
            addr,
            udp_hits,
            tcp_hits,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// The address listened on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams plus connections received so far.
    pub fn hits(&self) -> usize {
        self.udp_hits() + self.tcp_hits()
    }

    /// UDP datagrams received so far.
    pub fn udp_hits(&self) -> usize {
        self.udp_hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn tcp_hits(&self) -> usize {
        self.tcp_hits.load(Ordering::SeqCst)
    }
}

async fn bind_any_port(addr: SocketAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let Ok(tcp) = TcpListener::bind(addr).await else {
            continue;
        };
        let Ok(bound) = tcp.local_addr() else {
            continue;
        };
        if let Ok(udp) = UdpSocket::bind(bound).await {
            return (udp, tcp);
        }
    }
    panic!("Decoy: no port free for both UDP and TCP on {}", addr.ip());
}

impl Drop for Decoy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
