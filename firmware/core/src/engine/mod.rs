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
//!   cached answer (EDE 3; 19 for an NXDOMAIN), or a local error (FORMERR, NOTIMP, BADVERS, SERVFAIL
//!   with an Extended DNS Error) no later than its deadline. Queries whose header is unreadable, and
//!   responses sent to us as queries, are dropped; for a stream client ([`ClientAddr::Tcp`]) every
//!   dropped or unanswerable frame yields [`Event::NoAnswer`], so the shell can account for every
//!   frame it handed in.
//! * Nothing is ever sent anywhere but to a session the shell opened over authenticated TLS, with two
//!   narrow, owner-enabled exceptions, each an [`Action::PlainQuery`] typed by its [`PlainTarget`]
//!   (see `plain.rs`): names covered by the captive-portal [`crate::captive::Exception`] the shell
//!   set go to the WAN's DNS, and with `local_resolver` the names the policy keeps on the LAN go to
//!   that LAN resolver. There is no plaintext fallback for anything else.
//! * Every table is bounded by [`EngineConfig`]: queries in flight (`max_inflight`), sessions per
//!   upstream (`max_connections`), upstream IDs per session (`pipeline`), the cache (its own limits).
//! * Upstream message IDs (stream tags for message transports) are drawn from the injected [`Rng`] and
//!   unique per session; answers are matched by session + ID and must repeat the question (its name in
//!   any case, QTYPE and QCLASS exactly), in any order. An error answer without the question (RFC 1035
//!   §4.1.1) fails only its query on that upstream; it is never passed on. Answers go to the client
//!   with the question spelt as it asked (DNS 0x20), whatever case the upstream or the cache used.
//!
//! # Several upstreams
//! Each query is placed on one upstream chosen by the [`SelectPolicy`] among those not backing off. If
//! no answer comes within the attempt timeout (about three smoothed RTTs, at most half the deadline),
//! or the upstream answers SERVFAIL, the query is also placed on an upstream it has not tried; the first
//! good answer wins. A session that dies takes its queries to a new placement. Timeouts, SERVFAILs and
//! connection failures count against an upstream; after [`SOFT_LIMIT`] in a row, or any connection
//! failure, it backs off (jittered, doubling, capped) and is tried again afterwards. When every
//! upstream is backing off, the one that comes back first is used: no upstream is ever locked out.
//!
//! # Files
//! This file holds the public API; each concern has its own file, all of them `impl Engine`:
//! * `intake.rs`: a client query's checks and local answers, up to its entry in the table;
//! * `table.rs`: the query table (slab, `QueryRef`, `Timer` and the timer heap);
//! * `admission.rs`: per-client token bucket and in-flight count;
//! * `upstream.rs`: upstream health, backoff, selection, placement and hedging;
//! * `session.rs`: upstream sessions, IDs, answer matching;
//! * `answer.rs`: answers and failures (SERVFAIL, [`ede_for`], stale answers) and the query log;
//! * `dns64.rs`: DNS64's second phase (the A query) and `ipv4only.arpa`;
//! * `plain.rs`: the two plaintext paths;
//! * `types.rs`: the public inputs and outputs.

mod admission;
mod answer;
mod dns64;
mod ids;
mod intake;
mod plain;
mod probe;
mod session;
mod table;
mod types;
mod upstream;
mod warm;

pub use answer::ede_for;
pub use plain::MAX_PLAIN_INFLIGHT;
pub use types::*;
pub use upstream::SOFT_LIMIT;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::cache::Cache;
use crate::policy::Policy;
use crate::rng::Rng;
use crate::time::Instant;

use table::{QueryRef, Timer};

/// The forwarding state machine. See the module documentation for the call-order contract.
#[derive(Debug)]
pub struct Engine<R> {
    config: EngineConfig,
    rng: R,
    upstreams: Vec<upstream::Upstream>,
    sessions: Vec<session::Session>,
    next_session: u64,
    queries: table::QueryTable,
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
    clients: admission::Clients,
    /// The answer budget for sources outside `allow`.
    outside: admission::Outside,
    plain_exception: Option<crate::captive::Exception>,
    plain: Vec<plain::PlainQuery>,
    /// Message buffers done with (answers the shell sent, upstream forms of answered queries), for
    /// the next messages: one allocation less per message (at most `answer::SPARE_BUFFERS`).
    spare_buffers: Vec<Vec<u8>>,
    /// Emptied `places` lists of finished queries, for new ones (at most `table::SPARE_PLACES`).
    spare_places: Vec<Vec<table::Place>>,
    /// [`Event::NoAnswer`]s emitted so far (lets `handle_query` see whether a frame was accounted for).
    no_answers: u64,
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
            queries: table::QueryTable::default(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            rr: 0,
            cache: config.cache.map(Cache::new),
            policy: None,
            leak_probes: crate::leak_probe::Probes::default(),
            log: VecDeque::new(),
            clients: admission::Clients::default(),
            outside: admission::Outside::default(),
            plain_exception: None,
            plain: Vec::new(),
            no_answers: 0,
            spare_buffers: Vec::new(),
            spare_places: Vec::new(),
        };
        e.set_upstreams(upstreams);
        e
    }

    /// Applies a new configuration. Upstreams whose id is kept keep their sessions and health;
    /// sessions of removed upstreams stop taking queries and close once their queries are answered.
    /// The cache is kept if its settings did not change, and emptied if the DNS64 settings did (it
    /// holds AAAA answers synthesized under the old prefix, or the NODATA they replace).
    pub fn reconfigure(&mut self, now: Instant, config: EngineConfig, upstreams: &[UpstreamSpec]) {
        if config.cache != self.config.cache {
            self.cache = config.cache.map(Cache::new);
        }
        if config.dns64 != self.config.dns64 {
            if let Some(cache) = self.cache.as_mut() {
                cache.clear();
            }
            // AAAA queries in flight were started under the old setting: their answers go to their
            // clients (see `dns64_step`) but are not cached.
            for q in self.queries.iter_mut() {
                if dns64::is_aaaa_query(q) {
                    q.cache_key = None;
                }
            }
        }
        self.config = config;
        while self.log.len() > self.config.query_log {
            self.log.pop_front();
        }
        self.set_upstreams(upstreams);
        let waiting: Vec<QueryRef> = self
            .upstreams
            .iter_mut()
            .flat_map(|u| core::mem::take(&mut u.waiting))
            .collect();
        for r in waiting {
            self.forget_place(r, |p| matches!(p, table::Place::Waiting { .. }));
            self.place(now, r);
        }
        self.close_idle_retired();
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

    /// Sets (or with `None` ends) the captive-portal plaintext exception. Queries in flight under an
    /// exception that ended are answered when their answer or deadline comes.
    pub fn set_plain_exception(&mut self, exception: Option<crate::captive::Exception>) {
        self.plain_exception = exception;
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
        self.queries.len()
    }

    /// Plaintext queries in flight (both targets).
    pub fn plain_inflight(&self) -> usize {
        self.plain.len()
    }

    /// Open (connecting or ready) upstream sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Health of each upstream, in configuration order.
    pub fn upstream_health(&self, now: Instant) -> Vec<UpstreamHealth> {
        self.health(now)
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
            self.queries.len(),
            self.plain.len(),
            self.no_answers,
        );
        self.query(now, client, bytes);
        if (
            self.transmits.len(),
            self.queries.len(),
            self.plain.len(),
            self.no_answers,
        ) == before
        {
            // Neither answered nor accepted: dropped.
            self.no_answer(client);
        }
    }

    /// A connection the shell opened for `session` completed its TLS handshake (authenticated).
    pub fn handle_upstream_connected(&mut self, now: Instant, session: SessionId) {
        if let Some(si) = self.session_index(session) {
            self.session_connected(now, si);
        }
    }

    /// Bytes arrived on a stream-transport (DoT) session.
    pub fn handle_upstream_data(&mut self, now: Instant, session: SessionId, bytes: &[u8]) {
        if let Some(si) = self.session_index(session) {
            self.session_data(now, si, session, bytes);
        }
    }

    /// The answer to request `tag` on a message-transport (DoH) session.
    pub fn handle_upstream_response(
        &mut self,
        now: Instant,
        session: SessionId,
        tag: u16,
        bytes: &[u8],
    ) {
        if let Some(si) = self.session_index(session) {
            self.session_response(now, si, session, tag, bytes);
        }
    }

    /// Request `tag` on a message-transport session failed without an answer (HTTP error status, stream
    /// reset): it counts against the upstream and the query tries another one.
    pub fn handle_upstream_request_failed(&mut self, now: Instant, session: SessionId, tag: u16) {
        if let Some(si) = self.session_index(session) {
            self.session_request_failed(now, si, tag);
        }
    }

    /// `session` ended (connect failure, TLS failure, reset, EOF). Its queries are placed again if their
    /// deadline allows, else answered.
    pub fn handle_upstream_closed(
        &mut self,
        now: Instant,
        session: SessionId,
        reason: CloseReason,
    ) {
        if let Some(si) = self.session_index(session) {
            self.drop_session(now, si, reason);
        }
    }

    /// An answer from the WAN's DNS to an [`Action::PlainQuery`] to [`PlainTarget::Wan`] with `tag`.
    /// Anything that is not a response to that exact question is ignored (the deadline answers the
    /// client then).
    pub fn handle_plain_answer(&mut self, now: Instant, tag: u16, bytes: &[u8]) {
        self.plain_answer(now, PlainTarget::Wan, tag, bytes);
    }

    /// An answer from the local resolver to an [`Action::PlainQuery`] to [`PlainTarget::Local`] with
    /// `tag`; checked as in [`Engine::handle_plain_answer`]. It never completes a WAN query.
    pub fn handle_local_answer(&mut self, now: Instant, tag: u16, bytes: &[u8]) {
        self.plain_answer(now, PlainTarget::Local, tag, bytes);
    }

    /// Timers: query deadlines and hedges, connect deadlines, idle and stalled sessions, backoff ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Sessions first: a stalled session fails its queries with the more precise reason.
        self.session_timeouts(now);
        while let Some((r, kind)) = self.queries.pop_due(now) {
            match kind {
                Timer::Deadline => self.time_out_query(now, r),
                Timer::Hedge(placement) => self.hedge(now, r, placement),
            }
        }
        self.plain_timeouts(now);
        self.end_backoffs(now);
    }

    /// When [`Engine::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let t = earliest(self.queries.next_timer(), self.session_deadline());
        let t = earliest(t, self.backoff_deadline());
        earliest(t, self.plain_deadline())
    }

    /// The next answer for a client.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Gives back a [`Transmit`]'s buffer once the shell has sent it (optional): the engine writes
    /// a later message into it instead of allocating. It keeps a bounded number of small ones and
    /// drops the rest.
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        self.keep_buffer(bytes);
    }

    /// The next thing the shell must do to an upstream connection.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next state change worth logging (never carries names or client addresses).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
