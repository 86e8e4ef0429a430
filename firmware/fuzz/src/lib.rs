//! Shared checks for lanveil's fuzz targets: an independent walk over a scanned DNS message, so each
//! target can assert invariants on the bytes (offsets, records, OPT options) rather than only "it did
//! not panic".

use lanveil_core::wire::header::{self, Header};
use lanveil_core::wire::message::{Scan, scan, skip_record};
use lanveil_core::wire::{TYPE_OPT, edns, name, record};

/// A big-endian u16 at `at` (panics if out of range: callers only read validated offsets).
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A big-endian u32 at `at`.
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One resource record as found by [`records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Offset of the owner name.
    pub start: usize,
    /// Offset of TYPE.
    pub fixed: usize,
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL as on the wire.
    pub ttl: u32,
    /// Offset of RDATA.
    pub rdata: usize,
    /// Offset just past the record.
    pub end: usize,
}

/// Every record after the question section, in wire order (answer, authority, additional).
/// Panics if the walk disagrees with `s` (it must not: `s` validated the same bytes).
pub fn records(msg: &[u8], s: &Scan) -> Vec<Rec> {
    let h = s.header;
    let total = usize::from(h.ancount) + usize::from(h.nscount) + usize::from(h.arcount);
    let mut out = Vec::with_capacity(total);
    let mut pos = s.question_end;
    for _ in 0..total {
        let fixed = name::skip(msg, pos).expect("scanned record owner");
        let (end, rtype, rdata) = skip_record(msg, pos).expect("scanned record");
        assert_eq!(rdata, fixed + 10);
        out.push(Rec {
            start: pos,
            fixed,
            rtype,
            class: be16(msg, fixed + 2),
            ttl: be32(msg, fixed + 4),
            rdata,
            end,
        });
        pos = end;
    }
    assert_eq!(pos, s.end, "record walk ends where scan ends");
    // The core's record iterator yields the same records, in the same sections.
    let theirs: Vec<record::Record> = s.records(msg).collect();
    assert_eq!(
        theirs.len(),
        out.len(),
        "record iterator yields every record"
    );
    for (i, (r, t)) in out.iter().zip(&theirs).enumerate() {
        let section = if i < usize::from(h.ancount) {
            record::Section::Answer
        } else if i < usize::from(h.ancount) + usize::from(h.nscount) {
            record::Section::Authority
        } else {
            record::Section::Additional
        };
        assert_eq!(
            (t.section, t.owner, t.rtype, t.class, t.ttl, t.rdata.clone()),
            (section, r.start, r.rtype, r.class, r.ttl, r.rdata..r.end)
        );
    }
    assert_eq!(s.answers(msg).count(), usize::from(h.ancount));
    out
}

/// The `(code, data)` options of the message's OPT record (empty without OPT).
pub fn opt_options<'a>(msg: &'a [u8], s: &Scan) -> Vec<(u16, &'a [u8])> {
    s.opt
        .map(|o| edns::options(&msg[o.rdata_start..o.end]).collect())
        .unwrap_or_default()
}

/// Asserts every structural promise of a successful [`scan`] of `msg`.
pub fn check_scan(msg: &[u8], s: &Scan) {
    let h = Header::parse(msg).expect("scan implies a header");
    assert_eq!(s.header, h);
    assert!(header::LEN <= s.question_end);
    assert!(s.question_end <= s.answer_end, "{s:?}");
    assert!(s.answer_end <= s.authority_end, "{s:?}");
    assert!(s.authority_end <= s.end, "{s:?}");
    assert!(s.end <= msg.len(), "{s:?}");
    assert_eq!(s.question.is_some(), h.qdcount > 0);
    if h.qdcount == 0 {
        assert_eq!(s.question_end, header::LEN);
    }
    if let Some(q) = s.question {
        assert!(header::LEN < q.name_end && q.name_end + 4 <= s.question_end);
        assert_eq!(q.qtype, be16(msg, q.name_end));
        assert_eq!(q.qclass, be16(msg, q.name_end + 2));
        // The first QNAME can never be compressed: a pointer would have to point into the header.
        assert_eq!(name::skip(msg, header::LEN), Ok(q.name_end));
        assert!(q.name_end - header::LEN <= name::MAX_NAME_LEN);
    }
    let recs = records(msg, s);
    let an = usize::from(h.ancount);
    let ns = usize::from(h.nscount);
    let answer_end = recs
        .get(..an)
        .and_then(|r| r.last())
        .map_or(s.question_end, |r| r.end);
    assert_eq!(answer_end, s.answer_end);
    let auth_end = recs
        .get(..an + ns)
        .and_then(|r| r.last())
        .map_or(s.question_end, |r| r.end);
    assert_eq!(auth_end, s.authority_end);
    let opts: Vec<(usize, &Rec)> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.rtype == TYPE_OPT)
        .collect();
    assert!(opts.len() <= 1, "at most one OPT");
    match (s.opt, opts.first()) {
        (None, None) => {}
        (Some(o), Some(&(i, r))) => {
            assert!(i >= an + ns, "OPT only in the additional section");
            assert_eq!(usize::from(o.index), i - an - ns);
            assert_eq!((o.start, o.end, o.rdata_start), (r.start, r.end, r.rdata));
            assert_eq!(msg[o.start], 0, "OPT owned by the root");
            assert_eq!(o.udp_size, r.class);
            assert_eq!(
                u32::from(o.ext_rcode) << 24 | u32::from(o.version) << 16 | u32::from(o.flags),
                r.ttl
            );
            assert_eq!(edns::check_options(&msg[o.rdata_start..o.end]), Ok(()));
            let walked: usize = edns::options(&msg[o.rdata_start..o.end])
                .map(|(_, d)| 4 + d.len())
                .sum();
            assert_eq!(walked, o.end - o.rdata_start, "options fill the RDATA");
        }
        (a, b) => panic!("OPT disagreement: scan {a:?}, walk {b:?}"),
    }
    // Bytes after `end` are ignored: the message cut there scans the same.
    if s.end < msg.len() {
        assert_eq!(scan(&msg[..s.end]), Ok(*s));
    }
}

/// Scans `msg` and checks it; panics with `what` if it does not scan.
pub fn must_scan(msg: &[u8], what: &str) -> Scan {
    match scan(msg) {
        Ok(s) => {
            check_scan(msg, &s);
            s
        }
        Err(e) => panic!("{what} does not scan: {e:?}\n{}", hex(msg)),
    }
}

/// Lower-case hex, for failure messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A little reader for deriving parameters from the front of a fuzz input; runs out gracefully
/// (zeros), so every input is usable.
#[derive(Debug)]
pub struct Take<'a>(pub &'a [u8]);

impl<'a> Take<'a> {
    /// One byte (0 if exhausted).
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}
