//! The cache's tests: what is stored and for how long, stale answers, the bounds.

use super::*;
use crate::wire::message::scan;
use alloc::vec;
use hickory_proto::op::Message;

type Rr<'a> = (&'a str, u16, u32, Vec<u8>);
const EX: &str = "example.com";
const A: u16 = 1;
const TXT: u16 = 16;

fn wire(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for label in name.split('.') {
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
    }
    v.push(0);
    v
}

/// One question, the three sections, and (if `opt` is Some(flags)) an OPT with 6 octets of padding.
fn msg(flags: u16, qname: &str, qtype: u16, secs: [&[Rr]; 3], opt: Option<u16>) -> Vec<u8> {
    let [an, ns, ar] = secs.map(|s| s.len() as u16);
    let mut m = vec![0xab, 0xcd];
    for v in [flags, 1, an, ns, ar + u16::from(opt.is_some())] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m.extend(wire(qname));
    m.extend_from_slice(&[(qtype >> 8) as u8, qtype as u8, 0, 1]);
    for (name, rtype, ttl, rdata) in secs.iter().flat_map(|s| s.iter()) {
        m.extend(wire(name));
        m.extend_from_slice(&[(rtype >> 8) as u8, *rtype as u8, 0, 1]);
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }
    if let Some(f) = opt {
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, (f >> 8) as u8, f as u8]);
        m.extend_from_slice(&[0, 10, 0, 12, 0, 6, 0, 0, 0, 0, 0, 0]);
    }
    m
}

/// A response for example.com/A with an OPT record.
fn resp(flags: u16, an: &[Rr], ns: &[Rr]) -> Vec<u8> {
    msg(flags, EX, A, [an, ns, &[]], Some(0))
}

fn soa(ttl: u32, minimum: u32) -> Rr<'static> {
    let mut rdata = [wire("ns.example.com"), wire("host.example.com")].concat();
    for v in [1u32, 7200, 900, 86400, minimum] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    (EX, 6, ttl, rdata)
}

fn a(name: &str, ttl: u32) -> Rr<'_> {
    (name, A, ttl, vec![192, 0, 2, 1])
}

fn kf(name: &str, qtype: u16, dnssec_ok: bool, flags: u16) -> Key {
    let opt = Some(u16::from(dnssec_ok) << 15);
    let q = msg(flags, name, qtype, [&[]; 3], opt);
    Key::from_query(&q, &scan(&q).unwrap()).unwrap()
}

fn k(name: &str) -> Key {
    kf(name, A, false, 0x0100)
}

fn t(secs: f64) -> Instant {
    Instant::from_millis((secs * 1000.0) as u64)
}

/// TTLs of all non-OPT records, read with hickory.
fn ttls(m: &[u8]) -> Vec<u32> {
    let h = Message::from_vec(m).unwrap();
    let all = [h.answers(), h.name_servers(), h.additionals()];
    all.iter().flat_map(|s| s.iter()).map(|r| r.ttl()).collect()
}

fn fresh(c: &mut Cache, secs: f64, name: &str) -> Option<Vec<u32>> {
    c.get(t(secs), &k(name)).map(|m| ttls(&m))
}

fn stale(c: &mut Cache, secs: f64, name: &str) -> Option<Vec<u32>> {
    c.get_stale(t(secs), &k(name)).map(|m| ttls(&m))
}

fn with(f: impl FnOnce(&mut CacheConfig)) -> Cache {
    let mut config = CacheConfig::default();
    f(&mut config);
    Cache::new(config)
}

#[test]
fn ttl_decrements_by_time_in_cache() {
    let mut c = with(|_| ());
    let ns = (EX, 2, 600, wire("ns.example.com"));
    let secs: [&[Rr]; 3] = [&[a(EX, 300)], &[ns], &[a("ns.example.com", 500)]];
    let r = msg(0x8180, EX, A, secs, None);
    assert!(c.insert(t(1.0), k(EX), &r));
    assert_eq!(fresh(&mut c, 11.0, EX).unwrap(), [290, 590, 490]);
    assert_eq!(fresh(&mut c, 11.9, EX).unwrap(), [290, 590, 490]);
    assert_eq!(fresh(&mut c, 300.9, EX).unwrap(), [1, 301, 201]);
    assert_eq!(c.stats().hits, 3);
}

#[test]
fn expiry_and_replacement() {
    let mut c = with(|_| ());
    assert!(c.insert(t(0.0), k(EX), &resp(0x8180, &[a(EX, 60)], &[])));
    assert!(fresh(&mut c, 59.999, EX).is_some());
    assert!(fresh(&mut c, 60.0, EX).is_none());
    assert!(c.insert(t(60.0), k(EX), &resp(0x8180, &[a(EX, 10)], &[])));
    assert_eq!((c.len(), fresh(&mut c, 60.0, EX).unwrap()), (1, vec![10]));
    assert_eq!((c.stats().misses, c.stats().inserts), (1, 2));
}

#[test]
fn min_and_max_ttl_clamping() {
    let mut c = with(|c| (c.min_ttl, c.max_ttl) = (60, 100));
    let r = |name, ttl| msg(0x8180, name, A, [&[a(name, ttl)], &[], &[]], None);
    assert!(c.insert(t(0.0), k("low.test"), &r("low.test", 5)));
    assert!(c.insert(t(0.0), k("high.test"), &r("high.test", 1_000_000)));
    assert_eq!(fresh(&mut c, 0.0, "low.test").unwrap(), [60]);
    assert_eq!(fresh(&mut c, 59.0, "low.test").unwrap(), [1]);
    assert_eq!(fresh(&mut c, 0.0, "high.test").unwrap(), [100]);
    assert!(fresh(&mut c, 60.0, "low.test").is_none());
    assert!(fresh(&mut c, 100.0, "high.test").is_none());
}

#[test]
fn nxdomain_with_soa_cached_for_min_of_soa_ttl_and_minimum_capped() {
    let mut c = with(|_| ());
    for (soa_ttl, minimum, cached) in [(900, 300, 300), (120, 7200, 120), (86400, 86400, 3600)] {
        assert!(c.insert(t(0.0), k(EX), &resp(0x8183, &[], &[soa(soa_ttl, minimum)])));
        assert_eq!(fresh(&mut c, 0.0, EX).unwrap(), [cached]);
        assert!(fresh(&mut c, f64::from(cached) - 0.1, EX).is_some());
        assert!(fresh(&mut c, f64::from(cached), EX).is_none());
    }
}

#[test]
fn nodata_with_soa_cached() {
    let mut c = with(|_| ());
    assert!(c.insert(t(0.0), k(EX), &resp(0x8180, &[], &[soa(600, 60)])));
    let got = c.get(t(10.0), &k(EX)).unwrap();
    assert_eq!((ttls(&got), scan(&got).unwrap().rcode()), (vec![50], 0));
}

#[test]
fn negative_without_soa_not_cached() {
    let mut c = with(|_| ());
    let ns = (EX, 2, 600, wire("ns.example.com"));
    for flags in [0x8180, 0x8183] {
        assert!(!c.insert(t(0.0), k(EX), &resp(flags, &[], &[])));
        assert!(!c.insert(t(0.0), k(EX), &resp(flags, &[], core::slice::from_ref(&ns)))); // referral
    }
    assert!(c.is_empty());
}

#[test]
fn servfail_cached_only_servfail_ttl() {
    let mut c = with(|_| ());
    for flags in [0x8182, 0x8185] {
        assert!(c.insert(t(0.0), k(EX), &resp(flags, &[], &[])));
        assert!(fresh(&mut c, 4.9, EX).is_some());
        assert!(fresh(&mut c, 5.0, EX).is_none() && stale(&mut c, 5.0, EX).is_none());
    }
    assert!(!c.insert(t(9.0), k(EX), &resp(0x8184, &[], &[]))); // NOTIMP
    // A failure never displaces an answer that can still be served stale.
    assert!(c.insert(t(9.0), k(EX), &resp(0x8180, &[a(EX, 60)], &[])));
    assert!(!c.insert(t(70.0), k(EX), &resp(0x8182, &[], &[])));
    assert_eq!(stale(&mut c, 70.0, EX).unwrap(), [30]);
    let mut off = with(|c| c.servfail_ttl = 0);
    assert!(!off.insert(t(0.0), k(EX), &resp(0x8182, &[], &[])));
}

#[test]
fn tc_ttl0_mismatched_and_oversized_not_cached() {
    let mut c = with(|c| c.max_bytes = 4096);
    let ok = resp(0x8180, &[a(EX, 60)], &[]);
    let mut bad = vec![
        resp(0x8380, &[a(EX, 60)], &[]),                   // TC
        resp(0x8180, &[a(EX, 60), a(EX, 0)], &[]),         // TTL 0 in the answer
        resp(0x8180, &[a(EX, 0x8000_0000)], &[]),          // RFC 2181 §8: means 0
        resp(0x0180, &[a(EX, 60)], &[]),                   // QR clear
        resp(0x8980, &[a(EX, 60)], &[]),                   // opcode IQUERY
        resp(0x8181, &[], &[soa(60, 60)]),                 // FORMERR
        resp(0x8180, &[(EX, TXT, 60, vec![0; 600])], &[]), // > max_bytes / 8
        msg(0x8180, "example.org", A, [&[a(EX, 60)], &[], &[]], None),
        msg(0x8180, EX, TXT, [&[a(EX, 60)], &[], &[]], None),
    ];
    for (at, value) in [(5, 2), (28, 3), (11, 2)] {
        let mut m = ok.clone(); // QDCOUNT 2, QCLASS CH, ARCOUNT past the end
        m[at] = value;
        bad.push(m);
    }
    for m in &bad {
        assert!(!c.insert(t(0.0), k(EX), m), "{m:02x?}");
    }
    assert!(c.is_empty() && c.insert(t(0.0), k(EX), &ok));
}

#[test]
fn key_includes_do_rd_cd_ad_and_is_case_insensitive() {
    let plain = kf("Example.COM", A, false, 0x0100);
    let on = |dnssec_ok, flags| kf(EX, A, dnssec_ok, flags);
    assert_eq!(plain, k(EX));
    assert_ne!(plain, kf(EX, TXT, false, 0x0100));
    for other in [
        on(true, 0x0100),
        on(false, 0x0000),
        on(false, 0x0110),
        on(false, 0x0120),
    ] {
        assert_ne!(plain, other); // DO, RD, CD, AD
    }
    let mut c = with(|_| ());
    let r = msg(
        0x8180,
        "EXAMPLE.com",
        A,
        [&[a(EX, 60)], &[], &[]],
        Some(1 << 15),
    );
    assert!(c.insert(t(0.0), kf(EX, A, true, 0x0100), &r));
    assert!(c.get(t(1.0), &plain).is_none());
    assert!(c.get(t(1.0), &kf("eXample.com", A, true, 0x0100)).is_some());
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn check_accounting(c: &Cache) {
    let live: Vec<&Entry> = c.slots.iter().flatten().collect();
    let bytes: usize = live.iter().map(|e| e.key.cost(e.msg.len())).sum();
    assert_eq!((bytes, live.len()), (c.bytes, c.len()));
    assert_eq!((c.lru.len(), c.purge.len()), (c.len(), c.len()));
    assert!(c.len() <= c.config.max_entries && c.bytes <= c.config.max_bytes);
}

#[test]
fn entries_and_bytes_bounds_hold_under_random_inserts() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for (max_entries, max_bytes) in [(100, 1 << 20), (10_000, 40_000)] {
        let mut c = with(|c| (c.max_entries, c.max_bytes) = (max_entries, max_bytes));
        let mut now = 0;
        for _ in 0..10_000 {
            now += rng.next() % 2000;
            let name = alloc::format!("n{}.test", rng.next() % 3000);
            let rdata = vec![7; (rng.next() % 400) as usize];
            let txt = (name.as_str(), TXT, 1 + (rng.next() % 600) as u32, rdata);
            let r = msg(0x8180, &name, TXT, [&[txt], &[], &[]], Some(0));
            c.insert(Instant::from_millis(now), kf(&name, TXT, false, 0x0100), &r);
            assert!(c.len() <= max_entries && c.bytes() <= max_bytes);
        }
        check_accounting(&c);
        assert!(c.stats().evictions > 0);
        c.clear();
        assert_eq!((c.len(), c.bytes(), c.slots.len()), (0, 0, 0));
    }
}

#[test]
fn lru_evicts_least_recently_used_after_dead_entries() {
    let mut c = with(|c| (c.max_entries, c.max_stale) = (3, 10));
    let r = |name, ttl| msg(0x8180, name, A, [&[a(name, ttl)], &[], &[]], None);
    for name in ["a.test", "b.test", "c.test"] {
        assert!(c.insert(t(0.0), k(name), &r(name, 300)));
    }
    assert!(fresh(&mut c, 1.0, "a.test").is_some());
    assert!(c.insert(t(2.0), k("d.test"), &r("d.test", 1)));
    assert!(fresh(&mut c, 2.5, "b.test").is_none());
    assert!(fresh(&mut c, 2.5, "c.test").is_some() && stale(&mut c, 3.0, "d.test").is_some());
    // d.test was used last, but its stale window has passed: it goes before the LRU a.test.
    assert!(c.insert(t(20.0), k("e.test"), &r("e.test", 300)));
    assert!(fresh(&mut c, 20.0, "a.test").is_some() && c.len() == 3);
}

#[test]
fn stale_served_only_by_get_stale_within_max_stale() {
    let mut c = with(|c| c.max_stale = 1000);
    assert!(c.insert(t(0.0), k(EX), &resp(0x8180, &[a(EX, 60)], &[soa(600, 600)])));
    assert!(stale(&mut c, 59.0, EX).is_none());
    assert!(fresh(&mut c, 61.0, EX).is_none());
    assert_eq!(stale(&mut c, 61.0, EX).unwrap(), [30, 30]);
    assert_eq!(stale(&mut c, 1059.9, EX).unwrap(), [30, 30]);
    assert!(stale(&mut c, 1060.0, EX).is_none());
    assert_eq!((c.len(), c.bytes(), c.stats().stale_hits), (0, 0, 2));
}

/// A returned message scans, asks the same question and keeps header and record counts.
fn assert_same_shape(original: &[u8], got: &[u8]) {
    let (o, g) = (scan(original).unwrap(), scan(got).unwrap());
    assert_eq!(got[..g.question_end], original[..o.question_end]);
    let (oh, gh) = (o.header, g.header);
    assert_eq!((gh.ancount, gh.nscount), (oh.ancount, oh.nscount));
    assert_eq!(g.opt.map(|x| x.flags), o.opt.map(|x| x.flags));
    let theirs = Message::from_vec(got).unwrap();
    assert_eq!(theirs.answers().len(), usize::from(oh.ancount));
    assert!(got.len() <= original.len());
}

#[test]
fn returned_messages_scan_with_same_question_and_counts() {
    let ns = (EX, 2, 600, wire("ns.example.com"));
    let cases = [
        msg(
            0x8180,
            EX,
            A,
            [&[a(EX, 60)], &[ns], &[a("ns.example.com", 60)]],
            Some(0x8000),
        ),
        resp(0x8183, &[], &[soa(60, 60)]),
        msg(0x8183, EX, A, [&[], &[soa(60, 60)], &[]], None),
        resp(0x8182, &[], &[]),
    ];
    for r in &cases {
        let mut c = with(|_| ());
        assert!(c.insert(t(0.0), k(EX), r));
        assert_same_shape(r, &c.get(t(1.0), &k(EX)).unwrap());
        if let Some(got) = c.get_stale(t(120.0), &k(EX)) {
            assert_same_shape(r, &got);
        }
    }
    // Records after the OPT are dropped (as `rewrite::to_client` does), padding too.
    let mut r = resp(0x8180, &[a(EX, 60)], &[]);
    r[11] += 1;
    r.extend(
        [
            wire("ns.example.com"),
            vec![0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4],
        ]
        .concat(),
    );
    let mut c = with(|_| ());
    assert!(c.insert(t(0.0), k(EX), &r));
    let got = c.get(t(0.0), &k(EX)).unwrap();
    assert_eq!(
        (scan(&got).unwrap().header.arcount, got.len()),
        (1, r.len() - 10 - 30)
    );
}

#[test]
fn arbitrary_bytes_to_insert_never_panic() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut c = with(|c| c.max_entries = 64);
    let (an, ar) = ([a(EX, 60)], [a("x.example.com", 9)]);
    let base = msg(0x8180, EX, A, [&an, &[soa(60, 60)], &ar], Some(0x8000));
    let key = kf(EX, A, true, 0x0100);
    for i in 0..40_000u64 {
        let m: Vec<u8> = if i % 2 == 0 {
            (0..rng.next() % 300).map(|_| rng.next() as u8).collect()
        } else {
            let mut m = base.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = rng.next() as usize % m.len();
                m[at] = rng.next() as u8;
            }
            m.truncate(m.len() - (rng.next() % 16) as usize * usize::from(i % 3 == 0));
            m
        };
        let now = Instant::from_millis(i * 100);
        c.insert(now, key.clone(), &m);
        if let Some(k2) = scan(&m).ok().and_then(|s| Key::from_query(&m, &s)) {
            c.insert(now, k2, &m);
        }
        let stale_at = Instant::from_millis(i * 100 + 61_000);
        for got in [c.get(now, &key), c.get_stale(stale_at, &key)]
            .into_iter()
            .flatten()
        {
            let s = scan(&got).unwrap();
            assert!(name::eq_ignore_case(
                &got[12..s.question_end - 4],
                &wire(EX)
            ));
        }
    }
    check_accounting(&c);
}
