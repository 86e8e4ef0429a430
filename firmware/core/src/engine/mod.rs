//! The forwarding engine: client queries in, upstream sessions managed, answers out.
//!
//! # Call-order contract
//! The shell owns one [`Engine`] and, after feeding it any input (`handle_*`), drains every output
//! (`poll_transmit`, `poll_action`, `poll_event`) until each returns `None`, then sleeps until
//! [`Engine::poll_timeout`] (or the next input) and calls [`Engine::handle_timeout`]. `now` must never
//! go backwards.
//!
//! # Guarantees
//! * Every query that gets past the header is answered exactly once: with the upstream's answer, or a
//!   local error (FORMERR, NOTIMP, BADVERS, SERVFAIL with an Extended DNS Error) no later than its
//!   deadline. Queries whose header is unreadable, and responses sent to us as queries, are dropped.
//! * Nothing is ever sent anywhere but to a session the shell opened over authenticated TLS: there is
//!   no plaintext fallback path in this type at all.
//! * Every table is bounded by [`EngineConfig`]: queries in flight (`max_inflight`), sessions per
//!   upstream (`max_connections`), upstream IDs per session (`pipeline`).
//! * Upstream message IDs are drawn from the injected [`Rng`] and unique per session; answers are matched
//!   by session + ID and must repeat the question, in any order.

mod types;

use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::time::Duration;

pub use types::*;

use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::edns::{Ede, ede};
use crate::wire::header::{self, OPCODE_QUERY, rcode};
use crate::wire::message::{self, Scan};
use crate::wire::rewrite::{self, ClientView};
use crate::wire::{Error as WireError, framing, respond};

/// Backoff after the first failure; doubles per consecutive failure up to `backoff_max`.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Attempts per query (first dispatch + one retry on a new connection).
const MAX_ATTEMPTS: u8 = 2;

#[derive(Debug)]
enum QState {
    /// Waiting for an upstream to leave backoff.
    Waiting { upstream: usize },
    /// Queued on a session that is still connecting.
    Queued { session: SessionId },
    /// Written to a session under `id`.
    Sent { session: SessionId, id: u16 },
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
    attempts: u8,
    state: QState,
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
    failures: u32,
    backoff_until: Option<Instant>,
    last_error: Option<CloseReason>,
    waiting: Vec<(usize, u32)>,
    up: bool,
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
    deadlines: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl<R: Rng> Engine<R> {
    /// A new engine forwarding to `upstreams` (in failover order).
    pub fn new(config: EngineConfig, upstreams: &[UpstreamId], rng: R) -> Self {
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
            deadlines: BinaryHeap::new(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        e.set_upstreams(upstreams);
        e
    }

    /// Applies a new configuration. Upstreams whose id is kept keep their sessions and health;
    /// sessions of removed upstreams stop taking queries and close once their queries are answered.
    pub fn reconfigure(&mut self, now: Instant, config: EngineConfig, upstreams: &[UpstreamId]) {
        self.config = config;
        self.set_upstreams(upstreams);
        // Queries waiting on a removed upstream are redirected.
        let waiting: Vec<_> = self
            .upstreams
            .iter_mut()
            .flat_map(|u| core::mem::take(&mut u.waiting))
            .collect();
        for (slot, generation) in waiting {
            self.dispatch(now, slot, generation);
        }
        self.close_idle_retired();
    }

    fn set_upstreams(&mut self, ids: &[UpstreamId]) {
        let mut old = core::mem::take(&mut self.upstreams);
        let mut orphans = Vec::new();
        for &id in ids {
            match old.iter().position(|u| u.id == id) {
                Some(i) => self.upstreams.push(old.swap_remove(i)),
                None => self.upstreams.push(Upstream {
                    id,
                    failures: 0,
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

    /// A client query arrived. `bytes` is one DNS message (a UDP payload or one TCP frame).
    pub fn handle_query(&mut self, now: Instant, client: ClientAddr, bytes: &[u8]) {
        self.stats.queries += 1;
        let Ok(hdr) = header::Header::parse(bytes) else {
            self.stats.dropped += 1;
            return;
        };
        if hdr.is_response() {
            self.stats.dropped += 1;
            return;
        }
        let scan = match message::scan(bytes) {
            Ok(s) => s,
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
        if self.live >= self.config.max_inflight {
            self.stats.overloaded += 1;
            let e = Ede {
                code: ede::OTHER,
                text: "lanveil overloaded: too many queries in flight",
            };
            self.answer_locally(client, bytes, Some(&scan), rcode::SERVFAIL, Some(e));
            return;
        }
        let max_len = match client {
            ClientAddr::Udp { .. } => ClientView::udp_limit(scan.opt.map(|o| o.udp_size)),
            ClientAddr::Tcp { .. } => usize::from(u16::MAX),
        };
        let view = ClientView {
            id: hdr.id,
            edns: scan.opt.map(|o| o.dnssec_ok()),
            max_len,
        };
        let mut upstream_msg = vec![0u8; scan.question_end + rewrite::QUERY_OVERHEAD];
        let Ok(n) = rewrite::forward_query(bytes, &scan, 0, &mut upstream_msg) else {
            self.stats.formerr += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::FORMERR, None);
            return;
        };
        upstream_msg.truncate(n);
        let (slot, generation) = self.alloc_slot(Query {
            generation: 0,
            client,
            view,
            upstream_msg,
            question_end: scan.question_end,
            deadline: now + self.config.query_timeout,
            attempts: 0,
            state: QState::Waiting { upstream: 0 },
        });
        let deadline = now + self.config.query_timeout;
        self.deadlines.push(Reverse((deadline, slot, generation)));
        self.compact_deadlines();
        self.dispatch(now, slot, generation);
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
            if self.query_is(slot, generation) {
                self.send_on(now, si, slot, generation);
            }
        }
    }

    /// Bytes arrived on `session`'s TLS stream.
    pub fn handle_upstream_data(&mut self, now: Instant, session: SessionId, bytes: &[u8]) {
        let Some(si) = self.session_index(session) else {
            return;
        };
        self.sessions[si].decoder.push(bytes);
        self.sessions[si].last_received = now;
        loop {
            let frame = match self.sessions[si].decoder.next_frame() {
                Ok(Some(f)) => f.to_vec(),
                Ok(None) => break,
                Err(_) => {
                    self.fail_session(now, si, CloseReason::Protocol);
                    return;
                }
            };
            if let Err(reason) = self.handle_response(now, si, &frame) {
                self.fail_session(now, si, reason);
                return;
            }
        }
        self.maybe_close_retired(si);
    }

    /// `session` ended (connect failure, TLS failure, reset, EOF). Its queries are retried once if
    /// their deadline allows, else answered SERVFAIL.
    pub fn handle_upstream_closed(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: CloseReason,
    ) {
        let Some(si) = self.session_index(session) else {
            return;
        };
        self.drop_session(now, si, reason, false);
    }

    /// Timers: query deadlines, connect deadlines, idle sessions, backoff ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Sessions first: a stalled session fails its queries with the more precise reason.
        let mut i = 0;
        while i < self.sessions.len() {
            let s = &self.sessions[i];
            match s.state {
                SessionState::Connecting { deadline } if deadline <= now => {
                    self.actions.push_back(Action::Close { session: s.id });
                    self.drop_session(now, i, CloseReason::Timeout, true);
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
                    self.drop_session(now, i, CloseReason::Stalled, true);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        while let Some(&Reverse((deadline, slot, generation))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if self.query_is(slot, generation) {
                self.time_out_query(now, slot, generation);
            }
        }
        for ui in 0..self.upstreams.len() {
            let u = &mut self.upstreams[ui];
            if u.backoff_until.is_some_and(|t| t <= now) && !u.waiting.is_empty() {
                u.backoff_until = None;
                let waiting = core::mem::take(&mut u.waiting);
                for (slot, generation) in waiting {
                    if self.query_is(slot, generation) {
                        self.dispatch(now, slot, generation);
                    }
                }
            }
        }
    }

    /// When [`Engine::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.deadlines.peek().map(|Reverse((d, _, _))| *d);
        let mut consider = |c: Instant| t = Some(t.map_or(c, |x| x.min(c)));
        for s in &self.sessions {
            match s.state {
                SessionState::Connecting { deadline } => consider(deadline),
                SessionState::Ready if s.load() == 0 => {
                    consider(s.last_activity + self.config.idle_timeout)
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

    // ----- internals -----

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
        let generation = q.generation;
        self.slots[slot] = Some(q);
        self.live += 1;
        (slot, generation)
    }

    fn take_slot(&mut self, slot: usize) -> Option<Query> {
        let q = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        self.live -= 1;
        Some(q)
    }

    fn query_is(&self, slot: usize, generation: u32) -> bool {
        matches!(self.slots.get(slot), Some(Some(q)) if q.generation == generation)
    }

    /// Keeps the lazy-deletion heap bounded: rebuilt from live queries when it grows past twice the
    /// in-flight limit.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.config.max_inflight + 16 {
            return;
        }
        let live: Vec<_> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.as_ref().map(|q| Reverse((q.deadline, i, q.generation))))
            .collect();
        self.deadlines = BinaryHeap::from(live);
    }

    fn session_index(&self, id: SessionId) -> Option<usize> {
        self.sessions.iter().position(|s| s.id == id)
    }

    fn answer_locally(
        &mut self,
        client: ClientAddr,
        query: &[u8],
        scan: Option<&Scan>,
        rc: u16,
        e: Option<Ede<'_>>,
    ) {
        let mut buf = vec![0u8; respond::MAX_LOCAL_ANSWER];
        if let Ok(n) = respond::respond(query, scan, rc, e, &mut buf) {
            buf.truncate(n);
            self.transmits.push_back(Transmit {
                to: client,
                bytes: buf,
            });
        }
    }

    /// Answers a query (already removed from every table) with SERVFAIL + EDE.
    fn servfail(&mut self, q: Query, e: Ede<'_>) {
        self.stats.servfail += 1;
        // Rebuild a client-shaped query: the upstream form with the client's ID and EDNS presence.
        let mut query = q.upstream_msg;
        let _ = header::set_id(&mut query, q.view.id);
        let Ok(scan) = message::scan(&query) else {
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
            self.transmits.push_back(Transmit {
                to: q.client,
                bytes: buf,
            });
        }
    }

    fn fail_query(&mut self, slot: usize, reason: Option<CloseReason>) {
        if let Some(q) = self.take_slot(slot) {
            self.servfail(q, ede_for(reason));
        }
    }

    /// Chooses where a query goes: ordered failover over upstreams not in backoff; if all are in
    /// backoff, the one that leaves it first (never lock out every upstream).
    fn dispatch(&mut self, now: Instant, slot: usize, generation: u32) {
        let Some(Some(q)) = self.slots.get_mut(slot) else {
            return;
        };
        if q.generation != generation {
            return;
        }
        let attempts = q.attempts;
        let deadline = q.deadline;
        if self.upstreams.is_empty() {
            self.fail_query(slot, None);
            return;
        }
        let available = self
            .upstreams
            .iter()
            .position(|u| u.backoff_until.is_none_or(|t| t <= now) || self.has_ready_session(u.id));
        let ui = match available {
            Some(ui) => ui,
            None => {
                let (ui, until) = self
                    .upstreams
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (i, u.backoff_until.unwrap_or(now)))
                    .min_by_key(|&(_, t)| t)
                    .unwrap_or((0, now));
                if attempts >= MAX_ATTEMPTS || until >= deadline {
                    // It cannot succeed in time: answer now rather than at the deadline.
                    let reason = self.upstreams[ui].last_error;
                    self.fail_query(slot, reason);
                    return;
                }
                if let Some(Some(q)) = self.slots.get_mut(slot) {
                    q.state = QState::Waiting { upstream: ui };
                }
                self.upstreams[ui].waiting.push((slot, generation));
                return;
            }
        };
        if attempts >= MAX_ATTEMPTS {
            let reason = self.upstreams[ui].last_error;
            self.fail_query(slot, reason);
            return;
        }
        if let Some(Some(q)) = self.slots.get_mut(slot) {
            q.attempts += 1;
        }
        let upstream = self.upstreams[ui].id;
        let pipeline = self.config.pipeline;
        // A ready session with room, else a connecting one with room, else a new one, else the least
        // loaded.
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
        let si = if let Some(si) = pick(true) {
            si
        } else if let Some(si) = pick(false) {
            si
        } else if self
            .sessions
            .iter()
            .filter(|s| s.upstream == upstream && !s.retired)
            .count()
            < self.config.max_connections
        {
            self.open_session(now, upstream)
        } else {
            match self
                .sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| s.upstream == upstream && !s.retired)
                .min_by_key(|(_, s)| s.load())
            {
                Some((si, _)) => si,
                None => self.open_session(now, upstream),
            }
        };
        match self.sessions[si].state {
            SessionState::Ready => self.send_on(now, si, slot, generation),
            SessionState::Connecting { .. } => {
                let sid = self.sessions[si].id;
                self.sessions[si].queued.push((slot, generation));
                if let Some(Some(q)) = self.slots.get_mut(slot) {
                    q.state = QState::Queued { session: sid };
                }
            }
        }
    }

    fn has_ready_session(&self, upstream: UpstreamId) -> bool {
        self.sessions
            .iter()
            .any(|s| s.upstream == upstream && !s.retired && s.state == SessionState::Ready)
    }

    fn open_session(&mut self, now: Instant, upstream: UpstreamId) -> usize {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.sessions.push(Session {
            id,
            upstream,
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
        // A random ID not in use on this session (pipeline ≤ 4096 keeps this short).
        let mut id = self.rng.next_u16();
        while session.inflight.contains_key(&id) {
            id = self.rng.next_u16();
        }
        let Some(Some(q)) = self.slots.get_mut(slot) else {
            return;
        };
        let _ = header::set_id(&mut q.upstream_msg, id);
        let Ok(prefix) = framing::prefix(q.upstream_msg.len()) else {
            return;
        };
        let mut bytes = Vec::with_capacity(2 + q.upstream_msg.len());
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(&q.upstream_msg);
        q.state = QState::Sent {
            session: session.id,
            id,
        };
        session.inflight.insert(id, (slot, generation));
        if session.inflight.len() == 1 {
            // The stall detector measures from the moment something is outstanding.
            session.last_received = now;
        }
        session.last_activity = now;
        self.stats.forwarded += 1;
        self.actions.push_back(Action::Send {
            session: session.id,
            bytes,
        });
    }

    fn handle_response(
        &mut self,
        now: Instant,
        si: usize,
        frame: &[u8],
    ) -> Result<(), CloseReason> {
        let Ok(hdr) = header::Header::parse(frame) else {
            return Err(CloseReason::Protocol);
        };
        let session = &mut self.sessions[si];
        let Some(&(slot, generation)) = session.inflight.get(&hdr.id) else {
            // An answer to a query already timed out; harmless.
            self.stats.late_answers += 1;
            return Ok(());
        };
        let scan = message::scan(frame).map_err(|_| CloseReason::Protocol)?;
        let Some(Some(q)) = self.slots.get(slot) else {
            session.inflight.remove(&hdr.id);
            return Ok(());
        };
        if q.generation != generation
            || !hdr.is_response()
            || scan.header.qdcount != 1
            || !crate::wire::name::eq_ignore_case(
                frame.get(header::LEN..scan.question_end).unwrap_or(&[]),
                &q.upstream_msg[header::LEN..q.question_end],
            )
        {
            return Err(CloseReason::Protocol);
        }
        session.inflight.remove(&hdr.id);
        session.last_activity = now;
        let Some(q) = self.take_slot(slot) else {
            return Ok(());
        };
        let mut out = vec![0u8; frame.len() + 16];
        match rewrite::to_client(frame, &scan, &q.view, &mut out) {
            Ok(n) => {
                out.truncate(n);
                if n < frame.len() && q.view.max_len < frame.len() {
                    self.stats.truncated += 1;
                }
                self.stats.answered += 1;
                self.transmits.push_back(Transmit {
                    to: q.client,
                    bytes: out,
                });
            }
            Err(WireError::BufferTooSmall) | Err(_) => {
                self.servfail(
                    q,
                    Ede {
                        code: ede::NETWORK_ERROR,
                        text: "malformed upstream answer",
                    },
                );
            }
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
        let reason = match q.state {
            QState::Sent { session, id } => {
                if let Some(si) = self.session_index(session) {
                    self.sessions[si].inflight.remove(&id);
                }
                CloseReason::Timeout
            }
            QState::Queued { session } => {
                let mut r = CloseReason::Timeout;
                if let Some(si) = self.session_index(session) {
                    self.sessions[si].queued.retain(|&(s, _)| s != slot);
                    if let Some(u) = self
                        .upstreams
                        .iter()
                        .find(|u| u.id == self.sessions[si].upstream)
                    {
                        r = u.last_error.unwrap_or(CloseReason::Timeout);
                    }
                }
                r
            }
            QState::Waiting { upstream } => {
                let mut r = CloseReason::Timeout;
                if let Some(u) = self.upstreams.get_mut(upstream) {
                    u.waiting.retain(|&(s, _)| s != slot);
                    r = u.last_error.unwrap_or(CloseReason::Timeout);
                }
                r
            }
        };
        let _ = now;
        self.fail_query(slot, Some(reason));
        self.close_idle_retired();
    }

    fn fail_session(&mut self, now: Instant, si: usize, reason: CloseReason) {
        let id = self.sessions[si].id;
        self.actions.push_back(Action::Close { session: id });
        self.drop_session(now, si, reason, true);
    }

    /// Removes a session; records the failure against its upstream; retries or fails its queries.
    fn drop_session(&mut self, now: Instant, si: usize, reason: CloseReason, _closed_by_us: bool) {
        let s = self.sessions.swap_remove(si);
        let was_ready = s.state == SessionState::Ready;
        let counts_as_failure = !(was_ready && matches!(reason, CloseReason::Eof));
        if counts_as_failure && let Some(u) = self.upstreams.iter_mut().find(|u| u.id == s.upstream)
        {
            u.failures = u.failures.saturating_add(1);
            u.last_error = Some(reason);
            let exp = BACKOFF_BASE.saturating_mul(1u32 << u.failures.saturating_sub(1).min(16));
            let capped = exp.min(self.config.backoff_max);
            // Jitter in [capped/2, capped].
            let half = capped / 2;
            let span = u64::try_from(half.as_millis()).unwrap_or(1).max(1);
            let delay = half + Duration::from_millis(u64::from(self.rng.next_u32()) % span);
            if was_ready {
                // A connection that had been working and then broke is redialed at once.
                u.backoff_until = None;
            } else {
                u.backoff_until = Some(now + delay);
                // Log transitions only: the first failure, or up → down.
                if u.up || u.failures == 1 {
                    self.events.push_back(Event::UpstreamDown {
                        upstream: u.id,
                        reason,
                    });
                }
                u.up = false;
            }
            self.stats.upstream_failures += 1;
        }
        let mut retry: Vec<(usize, u32)> = s.inflight.into_values().collect();
        retry.extend(s.queued);
        for (slot, generation) in retry {
            if !self.query_is(slot, generation) {
                continue;
            }
            let expired = matches!(self.slots.get(slot), Some(Some(q)) if q.deadline <= now);
            if expired {
                self.fail_query(slot, Some(reason));
            } else {
                self.stats.retries += 1;
                self.dispatch(now, slot, generation);
            }
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
