//! Answers lanveil makes itself: errors (FORMERR, NOTIMP, BADVERS, SERVFAIL with an Extended DNS
//! Error, REFUSED), per RFC 8906 "answer everything".

use super::edns::{self, Ede};
use super::header::{self, Header};
use super::message::{Opt, Scan};
use super::{CLASS_IN, EDNS_UDP_SIZE, Error, Writer};

/// Largest local answer to a query: header, question (≤ 255 + 4), OPT with one EDE.
pub const MAX_LOCAL_ANSWER: usize =
    header::LEN + 259 + edns::OPT_FIXED_LEN + 6 + edns::MAX_EDE_TEXT;

/// Writes a local answer to `query`.
///
/// `scan` is `Some` when the query was readable beyond the header: then the question is echoed (if there
/// is exactly one) and, if the client sent an OPT record, lanveil's OPT is added with `ede`. With
/// `scan == None` (malformed query) only the header is echoed, with QDCOUNT 0. `query` must hold at
/// least the 12-byte header.
pub fn respond(
    query: &[u8],
    scan: Option<&Scan>,
    rcode: u16,
    ede: Option<Ede<'_>>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let qh = Header::parse(query)?;
    let question = scan
        .filter(|s| s.header.qdcount == 1)
        .and_then(|s| query.get(header::LEN..s.question_end));
    let opt = scan.and_then(|s| s.opt);
    let h = Header {
        id: qh.id,
        flags: Header::response_flags(qh.flags, rcode),
        qdcount: u16::from(question.is_some()),
        ancount: 0,
        nscount: 0,
        arcount: u16::from(opt.is_some()),
    };
    let w = start(out, &h, question.unwrap_or_default())?;
    finish(w, opt, rcode, ede)
}

/// Starts a local answer in `out`: the header `h`, then `question` (the query's, echoed; may be empty).
pub(crate) fn start<'a>(
    out: &'a mut [u8],
    h: &Header,
    question: &[u8],
) -> Result<Writer<'a>, Error> {
    let mut w = Writer::new(out);
    w.put_zeros(header::LEN)?;
    h.emit(w.buf_mut())?;
    w.put(question)?;
    Ok(w)
}

/// Writes a record's fixed part in a local answer: the owner as a pointer to offset `owner`, `rtype`,
/// class IN, `ttl`, and `rdlen` (the RDATA to follow).
pub(crate) fn record(
    w: &mut Writer<'_>,
    owner: u16,
    rtype: u16,
    ttl: u32,
    rdlen: usize,
) -> Result<(), Error> {
    w.put_u16(0xc000 | owner)?;
    w.put_u16(rtype)?;
    w.put_u16(CLASS_IN)?;
    w.put_u32(ttl)?;
    w.put_u16(rdlen as u16)
}

/// Ends a local answer and returns its length: if the query had an OPT record (`opt`), lanveil's (UDP
/// size 1232, the client's DO echoed, the upper bits of `rcode`) with `ede` in it.
pub(crate) fn finish(
    mut w: Writer<'_>,
    opt: Option<Opt>,
    rcode: u16,
    ede: Option<Ede<'_>>,
) -> Result<usize, Error> {
    if let Some(o) = opt {
        let rdlen = ede.map_or(0, |e| e.option_len());
        let flags = if o.dnssec_ok() { edns::FLAG_DO } else { 0 };
        edns::emit_opt(
            &mut w,
            EDNS_UDP_SIZE,
            (rcode >> 4) as u8,
            flags,
            rdlen as u16,
        )?;
        if let Some(e) = ede {
            e.emit(&mut w)?;
        }
    }
    Ok(w.len())
}

#[cfg(test)]
mod tests {
    use super::super::edns::ede;
    use super::super::header::rcode;
    use super::super::message::scan;
    use super::super::message::tests::QUERY_EDNS;
    use super::*;

    #[test]
    fn servfail_with_ede_echoes_question() {
        let s = scan(QUERY_EDNS).unwrap();
        let mut buf = [0xa5u8; MAX_LOCAL_ANSWER];
        let e = Ede {
            code: ede::NETWORK_ERROR,
            text: "upstream certificate rejected",
        };
        let n = respond(QUERY_EDNS, Some(&s), rcode::SERVFAIL, Some(e), &mut buf).unwrap();
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.id(), 0x1234);
        assert_eq!(u16::from(m.response_code()), rcode::SERVFAIL);
        assert_eq!(m.queries().len(), 1);
        let r = scan(&buf[..n]).unwrap();
        let o = r.opt.unwrap();
        let opts: alloc::vec::Vec<_> = edns::options(&buf[o.rdata_start..o.end]).collect();
        assert_eq!(opts.len(), 1);
        assert_eq!(opts[0].0, edns::OPTION_EDE);
        assert_eq!(&opts[0].1[..2], &[0, 23]);
        assert_eq!(&opts[0].1[2..], b"upstream certificate rejected");
    }

    #[test]
    fn badvers_uses_extended_rcode() {
        let mut q = QUERY_EDNS.to_vec();
        q[35] = 1; // EDNS version 1
        let s = scan(&q).unwrap();
        let mut buf = [0u8; MAX_LOCAL_ANSWER];
        let n = respond(&q, Some(&s), rcode::BADVERS, None, &mut buf).unwrap();
        let r = scan(&buf[..n]).unwrap();
        assert_eq!(r.rcode(), rcode::BADVERS);
        assert_eq!(r.opt.unwrap().version, 0);
    }

    #[test]
    fn formerr_for_unreadable_body_echoes_header_only() {
        let q = &QUERY_EDNS[..20];
        let mut buf = [0u8; MAX_LOCAL_ANSWER];
        let n = respond(q, None, rcode::FORMERR, None, &mut buf).unwrap();
        assert_eq!(n, 12);
        assert_eq!(&buf[..4], &[0x12, 0x34, 0x81, 0x81]);
        assert_eq!(&buf[4..12], &[0; 8]);
    }

    #[test]
    fn no_opt_without_client_edns() {
        let mut q = QUERY_EDNS[..29].to_vec();
        q[11] = 0;
        let s = scan(&q).unwrap();
        let mut buf = [0u8; MAX_LOCAL_ANSWER];
        let e = Ede {
            code: ede::NO_REACHABLE_AUTHORITY,
            text: "x",
        };
        let n = respond(&q, Some(&s), rcode::SERVFAIL, Some(e), &mut buf).unwrap();
        assert_eq!(n, 29);
        assert!(scan(&buf[..n]).unwrap().opt.is_none());
    }
}
