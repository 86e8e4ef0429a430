//! `rewrite::forward_query` on every input that scans with QDCOUNT 1: the upstream form scans, carries
//! the question byte for byte, is padded to a multiple of 128 octets and has exactly one OPT whose only
//! option is zero padding (nothing else of the client leaves the house).
#![no_main]

use lanveil_core::wire::header::{self, Header};
use lanveil_core::wire::message::scan;
use lanveil_core::wire::{EDNS_UDP_SIZE, edns, rewrite};
use lanveil_fuzz::{Take, must_scan, opt_options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two leading bytes choose the upstream ID; the rest is the client's message.
    let mut t = Take(data);
    let id = t.u16();
    let query = t.rest();
    let Ok(s) = scan(query) else { return };
    if s.header.qdcount != 1 {
        return;
    }
    // The engine's buffer size.
    let mut out = vec![0xa5u8; s.question_end + rewrite::QUERY_OVERHEAD];
    let n = rewrite::forward_query(query, &s, id, &mut out).expect("forward_query fits its buffer");
    let out = &out[..n];
    let f = must_scan(out, "forwarded query");
    assert_eq!(f.end, n, "no trailing bytes");
    assert_eq!(n % edns::QUERY_PAD_BLOCK, 0, "RFC 8467 block padding");
    let h = f.header;
    assert_eq!(h.id, id);
    assert_eq!(h.flags, Header::forwarded_query_flags(s.header.flags));
    assert_eq!((h.qdcount, h.ancount, h.nscount, h.arcount), (1, 0, 0, 1));
    assert_eq!(f.question_end, s.question_end);
    assert_eq!(
        &out[header::LEN..f.question_end],
        &query[header::LEN..s.question_end]
    );
    assert_eq!(f.question, s.question);
    let o = f.opt.expect("lanveil's OPT");
    assert_eq!(
        (o.index, o.udp_size, o.ext_rcode, o.version),
        (0, EDNS_UDP_SIZE, 0, 0)
    );
    let client_do = s.opt.is_some_and(|o| o.dnssec_ok());
    assert_eq!(o.flags, if client_do { edns::FLAG_DO } else { 0 });
    let opts = opt_options(out, &f);
    assert_eq!(opts.len(), 1, "exactly one option");
    assert_eq!(opts[0].0, edns::OPTION_PADDING);
    assert!(opts[0].1.iter().all(|&b| b == 0), "padding is zeros");
});
