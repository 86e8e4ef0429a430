//! One DNS-over-HTTPS session (RFC 8484): TCP connect, authenticated TLS with ALPN `h2`, then one HTTP/2
//! stream per query, many at once. POST `application/dns-message` by default, GET `?dns=` (base64url) as
//! an option. A fixed minimal header set: no User-Agent, no cookies, nothing that fingerprints the
//! router. DNS ID 0 on the wire; the engine matches answers by the request tag.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use lanveil_core::engine::{CloseReason, SessionId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Outgoing;
use super::tls::{Target, classify};
use crate::events::{UpstreamEvent, UpstreamSender};

const DNS_MESSAGE: &str = "application/dns-message";
const MAX_ANSWER: usize = 65_535;

struct AbortOnDrop(JoinHandle<Result<(), h2::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) async fn run(
    session: SessionId,
    target: Arc<Target>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    events: UpstreamSender,
) {
    let reason = match session_io(session, &target, &mut rx, &events).await {
        Ok(()) => CloseReason::Eof,
        Err(reason) => reason,
    };
    let _ = events.send(UpstreamEvent::Closed { session, reason }).await;
}

fn h2_reason(e: h2::Error) -> CloseReason {
    match e.into_io() {
        Some(io) => classify(&io),
        None => CloseReason::Protocol,
    }
}

async fn session_io(
    session: SessionId,
    target: &Target,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    events: &UpstreamSender,
) -> Result<(), CloseReason> {
    let (tls, relaxed) = target.handshake(None).await.map_err(|e| classify(&e))?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        log::debug!("upstream {}: no HTTP/2 offered", target.upstream.name);
        return Err(CloseReason::Protocol);
    }
    let (send_request, connection) = h2::client::Builder::new()
        .enable_push(false)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(h2_reason)?;
    let mut conn = AbortOnDrop(tokio::spawn(connection));
    if events
        .send(UpstreamEvent::Connected { session, relaxed })
        .await
        .is_err()
    {
        return Ok(());
    }
    let authority = if target.upstream.url.port == lanveil_config::HTTPS_PORT {
        target.upstream.url.auth_name.clone()
    } else {
        format!(
            "{}:{}",
            target.upstream.url.auth_name, target.upstream.url.port
        )
    };
    let path = target.upstream.url.path.clone();
    let get = target.upstream.http_get;
    loop {
        tokio::select! {
            ended = &mut conn.0 => {
                return match ended {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(h2_reason(e)),
                    Err(_) => Err(CloseReason::Reset),
                };
            }
            msg = rx.recv() => {
                let Some(Outgoing::Request { tag, message }) = msg else {
                    return Ok(());
                };
                let request = build_request(&authority, &path, get, &message).map_err(|_| CloseReason::Protocol)?;
                // Waiting for stream capacity here is fine: the connection runs in its own task.
                let mut ready = send_request.clone().ready().await.map_err(h2_reason)?;
                let (response, mut stream) = ready.send_request(request, get).map_err(h2_reason)?;
                if !get {
                    stream.send_data(Bytes::from(message), true).map_err(h2_reason)?;
                }
                let events = events.clone();
                tokio::spawn(async move {
                    let event = match read_answer(response).await {
                        Some(bytes) => UpstreamEvent::Response { session, tag, bytes },
                        None => UpstreamEvent::RequestFailed { session, tag },
                    };
                    let _ = events.send(event).await;
                });
            }
        }
    }
}

fn build_request(
    authority: &str,
    path: &str,
    get: bool,
    message: &[u8],
) -> Result<http::Request<()>, http::Error> {
    let builder = if get {
        let dns = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message);
        http::Request::get(format!("https://{authority}{path}?dns={dns}"))
    } else {
        http::Request::post(format!("https://{authority}{path}"))
            .header(http::header::CONTENT_TYPE, DNS_MESSAGE)
            .header(http::header::CONTENT_LENGTH, message.len())
    };
    builder.header(http::header::ACCEPT, DNS_MESSAGE).body(())
}

/// The DNS answer of one request: `None` unless status 200 with `application/dns-message`.
async fn read_answer(response: h2::client::ResponseFuture) -> Option<Vec<u8>> {
    let response = response.await.ok()?;
    if response.status() != http::StatusCode::OK {
        return None;
    }
    let ct = response
        .headers()
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    if !ct.eq_ignore_ascii_case(DNS_MESSAGE) {
        return None;
    }
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if out.len() + chunk.len() > MAX_ANSWER {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}
