//! One DNS-over-TLS session: TCP connect, authenticated TLS handshake, then bytes both ways until
//! either side closes. The task owns the socket; the driver owns the session's state.

use std::sync::Arc;

use lanveil_core::engine::{CloseReason, SessionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::Outgoing;
use super::tls::{Target, classify, connect_any};
use crate::driver::Input;

const READ_BUF: usize = 16 * 1024;

pub(crate) async fn run(
    session: SessionId,
    target: Arc<Target>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::Sender<Input>,
) {
    let reason = match session_io(session, &target, &mut rx, &events).await {
        Ok(()) => CloseReason::Eof,
        Err(e) => classify(&e),
    };
    let _ = events.send(Input::UpstreamClosed { session, reason }).await;
}

async fn session_io(
    session: SessionId,
    target: &Target,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    events: &mpsc::Sender<Input>,
) -> std::io::Result<()> {
    let tcp = connect_any(&target.addrs).await?;
    let connector = TlsConnector::from(target.tls.clone());
    let mut tls = connector.connect(target.server_name.clone(), tcp).await?;
    let version = tls.get_ref().1.protocol_version();
    log::debug!(
        "upstream {}: session {} up ({:?})",
        target.upstream.name,
        session.0,
        version
    );
    let relaxed = target.time.state() == lanveil_core::clock::ClockState::Unsynchronized;
    if events
        .send(Input::UpstreamConnected { session, relaxed })
        .await
        .is_err()
    {
        return Ok(());
    }
    let mut buf = vec![0u8; READ_BUF];
    loop {
        tokio::select! {
            n = tls.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                if events.send(Input::UpstreamData { session, bytes: buf[..n].to_vec() }).await.is_err() {
                    return Ok(());
                }
            }
            msg = rx.recv() => {
                let Some(first) = msg else { return Ok(()) };
                write(&mut tls, first).await?;
                // Batch whatever else is queued into the same flush (fewer TLS records, fewer syscalls).
                while let Ok(more) = rx.try_recv() {
                    write(&mut tls, more).await?;
                }
                tls.flush().await?;
            }
        }
    }
}

async fn write<W: AsyncWriteExt + Unpin>(w: &mut W, out: Outgoing) -> std::io::Result<()> {
    match out {
        Outgoing::Bytes(b) => w.write_all(&b).await,
        // A stream session never gets requests; the engine only sends them to message sessions.
        Outgoing::Request { .. } => Ok(()),
    }
}
