//! `wire::message::scan` on arbitrary bytes: never panics; a success has ordered, in-bounds offsets
//! that an independent record walk agrees with. `wire::record::reduce_ttls` (a DoH answer's HTTP
//! `Age`) on the same bytes: never panics, changes nothing unless `scan` accepts them, and then only
//! the TTL octets of the records `scan` found (OPT's excepted). A name may point into a TTL, so the
//! aged copy need not scan; when it does, its question ends where it did.
#![no_main]

use lanveil_core::wire::{Error, header, message::scan, record::reduce_ttls};
use lanveil_fuzz::check_scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let scanned = scan(data);
    match &scanned {
        Ok(s) => check_scan(data, s),
        Err(Error::ShortHeader) => assert!(data.len() < header::LEN),
        Err(_) => assert!(data.len() >= header::LEN),
    }
    let age = data.first().map_or(0, |&b| u32::from(b) << 4);
    let mut aged = data.to_vec();
    match (reduce_ttls(&mut aged, age), scanned) {
        (Ok(()), Ok(s)) => {
            assert_eq!(aged.len(), data.len());
            let ttl_octets: Vec<usize> = s
                .records(data)
                .filter(|r| r.rtype != 41)
                .flat_map(|r| r.rdata.start - 6..r.rdata.start - 2)
                .collect();
            for (i, (a, d)) in aged.iter().zip(data).enumerate() {
                assert!(a == d || ttl_octets.contains(&i), "octet {i} is no TTL's");
            }
            if let Ok(again) = scan(&aged) {
                assert_eq!(again.question_end, s.question_end);
            }
        }
        (Err(_), Err(_)) => assert_eq!(aged, data, "refused input was changed"),
        (r, s) => panic!("reduce_ttls {:?} but scan {:?}", r.is_ok(), s.is_ok()),
    }
});
