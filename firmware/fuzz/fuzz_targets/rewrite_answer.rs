//! `rewrite::to_client` on every input that scans as a response with one question (what the engine
//! passes it), for a client view derived from the input: the result scans, carries the client's ID and
//! the upstream's question, keeps the records it keeps byte for byte, has an OPT exactly when the
//! client used EDNS (holding only EDEs), and fits the client's limit unless it is the question-only
//! truncated form.
#![no_main]

use lanveil_core::wire::EDNS_UDP_SIZE;
use lanveil_core::wire::edns::{self, Ede};
use lanveil_core::wire::header::{self, Header, rcode};
use lanveil_core::wire::message::scan;
use lanveil_core::wire::rewrite::{ClientView, to_client};
use lanveil_fuzz::{Take, hex, must_scan, opt_options};
use libfuzzer_sys::fuzz_target;

const TEXT: &str = "lanveil: stale answer, upstream unreachable; this text is deliberately longer than \
    the 128 octets an EDE text may take so that clamping is exercised too .........................";

fuzz_target!(|data: &[u8]| {
    // Prefix: client ID (2), selector (1: EDNS mode, extra EDE, its text length), max_len (2).
    let mut t = Take(data);
    let id = t.u16();
    let sel = t.u8();
    let max_len = usize::from(t.u16());
    let resp = t.rest();
    let Ok(s) = scan(resp) else { return };
    if !s.header.is_response() || s.header.qdcount != 1 {
        return;
    }
    let client = ClientView {
        id,
        edns: match sel % 3 {
            0 => None,
            1 => Some(false),
            _ => Some(true),
        },
        max_len,
    };
    let extra = (sel & 0x04 != 0).then(|| Ede {
        code: edns::ede::STALE_ANSWER,
        text: &TEXT[..(usize::from(sel >> 3) * 8).min(TEXT.len())],
    });
    let extra_len = extra.map_or(0, |e| e.option_len());
    // The engine's buffer size (engine::answer_from).
    let mut out = vec![0xa5u8; resp.len() + 16 + extra_len];
    let n =
        to_client(resp, &s, &client, extra, &mut out).expect("to_client fits the engine's buffer");
    let out = &out[..n];
    let f = must_scan(out, "client answer");
    assert_eq!(f.end, n, "no trailing bytes");
    let h = f.header;
    assert_eq!(h.id, id);
    assert_eq!(h.qdcount, 1);
    assert_eq!(f.question_end, s.question_end);
    assert_eq!(
        &out[header::LEN..f.question_end],
        &resp[header::LEN..s.question_end]
    );

    // Everything before lanveil's OPT is the upstream's bytes (header aside).
    let body_end = s.opt.map_or(s.end, |o| o.start);
    let records_end = f.opt.map_or(f.end, |o| o.start);
    assert!(records_end <= body_end);
    assert_eq!(
        &out[header::LEN..records_end],
        &resp[header::LEN..records_end]
    );
    let truncated_to_question = records_end == s.question_end && s.question_end < s.authority_end;
    if truncated_to_question {
        assert!(h.tc(), "question-only answer sets TC");
        assert_eq!((h.ancount, h.nscount), (0, 0));
    } else {
        assert_eq!((h.ancount, h.nscount), (s.header.ancount, s.header.nscount));
        assert_eq!(
            (f.answer_end, f.authority_end),
            (s.answer_end, s.authority_end)
        );
    }
    if h.tc() && !s.header.tc() {
        assert_eq!(
            records_end, s.question_end,
            "TC is added only with the question-only form"
        );
    }

    // Flags: the upstream's, with TC as decided and the RCODE kept (or SERVFAIL when an extended
    // RCODE cannot be expressed without EDNS).
    let ext = s.opt.map_or(0, |o| o.ext_rcode);
    let want_low = if client.edns.is_none() && ext != 0 {
        rcode::SERVFAIL
    } else {
        s.header.rcode_low()
    };
    assert_eq!(
        h.flags,
        Header::with_tc((s.header.flags & !0x000f) | want_low, h.tc())
    );

    // OPT iff the client used EDNS; only EDEs inside: the upstream's (well-sized) ones, then ours.
    assert_eq!(f.opt.is_some(), client.edns.is_some());
    let mut want_opts: Vec<(u16, Vec<u8>)> = opt_options(resp, &s)
        .into_iter()
        .filter(|(c, d)| *c == edns::OPTION_EDE && d.len() <= 2 + edns::MAX_EDE_TEXT)
        .map(|(c, d)| (c, d.to_vec()))
        .collect();
    let ours = extra.map(|e| {
        let mut d = e.code.to_be_bytes().to_vec();
        d.extend_from_slice(&e.text.as_bytes()[..e.text.len().min(edns::MAX_EDE_TEXT)]);
        (edns::OPTION_EDE, d)
    });
    let len_of = |v: &[(u16, Vec<u8>)]| v.iter().map(|(_, d)| 4 + d.len()).sum::<usize>();
    if let Some(o) = &ours {
        want_opts.push(o.clone());
    }
    let full_ede_len = len_of(&want_opts);
    if client.edns.is_some() && records_end + edns::OPT_FIXED_LEN + len_of(&want_opts) > max_len {
        // Over the limit: the upstream's EDEs give way, then ours.
        want_opts = ours.into_iter().collect();
        if records_end + edns::OPT_FIXED_LEN + len_of(&want_opts) > max_len {
            want_opts.clear();
        }
    }
    let ede_len: usize = len_of(&want_opts);
    if let (Some(o), Some(client_do)) = (f.opt, client.edns) {
        assert_eq!(
            usize::from(o.index),
            usize::from(h.arcount) - 1,
            "OPT is the last record"
        );
        assert_eq!(
            (o.udp_size, o.version, o.ext_rcode),
            (EDNS_UDP_SIZE, 0, ext)
        );
        let upstream_do = s.opt.is_some_and(|o| o.dnssec_ok());
        assert_eq!(
            o.flags,
            if client_do && upstream_do {
                edns::FLAG_DO
            } else {
                0
            }
        );
        let got: Vec<(u16, Vec<u8>)> = opt_options(out, &f)
            .into_iter()
            .map(|(c, d)| (c, d.to_vec()))
            .collect();
        assert_eq!(got, want_opts);
    }

    // Size: everything when it fits; never more than the client's limit except the question-only
    // form, which may exceed it only if the bare question and lanveil's OPT do not fit.
    let opt_len = if client.edns.is_some() {
        edns::OPT_FIXED_LEN + full_ede_len
    } else {
        0
    };
    let _ = ede_len;
    if body_end + opt_len <= max_len {
        assert_eq!(records_end, body_end, "everything fits: nothing dropped");
        assert_eq!(h.tc(), s.header.tc());
    }
    // Never over the limit, except a limit smaller than the bare question (+ an empty OPT): the engine
    // never asks for that (≥ 512), but the function must still produce the smallest valid answer.
    let bare = s.question_end
        + if client.edns.is_some() {
            edns::OPT_FIXED_LEN
        } else {
            0
        };
    assert!(
        n <= max_len.max(bare),
        "{n}-octet answer for a {max_len}-octet client limit; input {}",
        hex(data)
    );
    if records_end == s.question_end && s.authority_end > s.question_end {
        assert!(h.tc(), "answer or authority records dropped without TC");
    }
});
