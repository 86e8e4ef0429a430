//! Property tests of the wire codec against hickory-proto: generated well-formed queries and answers
//! go through `forward_query` / `to_client`, and what comes out is parsed again, by `scan` and by
//! hickory-proto, and compared with what went in (question, answer records, padding, truncation);
//! `name::encode` writes what hickory writes; `name::expand` and the record iterator read back what
//! hickory wrote, compression pointers included, and `expand` agrees with `skip` on any bytes; `scan`'s
//! shortcut for owner names that point at the question never accepts or places a record differently
//! from walking every name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use lanveil_core::wire::edns::{self, Ede};
use lanveil_core::wire::message::{scan, skip_record};
use lanveil_core::wire::name::{self, MAX_NAME_LEN};
use lanveil_core::wire::record::Section;
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

/// Dotted text of 1–9 labels, mostly valid, sometimes with an empty or a 64-octet label, or of 3–5
/// long labels around the 255-octet limit; one trailing dot or none.
fn dotted() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        20 => "[A-Za-z0-9_-]{1,20}",
        1 => Just(String::new()),
        1 => "[a-z]{64}",
    ];
    let labels = prop_oneof![
        3 => prop::collection::vec(label, 1..=9),
        2 => prop::collection::vec("[a-z]{50,63}", 3..=5),
    ];
    (labels, any::<bool>()).prop_map(|(labels, dot)| {
        let mut s = labels.join(".");
        if dot {
            s.push('.');
        }
        s
    })
}

/// Bytes after a 12-octet header: a run of names, each some labels and then a root label or a
/// compression pointer (mostly to the start of an earlier name or label, sometimes anywhere), with
/// now and then one octet flipped. Returns the bytes and the offsets where names start.
fn name_run() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let label = prop::collection::vec(b'a'..=b'z', 0..8);
    let name = (
        prop::collection::vec(label, 0..4),
        prop::option::of((any::<bool>(), any::<u16>())),
    );
    (
        prop::collection::vec(name, 1..8),
        prop::option::of((any::<usize>(), any::<u8>())),
    )
        .prop_map(|(names, flip)| {
            let mut m = vec![0u8; 12];
            let (mut starts, mut targets) = (Vec::new(), Vec::new());
            for (labels, end) in names {
                starts.push(m.len());
                let mut here = Vec::new();
                for l in labels.iter().filter(|l| !l.is_empty()) {
                    here.push(m.len());
                    m.push(l.len() as u8);
                    m.extend_from_slice(l);
                }
                match end {
                    Some((true, pick)) if !targets.is_empty() => {
                        let t: usize = targets[usize::from(pick) % targets.len()];
                        m.extend_from_slice(&(0xc000 | t as u16).to_be_bytes());
                    }
                    Some((_, any)) => m.extend_from_slice(&(0xc000 | (any % 200)).to_be_bytes()),
                    None => m.push(0),
                }
                targets.extend(here);
                targets.push(*starts.last().unwrap());
            }
            if let Some((at, b)) = flip {
                let at = 12 + at % (m.len() - 12);
                m[at] = b;
            }
            (m, starts)
        })
}

/// A name from a few fixed suffixes, so that hickory compresses owners and CNAME targets.
fn pooled_name() -> impl Strategy<Value = Name> {
    let tail = prop_oneof![
        Just("example.com."),
        Just("cdn.Example.com."),
        Just("example.net."),
        Just("."),
    ];
    (prop::option::of("[a-zA-Z0-9][a-zA-Z0-9-]{0,11}"), tail).prop_map(|(head, tail)| {
        let text = match (head, tail) {
            (Some(h), ".") => format!("{h}."),
            (Some(h), t) => format!("{h}.{t}"),
            (None, t) => t.to_string(),
        };
        Name::from_ascii(text).unwrap()
    })
}

fn hickory_record() -> impl Strategy<Value = Record> {
    let data = prop_oneof![
        any::<[u8; 4]>().prop_map(|a| RData::A(A::from(std::net::Ipv4Addr::from(a)))),
        any::<[u8; 16]>().prop_map(|a| RData::AAAA(AAAA::from(std::net::Ipv6Addr::from(a)))),
        pooled_name().prop_map(|n| RData::CNAME(CNAME(n))),
        prop::collection::vec("[ -~]{0,30}", 1..3).prop_map(|t| RData::TXT(TXT::new(t))),
    ];
    (pooled_name(), 0u32..=0x7fff_ffff, data)
        .prop_map(|(owner, ttl, data)| Record::from_rdata(owner, ttl, data))
}

/// A message hickory writes: one question, records in all three sections, EDNS or not.
fn hickory_message() -> impl Strategy<Value = Message> {
    (
        any::<u16>(),
        pooled_name(),
        prop::collection::vec(hickory_record(), 0..6),
        prop::collection::vec(hickory_record(), 0..3),
        prop::collection::vec(hickory_record(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(id, qname, an, ns, ar, edns)| {
            let mut m = Message::new();
            m.set_id(id);
            m.add_query(Query::query(qname, RecordType::A));
            m.add_answers(an);
            m.add_name_servers(ns);
            m.add_additionals(ar);
            if edns {
                m.set_edns(Edns::new());
            }
            m
        })
}

fn expanded(msg: &[u8], at: usize) -> Vec<u8> {
    let mut buf = [0u8; MAX_NAME_LEN];
    let (end, len) = name::expand(msg, at, &mut buf).unwrap();
    assert_eq!(
        name::skip(msg, at),
        Ok(end),
        "expand and skip end the name at the same place"
    );
    buf[..len].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `name::encode` accepts the labels hickory accepts as raw labels (lanveil's text has no
    /// escapes and no host-name syntax rules) and writes the same bytes, case kept.
    #[test]
    fn encode_agrees_with_hickory(text in dotted()) {
        let mut buf = [0u8; MAX_NAME_LEN];
        let ours = name::encode(&text, &mut buf).map(|len| buf[..len].to_vec());
        let labels = text.strip_suffix('.').unwrap_or(&text);
        let theirs = if labels.is_empty() {
            Name::root().to_bytes()
        } else {
            Name::from_labels(labels.split('.').map(str::as_bytes)).and_then(|n| n.to_bytes())
        };
        match (&ours, &theirs) {
            (Ok(o), Ok(t)) => prop_assert_eq!(o, t),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{:?}: ours {:?}, hickory {:?}", text, ours, theirs),
        }
    }

    /// Over what hickory writes (with its name compression), the record iterator yields every record
    /// with hickory's section, TYPE, CLASS and TTL, and `expand` gives hickory's owner names and
    /// CNAME targets.
    #[test]
    fn records_and_expand_read_what_hickory_writes(m in hickory_message()) {
        let wire = m.to_vec().unwrap();
        let s = scan(&wire).unwrap();
        let ours: Vec<_> = s.records(&wire).collect();
        let theirs: Vec<(Section, &Record)> = m
            .answers()
            .iter()
            .map(|r| (Section::Answer, r))
            .chain(m.name_servers().iter().map(|r| (Section::Authority, r)))
            .chain(m.additionals().iter().map(|r| (Section::Additional, r)))
            .collect();
        prop_assert_eq!(ours.len(), theirs.len() + usize::from(m.extensions().is_some()));
        prop_assert_eq!(s.answers(&wire).count(), m.answers().len());
        prop_assert_eq!(ours.last().map_or(s.question_end, |r| r.rdata.end), s.end);
        for (o, (section, t)) in ours.iter().zip(&theirs) {
            prop_assert_eq!(o.section, *section);
            prop_assert_eq!(expanded(&wire, o.owner), t.name().to_bytes().unwrap());
            prop_assert_eq!(o.rtype, u16::from(t.record_type()));
            prop_assert_eq!(o.class, u16::from(t.dns_class()));
            prop_assert_eq!(o.ttl, t.ttl());
            match t.data() {
                RData::CNAME(target) => {
                    prop_assert_eq!(expanded(&wire, o.rdata.start), target.0.to_bytes().unwrap());
                }
                data => prop_assert_eq!(&wire[o.rdata.clone()], &data.to_bytes().unwrap()[..]),
            }
        }
        if let Some(opt) = ours.get(theirs.len()) {
            prop_assert_eq!((opt.section, opt.rtype), (Section::Additional, 41));
            prop_assert_eq!(Some(opt.owner), s.opt.map(|o| o.start));
        }
        let q = s.question.unwrap();
        prop_assert_eq!(expanded(&wire, 12), m.queries()[0].name().to_bytes().unwrap());
        prop_assert_eq!(name::skip(&wire, 12), Ok(q.name_end));
    }

    /// On any bytes, at any offset: `expand` fails exactly where `skip` fails, and when it succeeds
    /// hickory reads the same name there (its pointer rule is looser than lanveil's, never stricter).
    #[test]
    fn expand_agrees_with_skip_and_hickory_on_any_bytes((bytes, starts) in name_run(), at in 12usize..80) {
        for at in starts.into_iter().chain([at]) {
            let mut buf = [0u8; MAX_NAME_LEN];
            let ours = name::expand(&bytes, at, &mut buf);
            prop_assert_eq!(ours.map(|(end, _)| end), name::skip(&bytes, at));
            if let Ok((end, len)) = ours {
                let mut d = BinDecoder::new(&bytes);
                d.read_slice(at).unwrap();
                let theirs = Name::read(&mut d).unwrap();
                prop_assert_eq!(&buf[..len], &theirs.to_bytes().unwrap()[..]);
                prop_assert_eq!(d.index(), end);
            }
        }
    }

    /// On what hickory writes, with one octet changed anywhere: whatever `scan` accepts, walking
    /// every owner name with `name::skip` accepts too and finds the same section ends (`scan` skips
    /// the walk for owners that are a pointer to the question).
    #[test]
    fn scan_places_sections_as_walking_every_name_does(
        m in hickory_message(), at in any::<prop::sample::Index>(), octet in any::<u8>(),
    ) {
        let mut wire = m.to_vec().unwrap();
        let i = at.index(wire.len());
        wire[i] = octet;
        if let Ok(s) = scan(&wire) {
            prop_assert_eq!(layout_by_walking(&wire), Some((s.answer_end, s.authority_end, s.end)));
        }
    }
}

/// The ends of the answer, authority and additional sections, the long way: every name walked.
fn layout_by_walking(msg: &[u8]) -> Option<(usize, usize, usize)> {
    let count = |i: usize| {
        Some(usize::from(u16::from_be_bytes([
            *msg.get(i)?,
            *msg.get(i + 1)?,
        ])))
    };
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = name::skip(msg, pos).ok()? + 4;
    }
    let mut ends = [0usize; 3];
    for (end, n) in ends.iter_mut().zip([an, ns, ar]) {
        for _ in 0..n {
            pos = skip_record(msg, pos).ok()?.0;
        }
        *end = pos;
    }
    Some((ends[0], ends[1], ends[2]))
}
