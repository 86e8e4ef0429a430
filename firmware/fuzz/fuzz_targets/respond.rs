//! `respond::respond` on any input with a readable header, with and without its scan: never fails in
//! the engine's buffer, and the answer scans, echoes ID, opcode and (single) question, carries the
//! RCODE, and has an OPT exactly when the query had one.
#![no_main]

use lanveil_core::wire::edns::{self, Ede};
use lanveil_core::wire::header::{self, Header, rcode};
use lanveil_core::wire::message::scan;
use lanveil_core::wire::respond::{MAX_LOCAL_ANSWER, respond};
use lanveil_core::wire::{EDNS_UDP_SIZE, Error};
use lanveil_fuzz::{Take, must_scan, opt_options};
use libfuzzer_sys::fuzz_target;

const RCODES: [u16; 7] = [
    rcode::NOERROR,
    rcode::FORMERR,
    rcode::SERVFAIL,
    rcode::NXDOMAIN,
    rcode::NOTIMP,
    rcode::REFUSED,
    rcode::BADVERS,
];
const TEXT: &str = "upstream certificate rejected: SPKI pin mismatch; and then some more words so that \
    the text runs past the 128-octet cap on Extended DNS Error texts ..........................";

fuzz_target!(|data: &[u8]| {
    // Prefix: selector (RCODE, with/without EDE and its length), then the query.
    let mut t = Take(data);
    let sel = t.u8();
    let query = t.rest();
    let rc = RCODES[usize::from(sel % 8).min(RCODES.len() - 1)];
    let ede = (sel & 0x08 != 0).then(|| Ede {
        code: u16::from(sel >> 4),
        text: &TEXT[..(usize::from(sel >> 4) * 13).min(TEXT.len())],
    });
    let s = scan(query).ok();
    for with_scan in [s.as_ref(), None] {
        let mut out = vec![0xa5u8; MAX_LOCAL_ANSWER];
        let r = respond(query, with_scan, rc, ede, &mut out);
        if query.len() < header::LEN {
            assert_eq!(r, Err(Error::ShortHeader));
            return;
        }
        let n = r.expect("respond fits MAX_LOCAL_ANSWER");
        let out = &out[..n];
        let f = must_scan(out, "local answer");
        assert_eq!(f.end, n);
        let qh = Header::parse(query).expect("header");
        let h = f.header;
        assert_eq!(h.id, qh.id);
        assert_eq!(h.flags, Header::response_flags(qh.flags, rc));
        assert!(h.is_response() && h.opcode() == qh.opcode());
        let echoed = with_scan.is_some_and(|s| s.header.qdcount == 1);
        assert_eq!(h.qdcount, u16::from(echoed));
        assert_eq!((h.ancount, h.nscount), (0, 0));
        if let (true, Some(s)) = (echoed, with_scan) {
            assert_eq!(
                &out[header::LEN..f.question_end],
                &query[header::LEN..s.question_end]
            );
        } else {
            assert_eq!(f.question_end, header::LEN);
        }
        let query_opt = with_scan.and_then(|s| s.opt);
        assert_eq!(f.opt.is_some(), query_opt.is_some());
        if let (Some(o), Some(q)) = (f.opt, query_opt) {
            assert_eq!(f.rcode(), rc);
            assert_eq!((o.udp_size, o.version), (EDNS_UDP_SIZE, 0));
            assert_eq!(o.dnssec_ok(), q.dnssec_ok());
            let opts = opt_options(out, &f);
            match ede {
                Some(e) => {
                    assert_eq!(opts.len(), 1);
                    assert_eq!(opts[0].0, edns::OPTION_EDE);
                    assert_eq!(&opts[0].1[..2], &e.code.to_be_bytes());
                }
                None => assert!(opts.is_empty()),
            }
        } else {
            assert_eq!(h.rcode_low(), rc & 0x000f);
        }
    }
});
