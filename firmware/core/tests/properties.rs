//! Property tests of the wire rewrites: generated well-formed queries and answers go through
//! `forward_query` / `to_client`, and what comes out is parsed again, by `scan` and by hickory-proto,
//! and compared with what went in (question, answer records, padding, truncation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hickory_proto::op::Message;
use lanveil_core::wire::edns::{self, Ede};
use lanveil_core::wire::message::scan;
use lanveil_core::wire::rewrite::{ClientView, QUERY_OVERHEAD, forward_query, to_client};
use lanveil_core::wire::{EDNS_UDP_SIZE, TYPE_OPT, header};
use proptest::prelude::*;

/// A wire-format name of 1–5 random labels (letters, digits, '-', '_' and a few odd octets).
fn wire_name() -> impl Strategy<Value = Vec<u8>> {
    let label = prop::collection::vec(
        prop_oneof![8 => b'a'..=b'z', 2 => b'0'..=b'9', 1 => Just(b'-'), 1 => Just(b'_'), 1 => any::<u8>()],
        1..=40,
    );
    prop::collection::vec(label, 1..=5).prop_map(|labels| {
        let mut w = Vec::new();
        for l in labels {
            if w.len() + l.len() + 2 > 255 {
                break;
            }
            w.push(l.len() as u8);
            w.extend_from_slice(&l);
        }
        w.push(0);
        w
    })
}

/// An OPT record: (UDP size, DO, options).
type OptSpec = (u16, bool, Vec<(u16, Vec<u8>)>);

fn opt_spec() -> impl Strategy<Value = OptSpec> {
    let option = (any::<u16>(), prop::collection::vec(any::<u8>(), 0..24));
    (
        any::<u16>(),
        any::<bool>(),
        prop::collection::vec(option, 0..4),
    )
}

fn put_opt(m: &mut Vec<u8>, (size, dnssec_ok, options): &OptSpec) {
    m.extend_from_slice(&[0, 0, 41]);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(&[0, 0, if *dnssec_ok { 0x80 } else { 0 }, 0]);
    let rdlen: usize = options.iter().map(|(_, d)| 4 + d.len()).sum();
    m.extend_from_slice(&(rdlen as u16).to_be_bytes());
    for (code, data) in options {
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(data);
    }
}

/// A client query: ID, flag bits, QNAME, QTYPE, QCLASS, optional EDNS.
fn query() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        any::<u16>(),
        wire_name(),
        any::<u16>(),
        prop_oneof![Just(1u16), Just(3), Just(255), any::<u16>()],
        prop::option::of(opt_spec()),
    )
        .prop_map(|(id, flags, qname, qtype, qclass, opt)| {
            let mut m = id.to_be_bytes().to_vec();
            // A query (QR clear), opcode QUERY, any of the other bits.
            m.extend_from_slice(&(flags & 0x07ff).to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
            m.extend_from_slice(&qname);
            m.extend_from_slice(&qtype.to_be_bytes());
            m.extend_from_slice(&qclass.to_be_bytes());
            if let Some(o) = &opt {
                put_opt(&mut m, o);
            }
            m
        })
}

/// One record's (TYPE, TTL, RDATA) with the owner compressed to the QNAME.
fn record() -> impl Strategy<Value = (u16, u32, Vec<u8>)> {
    let ttl = 0u32..=0x7fff_ffff;
    prop_oneof![
        (ttl.clone(), any::<[u8; 4]>()).prop_map(|(t, a)| (1u16, t, a.to_vec())),
        (ttl.clone(), any::<[u8; 16]>()).prop_map(|(t, a)| (28u16, t, a.to_vec())),
        (
            ttl.clone(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 1..4)
        )
            .prop_map(|(t, strings)| {
                let mut d = Vec::new();
                for s in strings {
                    d.push(s.len() as u8);
                    d.extend_from_slice(&s);
                }
                (16u16, t, d)
            }),
        // CNAME: a label in front of the question name, through a compression pointer.
        (ttl, prop::collection::vec(b'a'..=b'z', 1..10)).prop_map(|(t, l)| {
            let mut d = vec![l.len() as u8];
            d.extend_from_slice(&l);
            d.extend_from_slice(&[0xc0, 0x0c]);
            (5u16, t, d)
        }),
    ]
}

/// (answer, additional records, OPT with EDE options) for an answer to `query`.
type AnswerSpec = (
    Vec<(u16, u32, Vec<u8>)>,
    Vec<(u16, u32, Vec<u8>)>,
    Option<(bool, Vec<(u16, String)>)>,
    u8,
);

fn answer_spec() -> impl Strategy<Value = AnswerSpec> {
    let ede = (any::<u16>(), "[ -~]{0,40}");
    (
        prop::collection::vec(record(), 0..12),
        prop::collection::vec(record(), 0..4),
        prop::option::of((any::<bool>(), prop::collection::vec(ede, 0..3))),
        0u8..=5,
    )
}

fn build_answer(q: &[u8], (answers, additional, opt, rcode): &AnswerSpec) -> Vec<u8> {
    let s = scan(q).unwrap();
    let mut r = q[..2].to_vec();
    r.extend_from_slice(&[0x81, 0x80 | rcode]);
    r.extend_from_slice(&[
        0,
        1,
        0,
        answers.len() as u8,
        0,
        0,
        0,
        (additional.len() + usize::from(opt.is_some())) as u8,
    ]);
    r.extend_from_slice(&q[header::LEN..s.question_end]);
    for (t, ttl, d) in answers.iter().chain(additional) {
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(d.len() as u16).to_be_bytes());
        r.extend_from_slice(d);
    }
    if let Some((dnssec_ok, edes)) = opt {
        let options = edes
            .iter()
            .map(|(code, text)| {
                let mut d = code.to_be_bytes().to_vec();
                d.extend_from_slice(text.as_bytes());
                (edns::OPTION_EDE, d)
            })
            .chain([(edns::OPTION_PADDING, vec![0; 7])])
            .collect();
        put_opt(&mut r, &(1232, *dnssec_ok, options));
    }
    r
}

fn client_view() -> impl Strategy<Value = ClientView> {
    (
        any::<u16>(),
        prop::option::of(any::<bool>()),
        prop_oneof![Just(512usize), Just(1232), Just(65535), 512usize..=4096],
    )
        .prop_map(|(id, edns, max_len)| ClientView { id, edns, max_len })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// forward_query → scan keeps the question byte for byte, pads to 128, and carries only padding.
    #[test]
    fn forwarded_query_keeps_question_and_pads(q in query(), id in any::<u16>()) {
        let s = scan(&q).unwrap();
        let mut out = vec![0u8; s.question_end + QUERY_OVERHEAD];
        let n = forward_query(&q, &s, id, &mut out).unwrap();
        let out = &out[..n];
        prop_assert_eq!(n % 128, 0);
        let f = scan(out).unwrap();
        prop_assert_eq!(f.end, n);
        prop_assert_eq!(&out[header::LEN..f.question_end], &q[header::LEN..s.question_end]);
        prop_assert_eq!((f.header.id, f.header.qdcount, f.header.ancount, f.header.nscount, f.header.arcount), (id, 1, 0, 0, 1));
        let o = f.opt.unwrap();
        prop_assert_eq!(o.udp_size, EDNS_UDP_SIZE);
        prop_assert_eq!(o.dnssec_ok(), s.opt.is_some_and(|o| o.dnssec_ok()));
        let opts: Vec<_> = edns::options(&out[o.rdata_start..o.end]).collect();
        prop_assert_eq!(opts.len(), 1);
        prop_assert_eq!(opts[0].0, edns::OPTION_PADDING);
        prop_assert!(opts[0].1.iter().all(|&b| b == 0));
        // hickory reads the output, and the same question as in the input when it can read the input
        // (it rejects some option contents, e.g. an empty ECS, that lanveil treats as opaque and drops).
        let theirs_out = Message::from_vec(out).unwrap();
        if let Ok(theirs_in) = Message::from_vec(&q) {
            prop_assert_eq!(theirs_in.queries(), theirs_out.queries());
        }
        prop_assert_eq!(theirs_out.extensions().as_ref().map(|e| e.max_payload()), Some(EDNS_UDP_SIZE));
    }

    /// to_client keeps question and answer records intact when they fit, and truncates correctly
    /// (additional records first, else the question alone with TC) when they do not.
    #[test]
    fn client_answer_keeps_question_and_answers(q in query(), spec in answer_spec(), view in client_view(), stale in any::<bool>()) {
        let r = build_answer(&q, &spec);
        let s = scan(&r).unwrap();
        let extra = stale.then_some(Ede { code: edns::ede::STALE_ANSWER, text: "upstream timed out" });
        let mut out = vec![0u8; r.len() + 16 + extra.map_or(0, |e| e.option_len())];
        let n = to_client(&r, &s, &view, extra, &mut out).unwrap();
        let out = &out[..n];
        let f = scan(out).unwrap();
        prop_assert_eq!(f.end, n);
        prop_assert_eq!(f.header.id, view.id);
        prop_assert_eq!(&out[header::LEN..f.question_end], &r[header::LEN..s.question_end]);

        let theirs_in = Message::from_vec(&r).unwrap();
        let theirs_out = Message::from_vec(out).unwrap();
        prop_assert_eq!(theirs_in.queries(), theirs_out.queries());
        prop_assert_eq!(theirs_out.id(), view.id);
        prop_assert_eq!(theirs_out.extensions().is_some(), view.edns.is_some());

        let ede_len: usize = spec.2.as_ref().map_or(0, |(_, e)| e.iter().map(|(_, t)| 6 + t.len()).sum())
            + extra.map_or(0, |e| e.option_len());
        let opt_len = if view.edns.is_some() { edns::OPT_FIXED_LEN + ede_len } else { 0 };
        let body_end = s.opt.map_or(s.end, |o| o.start);
        if body_end + opt_len <= view.max_len {
            // Everything fits: same answers and additional records (OPT aside), no TC.
            prop_assert!(!theirs_out.truncated());
            prop_assert_eq!(theirs_in.answers(), theirs_out.answers());
            prop_assert_eq!(theirs_in.additionals(), theirs_out.additionals());
        } else if s.authority_end + opt_len <= view.max_len {
            // Additional records dropped first; answers intact, no TC.
            prop_assert!(!theirs_out.truncated());
            prop_assert_eq!(theirs_in.answers(), theirs_out.answers());
            prop_assert!(theirs_out.additionals().len() < theirs_in.additionals().len());
            prop_assert!(n <= view.max_len);
        } else {
            // Question alone, TC set (the client retries over TCP).
            prop_assert!(theirs_out.truncated());
            prop_assert!(theirs_out.answers().is_empty());
            prop_assert!(theirs_out.additionals().is_empty());
        }
        if n > view.max_len {
            prop_assert!(theirs_out.truncated() && theirs_out.answers().is_empty());
        }
        // Only EDEs travel in lanveil's OPT; the upstream's padding never reaches the client.
        if let Some(o) = f.opt {
            prop_assert!(edns::options(&out[o.rdata_start..o.end]).all(|(c, _)| c == edns::OPTION_EDE));
            prop_assert_eq!(f.rcode(), s.rcode());
        }
        prop_assert!(f.opt.is_none_or(|o| out[o.start + 1..o.start + 3] == TYPE_OPT.to_be_bytes()));
    }
}
