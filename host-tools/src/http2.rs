//! A minimal blocking HTTP/2 client (RFC 9113) for `probe https://…`: the daemon speaks DoH over
//! HTTP/2 only, so the probe does too, with the request the daemon sends: POST (`content-type` and
//! `accept` `application/dns-message`, `content-length`), or, for an upstream with `http_method GET`,
//! GET `PATH?dns=` (RFC 8484 §4.1: the message in base64url without padding) with `accept`; no
//! User-Agent. One request at a time on one connection; server push off; flow control honoured both
//! ways; response headers bounded like the daemon's (16 KiB decoded), the body to 65,535 octets.
//! Everything the caller reads or writes goes through its I/O, which carries the per-query deadline
//! ([`crate::tls::Deadline`]).

use std::io::{self, Read, Write};

use base64::Engine as _;

use crate::hpack::{Decoder, Encoder, HpackError};

#[cfg(test)]
mod fuzz;
#[cfg(test)]
pub(crate) mod test_server;

/// The connection preface (§3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_FRAME_SIZE: the default, never raised.
const MAX_FRAME: usize = 16_384;
/// SETTINGS_MAX_HEADER_LIST_SIZE, as the daemon's (`firmware/src/upstream/doh.rs`).
pub const MAX_HEADER_LIST: usize = 16 * 1024;
/// A response's header block (HEADERS + CONTINUATION), compressed.
const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// The largest DNS message.
pub const MAX_ANSWER: usize = 65_535;
/// The flow-control window's limit (§6.9.1).
const MAX_WINDOW: i64 = (1 << 31) - 1;
const DEFAULT_WINDOW: i64 = 65_535;
/// `application/dns-message`.
pub const DNS_MESSAGE: &str = "application/dns-message";

mod frame {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum H2Error {
    /// Reading or writing failed (a time-out included: see [`H2Error::is_timeout`]).
    Io(io::Error),
    /// The server broke HTTP/2.
    Protocol(&'static str),
    /// The response's header block did not decode.
    Hpack(HpackError),
    /// The server reset the request's stream (error code).
    Reset(u32),
    /// The server is closing the connection without answering the request (error code).
    GoAway(u32),
    /// The response body exceeded 65,535 octets.
    TooLarge,
}

impl H2Error {
    fn is_timeout(&self) -> bool {
        matches!(self, Self::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

impl std::fmt::Display for H2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            _ if self.is_timeout() => f.write_str("no answer in time"),
            Self::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("the server closed the connection")
            }
            Self::Io(e) => write!(f, "HTTP/2 I/O: {e}"),
            Self::Protocol(why) => write!(f, "HTTP/2 protocol error: {why}"),
            Self::Hpack(e) => write!(f, "HTTP/2: {e}"),
            Self::Reset(code) => write!(f, "the server reset the stream (HTTP/2 error {code})"),
            Self::GoAway(code) => write!(
                f,
                "the server closed the connection without answering (GOAWAY, HTTP/2 error {code})"
            ),
            Self::TooLarge => f.write_str("answer longer than 65,535 octets"),
        }
    }
}

impl std::error::Error for H2Error {}

impl From<io::Error> for H2Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<HpackError> for H2Error {
    fn from(e: HpackError) -> Self {
        Self::Hpack(e)
    }
}

/// A header field to send: name, value.
type Field<'a> = (&'a [u8], &'a [u8]);

/// How a DoH query is sent: the daemon's `http_method` (an upstream's UCI option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum Method {
    /// POST `application/dns-message` with the message as the body (the daemon's default).
    #[default]
    #[serde(rename = "POST")]
    Post,
    /// GET `PATH?dns=BASE64URL` (no padding), no body.
    #[serde(rename = "GET")]
    Get,
}

impl Method {
    /// `POST` or `GET`, as HTTP and the UCI option spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Get => "GET",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A complete response: status, `content-type` (if any), body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// `:status`.
    pub status: u16,
    /// `content-type`, when present.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// The client side of one HTTP/2 connection (no I/O of its own).
#[derive(Debug)]
pub struct Client {
    authority: String,
    path: String,
    method: Method,
    started: bool,
    next_stream: u32,
    decoder: Decoder,
    encoder: Encoder,
    /// The server's SETTINGS_MAX_FRAME_SIZE.
    peer_max_frame: usize,
    /// The server's SETTINGS_INITIAL_WINDOW_SIZE.
    peer_initial_window: i64,
    /// What we may still send on the connection.
    conn_window: i64,
    /// The last stream the server said it would process (GOAWAY).
    goaway: Option<(u32, u32)>,
}

/// The state of the one request in flight.
#[derive(Debug, Default)]
struct Stream {
    id: u32,
    window: i64,
    status: Option<u16>,
    content_type: Option<String>,
    body: Vec<u8>,
    done: bool,
}

impl Client {
    /// A client for `https://AUTHORITY/PATH` that POSTs (see [`Client::with_method`]).
    pub fn new(authority: &str, path: &str) -> Self {
        Self {
            authority: authority.to_string(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            method: Method::Post,
            started: false,
            next_stream: 1,
            decoder: Decoder::default(),
            encoder: Encoder::default(),
            peer_max_frame: MAX_FRAME,
            peer_initial_window: DEFAULT_WINDOW,
            conn_window: DEFAULT_WINDOW,
            goaway: None,
        }
    }

    /// The same client, sending its requests with `method`.
    #[must_use]
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// How this client sends its requests.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Sends `message` as the daemon would (POST body, or GET `?dns=`) and reads the response.
    pub fn request(
        &mut self,
        io: &mut (impl Read + Write),
        message: &[u8],
    ) -> Result<Response, H2Error> {
        if !self.started {
            // Preface and our SETTINGS: no server push, the daemon's header list bound.
            let mut out = PREFACE.to_vec();
            let mut settings = Vec::new();
            for (id, value) in [(0x2u16, 0u32), (0x6, MAX_HEADER_LIST as u32)] {
                settings.extend_from_slice(&id.to_be_bytes());
                settings.extend_from_slice(&value.to_be_bytes());
            }
            push_frame(&mut out, frame::SETTINGS, 0, 0, &settings);
            io.write_all(&out)?;
            self.started = true;
        }
        if let Some((_, code)) = self.goaway {
            return Err(H2Error::GoAway(code));
        }
        let id = self.next_stream;
        if id > 0x7fff_ffff {
            return Err(H2Error::Protocol("no stream IDs left"));
        }
        self.next_stream += 2;
        let mut stream = Stream {
            id,
            window: self.peer_initial_window,
            ..Stream::default()
        };

        // The daemon's request (`firmware/src/upstream/doh.rs`, `build_request`), field by field.
        let length = message.len().to_string();
        let get_path;
        let (fields, body): (Vec<Field<'_>>, &[u8]) = match self.method {
            Method::Post => (
                vec![
                    (b":method", b"POST"),
                    (b":scheme", b"https"),
                    (b":authority", self.authority.as_bytes()),
                    (b":path", self.path.as_bytes()),
                    (b"content-type", DNS_MESSAGE.as_bytes()),
                    (b"content-length", length.as_bytes()),
                    (b"accept", DNS_MESSAGE.as_bytes()),
                ],
                message,
            ),
            Method::Get => {
                get_path = format!(
                    "{}?dns={}",
                    self.path,
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message)
                );
                (
                    vec![
                        (b":method", b"GET"),
                        (b":scheme", b"https"),
                        (b":authority", self.authority.as_bytes()),
                        (b":path", get_path.as_bytes()),
                        (b"accept", DNS_MESSAGE.as_bytes()),
                    ],
                    &[],
                )
            }
        };
        let block = self.encoder.encode(&fields);
        // No body (GET): the HEADERS frame ends the stream.
        let end_stream = if body.is_empty() { flag::END_STREAM } else { 0 };
        let mut out = Vec::new();
        let mut chunks = block.chunks(self.peer_max_frame).peekable();
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let (ty, start) = if first {
                (frame::HEADERS, end_stream)
            } else {
                (frame::CONTINUATION, 0)
            };
            push_frame(
                &mut out,
                ty,
                start | if last { flag::END_HEADERS } else { 0 },
                id,
                chunk,
            );
            first = false;
        }
        io.write_all(&out)?;

        // The body, as far as the windows allow; frames are read while waiting for more window.
        let mut sent = 0;
        while sent < body.len() && !stream.done {
            let room = self
                .conn_window
                .min(stream.window)
                .min(self.peer_max_frame as i64);
            if room <= 0 {
                self.read_frame(io, &mut stream)?;
                continue;
            }
            let n = (body.len() - sent).min(room as usize);
            let end = sent + n == body.len();
            let mut out = Vec::new();
            push_frame(
                &mut out,
                frame::DATA,
                if end { flag::END_STREAM } else { 0 },
                id,
                &body[sent..sent + n],
            );
            io.write_all(&out)?;
            sent += n;
            self.conn_window -= n as i64;
            stream.window -= n as i64;
        }
        io.flush()?;
        while !stream.done {
            self.read_frame(io, &mut stream)?;
        }
        match stream.status {
            Some(status) => Ok(Response {
                status,
                content_type: stream.content_type,
                body: stream.body,
            }),
            None => Err(H2Error::Protocol("the stream ended without a response")),
        }
    }

    /// Ends the connection politely (GOAWAY, no error).
    pub fn goodbye(&self, io: &mut impl Write) {
        if !self.started {
            return;
        }
        let mut out = Vec::new();
        push_frame(&mut out, frame::GOAWAY, 0, 0, &[0; 8]);
        let _ = io.write_all(&out);
        let _ = io.flush();
    }

    /// Reads one frame (a header block with its CONTINUATIONs) and acts on it.
    fn read_frame(
        &mut self,
        io: &mut (impl Read + Write),
        stream: &mut Stream,
    ) -> Result<(), H2Error> {
        let (ty, flags, sid, payload) = read_raw(io)?;
        match ty {
            frame::DATA => {
                if sid == 0 {
                    return Err(H2Error::Protocol("DATA on stream 0"));
                }
                let data = unpad(flags, &payload)?;
                if sid == stream.id && !stream.done {
                    if stream.status.is_none() {
                        return Err(H2Error::Protocol("DATA before the response headers"));
                    }
                    if stream.body.len() + data.len() > MAX_ANSWER {
                        return Err(H2Error::TooLarge);
                    }
                    stream.body.extend_from_slice(data);
                    if flags & flag::END_STREAM != 0 {
                        stream.done = true;
                    }
                }
                // Give the flow-control credit back at once (the body is bounded above).
                if !payload.is_empty() {
                    let mut out = Vec::new();
                    let inc = (payload.len() as u32).to_be_bytes();
                    push_frame(&mut out, frame::WINDOW_UPDATE, 0, 0, &inc);
                    if sid == stream.id && !stream.done {
                        push_frame(&mut out, frame::WINDOW_UPDATE, 0, sid, &inc);
                    }
                    io.write_all(&out)?;
                    io.flush()?;
                }
            }
            frame::HEADERS => {
                if sid == 0 {
                    return Err(H2Error::Protocol("HEADERS on stream 0"));
                }
                let mut fragment = unpad(flags, &payload)?;
                if flags & flag::PRIORITY != 0 {
                    fragment = fragment
                        .get(5..)
                        .ok_or(H2Error::Protocol("short HEADERS frame"))?;
                }
                let mut block = fragment.to_vec();
                let mut end_headers = flags & flag::END_HEADERS != 0;
                while !end_headers {
                    let (ty, cflags, csid, more) = read_raw(io)?;
                    if ty != frame::CONTINUATION || csid != sid {
                        return Err(H2Error::Protocol("header block not continued"));
                    }
                    if block.len() + more.len() > MAX_HEADER_BLOCK {
                        return Err(H2Error::Hpack(HpackError::TooLarge));
                    }
                    block.extend_from_slice(&more);
                    end_headers = cflags & flag::END_HEADERS != 0;
                }
                // Decoded whatever the stream: the dynamic table is the connection's.
                let fields = self.decoder.decode(&block, MAX_HEADER_LIST)?;
                if sid == stream.id && !stream.done {
                    if stream.status.is_none() {
                        let status = fields
                            .iter()
                            .find(|(n, _)| n == b":status")
                            .and_then(|(_, v)| std::str::from_utf8(v).ok())
                            .and_then(|v| v.parse::<u16>().ok())
                            .filter(|s| (100..=999).contains(s))
                            .ok_or(H2Error::Protocol("response without a valid :status"))?;
                        // 1xx: informational, the response follows.
                        if status >= 200 {
                            stream.status = Some(status);
                            stream.content_type = fields
                                .iter()
                                .find(|(n, _)| n == b"content-type")
                                .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                        }
                    }
                    // A later block is trailers: ignored.
                    if flags & flag::END_STREAM != 0 {
                        stream.done = true;
                    }
                }
            }
            frame::RST_STREAM => {
                if sid == 0 || payload.len() != 4 {
                    return Err(H2Error::Protocol("bad RST_STREAM"));
                }
                if sid == stream.id && !stream.done {
                    return Err(H2Error::Reset(be32(&payload)));
                }
            }
            frame::SETTINGS => {
                if sid != 0 || payload.len() % 6 != 0 {
                    return Err(H2Error::Protocol("bad SETTINGS"));
                }
                if flags & flag::ACK != 0 {
                    if !payload.is_empty() {
                        return Err(H2Error::Protocol("SETTINGS ACK with a payload"));
                    }
                    return Ok(());
                }
                for s in payload.chunks_exact(6) {
                    let value = be32(&s[2..]);
                    match u16::from_be_bytes([s[0], s[1]]) {
                        0x4 => {
                            let new = i64::from(value);
                            if new > MAX_WINDOW {
                                return Err(H2Error::Protocol("initial window too large"));
                            }
                            stream.window += new - self.peer_initial_window;
                            self.peer_initial_window = new;
                            // RFC 9113 §6.9.2: a change that takes a window past 2^31-1 is a
                            // connection error (FLOW_CONTROL_ERROR).
                            if stream.window > MAX_WINDOW {
                                return Err(H2Error::Protocol("flow-control window above 2^31-1"));
                            }
                        }
                        0x5 => {
                            if !(16_384..=16_777_215).contains(&value) {
                                return Err(H2Error::Protocol("bad SETTINGS_MAX_FRAME_SIZE"));
                            }
                            self.peer_max_frame = value as usize;
                        }
                        _ => {}
                    }
                }
                let mut out = Vec::new();
                push_frame(&mut out, frame::SETTINGS, flag::ACK, 0, &[]);
                io.write_all(&out)?;
                io.flush()?;
            }
            frame::PUSH_PROMISE => {
                return Err(H2Error::Protocol("PUSH_PROMISE although push is off"));
            }
            frame::PING => {
                if sid != 0 || payload.len() != 8 {
                    return Err(H2Error::Protocol("bad PING"));
                }
                if flags & flag::ACK == 0 {
                    let mut out = Vec::new();
                    push_frame(&mut out, frame::PING, flag::ACK, 0, &payload);
                    io.write_all(&out)?;
                    io.flush()?;
                }
            }
            frame::GOAWAY => {
                if sid != 0 || payload.len() < 8 {
                    return Err(H2Error::Protocol("bad GOAWAY"));
                }
                let last = be32(&payload) & 0x7fff_ffff;
                let code = be32(&payload[4..]);
                self.goaway = Some((last, code));
                if stream.id > last && !stream.done {
                    return Err(H2Error::GoAway(code));
                }
            }
            frame::WINDOW_UPDATE => {
                if payload.len() != 4 {
                    return Err(H2Error::Protocol("bad WINDOW_UPDATE"));
                }
                let inc = i64::from(be32(&payload) & 0x7fff_ffff);
                if inc == 0 {
                    return Err(H2Error::Protocol("WINDOW_UPDATE of 0"));
                }
                let window = if sid == 0 {
                    &mut self.conn_window
                } else if sid == stream.id {
                    &mut stream.window
                } else {
                    return Ok(());
                };
                *window += inc;
                if *window > MAX_WINDOW {
                    return Err(H2Error::Protocol("flow-control window above 2^31-1"));
                }
            }
            frame::CONTINUATION => {
                return Err(H2Error::Protocol("CONTINUATION without HEADERS"));
            }
            // PRIORITY and unknown types are ignored (§4.1, §5.5).
            _ => {}
        }
        Ok(())
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn push_frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// One frame: type, flags, stream, payload (at most [`MAX_FRAME`] octets).
fn read_raw(io: &mut impl Read) -> Result<(u8, u8, u32, Vec<u8>), H2Error> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    if len > MAX_FRAME {
        return Err(H2Error::Protocol(
            "frame larger than SETTINGS_MAX_FRAME_SIZE",
        ));
    }
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload)?;
    let sid = be32(&head[5..]) & 0x7fff_ffff;
    Ok((head[3], head[4], sid, payload))
}

/// The payload without its padding (DATA, HEADERS).
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], H2Error> {
    if flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload
        .split_first()
        .ok_or(H2Error::Protocol("padded frame without a pad length"))?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
        .ok_or(H2Error::Protocol("padding longer than the frame"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server: what it sends is fixed in advance; what the client writes is kept.
    struct Script {
        input: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn server(frames: &[(u8, u8, u32, Vec<u8>)]) -> Script {
        let mut input = Vec::new();
        for (ty, flags, sid, payload) in frames {
            push_frame(&mut input, *ty, *flags, *sid, payload);
        }
        Script {
            input: io::Cursor::new(input),
            written: Vec::new(),
        }
    }

    fn headers(status: &str, ct: Option<&str>) -> Vec<u8> {
        let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", status.as_bytes())];
        if let Some(ct) = ct {
            fields.push((b"content-type", ct.as_bytes()));
        }
        Encoder::default().encode(&fields)
    }

    #[test]
    fn a_response_split_over_continuation_and_data_frames() {
        let h = headers("200", Some(DNS_MESSAGE));
        let mut s = server(&[
            (frame::SETTINGS, 0, 0, vec![0, 4, 0, 0, 0x10, 0]),
            (frame::PING, 0, 0, vec![7; 8]),
            (frame::HEADERS, 0, 1, h[..3].to_vec()),
            (frame::CONTINUATION, flag::END_HEADERS, 1, h[3..].to_vec()),
            (frame::DATA, flag::PADDED, 1, vec![2, 1, 2, 0, 0]),
            (frame::DATA, flag::END_STREAM, 1, vec![3]),
        ]);
        let mut c = Client::new("doh.test", "/dns-query");
        let r = c.request(&mut s, &[9; 40]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type.as_deref(), Some(DNS_MESSAGE));
        assert_eq!(r.body, [1, 2, 3]);
        assert_eq!(c.peer_initial_window, 0x1000);
        assert!(s.written.starts_with(PREFACE));
        // The client acknowledged SETTINGS and answered the PING.
        let mut ping_ack = Vec::new();
        push_frame(&mut ping_ack, frame::PING, flag::ACK, 0, &[7; 8]);
        assert!(s.written.windows(ping_ack.len()).any(|w| w == ping_ack));
    }

    #[test]
    fn a_settings_change_that_overflows_a_window_is_refused() {
        // RFC 9113 §6.9.2: the stream's window grew by a WINDOW_UPDATE, then the new initial
        // window size takes it past 2^31-1: FLOW_CONTROL_ERROR, not a window that wraps.
        let mut s = server(&[
            (frame::WINDOW_UPDATE, 0, 1, 1000u32.to_be_bytes().to_vec()),
            (frame::SETTINGS, 0, 0, vec![0, 4, 0x7f, 0xff, 0xff, 0xff]),
        ]);
        let mut c = Client::new("doh.test", "/dns-query");
        match c.request(&mut s, &[9; 40]) {
            Err(H2Error::Protocol(why)) => assert_eq!(why, "flow-control window above 2^31-1"),
            other => panic!("{other:?}"),
        }
        // Up to the limit exactly is allowed.
        let h = headers("200", Some(DNS_MESSAGE));
        let mut s = server(&[
            (frame::SETTINGS, 0, 0, vec![0, 4, 0x7f, 0xff, 0xff, 0xff]),
            (frame::HEADERS, flag::END_HEADERS, 1, h),
            (frame::DATA, flag::END_STREAM, 1, vec![3]),
        ]);
        let mut c = Client::new("doh.test", "/dns-query");
        assert_eq!(c.request(&mut s, &[9; 40]).unwrap().body, [3]);
    }

    /// The RFC 8484 §4.1.1 example query: `www.example.com` A, ID 0, no EDNS.
    fn rfc8484_query() -> Vec<u8> {
        let opts = crate::dns::QueryOpts {
            edns: false,
            pad_block: None,
            ..crate::dns::QueryOpts::default()
        };
        crate::dns::build_query("www.example.com", crate::dns::qtype::A, opts).unwrap()
    }

    fn fields(seen: &test_server::Seen) -> Vec<(&str, &str)> {
        seen.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// GET as the daemon sends it (`build_request`): `PATH?dns=` base64url without padding, `accept`,
    /// nothing else, the stream ended by the HEADERS frame; a server that takes only GET answers it,
    /// twice on one connection.
    #[test]
    fn get_is_the_daemons_request_and_a_get_only_server_answers_it() {
        use base64::Engine as _;
        // RFC 8484 §4.1.1's own example path.
        let (mut io, server) = test_server::spawn(test_server::get_only);
        let mut c = Client::new("doh.test", "/dns-query").with_method(Method::Get);
        let r = c.request(&mut io, &rfc8484_query()).unwrap();
        assert_eq!(
            (r.status, r.content_type.as_deref()),
            (200, Some(DNS_MESSAGE))
        );
        assert_eq!(r.body, test_server::dns_answer(&rfc8484_query()));
        // A padded query (128 octets: base64 would end in `=`), on the same connection.
        let padded = crate::dns::build_query(
            "example.com",
            crate::dns::qtype::A,
            crate::dns::QueryOpts::default(),
        )
        .unwrap();
        assert_eq!(padded.len() % 3, 2);
        let r = c.request(&mut io, &padded).unwrap();
        assert_eq!((r.status, r.body), (200, test_server::dns_answer(&padded)));
        c.goodbye(&mut io);
        drop(io);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&padded);
        assert!(!unpadded.contains(['=', '+', '/']), "{unpadded}");
        for (s, path) in seen.iter().zip([
            "/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB".to_string(),
            format!("/dns-query?dns={unpadded}"),
        ]) {
            assert_eq!(
                fields(s),
                [
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "doh.test"),
                    (":path", path.as_str()),
                    ("accept", DNS_MESSAGE),
                ]
            );
            assert!(s.end_stream_on_headers, "{s:?}");
            assert_eq!((s.data_frames, s.body.len()), (0, 0), "{s:?}");
        }
    }

    /// POST to the same server: its 405 comes back as the response (the caller judges it), and the
    /// server saw the daemon's POST.
    #[test]
    fn post_to_a_get_only_server_is_answered_405() {
        let (mut io, server) = test_server::spawn(test_server::get_only);
        let mut c = Client::new("doh.test", "/dns-query");
        assert_eq!(c.method(), Method::Post);
        let query = rfc8484_query();
        let r = c.request(&mut io, &query).unwrap();
        assert_eq!((r.status, r.body.len()), (405, 0));
        drop(io);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 1);
        let length = query.len().to_string();
        assert_eq!(
            fields(&seen[0]),
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "doh.test"),
                (":path", "/dns-query"),
                ("content-type", DNS_MESSAGE),
                ("content-length", length.as_str()),
                ("accept", DNS_MESSAGE),
            ]
        );
        assert!(!seen[0].end_stream_on_headers);
        assert_eq!(seen[0].body, query);
    }

    /// A request without a body (GET; a POST of nothing) ends its stream with the HEADERS frame:
    /// otherwise the server would wait for a body that never comes.
    #[test]
    fn a_request_without_a_body_ends_its_stream() {
        let (mut io, server) = test_server::spawn(test_server::get_only);
        let r = Client::new("doh.test", "/dns-query")
            .request(&mut io, &[])
            .unwrap();
        assert_eq!(r.status, 405);
        drop(io);
        let seen = server.join().unwrap();
        assert_eq!(seen[0].get("content-length"), Some("0"));
        assert!(seen[0].end_stream_on_headers && seen[0].data_frames == 0);
    }

    #[test]
    fn failures_are_errors_not_answers() {
        let mut c = Client::new("doh.test", "/dns-query");
        let mut s = server(&[(frame::RST_STREAM, 0, 1, vec![0, 0, 0, 2])]);
        assert!(matches!(
            c.request(&mut s, &[0; 12]),
            Err(H2Error::Reset(2))
        ));

        let mut c = Client::new("doh.test", "/dns-query");
        let mut s = server(&[(frame::GOAWAY, 0, 0, vec![0, 0, 0, 0, 0, 0, 0, 1])]);
        assert!(matches!(
            c.request(&mut s, &[0; 12]),
            Err(H2Error::GoAway(1))
        ));

        // The connection ends before the answer.
        let mut c = Client::new("doh.test", "/dns-query");
        let mut s = server(&[]);
        let e = c.request(&mut s, &[0; 12]).unwrap_err();
        assert_eq!(e.to_string(), "the server closed the connection");

        // A frame larger than we allow, and a body over 65,535 octets.
        let mut c = Client::new("doh.test", "/dns-query");
        let mut s = server(&[(frame::DATA, 0, 1, vec![0; MAX_FRAME + 1])]);
        assert!(matches!(
            c.request(&mut s, &[0; 12]),
            Err(H2Error::Protocol(_))
        ));
        let mut frames = vec![(frame::HEADERS, flag::END_HEADERS, 1, headers("200", None))];
        for _ in 0..5 {
            frames.push((frame::DATA, 0, 1, vec![0; MAX_FRAME]));
        }
        let mut c = Client::new("doh.test", "/dns-query");
        assert!(matches!(
            c.request(&mut server(&frames), &[0; 12]),
            Err(H2Error::TooLarge)
        ));

        // Endless CONTINUATION frames stop at the header block limit.
        let mut frames = vec![(frame::HEADERS, 0, 1, vec![0x88])];
        for _ in 0..10 {
            frames.push((frame::CONTINUATION, 0, 1, vec![0x88; 4096]));
        }
        let mut c = Client::new("doh.test", "/dns-query");
        assert!(matches!(
            c.request(&mut server(&frames), &[0; 12]),
            Err(H2Error::Hpack(HpackError::TooLarge))
        ));
    }
}
