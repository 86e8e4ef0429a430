//! DNS64 (RFC 6147): AAAA answers synthesized from A records for IPv6-only clients behind NAT64, with
//! addresses embedded per RFC 6052, and the `ipv4only.arpa` answers used for prefix discovery
//! (RFC 7050, RFC 8880).
//!
//! Rules: synthesis happens only when the AAAA answer is NOERROR with no AAAA record (a name with AAAA
//! records is never synthesized; NXDOMAIN stays NXDOMAIN); CNAMEs of the A answer are kept; names are
//! read with [`name::expand`] (under the pointer rules `scan` enforces) and written as a pointer to
//! the same name written earlier (the question, or an earlier owner or CNAME target), else in full;
//! the answer stops 512 octets short of 65,535 with TC set (a large A answer never grows past a
//! message, with room left for the client's OPT record; TC stays set over TCP too: RFC 2181 §9 sets
//! it whenever an RRset could not be sent whole, whatever the transport); the
//! synthesized record keeps the A record's TTL; a synthesized answer never claims to be authenticated
//! (AD clear, RFC 6147 §5.5: synthesized records cannot be validated).

use alloc::vec::Vec;

use crate::wire::header::{self, Header};
use crate::wire::message::Scan;
use crate::wire::{CLASS_IN, TYPE_CNAME, name};

pub use crate::wire::{TYPE_A, TYPE_AAAA};

pub use crate::nat64::Nat64Prefix;

/// Where a synthesized answer stops: the largest DNS message (a TCP length prefix's range) less room
/// for the OPT record (and its EDE options) the answer gets on its way to an EDNS client; without
/// that room a cut answer could reach the client as its question alone.
const MAX_MESSAGE: usize = u16::MAX as usize - 512;

/// Names written so far in a synthesized answer, for compression: where each starts in the output
/// and how long it is (uncompressed). Bounded; names past the bound are written in full.
struct Written {
    at: [(u16, u8); 16],
    n: usize,
}

impl Written {
    fn new() -> Self {
        Self {
            at: [(0, 0); 16],
            n: 0,
        }
    }

    /// Appends the name at `start` in `msg` to `out`: a pointer to an identical name written earlier
    /// (octet for octet, so the case the upstream sent is kept), else the name in full. Returns the
    /// octets appended.
    fn put(&mut self, msg: &[u8], start: usize, out: &mut Vec<u8>) -> Option<usize> {
        let mut buf = [0u8; name::MAX_NAME_LEN];
        let (_, len) = name::expand(msg, start, &mut buf).ok()?;
        let full = buf.get(..len)?;
        let earlier = self.at.get(..self.n)?.iter().find(|&&(off, l)| {
            usize::from(l) == len && out.get(usize::from(off)..usize::from(off) + len) == Some(full)
        });
        if let Some(&(off, _)) = earlier {
            out.extend_from_slice(&(0xC000 | off).to_be_bytes());
            return Some(2);
        }
        let off = out.len();
        out.extend_from_slice(full);
        self.remember(off, len);
        Some(len)
    }

    /// Notes a name of `len` octets written in full at `off`. The root (one octet) is not worth a
    /// pointer; offsets past 0x3FFF cannot be pointed to.
    fn remember(&mut self, off: usize, len: usize) {
        if let (Ok(off @ 0..0x4000), Ok(len @ 2..), Some(slot)) = (
            u16::try_from(off),
            u8::try_from(len),
            self.at.get_mut(self.n),
        ) {
            *slot = (off, len);
            self.n += 1;
        }
    }
}

/// Does the answer section hold a record of `rtype`?
pub fn has_answer_of_type(msg: &[u8], scan: &Scan, rtype: u16) -> bool {
    scan.answers(msg).any(|r| r.rtype == rtype)
}

/// Builds the synthesized AAAA answer from an A answer `a` (its question is the AAAA question except
/// for QTYPE), with AD clear whatever the A answer said. `None` if the A answer holds no A record (the
/// original AAAA answer then stands).
pub fn synthesize(a: &[u8], scan: &Scan, prefix: &Nat64Prefix) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(a.len().min(MAX_MESSAGE) + 64);
    out.extend_from_slice(a.get(..scan.question_end)?);
    let qt = scan.question_end.checked_sub(4)?;
    out.get_mut(qt..qt + 2)?
        .copy_from_slice(&TYPE_AAAA.to_be_bytes());
    let mut names = Written::new();
    // The question's name, at 12 in both messages (uncompressed: nothing before it to point to).
    if let Some(q) = scan.question {
        names.remember(header::LEN, q.name_end.checked_sub(header::LEN)?);
    }
    let mut count = 0u16;
    let mut synthesized = 0u16;
    let mut truncated = false;
    for r in scan.answers(a) {
        let mark = out.len();
        match (r.rtype, r.class) {
            (TYPE_A, CLASS_IN) if r.rdata.len() == 4 => {
                names.put(a, r.owner, &mut out)?;
                out.extend_from_slice(&TYPE_AAAA.to_be_bytes());
                out.extend_from_slice(&CLASS_IN.to_be_bytes());
                out.extend_from_slice(&r.ttl.to_be_bytes());
                out.extend_from_slice(&16u16.to_be_bytes());
                let v4: [u8; 4] = a.get(r.rdata)?.try_into().ok()?;
                out.extend_from_slice(&prefix.embed(v4));
            }
            (TYPE_CNAME, class) => {
                names.put(a, r.owner, &mut out)?;
                out.extend_from_slice(&TYPE_CNAME.to_be_bytes());
                out.extend_from_slice(&class.to_be_bytes());
                out.extend_from_slice(&r.ttl.to_be_bytes());
                let rdlen_at = out.len();
                out.extend_from_slice(&[0, 0]);
                let len = names.put(a, r.rdata.start, &mut out)?;
                out.get_mut(rdlen_at..rdlen_at + 2)?
                    .copy_from_slice(&(len as u16).to_be_bytes());
            }
            _ => continue,
        }
        if out.len() > MAX_MESSAGE {
            // This record does not fit in a message: the answer ends before it, marked truncated.
            out.truncate(mark);
            truncated = true;
            break;
        }
        count += 1;
        synthesized += u16::from(r.rtype == TYPE_A);
    }
    if synthesized == 0 {
        return None;
    }
    let h = Header {
        // TC if cut here, or if the A answer was already truncated.
        flags: Header::with_tc(
            scan.header.flags & !header::AD,
            truncated || scan.header.tc(),
        ),
        ancount: count,
        nscount: 0,
        arcount: 0,
        ..scan.header
    };
    h.emit(out.get_mut(..header::LEN)?).ok()?;
    Some(out)
}

/// Is the question `ipv4only.arpa.`?
pub fn is_ipv4only_arpa(qname: &[u8]) -> bool {
    qname.eq_ignore_ascii_case(b"\x08ipv4only\x04arpa\x00")
}

/// The well-known addresses of `ipv4only.arpa` (RFC 7050 §2.2).
pub const IPV4ONLY_ADDRS: [[u8; 4]; 2] = [[192, 0, 0, 170], [192, 0, 0, 171]];

/// The local answer to an `ipv4only.arpa` query of type A or AAAA (other types: NODATA), built on the
/// query's header and question; TTL one day.
pub fn ipv4only_answer(query: &[u8], scan: &Scan, prefix: &Nat64Prefix) -> Option<Vec<u8>> {
    let q = scan.question?;
    let mut out = Vec::with_capacity(scan.question_end + 80);
    out.extend_from_slice(query.get(..scan.question_end)?);
    let mut n = 0u16;
    for v4 in IPV4ONLY_ADDRS {
        let rdata: Vec<u8> = match q.qtype {
            TYPE_A => v4.to_vec(),
            TYPE_AAAA => prefix.embed(v4).to_vec(),
            _ => continue,
        };
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&q.qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&86_400u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
        n += 1;
    }
    let h = Header {
        flags: Header::response_flags(scan.header.flags, header::rcode::NOERROR) | header::AA,
        qdcount: 1,
        ancount: n,
        nscount: 0,
        arcount: 0,
        ..scan.header
    };
    h.emit(&mut out[..header::LEN]).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::scan;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<core::net::Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn rfc6052_table_of_embeddings() {
        // RFC 6052 §2.4, 192.0.2.33 under 2001:db8::/L.
        let v4 = [192, 0, 2, 33];
        let cases = [
            (32, "2001:db8::", "2001:db8:c000:221::"),
            (40, "2001:db8:100::", "2001:db8:1c0:2:21::"),
            (48, "2001:db8:122::", "2001:db8:122:c000:2:2100::"),
            (56, "2001:db8:122:300::", "2001:db8:122:3c0:0:221::"),
            (64, "2001:db8:122:344::", "2001:db8:122:344:c0:2:2100:0"),
            (96, "2001:db8:122:344::", "2001:db8:122:344::192.0.2.33"),
        ];
        for (len, prefix, want) in cases {
            let p = Nat64Prefix::new(v6(prefix).into(), len).unwrap();
            assert_eq!(p.embed(v4), v6(want), "/{len}");
        }
        assert_eq!(
            Nat64Prefix::WELL_KNOWN.embed([192, 0, 0, 170]),
            v6("64:ff9b::c000:aa")
        );
        assert!(Nat64Prefix::new(v6("2001:db8::").into(), 80).is_err());
        assert!(
            Nat64Prefix::new(v6("2001:db8::ff00:0:0:0").into(), 96).is_err(),
            "u octet must be zero"
        );
    }

    /// `www.example. A`, answer: www CNAME cdn.example. (compressed), cdn A 192.0.2.1, cdn A 192.0.2.2.
    fn a_answer() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        // CNAME at 12 -> cdn + pointer to "example" (offset 16)
        m.extend_from_slice(&[
            0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'c', b'd', b'n', 0xc0, 16,
        ]);
        let cdn = 12 + 17 + 12; // offset of "cdn" label in the CNAME rdata
        for last in [1u8, 2] {
            m.extend_from_slice(&[
                0xc0, cdn as u8, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, last,
            ]);
        }
        m
    }

    #[test]
    fn synthesizes_aaaa_from_a_keeping_cnames() {
        let a = a_answer();
        let s = scan(&a).unwrap();
        let out = synthesize(&a, &s, &Nat64Prefix::WELL_KNOWN).unwrap();
        let m = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert_eq!(
            m.queries()[0].query_type(),
            hickory_proto::rr::RecordType::AAAA
        );
        let ans = m.answers();
        assert_eq!(ans.len(), 3);
        assert_eq!(ans[0].record_type(), hickory_proto::rr::RecordType::CNAME);
        assert_eq!(ans[1].name().to_ascii(), "cdn.example.");
        assert_eq!(ans[1].data().to_string(), "64:ff9b::c000:201");
        assert_eq!(ans[2].data().to_string(), "64:ff9b::c000:202");
        assert_eq!(ans[1].ttl(), 30);
    }

    #[test]
    fn synthesized_answers_never_claim_authenticated_data() {
        // RFC 6147 §5.5: the A answer was validated (AD), the synthesized AAAA records were not.
        let mut a = a_answer();
        a[3] |= 0x20;
        let s = scan(&a).unwrap();
        assert!(s.header.flags & header::AD != 0);
        let out = synthesize(&a, &s, &Nat64Prefix::WELL_KNOWN).unwrap();
        let m = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert!(!m.authentic_data(), "AD copied into a synthesized answer");
        assert!(m.recursion_available(), "the other flags are kept");
        assert_eq!(m.id(), 0x1234);
    }

    #[test]
    fn names_are_read_under_the_pointer_rules_of_scan() {
        // `scan` checks owner names only; a CNAME target is read by `name::expand`, which has the
        // same rule: pointers strictly backwards. A target pointing forward (into the next record)
        // is malformed, and the original AAAA answer stands.
        let with_target_pointer = |ptr: u8| {
            let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
            m.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
            // www CNAME x.<pointer>, then www A 192.0.2.1 at offset 45.
            m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, ptr]);
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
            m
        };
        let good = with_target_pointer(16); // "example" in the question
        let out = synthesize(&good, &scan(&good).unwrap(), &Nat64Prefix::WELL_KNOWN).unwrap();
        let m = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert_eq!(m.answers()[0].data().to_string(), "x.example.");
        let forward = with_target_pointer(47); // the A record's TYPE: a root label, read forward
        let s = scan(&forward).unwrap();
        assert!(synthesize(&forward, &s, &Nat64Prefix::WELL_KNOWN).is_none());
    }

    #[test]
    fn names_already_written_become_pointers() {
        let a = a_answer();
        let out = synthesize(&a, &scan(&a).unwrap(), &Nat64Prefix::WELL_KNOWN).unwrap();
        // Question (12..29); CNAME owner = the question: a pointer to 12; its target cdn.example. in
        // full (13 octets, the first time); both AAAA owners point to it.
        let target = 29 + 2 + 10;
        let mut want = a[..29].to_vec();
        want[25..27].copy_from_slice(&[0, 28]);
        want.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 13]);
        want.extend_from_slice(b"\x03cdn\x07example\x00");
        for last in [1u8, 2] {
            want.extend_from_slice(&[0xc0, target as u8, 0, 28, 0, 1, 0, 0, 0, 30, 0, 16]);
            want.extend_from_slice(&Nat64Prefix::WELL_KNOWN.embed([192, 0, 2, last]));
        }
        assert_eq!(out[12..], want[12..]);
        // A name that differs from an earlier one only in case is written in full (the case the
        // upstream sent is kept).
        let mut upper = a.clone();
        upper.extend_from_slice(b"\x03WWW\x07example\x00");
        upper.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 3]);
        upper[7] = 4;
        let out = synthesize(&upper, &scan(&upper).unwrap(), &Nat64Prefix::WELL_KNOWN).unwrap();
        let m = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert_eq!(m.answers().len(), 4);
        assert_eq!(m.answers()[3].name().to_ascii(), "WWW.example.");
        assert_eq!(&out[110..123], b"\x03WWW\x07example\x00");
        assert_eq!(out.len(), 123 + 26);
    }

    #[test]
    fn a_huge_a_answer_stops_at_one_message_with_tc() {
        // A 255-octet question name and as many A records as fit in 64 KB, each owner a pointer to
        // the question (16 octets a record). Written out in full, each synthesized record would be
        // 255 + 26 octets: 1.1 MB.
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..4 {
            m.push(62);
            m.extend_from_slice(&[b'a'; 62]);
        }
        m.extend_from_slice(b"\x01z\x00\x00\x01\x00\x01");
        let question_end = m.len();
        assert_eq!(question_end - 12 - 4, 255);
        let n = (usize::from(u16::MAX) - question_end) / 16;
        for i in 0..n {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0]);
            m.extend_from_slice(&(i as u16).to_be_bytes());
        }
        m[6..8].copy_from_slice(&(n as u16).to_be_bytes());
        let s = scan(&m).unwrap();
        let out = synthesize(&m, &s, &Nat64Prefix::WELL_KNOWN).unwrap();
        assert!(out.len() <= usize::from(u16::MAX) - 512, "{}", out.len());
        let fit = (usize::from(u16::MAX) - 512 - question_end) / 28;
        assert!(fit < n);
        assert_eq!(out.len(), question_end + fit * 28);
        let msg = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert!(msg.truncated(), "a cut answer says so");
        assert_eq!(msg.answers().len(), fit);
        let last = msg.answers().last().unwrap();
        assert_eq!(last.name(), msg.queries()[0].name());
        let i = fit - 1;
        assert_eq!(last.data().to_string(), format!("64:ff9b::a00:{:x}", i));
        // Through the rewrite to a TCP client with EDNS: the cut answer keeps its records (and gets
        // its OPT record), not only its question.
        let view = crate::wire::rewrite::ClientView {
            id: 0x1234,
            edns: Some(false),
            max_len: usize::from(u16::MAX),
        };
        let mut buf = vec![0u8; 70_000];
        let n = crate::wire::rewrite::to_client(&out, &scan(&out).unwrap(), &view, None, &mut buf)
            .unwrap();
        let to_client = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(to_client.answers().len(), fit);
        assert!(to_client.truncated());
        // An answer the upstream marked truncated stays marked.
        let mut cut = a_answer();
        cut[2] |= 0x02;
        let out = synthesize(&cut, &scan(&cut).unwrap(), &Nat64Prefix::WELL_KNOWN).unwrap();
        assert!(
            hickory_proto::op::Message::from_vec(&out)
                .unwrap()
                .truncated()
        );
        // An answer that fits is not marked.
        let small = a_answer();
        let out = synthesize(&small, &scan(&small).unwrap(), &Nat64Prefix::WELL_KNOWN).unwrap();
        assert!(
            !hickory_proto::op::Message::from_vec(&out)
                .unwrap()
                .truncated()
        );
    }

    #[test]
    fn no_a_record_means_no_synthesis() {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        let s = scan(&m).unwrap();
        assert!(synthesize(&m, &s, &Nat64Prefix::WELL_KNOWN).is_none());
        assert!(!has_answer_of_type(&m, &s, TYPE_AAAA));
    }

    #[test]
    fn ipv4only_arpa_answers() {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x08IPV4ONLY\x04arpa\x00\x00\x1c\x00\x01");
        let s = scan(&q).unwrap();
        assert!(is_ipv4only_arpa(&q[12..s.question.unwrap().name_end]));
        let out = ipv4only_answer(&q, &s, &Nat64Prefix::WELL_KNOWN).unwrap();
        let m = hickory_proto::op::Message::from_vec(&out).unwrap();
        let got: Vec<_> = m.answers().iter().map(|r| r.data().to_string()).collect();
        assert_eq!(got, ["64:ff9b::c000:aa", "64:ff9b::c000:ab"]);
        assert_eq!(m.id(), 0xabcd);
    }
}
