//! A bounded, TTL-respecting response cache with negative caching and serve-stale. Sans-IO: `now` comes in.
//!
//! Keyed by [`Key`]: lower-cased QNAME wire bytes, QTYPE, QCLASS and the DO (RFC 3225), CD and AD bits
//! (answers differ with DNSSEC records, checking disabled, and whether authenticated data was asked for,
//! RFC 6840 §5.7-5.8), and the RD bit: the query goes upstream with the client's RD (a DNS proxy is
//! transparent, RFC 5625 §4.1), a recursive resolver may answer RD=0 from its cache only or REFUSE it,
//! and the answer echoes RD (RFC 1035 §4.1.1), so RD=0 and RD=1 answers are kept apart. What is stored
//! (`insert`), with entry lifetime `T` in seconds:
//! - NOERROR with answers: `T` = min TTL over answer + authority records (and an authority SOA's MINIMUM),
//!   clamped to `[min_ttl, max_ttl]`. An answer record with TTL 0 means "do not cache" (RFC 1035 §3.2.1);
//!   a TTL with the top bit set counts as 0 (RFC 2181 §8).
//! - NXDOMAIN and NOERROR/NODATA (RFC 2308): only with an SOA in the authority section (§5); `T` = min(SOA
//!   TTL, SOA MINIMUM, answer TTLs) capped by `negative_max_ttl` (`min_ttl` is not applied).
//! - SERVFAIL and REFUSED: `T` = `servfail_ttl` (0: never; RFC 2308 §7.1 allows ≤ 5 min), never served
//!   stale, and never displacing an entry that could still be served stale.
//! - Never: QR clear, TC set, opcode ≠ QUERY, QDCOUNT ≠ 1, a question ≠ the key's, other RCODEs,
//!   anything `wire::message::scan` rejects, or more than `max_bytes / 8` octets.
//!
//! Stored form: the message up to its end or its OPT record, then the OPT without Padding options (RFC
//! 7830; `rewrite::to_client` drops both padding and records after the OPT anyway). Every non-OPT TTL is
//! rewritten to lie in `[T, max(T, max_ttl)]` (negative and failure entries: exactly `T`), so a fresh hit,
//! served for `elapsed < T` seconds, shows each TTL minus the whole seconds spent in cache and never below 1.
//! Once expired, an entry is served only by `get_stale` for `max_stale` seconds with every TTL set to
//! `stale_answer_ttl` (RFC 8767 §4), then removed. Returned messages keep the upstream ID, always pass
//! `scan`, and have the same question and answer/authority counts as the upstream response.
//!
//! Bounds: `len() ≤ max_entries` and `bytes() ≤ max_bytes` (per entry: message + [`ENTRY_OVERHEAD`] +
//! twice the key) after every call. To make room, entries past their stale window go first, then the least
//! recently used (hits refresh recency). Every call is O(log n) plus the message copy: a slab indexed by
//! three B-trees (key, recency tick, purge time); each insert also purges up to two dead entries.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::time::Instant;
use crate::wire::edns::{self, OPTION_PADDING};
use crate::wire::header::{self, OPCODE_QUERY, rcode};
use crate::wire::message::{self, Scan, skip_record};
use crate::wire::{TYPE_SOA, name};

/// Per-entry bookkeeping charged to `max_bytes` besides the message and two copies of the key.
pub const ENTRY_OVERHEAD: usize = 192;

/// Cache limits and TTL policy; all TTLs in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries held (0 disables the cache).
    pub max_entries: usize,
    /// Most bytes charged (messages + per-entry overhead); larger than `max_bytes / 8` is never stored.
    pub max_bytes: usize,
    /// Positive TTLs below are raised to this.
    pub min_ttl: u32,
    /// TTLs above are lowered to this (wins over `min_ttl` if they conflict).
    pub max_ttl: u32,
    /// Cap on negative (NXDOMAIN/NODATA) TTLs (RFC 2308 §5).
    pub negative_max_ttl: u32,
    /// How long SERVFAIL/REFUSED is kept; 0 = never. The engine stores a SERVFAIL only when every
    /// upstream it tried answered SERVFAIL, never one of its own (time-out, connection or TLS failure).
    pub servfail_ttl: u32,
    /// TTL written into stale answers (RFC 8767 §4).
    pub stale_answer_ttl: u32,
    /// How long past expiry an entry may be served stale; 0 = never.
    pub max_stale: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 4096,
            max_bytes: 2 << 20,
            min_ttl: 0,
            max_ttl: 86_400,
            negative_max_ttl: 3600,
            servfail_ttl: 5,
            stale_answer_ttl: 30,
            max_stale: 86_400,
        }
    }
}

/// Counters since construction (not reset by [`Cache::clear`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Fresh answers served by [`Cache::get`].
    pub hits: u64,
    /// Stale answers served by [`Cache::get_stale`].
    pub stale_hits: u64,
    /// [`Cache::get`] calls without a fresh entry.
    pub misses: u64,
    /// Responses stored.
    pub inserts: u64,
    /// Entries removed to make room or because their stale window passed.
    pub evictions: u64,
}

/// What a cached answer depends on, packed: lower-cased QNAME wire bytes, QTYPE, QCLASS, then one octet
/// holding DO (0x01), RD (0x02), CD (0x10) and AD (0x20).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Box<[u8]>);

impl Key {
    /// The key of a query (the client's or its upstream form: both give the same key). `None` unless
    /// `scan` (of `query`) shows opcode QUERY and exactly one question.
    pub fn from_query(query: &[u8], scan: &Scan) -> Option<Key> {
        let q = scan.question?;
        if scan.header.qdcount != 1 || scan.header.opcode() != OPCODE_QUERY {
            return None;
        }
        // The first QNAME is never compressed (pointers must point back past the header).
        let mut k = query.get(header::LEN..q.name_end.checked_add(4)?)?.to_vec();
        k.get_mut(..q.name_end.checked_sub(header::LEN)?)?
            .make_ascii_lowercase(); // length octets (≤ 63) are unaffected
        let dnssec_ok = scan.opt.is_some_and(|o| o.dnssec_ok());
        k.push(
            u8::from(dnssec_ok)
                | (u8::from(scan.header.rd()) << 1)
                | (scan.header.flags & 0x0030) as u8,
        );
        Some(Key(k.into_boxed_slice()))
    }

    /// Whether a question (QNAME, QTYPE, QCLASS as on the wire) is this key's.
    fn asks(&self, q: &[u8]) -> bool {
        let n = q.len().saturating_sub(4); // `n < q.len() < self.0.len()` below: no panics
        self.0.len() == q.len() + 1
            && name::eq_ignore_case(&self.0[..n], &q[..n])
            && self.0[n..q.len()] == q[n..]
    }

    fn cost(&self, msg_len: usize) -> usize {
        ENTRY_OVERHEAD + 2 * self.0.len() + msg_len
    }
}

#[derive(Debug)]
struct Entry {
    key: Key,
    msg: Box<[u8]>,
    stored: u64,
    expires: u64,
    purge: u64,
    tick: u64,
    failure: bool,
}

/// The response cache. See the module documentation for the rules.
#[derive(Debug, Default)]
pub struct Cache {
    config: CacheConfig,
    index: BTreeMap<Key, usize>,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    lru: BTreeMap<u64, usize>,
    purge: BTreeSet<(u64, usize)>,
    tick: u64,
    bytes: usize,
    stats: CacheStats,
}

impl Cache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// A fresh copy of the cached response, every TTL (not OPT's) reduced by the whole seconds spent in
    /// cache (each ≥ 1). Expired entries are misses here (see [`Cache::get_stale`]).
    pub fn get(&mut self, now: Instant, key: &Key) -> Option<Vec<u8>> {
        let now = now.as_millis();
        let slot = self.live(now, key);
        let entry = slot.and_then(|s| self.entry(s)).filter(|e| now < e.expires);
        let out = entry.and_then(|e| {
            let elapsed = u32::try_from(now.saturating_sub(e.stored) / 1000).unwrap_or(u32::MAX);
            with_ttls(&e.msg, |ttl| ttl.saturating_sub(elapsed).max(1))
        });
        self.served(slot, out, false)
    }

    /// An expired entry still within `max_stale`: a copy with every TTL (not OPT's) set to
    /// `stale_answer_ttl`. `None` for fresh entries (use [`Cache::get`]) and for cached failures. The
    /// engine should add EDE 3 (Stale Answer, RFC 8914 §4.4; RFC 8767 §6), or to an NXDOMAIN 19
    /// (Stale NXDOMAIN Answer, §4.20).
    pub fn get_stale(&mut self, now: Instant, key: &Key) -> Option<Vec<u8>> {
        let now = now.as_millis();
        let slot = self.live(now, key);
        let ttl = self.config.stale_answer_ttl;
        let entry = slot.and_then(|s| self.entry(s));
        let out = entry
            .filter(|e| now >= e.expires && !e.failure)
            .and_then(|e| with_ttls(&e.msg, |_| ttl));
        self.served(slot, out, true)
    }

    /// Stores an upstream `response` to the question in `key` if cacheable (module docs); returns whether
    /// it was stored. A stored response replaces the key's previous entry; a rejected one leaves it alone.
    pub fn insert(&mut self, now: Instant, key: Key, response: &[u8]) -> bool {
        let (now, c) = (now.as_millis(), self.config);
        for _ in 0..2 {
            self.evict(now, false); // amortised purge of entries past their stale window
        }
        if c.max_entries == 0 || response.len() > c.max_bytes / 8 {
            return false;
        }
        let Some((msg, ttl, failure)) = prepare(&c, &key, response) else {
            return false;
        };
        if let Some(&old) = self.index.get(&key) {
            let live_answer = |e: &Entry| !e.failure && now < e.purge;
            if failure && self.entry(old).is_some_and(live_answer) {
                return false;
            }
            self.remove(old);
        }
        let cost = key.cost(msg.len());
        while self.index.len() >= c.max_entries || self.bytes + cost > c.max_bytes {
            if !self.evict(now, true) {
                return false;
            }
        }
        let expires = now.saturating_add(u64::from(ttl) * 1000);
        let stale = if failure { 0 } else { c.max_stale };
        let purge = expires.saturating_add(u64::from(stale) * 1000);
        let slot = self.free.pop().unwrap_or(self.slots.len());
        if slot == self.slots.len() {
            self.slots.push(None);
        }
        self.tick += 1;
        self.index.insert(key.clone(), slot);
        self.lru.insert(self.tick, slot);
        self.purge.insert((purge, slot));
        self.bytes += cost;
        let (msg, stored, tick) = (msg.into_boxed_slice(), now, self.tick);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Entry {
                key,
                msg,
                stored,
                expires,
                purge,
                tick,
                failure,
            });
        }
        self.stats.inserts += 1;
        true
    }

    /// Entries held (including expired ones kept for serve-stale).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// `true` if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes charged against `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops every entry (statistics are kept).
    pub fn clear(&mut self) {
        *self = Self {
            config: self.config,
            stats: self.stats,
            ..Self::default()
        };
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    fn entry(&self, slot: usize) -> Option<&Entry> {
        self.slots.get(slot)?.as_ref()
    }

    /// The key's slot unless absent or past its stale window (then it is removed).
    fn live(&mut self, now: u64, key: &Key) -> Option<usize> {
        let slot = *self.index.get(key)?;
        if now < self.entry(slot)?.purge {
            return Some(slot);
        }
        self.remove(slot);
        self.stats.evictions += 1;
        None
    }

    /// Counts a lookup and, on success, marks the entry most recently used.
    fn served(
        &mut self,
        slot: Option<usize>,
        out: Option<Vec<u8>>,
        stale: bool,
    ) -> Option<Vec<u8>> {
        let entry = slot.and_then(|s| self.slots.get_mut(s)?.as_mut().map(|e| (s, e)));
        match (out.is_some(), entry) {
            (true, Some((slot, e))) => {
                self.lru.remove(&e.tick);
                self.tick += 1;
                e.tick = self.tick;
                self.lru.insert(e.tick, slot);
                *(if stale {
                    &mut self.stats.stale_hits
                } else {
                    &mut self.stats.hits
                }) += 1;
            }
            _ if !stale => self.stats.misses += 1,
            _ => {}
        }
        out
    }

    fn remove(&mut self, slot: usize) {
        if let Some(e) = self.slots.get_mut(slot).and_then(Option::take) {
            self.index.remove(&e.key);
            self.lru.remove(&e.tick);
            self.purge.remove(&(e.purge, slot));
            self.bytes -= e.key.cost(e.msg.len());
            self.free.push(slot);
        }
    }

    /// Evicts the entry whose stale window ended first if it has ended, else (if `lru`) the least
    /// recently used one. Returns whether one was evicted.
    fn evict(&mut self, now: u64, lru: bool) -> bool {
        let dead = self
            .purge
            .first()
            .filter(|(purge, _)| *purge <= now)
            .map(|&(_, s)| s);
        let oldest = || self.lru.first_key_value().map(|(_, &s)| s).filter(|_| lru);
        let Some(slot) = dead.or_else(oldest) else {
            return false;
        };
        self.remove(slot);
        self.stats.evictions += 1;
        true
    }
}

/// TTL as a cache reads it: the top bit set means 0 (RFC 2181 §8).
fn ttl_at(msg: &[u8], at: usize) -> Option<u32> {
    let ttl = u32::from_be_bytes(msg.get(at..at + 4)?.try_into().ok()?);
    Some(if ttl > 0x7fff_ffff { 0 } else { ttl })
}

/// Decides cacheability; returns the stored form, its lifetime in seconds and whether it is a failure.
fn prepare(c: &CacheConfig, key: &Key, response: &[u8]) -> Option<(Vec<u8>, u32, bool)> {
    let s = message::scan(response).ok()?;
    let (h, q) = (s.header, s.question?);
    if !h.is_response() || h.tc() || h.opcode() != OPCODE_QUERY || h.qdcount != 1 {
        return None;
    }
    if !key.asks(response.get(header::LEN..q.name_end + 4)?) {
        return None;
    }
    let (mut min_answer, mut min_authority, mut soa) = (u32::MAX, u32::MAX, None::<u32>);
    let mut pos = s.question_end;
    for i in 0..u32::from(h.ancount) + u32::from(h.nscount) {
        let (end, rtype, rdata) = skip_record(response, pos).ok()?;
        let ttl = ttl_at(response, rdata.checked_sub(6)?)?;
        if i < u32::from(h.ancount) {
            if ttl == 0 {
                return None;
            }
            min_answer = min_answer.min(ttl);
        } else {
            min_authority = min_authority.min(ttl);
            // SOA RDATA: MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM.
            let names_end = name::skip(response, rdata).and_then(|n| name::skip(response, n));
            match names_end {
                Ok(fixed) if rtype == TYPE_SOA && fixed + 20 <= end => {
                    let minimum = ttl_at(response, fixed + 16)?;
                    soa = Some(soa.unwrap_or(u32::MAX).min(ttl).min(minimum));
                }
                _ => {}
            }
        }
        pos = end;
    }
    let (ttl, hi, failure) = match s.rcode() {
        rcode::NOERROR if h.ancount > 0 => {
            let t = min_answer.min(min_authority).min(soa.unwrap_or(u32::MAX));
            let t = t.max(c.min_ttl).min(c.max_ttl);
            (t, c.max_ttl.max(t), false)
        }
        rcode::NOERROR | rcode::NXDOMAIN => {
            let t = soa?.min(min_answer).min(c.negative_max_ttl);
            (t, t, false)
        }
        rcode::SERVFAIL | rcode::REFUSED => (c.servfail_ttl, c.servfail_ttl, true),
        _ => return None,
    };
    if ttl == 0 {
        return None;
    }
    let out = with_ttls(&compact(response, &s)?, |own| own.min(hi).max(ttl))?;
    message::scan(&out).is_ok().then_some((out, ttl, failure))
}

/// The message up to its OPT (or end), then the OPT without Padding options; ARCOUNT adjusted.
fn compact(response: &[u8], s: &Scan) -> Option<Vec<u8>> {
    let Some(o) = s.opt else {
        return Some(response.get(..s.end)?.to_vec());
    };
    let mut out = response.get(..o.rdata_start)?.to_vec();
    for (code, data) in edns::options(response.get(o.rdata_start..o.end)?) {
        if code != OPTION_PADDING {
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
            out.extend_from_slice(data);
        }
    }
    let rdlen = u16::try_from(out.len() - o.rdata_start).ok()?;
    out.get_mut(o.rdata_start.checked_sub(2)?..o.rdata_start)?
        .copy_from_slice(&rdlen.to_be_bytes());
    let arcount = o.index.checked_add(1)?;
    out.get_mut(10..12)?.copy_from_slice(&arcount.to_be_bytes());
    Some(out)
}

/// A copy of a one-question message with `f` applied to the TTL of every record except OPT.
fn with_ttls(msg: &[u8], f: impl Fn(u32) -> u32) -> Option<Vec<u8>> {
    let mut out = msg.to_vec();
    let h = header::Header::parse(msg).ok()?;
    let records = u32::from(h.ancount) + u32::from(h.nscount) + u32::from(h.arcount);
    let question_end = name::skip(msg, header::LEN).ok()? + 4;
    crate::wire::record::map_ttls_from(msg, &mut out, question_end, records, f).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests;
