//! The two plaintext paths, both typed by [`PlainTarget`] and both switched on by the owner:
//!
//! * [`PlainTarget::Wan`], the captive-portal exception: only names the shell's
//!   [`crate::captive::Tracker`] put in the [`crate::captive::Exception`] it gave the engine, before that
//!   exception's end, go to the WAN's DNS. Answers carry an EDE saying they are unauthenticated, and
//!   have AD cleared.
//! * [`PlainTarget::Local`], `local_resolver`: names the policy keeps on the LAN
//!   ([`crate::policy::Verdict::ForwardLocal`]) go to the owner's resolver on the LAN (an address
//!   the configuration layer only accepts if it is loopback, private or link-local). Answers carry
//!   no EDE of lanveil's and have AD cleared (lanveil cannot vouch for them).
//!
//! Both: a random ID, the answer must repeat the question, at most [`MAX_PLAIN_INFLIGHT`] in flight
//! per target, SERVFAIL with EDE 23 (Network Error) when nothing answers before the deadline, and
//! the answers are never cached (the cache holds only what came over authenticated upstreams).

use alloc::vec;
use alloc::vec::Vec;

use super::{Action, AnswerSource, ClientAddr, Engine, Instant, PlainTarget};
use crate::rng::Rng;
use crate::wire::edns::{Ede, ede};
use crate::wire::header::{self, rcode};
use crate::wire::message::{self, Scan};
use crate::wire::respond;
use crate::wire::rewrite::{self, ClientView};

/// Plaintext queries in flight at most, per [`PlainTarget`] (a login page needs a handful of names;
/// the LAN resolver answers within a millisecond).
pub const MAX_PLAIN_INFLIGHT: usize = 32;

/// The EDE an exception answer carries, so a client (and `dig`) can see it was not authenticated.
const NOTE: Ede<'static> = Ede {
    code: ede::OTHER,
    text: "lanveil: unauthenticated answer from the WAN's DNS (captive portal exception)",
};

#[derive(Debug)]
pub(super) struct PlainQuery {
    tag: u16,
    to: PlainTarget,
    client: ClientAddr,
    view: ClientView,
    msg: Vec<u8>,
    question_end: usize,
    deadline: Instant,
}

/// Texts of lanveil's own answers on each path.
struct Texts {
    full: &'static str,
    silent: &'static str,
}

fn texts(to: PlainTarget) -> Texts {
    match to {
        PlainTarget::Wan => Texts {
            full: "lanveil: too many captive-portal lookups in flight",
            silent: "lanveil: the WAN's DNS did not answer (captive portal exception)",
        },
        PlainTarget::Local => Texts {
            full: "lanveil: too many lookups in flight to the local resolver",
            silent: "lanveil: the local resolver did not answer",
        },
    }
}

impl<R: Rng> Engine<R> {
    /// Whether this query is covered by the exception; if so it is handled here: sent as an
    /// [`Action::PlainQuery`] to [`PlainTarget::Wan`] (or answered SERVFAIL if that table is full).
    pub(super) fn plain_query(
        &mut self,
        now: Instant,
        client: ClientAddr,
        bytes: &[u8],
        scan: &Scan,
        view: &ClientView,
    ) -> bool {
        let Some(q) = scan.question else {
            return false;
        };
        let covered = self
            .plain_exception
            .as_ref()
            .is_some_and(|e| e.covers(now, &bytes[header::LEN..q.name_end]));
        if !covered {
            return false;
        }
        self.send_plain(now, PlainTarget::Wan, client, bytes, scan, view);
        true
    }

    /// A query the policy keeps on the LAN ([`crate::policy::Verdict::ForwardLocal`], which it only
    /// gives when the shell configured a local resolver): sent as an [`Action::PlainQuery`] to
    /// [`PlainTarget::Local`], never to an upstream.
    pub(super) fn local_query(
        &mut self,
        now: Instant,
        client: ClientAddr,
        bytes: &[u8],
        scan: &Scan,
        view: &ClientView,
    ) {
        self.send_plain(now, PlainTarget::Local, client, bytes, scan, view);
    }

    fn send_plain(
        &mut self,
        now: Instant,
        to: PlainTarget,
        client: ClientAddr,
        bytes: &[u8],
        scan: &Scan,
        view: &ClientView,
    ) {
        if self.plain.iter().filter(|p| p.to == to).count() >= MAX_PLAIN_INFLIGHT {
            let e = Ede {
                code: ede::OTHER,
                text: texts(to).full,
            };
            self.answer_locally(client, bytes, Some(scan), rcode::SERVFAIL, Some(e));
            return;
        }
        let mut tag = self.rng.next_u16();
        while self.plain.iter().any(|p| p.tag == tag) {
            tag = self.rng.next_u16();
        }
        let mut msg = vec![0u8; scan.question_end + rewrite::QUERY_OVERHEAD];
        let Ok(n) = rewrite::forward_query(bytes, scan, tag, &mut msg) else {
            self.stats.formerr += 1;
            self.answer_locally(client, bytes, Some(scan), rcode::FORMERR, None);
            return;
        };
        msg.truncate(n);
        if to == PlainTarget::Wan {
            self.stats.plaintext_portal += 1;
        }
        self.actions.push_back(Action::PlainQuery {
            tag,
            message: msg.clone(),
            to,
        });
        self.plain.push(PlainQuery {
            tag,
            to,
            client,
            view: *view,
            msg,
            question_end: scan.question_end,
            deadline: now + self.config.query_timeout,
        });
    }

    /// An answer from `from` to plaintext query `tag` (see [`Engine::handle_plain_answer`]).
    pub(super) fn plain_answer(&mut self, now: Instant, from: PlainTarget, tag: u16, bytes: &[u8]) {
        let Some(i) = self.plain.iter().position(|p| p.tag == tag && p.to == from) else {
            self.stats.late_answers += 1;
            return;
        };
        let Ok(scan) = message::scan(bytes) else {
            return;
        };
        let p = &self.plain[i];
        if !scan.header.is_response()
            || scan.header.id != tag
            || scan.header.qdcount != 1
            || !crate::wire::name::question_eq(
                bytes.get(header::LEN..scan.question_end).unwrap_or(&[]),
                &p.msg[header::LEN..p.question_end],
            )
        {
            return;
        }
        let p = self.plain.swap_remove(i);
        // A plaintext hop lanveil cannot vouch for: no AD, whatever the resolver claimed.
        let mut scan = scan;
        scan.header.flags &= !header::AD;
        let note = match from {
            PlainTarget::Wan => Some(NOTE),
            PlainTarget::Local => None,
        };
        // The plaintext form carries the client's question as it was asked.
        let asked = super::answer::question_name(&p.msg, p.question_end);
        let answered = self.answer_scanned(p.client, &p.view, asked, bytes, &scan, note);
        if answered {
            match from {
                PlainTarget::Wan => {
                    self.stats.answered += 1;
                    self.log_answer(now, bytes, AnswerSource::Plaintext);
                }
                PlainTarget::Local => {
                    self.stats.local_answers += 1;
                    self.log_answer(now, bytes, AnswerSource::LocalResolver);
                }
            }
        } else {
            self.no_answer(p.client);
        }
    }

    /// Deadlines of plaintext queries: SERVFAIL with EDE 23 (Network Error).
    pub(super) fn plain_timeouts(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.plain.len() {
            if self.plain[i].deadline > now {
                i += 1;
                continue;
            }
            let p = self.plain.swap_remove(i);
            let e = Ede {
                code: ede::NETWORK_ERROR,
                text: texts(p.to).silent,
            };
            let Ok(scan) = message::scan(&p.msg) else {
                self.no_answer(p.client);
                continue;
            };
            let mut buf = vec![0u8; respond::MAX_LOCAL_ANSWER];
            if let Ok(n) = respond::respond(&p.msg, Some(&scan), rcode::SERVFAIL, Some(e), &mut buf)
            {
                self.stats.servfail += 1;
                self.stats.timeouts += 1;
                self.stats.failures_by_ede[usize::from(ede::NETWORK_ERROR)] += 1;
                if !self.answer_from(p.client, &p.view, &[], &buf[..n], None) {
                    self.no_answer(p.client);
                }
                self.log_answer(now, &buf[..n], AnswerSource::Failed);
            } else {
                self.no_answer(p.client);
            }
        }
    }

    /// The earliest plaintext-query deadline.
    pub(super) fn plain_deadline(&self) -> Option<Instant> {
        self.plain.iter().map(|p| p.deadline).min()
    }
}
