//! One DNS-over-TLS session: TCP connect, authenticated TLS handshake, then bytes both ways until
//! either side closes. The task owns the socket; the driver owns the session's state.

use std::sync::Arc;

use lanveil_core::engine::{CloseReason, SessionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Outgoing;
use super::tls::{Target, classify};
use crate::events::{UpstreamEvent, UpstreamSender};

const READ_BUF: usize = 16 * 1024;
/// Queued queries are gathered into one write of up to this many octets (one full TLS record).
const WRITE_BATCH: usize = 16 * 1024;

pub(crate) async fn run(
    session: SessionId,
    target: Arc<Target>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    events: UpstreamSender,
) {
    let reason = match session_io(session, &target, &mut rx, &events).await {
        Ok(()) => CloseReason::Eof,
        Err(e) => classify(&e),
    };
    let _ = events.send(UpstreamEvent::Closed { session, reason }).await;
}

async fn session_io(
    session: SessionId,
    target: &Target,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    events: &UpstreamSender,
) -> std::io::Result<()> {
    let (mut tls, relaxed) = target.handshake(None).await?;
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
    let mut buf = vec![0u8; READ_BUF];
    let mut out = Vec::with_capacity(WRITE_BATCH);
    loop {
        tokio::select! {
            n = tls.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                if events.send(UpstreamEvent::Data { session, bytes: buf[..n].to_vec() }).await.is_err() {
                    return Ok(());
                }
            }
            msg = rx.recv() => {
                let Some(first) = msg else { return Ok(()) };
                // Whatever else is queued (the queries of one driver turn) goes into the same write:
                // one TLS record and one syscall instead of one per query (each `write_all` on the
                // TLS stream seals a record and writes it to the socket at once).
                out.clear();
                let mut next = Some(first);
                while let Some(m) = next {
                    if let Outgoing::Bytes(b) = m {
                        out.extend_from_slice(&b);
                    }
                    // A stream session never gets requests; the engine only sends them to message
                    // sessions.
                    next = if out.len() < WRITE_BATCH { rx.try_recv().ok() } else { None };
                }
                if !out.is_empty() {
                    tls.write_all(&out).await?;
                    tls.flush().await?;
                }
            }
        }
    }
}
