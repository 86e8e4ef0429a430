//! The query table: a slab of queries in flight, each named by a [`QueryRef`] (slot + generation, so a
//! reference that outlived its query matches nothing), and the heap of their timers.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::dns64::Dns64Phase;
use super::{Action, ClientAddr, CloseReason, Engine, Instant, SessionId, Transport, UpstreamId};
use crate::cache::Key;
use crate::rng::Rng;
use crate::wire::rewrite::ClientView;

/// A query in the table: its slot and the generation the slot had when the query took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct QueryRef {
    /// At most `max_inflight` (≤ 32,768) slots exist: 32 bits keep a reference (and an entry of a
    /// session's [`super::ids::IdMap`]) small.
    slot: u32,
    generation: u32,
}

#[cfg(test)]
impl QueryRef {
    /// A reference to slot `n` (for tests of structures that only store references).
    pub(super) fn for_test(n: u32) -> Self {
        Self {
            slot: n,
            generation: 1,
        }
    }
}

/// What a query's timer does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The query's deadline: it is answered (SERVFAIL at worst).
    Deadline,
    /// A placement's attempt timeout: the query is also placed on another upstream. It carries the
    /// placement's number ([`Query::placed`]): a query placed again since has a newer timer, and
    /// this one does nothing (it would count the newer placement's upstream as slow too early).
    Hedge(u32),
}

/// Where a query is outstanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
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
pub(super) struct Query {
    pub(super) client: ClientAddr,
    pub(super) view: ClientView,
    /// The upstream form (ID patched at send time).
    pub(super) upstream_msg: Vec<u8>,
    pub(super) question_end: usize,
    pub(super) deadline: Instant,
    /// Placements made so far (bounded by `max_placements`).
    pub(super) placements: u8,
    /// Placements made in all, never reset (DNS64's second phase starts `placements` over): the
    /// number of the latest, which its [`Timer::Hedge`] carries.
    pub(super) placed: u32,
    /// Upstreams that timed out or answered SERVFAIL for this query.
    pub(super) tried: Vec<UpstreamId>,
    /// Where the query is outstanding now.
    pub(super) places: Vec<Place>,
    /// The last SERVFAIL an upstream gave, passed on if nothing better comes.
    pub(super) servfail: Option<Vec<u8>>,
    /// An upstream answered with an error that left the question out (see
    /// [`Engine::upstream_error_answer`]): like a SERVFAIL, no second try on an upstream it tried.
    pub(super) answered_error: bool,
    pub(super) last_reason: Option<CloseReason>,
    pub(super) cache_key: Option<Key>,
    pub(super) dns64: Dns64Phase,
}

/// The slab of queries in flight and their timers.
#[derive(Debug, Default)]
pub(super) struct QueryTable {
    /// Each slot with the generation of its current (or last) query.
    slots: Vec<(u32, Option<Query>)>,
    free: Vec<u32>,
    live: usize,
    timers: BinaryHeap<Reverse<(Instant, QueryRef, Timer)>>,
    /// The heap size above which [`QueryTable::compact_timers`] runs next (besides the fixed bound).
    timers_compact_at: usize,
}

impl QueryTable {
    /// Queries in the table.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Puts a query in a free slot (or a new one) under a new generation.
    #[inline]
    pub(super) fn insert(&mut self, q: Query) -> QueryRef {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push((0, None));
                // The engine admits at most `max_inflight` (≤ 32,768) queries at once.
                (self.slots.len() - 1) as u32
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.0 = entry.0.wrapping_add(1);
        entry.1 = Some(q);
        self.live += 1;
        QueryRef {
            slot,
            generation: entry.0,
        }
    }

    /// Takes the query out of the table (its places are the caller's business).
    #[inline]
    pub(super) fn remove(&mut self, r: QueryRef) -> Option<Query> {
        let entry = self.slots.get_mut(r.slot as usize)?;
        if entry.0 != r.generation {
            return None;
        }
        let q = entry.1.take()?;
        self.free.push(r.slot);
        self.live -= 1;
        Some(q)
    }

    /// The query `r` names, if it is still in the table.
    #[inline]
    pub(super) fn get(&self, r: QueryRef) -> Option<&Query> {
        match self.slots.get(r.slot as usize) {
            Some((generation, Some(q))) if *generation == r.generation => Some(q),
            _ => None,
        }
    }

    /// [`Self::get`], mutable.
    #[inline]
    pub(super) fn get_mut(&mut self, r: QueryRef) -> Option<&mut Query> {
        match self.slots.get_mut(r.slot as usize) {
            Some((generation, Some(q))) if *generation == r.generation => Some(q),
            _ => None,
        }
    }

    /// Whatever query occupies `r`'s slot, and whether it is `r`'s (`None` if the slot is empty).
    #[inline]
    pub(super) fn occupant(&self, r: QueryRef) -> Option<(&Query, bool)> {
        match self.slots.get(r.slot as usize) {
            Some((generation, Some(q))) => Some((q, *generation == r.generation)),
            _ => None,
        }
    }

    /// Whether `r` names a query in the table.
    #[inline]
    pub(super) fn contains(&self, r: QueryRef) -> bool {
        self.get(r).is_some()
    }

    /// Arms a timer for `r` (timers of queries that are gone are skipped when they fire, and dropped
    /// by compaction, which keeps the heap near `4 × max_inflight + 16`).
    #[inline]
    pub(super) fn push_timer(
        &mut self,
        at: Instant,
        r: QueryRef,
        kind: Timer,
        max_inflight: usize,
    ) {
        self.timers.push(Reverse((at, r, kind)));
        self.compact_timers(max_inflight);
    }

    /// Keeps the lazy-deletion heap bounded: once it holds more than 4 × `max_inflight` + 16 entries,
    /// and more than twice what the last compaction left, the timers of queries that are gone are
    /// dropped. Every timer of a live query stays, whatever its kind (its deadline and any pending
    /// hedge: one per placement). So the heap never stays above the larger of those two bounds, and a
    /// heap of mostly live timers is not rescanned on every push.
    fn compact_timers(&mut self, max_inflight: usize) {
        let bound = (4 * max_inflight + 16).max(self.timers_compact_at);
        if self.timers.len() <= bound {
            return;
        }
        let slots = &self.slots;
        self.timers.retain(|&Reverse((_, r, _))| {
            matches!(slots.get(r.slot as usize), Some((generation, Some(_))) if *generation == r.generation)
        });
        self.timers_compact_at = 2 * self.timers.len();
    }

    /// The earliest armed timer.
    #[inline]
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the next timer due at `now` whose query is still in the table.
    #[inline]
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(QueryRef, Timer)> {
        while let Some(&Reverse((at, r, kind))) = self.timers.peek() {
            if at > now {
                return None;
            }
            self.timers.pop();
            if self.contains(r) {
                return Some((r, kind));
            }
        }
        None
    }

    /// Timers in the heap, live or not.
    #[cfg(test)]
    pub(super) fn timers_len(&self) -> usize {
        self.timers.len()
    }

    /// The queries in the table.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Query> {
        self.slots.iter_mut().filter_map(|(_, q)| q.as_mut())
    }
}

/// Emptied `places` lists kept for new queries (see [`Engine::withdraw_places`]).
pub(super) const SPARE_PLACES: usize = 256;

impl<R: Rng> Engine<R> {
    /// An empty `places` list for a new query (a spare one while there are any).
    pub(super) fn new_places(&mut self) -> Vec<Place> {
        self.spare_places.pop().unwrap_or_default()
    }

    /// Puts a new query in the table and counts it against its client.
    pub(super) fn start_query(&mut self, q: Query) -> QueryRef {
        self.clients.started(q.client.peer().ip());
        self.queries.insert(q)
    }

    /// Removes a query from the table and from every place it is outstanding. Its `upstream_msg`
    /// carries the client's own question again (DNS64 asks upstream for A records in its place), so
    /// a SERVFAIL or a query-log entry made from it shows what the client asked.
    pub(super) fn take_query(&mut self, r: QueryRef) -> Option<Query> {
        self.withdraw_places(r);
        // Everything is done in place, so the query is moved only once, out of the table.
        let q = self.queries.get_mut(r)?;
        super::dns64::restore_question(q);
        self.clients.finished(q.client.peer().ip());
        self.queries.remove(r)
    }

    /// Takes a live query out of every place it is outstanding (it stays in the table).
    pub(super) fn withdraw_places(&mut self, r: QueryRef) {
        let Some(q) = self.queries.get_mut(r) else {
            return;
        };
        let mut places = core::mem::take(&mut q.places);
        for p in places.drain(..) {
            match p {
                Place::Waiting { upstream } => {
                    if let Some(u) = self.upstreams.iter_mut().find(|u| u.id == upstream) {
                        u.waiting.retain(|w| w.slot != r.slot);
                    }
                }
                Place::Queued { session } => {
                    if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session) {
                        s.queued.retain(|w| w.slot != r.slot);
                    }
                }
                Place::Sent { session, id, .. } => {
                    if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session) {
                        // Its answer may still come: the ID is not drawn again soon.
                        if s.inflight.remove(id).is_some() {
                            s.retired_ids.push(id);
                            if s.transport == Transport::Message {
                                self.actions.push_back(Action::Cancel { session, tag: id });
                            }
                        }
                        s.prune_unprobed();
                    }
                }
            }
        }
        // Kept (empty) for the next query: one allocation less per query.
        if places.capacity() > 0 && self.spare_places.len() < SPARE_PLACES {
            self.spare_places.push(places);
        }
    }

    /// Removes the places matching `f` from a live query; `false` if the query is gone.
    pub(super) fn forget_place(&mut self, r: QueryRef, f: impl Fn(&Place) -> bool) -> bool {
        match self.queries.get_mut(r) {
            Some(q) => {
                q.places.retain(|p| !f(p));
                true
            }
            None => false,
        }
    }

    /// Arms a timer for `r`.
    pub(super) fn push_timer(&mut self, at: Instant, r: QueryRef, kind: Timer) {
        self.queries
            .push_timer(at, r, kind, self.config.max_inflight);
    }
}
