//! One validating walk over a whole message: [`scan`] returns the offsets a forwarder needs.

use super::header::{self, Header};
use super::{Error, TYPE_OPT, be16, edns, name};

/// The (first) question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    /// Offset just past QNAME (QTYPE starts here).
    pub name_end: usize,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

/// The OPT pseudo-record (RFC 6891 §6.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt {
    /// Offset of the record's owner name.
    pub start: usize,
    /// Offset just past the record.
    pub end: usize,
    /// Index of the OPT record among the additional records.
    pub index: u16,
    /// Requestor's UDP payload size (the CLASS field).
    pub udp_size: u16,
    /// Upper 8 bits of the extended RCODE.
    pub ext_rcode: u8,
    /// EDNS version.
    pub version: u8,
    /// EDNS flags (DO is the top bit).
    pub flags: u16,
    /// Offset of the option data (RDATA).
    pub rdata_start: usize,
}

impl Opt {
    /// DNSSEC OK (RFC 3225).
    pub fn dnssec_ok(&self) -> bool {
        self.flags & edns::FLAG_DO != 0
    }
}

/// Offsets of a validated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The header.
    pub header: Header,
    /// The first question, if QDCOUNT ≥ 1.
    pub question: Option<Question>,
    /// Offset just past the question section.
    pub question_end: usize,
    /// Offset just past the answer section.
    pub answer_end: usize,
    /// Offset just past the authority section.
    pub authority_end: usize,
    /// Offset just past the additional section (bytes after it are ignored and never forwarded).
    pub end: usize,
    /// The OPT record, if present.
    pub opt: Option<Opt>,
}

impl Scan {
    /// The full RCODE: low 4 bits from the header, high 8 bits from OPT (RFC 6891 §6.1.3).
    pub fn rcode(&self) -> u16 {
        let ext = self.opt.map_or(0, |o| u16::from(o.ext_rcode));
        (ext << 4) | self.header.rcode_low()
    }
}

/// Walks one resource record at `pos`; returns (offset past it, TYPE, RDATA offset).
pub fn skip_record(msg: &[u8], pos: usize) -> Result<(usize, u16, usize), Error> {
    record_fields(msg, name::skip(msg, pos)?)
}

/// The rest of a record whose owner name ends at `after_name`: (offset past it, TYPE, RDATA offset).
#[inline]
fn record_fields(msg: &[u8], after_name: usize) -> Result<(usize, u16, usize), Error> {
    let rtype = be16(msg, after_name)?;
    let rdlen = usize::from(be16(msg, after_name + 8)?);
    let rdata = after_name + 10;
    let end = rdata + rdlen;
    if end > msg.len() {
        return Err(Error::Truncated);
    }
    Ok((end, rtype, rdata))
}

/// [`skip_record`] in a message whose first question name (at offset 12) was walked already:
/// an owner name that is just a pointer to it ends after the pointer without walking the name again
/// (what [`name::skip`] checks of such a pointer holds: the question name is uncompressed, valid,
/// and lies before every record).
#[inline]
fn record_after_question(
    msg: &[u8],
    pos: usize,
    question_name: bool,
) -> Result<(usize, u16, usize), Error> {
    if question_name && msg.get(pos..pos + 2) == Some(&[0xc0, header::LEN as u8][..]) {
        record_fields(msg, pos + 2)
    } else {
        skip_record(msg, pos)
    }
}

/// Validates `msg` and returns its offsets. Fails with [`Error::ShortHeader`] only when not even the
/// header is readable (such input is dropped); any other error means FORMERR.
pub fn scan(msg: &[u8]) -> Result<Scan, Error> {
    let header = Header::parse(msg)?;
    let mut pos = header::LEN;
    let mut question = None;
    for i in 0..header.qdcount {
        let name_end = name::skip(msg, pos)?;
        let qtype = be16(msg, name_end)?;
        let qclass = be16(msg, name_end + 2)?;
        if i == 0 {
            question = Some(Question {
                name_end,
                qtype,
                qclass,
            });
        }
        pos = name_end + 4;
    }
    let question_end = pos;
    // The owner names of the records after a question mostly point at it (0xC00C).
    let question_name = header.qdcount > 0;
    // The answer and authority sections (no OPT record in either), and where each ends.
    let mut ends = [question_end; 2];
    for (section_end, count) in ends.iter_mut().zip([header.ancount, header.nscount]) {
        for _ in 0..count {
            let (end, rtype, _) = record_after_question(msg, pos, question_name)?;
            if rtype == TYPE_OPT {
                return Err(Error::BadOpt);
            }
            pos = end;
        }
        *section_end = pos;
    }
    let [answer_end, authority_end] = ends;
    let mut opt = None;
    for index in 0..header.arcount {
        let (end, rtype, rdata_start) = record_after_question(msg, pos, question_name)?;
        if rtype == TYPE_OPT {
            if opt.is_some() || msg.get(pos) != Some(&0) {
                return Err(Error::BadOpt);
            }
            let ttl_hi = be16(msg, pos + 5)?;
            let o = Opt {
                start: pos,
                end,
                index,
                udp_size: be16(msg, pos + 3)?,
                ext_rcode: (ttl_hi >> 8) as u8,
                version: (ttl_hi & 0xff) as u8,
                flags: be16(msg, pos + 7)?,
                rdata_start,
            };
            edns::check_options(&msg[rdata_start..end])?;
            opt = Some(o);
        }
        pos = end;
    }
    Ok(Scan {
        header,
        question,
        question_end,
        answer_end,
        authority_end,
        end: pos,
        opt,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `dig +edns=0 +bufsize=4096 example.com A`, id 0x1234, RD, AD: a query with an OPT record.
    pub(crate) const QUERY_EDNS: &[u8] = &[
        0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1, // header
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0,
        1, // question
        0, 0, 0x29, 0x10, 0x00, 0, 0, 0, 0, 0, 0, // OPT 4096, no options
    ];

    /// A query (ID `id`, RD) for a dotted name ("." is the root), class IN, with an OPT (UDP size
    /// 4096, DO set) if `edns`.
    pub(crate) fn query(id: u16, name: &str, qtype: u16, edns: bool) -> alloc::vec::Vec<u8> {
        let [hi, lo] = id.to_be_bytes();
        let mut m = alloc::vec![hi, lo, 1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        if edns {
            m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        }
        m
    }

    /// The answer to it: one A record with a compressed owner name, and the OPT.
    pub(crate) const ANSWER_EDNS: &[u8] = &[
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1, // header
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0,
        1, // question
        0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 93, 184, 216, 34, // A
        0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0, // OPT 1232
    ];

    #[test]
    fn scan_query_with_opt() {
        let s = scan(QUERY_EDNS).unwrap();
        assert_eq!(s.header.id, 0x1234);
        let q = s.question.unwrap();
        assert_eq!((q.name_end, q.qtype, q.qclass), (25, 1, 1));
        assert_eq!(s.question_end, 29);
        let o = s.opt.unwrap();
        assert_eq!((o.start, o.end, o.udp_size, o.version), (29, 40, 4096, 0));
        assert_eq!(s.end, QUERY_EDNS.len());
    }

    #[test]
    fn scan_answer_sections() {
        let s = scan(ANSWER_EDNS).unwrap();
        assert_eq!(s.answer_end, 29 + 16);
        assert_eq!(s.authority_end, 29 + 16);
        assert_eq!(s.opt.unwrap().udp_size, 1232);
        assert_eq!(s.rcode(), 0);
    }

    #[test]
    fn reject_two_opts_and_opt_in_answer() {
        let mut two = QUERY_EDNS.to_vec();
        two.extend_from_slice(&QUERY_EDNS[29..]);
        two[11] = 2;
        assert_eq!(scan(&two), Err(Error::BadOpt));
        let mut in_answer = QUERY_EDNS.to_vec();
        in_answer[7] = 1;
        in_answer[11] = 0;
        assert_eq!(scan(&in_answer), Err(Error::BadOpt));
    }

    #[test]
    fn reject_truncated_counts() {
        let mut m = QUERY_EDNS.to_vec();
        m[11] = 2; // claims a second additional record
        assert_eq!(scan(&m), Err(Error::Truncated));
        assert_eq!(scan(&QUERY_EDNS[..20]), Err(Error::Truncated));
        assert_eq!(scan(&QUERY_EDNS[..5]), Err(Error::ShortHeader));
    }

    #[test]
    fn trailing_bytes_are_ignored_not_forwarded() {
        let mut m = QUERY_EDNS.to_vec();
        m.extend_from_slice(&[1, 2, 3]);
        assert_eq!(scan(&m).unwrap().end, QUERY_EDNS.len());
    }

    #[test]
    fn differential_against_hickory() {
        use hickory_proto::op::Message;
        for m in [QUERY_EDNS, ANSWER_EDNS] {
            let ours = scan(m).unwrap();
            let theirs = Message::from_vec(m).unwrap();
            assert_eq!(ours.header.id, theirs.id());
            assert_eq!(usize::from(ours.header.ancount), theirs.answers().len());
            assert_eq!(
                ours.opt.map(|o| o.udp_size),
                theirs.extensions().as_ref().map(|e| e.max_payload())
            );
        }
    }
}
