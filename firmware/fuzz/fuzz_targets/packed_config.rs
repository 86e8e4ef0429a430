//! `Config::unpack` on arbitrary blobs (raw, or sealed in a valid envelope so the postcard decoder and
//! validation are reached): never panics; whatever unpacks re-packs and unpacks to the same value.
#![no_main]

use lanveil_config::Config;
use lanveil_config::envelope;
use lanveil_fuzz::Take;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: 0 = the bytes are a whole blob; otherwise they are a postcard body to seal.
    let mut t = Take(data);
    let mode = t.u8();
    let rest = t.rest();
    let blob = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        envelope::seal(b"LVCF", u16::from(mode >> 1 & 1), rest)
    };
    let Ok(c) = Config::unpack(&blob) else { return };
    assert_eq!(
        Config::unpack(&c.pack()).as_ref(),
        Ok(&c),
        "pack round trip"
    );
    // What validates also passes validation again, and its UCI form never panics to produce.
    assert!(c.validate().is_ok());
    let _ = Config::from_uci_text(&c.to_uci());
});
