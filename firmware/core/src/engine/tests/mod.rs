//! Scenario tests: an engine, a virtual clock and a scripted upstream (the harness here, the
//! scenarios by concern in the files below).

mod admission;
mod answers;
mod cache;
mod dns64;
mod mixed;
mod plain;
mod sessions;
mod upstreams;
mod warm;

use alloc::vec::Vec;
use core::time::Duration;

use super::*;
use crate::policy;
use crate::rng::{Rng, TestRng};
use crate::wire::edns::{self, ede};
use crate::wire::header::{self, rcode};
use crate::wire::message::scan;

const U1: UpstreamId = UpstreamId(1);
const U2: UpstreamId = UpstreamId(2);

fn udp(port: u16) -> ClientAddr {
    ClientAddr::Udp {
        listener: 0,
        peer: core::net::SocketAddr::from(([192, 168, 1, 10], port)),
    }
}

/// A query for `<label>.example.` type A, with an OPT record advertising `edns` if given.
fn query(id: u16, label: &str, edns: Option<u16>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    q.push(label.len() as u8);
    q.extend_from_slice(label.as_bytes());
    q.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
    if let Some(size) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

/// The upstream's answer to a framed query: the question echoed, one A record 10.0.0.<first byte of
/// the label>, an OPT record.
fn answer(frame: &[u8]) -> Vec<u8> {
    let msg = &frame[2..];
    let s = scan(msg).unwrap();
    let mut r = Vec::new();
    r.extend_from_slice(&msg[..2]);
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1]);
    r.extend_from_slice(&msg[12..s.question_end]);
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, msg[13]]);
    r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&r);
    framed
}

/// An engine with one message (DoH or DoQ) upstream (over TCP if `tcp`), `query` sent at 5 ms and its
/// session connected: the engine, that time, the session, and the request's tag and message (framed
/// with its length, as [`answer`] takes it).
fn message_request(tcp: bool, query: &[u8]) -> (Engine<TestRng>, Instant, SessionId, u16, Vec<u8>) {
    let specs = [UpstreamSpec {
        id: U1,
        transport: Transport::Message,
        tcp,
    }];
    let mut e = Engine::new(cfg(), &specs, TestRng::new(3));
    let now = Instant::from_millis(5);
    e.handle_query(now, udp(1), query);
    let Some(Action::Connect { session, .. }) = e.poll_action() else {
        panic!()
    };
    e.handle_upstream_connected(now, session);
    let Some(Action::Request { tag, message, .. }) = e.poll_action() else {
        panic!()
    };
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    (e, now, session, tag, framed)
}

/// Engine settings for scenario tests: defaults without the cache (cache tests turn it on).
fn cfg() -> EngineConfig {
    EngineConfig {
        cache: None,
        ..EngineConfig::default()
    }
}

/// The harness's randomness: [`TestRng`]'s, except for the message IDs a test puts in `ids` (drawn
/// first, in order).
#[derive(Debug)]
struct ScriptRng {
    rng: TestRng,
    ids: VecDeque<u16>,
}

impl ScriptRng {
    fn new(seed: u64) -> Self {
        Self {
            rng: TestRng::new(seed),
            ids: VecDeque::new(),
        }
    }
}

impl Rng for ScriptRng {
    fn fill(&mut self, dst: &mut [u8]) {
        self.rng.fill(dst);
    }

    fn next_u16(&mut self) -> u16 {
        match self.ids.pop_front() {
            Some(id) => id,
            None => self.rng.next_u16(),
        }
    }
}

struct Harness {
    e: Engine<ScriptRng>,
    now: Instant,
    out: Vec<Transmit>,
    connects: Vec<(SessionId, UpstreamId)>,
    sends: Vec<(SessionId, Vec<u8>)>,
    closes: Vec<SessionId>,
    /// Requests the engine stopped waiting for (message sessions).
    cancels: Vec<(SessionId, u16)>,
    events: Vec<Event>,
    plains: Vec<(u16, Vec<u8>)>,
    locals: Vec<(u16, Vec<u8>)>,
}

impl Harness {
    fn new(config: EngineConfig, ups: &[UpstreamId]) -> Self {
        let specs: Vec<UpstreamSpec> = ups
            .iter()
            .map(|&id| UpstreamSpec {
                id,
                transport: Transport::Stream,
                tcp: true,
            })
            .collect();
        Self {
            e: Engine::new(config, &specs, ScriptRng::new(7)),
            now: Instant::from_millis(1_000),
            out: Vec::new(),
            connects: Vec::new(),
            sends: Vec::new(),
            closes: Vec::new(),
            cancels: Vec::new(),
            events: Vec::new(),
            plains: Vec::new(),
            locals: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.e.poll_transmit() {
            self.out.push(t);
        }
        while let Some(a) = self.e.poll_action() {
            match a {
                Action::Connect { session, upstream } => self.connects.push((session, upstream)),
                Action::Send { session, bytes } => {
                    // One entry per frame (the engine appends a turn's queries to one `Send`).
                    let mut rest = &bytes[..];
                    while let Ok(Some((_, used))) = crate::wire::framing::split(rest) {
                        self.sends.push((session, rest[..used].to_vec()));
                        rest = &rest[used..];
                    }
                    assert!(rest.is_empty(), "a Send holds whole frames");
                }
                Action::Request {
                    session,
                    tag,
                    message,
                } => {
                    // Message transports: keep the tag as the frame's ID so `answer` works unchanged.
                    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&message);
                    framed[2..4].copy_from_slice(&tag.to_be_bytes());
                    self.sends.push((session, framed));
                }
                Action::Close { session } => self.closes.push(session),
                Action::Cancel { session, tag } => self.cancels.push((session, tag)),
                Action::PlainQuery { tag, message, to } => match to {
                    PlainTarget::Wan => self.plains.push((tag, message)),
                    PlainTarget::Local => self.locals.push((tag, message)),
                },
            }
        }
        while let Some(ev) = self.e.poll_event() {
            self.events.push(ev);
        }
    }

    fn q(&mut self, client: ClientAddr, bytes: &[u8]) {
        self.e.handle_query(self.now, client, bytes);
        self.drain();
    }

    fn advance(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        // Step through every deadline on the way, like the shell's timer would.
        while let Some(t) = self.e.poll_timeout() {
            if t > target {
                break;
            }
            self.now = t.max(self.now);
            self.e.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
        self.e.handle_timeout(self.now);
        self.drain();
    }

    fn connected(&mut self, s: SessionId) {
        self.e.handle_upstream_connected(self.now, s);
        self.drain();
    }

    fn data(&mut self, s: SessionId, bytes: &[u8]) {
        self.e.handle_upstream_data(self.now, s, bytes);
        self.drain();
    }

    fn closed(&mut self, s: SessionId, r: CloseReason) {
        self.e.handle_upstream_closed(self.now, s, r);
        self.drain();
    }
}

fn rcode_and_ede(msg: &[u8]) -> (u16, Option<(u16, Vec<u8>)>) {
    let s = scan(msg).unwrap();
    let ede = s.opt.and_then(|o| {
        edns::options(&msg[o.rdata_start..o.end])
            .find(|(c, _)| *c == edns::OPTION_EDE)
            .map(|(_, d)| (u16::from_be_bytes([d[0], d[1]]), d[2..].to_vec()))
    });
    (s.rcode(), ede)
}

fn servfail_of(frame: &[u8]) -> Vec<u8> {
    let mut a = answer(frame);
    a[2 + 3] = (a[2 + 3] & 0xf0) | 2;
    a
}
