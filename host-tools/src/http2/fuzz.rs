//! Property tests: the client against whatever a server may send. Arbitrary byte streams, arbitrary
//! sequences of frames (any type, flags, stream, length claim), and arbitrary mutations of a valid
//! response (SETTINGS; HEADERS with HPACK `:status 200` and `content-type: application/dns-message`;
//! DATA) reach [`Client::request`] through an in-memory transport that hands them out in arbitrary
//! pieces and then ends (EOF) or stops answering (a time-out, as [`crate::tls::Deadline`] reports
//! one), or through a Unix socket pair with a real deadline. The client must never panic, must come
//! back with a response or an error in time, and stays inside its bounds: a response is 200..=999
//! with at most 65,535 octets of body; no frame over 16,384 octets is read (so no allocation follows
//! a length claim); what it writes back is bounded by what it read (acknowledgements and window
//! updates only).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// How the in-memory server's bytes end.
#[derive(Debug, Clone, Copy)]
enum End {
    /// The connection closes.
    Eof,
    /// Nothing more comes: the deadline passes.
    Silence,
}

/// The server's bytes, handed out at most `piece` at a time; what the client writes is counted.
struct Wire {
    input: Vec<u8>,
    at: usize,
    piece: usize,
    end: End,
    written: usize,
    max_read: usize,
}

impl Wire {
    fn new(input: Vec<u8>, piece: usize, end: End) -> Self {
        Self {
            input,
            at: 0,
            piece: piece.max(1),
            end,
            written: 0,
            max_read: 0,
        }
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.max_read = self.max_read.max(buf.len());
        if self.at >= self.input.len() {
            return match self.end {
                End::Eof => Ok(0),
                End::Silence => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")),
            };
        }
        let n = buf.len().min(self.piece).min(self.input.len() - self.at);
        buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A DNS answer to the probe's query (any octets do for the client).
const BODY: &[u8] = &[
    0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
    0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 192, 0, 2, 1,
];

/// A valid response on stream 1: SETTINGS, HEADERS (`:status 200`, the DNS content type), DATA.
fn valid_response() -> Vec<u8> {
    let mut out = Vec::new();
    push_frame(&mut out, frame::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]);
    let block = Encoder::default().encode(&[
        (b":status", b"200"),
        (b"content-type", DNS_MESSAGE.as_bytes()),
    ]);
    push_frame(&mut out, frame::HEADERS, flag::END_HEADERS, 1, &block);
    push_frame(&mut out, frame::DATA, flag::END_STREAM, 1, BODY);
    out
}

/// What a request of `message` may write before it reads anything: preface, SETTINGS, the header
/// block (a GET's path carries the message in base64), the body.
fn request_bound(message: &[u8]) -> usize {
    PREFACE.len() + 9 + 12 + 3 * (9 + 256) + 2 * message.len() + 9 * (message.len() / 1024 + 2)
}

/// Runs two requests (the second on whatever the first left: GOAWAY, the HPACK table, stream IDs)
/// and checks the properties.
fn check(input: Vec<u8>, piece: usize, end: End, method: Method, message: &[u8]) {
    let len = input.len();
    let mut wire = Wire::new(input, piece, end);
    let mut client = Client::new("doh.test", "/dns-query").with_method(method);
    let start = Instant::now();
    for _ in 0..2 {
        match client.request(&mut wire, message) {
            Ok(r) => {
                assert!((200..=999).contains(&r.status), "{r:?}");
                assert!(r.body.len() <= MAX_ANSWER);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // In memory, the client's work is bounded by its input: no waiting, no loop without a read.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        wire.max_read <= MAX_FRAME,
        "a read of {} octets",
        wire.max_read
    );
    // Each frame read (9 octets at least) is answered by at most 26 octets (two WINDOW_UPDATEs).
    assert!(
        wire.written <= 2 * request_bound(message) + 3 * len,
        "{} octets written for {len} read",
        wire.written
    );
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![Just(End::Eof), Just(End::Silence)]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![Just(Method::Post), Just(Method::Get)]
}

/// A query: small as the probe's, or larger than the default flow-control window (the client then
/// waits for WINDOW_UPDATE frames).
fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => (65_536usize..70_000).prop_map(|n| vec![0x5a; n]),
    ]
}

/// One frame: any type (the known ones more often), flags, stream (mostly 0..=3), payload; sometimes
/// with a length field that claims more than the payload (up to 2^24 - 1).
fn raw_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![4 => 0u8..=9, 1 => any::<u8>()],
        any::<u8>(),
        prop_oneof![4 => 0u32..=3, 1 => any::<u32>()],
        proptest::collection::vec(any::<u8>(), 0..64),
        prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(|n| Some(n & 0xff_ffff))],
    )
        .prop_map(|(ty, flags, sid, payload, claim)| {
            let mut out = Vec::new();
            push_frame(&mut out, ty, flags, sid, &payload);
            if let Some(n) = claim {
                out[..3].copy_from_slice(&n.to_be_bytes()[1..]);
            }
            out
        })
}

/// A frame the client mostly accepts, to get it deep into a response: SETTINGS, PING, WINDOW_UPDATE,
/// HEADERS with a real header block (status, content type, padding, priority), CONTINUATION, DATA.
fn plausible_frame() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just(b"200".to_vec()),
        Just(b"100".to_vec()),
        Just(b"405".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..5),
    ];
    let headers =
        (status, any::<bool>(), 0u8..=0x2f, 0u32..=3).prop_map(|(status, ct, flags, sid)| {
            let mut fields: Vec<(&[u8], &[u8])> = vec![(b":status", &status)];
            if ct {
                fields.push((b"content-type", DNS_MESSAGE.as_bytes()));
            }
            let mut block = Encoder::default().encode(&fields);
            if flags & flag::PRIORITY != 0 {
                block.splice(0..0, [0, 0, 0, 0, 16]);
            }
            if flags & flag::PADDED != 0 {
                block.insert(0, 2);
                block.extend_from_slice(&[0, 0]);
            }
            let mut out = Vec::new();
            push_frame(&mut out, frame::HEADERS, flags, sid, &block);
            out
        });
    let data = (
        any::<u8>(),
        0u32..=3,
        prop_oneof![3 => 0usize..64, 1 => 0usize..=MAX_FRAME],
    )
        .prop_map(|(flags, sid, n)| {
            let mut out = Vec::new();
            push_frame(&mut out, frame::DATA, flags, sid, &vec![0; n]);
            out
        });
    let settings = proptest::collection::vec((0u16..=8, any::<u32>()), 0..4).prop_map(|s| {
        let payload: Vec<u8> = s
            .iter()
            .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        let mut out = Vec::new();
        push_frame(&mut out, frame::SETTINGS, 0, 0, &payload);
        out
    });
    let window = (0u32..=3, any::<u32>()).prop_map(|(sid, inc)| {
        let mut out = Vec::new();
        push_frame(&mut out, frame::WINDOW_UPDATE, 0, sid, &inc.to_be_bytes());
        out
    });
    let ping = any::<u8>().prop_map(|flags| {
        let mut out = Vec::new();
        push_frame(&mut out, frame::PING, flags, 0, &[1; 8]);
        out
    });
    prop_oneof![headers, data, settings, window, ping, raw_frame()]
}

/// An edit of a byte stream; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..).prop_map(|(at, x)| Mutation::Flip(at, x)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(at, n)| Mutation::Delete(at, n)),
        1 => (any::<usize>(), 1usize..40).prop_map(|(at, n)| Mutation::Repeat(at, n)),
    ]
}

fn mutate(mut b: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for e in edits {
        let len = b.len().max(1);
        match e {
            Mutation::Flip(at, x) => {
                if let Some(v) = b.get_mut(at % len) {
                    *v ^= x;
                }
            }
            Mutation::Truncate(at) => b.truncate(at % len),
            Mutation::Insert(at, bytes) => {
                let at = at % (b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(at, n) => {
                let at = at % len;
                let to = (at + n).min(b.len());
                if at < to {
                    b.drain(at..to);
                }
            }
            Mutation::Repeat(at, n) => {
                let at = at % len;
                let to = (at + n).min(b.len());
                if at < to {
                    let copy = b[at..to].to_vec();
                    b.splice(to..to, copy);
                }
            }
        }
    }
    b
}

/// The unmutated response is a response, however it is cut into pieces, by POST and by GET.
#[test]
fn the_valid_response_is_answered_in_any_pieces() {
    for piece in [1, 2, 7, 9, 100, 4096] {
        for method in [Method::Post, Method::Get] {
            let mut wire = Wire::new(valid_response(), piece, End::Silence);
            let mut c = Client::new("doh.test", "/dns-query").with_method(method);
            let r = c.request(&mut wire, &[0; 40]).unwrap();
            assert_eq!((r.status, r.body.as_slice()), (200, BODY));
            assert_eq!(r.content_type.as_deref(), Some(DNS_MESSAGE));
        }
    }
}

/// A server that never stops sending well-formed frames (PINGs) is cut off by the deadline, not by
/// the end of its input: over a socket pair with [`Deadlined`] I/O the client returns a time-out.
#[test]
fn an_endless_stream_of_pings_ends_at_the_deadline() {
    let (client_end, mut server) = UnixStream::pair().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut ping = Vec::new();
        push_frame(&mut ping, frame::PING, 0, 0, &[0; 8]);
        let mut drain = server.try_clone().unwrap();
        std::thread::spawn(move || io::copy(&mut drain, &mut io::sink()));
        while server.write_all(&ping).is_ok() {}
    });
    let limit = Duration::from_millis(300);
    let start = Instant::now();
    let mut io = Deadlined::new(client_end, limit);
    let e = Client::new("doh.test", "/dns-query")
        .request(&mut io, &[0; 40])
        .unwrap_err();
    assert_eq!(e.to_string(), "no answer in time");
    assert!(start.elapsed() < limit + Duration::from_secs(2));
    drop(io);
    feeder.join().unwrap();
}

/// A socket with one deadline for all its reads and writes, as [`crate::tls::Deadline`] gives the
/// client over TLS.
struct Deadlined {
    sock: UnixStream,
    deadline: Instant,
}

impl Deadlined {
    fn new(sock: UnixStream, limit: Duration) -> Self {
        Self {
            sock,
            deadline: Instant::now() + limit,
        }
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        Ok(left)
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.sock.set_read_timeout(Some(left))?;
        self.sock.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.sock.set_write_timeout(Some(left))?;
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes at all.
    #[test]
    fn arbitrary_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        piece in 1usize..64,
        end in end(),
        method in method(),
        message in message(),
    ) {
        check(input, piece, end, method, &message);
    }

    /// Any sequence of frames, after a valid SETTINGS frame or not.
    #[test]
    fn arbitrary_frames(
        settings_first in any::<bool>(),
        frames in proptest::collection::vec(prop_oneof![raw_frame(), plausible_frame()], 0..24),
        piece in prop_oneof![Just(usize::MAX), 1usize..64],
        end in end(),
        method in method(),
        message in message(),
    ) {
        let mut input = Vec::new();
        if settings_first {
            push_frame(&mut input, frame::SETTINGS, 0, 0, &[]);
        }
        input.extend(frames.concat());
        check(input, piece, end, method, &message);
    }

    /// A valid response, edited.
    #[test]
    fn mutated_valid_responses(
        edits in proptest::collection::vec(mutation(), 1..6),
        tail in proptest::collection::vec(plausible_frame(), 0..4),
        piece in prop_oneof![Just(usize::MAX), 1usize..64],
        end in end(),
        method in method(),
    ) {
        let mut input = mutate(valid_response(), &edits);
        input.extend(tail.concat());
        check(input, piece, end, method, &[0; 40]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A header block continued past 16 KiB is refused as soon as it is: the client has read no
    /// further than the frame that crossed the limit (it never buffers more of a block).
    #[test]
    fn long_header_blocks_stop_at_the_limit(
        first in 0usize..=MAX_FRAME,
        more in proptest::collection::vec(0usize..=MAX_FRAME, 1..12),
        fill in prop_oneof![Just(0x88u8), any::<u8>()],
        piece in prop_oneof![Just(usize::MAX), 1usize..4096],
    ) {
        let mut input = Vec::new();
        push_frame(&mut input, frame::HEADERS, 0, 1, &vec![fill; first]);
        let (mut total, mut crossed_at) = (first, None);
        for (i, n) in more.iter().enumerate() {
            let last = i + 1 == more.len();
            let flags = if last { flag::END_HEADERS } else { 0 };
            push_frame(&mut input, frame::CONTINUATION, flags, 1, &vec![fill; *n]);
            total += n;
            if total > MAX_HEADER_BLOCK && crossed_at.is_none() {
                crossed_at = Some(input.len());
            }
        }
        let mut wire = Wire::new(input, piece, End::Eof);
        let got = Client::new("doh.test", "/dns-query").request(&mut wire, &[0; 40]);
        if let Some(limit) = crossed_at {
            prop_assert!(
                matches!(got, Err(H2Error::Hpack(HpackError::TooLarge))),
                "{got:?}"
            );
            prop_assert!(wire.at <= limit, "read {} octets, the limit was crossed at {limit}", wire.at);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over a real socket with a deadline, the server keeping the connection open after its bytes:
    /// a response or an error, within the deadline (plus scheduling slack).
    #[test]
    fn over_a_socket_within_the_deadline(
        input in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            (proptest::collection::vec(mutation(), 1..4))
                .prop_map(|edits| mutate(valid_response(), &edits)),
        ],
        method in method(),
    ) {
        let (client_end, mut server) = UnixStream::pair().unwrap();
        let feeder = std::thread::spawn(move || {
            let _ = server.write_all(&input);
            // Read what the client says until it hangs up; never close first.
            let _ = io::copy(&mut server, &mut io::sink());
        });
        let limit = Duration::from_millis(100);
        let start = Instant::now();
        let mut io = Deadlined::new(client_end, limit);
        let mut client = Client::new("doh.test", "/dns-query").with_method(method);
        if let Ok(r) = client.request(&mut io, &[0; 40]) {
            prop_assert!((200..=999).contains(&r.status));
            prop_assert!(r.body.len() <= MAX_ANSWER);
        }
        prop_assert!(start.elapsed() < limit + Duration::from_secs(2), "{:?}", start.elapsed());
        drop(io);
        feeder.join().unwrap();
    }
}
