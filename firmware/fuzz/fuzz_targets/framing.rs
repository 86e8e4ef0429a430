//! `framing::Decoder` fed a byte stream in arbitrary chunks yields exactly the frames (and the error)
//! that `framing::split` finds on the whole stream, and keeps the rest buffered.
#![no_main]

use lanveil_core::wire::framing::{Decoder, split};
use lanveil_fuzz::Take;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: how many chunk-size bytes follow (mod 16); they are cycled over the stream.
    let mut t = Take(data);
    let k = usize::from(t.u8() % 16);
    let sizes: Vec<usize> = t.bytes(k).iter().map(|&b| usize::from(b) + 1).collect();
    let stream = t.rest();

    // Reference: split repeatedly on the whole stream.
    let mut want = Vec::new();
    let mut pos = 0;
    let want_err = loop {
        match split(&stream[pos..]) {
            Ok(Some((m, used))) => {
                assert_eq!(used, m.len() + 2);
                assert!(!m.is_empty());
                want.push(m.to_vec());
                pos += used;
            }
            Ok(None) => break false,
            Err(_) => break true,
        }
    };

    let mut d = Decoder::new();
    let mut got = Vec::new();
    let mut got_err = false;
    let mut fed = 0;
    let mut i = 0;
    'feed: while fed < stream.len() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(stream.len());
        i += 1;
        let chunk = &stream[fed..(fed + n).min(stream.len())];
        fed += chunk.len();
        d.push(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => got.push(f.to_vec()),
                Ok(None) => break,
                Err(_) => {
                    got_err = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(got, want);
    assert_eq!(got_err, want_err);
    if !got_err {
        assert_eq!(
            d.buffered(),
            stream.len() - pos,
            "unconsumed bytes stay buffered"
        );
        assert_eq!(d.next_frame(), Ok(None));
    }
});
