//! Domain names on the wire (RFC 1035 §3.1, §4.1.4): the one name codec of lanveil.
//!
//! [`skip`] walks a name in place, [`expand`] copies it out uncompressed, [`encode`] turns dotted
//! text into wire form and [`label_starts`] splits an uncompressed name into labels. Every walk of a
//! possibly compressed name goes through one function, so all of them enforce the same rules: labels
//! are 0–63 octets (types 01/10 are rejected), compression pointers point strictly backwards and
//! never into the header (which also rules out loops), at most 127 hops, labels reached through a
//! pointer lie entirely before that pointer, and the uncompressed name is at most 255 octets
//! (RFC 9267 lists what goes wrong otherwise).

use super::{Error, Writer, header};

/// Longest name, in octets, including length bytes and the root label.
pub const MAX_NAME_LEN: usize = 255;
/// Most labels a name can have (127 one-octet labels and the root fit in 255 octets).
pub const MAX_LABELS: usize = 128;
/// Longest label, in octets, without its length octet.
pub const MAX_LABEL_LEN: usize = 63;
const MAX_HOPS: usize = 127;

/// The one walk over a possibly compressed name at `start`: calls `label` with each label in order,
/// length octet included, the root label (`[0]`) last, and returns the offset just past the name
/// *in place* (after the terminating root label or after the first compression pointer).
#[inline(always)]
fn walk(
    msg: &[u8],
    start: usize,
    mut label: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<usize, Error> {
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
                    label(&[0])?;
                    return Ok(end_in_place.unwrap_or(pos + 1));
                }
                if pos + 1 + len > msg.len() {
                    return Err(Error::Truncated);
                }
                if end_in_place.is_some() && pos + 1 + len >= bound {
                    return Err(Error::BadPointer);
                }
                label(&msg[pos..pos + 1 + len])?;
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

/// Walks the name starting at `start` and returns the offset just past it *in place* (after the
/// terminating root label or after the first compression pointer).
pub fn skip(msg: &[u8], start: usize) -> Result<usize, Error> {
    walk(msg, start, |_| Ok(()))
}

/// Copies the (possibly compressed) name at `start` into `out` in uncompressed wire form, case kept,
/// under the rules of [`skip`]. Returns `(end, len)`: the offset just past the name in place (what
/// [`skip`] returns) and the length written to `out` (at most [`MAX_NAME_LEN`], so an `out` of that
/// size always suffices; a smaller one may give [`Error::BufferTooSmall`]).
pub fn expand(msg: &[u8], start: usize, out: &mut [u8]) -> Result<(usize, usize), Error> {
    let mut w = Writer::new(out);
    let end = walk(msg, start, |label| w.put(label))?;
    Ok((end, w.len()))
}

/// Encodes a dotted name into `out` in uncompressed wire form, case kept, and returns its length.
/// One trailing dot is allowed; `""` and `"."` are the root. There are no escapes: every dot ends a
/// label. Fails with [`Error::BadLabel`] for an empty label or one over 63 octets,
/// [`Error::NameTooLong`] over 255 octets, [`Error::BufferTooSmall`] if `out` is too small.
pub fn encode(dotted: &str, out: &mut [u8]) -> Result<usize, Error> {
    let dotted = dotted.strip_suffix('.').unwrap_or(dotted);
    if dotted.is_empty() {
        Writer::new(out).put(&[0])?;
        return Ok(1);
    }
    if dotted
        .split('.')
        .any(|l| l.is_empty() || l.len() > MAX_LABEL_LEN)
    {
        return Err(Error::BadLabel);
    }
    // Each label gains a length octet in place of its dot, and the root label ends the name.
    if dotted.len() + 2 > MAX_NAME_LEN {
        return Err(Error::NameTooLong);
    }
    let mut w = Writer::new(out);
    for label in dotted.split('.') {
        w.put(&[label.len() as u8])?;
        w.put(label.as_bytes())?;
    }
    w.put(&[0])?;
    Ok(w.len())
}

/// Records the start offset of each label of the uncompressed wire name `name` (which must end
/// exactly with its root label) and returns the number of labels, root excluded; `None` if `name`
/// is not such a name (a pointer, a reserved label type, trailing or missing bytes).
pub fn label_starts(name: &[u8], starts: &mut [u8; MAX_LABELS]) -> Option<usize> {
    let (mut pos, mut n) = (0usize, 0usize);
    loop {
        let len = usize::from(*name.get(pos)?);
        if len == 0 {
            return (pos + 1 == name.len()).then_some(n);
        }
        if len > MAX_LABEL_LEN {
            return None;
        }
        *starts.get_mut(n)? = u8::try_from(pos).ok()?;
        n += 1;
        pos += 1 + len;
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

/// Compares two questions (QNAME, QTYPE, QCLASS as on the wire, the name uncompressed): the names
/// ignoring ASCII case, QTYPE and QCLASS octet for octet (type 0x0041 is not type 0x0061).
pub fn question_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().wrapping_sub(4);
    match (a.split_at_checked(n), b.split_at_checked(n)) {
        (Some((a_name, a_fixed)), Some((b_name, b_fixed))) if a.len() == b.len() => {
            a_fixed == b_fixed && eq_ignore_case(a_name, b_name)
        }
        _ => false,
    }
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
    fn expand_follows_pointers_under_the_rules_of_skip() {
        let mut m = msg_with(b"\x07Example\x03com\x00\x03www\xc0\x0c");
        m[0] = 0;
        let mut out = [0u8; MAX_NAME_LEN];
        assert_eq!(expand(&m, 25, &mut out), Ok((31, 17)));
        assert_eq!(&out[..17], b"\x03www\x07Example\x03com\x00");
        assert_eq!(expand(&m, 12, &mut out), Ok((25, 13)));
        assert_eq!(expand(&m, 25, &mut out[..16]), Err(Error::BufferTooSmall));
        // Every name skip rejects, expand rejects the same way.
        for (m, at) in [
            (msg_with(b"\xc0\x0c"), 12),
            (msg_with(b"\xc0\x20"), 12),
            (msg_with(b"\x01a\x00\xc0\x02"), 15),
            (msg_with(b"\x01a\xc0\x11\x00\xc0\x0c"), 17),
            (msg_with(b"\x41abc"), 12),
        ] {
            assert_eq!(expand(&m, at, &mut out).map(|r| r.0), skip(&m, at));
            assert!(skip(&m, at).is_err());
        }
    }

    #[test]
    fn encode_dotted_names() {
        let mut out = [0u8; MAX_NAME_LEN];
        assert_eq!(encode("www.Example.com.", &mut out), Ok(17));
        assert_eq!(&out[..17], b"\x03www\x07Example\x03com\x00");
        assert_eq!(encode("www.example.com", &mut out), Ok(17));
        assert_eq!(encode("", &mut out), Ok(1));
        assert_eq!(encode(".", &mut out), Ok(1));
        assert_eq!(out[0], 0);
        for bad in ["a..b", "..", ".a", "a.b.."] {
            assert_eq!(encode(bad, &mut out), Err(Error::BadLabel), "{bad:?}");
        }
        let long = "x".repeat(64);
        assert_eq!(encode(&long, &mut out), Err(Error::BadLabel));
        assert_eq!(encode(&long[1..], &mut out), Ok(65));
        // 127 one-octet labels: 255 octets, the longest name; one more label is too long.
        let max = "a.".repeat(127);
        assert_eq!(encode(&max, &mut out), Ok(255));
        assert_eq!(encode(&(max + "a"), &mut out), Err(Error::NameTooLong));
        assert_eq!(encode("a.b", &mut out[..4]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn label_starts_of_uncompressed_names() {
        let mut starts = [0u8; MAX_LABELS];
        assert_eq!(
            label_starts(b"\x03www\x07example\x00", &mut starts),
            Some(2)
        );
        assert_eq!(&starts[..2], &[0, 4]);
        assert_eq!(label_starts(b"\x00", &mut starts), Some(0));
        assert_eq!(label_starts(b"\x03www\x00\x00", &mut starts), None);
        assert_eq!(label_starts(b"\x03www", &mut starts), None);
        assert_eq!(label_starts(b"\xc0\x0c", &mut starts), None);
    }

    #[test]
    fn case_insensitive_compare() {
        assert!(eq_ignore_case(b"\x03WwW\x00", b"\x03www\x00"));
        assert!(!eq_ignore_case(b"\x03wwx\x00", b"\x03www\x00"));
    }

    #[test]
    fn questions_match_ignoring_case_in_the_name_only() {
        assert!(question_eq(
            b"\x03WwW\x00\x00\x41\x00\x01",
            b"\x03www\x00\x00\x41\x00\x01"
        ));
        // QTYPE 0x0041 (HTTPS) is not 0x0061, nor QCLASS 0x0041 0x0061.
        assert!(!question_eq(
            b"\x03www\x00\x00\x41\x00\x01",
            b"\x03www\x00\x00\x61\x00\x01"
        ));
        assert!(!question_eq(
            b"\x03www\x00\x00\x01\x00\x41",
            b"\x03www\x00\x00\x01\x00\x61"
        ));
        assert!(!question_eq(
            b"\x03www\x00\x00\x01\x00\x01",
            b"\x03www\x00\x00\x01\x00"
        ));
        assert!(!question_eq(b"\x00\x01", b"\x00\x01"));
    }
}
