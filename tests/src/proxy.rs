//! A TCP relay in front of an upstream that can hold back, on the first connection it relays, what the
//! server sends after the client's second TLS flight. With TLS 1.2 that is the server's
//! ChangeCipherSpec and Finished: the client has checked the certificate (its verifier has decided)
//! but its handshake completes only `hold` later. Later connections are relayed as they are.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The relay; stops when dropped (relays already running end with their connections).
pub struct HoldProxy {
    addr: SocketAddr,
    first_ended: Arc<AtomicBool>,
    /// TLS records the first connection's client has sent.
    first_records: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Whether the client of the first connection has begun its second TLS flight: with TLS 1.2, its
/// certificate check is done.
#[derive(Clone)]
pub struct SecondFlight(Arc<AtomicUsize>);

impl SecondFlight {
    /// The client's first flight is one record (its hello); a second one begins the next flight.
    pub fn begun(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 2
    }
}

impl HoldProxy {
    /// Listens on loopback and relays every connection to `target`; the first one's server data after
    /// the client's second TLS record is held for `hold` (once).
    pub async fn start(target: SocketAddr, hold: Duration) -> HoldProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let first_ended = Arc::new(AtomicBool::new(false));
        let first_records = Arc::new(AtomicUsize::new(0));
        let (ended, records) = (first_ended.clone(), first_records.clone());
        let task = tokio::spawn(async move {
            let mut first = true;
            while let Ok((client, _)) = listener.accept().await {
                let first = std::mem::take(&mut first);
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (ended, records) = (ended.clone(), records.clone());
                tokio::spawn(async move {
                    if first {
                        relay(client, server, SecondFlight(records), Some(hold)).await;
                        ended.store(true, Ordering::SeqCst);
                    } else {
                        relay(client, server, SecondFlight(Arc::default()), None).await;
                    }
                });
            }
        });
        HoldProxy {
            addr,
            first_ended,
            first_records,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tells when the first connection's client has begun its second TLS flight.
    pub fn second_flight(&self) -> SecondFlight {
        SecondFlight(self.first_records.clone())
    }

    /// The first connection has ended (both sides closed their halves, or one reset it).
    pub fn first_ended(&self) -> bool {
        self.first_ended.load(Ordering::SeqCst)
    }

    /// Waits until the first connection has ended; false on timeout.
    pub async fn wait_first_ended(&self, timeout: Duration) -> bool {
        crate::upstream::wait_until(timeout, || self.first_ended()).await
    }
}

impl Drop for HoldProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection; `flight` counts the TLS records the client sends (by their 5-octet headers).
async fn relay(client: TcpStream, server: TcpStream, flight: SecondFlight, hold: Option<Duration>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(client_to_server(cr, sw, flight.0.clone()));
    server_to_client(sr, cw, flight, hold).await;
    let _ = up.await;
}

async fn client_to_server(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    records: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // Octets of the stream still to skip before the next record header, and a header split by reads.
    let (mut skip, mut header) = (0usize, Vec::with_capacity(5));
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut at = 0;
        while at < n {
            if skip > 0 {
                let k = skip.min(n - at);
                (skip, at) = (skip - k, at + k);
                continue;
            }
            header.push(buf[at]);
            at += 1;
            if header.len() == 5 {
                skip = usize::from(u16::from_be_bytes([header[3], header[4]]));
                header.clear();
                records.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Counted before it is forwarded: the server's reply to it is held.
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn server_to_client(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    flight: SecondFlight,
    mut hold: Option<Duration>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Anything the server sends once the client began its second flight answers that flight.
        if flight.begun()
            && let Some(d) = hold.take()
        {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
