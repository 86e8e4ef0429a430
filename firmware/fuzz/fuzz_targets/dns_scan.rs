//! `wire::message::scan` on arbitrary bytes: never panics; a success has ordered, in-bounds offsets
//! that an independent record walk agrees with.
#![no_main]

use lanveil_core::wire::{Error, header, message::scan};
use lanveil_fuzz::check_scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match scan(data) {
        Ok(s) => check_scan(data, &s),
        Err(Error::ShortHeader) => assert!(data.len() < header::LEN),
        Err(_) => assert!(data.len() >= header::LEN),
    }
});
