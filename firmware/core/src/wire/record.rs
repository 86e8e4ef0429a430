//! The resource records of a scanned message, one at a time, without copying.

use core::ops::Range;

use super::be16;
use super::message::{Scan, skip_record};
// The TTL rewrite (a copy of the message: the heap).
#[cfg(feature = "alloc")]
use super::{Error, TYPE_OPT, message};

/// The section a record is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// The answer section.
    Answer,
    /// The authority section.
    Authority,
    /// The additional section (the OPT record included).
    Additional,
}

/// One resource record: offsets into the message and the fixed fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The section it is in.
    pub section: Section,
    /// Offset of the owner name (possibly compressed: read it with [`super::name::expand`]).
    pub owner: usize,
    /// TYPE.
    pub rtype: u16,
    /// CLASS (for OPT: the UDP payload size).
    pub class: u16,
    /// TTL (for OPT: extended RCODE, version and flags).
    pub ttl: u32,
    /// The RDATA; `rdata.end` is the offset just past the record.
    pub rdata: Range<usize>,
}

impl Record {
    /// Offset just past the owner name (TYPE starts here).
    pub fn owner_end(&self) -> usize {
        self.rdata.start - 10
    }
}

/// Iterator over the records of a message that [`super::message::scan`] accepted, in order:
/// answer, authority, additional. Made by [`Scan::records`] or [`Scan::answers`].
///
/// It walks with the rules `scan` enforced, so over the message that was scanned it yields exactly
/// the records the header counts announce; over any other bytes it stops at the first record that
/// does not parse (it never panics or reads out of bounds).
#[derive(Clone, Debug)]
pub struct Records<'a> {
    msg: &'a [u8],
    pos: usize,
    index: u32,
    count: u32,
    ancount: u32,
    nscount: u32,
}

impl Scan {
    /// Every record of `msg` (the message this scan is of), in order.
    pub fn records<'a>(&self, msg: &'a [u8]) -> Records<'a> {
        let h = &self.header;
        Records {
            msg,
            pos: self.question_end,
            index: 0,
            count: u32::from(h.ancount) + u32::from(h.nscount) + u32::from(h.arcount),
            ancount: u32::from(h.ancount),
            nscount: u32::from(h.nscount),
        }
    }

    /// The answer section's records of `msg` (the message this scan is of).
    pub fn answers<'a>(&self, msg: &'a [u8]) -> Records<'a> {
        Records {
            count: u32::from(self.header.ancount),
            ..self.records(msg)
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.index >= self.count {
            return None;
        }
        let Ok((end, rtype, rdata)) = skip_record(self.msg, self.pos) else {
            self.index = self.count;
            return None;
        };
        let fixed = rdata - 10;
        let section = if self.index < self.ancount {
            Section::Answer
        } else if self.index - self.ancount < self.nscount {
            Section::Authority
        } else {
            Section::Additional
        };
        let ttl = (u32::from(be16(self.msg, fixed + 4).ok()?) << 16)
            | u32::from(be16(self.msg, fixed + 6).ok()?);
        let record = Record {
            section,
            owner: self.pos,
            rtype,
            class: be16(self.msg, fixed + 2).ok()?,
            ttl,
            rdata: rdata..end,
        };
        self.index += 1;
        self.pos = end;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some((self.count - self.index) as usize))
    }
}

/// Rewrites, in place, the TTL of every resource record of `msg` (answer, authority and additional
/// sections; never the OPT pseudo-record's, whose TTL field holds the extended RCODE, version and
/// flags) to `f(ttl)`. A TTL with the top bit set is passed as 0 (RFC 2181 §8).
///
/// The whole message is validated with [`message::scan`] first, so bytes that are not a usable
/// message are left exactly as they were (and the error returned); names are walked only by the
/// one name codec, through [`skip_record`], and in a copy of the original bytes: a compression
/// pointer may lead into an earlier record's TTL octets, which the rewrite changes. (The copy needs
/// the heap: with the `alloc` feature.)
#[cfg(feature = "alloc")]
pub fn map_ttls(msg: &mut [u8], f: impl FnMut(u32) -> u32) -> Result<(), Error> {
    let s = message::scan(msg)?;
    let h = &s.header;
    let count = u32::from(h.ancount) + u32::from(h.nscount) + u32::from(h.arcount);
    let original = msg.to_vec();
    map_ttls_from(&original, msg, s.question_end, count, f)
}

/// [`map_ttls`] without the validation, for a message known to be whole (the cache's own copies):
/// walks the `count` records of `src` from `pos` (the end of the question section) and writes each
/// new TTL at the same offset of `dst`, a copy of `src`. Walking the unchanged `src` keeps every
/// name as it was, whatever the new TTL octets would spell.
#[cfg(feature = "alloc")]
pub(crate) fn map_ttls_from(
    src: &[u8],
    dst: &mut [u8],
    mut pos: usize,
    count: u32,
    mut f: impl FnMut(u32) -> u32,
) -> Result<(), Error> {
    for _ in 0..count {
        let (end, rtype, rdata) = skip_record(src, pos)?;
        if rtype != TYPE_OPT {
            // TYPE(2) CLASS(2) TTL(4) RDLENGTH(2), then RDATA.
            let at = rdata.checked_sub(6).ok_or(Error::Truncated)?;
            let ttl = src.get(at..at + 4).ok_or(Error::Truncated)?;
            let ttl = u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]); // 4 octets
            let ttl = if ttl > 0x7fff_ffff { 0 } else { ttl };
            let field = dst.get_mut(at..at + 4).ok_or(Error::Truncated)?;
            field.copy_from_slice(&f(ttl).to_be_bytes());
        }
        pos = end;
    }
    Ok(())
}

/// Lowers every record's TTL (not OPT's, see [`map_ttls`]) by `age` seconds, to no less than 0:
/// the remaining lifetime of an answer that sat `age` seconds in a cache on the way (the HTTP `Age`
/// of a DoH response, RFC 8484 §5.1). Bytes that are not a usable message are left unchanged.
#[cfg(feature = "alloc")]
pub fn reduce_ttls(msg: &mut [u8], age: u32) -> Result<(), Error> {
    map_ttls(msg, |ttl| ttl.saturating_sub(age))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::scan;
    use crate::wire::message::tests::{ANSWER_EDNS, QUERY_EDNS};

    #[test]
    fn records_of_an_answer_with_opt() {
        let s = scan(ANSWER_EDNS).unwrap();
        let all: alloc::vec::Vec<Record> = s.records(ANSWER_EDNS).collect();
        assert_eq!(all.len(), 2);
        let a = &all[0];
        assert_eq!(
            (a.section, a.owner, a.rtype, a.class, a.ttl),
            (Section::Answer, 29, 1, 1, 3600)
        );
        assert_eq!(&ANSWER_EDNS[a.rdata.clone()], &[93, 184, 216, 34]);
        assert_eq!(a.owner_end(), 31);
        let o = &all[1];
        assert_eq!(
            (o.section, o.rtype, o.class),
            (Section::Additional, 41, 1232)
        );
        assert_eq!(o.rdata.end, s.end);
        assert_eq!(s.answers(ANSWER_EDNS).count(), 1);
        let q = scan(QUERY_EDNS).unwrap();
        assert_eq!(q.answers(QUERY_EDNS).count(), 0);
        assert_eq!(q.records(QUERY_EDNS).count(), 1);
        // Other bytes than the scanned message: the walk stops, never panics.
        assert_eq!(s.records(&ANSWER_EDNS[..40]).count(), 0);
    }

    /// An answer with a record in each section and an OPT (extended RCODE 1, DO): the answer's
    /// owner is a pointer to the question name, the authority's a label then a pointer, the
    /// additional's an uncompressed name; one TTL has the top bit set.
    fn sectioned() -> alloc::vec::Vec<u8> {
        let mut m = ANSWER_EDNS[..29].to_vec();
        m[6..12].copy_from_slice(&[0, 2, 0, 1, 0, 2]);
        // Answer: example.com A, TTL 300; then example.com A with TTL 0x8000_0001 (counts as 0).
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 192, 0, 2, 1]);
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0x80, 0, 0, 1, 0, 4, 192, 0, 2, 2]);
        // Authority: ns.example.com NS (label + pointer), TTL 100, RDATA a pointer.
        m.extend_from_slice(&[2, b'n', b's', 0xc0, 0x0c, 0, 2, 0, 1, 0, 0, 0, 100, 0, 2]);
        m.extend_from_slice(&[0xc0, 0x0c]);
        // Additional: a.example.com A uncompressed, TTL 86400; then the OPT.
        m.extend_from_slice(&[1, b'a', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e']);
        m.extend_from_slice(&[3, b'c', b'o', b'm', 0, 0, 1, 0, 1, 0, 1, 0x51, 0x80, 0, 4]);
        m.extend_from_slice(&[192, 0, 2, 3]);
        m.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0x01, 0, 0x80, 0, 0, 0]);
        m
    }

    fn ttls(m: &[u8]) -> alloc::vec::Vec<(Section, u16, u32)> {
        let s = scan(m).unwrap();
        s.records(m).map(|r| (r.section, r.rtype, r.ttl)).collect()
    }

    #[test]
    fn reduce_ttls_lowers_every_record_but_opt_with_floor_zero() {
        let original = sectioned();
        assert_eq!(
            ttls(&original),
            [
                (Section::Answer, 1, 300),
                (Section::Answer, 1, 0x8000_0001),
                (Section::Authority, 2, 100),
                (Section::Additional, 1, 86_400),
                (Section::Additional, 41, 0x0100_8000),
            ]
        );
        let mut m = original.clone();
        reduce_ttls(&mut m, 250).unwrap();
        assert_eq!(
            ttls(&m),
            [
                (Section::Answer, 1, 50),
                (Section::Answer, 1, 0),
                (Section::Authority, 2, 0),
                (Section::Additional, 1, 86_150),
                // OPT: extended RCODE 1 and DO, as they were.
                (Section::Additional, 41, 0x0100_8000),
            ]
        );
        // Nothing but TTL fields changed.
        let changed: alloc::vec::Vec<usize> =
            (0..m.len()).filter(|&i| m[i] != original[i]).collect();
        assert_eq!(m.len(), original.len());
        let ttl_fields: alloc::vec::Vec<usize> = scan(&m)
            .unwrap()
            .records(&m)
            .filter(|r| r.rtype != 41)
            .flat_map(|r| r.rdata.start - 6..r.rdata.start - 2)
            .collect();
        assert!(!changed.is_empty());
        assert!(
            changed.iter().all(|i| ttl_fields.contains(i)),
            "{changed:?}"
        );
        // Age 0 changes nothing but the top-bit TTL (RFC 2181 §8: it is 0).
        let mut z = original.clone();
        reduce_ttls(&mut z, 0).unwrap();
        assert_eq!(ttls(&z)[0].2, 300);
        assert_eq!(ttls(&z)[1].2, 0);
        // A huge age: every TTL 0.
        let mut h = original.clone();
        reduce_ttls(&mut h, u32::MAX).unwrap();
        assert!(ttls(&h).iter().filter(|r| r.1 != 41).all(|r| r.2 == 0));
        // And the same walk through map_ttls.
        let mut c = original;
        map_ttls(&mut c, |_| 7).unwrap();
        assert!(ttls(&c).iter().filter(|r| r.1 != 41).all(|r| r.2 == 7));
    }

    /// The second answer's owner is a pointer into the first answer's TTL (the fuzzer's find): the
    /// walk reads the names as they were, so both TTLs are lowered and no other octet changes, even
    /// though the new TTL octets no longer spell that owner.
    #[test]
    fn reduce_ttls_walks_the_names_as_they_were() {
        let mut m = alloc::vec![0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03org\x00\x00\x01\x00\x01");
        // Answer 1 at 21: its TTL octets are 27..31, 0x3c000000.
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0x3c, 0, 0, 0, 0, 4, 192, 0, 2, 1]);
        // Answer 2: owner at offset 28 (a zero octet: the root), TTL 60.
        m.extend_from_slice(&[0xc0, 28, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2]);
        assert_eq!(
            ttls(&m)[..],
            [(Section::Answer, 1, 0x3c00_0000), (Section::Answer, 1, 60)]
        );
        let mut aged = m.clone();
        reduce_ttls(&mut aged, 1072).unwrap();
        let changed: alloc::vec::Vec<usize> = (0..m.len()).filter(|&i| m[i] != aged[i]).collect();
        // 0x3c000000 - 1072 = 0x3bfffbd0; 60 - 1072 saturates at 0.
        assert_eq!(changed, [27, 28, 29, 30, 46]);
        assert_eq!(aged[27..31], [0x3b, 0xff, 0xfb, 0xd0]);
        assert_eq!(aged[43..47], [0, 0, 0, 0]);
        // Octet 28 is now 0xff: the copy no longer scans (the engine refuses it, as any answer that
        // does not scan), but nothing outside the TTL fields was touched.
        assert!(scan(&aged).is_err());
    }

    #[test]
    fn reduce_ttls_leaves_malformed_input_unchanged() {
        let good = sectioned();
        // Every truncation, and every single-octet change: no panic, and an error leaves the bytes
        // exactly as they were.
        let mut inputs: alloc::vec::Vec<alloc::vec::Vec<u8>> =
            (0..good.len()).map(|n| good[..n].to_vec()).collect();
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x29, 0x3f, 0x40, 0xc0, 0xff] {
                let mut m = good.clone();
                m[i] = v;
                inputs.push(m);
            }
        }
        // A pointer forwards (to the additional name) instead of to the question.
        let mut fwd = good.clone();
        fwd[29..31].copy_from_slice(&[0xc0, 80]);
        inputs.push(fwd);
        let mut refused = 0;
        for m in inputs {
            let mut out = m.clone();
            if reduce_ttls(&mut out, 250).is_err() {
                assert_eq!(out, m);
                refused += 1;
            }
        }
        assert!(refused > good.len());
        let mut short = [0u8; 5];
        assert_eq!(reduce_ttls(&mut short, 1), Err(Error::ShortHeader));
    }
}
