//! Domain names on the wire (RFC 1035 §3.1, §4.1.4): walking, never decompressing into a buffer.
//!
//! Rules enforced: labels are 0–63 octets (types 01/10 are rejected), compression pointers point
//! strictly backwards and never into the header (which also rules out loops), at most 127 hops, and the
//! uncompressed name is at most 255 octets (RFC 9267 lists what goes wrong otherwise).

use super::Error;
use super::header;

/// Longest name, in octets, including length bytes and the root label.
pub const MAX_NAME_LEN: usize = 255;
const MAX_HOPS: usize = 127;

/// Walks the name starting at `start` and returns the offset just past it *in place* (after the
/// terminating root label or after the first compression pointer).
pub fn skip(msg: &[u8], start: usize) -> Result<usize, Error> {
    let mut pos = start;
    let mut end_in_place: Option<usize> = None;
    let mut total = 0usize;
    let mut hops = 0usize;
    // The lowest offset a pointer may target: strictly before the current label sequence.
    let mut limit = start;
    // Labels reached through a pointer must lie entirely before that pointer: a name may never
    // read forward into bytes that come after it (or past the last record, where a rewrite would cut).
    let mut bound = msg.len();
    loop {
        if end_in_place.is_some() && pos >= bound {
            return Err(Error::BadPointer);
        }
        let len = *msg.get(pos).ok_or(Error::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                let len = usize::from(len);
                total += len + 1;
                if total > MAX_NAME_LEN {
                    return Err(Error::NameTooLong);
                }
                if len == 0 {
                    return Ok(end_in_place.unwrap_or(pos + 1));
                }
                if pos + 1 + len > msg.len() {
                    return Err(Error::Truncated);
                }
                if end_in_place.is_some() && pos + 1 + len >= bound {
                    return Err(Error::BadPointer);
                }
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(Error::Truncated)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                if end_in_place.is_none() {
                    end_in_place = Some(pos + 2);
                }
                hops += 1;
                if target >= limit || target < header::LEN || hops > MAX_HOPS {
                    return Err(Error::BadPointer);
                }
                limit = target;
                bound = pos;
                pos = target;
            }
            _ => return Err(Error::BadLabel),
        }
    }
}

/// The dotted text form of an uncompressed name in `msg[start..end]` (for the opt-in query log):
/// bytes outside printable ASCII, dots and backslashes inside labels are escaped as `\DDD`.
#[cfg(feature = "alloc")]
pub fn to_text(msg: &[u8], start: usize, end: usize) -> alloc::string::String {
    use core::fmt::Write as _;
    let mut out = alloc::string::String::new();
    let mut pos = start;
    while pos < end {
        let len = usize::from(msg[pos]);
        if len == 0 || len & 0xc0 != 0 || pos + 1 + len > end {
            break;
        }
        for &b in &msg[pos + 1..pos + 1 + len] {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "\\{b:03}");
            }
        }
        out.push('.');
        pos += 1 + len;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Compares two uncompressed wire-format byte ranges ignoring ASCII case (names are case-insensitive,
/// RFC 4343); used to check that an answer's question is the one that was asked.
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    // Upstreams echo the question as asked, so an exact match (a memcmp) is the usual case.
    a == b || a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg_with(name: &[u8]) -> [u8; 64] {
        let mut m = [0u8; 64];
        m[12..12 + name.len()].copy_from_slice(name);
        m
    }

    #[test]
    fn parse_plain_name() {
        let m = msg_with(b"\x07example\x03com\x00");
        assert_eq!(skip(&m, 12), Ok(12 + 13));
    }

    #[test]
    fn parse_pointer_backwards() {
        let mut m = msg_with(b"\x07example\x03com\x00\x03www\xc0\x0c");
        m[0] = 0;
        assert_eq!(skip(&m, 25), Ok(25 + 6));
    }

    #[test]
    fn reject_forward_self_and_header_pointers() {
        let m = msg_with(b"\xc0\x0c");
        assert_eq!(skip(&m, 12), Err(Error::BadPointer));
        let m = msg_with(b"\xc0\x20");
        assert_eq!(skip(&m, 12), Err(Error::BadPointer));
        let m = msg_with(b"\x01a\x00\xc0\x02");
        assert_eq!(skip(&m, 15), Err(Error::BadPointer));
    }

    #[test]
    fn reject_pointer_loop_via_two_names() {
        // name1 at 12: "a" then pointer to 17; name2 at 17: pointer to 12 → 12 < 17 fine, but then 17 >= limit 12.
        let m = msg_with(b"\x01a\xc0\x11\x00\xc0\x0c");
        assert_eq!(skip(&m, 17), Err(Error::BadPointer));
    }

    #[test]
    fn reject_pointer_to_labels_that_run_past_the_pointer() {
        // Fuzzer find: at 12 "a", then a label of length 63 that runs over the pointer at 15.
        let mut m = [0u8; 100];
        m[12..18].copy_from_slice(b"\x01a\x3f\x00\xc0\x0e");
        assert_eq!(skip(&m, 16), Err(Error::BadPointer));
        // A proper backward pointer to a complete earlier name still works.
        let m = msg_with(b"\x01a\x00\xc0\x0c");
        assert_eq!(skip(&m, 15), Ok(17));
    }

    #[test]
    fn reject_bad_labels_and_long_names() {
        assert_eq!(skip(&msg_with(b"\x41abc"), 12), Err(Error::BadLabel));
        assert_eq!(skip(&msg_with(b"\x05ab")[..15], 12), Err(Error::Truncated));
        let mut long = [0u8; 300];
        for chunk in long[..256].chunks_mut(64) {
            chunk[0] = 63;
        }
        assert_eq!(skip(&long, 0), Err(Error::NameTooLong));
    }

    #[test]
    fn case_insensitive_compare() {
        assert!(eq_ignore_case(b"\x03WwW\x00", b"\x03www\x00"));
        assert!(!eq_ignore_case(b"\x03wwx\x00", b"\x03www\x00"));
    }
}
