//! A bounded, TTL-respecting response cache with negative caching and serve-stale. Sans-IO: `now` comes in.
//!
//! Keyed by [`Key`]: lower-cased QNAME wire bytes, QTYPE, QCLASS and the DO (RFC 3225), CD and AD bits
//! (answers differ with DNSSEC records, checking disabled, and whether authenticated data was asked for,
//! RFC 6840 §5.7-5.8). What is stored (`insert`), with entry lifetime `T` in seconds:
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
use crate::wire::{TYPE_OPT, name};

/// Per-entry bookkeeping charged to `max_bytes` besides the message and two copies of the key.
pub const ENTRY_OVERHEAD: usize = 192;
const TYPE_SOA: u16 = 6;

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
/// holding DO (0x01), CD (0x10) and AD (0x20).
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
        k.push(u8::from(dnssec_ok) | (scan.header.flags & 0x0030) as u8);
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
    /// engine should add EDE 3 (Stale Answer, RFC 8914 §4.4; RFC 8767 §6).
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
    let mut pos = name::skip(msg, header::LEN).ok()? + 4;
    for _ in 0..u32::from(h.ancount) + u32::from(h.nscount) + u32::from(h.arcount) {
        let (end, rtype, rdata) = skip_record(msg, pos).ok()?;
        if rtype != TYPE_OPT {
            let at = rdata.checked_sub(6)?;
            let ttl = f(ttl_at(msg, at)?);
            out.get_mut(at..at + 4)?.copy_from_slice(&ttl.to_be_bytes());
        }
        pos = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::scan;
    use alloc::vec;
    use hickory_proto::op::Message;

    type Rr<'a> = (&'a str, u16, u32, Vec<u8>);
    const EX: &str = "example.com";
    const A: u16 = 1;
    const TXT: u16 = 16;

    fn wire(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for label in name.split('.') {
            v.push(label.len() as u8);
            v.extend_from_slice(label.as_bytes());
        }
        v.push(0);
        v
    }

    /// One question, the three sections, and (if `opt` is Some(flags)) an OPT with 6 octets of padding.
    fn msg(flags: u16, qname: &str, qtype: u16, secs: [&[Rr]; 3], opt: Option<u16>) -> Vec<u8> {
        let [an, ns, ar] = secs.map(|s| s.len() as u16);
        let mut m = vec![0xab, 0xcd];
        for v in [flags, 1, an, ns, ar + u16::from(opt.is_some())] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        m.extend(wire(qname));
        m.extend_from_slice(&[(qtype >> 8) as u8, qtype as u8, 0, 1]);
        for (name, rtype, ttl, rdata) in secs.iter().flat_map(|s| s.iter()) {
            m.extend(wire(name));
            m.extend_from_slice(&[(rtype >> 8) as u8, *rtype as u8, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        if let Some(f) = opt {
            m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, (f >> 8) as u8, f as u8]);
            m.extend_from_slice(&[0, 10, 0, 12, 0, 6, 0, 0, 0, 0, 0, 0]);
        }
        m
    }

    /// A response for example.com/A with an OPT record.
    fn resp(flags: u16, an: &[Rr], ns: &[Rr]) -> Vec<u8> {
        msg(flags, EX, A, [an, ns, &[]], Some(0))
    }

    fn soa(ttl: u32, minimum: u32) -> Rr<'static> {
        let mut rdata = [wire("ns.example.com"), wire("host.example.com")].concat();
        for v in [1u32, 7200, 900, 86400, minimum] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        (EX, 6, ttl, rdata)
    }

    fn a(name: &str, ttl: u32) -> Rr<'_> {
        (name, A, ttl, vec![192, 0, 2, 1])
    }

    fn kf(name: &str, qtype: u16, dnssec_ok: bool, flags: u16) -> Key {
        let opt = Some(u16::from(dnssec_ok) << 15);
        let q = msg(flags, name, qtype, [&[]; 3], opt);
        Key::from_query(&q, &scan(&q).unwrap()).unwrap()
    }

    fn k(name: &str) -> Key {
        kf(name, A, false, 0x0100)
    }

    fn t(secs: f64) -> Instant {
        Instant::from_millis((secs * 1000.0) as u64)
    }

    /// TTLs of all non-OPT records, read with hickory.
    fn ttls(m: &[u8]) -> Vec<u32> {
        let h = Message::from_vec(m).unwrap();
        let all = [h.answers(), h.name_servers(), h.additionals()];
        all.iter().flat_map(|s| s.iter()).map(|r| r.ttl()).collect()
    }

    fn fresh(c: &mut Cache, secs: f64, name: &str) -> Option<Vec<u32>> {
        c.get(t(secs), &k(name)).map(|m| ttls(&m))
    }

    fn stale(c: &mut Cache, secs: f64, name: &str) -> Option<Vec<u32>> {
        c.get_stale(t(secs), &k(name)).map(|m| ttls(&m))
    }

    fn with(f: impl FnOnce(&mut CacheConfig)) -> Cache {
        let mut config = CacheConfig::default();
        f(&mut config);
        Cache::new(config)
    }

    #[test]
    fn ttl_decrements_by_time_in_cache() {
        let mut c = with(|_| ());
        let ns = (EX, 2, 600, wire("ns.example.com"));
        let secs: [&[Rr]; 3] = [&[a(EX, 300)], &[ns], &[a("ns.example.com", 500)]];
        let r = msg(0x8180, EX, A, secs, None);
        assert!(c.insert(t(1.0), k(EX), &r));
        assert_eq!(fresh(&mut c, 11.0, EX).unwrap(), [290, 590, 490]);
        assert_eq!(fresh(&mut c, 11.9, EX).unwrap(), [290, 590, 490]);
        assert_eq!(fresh(&mut c, 300.9, EX).unwrap(), [1, 301, 201]);
        assert_eq!(c.stats().hits, 3);
    }

    #[test]
    fn expiry_and_replacement() {
        let mut c = with(|_| ());
        assert!(c.insert(t(0.0), k(EX), &resp(0x8180, &[a(EX, 60)], &[])));
        assert!(fresh(&mut c, 59.999, EX).is_some());
        assert!(fresh(&mut c, 60.0, EX).is_none());
        assert!(c.insert(t(60.0), k(EX), &resp(0x8180, &[a(EX, 10)], &[])));
        assert_eq!((c.len(), fresh(&mut c, 60.0, EX).unwrap()), (1, vec![10]));
        assert_eq!((c.stats().misses, c.stats().inserts), (1, 2));
    }

    #[test]
    fn min_and_max_ttl_clamping() {
        let mut c = with(|c| (c.min_ttl, c.max_ttl) = (60, 100));
        let r = |name, ttl| msg(0x8180, name, A, [&[a(name, ttl)], &[], &[]], None);
        assert!(c.insert(t(0.0), k("low.test"), &r("low.test", 5)));
        assert!(c.insert(t(0.0), k("high.test"), &r("high.test", 1_000_000)));
        assert_eq!(fresh(&mut c, 0.0, "low.test").unwrap(), [60]);
        assert_eq!(fresh(&mut c, 59.0, "low.test").unwrap(), [1]);
        assert_eq!(fresh(&mut c, 0.0, "high.test").unwrap(), [100]);
        assert!(fresh(&mut c, 60.0, "low.test").is_none());
        assert!(fresh(&mut c, 100.0, "high.test").is_none());
    }

    #[test]
    fn nxdomain_with_soa_cached_for_min_of_soa_ttl_and_minimum_capped() {
        let mut c = with(|_| ());
        for (soa_ttl, minimum, cached) in [(900, 300, 300), (120, 7200, 120), (86400, 86400, 3600)]
        {
            assert!(c.insert(t(0.0), k(EX), &resp(0x8183, &[], &[soa(soa_ttl, minimum)])));
            assert_eq!(fresh(&mut c, 0.0, EX).unwrap(), [cached]);
            assert!(fresh(&mut c, f64::from(cached) - 0.1, EX).is_some());
            assert!(fresh(&mut c, f64::from(cached), EX).is_none());
        }
    }

    #[test]
    fn nodata_with_soa_cached() {
        let mut c = with(|_| ());
        assert!(c.insert(t(0.0), k(EX), &resp(0x8180, &[], &[soa(600, 60)])));
        let got = c.get(t(10.0), &k(EX)).unwrap();
        assert_eq!((ttls(&got), scan(&got).unwrap().rcode()), (vec![50], 0));
    }

    #[test]
    fn negative_without_soa_not_cached() {
        let mut c = with(|_| ());
        let ns = (EX, 2, 600, wire("ns.example.com"));
        for flags in [0x8180, 0x8183] {
            assert!(!c.insert(t(0.0), k(EX), &resp(flags, &[], &[])));
            assert!(!c.insert(t(0.0), k(EX), &resp(flags, &[], core::slice::from_ref(&ns)))); // referral
        }
        assert!(c.is_empty());
    }

    #[test]
    fn servfail_cached_only_servfail_ttl() {
        let mut c = with(|_| ());
        for flags in [0x8182, 0x8185] {
            assert!(c.insert(t(0.0), k(EX), &resp(flags, &[], &[])));
            assert!(fresh(&mut c, 4.9, EX).is_some());
            assert!(fresh(&mut c, 5.0, EX).is_none() && stale(&mut c, 5.0, EX).is_none());
        }
        assert!(!c.insert(t(9.0), k(EX), &resp(0x8184, &[], &[]))); // NOTIMP
        // A failure never displaces an answer that can still be served stale.
        assert!(c.insert(t(9.0), k(EX), &resp(0x8180, &[a(EX, 60)], &[])));
        assert!(!c.insert(t(70.0), k(EX), &resp(0x8182, &[], &[])));
        assert_eq!(stale(&mut c, 70.0, EX).unwrap(), [30]);
        let mut off = with(|c| c.servfail_ttl = 0);
        assert!(!off.insert(t(0.0), k(EX), &resp(0x8182, &[], &[])));
    }

    #[test]
    fn tc_ttl0_mismatched_and_oversized_not_cached() {
        let mut c = with(|c| c.max_bytes = 4096);
        let ok = resp(0x8180, &[a(EX, 60)], &[]);
        let mut bad = vec![
            resp(0x8380, &[a(EX, 60)], &[]),                   // TC
            resp(0x8180, &[a(EX, 60), a(EX, 0)], &[]),         // TTL 0 in the answer
            resp(0x8180, &[a(EX, 0x8000_0000)], &[]),          // RFC 2181 §8: means 0
            resp(0x0180, &[a(EX, 60)], &[]),                   // QR clear
            resp(0x8980, &[a(EX, 60)], &[]),                   // opcode IQUERY
            resp(0x8181, &[], &[soa(60, 60)]),                 // FORMERR
            resp(0x8180, &[(EX, TXT, 60, vec![0; 600])], &[]), // > max_bytes / 8
            msg(0x8180, "example.org", A, [&[a(EX, 60)], &[], &[]], None),
            msg(0x8180, EX, TXT, [&[a(EX, 60)], &[], &[]], None),
        ];
        for (at, value) in [(5, 2), (28, 3), (11, 2)] {
            let mut m = ok.clone(); // QDCOUNT 2, QCLASS CH, ARCOUNT past the end
            m[at] = value;
            bad.push(m);
        }
        for m in &bad {
            assert!(!c.insert(t(0.0), k(EX), m), "{m:02x?}");
        }
        assert!(c.is_empty() && c.insert(t(0.0), k(EX), &ok));
    }

    #[test]
    fn key_includes_do_and_cd_and_is_case_insensitive() {
        let plain = kf("Example.COM", A, false, 0x0100);
        let on = |dnssec_ok, flags| kf(EX, A, dnssec_ok, flags);
        assert_eq!(plain, k(EX));
        assert_ne!(plain, kf(EX, TXT, false, 0x0100));
        for other in [on(true, 0x0100), on(false, 0x0110), on(false, 0x0120)] {
            assert_ne!(plain, other); // DO, CD, AD
        }
        let mut c = with(|_| ());
        let r = msg(
            0x8180,
            "EXAMPLE.com",
            A,
            [&[a(EX, 60)], &[], &[]],
            Some(1 << 15),
        );
        assert!(c.insert(t(0.0), kf(EX, A, true, 0x0100), &r));
        assert!(c.get(t(1.0), &plain).is_none());
        assert!(c.get(t(1.0), &kf("eXample.com", A, true, 0x0100)).is_some());
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn check_accounting(c: &Cache) {
        let live: Vec<&Entry> = c.slots.iter().flatten().collect();
        let bytes: usize = live.iter().map(|e| e.key.cost(e.msg.len())).sum();
        assert_eq!((bytes, live.len()), (c.bytes, c.len()));
        assert_eq!((c.lru.len(), c.purge.len()), (c.len(), c.len()));
        assert!(c.len() <= c.config.max_entries && c.bytes <= c.config.max_bytes);
    }

    #[test]
    fn entries_and_bytes_bounds_hold_under_random_inserts() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for (max_entries, max_bytes) in [(100, 1 << 20), (10_000, 40_000)] {
            let mut c = with(|c| (c.max_entries, c.max_bytes) = (max_entries, max_bytes));
            let mut now = 0;
            for _ in 0..10_000 {
                now += rng.next() % 2000;
                let name = alloc::format!("n{}.test", rng.next() % 3000);
                let rdata = vec![7; (rng.next() % 400) as usize];
                let txt = (name.as_str(), TXT, 1 + (rng.next() % 600) as u32, rdata);
                let r = msg(0x8180, &name, TXT, [&[txt], &[], &[]], Some(0));
                c.insert(Instant::from_millis(now), kf(&name, TXT, false, 0x0100), &r);
                assert!(c.len() <= max_entries && c.bytes() <= max_bytes);
            }
            check_accounting(&c);
            assert!(c.stats().evictions > 0);
            c.clear();
            assert_eq!((c.len(), c.bytes(), c.slots.len()), (0, 0, 0));
        }
    }

    #[test]
    fn lru_evicts_least_recently_used_after_dead_entries() {
        let mut c = with(|c| (c.max_entries, c.max_stale) = (3, 10));
        let r = |name, ttl| msg(0x8180, name, A, [&[a(name, ttl)], &[], &[]], None);
        for name in ["a.test", "b.test", "c.test"] {
            assert!(c.insert(t(0.0), k(name), &r(name, 300)));
        }
        assert!(fresh(&mut c, 1.0, "a.test").is_some());
        assert!(c.insert(t(2.0), k("d.test"), &r("d.test", 1)));
        assert!(fresh(&mut c, 2.5, "b.test").is_none());
        assert!(fresh(&mut c, 2.5, "c.test").is_some() && stale(&mut c, 3.0, "d.test").is_some());
        // d.test was used last, but its stale window has passed: it goes before the LRU a.test.
        assert!(c.insert(t(20.0), k("e.test"), &r("e.test", 300)));
        assert!(fresh(&mut c, 20.0, "a.test").is_some() && c.len() == 3);
    }

    #[test]
    fn stale_served_only_by_get_stale_within_max_stale() {
        let mut c = with(|c| c.max_stale = 1000);
        assert!(c.insert(t(0.0), k(EX), &resp(0x8180, &[a(EX, 60)], &[soa(600, 600)])));
        assert!(stale(&mut c, 59.0, EX).is_none());
        assert!(fresh(&mut c, 61.0, EX).is_none());
        assert_eq!(stale(&mut c, 61.0, EX).unwrap(), [30, 30]);
        assert_eq!(stale(&mut c, 1059.9, EX).unwrap(), [30, 30]);
        assert!(stale(&mut c, 1060.0, EX).is_none());
        assert_eq!((c.len(), c.bytes(), c.stats().stale_hits), (0, 0, 2));
    }

    /// A returned message scans, asks the same question and keeps header and record counts.
    fn assert_same_shape(original: &[u8], got: &[u8]) {
        let (o, g) = (scan(original).unwrap(), scan(got).unwrap());
        assert_eq!(got[..g.question_end], original[..o.question_end]);
        let (oh, gh) = (o.header, g.header);
        assert_eq!((gh.ancount, gh.nscount), (oh.ancount, oh.nscount));
        assert_eq!(g.opt.map(|x| x.flags), o.opt.map(|x| x.flags));
        let theirs = Message::from_vec(got).unwrap();
        assert_eq!(theirs.answers().len(), usize::from(oh.ancount));
        assert!(got.len() <= original.len());
    }

    #[test]
    fn returned_messages_scan_with_same_question_and_counts() {
        let ns = (EX, 2, 600, wire("ns.example.com"));
        let cases = [
            msg(
                0x8180,
                EX,
                A,
                [&[a(EX, 60)], &[ns], &[a("ns.example.com", 60)]],
                Some(0x8000),
            ),
            resp(0x8183, &[], &[soa(60, 60)]),
            msg(0x8183, EX, A, [&[], &[soa(60, 60)], &[]], None),
            resp(0x8182, &[], &[]),
        ];
        for r in &cases {
            let mut c = with(|_| ());
            assert!(c.insert(t(0.0), k(EX), r));
            assert_same_shape(r, &c.get(t(1.0), &k(EX)).unwrap());
            if let Some(got) = c.get_stale(t(120.0), &k(EX)) {
                assert_same_shape(r, &got);
            }
        }
        // Records after the OPT are dropped (as `rewrite::to_client` does), padding too.
        let mut r = resp(0x8180, &[a(EX, 60)], &[]);
        r[11] += 1;
        r.extend(
            [
                wire("ns.example.com"),
                vec![0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4],
            ]
            .concat(),
        );
        let mut c = with(|_| ());
        assert!(c.insert(t(0.0), k(EX), &r));
        let got = c.get(t(0.0), &k(EX)).unwrap();
        assert_eq!(
            (scan(&got).unwrap().header.arcount, got.len()),
            (1, r.len() - 10 - 30)
        );
    }

    #[test]
    fn arbitrary_bytes_to_insert_never_panic() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut c = with(|c| c.max_entries = 64);
        let (an, ar) = ([a(EX, 60)], [a("x.example.com", 9)]);
        let base = msg(0x8180, EX, A, [&an, &[soa(60, 60)], &ar], Some(0x8000));
        let key = kf(EX, A, true, 0x0100);
        for i in 0..40_000u64 {
            let m: Vec<u8> = if i % 2 == 0 {
                (0..rng.next() % 300).map(|_| rng.next() as u8).collect()
            } else {
                let mut m = base.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = rng.next() as usize % m.len();
                    m[at] = rng.next() as u8;
                }
                m.truncate(m.len() - (rng.next() % 16) as usize * usize::from(i % 3 == 0));
                m
            };
            let now = Instant::from_millis(i * 100);
            c.insert(now, key.clone(), &m);
            if let Some(k2) = scan(&m).ok().and_then(|s| Key::from_query(&m, &s)) {
                c.insert(now, k2, &m);
            }
            let stale_at = Instant::from_millis(i * 100 + 61_000);
            for got in [c.get(now, &key), c.get_stale(stale_at, &key)]
                .into_iter()
                .flatten()
            {
                let s = scan(&got).unwrap();
                assert!(name::eq_ignore_case(
                    &got[12..s.question_end - 4],
                    &wire(EX)
                ));
            }
        }
        check_accounting(&c);
    }
}
