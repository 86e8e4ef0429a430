//! One DNS-over-HTTPS session (RFC 8484): TCP connect, authenticated TLS with ALPN `h2`, then one HTTP/2
//! stream per query, many at once. POST `application/dns-message` by default, GET `?dns=` (base64url) as
//! an option. A fixed minimal header set: no User-Agent, no cookies, nothing that fingerprints the
//! router. DNS ID 0 on the wire; the engine matches answers by the request tag. A request the engine
//! stops waiting for (answered elsewhere, given up) is cancelled: its stream is reset with CANCEL.

use base64::Engine as _;
use bytes::Bytes;
use lanveil_core::engine::{CloseReason, SessionId};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::tls::{Target, classify};
use super::{Cancels, Outgoing};
use crate::events::{UpstreamEvent, UpstreamSender};

const DNS_MESSAGE: &str = "application/dns-message";
const MAX_ANSWER: usize = 65_535;
/// SETTINGS_MAX_HEADER_LIST_SIZE: a DoH response needs a few hundred octets of headers; h2's default
/// (16 MiB) would let a server make each response hold megabytes of decoded headers.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// RFC 9111 §1.2.2: an `Age` too large to represent counts as 2^31 seconds ("infinity").
const AGE_MAX: u32 = 1 << 31;

struct AbortOnDrop(JoinHandle<Result<(), h2::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn h2_reason(e: h2::Error) -> CloseReason {
    match e.into_io() {
        Some(io) => classify(&io),
        None => CloseReason::Protocol,
    }
}

pub(super) async fn session_io(
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
    let (send_request, connection) = client_builder()
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
    // The requests in flight (ended with the session), and how to cancel each.
    let mut requests: JoinSet<(u16, u64)> = JoinSet::new();
    let mut cancels = Cancels::default();
    loop {
        tokio::select! {
            ended = &mut conn.0 => {
                return match ended {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(h2_reason(e)),
                    Err(_) => Err(CloseReason::Reset),
                };
            }
            Some(done) = requests.join_next(), if !requests.is_empty() => {
                if let Ok((tag, n)) = done {
                    cancels.finished(tag, n);
                }
            }
            msg = rx.recv() => {
                let (tag, message) = match msg {
                    Some(Outgoing::Request { tag, message }) => (tag, message),
                    Some(Outgoing::Cancel { tag }) => {
                        // Dropping the response ends the stream with RST_STREAM (CANCEL).
                        cancels.cancel(tag);
                        continue;
                    }
                    Some(Outgoing::Bytes(_)) | None => return Ok(()),
                };
                let request = build_request(&authority, &path, get, &message).map_err(|_| CloseReason::Protocol)?;
                // Waiting for stream capacity here is fine: the connection runs in its own task.
                let mut ready = send_request.clone().ready().await.map_err(h2_reason)?;
                let (response, mut stream) = ready.send_request(request, get).map_err(h2_reason)?;
                if !get {
                    stream.send_data(Bytes::from(message), true).map_err(h2_reason)?;
                }
                let events = events.clone();
                let (n, cancelled) = cancels.register(tag);
                requests.spawn(async move {
                    tokio::select! {
                        answer = read_answer(response) => {
                            let event = match answer {
                                Some(bytes) => UpstreamEvent::Response { session, tag, bytes },
                                None => UpstreamEvent::RequestFailed { session, tag },
                            };
                            let _ = events.send(event).await;
                        }
                        Ok(()) = cancelled => {}
                    }
                    (tag, n)
                });
            }
        }
    }
}

/// The HTTP/2 client settings: no server push, and a bound on the headers of a response.
///
/// A response whose decoded header list exceeds [`MAX_HEADER_LIST`] has its stream refused (that
/// one request fails); one past h2's abuse limit (4×) or spread over more CONTINUATION frames than
/// that needs ends the connection with ENHANCE_YOUR_CALM (the session closes, the engine tries
/// elsewhere). h2's other limits already bound what a server can make us hold and stay at their
/// defaults: flow-control windows of 65,535 octets (stream and connection, released only as
/// [`read_answer`] consumes a body it caps at [`MAX_ANSWER`]), the 4,096-octet HPACK table, at
/// most 50 locally reset streams remembered for 1 s, 1,024 protocol-error resets before the
/// connection goes; the send buffer only ever holds our own queries.
fn client_builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .enable_push(false)
        .max_header_list_size(MAX_HEADER_LIST);
    builder
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

/// The DNS answer of one request: `None` unless status 200 with `application/dns-message`. The TTLs
/// are lowered by the response's `Age` ([`age`]).
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
    let age = age(response.headers());
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
    // RFC 8484 §5.1: "DoH clients MUST account for the Age response header field's value [RFC7234]
    // when calculating the DNS TTL of a response. For example, if an RRset is received with a DNS
    // TTL of 600, but the Age header field indicates that the response has been cached for 250
    // seconds, the remaining lifetime of the RRset is 350 seconds. This requirement applies to both
    // DoH client HTTP caches and DoH client DNS caches."
    // An answer that is not a usable DNS message stays as it is: the engine refuses it.
    if age > 0 {
        let _ = lanveil_core::wire::record::reduce_ttls(&mut out, age);
    }
    Some(out)
}

/// The response's `Age` in seconds (RFC 9111 §5.1), 0 when absent or invalid. `Age` is a singleton,
/// but a list-based value (a comma list, or several field lines) is read by its first member, as
/// §5.1 says a cache should; a value too large to represent counts as 2^31 (§1.2.2).
fn age(headers: &http::HeaderMap) -> u32 {
    let Some(value) = headers.get(http::header::AGE) else {
        return 0;
    };
    let first = value
        .as_bytes()
        .split(|&b| b == b',')
        .next()
        .unwrap_or_default();
    let digits = first.trim_ascii();
    // delta-seconds = 1*DIGIT
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    digits
        .iter()
        .fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        })
        .min(AGE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DoH server on the other end of an in-memory pipe, speaking through [`client_builder`]: it
    /// answers the first request with 200 `application/dns-message` plus an `x-pad` header of `pad`
    /// octets (and `age` if given), every later one normally. Returns what [`read_answer`] made of
    /// the first answer and of a second request on the same connection (`None` when it failed).
    async fn exchange(pad: usize, age: Option<&'static str>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let answer: &'static [u8] = &[
            0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, // header
            1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1, // a.test A IN
            0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 192, 0, 2, 1, // TTL 300
        ];
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(server_io).await else {
                return;
            };
            let mut first = true;
            while let Some(Ok((_req, mut respond))) = conn.accept().await {
                let mut resp = http::Response::builder()
                    .status(200)
                    .header("content-type", DNS_MESSAGE);
                if first {
                    if pad > 0 {
                        resp = resp.header("x-pad", "p".repeat(pad));
                    }
                    if let Some(age) = age {
                        resp = resp.header("age", age);
                    }
                }
                first = false;
                if let Ok(mut s) = respond.send_response(resp.body(()).unwrap(), false) {
                    let _ = s.send_data(Bytes::from_static(answer), true);
                }
            }
        });
        let (send_request, connection) = client_builder()
            .handshake::<_, Bytes>(client_io)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut out = Vec::new();
        for _ in 0..2 {
            let request = build_request("doh.test", "/dns-query", true, &[0; 12]).unwrap();
            let got = match send_request.clone().ready().await {
                Ok(mut ready) => match ready.send_request(request, true) {
                    Ok((response, _)) => read_answer(response).await,
                    Err(_) => None,
                },
                Err(_) => None,
            };
            out.push(got);
        }
        (out[0].clone(), out[1].clone())
    }

    fn ttl(answer: &[u8]) -> u32 {
        let at = answer.len() - 10;
        u32::from_be_bytes(answer[at..at + 4].try_into().unwrap())
    }

    #[tokio::test]
    async fn oversized_response_headers_are_refused() {
        // Normal headers: both answers arrive.
        let (a, b) = exchange(0, None).await;
        assert_eq!(a.as_deref().map(ttl), Some(300));
        assert!(b.is_some());
        // Over the 16-KiB header list, under h2's abuse limit: that request fails, the connection
        // carries the next one.
        let (a, b) = exchange(20 * 1024, None).await;
        assert_eq!(a, None, "a response with 20 KiB of headers is refused");
        assert!(b.is_some(), "the connection survives it");
        // 1 MiB of headers: refused, and the connection ends (ENHANCE_YOUR_CALM), without a panic.
        let (a, b) = exchange(1 << 20, None).await;
        assert_eq!(a, None, "a response with 1 MiB of headers is refused");
        assert_eq!(b, None);
    }

    #[tokio::test]
    async fn age_lowers_the_ttls() {
        let (a, _) = exchange(0, Some("250")).await;
        assert_eq!(a.as_deref().map(ttl), Some(50));
        let (a, _) = exchange(0, Some("301")).await;
        assert_eq!(a.as_deref().map(ttl), Some(0));
        let (a, _) = exchange(0, Some("x")).await;
        assert_eq!(
            a.as_deref().map(ttl),
            Some(300),
            "an invalid Age is ignored"
        );
    }

    #[test]
    fn age_parsing() {
        let age_of = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(http::header::AGE, http::HeaderValue::from_str(v).unwrap());
            }
            age(&h)
        };
        assert_eq!(age_of(&[]), 0);
        assert_eq!(age_of(&["0"]), 0);
        assert_eq!(age_of(&["250"]), 250);
        assert_eq!(age_of(&[" 250 "]), 250);
        assert_eq!(age_of(&["007"]), 7);
        // List-based: the first member (RFC 9111 §5.1), of a comma list or of several lines.
        assert_eq!(age_of(&["250, 10"]), 250);
        assert_eq!(age_of(&["10", "250"]), 10);
        // Invalid: ignored.
        for bad in ["", "-1", "+5", "1.5", "12s", "0x10", " ", ",250", "2 5"] {
            assert_eq!(age_of(&[bad]), 0, "{bad:?}");
        }
        // Too large to represent: 2^31 (RFC 9111 §1.2.2).
        assert_eq!(age_of(&["2147483648"]), 1 << 31);
        assert_eq!(age_of(&["2147483647"]), (1 << 31) - 1);
        assert_eq!(age_of(&["4294967296"]), 1 << 31);
        assert_eq!(age_of(&["99999999999999999999999999999999"]), 1 << 31);
    }
}
