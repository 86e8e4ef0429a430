//! An in-process HTTP/2 DoH server for the tests (blocking, one thread; the other end of a Unix socket
//! pair, or a TLS server on loopback with ALPN `h2` and a certificate for `doh.test`): it reads
//! requests as a server must (preface, SETTINGS, HEADERS + CONTINUATION, DATA), keeps what it saw,
//! and answers each with what the test's function says.
//!
//! The certificates (`src/testdata/doh-test-*`, P-256, valid 2000 to 2100, test use only) were made
//! with `openssl ca`: a self-signed CA (`CA:TRUE`, keyCertSign) and a leaf for `DNS:doh.test`
//! (`CA:FALSE`, digitalSignature, serverAuth), the key in PKCS#8.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine as _;

use super::{DNS_MESSAGE, PREFACE, flag, frame, push_frame};
use crate::hpack::{Decoder, Encoder};

/// One request as the server saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// Header fields in order, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// The HEADERS frame ended the stream (no body follows).
    pub end_stream_on_headers: bool,
    /// DATA frames received on the stream.
    pub data_frames: usize,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, content type, body.
pub(crate) type Answer = (u16, Option<&'static str>, Vec<u8>);

/// `query` answered (QR and RA set, nothing else changed): a DNS response to its question.
pub(crate) fn dns_answer(query: &[u8]) -> Vec<u8> {
    let mut m = query.to_vec();
    if m.len() >= 4 {
        m[2] |= 0x80;
        m[3] = 0x80;
    }
    m
}

/// A server that only takes GET `?dns=`, as some DoH servers do: 405 to anything else.
pub(crate) fn get_only(seen: &Seen) -> Answer {
    let query = seen
        .get(":path")
        .and_then(|p| p.split_once("?dns="))
        .and_then(|(_, q)| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(q)
                .ok()
        });
    match (seen.get(":method"), query) {
        (Some("GET"), Some(q)) => (200, Some(DNS_MESSAGE), dns_answer(&q)),
        _ => (405, None, Vec::new()),
    }
}

/// Starts a server answering with `answer`; the client's end (reads time out after 5 s: a request the
/// server cannot see the end of fails instead of hanging the test), and the thread that returns every
/// request seen once the client hangs up.
pub(crate) fn spawn(answer: fn(&Seen) -> Answer) -> (UnixStream, JoinHandle<Vec<Seen>>) {
    let (client, server) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let thread = std::thread::spawn(move || serve(server, answer));
    (client, thread)
}

/// The CA that signed the TLS server's certificate (for `Auth::ca_file`).
pub(crate) const CA_FILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata/doh-test-ca.pem");

/// A TLS server on loopback for `doh.test` (ALPN `h2`, TLS 1.3), for one connection; its address,
/// and the thread that returns every request seen once the client hangs up.
pub(crate) fn spawn_tls(answer: fn(&Seen) -> Answer) -> (SocketAddr, JoinHandle<Vec<Seen>>) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata/");
    let chain = [
        CertificateDer::from_pem_file(format!("{data}doh-test-leaf.pem")).unwrap(),
        CertificateDer::from_pem_file(CA_FILE).unwrap(),
    ];
    let key = PrivateKeyDer::from_pem_file(format!("{data}doh-test-leaf.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain.to_vec(), key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        serve(rustls::StreamOwned::new(conn, tcp), answer)
    });
    (addr, thread)
}

fn read_frame(s: &mut impl Read) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).ok()?;
    let sid = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], sid, payload))
}

fn serve(mut s: impl Read + Write, answer: fn(&Seen) -> Answer) -> Vec<Seen> {
    let mut preface = [0u8; 24];
    if s.read_exact(&mut preface).is_err() || preface != PREFACE {
        return Vec::new();
    }
    let mut out = Vec::new();
    push_frame(&mut out, frame::SETTINGS, 0, 0, &[]);
    if s.write_all(&out).is_err() {
        return Vec::new();
    }
    let (mut decoder, mut encoder) = (Decoder::default(), Encoder::default());
    let mut done = Vec::new();
    let mut open: Option<(u32, Seen)> = None;
    while let Some((ty, flags, sid, payload)) = read_frame(&mut s) {
        let ended = match ty {
            frame::SETTINGS if flags & flag::ACK == 0 => {
                let mut out = Vec::new();
                push_frame(&mut out, frame::SETTINGS, flag::ACK, 0, &[]);
                let _ = s.write_all(&out);
                false
            }
            frame::HEADERS => {
                let mut block = payload;
                let mut end_headers = flags & flag::END_HEADERS != 0;
                while !end_headers {
                    let Some((frame::CONTINUATION, cflags, _, more)) = read_frame(&mut s) else {
                        return done;
                    };
                    block.extend_from_slice(&more);
                    end_headers = cflags & flag::END_HEADERS != 0;
                }
                let fields = decoder.decode(&block, 1 << 20).unwrap();
                let seen = Seen {
                    headers: fields
                        .into_iter()
                        .map(|(n, v)| {
                            (
                                String::from_utf8_lossy(&n).into_owned(),
                                String::from_utf8_lossy(&v).into_owned(),
                            )
                        })
                        .collect(),
                    end_stream_on_headers: flags & flag::END_STREAM != 0,
                    ..Seen::default()
                };
                open = Some((sid, seen));
                flags & flag::END_STREAM != 0
            }
            frame::DATA => {
                if let Some((_, seen)) = open.as_mut().filter(|(id, _)| *id == sid) {
                    seen.data_frames += 1;
                    seen.body.extend_from_slice(&payload);
                }
                flags & flag::END_STREAM != 0
            }
            _ => false,
        };
        if !ended {
            continue;
        }
        let Some((sid, seen)) = open.take() else {
            continue;
        };
        let (status, content_type, body) = answer(&seen);
        let status = status.to_string();
        let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", status.as_bytes())];
        if let Some(ct) = content_type {
            fields.push((b"content-type", ct.as_bytes()));
        }
        let block = encoder.encode(&fields);
        let mut out = Vec::new();
        let end = if body.is_empty() { flag::END_STREAM } else { 0 };
        push_frame(
            &mut out,
            frame::HEADERS,
            flag::END_HEADERS | end,
            sid,
            &block,
        );
        if !body.is_empty() {
            push_frame(&mut out, frame::DATA, flag::END_STREAM, sid, &body);
        }
        done.push(seen);
        if s.write_all(&out).is_err() {
            break;
        }
    }
    done
}
