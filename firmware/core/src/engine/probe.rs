//! Loss probes on TCP sessions (issue 17): what keeps one lost TCP segment from costing a
//! retransmission timeout.
//!
//! When a query on a DoT or DoH (HTTP/2) session has gone unanswered for [`probe_delay`] (about
//! 1.33 round trips from a steady upstream), it is sent again: on DoT
//! written under a new ID, on DoH as a new request (a new HTTP/2 stream). If the server's answer was
//! lost, the new answer is data *after* the hole: the server's TCP sees it acknowledged selectively and
//! resends the lost segment after a fraction of a round trip (RACK), instead of waiting for its
//! tail-loss probe or retransmission timeout (at least 200 ms plus two round trips on Linux for a lone
//! segment). If the query was lost, the same happens on lanveil's side. Whichever answer comes first is
//! used; the other is a late answer.
//!
//! Every answer is a round-trip sample, a probed query's too, counted for at most the wait its probe
//! beat (see `Engine::record_rtt`): slow answers widen the wait instead of being duplicated each time,
//! and a recovered loss does not widen it much.
//!
//! Timed per query: a probe goes out [`probe_delay`] after the oldest outstanding query that was not
//! probed yet was sent, so an answer to an earlier query (sent in its own segment, before the lost
//! one) does not push the probe back.
//!
//! Bounded: each query is probed at most once (neither it nor its copy again); after a probe a session
//! sends the next one only once something has arrived, and not within [`probe_delay`]; only once the
//! upstream has a round-trip estimate; and only on TCP sessions
//! ([`super::UpstreamSpec::tcp`]; QUIC has its own loss detection). The duplicate goes to the
//! resolver that already has the question, on the same connection: nothing new is revealed to anyone.

use core::time::Duration;

use super::session::{Session, SessionState};
use super::{Engine, Instant};
use crate::rng::Rng;

/// The earliest a query is probed after it was sent.
pub const PROBE_MIN: Duration = Duration::from_millis(30);

/// How long a query goes unanswered before its loss probe: the smoothed round
/// trip plus the larger of four mean deviations (as TCP's retransmission timeout, RFC 6298) and a
/// third of a round trip, at least [`PROBE_MIN`]. An upstream whose answers vary (a recursive
/// resolver's cache misses) pushes it out, so slow answers are not taken for losses; from a steady
/// one it stays near 1.33 round trips. A lost query or answer then costs the wait plus two round
/// trips (the probe's, then the resend the probe's selective acknowledgement brings about). Both in
/// microseconds.
pub fn probe_delay(srtt_us: u32, rttvar_us: u32) -> Duration {
    let extra = u64::from(rttvar_us) * 4;
    let extra = extra.max(u64::from(srtt_us / 3));
    Duration::from_micros(u64::from(srtt_us) + extra).max(PROBE_MIN)
}

impl<R: Rng> Engine<R> {
    /// When session `s` sends its loss probe, if it would: [`probe_delay`] after the oldest of its
    /// outstanding queries that was not probed yet was sent, and not sooner than that after its last
    /// probe. Timed from the query, not from the session's last answer: when two queries leave in
    /// separate segments and only the second is lost, the first one's answer must not push the
    /// second one's probe back by a round trip.
    pub(super) fn probe_at(&self, s: &Session) -> Option<Instant> {
        if !self.config.loss_probes || s.state != SessionState::Ready || s.retired {
            return None;
        }
        let u = self.upstreams.iter().find(|u| u.id == s.upstream)?;
        if !u.tcp {
            return None;
        }
        let delay = probe_delay(u.srtt_us?, u.rttvar_us);
        let (sent, _) = s.oldest_unprobed()?;
        let at = sent + delay;
        match s.last_probe {
            // After a probe, the next one waits for something to arrive: a stalled connection (or a
            // dead server) gets one probe, not one per outstanding query.
            Some(p) if s.last_received <= p => None,
            Some(p) => Some(at.max(p + delay)),
            None => Some(at),
        }
    }

    /// Sends the loss probes that are due: each is the oldest unprobed query of its session again,
    /// under a new ID, and neither it nor its copy is probed again.
    pub(super) fn send_probes(&mut self, now: Instant) {
        for si in 0..self.sessions.len() {
            if self.probe_at(&self.sessions[si]).is_none_or(|t| t > now) {
                continue;
            }
            let s = &mut self.sessions[si];
            s.prune_unprobed();
            let Some((_, id)) = s.unprobed.pop_front() else {
                continue;
            };
            let Some(r) = s.inflight.get(id) else {
                continue;
            };
            s.last_probe = Some(now);
            self.stats.loss_probes += 1;
            // A probe is not activity: the stall detector still counts from the last real send.
            let last_activity = s.last_activity;
            self.send_on(now, si, r);
            let s = &mut self.sessions[si];
            s.last_activity = last_activity;
            // The copy is not probed in its turn (send_on listed it like any send, last).
            if let Some(&(_, copy)) = s.unprobed.back()
                && s.inflight.get(copy) == Some(r)
            {
                s.unprobed.pop_back();
            }
        }
    }
}
