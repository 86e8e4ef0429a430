//! The name codec on arbitrary bytes: `name::expand` at every offset fails exactly where
//! `name::skip` fails, ends where it ends, and writes an uncompressed name of at most 255 octets that
//! splits into labels and reads back the same; `name::encode` of the bytes as text either fails or
//! writes the labels of that text; over a message `scan` accepts, every record owner expands.
#![no_main]

use lanveil_core::wire::message::scan;
use lanveil_core::wire::name::{self, MAX_LABELS, MAX_NAME_LEN};
use lanveil_fuzz::check_scan;
use libfuzzer_sys::fuzz_target;

fn check_expand(data: &[u8], at: usize) {
    let mut buf = [0u8; MAX_NAME_LEN];
    let ours = name::expand(data, at, &mut buf);
    assert_eq!(ours.map(|(end, _)| end), name::skip(data, at), "at {at}");
    if let Ok((end, len)) = ours {
        assert!(at < end && end <= data.len());
        let wire = &buf[..len];
        let mut starts = [0u8; MAX_LABELS];
        assert!(name::label_starts(wire, &mut starts).is_some(), "{wire:?}");
        // An uncompressed name reads back as itself, and too small a buffer is an error.
        let mut again = [0u8; MAX_NAME_LEN];
        assert_eq!(name::expand(wire, 0, &mut again), Ok((len, len)));
        assert_eq!(&again[..len], wire);
        assert_eq!(
            name::expand(data, at, &mut again[..len - 1]).map(|r| r.0),
            Err(lanveil_core::wire::Error::BufferTooSmall)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    for at in 0..data.len().min(300) {
        check_expand(data, at);
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let mut buf = [0u8; MAX_NAME_LEN];
        if let Ok(len) = name::encode(text, &mut buf) {
            let labels = text.strip_suffix('.').unwrap_or(text);
            let mut starts = [0u8; MAX_LABELS];
            let n = name::label_starts(&buf[..len], &mut starts).expect("encode writes a name");
            let decoded: Vec<&[u8]> = starts[..n]
                .iter()
                .map(|&s| {
                    let s = usize::from(s);
                    &buf[s + 1..s + 1 + usize::from(buf[s])]
                })
                .collect();
            let want: Vec<&[u8]> = if labels.is_empty() {
                Vec::new()
            } else {
                labels.split('.').map(str::as_bytes).collect()
            };
            assert_eq!(decoded, want);
        }
    }
    if let Ok(s) = scan(data) {
        check_scan(data, &s);
        for r in s.records(data) {
            let mut buf = [0u8; MAX_NAME_LEN];
            assert_eq!(
                name::expand(data, r.owner, &mut buf).map(|e| e.0),
                Ok(r.owner_end())
            );
        }
    }
});
