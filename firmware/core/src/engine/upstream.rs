//! Upstreams: their health (round-trip time, failures, backoff) and the placement of queries on them
//! (selection by [`SelectPolicy`], sessions to carry them, hedging after an attempt timeout).

use alloc::vec::Vec;
use core::time::Duration;

use super::session::SessionState;
use super::table::{Place, QueryRef, Timer};
use super::{
    CloseReason, Engine, Event, Instant, SelectPolicy, Transport, UpstreamHealth, UpstreamId,
    UpstreamSpec,
};
use crate::rng::Rng;

/// Backoff after the first failure; doubles per consecutive failure up to `backoff_max`.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Consecutive time-outs or SERVFAILs after which an upstream backs off.
pub const SOFT_LIMIT: u32 = 3;
/// Every this many queries, the `Fastest` policy picks round-robin to re-measure the others.
const EXPLORE_EVERY: u32 = 32;

#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) id: UpstreamId,
    transport: Transport,
    /// Its sessions run over TCP (see [`super::UpstreamSpec::tcp`]).
    pub(super) tcp: bool,
    failures: u32,
    soft: u32,
    /// The smoothed round-trip time (RFC 6298's SRTT), in microseconds: whole milliseconds would
    /// let the ⅛ and ¼ steps truncate to nothing, leaving SRTT up to 7 ms short of a steady upstream
    /// and RTTVAR stuck above zero.
    pub(super) srtt_us: Option<u32>,
    /// The round-trip time's mean deviation (RFC 6298's RTTVAR), in microseconds, with `srtt_us`.
    pub(super) rttvar_us: u32,
    pub(super) backoff_until: Option<Instant>,
    last_error: Option<CloseReason>,
    /// Queries waiting for it to leave backoff.
    pub(super) waiting: Vec<QueryRef>,
    up: bool,
    /// When a query was last placed on it (the warm standby's window counts from here).
    pub(super) last_used: Option<Instant>,
    /// No standby dial before this (see [`super::warm`]).
    pub(super) standby_not_before: Option<Instant>,
    /// How long the server let an idle connection live, the last time it closed one.
    pub(super) observed_idle: Option<Duration>,
}

impl Upstream {
    pub(super) fn transport(&self) -> Transport {
        self.transport
    }
}

enum Choice {
    Now(usize),
    After(usize, Instant),
    Nothing,
}

impl<R: Rng> Engine<R> {
    /// Takes the upstreams in `specs` (in configuration order); known ones keep their health and
    /// sessions, the sessions of removed ones are retired and their waiting queries move to the first.
    pub(super) fn set_upstreams(&mut self, specs: &[UpstreamSpec]) {
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
                    tcp: spec.tcp,
                    failures: 0,
                    soft: 0,
                    srtt_us: None,
                    rttvar_us: 0,
                    backoff_until: None,
                    last_error: None,
                    waiting: Vec::new(),
                    up: false,
                    last_used: None,
                    standby_not_before: None,
                    observed_idle: None,
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

    /// Health of each upstream, in configuration order.
    pub(super) fn health(&self, now: Instant) -> Vec<UpstreamHealth> {
        self.upstreams
            .iter()
            .map(|u| UpstreamHealth {
                id: u.id,
                up: u.up,
                backing_off: u.backoff_until.is_some_and(|t| t > now),
                srtt_ms: u.srtt_us.map(|us| us / 1000),
                last_error: u.last_error,
            })
            .collect()
    }

    /// The last connection failure of `upstream`.
    pub(super) fn last_error(&self, upstream: UpstreamId) -> Option<CloseReason> {
        self.upstreams
            .iter()
            .find(|x| x.id == upstream)
            .and_then(|u| u.last_error)
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
            SelectPolicy::Fastest => usable.min_by_key(|&i| self.upstreams[i].srtt_us.unwrap_or(0)),
        };
        ui.map_or(Choice::Nothing, Choice::Now)
    }

    /// Places a query on an upstream (another one than those it tried, if possible).
    pub(super) fn place(&mut self, now: Instant, r: QueryRef) {
        let Some(q) = self.queries.get(r) else {
            return;
        };
        let (placements, deadline, outstanding) = (q.placements, q.deadline, !q.places.is_empty());
        let got_servfail = q.servfail.is_some() || q.answered_error;
        let tried = q.tried.clone();
        if placements >= self.max_placements() {
            if !outstanding {
                self.finish_failed(now, r, None);
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
                    self.finish_failed(now, r, None);
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
                    if let Some(q) = self.queries.get_mut(r) {
                        q.last_reason.get_or_insert(CloseReason::Timeout);
                    }
                    self.finish_failed(now, r, reason);
                    return;
                }
                let upstream = self.upstreams[ui].id;
                self.upstreams[ui].waiting.push(r);
                if let Some(q) = self.queries.get_mut(r) {
                    q.places.push(Place::Waiting { upstream });
                }
            }
            Choice::Now(ui) => self.place_on(now, ui, r),
        }
    }

    fn place_on(&mut self, now: Instant, ui: usize, r: QueryRef) {
        let upstream = self.upstreams[ui].id;
        let transport = self.upstreams[ui].transport;
        self.upstreams[ui].last_used = Some(now);
        let pipeline = self.config.pipeline;
        let pick = |want_ready: bool| {
            self.sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| s.upstream == upstream && !s.retired)
                .filter(|(_, s)| {
                    (s.state == SessionState::Ready) == want_ready && s.load() < pipeline
                })
                // The least loaded; of equals, the most recently active: a standby's successor is
                // preferred to the connection it replaces, which the server is about to close.
                .min_by_key(|(_, s)| (s.load(), core::cmp::Reverse(s.last_activity)))
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
        let mut placement = 0;
        if let Some(q) = self.queries.get_mut(r) {
            q.placements += 1;
            q.placed = q.placed.wrapping_add(1);
            placement = q.placed;
        }
        match self.sessions[si].state {
            SessionState::Ready => self.send_on(now, si, r),
            SessionState::Connecting { .. } => {
                let session = self.sessions[si].id;
                self.sessions[si].queued.push(r);
                if let Some(q) = self.queries.get_mut(r) {
                    q.places.push(Place::Queued { session });
                }
            }
        }
        if self.upstreams.len() > 1 {
            let at = now + self.attempt_timeout(ui);
            self.push_timer(at, r, Timer::Hedge(placement));
        }
    }

    /// How long a placement may go unanswered before the query is also tried elsewhere.
    fn attempt_timeout(&self, ui: usize) -> Duration {
        let half = self.config.query_timeout / 2;
        // `min ≤ max` for any deadline (a 100 ms query_timeout is valid).
        let floor = Duration::from_millis(300).min(half);
        match self.upstreams[ui].srtt_us {
            Some(srtt) => (Duration::from_micros(u64::from(srtt)) * 3 + Duration::from_millis(100))
                .clamp(floor, half),
            None => half,
        }
    }

    /// The attempt timeout of placement number `placement` passed without an answer: count it against
    /// the upstreams tried so far and place the query on another one; the first placement stays
    /// outstanding. Nothing if the query was placed again since (that placement's timer counts).
    pub(super) fn hedge(&mut self, now: Instant, r: QueryRef, placement: u32) {
        let Some(q) = self.queries.get_mut(r).filter(|q| q.placed == placement) else {
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
        self.place(now, r);
    }

    /// Queries waiting for an upstream whose backoff ended are placed again. A backoff cleared early
    /// (`None`: a connection succeeded, or a working one broke and is redialled at once) has ended
    /// too; whatever clears one calls this, since [`Self::backoff_deadline`] only sees the timed ends.
    pub(super) fn end_backoffs(&mut self, now: Instant) {
        for ui in 0..self.upstreams.len() {
            let u = &mut self.upstreams[ui];
            if u.backoff_until.is_none_or(|t| t <= now) && !u.waiting.is_empty() {
                let id = u.id;
                let waiting = core::mem::take(&mut u.waiting);
                for r in waiting {
                    if self.forget_place(r, |p| *p == Place::Waiting { upstream: id }) {
                        self.place(now, r);
                    }
                }
            }
        }
    }

    /// The earliest end of a backoff that queries wait for.
    pub(super) fn backoff_deadline(&self) -> Option<Instant> {
        self.upstreams
            .iter()
            .filter(|u| !u.waiting.is_empty())
            .filter_map(|u| u.backoff_until)
            .min()
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

    /// An authenticated connection to `upstream` succeeded.
    pub(super) fn upstream_connected(&mut self, upstream: UpstreamId) {
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
    }

    /// An answer came from `upstream` for the send of a query made at `sent_at` (the answer's ID names
    /// the send, so a loss probe's answer is timed from the probe): a round-trip time sample. Every
    /// answer gives one, a probed query's too (unlike TCP's Karn rule), but a probed query's sample
    /// counts for at most `probe_wait`, the wait its probe beat. So answers that are slow for good (a
    /// resolver's cache misses) still widen the wait, a third at a time, until they are no longer
    /// probed (were probed queries left out, every miss would be sent twice, for ever); and a loss the
    /// probe recovered (two round trips late) does not double the next probes' wait, which would make
    /// the next loss soon after cost twice as much.
    pub(super) fn record_rtt(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        sent_at: Option<Instant>,
        probe_wait: Option<Duration>,
    ) {
        if let (Some(at), Some(u)) = (
            sent_at,
            self.upstreams.iter_mut().find(|u| u.id == upstream),
        ) {
            let mut took = now.saturating_since(at);
            if let Some(w) = probe_wait {
                took = took.min(w);
            }
            let sample = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
            // RFC 6298 §2: RTTVAR ← ¾ RTTVAR + ¼ |SRTT − R'|, then SRTT ← ⅞ SRTT + ⅛ R'.
            let (srtt, rttvar) = match u.srtt_us {
                Some(s) => (
                    s - s / 8 + sample / 8,
                    u.rttvar_us - u.rttvar_us / 4 + s.abs_diff(sample) / 4,
                ),
                None => (sample, sample / 2),
            };
            u.srtt_us = Some(srtt);
            u.rttvar_us = rttvar;
        }
    }

    /// `upstream` gave a good (not SERVFAIL) answer: its run of soft failures ends.
    pub(super) fn answered_well(&mut self, upstream: UpstreamId) {
        if let Some(u) = self.upstreams.iter_mut().find(|u| u.id == upstream) {
            u.soft = 0;
        }
    }

    /// A time-out or SERVFAIL: after `SOFT_LIMIT` in a row the upstream backs off.
    pub(super) fn soft_failure(&mut self, now: Instant, upstream: UpstreamId, reason: CloseReason) {
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

    /// A session to `upstream` ended for `reason` (`was_ready`: after its handshake). Everything but
    /// a clean close of a working session counts as a failure: the upstream backs off, except that a
    /// working connection that broke (not stalled) is redialed at once.
    pub(super) fn session_ended(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        was_ready: bool,
        reason: CloseReason,
    ) {
        let stalled = reason == CloseReason::Stalled;
        let counts_as_failure = !(was_ready && reason == CloseReason::Eof);
        if counts_as_failure && let Some(ui) = self.upstreams.iter().position(|u| u.id == upstream)
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
    }
}
