//! `policy::Policy::decide` + `answer` on every scanned query, for configurations and client addresses
//! derived from the input: never panic, every `Answer` verdict can be written in `MAX_ANSWER_LEN`,
//! and the answer scans, keeps the ID and echoes the question.
#![no_main]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lanveil_core::policy::{LocalAnswer, MAX_ANSWER_LEN, Policy, PolicyConfig, Verdict};
use lanveil_core::wire::header::{self, rcode};
use lanveil_core::wire::message::scan;
use lanveil_fuzz::{Take, must_scan};
use libfuzzer_sys::fuzz_target;

const DOMAINS: [&str; 5] = [
    "lan",
    "home.example",
    "Example.COM.",
    "a.b.c.d.e",
    "resolver.arpa",
];

fuzz_target!(|data: &[u8]| {
    // Prefix: configuration selector (1), client selector (1) + 16 address bytes, then the query.
    let mut t = Take(data);
    let sel = t.u8();
    let csel = t.u8();
    let mut a = [0u8; 16];
    a.copy_from_slice(&{
        let b = t.bytes(16);
        let mut x = [0u8; 16];
        x[..b.len()].copy_from_slice(b);
        x
    });
    let query = t.rest();
    let mut config = PolicyConfig {
        local_zones: sel & 1 != 0,
        local_forward: sel & 2 != 0,
        canary_firefox: sel & 4 != 0,
        canary_icloud: sel & 8 != 0,
        local_domain: (sel >> 4 != 0)
            .then(|| DOMAINS[usize::from(sel >> 4) % DOMAINS.len()].into()),
        ..PolicyConfig::default()
    };
    if sel >> 4 == 15 {
        config.allow.clear(); // refuses everyone
    }
    let policy = Policy::new(&config).expect("fixed domains are valid");
    let client = match csel % 3 {
        0 => None,
        1 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
        _ => Some(IpAddr::V6(Ipv6Addr::from(a))),
    };
    let Ok(s) = scan(query) else { return };
    let verdict = policy.decide(client, query, &s);
    if !policy.allowed(client) {
        assert_eq!(verdict, Verdict::Answer(LocalAnswer::Refused));
    }
    let Verdict::Answer(answer) = verdict else {
        assert!(s.question.is_some(), "forwarded without a question");
        return;
    };
    let mut out = vec![0xa5u8; MAX_ANSWER_LEN];
    let n = policy
        .answer(query, &s, &answer, &mut out)
        .unwrap_or_else(|e| panic!("no answer for {answer:?}: {e:?}"));
    let out = &out[..n];
    let f = must_scan(out, "policy answer");
    assert_eq!(f.end, n);
    assert_eq!(f.header.id, s.header.id);
    assert!(f.header.is_response());
    assert_eq!(f.opt.is_some(), s.opt.is_some());
    let want_rcode = match answer {
        LocalAnswer::Refused => rcode::REFUSED,
        LocalAnswer::FormErr => rcode::FORMERR,
        LocalAnswer::NxDomain(_) => rcode::NXDOMAIN,
        LocalAnswer::NoData(_) | LocalAnswer::Loopback => rcode::NOERROR,
    };
    assert_eq!(f.header.rcode_low(), want_rcode);
    if let (Some(q), 1) = (s.question, f.header.qdcount) {
        let fq = f.question.expect("question");
        assert_eq!(
            &out[header::LEN..fq.name_end + 4],
            &query[header::LEN..q.name_end + 4]
        );
    }
});
