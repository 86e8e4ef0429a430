//! DNS64 (RFC 6147), the engine's side: an AAAA query answered NOERROR without AAAA records asks
//! upstream for A records on the same deadline, and their answer is synthesized into AAAA records
//! under the NAT64 prefix (the codec is `crate::dns64`). Also `ipv4only.arpa`, answered locally
//! (RFC 8880 §7.2).

use alloc::vec::Vec;

use super::table::{Query, QueryRef};
use super::{AnswerSource, ClientAddr, Engine, Instant};
use crate::dns64::{self, Nat64Prefix};
use crate::rng::Rng;
use crate::wire::header::{self, rcode};
use crate::wire::message::{Question, Scan};
use crate::wire::rewrite::ClientView;

/// Where a query stands in DNS64 synthesis.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Dns64Phase {
    /// Not an AAAA query, or DNS64 off.
    Off,
    /// An AAAA query: a NOERROR answer without AAAA records triggers the A query.
    Aaaa,
    /// Asking for A records; this is the AAAA answer to return if no A record comes.
    A(Vec<u8>),
}

impl Dns64Phase {
    /// The phase a new query starts in.
    #[inline]
    pub(super) fn start(prefix: Option<Nat64Prefix>, question: Option<Question>) -> Self {
        match (prefix, question) {
            (Some(_), Some(q)) if q.qtype == dns64::TYPE_AAAA => Self::Aaaa,
            _ => Self::Off,
        }
    }
}

/// What DNS64 makes of an upstream's good answer.
pub(super) enum Dns64Step {
    /// Nothing: the answer goes to the client as it is.
    Pass,
    /// The A records are being asked for instead; the query stays in flight.
    AskingForA,
    /// This answer goes to the client instead (the synthesized AAAA records, or the AAAA answer
    /// kept when no A record came).
    Replace(Vec<u8>),
}

/// Whether query `q` is a client's AAAA query (its upstream form may be asking for A records in
/// its place).
pub(super) fn is_aaaa_query(q: &Query) -> bool {
    let qt = q.question_end.saturating_sub(4);
    matches!(q.dns64, Dns64Phase::A(_))
        || q.upstream_msg.get(qt..qt + 2) == Some(&dns64::TYPE_AAAA.to_be_bytes()[..])
}

/// Puts the client's QTYPE (AAAA) back into a query that was asking for A records in its place.
#[inline]
pub(super) fn restore_question(q: &mut Query) {
    let qt = q.question_end.saturating_sub(4);
    if let (Dns64Phase::A(_), Some(t)) = (&q.dns64, q.upstream_msg.get_mut(qt..qt + 2)) {
        t.copy_from_slice(&dns64::TYPE_AAAA.to_be_bytes());
    }
}

impl<R: Rng> Engine<R> {
    /// `ipv4only.arpa` with DNS64 on: answered from the configured prefix (RFC 8880 §7.2). `true` if
    /// it was.
    pub(super) fn answer_ipv4only(
        &mut self,
        now: Instant,
        client: ClientAddr,
        bytes: &[u8],
        scan: &Scan,
        view: &ClientView,
    ) -> bool {
        if let (Some(prefix), Some(q)) = (self.config.dns64, scan.question)
            && dns64::is_ipv4only_arpa(&bytes[header::LEN..q.name_end])
            && let Some(answer) = dns64::ipv4only_answer(bytes, scan, &prefix)
        {
            self.stats.local_answers += 1;
            self.answer_from(client, view, &bytes[header::LEN..q.name_end], &answer, None);
            self.log_answer(now, &answer, AnswerSource::Local);
            return true;
        }
        false
    }

    /// DNS64's part in a good (not SERVFAIL) upstream answer `frame` to query `r`.
    pub(super) fn dns64_step(
        &mut self,
        now: Instant,
        r: QueryRef,
        frame: &[u8],
        scan: &Scan,
    ) -> Dns64Step {
        let Some(q) = self.queries.get_mut(r) else {
            return Dns64Step::Pass;
        };
        let Some(prefix) = self.config.dns64 else {
            return match &q.dns64 {
                // DNS64 was turned off while this query asked for A records in place of AAAA: the
                // AAAA client gets the upstream's own AAAA answer (NODATA), what it gets without
                // DNS64, never the A records.
                Dns64Phase::A(aaaa) => Dns64Step::Replace(aaaa.clone()),
                _ => Dns64Step::Pass,
            };
        };
        match &q.dns64 {
            Dns64Phase::Aaaa
                if scan.rcode() == rcode::NOERROR
                    && !dns64::has_answer_of_type(frame, scan, dns64::TYPE_AAAA) =>
            {
                // No AAAA record: ask for A records on the same deadline (RFC 6147 §5.1).
                q.dns64 = Dns64Phase::A(frame.to_vec());
                let qt = q.question_end - 4;
                q.upstream_msg[qt..qt + 2].copy_from_slice(&dns64::TYPE_A.to_be_bytes());
                q.placements = 0;
                q.tried.clear();
                q.servfail = None;
                q.answered_error = false;
                self.withdraw_places(r);
                self.place(now, r);
                Dns64Step::AskingForA
            }
            Dns64Phase::A(aaaa) => {
                Dns64Step::Replace(match dns64::synthesize(frame, scan, &prefix) {
                    Some(syn) => {
                        self.stats.dns64_synthesized += 1;
                        syn
                    }
                    None => aaaa.clone(),
                })
            }
            _ => Dns64Step::Pass,
        }
    }
}
