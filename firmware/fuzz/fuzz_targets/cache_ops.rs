//! Random operation sequences against `cache::Cache` with small limits: the bounds hold after every
//! call, every returned message scans, answers the key's question with the counts and ID of what was
//! stored under that key, and shows TTLs ≥ 1 (fresh) or exactly `stale_answer_ttl` (stale).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use lanveil_core::cache::{Cache, CacheConfig, Key};
use lanveil_core::time::Instant;
use lanveil_core::wire::header;
use lanveil_core::wire::message::scan;
use lanveil_core::wire::{TYPE_OPT, name};
use lanveil_fuzz::{must_scan, records};
use libfuzzer_sys::fuzz_target;

const NAMES: [&[u8]; 4] = [
    b"\x07example\x03com\x00",
    b"\x07EXAMPLE\x03com\x00",
    b"\x01a\x07example\x03com\x00",
    b"\x00",
];

#[derive(Arbitrary, Debug)]
struct Limits {
    max_entries: u8,
    max_bytes: u16,
    min_ttl: u8,
    max_ttl: u16,
    negative_max_ttl: u16,
    servfail_ttl: u8,
    stale_answer_ttl: u8,
    max_stale: u16,
}

#[derive(Arbitrary, Debug)]
struct Rr {
    rtype: u8,
    ttl: u32,
    rdlen: u8,
    authority: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Arbitrary bytes under the key of their own question (or an existing key).
    Insert(Vec<u8>),
    /// Arbitrary bytes under an existing key.
    InsertAs(u8, Vec<u8>),
    /// A well-formed response built from parts.
    Answer {
        name: u8,
        qtype: u8,
        flags: u8,
        rcode: u8,
        records: Vec<Rr>,
        opt: Option<(bool, Vec<u8>)>,
    },
    Get(u8),
    GetStale(u8),
    Advance(u16),
    AdvanceMs(u16),
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    limits: Limits,
    ops: Vec<Op>,
}

fn key_of(msg: &[u8]) -> Option<Key> {
    scan(msg).ok().and_then(|s| Key::from_query(msg, &s))
}

fn build(
    name_i: u8,
    qtype: u8,
    flags: u8,
    rc: u8,
    rrs: &[Rr],
    opt: &Option<(bool, Vec<u8>)>,
) -> Vec<u8> {
    let qname = NAMES[usize::from(name_i) % NAMES.len()];
    let (an, ns): (Vec<&Rr>, Vec<&Rr>) = rrs.iter().take(8).partition(|r| !r.authority);
    let mut m = vec![0x12, 0x34];
    // QR, RD, RA, plus AD/CD/TC/opcode bits from `flags`; RCODE from `rc`.
    let f: u16 =
        0x8180 | (u16::from(flags & 0x30)) | (u16::from(flags & 0x02) << 8) | u16::from(rc % 6);
    let f = if flags & 0x80 != 0 { f | 0x1000 } else { f };
    m.extend_from_slice(&f.to_be_bytes());
    m.extend_from_slice(&[
        0,
        1,
        0,
        an.len() as u8,
        0,
        ns.len() as u8,
        0,
        u8::from(opt.is_some()),
    ]);
    m.extend_from_slice(qname);
    m.extend_from_slice(&[0, qtype % 30, 0, 1]);
    for r in an.iter().chain(ns.iter()) {
        m.extend_from_slice(&[0xc0, 0x0c]);
        let rtype = match r.rtype % 5 {
            0 => 1,
            1 => 28,
            2 => 6,
            3 => 5,
            _ => r.rtype,
        };
        m.extend_from_slice(&[0, rtype, 0, 1]);
        m.extend_from_slice(&r.ttl.to_be_bytes());
        let rdata: Vec<u8> = if rtype == 6 {
            // SOA: MNAME and RNAME pointing at the question, five timers.
            let mut d = vec![0xc0, 0x0c, 0xc0, 0x0c];
            for i in 0..5u32 {
                d.extend_from_slice(&r.ttl.rotate_left(i * 7).to_be_bytes());
            }
            d
        } else {
            vec![0x5a; usize::from(r.rdlen % 40)]
        };
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
    }
    if let Some((dnssec_ok, opts)) = opt {
        let opts = &opts[..opts.len().min(64)];
        m.extend_from_slice(&[
            0,
            0,
            41,
            4,
            0xd0,
            0,
            0,
            if *dnssec_ok { 0x80 } else { 0 },
            0,
        ]);
        m.extend_from_slice(&(opts.len() as u16 + 4).to_be_bytes());
        // One option (padding or EDE) holding the bytes.
        m.extend_from_slice(&[0, if opts.first() == Some(&0) { 12 } else { 15 }]);
        m.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        m.extend_from_slice(opts);
    }
    m
}

fn insert(
    cache: &mut Cache,
    now: Instant,
    keys: &mut Vec<Key>,
    stored: &mut BTreeMap<Key, Vec<u8>>,
    key: Key,
    msg: &[u8],
) {
    if !keys.contains(&key) {
        keys.push(key.clone());
    }
    if cache.insert(now, key.clone(), msg) {
        stored.insert(key, msg.to_vec());
    }
}

fuzz_target!(|input: Input| {
    let l = &input.limits;
    let config = CacheConfig {
        max_entries: usize::from(l.max_entries % 9),
        max_bytes: usize::from(l.max_bytes % 8192),
        min_ttl: u32::from(l.min_ttl % 20),
        max_ttl: u32::from(l.max_ttl % 600),
        negative_max_ttl: u32::from(l.negative_max_ttl % 600),
        servfail_ttl: u32::from(l.servfail_ttl % 10),
        stale_answer_ttl: u32::from(l.stale_answer_ttl % 40),
        max_stale: u32::from(l.max_stale % 600),
    };
    let mut cache = Cache::new(config);
    let mut now = Instant::from_millis(1_000);
    let mut keys: Vec<Key> = Vec::new();
    // What was last stored under each key (the model a hit must agree with).
    let mut stored: BTreeMap<Key, Vec<u8>> = BTreeMap::new();
    for op in input.ops.iter().take(64) {
        match op {
            Op::Insert(bytes) => {
                if let Some(k) = key_of(bytes).or_else(|| keys.first().cloned()) {
                    insert(&mut cache, now, &mut keys, &mut stored, k, bytes);
                }
            }
            Op::InsertAs(i, bytes) => {
                if let Some(k) = keys.get(usize::from(*i) % keys.len().max(1)).cloned() {
                    insert(&mut cache, now, &mut keys, &mut stored, k, bytes);
                }
            }
            Op::Answer {
                name,
                qtype,
                flags,
                rcode,
                records,
                opt,
            } => {
                let m = build(*name, *qtype, *flags, *rcode, records, opt);
                if let Some(k) = key_of(&m) {
                    insert(&mut cache, now, &mut keys, &mut stored, k, &m);
                }
            }
            Op::Get(i) | Op::GetStale(i) => {
                let Some(k) = keys.get(usize::from(*i) % keys.len().max(1)) else {
                    continue;
                };
                let stale = matches!(op, Op::GetStale(_));
                let got = if stale {
                    cache.get_stale(now, k)
                } else {
                    cache.get(now, k)
                };
                if let Some(m) = got {
                    let s = must_scan(&m, "cached answer");
                    let orig = stored.get(k).expect("a hit for a key never stored");
                    let o = scan(orig).expect("stored message scanned");
                    assert_eq!(s.header.id, o.header.id, "upstream ID kept");
                    assert_eq!(s.header.qdcount, 1);
                    assert_eq!(
                        (s.header.ancount, s.header.nscount),
                        (o.header.ancount, o.header.nscount)
                    );
                    assert_eq!(
                        &m[header::LEN..s.question_end],
                        &orig[header::LEN..o.question_end]
                    );
                    let q = s.question.expect("question");
                    assert!(name::eq_ignore_case(
                        &m[header::LEN..q.name_end],
                        &orig[header::LEN..q.name_end]
                    ));
                    for r in records(&m, &s).iter().filter(|r| r.rtype != TYPE_OPT) {
                        if stale {
                            assert_eq!(r.ttl, config.stale_answer_ttl, "stale TTL");
                        } else {
                            assert!(r.ttl >= 1, "fresh TTL never below 1");
                        }
                    }
                }
            }
            Op::Advance(s) => now = now + core::time::Duration::from_secs(u64::from(*s % 2000)),
            Op::AdvanceMs(ms) => now = now + core::time::Duration::from_millis(u64::from(*ms)),
            Op::Clear => {
                cache.clear();
                stored.clear();
            }
        }
        assert!(
            cache.len() <= config.max_entries,
            "len {} > {}",
            cache.len(),
            config.max_entries
        );
        assert!(
            cache.bytes() <= config.max_bytes,
            "bytes {} > {}",
            cache.bytes(),
            config.max_bytes
        );
    }
});
