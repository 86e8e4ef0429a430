//! One DNS-over-TLS session: TCP connect, authenticated TLS handshake, then bytes both ways until
//! either side closes. The task owns the socket; the driver owns the session's state.
//!
//! After the handshake the task drives rustls itself instead of through `tokio-rustls`' stream, for
//! the CPU per query at saturation (issue 17): one `recv` takes everything the socket holds (up to
//! [`READ_BUF`], not rustls' 4 KiB per read), whole records go to rustls one at a time (its buffer
//! is never compacted under a backlog of records), and the plaintext of every record of one read
//! goes to the driver as one `Vec` copied straight out of rustls (no intermediate buffer).

use std::io;

use lanveil_core::engine::SessionId;
use rustls::ClientConnection;
use socket2::SockRef;
use std::io::{BufRead, Read as _, Write};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::Outgoing;
use super::tls::Target;
use crate::events::{UpstreamEvent, UpstreamSender};

/// Bytes taken from the socket per `recv`: many answers' records at once under load. Holds a
/// partial record of the largest size besides.
const READ_BUF: usize = 32 * 1024;
/// Queued queries are gathered into one write of up to this many octets (one full TLS record).
const WRITE_BATCH: usize = 16 * 1024;
/// A TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest record rustls accepts (`OutboundOpaqueMessage::MAX_WIRE_SIZE`: 16 KiB of payload
/// plus 2 KiB of expansion and the header); a header announcing more goes to rustls at once, which
/// rejects it.
const MAX_RECORD: usize = 16 * 1024 + 2048 + RECORD_HEADER;
// A partial record held for the next read leaves room to read.
const _: () = assert!(READ_BUF > MAX_RECORD);

pub(super) async fn session_io(
    session: SessionId,
    target: &Target,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    events: &UpstreamSender,
) -> io::Result<()> {
    let (tls, relaxed) = target.handshake(None).await?;
    let version = tls.get_ref().1.protocol_version();
    log::debug!(
        "upstream {}: session {} up ({:?})",
        target.upstream.name,
        session.0,
        version
    );
    if events
        .send(UpstreamEvent::Connected { session, relaxed })
        .await
        .is_err()
    {
        return Ok(());
    }
    let (tcp, mut conn) = tls.into_inner();
    let mut input = Input {
        buf: vec![0u8; READ_BUF],
        held: 0,
    };
    // Anything that came with the handshake's last flight, and anything rustls still has to send.
    let mut early = Vec::new();
    plaintext(&mut conn, &mut early);
    if !early.is_empty() && events.send(data(session, early)).await.is_err() {
        return Ok(());
    }
    let mut blocked = !flush(&mut conn, &tcp)?;
    loop {
        tokio::select! {
            r = tcp.readable() => {
                r?;
                let mut bytes = Vec::new();
                let read = input.read(&tcp, &mut conn, &mut bytes);
                // rustls may have something to say (an alert, a key update): written even when
                // the read failed.
                let flushed = flush(&mut conn, &tcp);
                let closed = match read {
                    Ok(Read::Nothing) => {
                        blocked = !flushed?;
                        continue;
                    }
                    Ok(Read::Records) => false,
                    Ok(Read::Closed) => true,
                    Err(e) => return Err(e),
                };
                blocked = !flushed?;
                if !bytes.is_empty() && events.send(data(session, bytes)).await.is_err() {
                    return Ok(());
                }
                if closed {
                    return Ok(());
                }
            }
            r = tcp.writable(), if blocked => {
                r?;
                blocked = !flush(&mut conn, &tcp)?;
            }
            msg = rx.recv(), if !blocked => {
                let Some(first) = msg else { return Ok(()) };
                // Whatever else is queued goes into the same write: one TLS record and one
                // syscall instead of one per message. (A stream session never gets requests; the
                // engine only sends them to message sessions.)
                let mut out = match first {
                    Outgoing::Bytes(b) => b,
                    Outgoing::Request { .. } | Outgoing::Cancel { .. } => Vec::new(),
                };
                while out.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(Outgoing::Bytes(b)) => out.extend_from_slice(&b),
                        Ok(Outgoing::Request { .. } | Outgoing::Cancel { .. }) => {}
                        Err(_) => break,
                    }
                }
                if !out.is_empty() {
                    // Sealed at once; rustls' outgoing buffer (64 KiB) is empty here, as nothing
                    // is taken from the queue while the socket holds back a previous write.
                    conn.writer().write_all(&out)?;
                    blocked = !flush(&mut conn, &tcp)?;
                }
            }
        }
    }
}

fn data(session: SessionId, bytes: Vec<u8>) -> UpstreamEvent {
    UpstreamEvent::Data { session, bytes }
}

/// The socket as rustls' `Read`/`Write`, without waiting (`WouldBlock` clears tokio's readiness).
struct Socket<'a>(&'a TcpStream);

impl io::Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes what rustls has sealed while the socket takes it; `false` when the socket is full.
fn flush(conn: &mut ClientConnection, tcp: &TcpStream) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut Socket(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Appends everything rustls has decrypted to `bytes`.
fn plaintext(conn: &mut ClientConnection, bytes: &mut Vec<u8>) {
    let mut reader = conn.reader();
    loop {
        let n = match reader.fill_buf() {
            Ok(chunk) if !chunk.is_empty() => {
                bytes.extend_from_slice(chunk);
                chunk.len()
            }
            // Nothing buffered (`WouldBlock`), the peer's close_notify, or its TCP EOF: the
            // caller sees the close on the socket.
            _ => return,
        };
        reader.consume(n);
    }
}

/// What one read did.
enum Read {
    /// Spurious readiness: nothing came.
    Nothing,
    /// Records went to rustls.
    Records,
    /// The server closed the TCP connection or the TLS session (close_notify).
    Closed,
}

/// The socket's incoming bytes not yet given to rustls: at most one partial record, at the front.
struct Input {
    buf: Vec<u8>,
    held: usize,
}

impl Input {
    /// One `recv` of whatever the socket holds; every whole record in it goes to rustls, and the
    /// plaintext of each to `bytes` (at once: rustls holds at most 16 KiB of it).
    fn read(
        &mut self,
        tcp: &TcpStream,
        conn: &mut ClientConnection,
        bytes: &mut Vec<u8>,
    ) -> io::Result<Read> {
        let n = match recv(tcp, &mut self.buf[self.held..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Nothing),
            Err(e) => return Err(e),
        };
        if n == 0 {
            // TCP EOF (a partial record left is a truncation: the session is over either way).
            let _ = conn.read_tls(&mut io::empty());
            return Ok(Read::Closed);
        }
        let end = self.held + n;
        // The plaintext is shorter than the records.
        bytes.reserve_exact(end);
        let mut at = 0;
        while let Some(len) = record_len(&self.buf[at..end]) {
            let mut record = &self.buf[at..at + len];
            at += len;
            // One record takes one `read_tls` (up to 4 KiB; a larger one a few, each processed as
            // `tokio-rustls` would).
            while !record.is_empty() {
                if conn.read_tls(&mut record)? == 0 {
                    // rustls takes nothing more once the peer's close_notify was processed (not
                    // reached: that returns below); never loop on it.
                    return Ok(Read::Closed);
                }
                let state = conn.process_new_packets().map_err(invalid)?;
                if state.plaintext_bytes_to_read() > 0 {
                    plaintext(conn, bytes);
                }
                if state.peer_has_closed() {
                    return Ok(Read::Closed);
                }
            }
        }
        // A partial record moves to the front for the next read (at most one record's bytes).
        self.buf.copy_within(at..end, 0);
        self.held = end - at;
        Ok(Read::Records)
    }
}

/// A non-blocking `recv`. Like tokio's own `poll_read`, a short read counts as having drained the
/// socket (edge-triggered epoll reports the next arrival), so the next wait for readiness does not
/// begin with a `recv` that only says `EAGAIN`.
fn recv(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    let r = tcp.try_io(Interest::READABLE, || {
        got = (&*SockRef::from(tcp)).read(buf)?;
        if got > 0 && got < buf.len() {
            // Clears tokio's readiness (only the readiness this read saw).
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}

/// The length of the whole record at the start of `bytes`, if all of it is there. A header
/// announcing more than a record can hold counts as whole (all of `bytes`), for rustls to reject.
fn record_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..RECORD_HEADER)?;
    let len = RECORD_HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_RECORD {
        return Some(bytes.len());
    }
    (len <= bytes.len()).then_some(len)
}

/// A TLS failure as the I/O error `tokio-rustls` gave for it (what [`classify`] reads).
fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
