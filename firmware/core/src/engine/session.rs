//! Upstream sessions: one per connection the shell opens, carrying queries under IDs unique on it,
//! matching answers to them, and ending on failure, idleness, a stall or retirement.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::ids::IdMap;
use super::table::{Place, QueryRef};
use super::warm;
use super::{Action, CloseReason, Engine, Instant, SessionId, Transport, UpstreamId};
use crate::rng::Rng;
use crate::wire::header::{self, rcode};
use crate::wire::{framing, message};

/// The first allocation of a stream session's [`Action::Send`]: room for a turn's queries (about
/// 130 octets each once padded), so that appending rarely reallocates.
const SEND_CAPACITY: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SessionState {
    Connecting { deadline: Instant },
    Ready,
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) id: SessionId,
    pub(super) upstream: UpstreamId,
    pub(super) transport: Transport,
    pub(super) state: SessionState,
    /// Its upstream was removed: it takes no new queries and closes once its queries are answered.
    pub(super) retired: bool,
    /// Queries written to it, by upstream message ID (request tag for message transports).
    pub(super) inflight: IdMap,
    /// Queries waiting for its handshake.
    pub(super) queued: Vec<QueryRef>,
    decoder: framing::Decoder,
    pub(super) last_activity: Instant,
    pub(super) last_received: Instant,
    /// The idle timeout the server announced (RFC 7828), see [`super::warm`].
    pub(super) server_idle: Option<core::time::Duration>,
    /// Its outstanding queries that were not loss-probed yet, as (sent at, ID) in the order they were
    /// sent (entries whose ID has left `inflight` are dropped lazily; see [`super::probe`]).
    pub(super) unprobed: VecDeque<(Instant, u16)>,
    /// When it sent its last loss probe.
    pub(super) last_probe: Option<Instant>,
    /// IDs given up on while their answers may still come (see [`RetiredIds`]).
    pub(super) retired_ids: RetiredIds,
    /// The end of the standby window its successor was due in but not dialled, the timer having
    /// fired after that end (see [`Engine::successor_at`]): no successor for that window.
    pub(super) successor_missed: Option<Instant>,
}

/// How many IDs a session keeps out of the draw after it gave up on their queries.
const RETIRED_IDS: usize = 32;
// The ring's position and length are octets.
const _: () = assert!(RETIRED_IDS <= u8::MAX as usize);

/// A session's most recently retired message IDs: those of queries it stopped waiting for while an
/// answer could still come (answered by a loss probe's copy or another session, timed out). A late
/// answer must find its ID free, to be dropped as late; had the ID been drawn again for a newer
/// query, the late answer would meet that query's question and close the session as a protocol
/// error, re-placing everything on it. So a retired ID is not drawn again until
/// [`RETIRED_IDS`] later ones were retired (a fixed ring of 32 IDs in the session, no allocation).
#[derive(Debug, Default)]
pub(super) struct RetiredIds {
    ids: [u16; RETIRED_IDS],
    len: u8,
    next: u8,
}

impl RetiredIds {
    pub(super) fn push(&mut self, id: u16) {
        self.ids[usize::from(self.next)] = id;
        self.next = ((usize::from(self.next) + 1) % RETIRED_IDS) as u8;
        if usize::from(self.len) < RETIRED_IDS {
            self.len += 1;
        }
    }

    #[inline]
    pub(super) fn contains(&self, id: u16) -> bool {
        self.ids[..usize::from(self.len)].contains(&id)
    }
}

impl Session {
    pub(super) fn load(&self) -> usize {
        self.inflight.len() + self.queued.len()
    }

    /// Query `id` was sent at `at`: it may be loss-probed. Entries of answered queries are dropped
    /// from the front as they come up, and all at once when they outnumber the live ones (a query
    /// stuck at the front must not let the list grow with every query sent behind it).
    fn note_sent(&mut self, at: Instant, id: u16) {
        self.prune_unprobed();
        if self.unprobed.len() > 2 * self.inflight.len() + 16 {
            let inflight = &self.inflight;
            self.unprobed.retain(|(_, id)| inflight.contains(*id));
        }
        self.unprobed.push_back((at, id));
    }

    /// Drops the entries of answered queries from the front of `unprobed`.
    pub(super) fn prune_unprobed(&mut self) {
        while let Some(&(_, id)) = self.unprobed.front() {
            if self.inflight.contains(id) {
                break;
            }
            self.unprobed.pop_front();
        }
    }

    /// The send time of the oldest outstanding query not probed yet.
    pub(super) fn oldest_unprobed(&self) -> Option<(Instant, u16)> {
        self.unprobed
            .iter()
            .find(|(_, id)| self.inflight.contains(*id))
            .copied()
    }
}

impl<R: Rng> Engine<R> {
    pub(super) fn session_index(&self, id: SessionId) -> Option<usize> {
        self.sessions.iter().position(|s| s.id == id)
    }

    pub(super) fn has_ready_session(&self, upstream: UpstreamId) -> bool {
        self.sessions
            .iter()
            .any(|s| s.upstream == upstream && !s.retired && s.state == SessionState::Ready)
    }

    pub(super) fn open_session(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        transport: Transport,
    ) -> usize {
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
            inflight: IdMap::default(),
            queued: Vec::new(),
            decoder: framing::Decoder::new(),
            last_activity: now,
            last_received: now,
            server_idle: None,
            unprobed: VecDeque::new(),
            retired_ids: RetiredIds::default(),
            last_probe: None,
            successor_missed: None,
        });
        self.actions.push_back(Action::Connect {
            session: id,
            upstream,
        });
        self.sessions.len() - 1
    }

    /// Writes query `r` to ready session `si` under a fresh ID.
    pub(super) fn send_on(&mut self, now: Instant, si: usize, r: QueryRef) {
        let session = &mut self.sessions[si];
        // A random ID not in use on this session. `pipeline` is soft (the least loaded session takes
        // overflow), but a session holds at most `max_inflight` IDs (≤ 32,768 by validation), so at
        // least half the ID space is free and this ends after two draws on average.
        let mut id = self.rng.next_u16();
        while session.inflight.contains(id) || session.retired_ids.contains(id) {
            id = self.rng.next_u16();
        }
        let Some(q) = self.queries.get_mut(r) else {
            return;
        };
        let sid = session.id;
        match session.transport {
            Transport::Stream => {
                let _ = header::set_id(&mut q.upstream_msg, id);
                // Appended to the session's `Send` if it is the last action queued (the queries of
                // one turn go out as one write, in one buffer), else to a new one.
                let bytes = match self.actions.back_mut() {
                    Some(Action::Send { session, bytes }) if *session == sid => bytes,
                    _ => {
                        self.actions.push_back(Action::Send {
                            session: sid,
                            bytes: Vec::with_capacity(SEND_CAPACITY.max(2 + q.upstream_msg.len())),
                        });
                        match self.actions.back_mut() {
                            Some(Action::Send { bytes, .. }) => bytes,
                            _ => return,
                        }
                    }
                };
                // The length prefix is written once the message is: it is whatever was appended.
                let start = bytes.len();
                bytes.extend_from_slice(&[0, 0]);
                let len = warm::push_with_keepalive(bytes, &q.upstream_msg, q.question_end);
                let Ok(prefix) = framing::prefix(len) else {
                    bytes.truncate(start);
                    if start == 0 {
                        self.actions.pop_back();
                    }
                    return;
                };
                bytes[start..start + 2].copy_from_slice(&prefix);
            }
            Transport::Message => {
                // RFC 8484 §4.1: DNS ID 0 on the wire; the answer is matched by the request tag.
                let _ = header::set_id(&mut q.upstream_msg, 0);
                self.actions.push_back(Action::Request {
                    session: sid,
                    tag: id,
                    message: q.upstream_msg.clone(),
                });
            }
        }
        q.places.push(Place::Sent {
            session: sid,
            id,
            at: now,
        });
        session.inflight.insert(id, r);
        session.note_sent(now, id);
        if session.inflight.len() == 1 {
            // The stall detector measures from the moment something is outstanding.
            session.last_received = now;
        }
        session.last_activity = now;
        self.stats.forwarded += 1;
    }

    /// The handshake of session `si` completed: its queued queries are written.
    pub(super) fn session_connected(&mut self, now: Instant, si: usize) {
        let s = &mut self.sessions[si];
        let session = s.id;
        s.state = SessionState::Ready;
        s.last_activity = now;
        s.last_received = now;
        let upstream = s.upstream;
        let queued = core::mem::take(&mut s.queued);
        self.upstream_connected(upstream);
        for r in queued {
            if self.forget_place(r, |p| *p == Place::Queued { session }) {
                self.send_on(now, si, r);
            }
        }
        // The connection cleared the upstream's backoff: queries waiting for its end go now.
        self.end_backoffs(now);
    }

    /// Bytes on stream session `si` (`session`): every whole answer in them is handled.
    pub(super) fn session_data(
        &mut self,
        now: Instant,
        mut si: usize,
        session: SessionId,
        bytes: &[u8],
    ) {
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

    /// The answer to message-transport request `tag` on session `si` (`session`).
    pub(super) fn session_response(
        &mut self,
        now: Instant,
        si: usize,
        session: SessionId,
        tag: u16,
        bytes: &[u8],
    ) {
        self.sessions[si].last_received = now;
        if let Err(reason) = self.handle_response(now, si, tag, bytes) {
            self.fail_session(now, si, reason);
            return;
        }
        if let Some(si) = self.session_index(session) {
            self.maybe_close_retired(si);
        }
    }

    /// Request `tag` on message-transport session `si` failed without an answer.
    pub(super) fn session_request_failed(&mut self, now: Instant, si: usize, tag: u16) {
        self.sessions[si].last_received = now;
        let Some(r) = self.sessions[si].inflight.remove(tag) else {
            return;
        };
        let session = self.sessions[si].id;
        let upstream = self.sessions[si].upstream;
        self.forget_place(
            r,
            |p| matches!(p, Place::Sent { session: s, id, .. } if *s == session && *id == tag),
        );
        self.soft_failure(now, upstream, CloseReason::Protocol);
        if let Some(q) = self.queries.get_mut(r) {
            q.tried.push(upstream);
            q.last_reason = Some(CloseReason::Protocol);
        }
        self.place(now, r);
    }

    /// Message `id` (a stream ID or a request tag) from session `si`: matched to its query, checked
    /// to repeat its question (or to be an error answer without one), then handed on as the query's
    /// answer (or failure). An error fails the session.
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
        let Some(r) = session.inflight.get(id) else {
            // An answer to a query already answered or timed out; harmless.
            self.stats.late_answers += 1;
            return Ok(());
        };
        let scan = message::scan(frame).map_err(|_| CloseReason::Protocol)?;
        // An ID whose slot now holds another query is treated as a hostile answer (it cannot happen:
        // a query leaves every session's table when it leaves the query table).
        let Some((q, current)) = self.queries.occupant(r) else {
            session.inflight.remove(id);
            return Ok(());
        };
        // RFC 1035 §4.1.1 lets an error answer (FORMERR, NOTIMP, REFUSED...) leave the question
        // out, and a client can draw one at will (an odd QTYPE): that fails the query on this
        // upstream, not the session. It is never passed on, as it cannot be checked against the
        // question; anything else without the question is a protocol error.
        let questionless_error = scan.header.qdcount == 0
            && scan.header.ancount == 0
            && scan.header.nscount == 0
            && scan.rcode() != rcode::NOERROR;
        if !current
            || !scan.header.is_response()
            || !(questionless_error
                || scan.header.qdcount == 1
                    && crate::wire::name::question_eq(
                        frame.get(header::LEN..scan.question_end).unwrap_or(&[]),
                        &q.upstream_msg[header::LEN..q.question_end],
                    ))
        {
            return Err(CloseReason::Protocol);
        }
        session.inflight.remove(id);
        // Keeps the probe's oldest-query lookup short (`poll_timeout` asks it every turn).
        session.prune_unprobed();
        session.last_activity = now;
        let announced = match session.transport {
            Transport::Stream => warm::announced_idle(frame, &scan),
            Transport::Message => None,
        };
        if announced.is_some() {
            session.server_idle = announced;
        }
        let sent_at = q.places.iter().find_map(|p| match *p {
            Place::Sent {
                session,
                id: pid,
                at,
            } if session == sid && pid == id => Some(at),
            _ => None,
        });
        // A query sent twice on this session was loss-probed: its sample counts for at most the wait
        // its probe beat (see `Engine::record_rtt`).
        let probe_wait = {
            let mut at = q.places.iter().filter_map(|p| match *p {
                Place::Sent { session, at, .. } if session == sid => Some(at),
                _ => None,
            });
            match (at.next(), at.next()) {
                (Some(a), Some(b)) => Some(a.max(b).saturating_since(a.min(b))),
                _ => None,
            }
        };
        // The upstream's answer is in: a loss probe's copy of the query on this session is moot too
        // (its answer, should it come, is a late one), so a SERVFAIL counts once against the upstream
        // and sends the query on once.
        if let Some(q) = self.queries.get_mut(r) {
            let session = &mut self.sessions[si];
            q.places.retain(|p| match *p {
                Place::Sent {
                    session: psid,
                    id: copy,
                    ..
                } if psid == sid => {
                    if copy != id && session.inflight.remove(copy).is_some() {
                        session.retired_ids.push(copy);
                        if session.transport == Transport::Message {
                            self.actions.push_back(Action::Cancel {
                                session: sid,
                                tag: copy,
                            });
                        }
                    }
                    false
                }
                _ => true,
            });
            session.prune_unprobed();
        }
        self.record_rtt(now, upstream, sent_at, probe_wait);
        if let Some(t) = announced {
            self.note_server_idle(upstream, t);
        }
        if questionless_error {
            self.upstream_error_answer(now, r, upstream);
        } else {
            self.upstream_answer(now, r, upstream, frame, scan);
        }
        Ok(())
    }

    pub(super) fn fail_session(&mut self, now: Instant, si: usize, reason: CloseReason) {
        let id = self.sessions[si].id;
        self.actions.push_back(Action::Close { session: id });
        self.drop_session(now, si, reason);
    }

    /// Removes a session; records the failure against its upstream; places its queries again.
    pub(super) fn drop_session(&mut self, now: Instant, si: usize, reason: CloseReason) {
        let s = self.sessions.swap_remove(si);
        let was_ready = s.state == SessionState::Ready;
        let stalled = reason == CloseReason::Stalled;
        self.session_ended(now, s.upstream, was_ready, reason);
        if s.load() == 0 && !s.retired {
            self.observe_server_close(now, &s, reason);
            self.keep_warm(now, s.upstream, was_ready, reason);
        }
        let mut again: Vec<QueryRef> = s.inflight.into_values().collect();
        again.extend(s.queued);
        for r in again {
            let sid = s.id;
            if !self.forget_place(r, |p| match *p {
                Place::Sent { session, .. } | Place::Queued { session } => session == sid,
                Place::Waiting { .. } => false,
            }) {
                continue;
            }
            if let Some(q) = self.queries.get_mut(r) {
                q.last_reason = Some(reason);
                if stalled && !q.tried.contains(&s.upstream) {
                    q.tried.push(s.upstream);
                }
                if q.deadline <= now {
                    self.finish_failed(now, r, Some(reason));
                    continue;
                }
                if !q.places.is_empty() {
                    continue;
                }
            }
            self.stats.retries += 1;
            self.place(now, r);
        }
        // A working connection that broke clears its upstream's backoff (it is redialled at once):
        // queries waiting for the backoff's end go now.
        self.end_backoffs(now);
    }

    pub(super) fn maybe_close_retired(&mut self, si: usize) {
        if let Some(s) = self.sessions.get(si)
            && s.retired
            && s.load() == 0
        {
            self.actions.push_back(Action::Close { session: s.id });
            self.sessions.swap_remove(si);
        }
    }

    pub(super) fn close_idle_retired(&mut self) {
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

    /// Session timers: connect deadlines, idle sessions, stalled ones.
    pub(super) fn session_timeouts(&mut self, now: Instant) {
        self.dial_successors(now);
        self.send_probes(now);
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
                    if s.load() == 0 && self.idle_close_at(s).is_some_and(|t| t <= now) =>
                {
                    self.close_idle(now, i);
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
    }

    /// The earliest session timer.
    pub(super) fn session_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |c: Instant| t = Some(t.map_or(c, |x| x.min(c)));
        for s in &self.sessions {
            match s.state {
                SessionState::Connecting { deadline } => consider(deadline),
                SessionState::Ready if s.load() == 0 => {
                    if let Some(t) = self.idle_close_at(s) {
                        consider(t);
                    }
                    if let Some(t) = self.successor_at(s) {
                        consider(t);
                    }
                }
                SessionState::Ready if !s.inflight.is_empty() => {
                    consider(s.last_received.max(s.last_activity) + self.config.query_timeout);
                    if let Some(t) = self.probe_at(s) {
                        consider(t);
                    }
                }
                SessionState::Ready => {}
            }
        }
        t
    }
}
