//! The binary envelope and what travels in it (state file, control requests and responses): `open`,
//! `State::decode`, `Request::decode`, `Response::decode` never panic on any blob; what decodes
//! re-encodes to something that decodes to the same value.
#![no_main]

use lanveil_config::control::{Request, Response};
use lanveil_config::envelope::{self, EnvelopeError, HEADER_LEN};
use lanveil_config::state::State;
use lanveil_fuzz::Take;
use libfuzzer_sys::fuzz_target;

const MAGICS: [&[u8; 4]; 4] = [b"LVST", b"LVCQ", b"LVCR", b"LVCF"];

fuzz_target!(|data: &[u8]| {
    // First byte: bit 0 set = seal the rest as a body under magic (bits 1-2) and version (bit 3).
    let mut t = Take(data);
    let mode = t.u8();
    let rest = t.rest();
    let blob = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        envelope::seal(
            MAGICS[usize::from(mode >> 1 & 3)],
            u16::from(mode >> 3 & 1),
            rest,
        )
    };
    for magic in MAGICS {
        match envelope::open(magic, 1, &blob) {
            Ok((version, body)) => {
                assert!(version <= 1);
                assert_eq!(body.len() + HEADER_LEN + 4, blob.len());
                assert_eq!(envelope::total_len(&blob), Some(blob.len()));
                assert_eq!(
                    envelope::seal(magic, version, body),
                    blob,
                    "seal(open(b)) == b"
                );
            }
            Err(EnvelopeError::FutureVersion(v)) => assert!(v > 1),
            Err(_) => {}
        }
    }
    if let Ok(s) = State::decode(&blob) {
        assert_eq!(State::decode(&s.encode()), Ok(s));
    }
    if let Ok(r) = Request::decode(&blob) {
        assert_eq!(Request::decode(&r.encode()).as_ref(), Ok(&r));
    }
    if let Ok(r) = Response::decode(&blob) {
        assert_eq!(Response::decode(&r.encode()).as_ref(), Ok(&r));
    }
});
