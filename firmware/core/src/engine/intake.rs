//! A client query arrives: header checks, access and admission, local answers (policy, leak probes,
//! `ipv4only.arpa`), the plaintext paths, the cache; what is left enters the query table and is placed
//! on an upstream.

use alloc::vec;
use alloc::vec::Vec;

use super::dns64::Dns64Phase;
use super::table::{Query, Timer};
use super::{AnswerSource, ClientAddr, Engine, Instant, RateAction, Transmit};
use crate::cache::Key;
use crate::policy::{self, LocalAnswer, Verdict};
use crate::rng::Rng;
use crate::wire::edns::{Ede, ede};
use crate::wire::header::{self, OPCODE_QUERY, rcode};
use crate::wire::message::{self, Scan};
use crate::wire::rewrite::{self, ClientView};

/// What a client's answer must look like: its ID, its EDNS, the size its transport allows.
fn client_view(client: ClientAddr, id: u16, scan: &Scan) -> ClientView {
    let max_len = match client {
        ClientAddr::Udp { .. } => ClientView::udp_limit(scan.opt.map(|o| o.udp_size)),
        ClientAddr::Tcp { .. } => usize::from(u16::MAX),
    };
    ClientView {
        id,
        edns: scan.opt.map(|o| o.dnssec_ok()),
        max_len,
    }
}

impl<R: Rng> Engine<R> {
    /// One client message (see [`Engine::handle_query`]).
    pub(super) fn query(&mut self, now: Instant, client: ClientAddr, bytes: &[u8]) {
        self.stats.queries += 1;
        let Ok(hdr) = header::Header::parse(bytes) else {
            self.stats.dropped += 1;
            return;
        };
        if hdr.is_response() {
            self.stats.dropped += 1;
            return;
        }
        let allowed = self
            .policy
            .as_ref()
            .is_none_or(|p| p.allowed(Some(client.peer().ip())));
        if allowed
            && !self
                .clients
                .admit(now, &self.config.clients, client.peer().ip())
        {
            self.stats.rate_limited += 1;
            if self.config.clients.action == RateAction::Drop {
                return;
            }
            if let Ok(scan) = message::scan(bytes) {
                let e = Ede {
                    code: ede::OTHER,
                    text: "lanveil: rate limited",
                };
                self.answer_locally(client, bytes, Some(&scan), rcode::REFUSED, Some(e));
            }
            return;
        }
        let scan = match message::scan(bytes) {
            Ok(s) => s,
            Err(_) if !allowed => {
                // Never answer malformed input from outside: nothing to reflect or amplify.
                self.stats.dropped += 1;
                return;
            }
            Err(_) => {
                self.stats.formerr += 1;
                self.answer_locally(client, bytes, None, rcode::FORMERR, None);
                return;
            }
        };
        if !allowed && matches!(client, ClientAddr::Udp { .. }) && !self.outside.admit(now) {
            // Outside `allow`, over UDP (the source may be spoofed; a TCP peer completed a
            // handshake, so it cannot be): answered only within a small budget shared by all such
            // sources. What is dropped unanswered anyway (malformed input) does not spend it.
            self.stats.dropped += 1;
            return;
        }
        if hdr.opcode() != OPCODE_QUERY {
            self.stats.notimp += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::NOTIMP, None);
            return;
        }
        if hdr.qdcount != 1 {
            self.stats.formerr += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::FORMERR, None);
            return;
        }
        if scan.opt.is_some_and(|o| o.version > 0) {
            self.stats.badvers += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::BADVERS, None);
            return;
        }
        if let Some(policy) = self.policy.as_ref() {
            match policy.decide(Some(client.peer().ip()), bytes, &scan) {
                Verdict::Forward => {}
                Verdict::ForwardLocal => {
                    // Only with `local_resolver`: to the LAN resolver, never to an upstream.
                    let view = client_view(client, hdr.id, &scan);
                    self.local_query(now, client, bytes, &scan, &view);
                    return;
                }
                Verdict::Answer(answer) => {
                    let mut buf = vec![0u8; policy::MAX_ANSWER_LEN];
                    // A leak-test probe's name (under resolver.arpa, never forwarded) gets its nonce.
                    let probe = match answer {
                        LocalAnswer::Refused | LocalAnswer::FormErr => None,
                        _ => self.leak_probes.answer(now, bytes, &scan, &mut buf),
                    };
                    let written =
                        probe.unwrap_or_else(|| policy.answer(bytes, &scan, &answer, &mut buf));
                    if let Ok(n) = written {
                        buf.truncate(n);
                        if answer == LocalAnswer::Refused {
                            self.stats.refused += 1;
                        } else {
                            self.stats.local_answers += 1;
                        }
                        self.log_answer(now, &buf, AnswerSource::Local);
                        self.transmits.push_back(Transmit {
                            to: client,
                            bytes: buf,
                        });
                    }
                    return;
                }
            }
        }
        let view = client_view(client, hdr.id, &scan);
        if self.answer_ipv4only(now, client, bytes, &scan, &view) {
            return;
        }
        if self.plain_exception.is_some() && self.plain_query(now, client, bytes, &scan, &view) {
            return;
        }
        let cache_key = self
            .cache
            .as_ref()
            .and_then(|_| Key::from_query(bytes, &scan));
        if let (Some(cache), Some(key)) = (self.cache.as_mut(), cache_key.as_ref())
            && let Some(cached) = cache.get(now, key)
        {
            let asked = scan
                .question
                .and_then(|q| bytes.get(header::LEN..q.name_end))
                .unwrap_or_default();
            // A copy that does not scan (a name of the upstream's answer pointed into a TTL the
            // copy's ageing changed) is a miss: the query goes upstream, never unanswered.
            if self.answer_from(client, &view, asked, &cached, None) {
                self.stats.cache_hits += 1;
                self.log_answer(now, &cached, AnswerSource::Cache);
                return;
            }
        }
        if !self
            .clients
            .has_room(&self.config.clients, client.peer().ip())
        {
            self.stats.client_overloaded += 1;
            let e = Ede {
                code: ede::OTHER,
                text: "lanveil: too many queries in flight from this client",
            };
            self.answer_locally(client, bytes, Some(&scan), rcode::SERVFAIL, Some(e));
            return;
        }
        if self.queries.len() >= self.config.max_inflight {
            self.stats.overloaded += 1;
            let e = Ede {
                code: ede::OTHER,
                text: "lanveil overloaded: too many queries in flight",
            };
            self.answer_locally(client, bytes, Some(&scan), rcode::SERVFAIL, Some(e));
            return;
        }
        let len = scan.question_end + rewrite::QUERY_OVERHEAD;
        let Some(upstream_msg) =
            self.write_out(len, |buf| rewrite::forward_query(bytes, &scan, 0, buf))
        else {
            self.stats.formerr += 1;
            self.answer_locally(client, bytes, Some(&scan), rcode::FORMERR, None);
            return;
        };
        let deadline = now + self.config.query_timeout;
        let places = self.new_places();
        let r = self.start_query(Query {
            client,
            view,
            upstream_msg,
            question_end: scan.question_end,
            deadline,
            placements: 0,
            placed: 0,
            tried: Vec::new(),
            places,
            servfail: None,
            answered_error: false,
            last_reason: None,
            cache_key,
            dns64: Dns64Phase::start(self.config.dns64, scan.question),
        });
        self.push_timer(deadline, r, Timer::Deadline);
        self.place(now, r);
    }
}
