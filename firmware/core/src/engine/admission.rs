//! Admission: a token bucket and a count of queries in flight per source address, so one client (or
//! a spoofed flood) cannot starve the others. Bounded by [`ClientLimits::table_size`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::IpAddr;

use super::{ClientLimits, Instant};

/// A token bucket in thousandths of a query: `rate` tokens a second, at most `burst` held.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens_milli: u64,
    last: Instant,
}

impl Bucket {
    /// A full bucket (a source not seen before may send its burst at once).
    fn full(now: Instant, burst: u64) -> Self {
        Self {
            tokens_milli: burst.saturating_mul(1000),
            last: now,
        }
    }

    /// Refills for the time since the last call and takes one token: `false` if there is none.
    fn take(&mut self, now: Instant, rate: u64, burst: u64) -> bool {
        let ms = u64::try_from(now.saturating_since(self.last).as_millis()).unwrap_or(u64::MAX);
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(ms.saturating_mul(rate))
            .min(burst.saturating_mul(1000));
        self.last = now;
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// Per-source accounting (token bucket, queries in flight).
#[derive(Clone, Copy, Debug)]
struct ClientState {
    bucket: Bucket,
    inflight: u32,
}

/// The sources seen lately.
#[derive(Debug, Default)]
pub(super) struct Clients {
    table: BTreeMap<IpAddr, ClientState>,
}

/// Answers, per second, to sources outside `allow` (REFUSED, NOTIMP, ...), all such sources together.
pub(super) const OUTSIDE_ANSWERS_PER_S: u64 = 20;
/// How many such answers may go out at once after a quiet spell.
pub(super) const OUTSIDE_BURST: u64 = 20;

/// One token bucket for every source outside `allow`: they get an answer (so a misconfigured
/// device learns at once that it is refused), but spoofed queries cannot make the router reflect
/// more than [`OUTSIDE_ANSWERS_PER_S`] answers a second at anyone.
#[derive(Debug, Default)]
pub(super) struct Outside(Option<Bucket>);

impl Outside {
    /// `false` if the budget is spent (the query is dropped unanswered).
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        self.0
            .get_or_insert_with(|| Bucket::full(now, OUTSIDE_BURST))
            .take(now, OUTSIDE_ANSWERS_PER_S, OUTSIDE_BURST)
    }
}

/// Whether the limits apply to `ip` (loopback only with `limit_loopback`).
fn limited(limits: &ClientLimits, ip: IpAddr) -> bool {
    limits.limit_loopback || !ip.is_loopback()
}

impl Clients {
    /// Token bucket per source: `false` if the query is over the source's rate.
    #[inline]
    pub(super) fn admit(&mut self, now: Instant, limits: &ClientLimits, ip: IpAddr) -> bool {
        if (limits.rate_qps == 0 && limits.max_inflight == 0) || !limited(limits, ip) {
            return true;
        }
        let burst = u64::from(limits.burst.max(1));
        if !self.table.contains_key(&ip) && self.table.len() >= limits.table_size.max(1) {
            // Forget idle sources, oldest first; a table of busy sources is not grown.
            let idle: Vec<_> = self
                .table
                .iter()
                .filter(|(_, c)| c.inflight == 0)
                .map(|(k, c)| (c.bucket.last, *k))
                .collect();
            let mut idle = idle;
            idle.sort_unstable();
            for (_, k) in idle.iter().take((limits.table_size / 4).max(1)) {
                self.table.remove(k);
            }
            if self.table.len() >= limits.table_size.max(1) {
                return false;
            }
        }
        let c = self.table.entry(ip).or_insert(ClientState {
            bucket: Bucket::full(now, burst),
            inflight: 0,
        });
        if limits.rate_qps == 0 {
            c.bucket.last = now;
            return true;
        }
        c.bucket.take(now, u64::from(limits.rate_qps), burst)
    }

    /// Whether `ip` may have another query in flight.
    #[inline]
    pub(super) fn has_room(&self, limits: &ClientLimits, ip: IpAddr) -> bool {
        let max = limits.max_inflight;
        max == 0
            || !limited(limits, ip)
            || self
                .table
                .get(&ip)
                .is_none_or(|c| (c.inflight as usize) < max)
    }

    /// A query of `ip`'s entered the query table.
    #[inline]
    pub(super) fn started(&mut self, ip: IpAddr) {
        if let Some(c) = self.table.get_mut(&ip) {
            c.inflight += 1;
        }
    }

    /// A query of `ip`'s left the query table.
    #[inline]
    pub(super) fn finished(&mut self, ip: IpAddr) {
        if let Some(c) = self.table.get_mut(&ip) {
            c.inflight = c.inflight.saturating_sub(1);
        }
    }
}
