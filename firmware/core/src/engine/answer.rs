//! Answers and failures: what a client gets (an upstream's answer, a cached or stale one, an
//! upstream's SERVFAIL, or lanveil's own SERVFAIL with an Extended DNS Error from [`ede_for`]), and
//! the opt-in query log that records it.

use alloc::vec;
use alloc::vec::Vec;

use super::dns64::{Dns64Phase, Dns64Step};
use super::table::{Place, Query, QueryRef};
use super::{
    AnswerSource, ClientAddr, CloseReason, Engine, Event, Instant, QueryLogEntry, TlsFailure,
    Transmit, UpstreamId,
};
use crate::rng::Rng;
use crate::wire::edns::{Ede, ede};
use crate::wire::header::{self, rcode};
use crate::wire::message::{self, Scan};
use crate::wire::respond;
use crate::wire::rewrite::{self, ClientView};

/// Spare message buffers kept at most, and the largest one kept (octets): room for a turn's answers
/// and the upstream forms of their queries.
pub(super) const SPARE_BUFFERS: usize = 128;
pub(super) const SPARE_BUFFER_MAX: usize = 2048;

impl<R: Rng> Engine<R> {
    /// Tells the shell that `client`'s frame gets no answer (stream clients only).
    pub(super) fn no_answer(&mut self, client: ClientAddr) {
        if let ClientAddr::Tcp { conn, .. } = client {
            self.no_answers += 1;
            self.events.push_back(Event::NoAnswer { conn });
        }
    }

    /// Runs `write` on a buffer of `len` octets (a spare one when there is one, see
    /// [`Engine::recycle`]) and returns what it wrote, truncated to that size.
    pub(super) fn write_out(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<usize, crate::wire::Error>,
    ) -> Option<Vec<u8>> {
        let mut buf = self.spare_buffers.pop().unwrap_or_default();
        // A spare keeps its old contents (every writer writes each octet it returns), so only the
        // part beyond them is zeroed.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        match write(&mut buf[..len]) {
            Ok(n) if n <= len => {
                buf.truncate(n);
                Some(buf)
            }
            _ => {
                self.keep_buffer(buf);
                None
            }
        }
    }

    /// Keeps `buf` for a later [`Self::write_out`]: at most [`SPARE_BUFFERS`] of them, each at most
    /// [`SPARE_BUFFER_MAX`] octets, so the spares take at most 256 KiB. They never leave the engine
    /// but as what a writer wrote into them.
    pub(super) fn keep_buffer(&mut self, buf: Vec<u8>) {
        if buf.capacity() > 0
            && buf.capacity() <= SPARE_BUFFER_MAX
            && self.spare_buffers.len() < SPARE_BUFFERS
        {
            self.spare_buffers.push(buf);
        }
    }

    /// Answers `query` here with `rc` (and an EDE), without asking anyone.
    pub(super) fn answer_locally(
        &mut self,
        client: ClientAddr,
        query: &[u8],
        scan: Option<&Scan>,
        rc: u16,
        e: Option<Ede<'_>>,
    ) {
        let answer = self.write_out(respond::MAX_LOCAL_ANSWER, |buf| {
            respond::respond(query, scan, rc, e, buf)
        });
        match answer {
            Some(bytes) => self.transmits.push_back(Transmit { to: client, bytes }),
            None => self.no_answer(client),
        }
    }

    /// Sends an upstream-shaped answer (from an upstream, the cache, DNS64 or a plaintext path) to a
    /// client; `asked` is the client's QNAME as it spelt it (see [`spell_as_asked`]); `extra` adds
    /// lanveil's own Extended DNS Error.
    pub(super) fn answer_from(
        &mut self,
        client: ClientAddr,
        view: &ClientView,
        asked: &[u8],
        msg: &[u8],
        extra: Option<Ede<'_>>,
    ) -> bool {
        let Ok(scan) = message::scan(msg) else {
            return false;
        };
        self.answer_scanned(client, view, asked, msg, &scan, extra)
    }

    /// [`Self::answer_from`] for a message already scanned (the upstream path scans each answer once).
    /// Every answer that is not lanveil's own passes here: the one place where the question gets the
    /// client's spelling back.
    pub(super) fn answer_scanned(
        &mut self,
        client: ClientAddr,
        view: &ClientView,
        asked: &[u8],
        msg: &[u8],
        scan: &Scan,
        extra: Option<Ede<'_>>,
    ) -> bool {
        let len = msg.len() + 16 + extra.map_or(0, |e| e.option_len());
        let Some(mut out) =
            self.write_out(len, |buf| rewrite::to_client(msg, scan, view, extra, buf))
        else {
            return false;
        };
        // The client's question is the answer's (its name in any case): an upstream or the cache may
        // have spelt it otherwise.
        spell_as_asked(&mut out, asked);
        if out.len() < msg.len() && view.max_len < msg.len() {
            self.stats.truncated += 1;
        }
        self.transmits.push_back(Transmit {
            to: client,
            bytes: out,
        });
        true
    }

    /// `upstream`'s answer `frame` (checked to be a response to the question) to query `r`: a
    /// SERVFAIL sends the query to another upstream first; DNS64 may ask for A records or substitute
    /// another answer; else it is cached and goes to the client.
    pub(super) fn upstream_answer(
        &mut self,
        now: Instant,
        r: QueryRef,
        upstream: UpstreamId,
        frame: &[u8],
        scan: Scan,
    ) {
        if scan.rcode() == rcode::SERVFAIL {
            // Try another upstream before passing a SERVFAIL on.
            self.soft_failure(now, upstream, CloseReason::Protocol);
            if let Some(q) = self.queries.get_mut(r) {
                q.servfail = Some(frame.to_vec());
                q.tried.push(upstream);
            }
            self.stats.upstream_servfail += 1;
            self.place(now, r);
            return;
        }
        self.answered_well(upstream);
        // DNS64 may substitute another answer; otherwise the frame and its scan are used as they are.
        let replaced = match self.dns64_step(now, r, frame, &scan) {
            Dns64Step::Pass => None,
            Dns64Step::AskingForA => return,
            Dns64Step::Replace(answer) => Some(answer),
        };
        let Some(q) = self.take_query(r) else {
            return;
        };
        let (frame, scan) = match &replaced {
            Some(r) => match message::scan(r) {
                Ok(s) => (r.as_slice(), s),
                Err(_) => {
                    let e = Ede {
                        code: ede::NETWORK_ERROR,
                        text: "malformed upstream answer",
                    };
                    self.servfail(q, e);
                    return;
                }
            },
            None => (frame, scan),
        };
        if let (Some(cache), Some(key)) = (self.cache.as_mut(), q.cache_key.clone()) {
            cache.insert(now, key, frame);
        }
        if self.answer_scanned(q.client, &q.view, asked_name(&q), frame, &scan, None) {
            self.stats.answered += 1;
            self.log_answer(now, frame, AnswerSource::Upstream);
            // The query's upstream form is done with: its buffer holds the next message.
            self.keep_buffer(q.upstream_msg);
        } else {
            self.servfail(
                q,
                Ede {
                    code: ede::NETWORK_ERROR,
                    text: "malformed upstream answer",
                },
            );
        }
    }

    /// `upstream` answered query `r` with an error that leaves the question out (RFC 1035 §4.1.1
    /// allows it): the query failed there, like on a SERVFAIL, so it goes to an upstream it has not
    /// tried, else gets lanveil's SERVFAIL with EDE 23 (the reason is `Protocol`). The message itself
    /// is neither passed on nor cached: without the question it cannot be checked to be this
    /// query's. Nor does it count against the upstream's health: it answered, and a client can draw
    /// such answers at will.
    pub(super) fn upstream_error_answer(
        &mut self,
        now: Instant,
        r: QueryRef,
        upstream: UpstreamId,
    ) {
        let Some(q) = self.queries.get_mut(r) else {
            return;
        };
        q.tried.push(upstream);
        q.last_reason = Some(CloseReason::Protocol);
        q.answered_error = true;
        self.stats.upstream_servfail += 1;
        self.place(now, r);
    }

    /// Query `r`'s deadline passed: answered with the best reason known.
    pub(super) fn time_out_query(&mut self, now: Instant, r: QueryRef) {
        let Some(q) = self.queries.get(r) else {
            return;
        };
        self.stats.timeouts += 1;
        // Why: the upstream's last error if it was never reached, else a time-out.
        let mut reason = q.last_reason.unwrap_or(CloseReason::Timeout);
        for p in &q.places {
            let upstream = match *p {
                Place::Waiting { upstream } => Some(upstream),
                Place::Queued { session } => self
                    .sessions
                    .iter()
                    .find(|s| s.id == session)
                    .map(|s| s.upstream),
                Place::Sent { .. } => None,
            };
            if let Some(e) = upstream.and_then(|u| self.last_error(u)) {
                reason = e;
            }
        }
        self.finish_failed(now, r, Some(reason));
        self.close_idle_retired();
    }

    /// Ends a query that got no good answer: a stale cached answer if there is one (RFC 8767; EDE 3,
    /// or 19 for an NXDOMAIN), else the last SERVFAIL an upstream gave, else lanveil's own SERVFAIL
    /// with an EDE.
    pub(super) fn finish_failed(&mut self, now: Instant, r: QueryRef, reason: Option<CloseReason>) {
        let Some(q) = self.take_query(r) else {
            return;
        };
        let reason = reason.or(q.last_reason);
        if let Dns64Phase::A(aaaa) = &q.dns64 {
            // The A query failed: the AAAA answer (NODATA) stands.
            if self.answer_from(q.client, &q.view, asked_name(&q), aaaa, None) {
                self.log_answer(now, aaaa, AnswerSource::Upstream);
                return;
            }
        }
        if let (Some(cache), Some(key)) = (self.cache.as_mut(), q.cache_key.as_ref())
            && let Some(stale) = cache.get_stale(now, key)
            && let Ok(scan) = message::scan(&stale)
        {
            self.stats.stale_answers += 1;
            // RFC 8914: a stale NXDOMAIN has a code of its own (19, §4.20), any other stale answer
            // gets 3 (§4.4).
            let e = Ede {
                code: if scan.rcode() == rcode::NXDOMAIN {
                    ede::STALE_NXDOMAIN_ANSWER
                } else {
                    ede::STALE_ANSWER
                },
                text: ede_for(reason).text,
            };
            if self.answer_scanned(q.client, &q.view, asked_name(&q), &stale, &scan, Some(e)) {
                self.log_answer(now, &stale, AnswerSource::Stale);
                return;
            }
        }
        if let Some(sf) = &q.servfail {
            if reason.is_none()
                && let (Some(cache), Some(key)) = (self.cache.as_mut(), q.cache_key.clone())
            {
                // Every upstream tried answered SERVFAIL, and nothing of ours (a time-out, a
                // connection or TLS failure) took part: a final SERVFAIL, cached for at most
                // `servfail_ttl` (RFC 2308 §7.1).
                cache.insert(now, key, sf);
            }
            if self.answer_from(q.client, &q.view, asked_name(&q), sf, None) {
                self.stats.servfail += 1;
                self.log_answer(now, sf, AnswerSource::Upstream);
                return;
            }
        }
        self.log_answer(now, &q.upstream_msg, AnswerSource::Failed);
        self.servfail(q, ede_for(reason));
    }

    /// Answers a query (already removed from every table) with lanveil's SERVFAIL + EDE.
    pub(super) fn servfail(&mut self, q: Query, e: Ede<'_>) {
        let mut query = q.upstream_msg;
        let _ = header::set_id(&mut query, q.view.id);
        let Ok(scan) = message::scan(&query) else {
            self.no_answer(q.client);
            return;
        };
        let mut buf = vec![0u8; respond::MAX_LOCAL_ANSWER];
        let client_scan = Scan {
            opt: if q.view.edns.is_some() {
                scan.opt
            } else {
                None
            },
            ..scan
        };
        // The upstream form kept the client's opcode, RD, CD and DO bits, so the answer mirrors them.
        if let Ok(n) = respond::respond(
            &query,
            Some(&client_scan),
            rcode::SERVFAIL,
            Some(e),
            &mut buf,
        ) {
            buf.truncate(n);
            self.stats.servfail += 1;
            self.stats.failures_by_ede[usize::from(e.code).min(31)] += 1;
            self.transmits.push_back(Transmit {
                to: q.client,
                bytes: buf,
            });
        } else {
            self.no_answer(q.client);
        }
    }

    /// Records an answer in the query log (only when enabled: names are kept nowhere otherwise).
    pub(super) fn log_answer(&mut self, now: Instant, msg: &[u8], source: AnswerSource) {
        if self.config.query_log == 0 {
            return;
        }
        let Ok(scan) = message::scan(msg) else {
            return;
        };
        let Some(q) = scan.question else {
            return;
        };
        let rcode = if source == AnswerSource::Failed {
            rcode::SERVFAIL
        } else {
            scan.rcode()
        };
        let name = crate::wire::name::to_text(msg, header::LEN, q.name_end);
        if self.log.len() >= self.config.query_log {
            self.log.pop_front();
        }
        self.log.push_back(QueryLogEntry {
            at: now,
            name,
            qtype: q.qtype,
            rcode,
            source,
        });
    }
}

/// The client's QNAME as it spelt it: the upstream form of a query carries its question as asked.
pub(super) fn asked_name(q: &Query) -> &[u8] {
    question_name(&q.upstream_msg, q.question_end)
}

/// The QNAME of a message whose question ends at `question_end` (QTYPE and QCLASS before it).
pub(super) fn question_name(msg: &[u8], question_end: usize) -> &[u8] {
    msg.get(header::LEN..question_end.saturating_sub(4))
        .unwrap_or_default()
}

/// Writes `qname` (the client's QNAME, as it spelt it) over the question name of `msg`, an answer to
/// the same question: the cache ignores case and an upstream may change it, but a client that
/// randomizes it (DNS 0x20) checks that the answer repeats its own spelling, and owner names
/// compressed to the question's (`0xC00C`) follow it. Left alone if the names differ other than in
/// case (or `qname` is empty).
pub(super) fn spell_as_asked(msg: &mut [u8], qname: &[u8]) {
    if let Some(name) = msg.get_mut(header::LEN..header::LEN + qname.len())
        && crate::wire::name::eq_ignore_case(name, qname)
    {
        name.copy_from_slice(qname);
    }
}

/// The one place that maps why an upstream failed to what the client sees (RFC 8914).
pub fn ede_for(reason: Option<CloseReason>) -> Ede<'static> {
    use CloseReason as C;
    let (code, text) = match reason {
        None | Some(C::Timeout) => (
            ede::NO_REACHABLE_AUTHORITY,
            "upstream did not answer in time",
        ),
        Some(C::Stalled) => (ede::NO_REACHABLE_AUTHORITY, "upstream connection stalled"),
        Some(C::Eof) => (ede::NETWORK_ERROR, "upstream closed the connection"),
        Some(C::Reset) => (ede::NETWORK_ERROR, "upstream connection lost"),
        Some(C::Refused) => (ede::NETWORK_ERROR, "upstream refused the connection"),
        Some(C::Unreachable) => (ede::NETWORK_ERROR, "upstream unreachable"),
        Some(C::Protocol) => (ede::NETWORK_ERROR, "upstream protocol error"),
        Some(C::Tls(TlsFailure::UntrustedCertificate)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: untrusted issuer",
        ),
        Some(C::Tls(TlsFailure::NameMismatch)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: name mismatch",
        ),
        Some(C::Tls(TlsFailure::Expired)) => {
            (ede::NETWORK_ERROR, "upstream certificate rejected: expired")
        }
        Some(C::Tls(TlsFailure::NotYetValid)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: not yet valid",
        ),
        Some(C::Tls(TlsFailure::PinMismatch)) => (
            ede::NETWORK_ERROR,
            "upstream certificate rejected: SPKI pin mismatch",
        ),
        Some(C::Tls(TlsFailure::BadCertificate)) => {
            (ede::NETWORK_ERROR, "upstream certificate rejected")
        }
        Some(C::Tls(TlsFailure::Handshake)) => {
            (ede::NETWORK_ERROR, "upstream TLS handshake failed")
        }
    };
    Ede { code, text }
}
