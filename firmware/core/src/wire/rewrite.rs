//! Copy-with-edits between the LAN and the upstream.
//!
//! Client → upstream ([`forward_query`]): a fresh message with lanveil's ID, the client's opcode and
//! RD/AD/CD bits, the one question copied byte for byte, and lanveil's own OPT record (UDP size 1232,
//! the client's DO bit, and RFC 8467 padding to a multiple of 128 octets). Nothing else of the client's
//! message leaves the house: no answer/authority/additional records, no client EDNS options (ECS, cookies,
//! unknown ones).
//!
//! Upstream → client ([`to_client`]): the client's ID restored; the upstream's OPT replaced by lanveil's
//! (or removed if the client did not use EDNS), keeping only Extended DNS Errors; additional records
//! after the OPT dropped; and for UDP, the answer fitted into the client's limit (RFC 2181 §9: drop
//! additional records first, else send the question alone with TC set).

use super::edns::{self, OPTION_EDE, QUERY_PAD_BLOCK};
use super::header::{self, Header};
use super::message::{Scan, skip_record};
use super::{EDNS_UDP_SIZE, Error, Writer};

/// Upper bound of the bytes [`forward_query`] adds to the question: header, OPT, padding.
pub const QUERY_OVERHEAD: usize = header::LEN + edns::OPT_FIXED_LEN + QUERY_PAD_BLOCK + 4;

/// Writes the upstream form of a validated client query. `scan` must come from [`super::message::scan`]
/// of `query` and have exactly one question.
pub fn forward_query(query: &[u8], scan: &Scan, id: u16, out: &mut [u8]) -> Result<usize, Error> {
    let question = query
        .get(header::LEN..scan.question_end)
        .ok_or(Error::Truncated)?;
    let dnssec_ok = scan.opt.is_some_and(|o| o.dnssec_ok());
    let mut w = Writer::new(out);
    let h = Header {
        id,
        flags: Header::forwarded_query_flags(scan.header.flags),
        qdcount: 1,
        ancount: 0,
        nscount: 0,
        arcount: 1,
    };
    w.put_zeros(header::LEN)?;
    h.emit(w.header_mut()?)?;
    w.put(question)?;
    let unpadded = w.len() + edns::OPT_FIXED_LEN;
    let pad = edns::padding_option_len(unpadded, QUERY_PAD_BLOCK);
    edns::emit_opt(
        &mut w,
        EDNS_UDP_SIZE,
        0,
        if dnssec_ok { edns::FLAG_DO } else { 0 },
        pad as u16,
    )?;
    w.put_u16(edns::OPTION_PADDING)?;
    w.put_u16((pad - 4) as u16)?;
    w.put_zeros(pad - 4)?;
    Ok(w.len())
}

impl Writer<'_> {
    fn header_mut(&mut self) -> Result<&mut [u8], Error> {
        if self.len() < header::LEN {
            return Err(Error::BufferTooSmall);
        }
        Ok(&mut self.buf_mut()[..header::LEN])
    }
}

/// What lanveil remembers of the client to answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientView {
    /// The client's message ID.
    pub id: u16,
    /// `Some(dnssec_ok)` if the client sent an OPT record.
    pub edns: Option<bool>,
    /// The largest answer the client may get (UDP limit, or 65535 for TCP).
    pub max_len: usize,
}

impl ClientView {
    /// The UDP answer limit for a client: the smaller of its advertised size and 1232, never below 512;
    /// 512 without EDNS.
    pub fn udp_limit(advertised: Option<u16>) -> usize {
        match advertised {
            Some(size) => usize::from(size.clamp(super::CLASSIC_UDP_SIZE, EDNS_UDP_SIZE)),
            None => usize::from(super::CLASSIC_UDP_SIZE),
        }
    }
}

/// Writes the client's form of a validated upstream response; `extra` adds lanveil's own Extended DNS
/// Error (e.g. EDE 3 on a stale answer) after the upstream's.
pub fn to_client(
    resp: &[u8],
    scan: &Scan,
    client: &ClientView,
    extra: Option<edns::Ede<'_>>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let (body_end, kept_additional) = match scan.opt {
        Some(o) => (o.start, o.index),
        None => (scan.end, scan.header.arcount),
    };
    // Lanveil's OPT for the client: fixed part plus the upstream's Extended DNS Errors.
    let ede_rdata = scan.opt.map_or(&[][..], |o| &resp[o.rdata_start..o.end]);
    let ede_len: usize = edns::options(ede_rdata)
        .filter(|(code, data)| *code == OPTION_EDE && data.len() <= 2 + edns::MAX_EDE_TEXT)
        .map(|(_, data)| 4 + data.len())
        .sum::<usize>()
        + extra.map_or(0, |e| e.option_len());
    let opt_len = if client.edns.is_some() {
        edns::OPT_FIXED_LEN + ede_len
    } else {
        0
    };
    let mut flags = scan.header.flags;
    let ext_rcode = scan.opt.map_or(0, |o| o.ext_rcode);
    if client.edns.is_none() && ext_rcode != 0 {
        // An extended RCODE cannot be expressed without EDNS.
        flags = (flags & !0x000f) | header::rcode::SERVFAIL;
    }

    // Fit for the client: everything, or drop trailing additional records, or question + TC.
    let (records_end, arcount, tc) = if body_end + opt_len <= client.max_len {
        (body_end, kept_additional, scan.header.tc())
    } else if scan.authority_end + opt_len <= client.max_len {
        let mut end = scan.authority_end;
        let mut n = 0u16;
        while n < kept_additional {
            let (next, _, _) = skip_record(resp, end)?;
            if next + opt_len > client.max_len {
                break;
            }
            end = next;
            n += 1;
        }
        (end, n, scan.header.tc())
    } else {
        (scan.question_end, 0, true)
    };
    // The question-only form must fit too: upstream EDEs (and then ours) give way before the limit.
    let (ede_rdata, extra, opt_len) = if client.edns.is_some()
        && records_end + opt_len > client.max_len
    {
        let ours = extra.map_or(0, |e| e.option_len());
        let extra = extra.filter(|_| records_end + edns::OPT_FIXED_LEN + ours <= client.max_len);
        (
            &[][..],
            extra,
            edns::OPT_FIXED_LEN + extra.map_or(0, |e| e.option_len()),
        )
    } else {
        (ede_rdata, extra, opt_len)
    };
    let ede_len = opt_len.saturating_sub(if client.edns.is_some() {
        edns::OPT_FIXED_LEN
    } else {
        0
    });
    let truncated_to_question =
        records_end == scan.question_end && records_end < scan.authority_end;

    let mut w = Writer::new(out);
    w.put(resp.get(..records_end).ok_or(Error::Truncated)?)?;
    let h = Header {
        id: client.id,
        flags: Header::with_tc(flags, tc),
        qdcount: scan.header.qdcount.min(1),
        ancount: if truncated_to_question {
            0
        } else {
            scan.header.ancount
        },
        nscount: if truncated_to_question {
            0
        } else {
            scan.header.nscount
        },
        arcount: arcount + u16::from(client.edns.is_some()),
    };
    h.emit(w.header_mut()?)?;
    if let Some(client_do) = client.edns {
        let upstream_do = scan.opt.is_some_and(|o| o.dnssec_ok());
        let flags = if client_do && upstream_do {
            edns::FLAG_DO
        } else {
            0
        };
        edns::emit_opt(&mut w, EDNS_UDP_SIZE, ext_rcode, flags, ede_len as u16)?;
        for (code, data) in edns::options(ede_rdata) {
            if code == OPTION_EDE && data.len() <= 2 + edns::MAX_EDE_TEXT {
                w.put_u16(code)?;
                w.put_u16(data.len() as u16)?;
                w.put(data)?;
            }
        }
        if let Some(e) = extra {
            e.emit(&mut w)?;
        }
    }
    Ok(w.len())
}

#[cfg(test)]
mod tests {
    use super::super::message::scan;
    use super::super::message::tests::{ANSWER_EDNS, QUERY_EDNS};
    use super::*;

    #[test]
    fn rfc8467_forwarded_query_is_padded_and_clean() {
        let s = scan(QUERY_EDNS).unwrap();
        let mut buf = [0xa5u8; 512];
        let n = forward_query(QUERY_EDNS, &s, 0x4242, &mut buf).unwrap();
        assert_eq!(n % 128, 0);
        let out = &buf[..n];
        let f = scan(out).unwrap();
        assert_eq!(f.header.id, 0x4242);
        assert_eq!(f.header.flags, 0x0120); // RD, AD
        assert_eq!(&out[12..f.question_end], &QUERY_EDNS[12..29]);
        let o = f.opt.unwrap();
        assert_eq!(o.udp_size, 1232);
        let opts: alloc::vec::Vec<_> = edns::options(&out[o.rdata_start..o.end]).collect();
        assert_eq!(opts.len(), 1);
        assert_eq!(opts[0].0, edns::OPTION_PADDING);
        assert!(opts[0].1.iter().all(|&b| b == 0));
    }

    #[test]
    fn forwarded_query_drops_client_options_and_records() {
        // Query with ECS + cookie options and DO set.
        let mut q = QUERY_EDNS[..29].to_vec();
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 20]);
        q.extend_from_slice(&[0, 8, 0, 8, 0, 1, 24, 0, 192, 168, 1, 0]); // ECS
        q.extend_from_slice(&[0, 10, 0, 4, 1, 2, 3, 4]); // cookie (short, still well-formed)
        let s = scan(&q).unwrap();
        let mut buf = [0u8; 512];
        let n = forward_query(&q, &s, 1, &mut buf).unwrap();
        let f = scan(&buf[..n]).unwrap();
        let o = f.opt.unwrap();
        assert!(o.dnssec_ok());
        assert!(edns::options(&buf[o.rdata_start..o.end]).all(|(c, _)| c == edns::OPTION_PADDING));
    }

    #[test]
    fn to_client_restores_id_and_strips_opt_without_edns() {
        let s = scan(ANSWER_EDNS).unwrap();
        let mut buf = [0u8; 512];
        let c = ClientView {
            id: 0xabcd,
            edns: None,
            max_len: 512,
        };
        let n = to_client(ANSWER_EDNS, &s, &c, None, &mut buf).unwrap();
        let out = &buf[..n];
        assert_eq!(n, ANSWER_EDNS.len() - 11);
        let f = scan(out).unwrap();
        assert_eq!(f.header.id, 0xabcd);
        assert_eq!(f.header.arcount, 0);
        assert!(f.opt.is_none());
        assert_eq!(&out[2..11], &ANSWER_EDNS[2..11]);
        assert_eq!(&out[12..], &ANSWER_EDNS[12..n]);
    }

    #[test]
    fn to_client_keeps_ede_drops_padding() {
        let mut r = ANSWER_EDNS[..45].to_vec();
        r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 13]);
        r.extend_from_slice(&[0, 12, 0, 2, 0, 0]); // padding
        r.extend_from_slice(&[0, 15, 0, 3, 0, 6, b'!']); // EDE 6 "!"
        let s = scan(&r).unwrap();
        let mut buf = [0u8; 512];
        let c = ClientView {
            id: 7,
            edns: Some(false),
            max_len: 1232,
        };
        let n = to_client(&r, &s, &c, None, &mut buf).unwrap();
        let f = scan(&buf[..n]).unwrap();
        let o = f.opt.unwrap();
        let opts: alloc::vec::Vec<_> = edns::options(&buf[o.rdata_start..o.end]).collect();
        assert_eq!(opts, [(15u16, &[0u8, 6, b'!'][..])]);
    }

    fn big_answer(records: usize, additional: usize) -> alloc::vec::Vec<u8> {
        let mut r = ANSWER_EDNS[..29].to_vec();
        r[7] = records as u8;
        r[11] = (additional + 1) as u8;
        for _ in 0..records + additional {
            // TXT record with 200 bytes of data, owner compressed.
            r.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, 0, 201, 200]);
            r.extend_from_slice(&[b'x'; 200]);
        }
        r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        r
    }

    #[test]
    fn udp_limit_clamps_client_size() {
        assert_eq!(ClientView::udp_limit(Some(4096)), 1232);
        assert_eq!(ClientView::udp_limit(Some(100)), 512);
        assert_eq!(ClientView::udp_limit(Some(800)), 800);
        assert_eq!(ClientView::udp_limit(None), 512);
    }

    #[test]
    fn truncation_sets_tc_and_keeps_question() {
        let r = big_answer(10, 0); // ~2.2 kB
        let s = scan(&r).unwrap();
        let mut buf = [0u8; 4096];
        let c = ClientView {
            id: 9,
            edns: Some(false),
            max_len: 1232,
        };
        let n = to_client(&r, &s, &c, None, &mut buf).unwrap();
        assert!(n <= 1232);
        let f = scan(&buf[..n]).unwrap();
        assert!(f.header.tc());
        assert_eq!(
            (f.header.qdcount, f.header.ancount, f.header.arcount),
            (1, 0, 1)
        );
        // Over TCP the same answer passes whole.
        let c = ClientView {
            id: 9,
            edns: Some(false),
            max_len: 65535,
        };
        let n = to_client(&r, &s, &c, None, &mut buf).unwrap();
        assert_eq!(n, r.len());
        assert!(!scan(&buf[..n]).unwrap().header.tc());
    }

    #[test]
    fn truncation_drops_additional_first_without_tc() {
        let r = big_answer(2, 5);
        let s = scan(&r).unwrap();
        let mut buf = [0u8; 4096];
        let c = ClientView {
            id: 9,
            edns: None,
            max_len: 512,
        };
        let n = to_client(&r, &s, &c, None, &mut buf).unwrap();
        assert!(n <= 512);
        let f = scan(&buf[..n]).unwrap();
        assert!(!f.header.tc());
        assert_eq!((f.header.ancount, f.header.arcount), (2, 0));
        let c = ClientView {
            id: 9,
            edns: Some(false),
            max_len: 1232,
        };
        let n = to_client(&r, &s, &c, None, &mut buf).unwrap();
        let f = scan(&buf[..n]).unwrap();
        assert_eq!(
            (f.header.ancount, f.header.arcount, f.header.tc()),
            (2, 4, false)
        );
        assert!(n <= 1232);
    }

    #[test]
    fn truncated_form_fits_even_with_many_upstream_edes() {
        // Fuzzer find: five 128-character EDEs made a 710-octet answer for a 512-octet client.
        let mut r = big_answer(10, 0);
        r.truncate(r.len() - 11);
        let mut opts = alloc::vec::Vec::new();
        for _ in 0..5 {
            opts.extend_from_slice(&[0, 15, 0, 130, 0, 6]);
            opts.extend_from_slice(&[b'e'; 128]);
        }
        r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        r.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        r.extend_from_slice(&opts);
        let s = scan(&r).unwrap();
        let mut buf = [0u8; 4096];
        let c = ClientView {
            id: 1,
            edns: Some(false),
            max_len: 512,
        };
        let extra = edns::Ede {
            code: 3,
            text: "stale",
        };
        let n = to_client(&r, &s, &c, Some(extra), &mut buf).unwrap();
        assert!(n <= 512, "{n}");
        let f = scan(&buf[..n]).unwrap();
        assert!(f.header.tc());
        let o = f.opt.unwrap();
        let opts: alloc::vec::Vec<_> = edns::options(&buf[o.rdata_start..o.end]).collect();
        assert_eq!(
            opts,
            [(15u16, &[0u8, 3, b's', b't', b'a', b'l', b'e'][..])],
            "ours kept, upstream's dropped"
        );
    }

    #[test]
    fn records_after_opt_are_dropped() {
        let mut r = ANSWER_EDNS.to_vec();
        r[11] = 2;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
        let s = scan(&r).unwrap();
        let mut buf = [0u8; 512];
        let c = ClientView {
            id: 1,
            edns: Some(false),
            max_len: 1232,
        };
        let n = to_client(&r, &s, &c, None, &mut buf).unwrap();
        assert_eq!(n, ANSWER_EDNS.len());
        assert_eq!(scan(&buf[..n]).unwrap().header.arcount, 1);
    }

    #[test]
    fn differential_to_client_parses_in_hickory() {
        use hickory_proto::op::Message;
        let r = big_answer(3, 2);
        let s = scan(&r).unwrap();
        let mut buf = [0u8; 4096];
        for (edns, max_len) in [
            (None, 512),
            (Some(true), 1232),
            (Some(false), 700),
            (None, 65535),
        ] {
            let c = ClientView {
                id: 77,
                edns,
                max_len,
            };
            let n = to_client(&r, &s, &c, None, &mut buf).unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(m.id(), 77);
            assert_eq!(m.extensions().is_some(), edns.is_some());
            assert_eq!(m.queries().len(), 1);
        }
    }
}
