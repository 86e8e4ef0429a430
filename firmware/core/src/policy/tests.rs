//! The policy's tests: rules against a linear reference walk (proptest), every zone kind, the ACL,
//! and the answers parsed by hickory-proto.

use super::*;
use crate::wire::message::scan;
use LocalAnswer::{Loopback, NoData, NxDomain, Refused};
use alloc::{string::ToString, vec};
use core::cmp::Reverse;
use hickory_proto::op::{Message, ResponseCode as Rc};
use hickory_proto::rr::{RData, rdata::opt::EdnsOption};
use proptest::prelude::{Strategy, any, prop, prop_oneof};

const LAN: &str = "192.168.1.10";
const WAN: &str = "2001:db8::1";
const NX: Verdict = Verdict::Answer(NxDomain(None));
const ZONE_SAMPLES: &str = "1.0.0.10.in-addr.arpa 1.2.16.172.in-addr.arpa 9.31.172.in-addr.arpa \
    1.1.168.192.in-addr.arpa 0.in-addr.arpa 1.0.0.127.in-addr.arpa 1.1.254.169.in-addr.arpa \
    7.2.0.192.in-addr.arpa 7.100.51.198.in-addr.arpa 7.113.0.203.in-addr.arpa \
    255.255.255.255.in-addr.arpa 1.1.64.100.in-addr.arpa 1.1.127.100.in-addr.arpa \
    1.2.d.f.ip6.arpa 1.8.e.f.ip6.arpa 9.e.f.ip6.arpa 0.a.e.f.ip6.arpa 1.b.e.f.ip6.arpa \
    1.8.b.d.0.1.0.0.2.ip6.arpa \
    0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa \
    1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa";
const NEAR_MISSES: &str = "1.1.15.172.in-addr.arpa 1.1.32.172.in-addr.arpa \
    1.1.63.100.in-addr.arpa 1.128.100.in-addr.arpa 172.in-addr.arpa 1.1.1.1.in-addr.arpa \
    254.255.255.255.in-addr.arpa in-addr.arpa arpa . c.e.f.ip6.arpa e.f.ip6.arpa ip6.arpa \
    1.c.f.ip6.arpa 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa \
    2.0.0.2.ip6.arpa 10.in-addr.arpa.example.com evil-lan.com notlan.com xlan.com \
    lan.example.com home.arpa.evil.com myhome.arpa local.example nothome.example \
    localhost.example.com resolver.arpa.example mask.icloud.com.evil xmask.icloud.com \
    x.mask.icloud.com icloud.com application-dns.net example.com";
const DEFAULT_IN: &str = "127.0.0.1 10.255.255.255 172.16.0.0 172.31.255.255 100.64.0.0 \
    100.127.255.255 169.254.9.9 192.168.255.255 ::1 fd12::1 fc00::1 fe80::1 febf::1 \
    ::ffff:192.168.1.1 ::ffff:127.0.0.1";
const DEFAULT_OUT: &str = "11.0.0.0 9.255.255.255 172.32.0.0 172.15.255.255 100.128.0.0 \
    0.0.0.0 100.63.255.255 169.255.0.0 192.169.0.0 8.8.8.8 fec0::1 2001:db8::1 \
    ::ffff:8.8.8.8 ::2 :: ::ffff:0:0 64:ff9b::a00:1";

/// A query (ID 0xbeef, RD) for a dotted name ("." is the root), with an OPT (DO set) if `edns`.
fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    crate::wire::message::tests::query(0xbeef, name, qtype, edns)
}

fn policy(f: impl FnOnce(&mut PolicyConfig)) -> Policy {
    let mut c = PolicyConfig::default();
    f(&mut c);
    Policy::new(&c).unwrap()
}

fn decide_from(p: &Policy, client: &str, name: &str, qtype: u16) -> Verdict {
    let q = query(name, qtype, false);
    p.decide(Some(client.parse().unwrap()), &q, &scan(&q).unwrap())
}

/// Asserts that every whitespace-separated name (A query from the LAN) gets `want`; `None`
/// stands for "served here as an RFC 6303 zone" (AA, with SOA).
fn check(p: &Policy, names: &str, want: Option<Verdict>) {
    for name in names.split_whitespace() {
        let v = decide_from(p, LAN, name, TYPE_A);
        let zone = matches!(v, Verdict::Answer(NxDomain(Some(_)) | NoData(Some(_))));
        assert!(want.map_or(zone, |w| w == v), "{name}: {v:?}");
    }
}

/// Asserts `allowed` for every whitespace-separated client address.
fn acl(p: &Policy, ips: &str, allowed: bool) {
    for ip in ips.split_whitespace() {
        assert_eq!(p.allowed(Some(ip.parse().unwrap())), allowed, "{ip}");
        let v = decide_from(p, ip, "nas.lan", TYPE_A);
        assert_eq!(v == Verdict::Answer(Refused), !allowed, "{ip}");
    }
}

/// The local answer, checked by our scanner and parsed by hickory, and its RCODE, AA, answer
/// and authority counts.
fn reply(p: &Policy, client: &str, name: &str, qtype: u16, edns: bool) -> (Message, Shape) {
    let q = query(name, qtype, edns);
    let s = scan(&q).unwrap();
    let Verdict::Answer(a) = p.decide(Some(client.parse().unwrap()), &q, &s) else {
        panic!("{name} not answered locally");
    };
    let mut out = [0xa5u8; MAX_ANSWER_LEN];
    let n = p.answer(&q, &s, &a, &mut out).unwrap();
    assert_eq!(scan(&out[..n]).unwrap().end, n);
    let m = Message::from_vec(&out[..n]).unwrap();
    let (an, ns) = (m.answers().len(), m.name_servers().len());
    let shape = (m.response_code(), m.authoritative(), an, ns);
    (m, shape)
}
type Shape = (Rc, bool, usize, usize);

fn soa_owner(m: &Message) -> String {
    m.name_servers()[0].name().to_ascii()
}
/// The rule lookup before the suffix table (a linear walk of every rule), as the reference: the
/// rule that applies and the offset of its apex in the QNAME.
fn linear(config: &PolicyConfig, name: &[u8]) -> Option<(Kind, usize)> {
    let mut starts = [0u8; name::MAX_LABELS];
    let n = name::label_starts(name, &mut starts)?;
    let mut best: Option<(Kind, usize, usize)> = None;
    for r in rules(config).unwrap() {
        let labels = name::label_starts(&r.name, &mut [0u8; name::MAX_LABELS]).unwrap();
        let Some(&at) = n.checked_sub(labels).and_then(|i| starts.get(i)) else {
            continue;
        };
        let at = usize::from(at);
        let matches = name.len() - at == r.name.len() && name[at..].eq_ignore_ascii_case(&r.name);
        if matches
            && (r.kind != Kind::CanaryExact || labels == n)
            && best.is_none_or(|(k, l, _)| (r.kind, Reverse(labels)) < (k, Reverse(l)))
        {
            best = Some((r.kind, labels, at));
        }
    }
    best.map(|(k, _, at)| (k, at))
}

/// What `linear` makes of `name` as a verdict (the tail of `decide` after the rule lookup).
fn linear_verdict(config: &PolicyConfig, name: &[u8], qtype: u16) -> Verdict {
    let mut starts = [0u8; name::MAX_LABELS];
    let n = name::label_starts(name, &mut starts).unwrap();
    let Some((kind, at)) = linear(config, name) else {
        let local = n == 1
            && config.local_zones
            && !INFRA_TYPES.contains(&qtype)
            && !name.eq_ignore_ascii_case(b"\x04arpa\x00");
        return match (local, config.local_forward) {
            (false, _) => Verdict::Forward,
            (true, true) => Verdict::ForwardLocal,
            (true, false) => NX,
        };
    };
    let soa = Some(Apex((header::LEN + at) as u16));
    let at_apex = at == 0;
    Verdict::Answer(match kind {
        Kind::Ddr if at_apex || (n == 3 && name[..5].eq_ignore_ascii_case(b"\x04_dns")) => {
            NoData(soa)
        }
        Kind::CanaryTree | Kind::CanaryExact => NxDomain(None),
        Kind::Localhost if matches!(qtype, TYPE_A | TYPE_AAAA) => Loopback,
        Kind::Localhost => NoData(soa),
        Kind::Local if config.local_forward => return Verdict::ForwardLocal,
        _ if at_apex => NoData(soa),
        _ => NxDomain(soa),
    })
}

/// Labels that build names under and near the rules, in mixed case, and random ones.
fn label() -> impl Strategy<Value = String> {
    const POOL: &[&str] = &[
        "lan",
        "LAN",
        "Local",
        "arpa",
        "ARPA",
        "in-addr",
        "ip6",
        "IP6",
        "0",
        "1",
        "2",
        "8",
        "9",
        "10",
        "16",
        "31",
        "32",
        "64",
        "127",
        "128",
        "100",
        "168",
        "172",
        "192",
        "254",
        "255",
        "a",
        "b",
        "B",
        "d",
        "e",
        "f",
        "F",
        "home",
        "Home",
        "example",
        "resolver",
        "_dns",
        "_DNS",
        "use-application-dns",
        "net",
        "mask",
        "MASK",
        "icloud",
        "mask-h2",
        "com",
        "localhost",
        "LocalHost",
        "invalid",
        "internal",
        "printer",
    ];
    prop_oneof![
        4 => prop::sample::select(POOL).prop_map(String::from),
        1 => "[a-z0-9_-]{1,6}",
    ]
}

/// A dotted name: 0–3 labels from [`label`] in front of a tail that is a served zone, a suffix
/// of one or a near miss (or nothing), each letter's case flipped at random; sometimes a nibble
/// name under `ip6.arpa` near the 32-nibble zones.
fn dotted() -> impl Strategy<Value = String> {
    const TAILS: &[&str] = &[
        "",
        "arpa",
        "in-addr.arpa",
        "10.in-addr.arpa",
        "20.172.in-addr.arpa",
        "32.172.in-addr.arpa",
        "100.in-addr.arpa",
        "64.100.in-addr.arpa",
        "1.168.192.in-addr.arpa",
        "168.192.in-addr.arpa",
        "255.255.255.255.in-addr.arpa",
        "ip6.arpa",
        "d.f.ip6.arpa",
        "f.ip6.arpa",
        "8.b.d.0.1.0.0.2.ip6.arpa",
        "home.arpa",
        "resolver.arpa",
        "_dns.resolver.arpa",
        "use-application-dns.net",
        "mask.icloud.com",
        "mask-h2.icloud.com",
        "icloud.com",
        "home.example",
        "example",
        "lan",
        "local",
        "internal",
        "localhost",
        "invalid",
        "com",
        "net",
    ];
    let nibbles = (prop::collection::vec(prop::sample::select(&["0", "1", "2"][..]), 28..=34))
        .prop_map(|n| format!("{}.ip6.arpa", n.join(".")));
    let named = (
        prop::collection::vec(label(), 0..=3),
        prop::sample::select(TAILS),
        any::<u64>(),
    )
        .prop_map(|(mut labels, tail, flips)| {
            labels.extend(tail.split('.').filter(|l| !l.is_empty()).map(String::from));
            let dotted = labels.join(".");
            let flip = |(i, c): (usize, char)| match flips >> (i % 64) & 1 {
                1 => c.to_ascii_uppercase(),
                _ => c,
            };
            dotted.chars().enumerate().map(flip).collect()
        });
    prop_oneof![6 => named, 1 => nibbles]
}

fn config() -> impl Strategy<Value = PolicyConfig> {
    let domains = prop::sample::select(
        &[
            None,
            Some("home.example"),
            Some("lan"),
            Some("Mask.iCloud.com"),
            Some("localhost"),
            Some("x.resolver.arpa"),
            Some("use-application-dns.net"),
            Some("10.in-addr.arpa."),
            Some("in-addr.arpa"),
            Some("com"),
        ][..],
    );
    (domains, any::<[bool; 4]>()).prop_map(|(d, [zones, fwd, ff, ic])| PolicyConfig {
        local_zones: zones,
        local_domain: d.map(String::from),
        local_forward: fwd,
        canary_firefox: ff,
        canary_icloud: ic,
        ..Default::default()
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

    /// The suffix table gives the same verdict as the linear walk over every rule it replaced.
    #[test]
    fn suffix_table_agrees_with_linear_walk(
        c in config(),
        names in prop::collection::vec(dotted(), 1..8),
        qtype in prop::sample::select(&[TYPE_A, TYPE_AAAA, TYPE_SOA, 2, 64][..]),
    ) {
        let p = Policy::new(&c).unwrap();
        for name in &names {
            let q = query(name, qtype, false);
            let Ok(s) = scan(&q) else { continue };
            let got = p.decide(Some(LAN.parse().unwrap()), &q, &s);
            let want = linear_verdict(&c, &q[header::LEN..s.question.unwrap().name_end], qtype);
            proptest::prop_assert_eq!(got, want, "{}", name);
        }
    }
}

#[test]
fn rfc6303_zones_are_local_and_near_misses_forwarded() {
    let p = policy(|c| c.local_domain = Some("home.example".into()));
    check(&p, ZONE_SAMPLES, None);
    check(&p, NEAR_MISSES, Some(Verdict::Forward));
}

#[test]
fn special_use_domains_nxdomain_below_and_nodata_at_apex() {
    let p = policy(|_| {});
    for zone in "home.arpa local lan internal invalid".split(' ') {
        let below = Verdict::Answer(NxDomain(Some(Apex(20))));
        check(&p, &format!("printer.{zone}"), Some(below));
        check(&p, zone, Some(Verdict::Answer(NoData(Some(Apex(12))))));
    }
}

#[test]
fn localhost_answers_loopback_addresses_and_nodata_otherwise() {
    let p = policy(|_| {});
    let (a, shape) = reply(&p, LAN, "localhost", TYPE_A, false);
    assert_eq!(shape, (Rc::NoError, true, 1, 0));
    assert_eq!(
        a.answers()[0].data(),
        &RData::A(core::net::Ipv4Addr::LOCALHOST.into())
    );
    let (aaaa, _) = reply(&p, LAN, "foo.LocalHost", TYPE_AAAA, false);
    let loopback6 = RData::AAAA(Ipv6Addr::LOCALHOST.into());
    assert_eq!(aaaa.answers()[0].data(), &loopback6);
    let (mx, shape) = reply(&p, LAN, "localhost", 15, false);
    assert_eq!(shape, (Rc::NoError, true, 0, 1));
    assert_eq!(soa_owner(&mx), "localhost.");
}

#[test]
fn single_label_names_are_local_but_dnssec_infrastructure_and_arpa_forwarded() {
    let p = policy(|_| {});
    check(&p, "printer NAS wpad", Some(NX));
    assert_eq!(decide_from(&p, LAN, "nas", 65), NX);
    for t in [2, 6, 43, 48] {
        assert_eq!(decide_from(&p, LAN, "com", t), Verdict::Forward);
    }
    check(&p, "ARPA .", Some(Verdict::Forward));
    let (_, shape) = reply(&p, LAN, "printer", TYPE_A, false);
    assert_eq!(shape, (Rc::NXDomain, false, 0, 0));
}

#[test]
fn configured_local_domain_is_local_even_without_local_zones() {
    let p = policy(|c| {
        c.local_zones = false;
        c.local_domain = Some("Home.Example.".into());
    });
    check(&p, "nas.home.example home.example", None);
    let others = "example nas.lan printer localhost 1.1.168.192.in-addr.arpa";
    check(&p, others, Some(Verdict::Forward));
    let long = vec!["a".repeat(63); 4].join(".");
    for bad in ["", ".", "a..b", "..", &"a".repeat(64), &long] {
        let domain = Some(bad.to_string());
        let c = PolicyConfig {
            local_domain: domain,
            ..Default::default()
        };
        let e = Policy::new(&c).err();
        assert_eq!(e, Some(PolicyError::LocalDomain), "{bad:?}");
    }
}

#[test]
fn matching_is_case_insensitive() {
    let p = policy(|c| c.local_domain = Some("corp.example".into()));
    check(&p, "NAS.LAN x.Home.Arpa 1.1.168.192.IN-ADDR.ARPA", None);
    check(
        &p,
        "1.B.E.F.ip6.arpa a.CORP.example _DNS.resolver.ARPA",
        None,
    );
    check(&p, "Use-Application-DNS.NET MASK.iCloud.com", Some(NX));
}

#[test]
fn canaries_on_by_default_and_switchable() {
    let p = policy(|_| {});
    check(
        &p,
        "use-application-dns.net x.use-application-dns.net",
        Some(NX),
    );
    check(&p, "mask.icloud.com mask-h2.icloud.com", Some(NX));
    let firefox_off = policy(|c| c.canary_firefox = false);
    check(
        &firefox_off,
        "use-application-dns.net",
        Some(Verdict::Forward),
    );
    check(&firefox_off, "mask.icloud.com", Some(NX));
    let icloud_off = policy(|c| c.canary_icloud = false);
    check(
        &icloud_off,
        "mask.icloud.com mask-h2.icloud.com",
        Some(Verdict::Forward),
    );
    check(&icloud_off, "use-application-dns.net", Some(NX));
    let (_, shape) = reply(&p, LAN, "mask.icloud.com", TYPE_A, true);
    assert_eq!(shape, (Rc::NXDomain, false, 0, 0));
}

#[test]
fn ddr_is_answered_locally_whatever_the_configuration() {
    let p = policy(|c| {
        c.local_zones = false;
        c.local_forward = true;
    });
    let v = decide_from(&p, LAN, "_dns.resolver.arpa", 64);
    assert_eq!(v, Verdict::Answer(NoData(Some(Apex(17)))));
    check(
        &p,
        "resolver.arpa",
        Some(Verdict::Answer(NoData(Some(Apex(12))))),
    );
    check(&p, "x._dns.resolver.arpa _dns.x.resolver.arpa", None);
    let (m, shape) = reply(&p, LAN, "_dns.resolver.arpa", 64, false);
    assert_eq!(shape, (Rc::NoError, true, 0, 1));
    assert_eq!(soa_owner(&m), "resolver.arpa.");
}

#[test]
fn acl_boundaries_ipv6_ipv4_mapped_and_refused_beats_everything() {
    let p = policy(|c| c.allow = vec!["192.168.1.0/24".parse().unwrap()]);
    acl(&p, "192.168.1.0 192.168.1.255 ::ffff:192.168.1.1", true);
    acl(&p, "192.168.0.255 192.168.2.0 8.8.8.8 10.0.0.1", false);
    let d = policy(|_| {});
    acl(&d, DEFAULT_IN, true);
    acl(&d, DEFAULT_OUT, false);
    let nobody = policy(|c| c.allow.clear());
    acl(&nobody, "127.0.0.1 ::1", false);
    assert!(d.allowed(None) && nobody.allowed(None));
    let p = policy(|c| c.local_forward = true);
    for name in "_dns.resolver.arpa use-application-dns.net nas.lan printer".split(' ') {
        let v = decide_from(&p, WAN, name, TYPE_A);
        assert_eq!(v, Verdict::Answer(Refused), "{name}");
    }
}

#[test]
fn prefixes_parse_mask_and_normalise_ipv4_mapped() {
    let shown = |s: &str| s.parse::<Prefix>().map(|p| p.to_string());
    assert_eq!(shown("192.168.1.7/24").unwrap(), "192.168.1.0/24");
    assert_eq!(shown("::ffff:10.1.0.0/104").unwrap(), "10.0.0.0/8");
    assert_eq!(shown("10.0.0.1").unwrap(), "10.0.0.1/32");
    assert_eq!(shown("fd00::1/8").unwrap(), "fd00::/8");
    for bad in "10.0.0.0/33 fd00::/129 10.0.0.0/ 10.0.0.0/+8 10.0.0.0/x lan/8".split(' ') {
        assert_eq!(shown(bad), Err(PolicyError::Prefix), "{bad}");
    }
    let all: Prefix = "::/0".parse().unwrap();
    assert!(all.contains(WAN.parse().unwrap()) && all.contains([1; 4].into()));
    assert_eq!(PolicyConfig::default().allow.len(), 9);
}

#[test]
fn local_forward_sends_local_names_to_the_local_resolver() {
    let p = policy(|c| {
        c.local_forward = true;
        c.local_domain = Some("home.example".into());
    });
    let local = Some(Verdict::ForwardLocal);
    check(
        &p,
        "nas.lan lan printer x.home.arpa x.local d.f.ip6.arpa",
        local,
    );
    check(&p, "1.1.168.192.in-addr.arpa nas.home.example", local);
    check(&p, "localhost", Some(Verdict::Answer(Loopback)));
    check(&p, "x.invalid", None);
    check(&p, "mask.icloud.com", Some(NX));
    check(&p, "example.com", Some(Verdict::Forward));
    // Public names, public reverse names and DNSSEC infrastructure never go to the LAN.
    let public = "8.8.8.8.in-addr.arpa 1.0.0.2.ip6.arpa in-addr.arpa arpa . lan.example.com";
    check(&p, public, Some(Verdict::Forward));
    assert_eq!(decide_from(&p, LAN, "com", 43), Verdict::Forward);
}

#[test]
fn nxdomain_is_authoritative_with_rfc6303_soa_and_opt_iff_query_had_one() {
    let p = policy(|_| {});
    let (m, shape) = reply(&p, LAN, "5.1.168.192.In-Addr.Arpa", 12, true);
    assert_eq!(shape, (Rc::NXDomain, true, 0, 1));
    assert_eq!(m.id(), 0xbeef);
    assert!(m.recursion_desired() && m.recursion_available());
    let q = &m.queries()[0];
    assert_eq!(q.name().to_ascii(), "5.1.168.192.In-Addr.Arpa.");
    assert_eq!(u16::from(q.query_type()), 12);
    let ns = &m.name_servers()[0];
    assert_eq!(ns.name().to_ascii(), "168.192.In-Addr.Arpa.");
    assert_eq!(ns.ttl(), TTL);
    let RData::SOA(soa) = ns.data() else {
        panic!("{ns:?}")
    };
    assert_eq!(soa.mname(), ns.name());
    assert_eq!(soa.rname().to_ascii(), "nobody.invalid.");
    let timers = [soa.refresh(), soa.retry(), soa.expire()];
    assert_eq!(
        (soa.serial(), timers, soa.minimum()),
        (1, [3600, 1200, 604800], 10800)
    );
    let e = m.extensions().as_ref().unwrap();
    assert_eq!((e.flags().dnssec_ok, e.max_payload()), (true, 1232));
    let (plain, _) = reply(&p, LAN, "nas.lan", TYPE_A, false);
    assert!(plain.extensions().is_none());
    assert_eq!(soa_owner(&plain), "lan.");
    let (apex, shape) = reply(&p, LAN, "home.arpa", TYPE_SOA, false);
    assert_eq!(shape, (Rc::NoError, true, 1, 0));
    assert!(matches!(apex.answers()[0].data(), RData::SOA(_)));
}

#[test]
fn refused_carries_ede_18_and_its_text_and_opt_only_with_edns() {
    let p = policy(|_| {});
    let (m, shape) = reply(&p, WAN, "nas.lan", TYPE_A, true);
    assert_eq!(shape, (Rc::Refused, false, 0, 0));
    assert_eq!(m.queries()[0].name().to_ascii(), "nas.lan.");
    let opt = m.extensions().as_ref().unwrap().option(15.into());
    let Some(EdnsOption::Unknown(15, data)) = opt else {
        panic!("{opt:?}")
    };
    assert_eq!(&data[..2], &[0, 18]);
    assert_eq!(&data[2..], REFUSED_TEXT.as_bytes());
    let (plain, _) = reply(&p, WAN, "nas.lan", TYPE_A, false);
    assert!(plain.extensions().is_none());
}

#[test]
fn longest_name_fits_max_answer_len() {
    let p = policy(|c| c.allow.clear());
    let long = vec!["a".repeat(63); 3].join(".");
    let q = query(&format!("{long}.{}.lan", "b".repeat(57)), TYPE_SOA, true);
    let s = scan(&q).unwrap();
    assert_eq!(s.question.unwrap().name_end - header::LEN, 255);
    for client in [None, Some(IpAddr::from([8; 4]))] {
        let Verdict::Answer(a) = p.decide(client, &q, &s) else {
            panic!("{client:?}")
        };
        let mut out = [0; MAX_ANSWER_LEN];
        assert!(p.answer(&q, &s, &a, &mut out).is_ok(), "{a:?}");
        let short = p.answer(&q, &s, &a, &mut out[..40]);
        assert_eq!(short, Err(Error::BufferTooSmall));
    }
}

#[test]
fn decide_and_answer_never_panic_on_mutated_queries() {
    let p = policy(|c| c.local_domain = Some("home.example".into()));
    let mut pointer = query("x.lan", TYPE_A, false);
    pointer.splice(12..14, [0xc0, 0x0c]);
    assert!(scan(&pointer).is_err(), "no pointer can reach decide");
    let names = "nas.lan _dns.resolver.arpa 1.1.168.192.in-addr.arpa localhost x.mask.icloud.com";
    let types = [TYPE_A, 64, 12, TYPE_AAAA, TYPE_SOA];
    let seeds = names.split(' ').zip(types).enumerate();
    let seeds: Vec<_> = seeds.map(|(i, (n, t))| query(n, t, i % 2 == 0)).collect();
    let clients = [
        None,
        Some(IpAddr::from([10, 0, 0, 1])),
        Some(IpAddr::from([1; 16])),
    ];
    let (mut x, mut out) = (0x2545_f491_4f6c_dd1du64, [0u8; MAX_ANSWER_LEN]);
    for i in 0..60_000 {
        let mut m = seeds[i % seeds.len()].clone();
        for _ in 0..1 + i % 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x >> 8) as usize % m.len();
            match x % 3 {
                0 => m[at] = (x >> 32) as u8,
                1 => m[at] ^= 0x20,
                _ => m.truncate(at.max(header::LEN)),
            }
        }
        let Ok(s) = scan(&m) else { continue };
        for client in clients {
            if let Verdict::Answer(a) = p.decide(client, &m, &s) {
                let _ = p.answer(&m, &s, &a, &mut out);
            }
        }
    }
}
