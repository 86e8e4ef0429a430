//! The resource records of a scanned message, one at a time, without copying.

use core::ops::Range;

use super::be16;
use super::message::{Scan, skip_record};

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
}
