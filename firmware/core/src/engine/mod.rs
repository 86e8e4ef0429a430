//! The forwarding engine: client queries in, upstream sessions managed, answers out.
//!
//! # Call-order contract
//! The shell owns one [`Engine`] and, after feeding it any input (`handle_*`), drains every output
//! (`poll_transmit`, `poll_action`, `poll_event`) until each returns `None`, then sleeps until
//! [`Engine::poll_timeout`] (or the next input) and calls [`Engine::handle_timeout`]. `now` must never
//! go backwards.
//!
//! # Guarantees
//! * Every query that gets past the header is answered exactly once: with an upstream's answer, a stale
//!   cached answer (EDE 3), or a local error (FORMERR, NOTIMP, BADVERS, SERVFAIL with an Extended DNS
//!   Error) no later than its deadline. Queries whose header is unreadable, and responses sent to us as
//!   queries, are dropped; for a stream client ([`ClientAddr::Tcp`]) every dropped or unanswerable
//!   frame yields [`Event::NoAnswer`], so the shell can account for every frame it handed in.
//! * Nothing is ever sent anywhere but to a session the shell opened over authenticated TLS, with two
//!   narrow, owner-enabled exceptions, each an [`Action::PlainQuery`] typed by its [`PlainTarget`]
//!   (see `plain.rs`): names covered by the captive-portal [`crate::captive::Exception`] the shell
//!   set go to the WAN's DNS, and with `local_resolver` the names the policy keeps on the LAN go to
//!   that LAN resolver. There is no plaintext fallback for anything else.
//! * Every table is bounded by [`EngineConfig`]: queries in flight (`max_inflight`), sessions per
//!   upstream (`max_connections`), upstream IDs per session (`pipeline`), the cache (its own limits).
//! * Upstream message IDs (stream tags for message transports) are drawn from the injected [`Rng`] and
//!   unique per session; answers are matched by session + ID and must repeat the question, in any order.
//!
//! # Several upstreams
//! Each query is placed on one upstream chosen by the [`SelectPolicy`] among those not backing off. If
//! no answer comes within the attempt timeout (about three smoothed RTTs, at most half the deadline),
//! or the upstream answers SERVFAIL, the query is also placed on an upstream it has not tried; the first
//! good answer wins. A session that dies takes its queries to a new placement. Timeouts, SERVFAILs and
//! connection failures count against an upstream; after [`SOFT_LIMIT`] in a row, or any connection
//! failure, it backs off (jittered, doubling, capped) and is tried again afterwards. When every
//! upstream is backing off, the one that comes back first is used: no upstream is ever locked out.

mod plain;
mod types;

pub use plain::MAX_PLAIN_INFLIGHT;

use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::time::Duration;

pub use types::*;

use crate::cache::{Cache, Key};
use crate::dns64;
use crate::policy::{self, LocalAnswer, Policy, Verdict};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::edns::{Ede, ede};
use crate::wire::header::{self, OPCODE_QUERY, rcode};
use crate::wire::message::{self, Scan};
use crate::wire::rewrite::{self, ClientView};
use crate::wire::{framing, respond};

/// Backoff after the first failure; doubles per consecutive failure up to `backoff_max`.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Consecutive time-outs or SERVFAILs after which an upstream backs off.
pub const SOFT_LIMIT: u32 = 3;
/// Every this many queries, the `Fastest` policy picks round-robin to re-measure the others.
const EXPLORE_EVERY: u32 = 32;

/// What a query's timer does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The query's deadline: it is answered (SERVFAIL at worst).
    Deadline,
    /// A placement's attempt timeout: the query is also placed on another upstream.
    Hedge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Waiting for an upstream to leave backoff.
    Waiting { upstream: UpstreamId },
    /// Queued on a session that is still connecting.
    Queued { session: SessionId },
    /// Written to a session under `id` at `at`.
    Sent {
        session: SessionId,
        id: u16,
        at: Instant,
    },
}

#[derive(Debug)]
struct Query {
    generation: u32,
    client: ClientAddr,
    view: ClientView,
    /// The upstream form (ID patched at send time).
    upstream_msg: Vec<u8>,
    question_end: usize,
    deadline: Instant,
    /// Placements made so far (bounded by `max_placements`).
    placements: u8,
    /// Upstreams that timed out or answered SERVFAIL for this query.
    tried: Vec<UpstreamId>,
    /// Where the query is outstanding now.
    places: Vec<Place>,
    /// The last SERVFAIL an upstream gave, passed on if nothing better comes.
    servfail: Option<Vec<u8>>,
    last_reason: Option<CloseReason>,
    cache_key: Option<Key>,
    dns64: Dns64Phase,
}

/// Where a query stands in DNS64 synthesis.
#[derive(Debug, PartialEq, Eq)]
enum Dns64Phase {
    /// Not an AAAA query, or DNS64 off.
    Off,
    /// An AAAA query: a NOERROR answer without AAAA records triggers the A query.
    Aaaa,
    /// Asking for A records; this is the AAAA answer to return if no A record comes.
    A(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    Connecting { deadline: Instant },
    Ready,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    upstream: UpstreamId,
    transport: Transport,
    state: SessionState,
    retired: bool,
    inflight: BTreeMap<u16, (usize, u32)>,
    queued: Vec<(usize, u32)>,
    decoder: framing::Decoder,
    last_activity: Instant,
    last_received: Instant,
}

impl Session {
    fn load(&self) -> usize {
        self.inflight.len() + self.queued.len()
    }
}

#[derive(Debug)]
struct Upstream {
    id: UpstreamId,
    transport: Transport,
    failures: u32,
    soft: u32,
    srtt_ms: Option<u32>,
    backoff_until: Option<Instant>,
    last_error: Option<CloseReason>,
    waiting: Vec<(usize, u32)>,
    up: bool,
}

enum Choice {
    Now(usize),
    After(usize, Instant),
    Nothing,
}

/// The forwarding state machine. See the module documentation for the call-order contract.
#[derive(Debug)]
pub struct Engine<R> {
    config: EngineConfig,
    rng: R,
    upstreams: Vec<Upstream>,
    sessions: Vec<Session>,
    next_session: u64,
    slots: Vec<Option<Query>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    live: usize,
    timers: BinaryHeap<Reverse<(Instant, usize, u32, Timer)>>,
    /// The heap size above which [`Engine::compact_timers`] runs next (besides the fixed bound).
    timers_compact_at: usize,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
    rr: u32,
    cache: Option<Cache>,
    policy: Option<Policy>,
    /// `lanveil-ctl leak-test` probes (kept across [`Engine::set_policy`]).
    leak_probes: crate::leak_probe::Probes,
    log: VecDeque<QueryLogEntry>,
    clients: BTreeMap<core::net::IpAddr, ClientState>,
    plain_exception: Option<crate::captive::Exception>,
    plain: Vec<plain::PlainQuery>,
    /// Where messages are written before they are copied out at their final size (no zeroed
    /// allocation per message); as long as the longest message written so far (≤ 64 KiB).
    scratch: Vec<u8>,
    /// [`Event::NoAnswer`]s emitted so far (lets `handle_query` see whether a frame was accounted for).
    no_answers: u64,
}

/// Per-source accounting (token bucket in thousandths of a query, queries in flight).
#[derive(Clone, Copy, Debug)]
struct ClientState {
    tokens_milli: u64,
    last: Instant,
    inflight: u32,
}

/// What a client's answer must look like: its ID, its EDNS, the size its transport allows.
fn client_view(client: ClientAddr, id: u16, scan: &Scan) -> ClientView {
    let max_len = match client {
        ClientAddr::Udp { .. } => ClientView::udp_limit(scan.opt.map(|o| o.udp_size)),
        ClientAddr::Tcp { .. } => usize::from(u16::MAX),
    };
    ClientView {
        id,
        edns: scan.opt.map(|o| o.dnssec_ok()),
        max_len,
    }
}

impl<R: Rng> Engine<R> {
    /// A new engine forwarding to `upstreams` (in configuration order).
    pub fn new(config: EngineConfig, upstreams: &[UpstreamSpec], rng: R) -> Self {
        let mut e = Self {
            config,
            rng,
            upstreams: Vec::new(),
            sessions: Vec::new(),
            next_session: 1,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            live: 0,
            timers: BinaryHeap::new(),
            timers_compact_at: 0,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            rr: 0,
            cache: config.cache.map(Cache::new),
            policy: None,
            leak_probes: crate::leak_probe::Probes::default(),
            log: VecDeque::new(),
            clients: BTreeMap::new(),
            plain_exception: None,
            plain: Vec::new(),
            no_answers: 0,
            scratch: Vec::new(),
        };
        e.set_upstreams(upstreams);
        e
    }

    /// Applies a new configuration. Upstreams whose id is kept keep their sessions and health;
    /// sessions of removed upstreams stop taking queries and close once their queries are answered.
    /// The cache is kept if its settings did not change.
    pub fn reconfigure(&mut self, now: Instant, config: EngineConfig, upstreams: &[UpstreamSpec]) {
        if config.cache != self.config.cache {
            self.cache = config.cache.map(Cache::new);
        }
        self.config = config;
        while self.log.len() > self.config.query_log {
            self.log.pop_front();
        }
        self.set_upstreams(upstreams);
        let waiting: Vec<_> = self
            .upstreams
            .iter_mut()
            .flat_map(|u| core::mem::take(&mut u.waiting))
            .collect();
        for (slot, generation) in waiting {
            self.forget_place(slot, generation, |p| matches!(p, Place::Waiting { .. }));
            self.place(now, slot, generation);
        }
        self.close_idle_retired();
    }

    fn set_upstreams(&mut self, specs: &[UpstreamSpec]) {
        let mut old = core::mem::take(&mut self.upstreams);
        let mut orphans = Vec::new();
        for spec in specs {
            match old
                .iter()
                .position(|u| u.id == spec.id && u.transport == spec.transport)
            {
                Some(i) => self.upstreams.push(old.swap_remove(i)),
                None => self.upstreams.push(Upstream {
                    id: spec.id,
                    transport: spec.transport,
                    failures: 0,
                    soft: 0,
                    srtt_ms: None,
                    backoff_until: None,
                    last_error: None,
                    waiting: Vec::new(),
                    up: false,
                }),
            }
        }
        for u in old {
            orphans.extend(u.waiting);
            for s in self.sessions.iter_mut().filter(|s| s.upstream == u.id) {
                s.retired = true;
            }
        }
        if let Some(first) = self.upstreams.first_mut() {
            first.waiting.extend(orphans);
        }
    }

    /// Sets the local answer policy (access control, local zones, canaries, DDR); `None` forwards
    /// everything from everyone (tests, embedding).
    pub fn set_policy(&mut self, policy: Option<Policy>) {
        self.policy = policy;
    }

    /// Registers a `lanveil-ctl leak-test` probe: its name is answered with its nonce for
    /// [`crate::leak_probe::LIFETIME`] (see [`crate::leak_probe`]).
    pub fn add_leak_probe(&mut self, now: Instant, probe: crate::leak_probe::Probe) {
        self.leak_probes.insert(now, probe);
    }

    /// The opt-in query log, oldest first (empty unless `query_log` > 0).
    pub fn query_log(&self) -> impl Iterator<Item = &QueryLogEntry> {
        self.log.iter()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Client queries currently in flight.
    pub fn inflight(&self) -> usize {
        self.live
    }

    /// Open (connecting or ready) upstream sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Health of each upstream, in configuration order.
    pub fn upstream_health(&self, now: Instant) -> Vec<UpstreamHealth> {
        self.upstreams
            .iter()
            .map(|u| UpstreamHealth {
                id: u.id,
                up: u.up,
                backing_off: u.backoff_until.is_some_and(|t| t > now),
                srtt_ms: u.srtt_ms,
                last_error: u.last_error,
            })
            .collect()
    }

    /// Cached answers and their bytes, if the cache is on.
    pub fn cache_usage(&self) -> Option<(usize, usize)> {
        self.cache.as_ref().map(|c| (c.len(), c.bytes()))
    }

    /// Cache counters, if the cache is on.
    pub fn cache_stats(&self) -> Option<crate::cache::CacheStats> {
        self.cache.as_ref().map(Cache::stats)
    }

    /// A client query arrived. `bytes` is one DNS message (a UDP payload or one TCP frame). A TCP
    /// frame ends in exactly one answer (now or later) or one [`Event::NoAnswer`].
    pub fn handle_query(&mut self, now: Instant, client: ClientAddr, bytes: &[u8]) {
        if !matches!(client, ClientAddr::Tcp { .. }) {
            return self.query(now, client, bytes);
        }
        let before = (
            self.transmits.len(),
            self.live,
            self.plain.len(),
            self.no_answers,
        );
        self.query(now, client, bytes);
        if (
            self.transmits.len(),
            self.live,
            self.plain.len(),
            self.no_answers,
        ) == before
        {
            // Neither answered nor accepted: dropped.
            self.no_answer(client);
        }
    }

    /// Tells the shell that `client`'s frame gets no answer (stream clients only).
    fn no_answer(&mut self, client: ClientAddr) {
        if let ClientAddr::Tcp { conn, .. } = client {
            self.no_answers += 1;
            self.events.push_back(Event::NoAnswer { conn });
        }
    }

    fn query(&mut self, now: Instant, client: ClientAddr, bytes: &[u8]) {
        self.stats.queries += 1;
        let Ok(hdr) = header::Header::parse(bytes) else {
            self.stats.dropped += 1;
            return;
        };
        if hdr.is_response() {
            self.stats.dropped += 1;
            return;
        }
        let allowed = self
            .policy
            .as_ref()
            .is_none_or(|p| p.allowed(Some(client.peer().ip())));
        if allowed && !self.admit(now, client) {
            self.stats.rate_limited += 1;
            if self.config.clients.action == RateAction::Drop {
                return;
            }
            if let Ok(scan) = message::scan(bytes) {
                let e = Ede {
                    code: ede::OTHER,
                    text: "lanveil: rate limited",
                };
                self.answer_locally(client, bytes, Some(&scan), rcode::REFUSED, Some(e));
            }
            return;
        }
        let scan = match message::scan(bytes) {
            Ok(s) => s,
            Err(_) if !allowed => {
                // Never answer malformed input from outside: nothing to reflect or amplify.
                self.stats.dropped += 1;
                return;
            }
            Err(_) => {
                self.stats.formerr += 1;
                self.answer_locally(client, bytes, None, rcode::FORMERR, None);
                return;
            }
        };
        if hdr.opcode() != OPCODE_QUERY {
            self.stats.notimp += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::NOTIMP, None);
            return;
        }
        if hdr.qdcount != 1 {
            self.stats.formerr += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::FORMERR, None);
            return;
        }
        if scan.opt.is_some_and(|o| o.version > 0) {
            self.stats.badvers += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::BADVERS, None);
            return;
        }
        if let Some(policy) = self.policy.as_ref() {
            match policy.decide(Some(client.peer().ip()), bytes, &scan) {
                Verdict::Forward => {}
                Verdict::ForwardLocal => {
                    // Only with `local_resolver`: to the LAN resolver, never to an upstream.
                    let view = client_view(client, hdr.id, &scan);
                    self.local_query(now, client, bytes, &scan, &view);
                    return;
                }
                Verdict::Answer(answer) => {
                    let mut buf = vec![0u8; policy::MAX_ANSWER_LEN];
                    // A leak-test probe's name (under resolver.arpa, never forwarded) gets its nonce.
                    let probe = match answer {
                        LocalAnswer::Refused | LocalAnswer::FormErr => None,
                        _ => self.leak_probes.answer(now, bytes, &scan, &mut buf),
                    };
                    let written =
                        probe.unwrap_or_else(|| policy.answer(bytes, &scan, &answer, &mut buf));
                    if let Ok(n) = written {
                        buf.truncate(n);
                        if answer == LocalAnswer::Refused {
                            self.stats.refused += 1;
                        } else {
                            self.stats.local_answers += 1;
                        }
                        self.log_answer(now, &buf, AnswerSource::Local);
                        self.transmits.push_back(Transmit {
                            to: client,
                            bytes: buf,
                        });
                    }
                    return;
                }
            }
        }
        let view = client_view(client, hdr.id, &scan);
        if let (Some(prefix), Some(q)) = (self.config.dns64, scan.question)
            && dns64::is_ipv4only_arpa(&bytes[header::LEN..q.name_end])
            && let Some(answer) = dns64::ipv4only_answer(bytes, &scan, &prefix)
        {
            // RFC 8880 §7.2: a DNS64 resolver answers ipv4only.arpa from its own configuration.
            self.stats.local_answers += 1;
            self.answer_from(client, &view, &answer, None);
            self.log_answer(now, &answer, AnswerSource::Local);
            return;
        }
        if self.plain_exception.is_some() && self.plain_query(now, client, bytes, &scan, &view) {
            return;
        }
        let cache_key = self
            .cache
            .as_ref()
            .and_then(|_| Key::from_query(bytes, &scan));
        if let (Some(cache), Some(key)) = (self.cache.as_mut(), cache_key.as_ref())
            && let Some(cached) = cache.get(now, key)
        {
            self.stats.cache_hits += 1;
            self.answer_from(client, &view, &cached, None);
            self.log_answer(now, &cached, AnswerSource::Cache);
            return;
        }
        if !self.client_has_room(client) {
            self.stats.client_overloaded += 1;
            let e = Ede {
                code: ede::OTHER,
                text: "lanveil: too many queries in flight from this client",
            };
            self.answer_locally(client, bytes, Some(&scan), rcode::SERVFAIL, Some(e));
            return;
        }
        if self.live >= self.config.max_inflight {
            self.stats.overloaded += 1;
            let e = Ede {
                code: ede::OTHER,
                text: "lanveil overloaded: too many queries in flight",
            };
            self.answer_locally(client, bytes, Some(&scan), rcode::SERVFAIL, Some(e));
            return;
        }
        let len = scan.question_end + rewrite::QUERY_OVERHEAD;
        let Some(upstream_msg) =
            self.write_out(len, |buf| rewrite::forward_query(bytes, &scan, 0, buf))
        else {
            self.stats.formerr += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::FORMERR, None);
            return;
        };
        let deadline = now + self.config.query_timeout;
        let (slot, generation) = self.alloc_slot(Query {
            generation: 0,
            client,
            view,
            upstream_msg,
            question_end: scan.question_end,
            deadline,
            placements: 0,
            tried: Vec::new(),
            places: Vec::new(),
            servfail: None,
            last_reason: None,
            cache_key,
            dns64: match (self.config.dns64, scan.question) {
                (Some(_), Some(q)) if q.qtype == dns64::TYPE_AAAA => Dns64Phase::Aaaa,
                _ => Dns64Phase::Off,
            },
        });
        self.push_timer(deadline, slot, generation, Timer::Deadline);
        self.place(now, slot, generation);
    }

    /// A connection the shell opened for `session` completed its TLS handshake (authenticated).
    pub fn handle_upstream_connected(&mut self, now: Instant, session: SessionId) {
        let Some(si) = self.session_index(session) else {
            return;
        };
        let s = &mut self.sessions[si];
        s.state = SessionState::Ready;
        s.last_activity = now;
        s.last_received = now;
        let upstream = s.upstream;
        let queued = core::mem::take(&mut s.queued);
        if let Some(u) = self.upstreams.iter_mut().find(|u| u.id == upstream) {
            u.failures = 0;
            u.backoff_until = None;
            u.last_error = None;
            if !u.up {
                u.up = true;
                self.events.push_back(Event::UpstreamUp { upstream });
            }
        }
        self.stats.upstream_connects += 1;
        for (slot, generation) in queued {
            if self.forget_place(slot, generation, |p| *p == Place::Queued { session }) {
                self.send_on(now, si, slot, generation);
            }
        }
    }

    /// Bytes arrived on a stream-transport (DoT) session.
    pub fn handle_upstream_data(&mut self, now: Instant, session: SessionId, bytes: &[u8]) {
        let Some(mut si) = self.session_index(session) else {
            return;
        };
        self.sessions[si].last_received = now;
        // The decoder is taken out of the session while its frames are handled, so they are read
        // in place, not copied.
        let mut decoder = core::mem::take(&mut self.sessions[si].decoder);
        if decoder.buffered() == 0 {
            // Nothing pending (the usual case): whole answers are read straight from `bytes`; only
            // an incomplete one at the end is buffered.
            let mut rest = bytes;
            loop {
                match framing::split(rest) {
                    Ok(Some((frame, consumed))) => {
                        rest = rest.get(consumed..).unwrap_or_default();
                        let Some(now_at) = self.handle_frame(now, si, session, frame) else {
                            return;
                        };
                        si = now_at;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        self.fail_session(now, si, CloseReason::Protocol);
                        return;
                    }
                }
            }
            decoder.push(rest);
        } else {
            decoder.push(bytes);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        let Some(now_at) = self.handle_frame(now, si, session, frame) else {
                            return;
                        };
                        si = now_at;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        self.fail_session(now, si, CloseReason::Protocol);
                        return;
                    }
                }
            }
        }
        self.sessions[si].decoder = decoder;
        self.maybe_close_retired(si);
    }

    /// One answer from session `si` (`session`). Returns the session's index afterwards (other
    /// sessions may have been removed meanwhile), `None` if it failed or is gone (the rest of what it
    /// sent goes with it).
    fn handle_frame(
        &mut self,
        now: Instant,
        si: usize,
        session: SessionId,
        frame: &[u8],
    ) -> Option<usize> {
        let Ok(hdr) = header::Header::parse(frame) else {
            self.fail_session(now, si, CloseReason::Protocol);
            return None;
        };
        if let Err(reason) = self.handle_response(now, si, hdr.id, frame) {
            self.fail_session(now, si, reason);
            return None;
        }
        self.session_index(session)
    }

    /// The answer to request `tag` on a message-transport (DoH) session.
    pub fn handle_upstream_response(
        &mut self,
        now: Instant,
        session: SessionId,
        tag: u16,
        bytes: &[u8],
    ) {
        let Some(si) = self.session_index(session) else {
            return;
        };
        self.sessions[si].last_received = now;
        if let Err(reason) = self.handle_response(now, si, tag, bytes) {
            self.fail_session(now, si, reason);
            return;
        }
        if let Some(si) = self.session_index(session) {
            self.maybe_close_retired(si);
        }
    }

    /// Request `tag` on a message-transport session failed without an answer (HTTP error status, stream
    /// reset): it counts against the upstream and the query tries another one.
    pub fn handle_upstream_request_failed(&mut self, now: Instant, session: SessionId, tag: u16) {
        let Some(si) = self.session_index(session) else {
            return;
        };
        self.sessions[si].last_received = now;
        let Some((slot, generation)) = self.sessions[si].inflight.remove(&tag) else {
            return;
        };
        let upstream = self.sessions[si].upstream;
        self.forget_place(
            slot,
            generation,
            |p| matches!(p, Place::Sent { session: s, id, .. } if *s == session && *id == tag),
        );
        self.soft_failure(now, upstream, CloseReason::Protocol);
        if let Some(Some(q)) = self.slots.get_mut(slot) {
            q.tried.push(upstream);
            q.last_reason = Some(CloseReason::Protocol);
        }
        self.place(now, slot, generation);
    }

    /// `session` ended (connect failure, TLS failure, reset, EOF). Its queries are placed again if their
    /// deadline allows, else answered.
    pub fn handle_upstream_closed(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: CloseReason,
    ) {
        let Some(si) = self.session_index(session) else {
            return;
        };
        self.drop_session(now, si, reason);
    }

    /// Timers: query deadlines and hedges, connect deadlines, idle and stalled sessions, backoff ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Sessions first: a stalled session fails its queries with the more precise reason.
        let mut i = 0;
        while i < self.sessions.len() {
            let s = &self.sessions[i];
            match s.state {
                SessionState::Connecting { deadline } if deadline <= now => {
                    self.actions.push_back(Action::Close { session: s.id });
                    self.drop_session(now, i, CloseReason::Timeout);
                    continue;
                }
                SessionState::Ready
                    if s.load() == 0
                        && now.saturating_since(s.last_activity) >= self.config.idle_timeout =>
                {
                    self.actions.push_back(Action::Close { session: s.id });
                    self.sessions.swap_remove(i);
                    continue;
                }
                SessionState::Ready
                    if !s.inflight.is_empty()
                        && now.saturating_since(s.last_received) >= self.config.query_timeout
                        && now.saturating_since(s.last_activity) >= self.config.query_timeout =>
                {
                    // Queries outstanding and not a byte received for a whole query timeout: the
                    // connection is stalled or half-open (e.g. after a WAN address change).
                    self.actions.push_back(Action::Close { session: s.id });
                    self.drop_session(now, i, CloseReason::Stalled);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        while let Some(&Reverse((at, slot, generation, kind))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if !self.query_is(slot, generation) {
                continue;
            }
            match kind {
                Timer::Deadline => self.time_out_query(now, slot, generation),
                Timer::Hedge => self.hedge(now, slot, generation),
            }
        }
        self.plain_timeouts(now);
        for ui in 0..self.upstreams.len() {
            let u = &mut self.upstreams[ui];
            if u.backoff_until.is_some_and(|t| t <= now) && !u.waiting.is_empty() {
                let id = u.id;
                let waiting = core::mem::take(&mut u.waiting);
                for (slot, generation) in waiting {
                    if self
                        .forget_place(slot, generation, |p| *p == Place::Waiting { upstream: id })
                    {
                        self.place(now, slot, generation);
                    }
                }
            }
        }
    }

    /// When [`Engine::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.timers.peek().map(|Reverse((d, _, _, _))| *d);
        let mut consider = |c: Instant| t = Some(t.map_or(c, |x| x.min(c)));
        for s in &self.sessions {
            match s.state {
                SessionState::Connecting { deadline } => consider(deadline),
                SessionState::Ready if s.load() == 0 => {
                    consider(s.last_activity + self.config.idle_timeout);
                }
                SessionState::Ready if !s.inflight.is_empty() => {
                    consider(s.last_received.max(s.last_activity) + self.config.query_timeout);
                }
                SessionState::Ready => {}
            }
        }
        for u in &self.upstreams {
            if let (Some(b), false) = (u.backoff_until, u.waiting.is_empty()) {
                consider(b);
            }
        }
        if let Some(d) = self.plain_deadline() {
            consider(d);
        }
        t
    }

    /// The next answer for a client.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing the shell must do to an upstream connection.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next state change worth logging (never carries names or client addresses).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- query table -----

    fn alloc_slot(&mut self, mut q: Query) -> (usize, u32) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
        };
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        q.generation = self.generations[slot];
        if let Some(c) = self.clients.get_mut(&q.client.peer().ip()) {
            c.inflight += 1;
        }
        let generation = q.generation;
        self.slots[slot] = Some(q);
        self.live += 1;
        (slot, generation)
    }

    /// Removes a query from the table and from every place it is outstanding. Its `upstream_msg`
    /// carries the client's own question again (DNS64 asks upstream for A records in its place), so
    /// a SERVFAIL or a query-log entry made from it shows what the client asked.
    fn take_query(&mut self, slot: usize) -> Option<Query> {
        self.withdraw_places(slot);
        let mut q = self.slots.get_mut(slot)?.take()?;
        let qt = q.question_end.saturating_sub(4);
        if let (Dns64Phase::A(_), Some(t)) = (&q.dns64, q.upstream_msg.get_mut(qt..qt + 2)) {
            t.copy_from_slice(&dns64::TYPE_AAAA.to_be_bytes());
        }
        self.free.push(slot);
        self.live -= 1;
        if let Some(c) = self.clients.get_mut(&q.client.peer().ip()) {
            c.inflight = c.inflight.saturating_sub(1);
        }
        Some(q)
    }

    /// Takes a live query out of every place it is outstanding (it stays in the table).
    fn withdraw_places(&mut self, slot: usize) {
        let Some(Some(q)) = self.slots.get_mut(slot) else {
            return;
        };
        let places = core::mem::take(&mut q.places);
        for p in places {
            match p {
                Place::Waiting { upstream } => {
                    if let Some(u) = self.upstreams.iter_mut().find(|u| u.id == upstream) {
                        u.waiting.retain(|&(s, _)| s != slot);
                    }
                }
                Place::Queued { session } => {
                    if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session) {
                        s.queued.retain(|&(s, _)| s != slot);
                    }
                }
                Place::Sent { session, id, .. } => {
                    if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session) {
                        s.inflight.remove(&id);
                    }
                }
            }
        }
    }

    fn query_is(&self, slot: usize, generation: u32) -> bool {
        matches!(self.slots.get(slot), Some(Some(q)) if q.generation == generation)
    }

    /// Removes the places matching `f` from a live query; `false` if the query is gone.
    fn forget_place(&mut self, slot: usize, generation: u32, f: impl Fn(&Place) -> bool) -> bool {
        match self.slots.get_mut(slot) {
            Some(Some(q)) if q.generation == generation => {
                q.places.retain(|p| !f(p));
                true
            }
            _ => false,
        }
    }

    /// Arms a timer for query `slot`/`generation` (timers of queries that are gone are skipped when
    /// they fire, and dropped by compaction).
    fn push_timer(&mut self, at: Instant, slot: usize, generation: u32, kind: Timer) {
        self.timers.push(Reverse((at, slot, generation, kind)));
        self.compact_timers();
    }

    /// Keeps the lazy-deletion heap bounded: once it holds more than 4 × `max_inflight` + 16 entries,
    /// and more than twice what the last compaction left, the timers of queries that are gone are
    /// dropped. Every timer of a live query stays, whatever its kind (its deadline and any pending
    /// hedge: one per placement). So the heap never stays above the larger of those two bounds, and a
    /// heap of mostly live timers is not rescanned on every push.
    fn compact_timers(&mut self) {
        let bound = (4 * self.config.max_inflight + 16).max(self.timers_compact_at);
        if self.timers.len() <= bound {
            return;
        }
        let slots = &self.slots;
        self.timers.retain(|&Reverse((_, slot, generation, _))| {
            matches!(slots.get(slot), Some(Some(q)) if q.generation == generation)
        });
        self.timers_compact_at = 2 * self.timers.len();
    }

    fn session_index(&self, id: SessionId) -> Option<usize> {
        self.sessions.iter().position(|s| s.id == id)
    }

    // ----- answers -----

    /// Runs `write` on the scratch buffer (at least `len` octets, not zeroed) and returns what it
    /// wrote as a `Vec` of exactly that size.
    fn write_out(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<usize, crate::wire::Error>,
    ) -> Option<Vec<u8>> {
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        let buf = self.scratch.get_mut(..len)?;
        let n = write(buf).ok()?;
        buf.get(..n).map(<[u8]>::to_vec)
    }

    fn answer_locally(
        &mut self,
        client: ClientAddr,
        query: &[u8],
        scan: Option<&Scan>,
        rc: u16,
        e: Option<Ede<'_>>,
    ) {
        let answer = self.write_out(respond::MAX_LOCAL_ANSWER, |buf| {
            respond::respond(query, scan, rc, e, buf)
        });
        match answer {
            Some(bytes) => self.transmits.push_back(Transmit { to: client, bytes }),
            None => self.no_answer(client),
        }
    }

    /// Sends an upstream-shaped answer (from an upstream or the cache) to a client; `extra` adds
    /// lanveil's own Extended DNS Error.
    fn answer_from(
        &mut self,
        client: ClientAddr,
        view: &ClientView,
        msg: &[u8],
        extra: Option<Ede<'_>>,
    ) -> bool {
        let Ok(scan) = message::scan(msg) else {
            return false;
        };
        self.answer_scanned(client, view, msg, &scan, extra)
    }

    /// [`Self::answer_from`] for a message already scanned (the upstream path scans each answer once).
    fn answer_scanned(
        &mut self,
        client: ClientAddr,
        view: &ClientView,
        msg: &[u8],
        scan: &Scan,
        extra: Option<Ede<'_>>,
    ) -> bool {
        let len = msg.len() + 16 + extra.map_or(0, |e| e.option_len());
        let Some(out) = self.write_out(len, |buf| rewrite::to_client(msg, scan, view, extra, buf))
        else {
            return false;
        };
        if out.len() < msg.len() && view.max_len < msg.len() {
            self.stats.truncated += 1;
        }
        self.transmits.push_back(Transmit {
            to: client,
            bytes: out,
        });
        true
    }

    /// Ends a query that got no good answer: a stale cached answer if there is one (RFC 8767, EDE 3),
    /// else the last SERVFAIL an upstream gave, else lanveil's own SERVFAIL with an EDE.
    fn finish_failed(&mut self, now: Instant, slot: usize, reason: Option<CloseReason>) {
        let Some(q) = self.take_query(slot) else {
            return;
        };
        let reason = reason.or(q.last_reason);
        if let Dns64Phase::A(aaaa) = &q.dns64 {
            // The A query failed: the AAAA answer (NODATA) stands.
            if self.answer_from(q.client, &q.view, aaaa, None) {
                self.log_answer(now, aaaa, AnswerSource::Upstream);
                return;
            }
        }
        if let (Some(cache), Some(key)) = (self.cache.as_mut(), q.cache_key.as_ref())
            && let Some(stale) = cache.get_stale(now, key)
        {
            self.stats.stale_answers += 1;
            let e = Ede {
                code: ede::STALE_ANSWER,
                text: ede_for(reason).text,
            };
            if self.answer_from(q.client, &q.view, &stale, Some(e)) {
                self.log_answer(now, &stale, AnswerSource::Stale);
                return;
            }
        }
        if let Some(sf) = &q.servfail {
            if reason.is_none()
                && let (Some(cache), Some(key)) = (self.cache.as_mut(), q.cache_key.clone())
            {
                // Every upstream tried answered SERVFAIL, and nothing of ours (a time-out, a
                // connection or TLS failure) took part: a final SERVFAIL, cached for at most
                // `servfail_ttl` (RFC 2308 §7.1).
                cache.insert(now, key, sf);
            }
            if self.answer_from(q.client, &q.view, sf, None) {
                self.stats.servfail += 1;
                self.log_answer(now, sf, AnswerSource::Upstream);
                return;
            }
        }
        self.log_answer(now, &q.upstream_msg, AnswerSource::Failed);
        self.servfail(q, ede_for(reason));
    }

    /// Answers a query (already removed from every table) with lanveil's SERVFAIL + EDE.
    fn servfail(&mut self, q: Query, e: Ede<'_>) {
        let mut query = q.upstream_msg;
        let _ = header::set_id(&mut query, q.view.id);
        let Ok(scan) = message::scan(&query) else {
            self.no_answer(q.client);
            return;
        };
        let mut buf = vec![0u8; respond::MAX_LOCAL_ANSWER];
        let client_scan = Scan {
            opt: if q.view.edns.is_some() {
                scan.opt
            } else {
                None
            },
            ..scan
        };
        // The upstream form kept the client's opcode, RD, CD and DO bits, so the answer mirrors them.
        if let Ok(n) = respond::respond(
            &query,
            Some(&client_scan),
            rcode::SERVFAIL,
            Some(e),
            &mut buf,
        ) {
            buf.truncate(n);
            self.stats.servfail += 1;
            self.stats.failures_by_ede[usize::from(e.code).min(31)] += 1;
            self.transmits.push_back(Transmit {
                to: q.client,
                bytes: buf,
            });
        } else {
            self.no_answer(q.client);
        }
    }

    fn limited(&self, ip: core::net::IpAddr) -> bool {
        self.config.clients.limit_loopback || !ip.is_loopback()
    }

    /// Token bucket per source: `false` if the query is over the source's rate.
    fn admit(&mut self, now: Instant, client: ClientAddr) -> bool {
        let limits = self.config.clients;
        let ip = client.peer().ip();
        if (limits.rate_qps == 0 && limits.max_inflight == 0) || !self.limited(ip) {
            return true;
        }
        let cap = u64::from(limits.burst.max(1)) * 1000;
        if !self.clients.contains_key(&ip) && self.clients.len() >= limits.table_size.max(1) {
            // Forget idle sources, oldest first; a table of busy sources is not grown.
            let idle: Vec<_> = self
                .clients
                .iter()
                .filter(|(_, c)| c.inflight == 0)
                .map(|(k, c)| (c.last, *k))
                .collect();
            let mut idle = idle;
            idle.sort_unstable();
            for (_, k) in idle.iter().take((limits.table_size / 4).max(1)) {
                self.clients.remove(k);
            }
            if self.clients.len() >= limits.table_size.max(1) {
                return false;
            }
        }
        let c = self.clients.entry(ip).or_insert(ClientState {
            tokens_milli: cap,
            last: now,
            inflight: 0,
        });
        if limits.rate_qps == 0 {
            c.last = now;
            return true;
        }
        let elapsed = u64::try_from(now.saturating_since(c.last).as_millis()).unwrap_or(u64::MAX);
        c.tokens_milli =
            (c.tokens_milli + elapsed.saturating_mul(u64::from(limits.rate_qps))).min(cap);
        c.last = now;
        if c.tokens_milli >= 1000 {
            c.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }

    fn client_has_room(&self, client: ClientAddr) -> bool {
        let max = self.config.clients.max_inflight;
        let ip = client.peer().ip();
        max == 0
            || !self.limited(ip)
            || self
                .clients
                .get(&ip)
                .is_none_or(|c| (c.inflight as usize) < max)
    }

    /// Records an answer in the query log (only when enabled: names are kept nowhere otherwise).
    fn log_answer(&mut self, now: Instant, msg: &[u8], source: AnswerSource) {
        if self.config.query_log == 0 {
            return;
        }
        let Ok(scan) = message::scan(msg) else {
            return;
        };
        let Some(q) = scan.question else {
            return;
        };
        let rcode = if source == AnswerSource::Failed {
            rcode::SERVFAIL
        } else {
            scan.rcode()
        };
        let name = crate::wire::name::to_text(msg, header::LEN, q.name_end);
        if self.log.len() >= self.config.query_log {
            self.log.pop_front();
        }
        self.log.push_back(QueryLogEntry {
            at: now,
            name,
            qtype: q.qtype,
            rcode,
            source,
        });
    }

    // ----- placement -----

    fn max_placements(&self) -> u8 {
        u8::try_from(self.upstreams.len() + 1)
            .unwrap_or(u8::MAX)
            .clamp(2, 5)
    }

    fn available(&self, u: &Upstream, now: Instant) -> bool {
        u.backoff_until.is_none_or(|t| t <= now)
            || (u.soft < SOFT_LIMIT && self.has_ready_session(u.id))
    }

    /// Picks an upstream for a query that has tried `exclude`.
    fn select(&mut self, now: Instant, exclude: &[UpstreamId]) -> Choice {
        // No lists are built: this runs for every query, over a handful of upstreams.
        let n = self.upstreams.len();
        let candidate = |e: &Self, i: usize| !exclude.contains(&e.upstreams[i].id);
        let available = |e: &Self, i: usize| candidate(e, i) && e.available(&e.upstreams[i], now);
        let count = (0..n).filter(|&i| available(self, i)).count();
        if count == 0 {
            return match (0..n)
                .filter(|&i| candidate(self, i))
                .map(|i| (i, self.upstreams[i].backoff_until.unwrap_or(now)))
                .min_by_key(|&(_, t)| t)
            {
                Some((ui, until)) => Choice::After(ui, until),
                None => Choice::Nothing,
            };
        }
        self.rr = self.rr.wrapping_add(1);
        let rr = self.rr as usize;
        let mut usable = (0..n).filter(|&i| available(self, i));
        let ui = match self.config.policy {
            SelectPolicy::Failover => usable.next(),
            SelectPolicy::RoundRobin => usable.nth(rr % count),
            SelectPolicy::Fastest if self.rr.is_multiple_of(EXPLORE_EVERY) => {
                usable.nth(rr % count)
            }
            SelectPolicy::Fastest => usable.min_by_key(|&i| self.upstreams[i].srtt_ms.unwrap_or(0)),
        };
        ui.map_or(Choice::Nothing, Choice::Now)
    }

    /// Places a query on an upstream (another one than those it tried, if possible).
    fn place(&mut self, now: Instant, slot: usize, generation: u32) {
        let Some(Some(q)) = self.slots.get(slot) else {
            return;
        };
        if q.generation != generation {
            return;
        }
        let (placements, deadline, outstanding) = (q.placements, q.deadline, !q.places.is_empty());
        let got_servfail = q.servfail.is_some();
        let tried = q.tried.clone();
        if placements >= self.max_placements() {
            if !outstanding {
                self.finish_failed(now, slot, None);
            }
            return;
        }
        let mut choice = self.select(now, &tried);
        if matches!(choice, Choice::Nothing) && !outstanding && !got_servfail {
            // Every upstream failed this query once, without a SERVFAIL: one more try anywhere.
            choice = self.select(now, &[]);
        }
        match choice {
            Choice::Nothing => {
                if !outstanding {
                    self.finish_failed(now, slot, None);
                }
            }
            Choice::After(ui, until) => {
                if outstanding {
                    return;
                }
                if until >= deadline {
                    // It cannot succeed in time: answer now rather than at the deadline. That is a
                    // time-out of ours, whatever the upstreams answered so far.
                    let reason = self.upstreams[ui].last_error;
                    if let Some(Some(q)) = self.slots.get_mut(slot) {
                        q.last_reason.get_or_insert(CloseReason::Timeout);
                    }
                    self.finish_failed(now, slot, reason);
                    return;
                }
                let upstream = self.upstreams[ui].id;
                self.upstreams[ui].waiting.push((slot, generation));
                if let Some(Some(q)) = self.slots.get_mut(slot) {
                    q.places.push(Place::Waiting { upstream });
                }
            }
            Choice::Now(ui) => self.place_on(now, ui, slot, generation),
        }
    }

    fn place_on(&mut self, now: Instant, ui: usize, slot: usize, generation: u32) {
        let upstream = self.upstreams[ui].id;
        let transport = self.upstreams[ui].transport;
        let pipeline = self.config.pipeline;
        let pick = |want_ready: bool| {
            self.sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| s.upstream == upstream && !s.retired)
                .filter(|(_, s)| {
                    (s.state == SessionState::Ready) == want_ready && s.load() < pipeline
                })
                .min_by_key(|(_, s)| s.load())
                .map(|(i, _)| i)
        };
        let open = self
            .sessions
            .iter()
            .filter(|s| s.upstream == upstream && !s.retired)
            .count();
        let si = if let Some(si) = pick(true) {
            si
        } else if let Some(si) = pick(false) {
            si
        } else if open < self.config.max_connections {
            self.open_session(now, upstream, transport)
        } else {
            match self
                .sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| s.upstream == upstream && !s.retired)
                .min_by_key(|(_, s)| s.load())
            {
                Some((si, _)) => si,
                None => self.open_session(now, upstream, transport),
            }
        };
        if let Some(Some(q)) = self.slots.get_mut(slot) {
            q.placements += 1;
        }
        match self.sessions[si].state {
            SessionState::Ready => self.send_on(now, si, slot, generation),
            SessionState::Connecting { .. } => {
                let session = self.sessions[si].id;
                self.sessions[si].queued.push((slot, generation));
                if let Some(Some(q)) = self.slots.get_mut(slot) {
                    q.places.push(Place::Queued { session });
                }
            }
        }
        if self.upstreams.len() > 1 {
            let at = now + self.attempt_timeout(ui);
            self.push_timer(at, slot, generation, Timer::Hedge);
        }
    }

    /// How long a placement may go unanswered before the query is also tried elsewhere.
    fn attempt_timeout(&self, ui: usize) -> Duration {
        let half = self.config.query_timeout / 2;
        // `min ≤ max` for any deadline (a 100 ms query_timeout is valid).
        let floor = Duration::from_millis(300).min(half);
        match self.upstreams[ui].srtt_ms {
            Some(srtt) => Duration::from_millis(u64::from(srtt) * 3 + 100).clamp(floor, half),
            None => half,
        }
    }

    /// The attempt timeout passed without an answer: count it against the upstreams tried so far and
    /// place the query on another one; the first placement stays outstanding.
    fn hedge(&mut self, now: Instant, slot: usize, generation: u32) {
        let Some(Some(q)) = self.slots.get_mut(slot) else {
            return;
        };
        let mut slow = Vec::new();
        for p in &q.places {
            let upstream = match *p {
                Place::Sent { session, .. } | Place::Queued { session } => self
                    .sessions
                    .iter()
                    .find(|s| s.id == session)
                    .map(|s| s.upstream),
                Place::Waiting { .. } => None,
            };
            if let Some(u) = upstream
                && !q.tried.contains(&u)
            {
                q.tried.push(u);
                slow.push(u);
            }
        }
        if slow.is_empty() {
            return;
        }
        q.last_reason = Some(CloseReason::Timeout);
        for u in slow {
            self.soft_failure(now, u, CloseReason::Timeout);
        }
        self.stats.hedged += 1;
        self.place(now, slot, generation);
    }

    fn has_ready_session(&self, upstream: UpstreamId) -> bool {
        self.sessions
            .iter()
            .any(|s| s.upstream == upstream && !s.retired && s.state == SessionState::Ready)
    }

    fn open_session(&mut self, now: Instant, upstream: UpstreamId, transport: Transport) -> usize {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.sessions.push(Session {
            id,
            upstream,
            transport,
            state: SessionState::Connecting {
                deadline: now + self.config.connect_timeout,
            },
            retired: false,
            inflight: BTreeMap::new(),
            queued: Vec::new(),
            decoder: framing::Decoder::new(),
            last_activity: now,
            last_received: now,
        });
        self.actions.push_back(Action::Connect {
            session: id,
            upstream,
        });
        self.sessions.len() - 1
    }

    fn send_on(&mut self, now: Instant, si: usize, slot: usize, generation: u32) {
        let session = &mut self.sessions[si];
        // A random ID not in use on this session. `pipeline` is soft (the least loaded session takes
        // overflow), but a session holds at most `max_inflight` IDs (≤ 32,768 by validation), so at
        // least half the ID space is free and this ends after two draws on average.
        let mut id = self.rng.next_u16();
        while session.inflight.contains_key(&id) {
            id = self.rng.next_u16();
        }
        let Some(Some(q)) = self.slots.get_mut(slot) else {
            return;
        };
        let action = match session.transport {
            Transport::Stream => {
                let _ = header::set_id(&mut q.upstream_msg, id);
                let Ok(prefix) = framing::prefix(q.upstream_msg.len()) else {
                    return;
                };
                let mut bytes = Vec::with_capacity(2 + q.upstream_msg.len());
                bytes.extend_from_slice(&prefix);
                bytes.extend_from_slice(&q.upstream_msg);
                Action::Send {
                    session: session.id,
                    bytes,
                }
            }
            Transport::Message => {
                // RFC 8484 §4.1: DNS ID 0 on the wire; the answer is matched by the request tag.
                let _ = header::set_id(&mut q.upstream_msg, 0);
                Action::Request {
                    session: session.id,
                    tag: id,
                    message: q.upstream_msg.clone(),
                }
            }
        };
        q.places.push(Place::Sent {
            session: session.id,
            id,
            at: now,
        });
        session.inflight.insert(id, (slot, generation));
        if session.inflight.len() == 1 {
            // The stall detector measures from the moment something is outstanding.
            session.last_received = now;
        }
        session.last_activity = now;
        self.stats.forwarded += 1;
        self.actions.push_back(action);
    }

    fn handle_response(
        &mut self,
        now: Instant,
        si: usize,
        id: u16,
        frame: &[u8],
    ) -> Result<(), CloseReason> {
        let session = &mut self.sessions[si];
        let sid = session.id;
        let upstream = session.upstream;
        let Some(&(slot, generation)) = session.inflight.get(&id) else {
            // An answer to a query already answered or timed out; harmless.
            self.stats.late_answers += 1;
            return Ok(());
        };
        let scan = message::scan(frame).map_err(|_| CloseReason::Protocol)?;
        let Some(Some(q)) = self.slots.get(slot) else {
            session.inflight.remove(&id);
            return Ok(());
        };
        if q.generation != generation
            || !scan.header.is_response()
            || scan.header.qdcount != 1
            || !crate::wire::name::eq_ignore_case(
                frame.get(header::LEN..scan.question_end).unwrap_or(&[]),
                &q.upstream_msg[header::LEN..q.question_end],
            )
        {
            return Err(CloseReason::Protocol);
        }
        session.inflight.remove(&id);
        session.last_activity = now;
        let sent_at = q.places.iter().find_map(|p| match *p {
            Place::Sent {
                session,
                id: pid,
                at,
            } if session == sid && pid == id => Some(at),
            _ => None,
        });
        self.forget_place(
            slot,
            generation,
            |p| matches!(p, Place::Sent { session, id: pid, .. } if *session == sid && *pid == id),
        );
        if let (Some(at), Some(u)) = (
            sent_at,
            self.upstreams.iter_mut().find(|u| u.id == upstream),
        ) {
            let sample = u32::try_from(now.saturating_since(at).as_millis()).unwrap_or(u32::MAX);
            u.srtt_ms = Some(match u.srtt_ms {
                Some(s) => s - s / 8 + sample / 8,
                None => sample,
            });
        }
        if scan.rcode() == rcode::SERVFAIL {
            // Try another upstream before passing a SERVFAIL on.
            self.soft_failure(now, upstream, CloseReason::Protocol);
            if let Some(Some(q)) = self.slots.get_mut(slot) {
                q.servfail = Some(frame.to_vec());
                q.tried.push(upstream);
            }
            self.stats.upstream_servfail += 1;
            self.place(now, slot, generation);
            return Ok(());
        }
        if let Some(u) = self.upstreams.iter_mut().find(|u| u.id == upstream) {
            u.soft = 0;
        }
        // DNS64 may substitute another answer; otherwise the frame and its scan are used as they are.
        let mut replaced: Option<Vec<u8>> = None;
        if let (Some(prefix), Some(Some(q))) = (self.config.dns64, self.slots.get_mut(slot)) {
            match &q.dns64 {
                Dns64Phase::Aaaa
                    if scan.rcode() == rcode::NOERROR
                        && !dns64::has_answer_of_type(frame, &scan, dns64::TYPE_AAAA) =>
                {
                    // No AAAA record: ask for A records on the same deadline (RFC 6147 §5.1).
                    q.dns64 = Dns64Phase::A(frame.to_vec());
                    let qt = q.question_end - 4;
                    q.upstream_msg[qt..qt + 2].copy_from_slice(&dns64::TYPE_A.to_be_bytes());
                    q.placements = 0;
                    q.tried.clear();
                    q.servfail = None;
                    self.withdraw_places(slot);
                    self.place(now, slot, generation);
                    return Ok(());
                }
                Dns64Phase::A(aaaa) => {
                    replaced = Some(match dns64::synthesize(frame, &scan, &prefix) {
                        Some(syn) => {
                            self.stats.dns64_synthesized += 1;
                            syn
                        }
                        None => aaaa.clone(),
                    });
                }
                _ => {}
            }
        }
        let Some(q) = self.take_query(slot) else {
            return Ok(());
        };
        let (frame, scan) = match &replaced {
            Some(r) => match message::scan(r) {
                Ok(s) => (r.as_slice(), s),
                Err(_) => {
                    let e = Ede {
                        code: ede::NETWORK_ERROR,
                        text: "malformed upstream answer",
                    };
                    self.servfail(q, e);
                    return Ok(());
                }
            },
            None => (frame, scan),
        };
        if let (Some(cache), Some(key)) = (self.cache.as_mut(), q.cache_key.clone()) {
            cache.insert(now, key, frame);
        }
        if self.answer_scanned(q.client, &q.view, frame, &scan, None) {
            self.stats.answered += 1;
            self.log_answer(now, frame, AnswerSource::Upstream);
        } else {
            self.servfail(
                q,
                Ede {
                    code: ede::NETWORK_ERROR,
                    text: "malformed upstream answer",
                },
            );
        }
        Ok(())
    }

    fn time_out_query(&mut self, now: Instant, slot: usize, generation: u32) {
        let Some(Some(q)) = self.slots.get(slot) else {
            return;
        };
        if q.generation != generation {
            return;
        }
        self.stats.timeouts += 1;
        // Why: the upstream's last error if it was never reached, else a time-out.
        let mut reason = q.last_reason.unwrap_or(CloseReason::Timeout);
        for p in &q.places {
            let upstream = match *p {
                Place::Waiting { upstream } => Some(upstream),
                Place::Queued { session } => self
                    .sessions
                    .iter()
                    .find(|s| s.id == session)
                    .map(|s| s.upstream),
                Place::Sent { .. } => None,
            };
            if let Some(e) = upstream
                .and_then(|u| self.upstreams.iter().find(|x| x.id == u))
                .and_then(|u| u.last_error)
            {
                reason = e;
            }
        }
        self.finish_failed(now, slot, Some(reason));
        self.close_idle_retired();
    }

    // ----- health -----

    fn backoff_delay(&mut self, failures: u32) -> Duration {
        let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let capped = exp.min(self.config.backoff_max);
        // Jitter in [capped/2, capped].
        let half = capped / 2;
        let span = u64::try_from(half.as_millis()).unwrap_or(1).max(1);
        half + Duration::from_millis(u64::from(self.rng.next_u32()) % span)
    }

    /// A time-out or SERVFAIL: after `SOFT_LIMIT` in a row the upstream backs off.
    fn soft_failure(&mut self, now: Instant, upstream: UpstreamId, reason: CloseReason) {
        let Some(ui) = self.upstreams.iter().position(|u| u.id == upstream) else {
            return;
        };
        self.upstreams[ui].soft = self.upstreams[ui].soft.saturating_add(1);
        if self.upstreams[ui].soft >= SOFT_LIMIT
            && self.upstreams[ui].backoff_until.is_none_or(|t| t <= now)
        {
            let failures = self.upstreams[ui].failures.saturating_add(1);
            let delay = self.backoff_delay(failures);
            let u = &mut self.upstreams[ui];
            u.failures = failures;
            u.backoff_until = Some(now + delay);
            if u.up {
                u.up = false;
                self.events
                    .push_back(Event::UpstreamDown { upstream, reason });
            }
        }
    }

    fn fail_session(&mut self, now: Instant, si: usize, reason: CloseReason) {
        let id = self.sessions[si].id;
        self.actions.push_back(Action::Close { session: id });
        self.drop_session(now, si, reason);
    }

    /// Removes a session; records the failure against its upstream; places its queries again.
    fn drop_session(&mut self, now: Instant, si: usize, reason: CloseReason) {
        let s = self.sessions.swap_remove(si);
        let was_ready = s.state == SessionState::Ready;
        let stalled = reason == CloseReason::Stalled;
        let counts_as_failure = !(was_ready && reason == CloseReason::Eof);
        if counts_as_failure
            && let Some(ui) = self.upstreams.iter().position(|u| u.id == s.upstream)
        {
            let failures = self.upstreams[ui].failures.saturating_add(1);
            let delay = self.backoff_delay(failures);
            let u = &mut self.upstreams[ui];
            u.failures = failures;
            u.last_error = Some(reason);
            if was_ready && !stalled {
                // A connection that had been working and then broke is redialed at once.
                u.backoff_until = None;
            } else {
                u.backoff_until = Some(now + delay);
                if stalled {
                    u.soft = u.soft.max(SOFT_LIMIT);
                }
                // Log transitions only: the first failure, or up → down.
                if u.up || failures == 1 {
                    self.events.push_back(Event::UpstreamDown {
                        upstream: u.id,
                        reason,
                    });
                }
                u.up = false;
            }
            self.stats.upstream_failures += 1;
        }
        let mut again: Vec<(usize, u32)> = s.inflight.into_values().collect();
        again.extend(s.queued);
        for (slot, generation) in again {
            let sid = s.id;
            if !self.forget_place(slot, generation, |p| match *p {
                Place::Sent { session, .. } | Place::Queued { session } => session == sid,
                Place::Waiting { .. } => false,
            }) {
                continue;
            }
            if let Some(Some(q)) = self.slots.get_mut(slot) {
                q.last_reason = Some(reason);
                if stalled && !q.tried.contains(&s.upstream) {
                    q.tried.push(s.upstream);
                }
                if q.deadline <= now {
                    self.finish_failed(now, slot, Some(reason));
                    continue;
                }
                if !q.places.is_empty() {
                    continue;
                }
            }
            self.stats.retries += 1;
            self.place(now, slot, generation);
        }
    }

    fn maybe_close_retired(&mut self, si: usize) {
        if let Some(s) = self.sessions.get(si)
            && s.retired
            && s.load() == 0
        {
            self.actions.push_back(Action::Close { session: s.id });
            self.sessions.swap_remove(si);
        }
    }

    fn close_idle_retired(&mut self) {
        let mut i = 0;
        while i < self.sessions.len() {
            if self.sessions[i].retired && self.sessions[i].load() == 0 {
                self.actions.push_back(Action::Close {
                    session: self.sessions[i].id,
                });
                self.sessions.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// The one place that maps why an upstream failed to what the client sees (RFC 8914).
pub fn ede_for(reason: Option<CloseReason>) -> Ede<'static> {
    use CloseReason as C;
    let (code, text) = match reason {
        None | Some(C::Timeout) => (
            ede::NO_REACHABLE_AUTHORITY,
            "upstream did not answer in time",
        ),
        Some(C::Stalled) => (ede::NO_REACHABLE_AUTHORITY, "upstream connection stalled"),
        Some(C::Eof) => (ede::NETWORK_ERROR, "upstream closed the connection"),
        Some(C::Reset) => (ede::NETWORK_ERROR, "upstream connection lost"),
        Some(C::Refused) => (ede::NETWORK_ERROR, "upstream refused the connection"),
        Some(C::Unreachable) => (ede::NETWORK_ERROR, "upstream unreachable"),
        Some(C::Protocol) => (ede::NETWORK_ERROR, "upstream protocol error"),
        Some(C::Tls(TlsFailure::UntrustedCertificate)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: untrusted issuer",
        ),
        Some(C::Tls(TlsFailure::NameMismatch)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: name mismatch",
        ),
        Some(C::Tls(TlsFailure::Expired)) => {
            (ede::NETWORK_ERROR, "upstream certificate rejected: expired")
        }
        Some(C::Tls(TlsFailure::NotYetValid)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: not yet valid",
        ),
        Some(C::Tls(TlsFailure::PinMismatch)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: SPKI pin mismatch",
        ),
        Some(C::Tls(TlsFailure::BadCertificate)) => {
            (ede::NETWORK_ERROR, "upstream certificate rejected")
        }
        Some(C::Tls(TlsFailure::Handshake)) => {
            (ede::NETWORK_ERROR, "upstream TLS handshake failed")
        }
    };
    Ede { code, text }
}

#[cfg(test)]
mod tests;
