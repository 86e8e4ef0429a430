//! The captive-portal plaintext exception: the only path on which the engine lets a query leave
//! unencrypted, and only for names the shell's [`crate::captive::Tracker`] put in the
//! [`Exception`] it gave the engine, before that exception's end. Answers are never cached.

use alloc::vec;
use alloc::vec::Vec;

use super::{Action, AnswerSource, ClientAddr, Engine, Instant};
use crate::captive::Exception;
use crate::rng::Rng;
use crate::wire::edns::{Ede, ede};
use crate::wire::header::{self, rcode};
use crate::wire::message::{self, Scan};
use crate::wire::respond;
use crate::wire::rewrite::{self, ClientView};

/// Plaintext queries in flight at most (a login page needs a handful of names).
pub const MAX_PLAIN_INFLIGHT: usize = 32;

/// The EDE an exception answer carries, so a client (and `dig`) can see it was not authenticated.
const NOTE: Ede<'static> = Ede {
    code: ede::OTHER,
    text: "lanveil: unauthenticated answer from the WAN's DNS (captive portal exception)",
};

#[derive(Debug)]
pub(super) struct PlainQuery {
    tag: u16,
    client: ClientAddr,
    view: ClientView,
    msg: Vec<u8>,
    question_end: usize,
    deadline: Instant,
}

impl<R: Rng> Engine<R> {
    /// Sets (or with `None` ends) the captive-portal plaintext exception. Queries in flight under an
    /// exception that ended are answered when their answer or deadline comes.
    pub fn set_plain_exception(&mut self, exception: Option<Exception>) {
        self.plain_exception = exception;
    }

    /// Whether this query is covered by the exception; if so it is handled here: sent as an
    /// [`Action::PlainQuery`] (or answered SERVFAIL if the plaintext table is full).
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
        if self.plain.len() >= MAX_PLAIN_INFLIGHT {
            let e = Ede {
                code: ede::OTHER,
                text: "lanveil: too many captive-portal lookups in flight",
            };
            self.answer_locally(client, bytes, Some(scan), rcode::SERVFAIL, Some(e));
            return true;
        }
        let mut tag = self.rng.next_u16();
        while self.plain.iter().any(|p| p.tag == tag) {
            tag = self.rng.next_u16();
        }
        let mut msg = vec![0u8; scan.question_end + rewrite::QUERY_OVERHEAD];
        let Ok(n) = rewrite::forward_query(bytes, scan, tag, &mut msg) else {
            self.stats.formerr += 1;
            self.answer_locally(client, bytes, Some(scan), rcode::FORMERR, None);
            return true;
        };
        msg.truncate(n);
        self.stats.plaintext_portal += 1;
        self.actions.push_back(Action::PlainQuery {
            tag,
            message: msg.clone(),
        });
        self.plain.push(PlainQuery {
            tag,
            client,
            view: *view,
            msg,
            question_end: scan.question_end,
            deadline: now + self.config.query_timeout,
        });
        true
    }

    /// An answer from the WAN's DNS to [`Action::PlainQuery`] `tag`. Anything that is not a response
    /// to that exact question is ignored (the deadline answers the client then).
    pub fn handle_plain_answer(&mut self, now: Instant, tag: u16, bytes: &[u8]) {
        let Some(i) = self.plain.iter().position(|p| p.tag == tag) else {
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
            || !crate::wire::name::eq_ignore_case(
                bytes.get(header::LEN..scan.question_end).unwrap_or(&[]),
                &p.msg[header::LEN..p.question_end],
            )
        {
            return;
        }
        let p = self.plain.swap_remove(i);
        if self.answer_scanned(p.client, &p.view, bytes, &scan, Some(NOTE)) {
            self.stats.answered += 1;
            self.log_answer(now, bytes, AnswerSource::Plaintext);
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
                text: "lanveil: the WAN's DNS did not answer (captive portal exception)",
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
                if !self.answer_from(p.client, &p.view, &buf[..n], None) {
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

    /// Plaintext queries in flight.
    pub fn plain_inflight(&self) -> usize {
        self.plain.len()
    }
}
