//! Keeping a warm connection (issue 17): what makes a cache miss after a quiet spell cost one round
//! trip instead of three.
//!
//! * **RFC 7828 edns-tcp-keepalive.** Every query on a stream (DoT) session carries the option, empty
//!   as §3.2.1 requires of clients; the padding shrinks by its four octets, so the padded length is
//!   unchanged. An answer carrying the option tells how long the server keeps an idle connection; the
//!   session then closes itself shortly *before* that (§3.2.2: never longer), so no query is written
//!   into a connection the server is just closing. Not sent on message (DoH) sessions: HTTP/2 has its
//!   own idle handling.
//! * **Warm standby.** When an idle session ends cleanly (the server's idle close, or ours just before
//!   it) and its upstream carried a query within the standby window (`EngineConfig::standby`, default
//!   10 min), one session is dialled again in the background, so the next query finds a connection
//!   ready. Bounded: nothing is redialled once the last query is older than the window, at most one
//!   standby dial per upstream per [`STANDBY_SPACING`] unless a query came since the last one, only
//!   when the upstream has no other session and is not backing off, and not for a session that
//!   failed. No TLS resumption is involved: every
//!   standby connection is a full handshake, as unlinkable as the first.
//! * While the window lasts, an idle session is not closed by lanveil's own `idle_timeout` (it would
//!   only be redialled); the server's idle close, or the RFC 7828 time it announced, ends it.

use alloc::vec::Vec;
use core::time::Duration;

use super::session::{Session, SessionState};
use super::{CloseReason, Engine, Instant, UpstreamId};
use crate::rng::Rng;
use crate::wire::edns;
use crate::wire::message::Scan;

/// RFC 7828 §3: the edns-tcp-keepalive option code.
pub const OPTION_TCP_KEEPALIVE: u16 = 11;
/// At most one standby dial per upstream in this time (a server that closes at once cannot make
/// lanveil redial in a loop).
pub const STANDBY_SPACING: Duration = Duration::from_secs(5);
/// The most a session closes ahead of its server's idle timeout (covers the round trip and timer
/// slack; see [`margin`]).
const KEEPALIVE_MARGIN_MAX: Duration = Duration::from_secs(1);
/// A server close after less idle time than this is not taken as its idle timeout.
const MIN_OBSERVED_IDLE: Duration = Duration::from_secs(1);

/// Appends `msg` (lanveil's upstream form of a query, OPT last with the padding option as its only
/// option) to `out` with an empty edns-tcp-keepalive option before the padding. The padding gives up
/// four octets, so the length stays the same (if the padding had fewer than four, it grows by a block
/// minus four). A message of another shape is appended unchanged. Returns the octets appended.
pub(super) fn push_with_keepalive(out: &mut Vec<u8>, msg: &[u8], question_end: usize) -> usize {
    let opt = question_end;
    let rdata = opt + edns::OPT_FIXED_LEN;
    let be = |at: usize| {
        msg.get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let shaped = msg.get(opt) == Some(&0)
        && be(opt + 1) == Some(usize::from(crate::wire::TYPE_OPT))
        && be(rdata) == Some(usize::from(edns::OPTION_PADDING));
    let (Some(rdlen), Some(pad)) = (be(opt + 9), be(rdata + 2)) else {
        out.extend_from_slice(msg);
        return msg.len();
    };
    if !shaped || rdlen != 4 + pad || rdata + rdlen != msg.len() {
        out.extend_from_slice(msg);
        return msg.len();
    }
    let block = edns::QUERY_PAD_BLOCK;
    let (new_pad, new_rdlen) = if pad >= 4 {
        (pad - 4, rdlen)
    } else {
        (pad + block - 4, rdlen + block)
    };
    // The message up to the OPT record's RDLENGTH, then RDLENGTH, the keepalive option (code, length
    // 0), the padding option's code and length, and its zeros: one resize, no append per field.
    let fixed = opt + 9;
    let len = fixed + 10 + new_pad;
    let start = out.len();
    out.resize(start + len, 0);
    let w = &mut out[start..];
    w[..fixed].copy_from_slice(&msg[..fixed]);
    w[fixed..fixed + 2].copy_from_slice(&(new_rdlen as u16).to_be_bytes());
    w[fixed + 2..fixed + 4].copy_from_slice(&OPTION_TCP_KEEPALIVE.to_be_bytes());
    w[fixed + 6..fixed + 8].copy_from_slice(&edns::OPTION_PADDING.to_be_bytes());
    w[fixed + 8..fixed + 10].copy_from_slice(&(new_pad as u16).to_be_bytes());
    len
}

/// The idle timeout an answer announces (RFC 7828 §3.1: units of 100 ms), if it carries the option.
pub(super) fn announced_idle(frame: &[u8], scan: &Scan) -> Option<Duration> {
    let o = scan.opt?;
    let rdata = frame.get(o.rdata_start..o.end)?;
    edns::options(rdata)
        .find(|(code, _)| *code == OPTION_TCP_KEEPALIVE)
        .and_then(|(_, data)| data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])))
        .map(|units| Duration::from_millis(u64::from(units) * 100))
}

impl<R: Rng> Engine<R> {
    /// The shell closed `session` itself (e.g. to re-verify it once the clock is synchronized): its
    /// queries are placed again, and it is not taken for the server's idle close, so it teaches no
    /// idle timeout and dials no standby connection.
    pub fn handle_upstream_dropped(&mut self, now: Instant, session: super::SessionId) {
        if let Some(si) = self.session_index(session) {
            self.sessions[si].retired = true;
            self.drop_session(now, si, CloseReason::Eof);
        }
    }

    /// Until when `upstream` is kept warm: its last query plus the standby window.
    fn standby_until(&self, upstream: UpstreamId) -> Option<Instant> {
        if self.config.standby.is_zero() {
            return None;
        }
        let u = self.upstreams.iter().find(|u| u.id == upstream)?;
        u.last_used.map(|t| t + self.config.standby)
    }

    /// The idle timeout of `s`'s server: announced on it (RFC 7828), or seen the last time the
    /// server closed an idle connection.
    fn server_idle_of(&self, s: &Session) -> Option<Duration> {
        s.server_idle.or_else(|| {
            self.upstreams
                .iter()
                .find(|u| u.id == s.upstream)
                .and_then(|u| u.observed_idle)
        })
    }

    /// When idle session `s` closes itself: before its server's idle timeout, and otherwise after
    /// `idle_timeout`, but not while its upstream is kept warm.
    pub(super) fn idle_deadline(&self, s: &Session) -> Instant {
        let mut own = s.last_activity + self.config.idle_timeout;
        if let Some(until) = self.standby_until(s.upstream) {
            own = own.max(until);
        }
        match self.server_idle_of(s) {
            Some(t) => own.min(s.last_activity + t.saturating_sub(margin(t))),
            None => own,
        }
    }

    /// When idle session `s` closes: at its [`Self::idle_deadline`], but not while a successor to its
    /// upstream is still connecting (make before break: if the successor's SYN was lost, the old
    /// session carries the queries until it is up, or until the server closes the old one).
    pub(super) fn idle_close_at(&self, s: &Session) -> Option<Instant> {
        let connecting = self.sessions.iter().any(|o| {
            o.upstream == s.upstream
                && !o.retired
                && matches!(o.state, SessionState::Connecting { .. })
        });
        (!connecting).then(|| self.idle_deadline(s))
    }

    /// Whether a standby connection to `ui` may be dialled now (window, spacing, backoff). The
    /// spacing is waived once a query has been placed on the upstream since the last standby dial:
    /// what it guards against is a server that closes idle connections at once, which no query
    /// follows; a server that sheds a connection that just carried one is redialled at most once per
    /// query.
    fn may_dial_standby(&self, now: Instant, ui: usize) -> bool {
        let u = &self.upstreams[ui];
        let used_since = u
            .standby_not_before
            .is_some_and(|t| u.last_used.is_some_and(|used| used + STANDBY_SPACING > t));
        self.standby_until(u.id).is_some_and(|until| now < until)
            && u.backoff_until.is_none_or(|t| t <= now)
            && (u.standby_not_before.is_none_or(|t| t <= now) || used_since)
    }

    fn dial_standby(&mut self, now: Instant, ui: usize) {
        let (upstream, transport) = (self.upstreams[ui].id, self.upstreams[ui].transport());
        self.upstreams[ui].standby_not_before = Some(now + STANDBY_SPACING);
        self.stats.standby_dials += 1;
        self.open_session(now, upstream, transport);
    }

    /// When the successor of idle session `s` is dialled (make before break: it is ready before `s`
    /// closes ahead of its server's idle timeout), if `s` is its upstream's only session, the
    /// server's idle timeout is known and the upstream is kept warm: due inside the standby window,
    /// and not once a timer that fired after the window's end found it due (the window test of
    /// [`Self::may_dial_standby`], which the time returned here cannot apply: else it would stay
    /// due, and in the past, until the session closes).
    pub(super) fn successor_at(&self, s: &Session) -> Option<Instant> {
        if s.state != SessionState::Ready || s.load() > 0 || s.retired {
            return None;
        }
        let t = self.server_idle_of(s)?;
        let ui = self.upstreams.iter().position(|u| u.id == s.upstream)?;
        let others = self
            .sessions
            .iter()
            .filter(|o| o.upstream == s.upstream && !o.retired)
            .count();
        if others != 1 {
            return None;
        }
        let u = &self.upstreams[ui];
        let until = self.standby_until(s.upstream)?;
        if s.successor_missed == Some(until) {
            return None;
        }
        let at = (s.last_activity + t.saturating_sub(margin(t).saturating_mul(2)))
            .max(u.standby_not_before.unwrap_or(s.last_activity))
            .max(u.backoff_until.unwrap_or(s.last_activity));
        (at < until).then_some(at)
    }

    /// Dials the successors that are due (see [`Self::successor_at`]).
    pub(super) fn dial_successors(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.sessions.len() {
            let s = &self.sessions[i];
            if self.successor_at(s).is_some_and(|t| t <= now)
                && let Some(ui) = self.upstreams.iter().position(|u| u.id == s.upstream)
            {
                let until = self.standby_until(s.upstream);
                if self.may_dial_standby(now, ui) {
                    self.dial_standby(now, ui);
                } else if let Some(until) = until.filter(|&t| t <= now) {
                    // Due inside the window, found after its end: this window gets no successor.
                    self.sessions[i].successor_missed = Some(until);
                }
            }
            i += 1;
        }
    }

    /// `upstream`'s server keeps idle connections for `t` (announced or seen).
    pub(super) fn note_server_idle(&mut self, upstream: UpstreamId, t: Duration) {
        if let Some(u) = self.upstreams.iter_mut().find(|u| u.id == upstream) {
            u.observed_idle = Some(t);
        }
    }

    /// Session `s` is being dropped for `reason`: a clean close by the server of a working, idle
    /// session tells how long the server keeps idle connections.
    pub(super) fn observe_server_close(&mut self, now: Instant, s: &Session, reason: CloseReason) {
        if reason != CloseReason::Eof || s.state != SessionState::Ready || s.server_idle.is_some() {
            return;
        }
        let idle = now.saturating_since(s.last_activity);
        if idle < MIN_OBSERVED_IDLE {
            return;
        }
        self.note_server_idle(s.upstream, idle);
    }

    /// A session of `upstream` ended (`was_ready`: it had been working; `reason`). If the upstream
    /// carried a query within the standby window, one session is dialled in the background.
    pub(super) fn keep_warm(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        was_ready: bool,
        reason: CloseReason,
    ) {
        if !was_ready || reason != CloseReason::Eof {
            return;
        }
        let Some(ui) = self.upstreams.iter().position(|u| u.id == upstream) else {
            return;
        };
        if !self.may_dial_standby(now, ui)
            || self
                .sessions
                .iter()
                .any(|s| s.upstream == upstream && !s.retired)
        {
            return;
        }
        self.dial_standby(now, ui);
    }

    /// Idle session `si` reached its idle deadline: closed, and kept warm if its upstream is.
    pub(super) fn close_idle(&mut self, now: Instant, si: usize) {
        let s = self.sessions.swap_remove(si);
        self.actions
            .push_back(super::Action::Close { session: s.id });
        if s.state == SessionState::Ready {
            self.keep_warm(now, s.upstream, true, CloseReason::Eof);
        }
    }
}

/// How much earlier than the server's idle timeout `t` a session closes (and, twice that, when its
/// successor is dialled): a tenth of it, at most [`KEEPALIVE_MARGIN_MAX`].
fn margin(t: Duration) -> Duration {
    (t / 10).min(KEEPALIVE_MARGIN_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::scan;
    use crate::wire::rewrite::forward_query;

    fn upstream_form(name_len: usize) -> (Vec<u8>, usize) {
        let mut q = Vec::new();
        q.extend_from_slice(&[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.push(name_len as u8);
        q.resize(q.len() + name_len, b'a');
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let s = scan(&q).unwrap();
        let mut out = [0u8; 512];
        let n = forward_query(&q, &s, 7, &mut out).unwrap();
        (out[..n].to_vec(), s.question_end)
    }

    #[test]
    fn keepalive_goes_before_the_padding_and_keeps_the_length() {
        for name_len in 1..=63 {
            let (msg, qend) = upstream_form(name_len);
            let mut out = Vec::new();
            let n = push_with_keepalive(&mut out, &msg, qend);
            assert_eq!(n, out.len());
            assert_eq!(
                n,
                msg.len(),
                "the padding gives up the option's four octets"
            );
            assert_eq!(n % edns::QUERY_PAD_BLOCK, 0, "still padded to the block");
            let s = scan(&out).unwrap();
            let o = s.opt.unwrap();
            let opts: Vec<_> = edns::options(&out[o.rdata_start..o.end]).collect();
            assert_eq!(
                opts[0],
                (OPTION_TCP_KEEPALIVE, &[][..]),
                "empty, as a client sends it"
            );
            assert_eq!(opts[1].0, edns::OPTION_PADDING);
            assert!(opts[1].1.iter().all(|b| *b == 0));
            assert_eq!(opts.len(), 2);
            assert_eq!(&out[..qend], &msg[..qend], "header and question unchanged");
            assert_eq!(edns::check_options(&out[o.rdata_start..o.end]), Ok(()));
        }
    }

    #[test]
    fn a_message_of_another_shape_is_sent_unchanged() {
        let (msg, qend) = upstream_form(5);
        let mut out = Vec::new();
        push_with_keepalive(&mut out, &msg[..msg.len() - 1], qend);
        assert_eq!(out, msg[..msg.len() - 1]);
        out.clear();
        push_with_keepalive(&mut out, &msg, qend + 1);
        assert_eq!(out, msg);
    }

    #[test]
    fn announced_idle_reads_units_of_100ms() {
        let mut r = Vec::new();
        r.extend_from_slice(&[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 1]);
        r.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        r.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 6, 0, 11, 0, 2, 0, 100]);
        let s = scan(&r).unwrap();
        assert_eq!(announced_idle(&r, &s), Some(Duration::from_secs(10)));
        let n = r.len();
        r[n - 5] = 12; // padding, not keepalive
        let s = scan(&r).unwrap();
        assert_eq!(announced_idle(&r, &s), None);
    }
}
