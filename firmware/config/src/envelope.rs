//! The one binary framing lanveil writes to disk or a socket: `MAGIC` (4 bytes), schema version (u16
//! LE), body length (u32 LE), body (postcard), CRC-32 (IEEE, LE) of everything before it. Used by the
//! state file (`LVST`), the control socket (`LVCQ` requests, `LVCR` responses) and packed
//! configurations (`LVCF`).

use alloc::vec::Vec;
use core::fmt;

/// Why an envelope was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Wrong magic: not this kind of blob.
    BadMagic,
    /// Written by a newer lanveil.
    FutureVersion(u16),
    /// An older schema this build no longer reads (packed configurations: only the current one).
    OldVersion(u16),
    /// Truncated, or the length field is wrong.
    BadLength,
    /// The checksum does not match (corruption).
    BadChecksum,
    /// The body does not decode.
    BadBody,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not a lanveil blob of the expected kind"),
            Self::FutureVersion(v) => write!(f, "schema version {v} is newer than this lanveil"),
            Self::OldVersion(v) => write!(
                f,
                "schema version {v} is older than this lanveil reads (pack it again with this version)"
            ),
            Self::BadLength => f.write_str("truncated or bad length"),
            Self::BadChecksum => f.write_str("checksum mismatch"),
            Self::BadBody => f.write_str("body does not decode"),
        }
    }
}

impl core::error::Error for EnvelopeError {}

/// CRC-32 (IEEE 802.3, reflected, as zlib), bitwise: tiny and fast enough for small blobs.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Header length (magic, version, body length).
pub const HEADER_LEN: usize = 10;

/// Wraps `body` in an envelope.
pub fn seal(magic: &[u8; 4], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 4);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Serializes `value` with postcard and seals it.
pub fn seal_value<T: serde::Serialize>(magic: &[u8; 4], version: u16, value: &T) -> Vec<u8> {
    let body = postcard::to_allocvec(value).unwrap_or_default();
    seal(magic, version, &body)
}

/// The total length of the envelope starting at `blob[0]`, once its header is there (for streams).
/// `None` while the header is incomplete, and when the length field describes an envelope larger
/// than this platform's address space (on 32-bit routers, a length near `u32::MAX`): either way the
/// caller must not read on.
pub fn total_len(blob: &[u8]) -> Option<usize> {
    frame_len(blob).ok()
}

/// [`total_len`] with the reason: [`EnvelopeError::BadLength`] for a truncated header or a length
/// this platform cannot represent.
pub fn frame_len(blob: &[u8]) -> Result<usize, EnvelopeError> {
    let len: [u8; 4] = blob
        .get(6..10)
        .and_then(|b| b.try_into().ok())
        .ok_or(EnvelopeError::BadLength)?;
    usize::total_for(u32::from_le_bytes(len)).ok_or(EnvelopeError::BadLength)
}

/// `HEADER_LEN + body + CRC` in an index type, checked: a `u32` body length plus the 14 framing bytes
/// does not fit a 32-bit `usize` (release builds have overflow checks, so unchecked it would panic).
/// Generic so the 32-bit case is testable on a 64-bit host (`u32` stands in for a 32-bit `usize`).
trait FrameTotal: Sized {
    fn total_for(body_len: u32) -> Option<Self>;
}

macro_rules! frame_total {
    ($($t:ty),*) => {$(
        impl FrameTotal for $t {
            fn total_for(body_len: u32) -> Option<Self> {
                const OVERHEAD: $t = (HEADER_LEN + 4) as $t;
                <$t>::try_from(body_len).ok()?.checked_add(OVERHEAD)
            }
        }
    )*};
}
frame_total!(usize, u32);

/// Checks an envelope and returns (version, body). `max_version` is the newest this build reads.
pub fn open<'a>(
    magic: &[u8; 4],
    max_version: u16,
    blob: &'a [u8],
) -> Result<(u16, &'a [u8]), EnvelopeError> {
    if blob.get(..4) != Some(magic.as_slice()) {
        return Err(EnvelopeError::BadMagic);
    }
    let v: [u8; 2] = blob
        .get(4..6)
        .ok_or(EnvelopeError::BadLength)?
        .try_into()
        .map_err(|_| EnvelopeError::BadLength)?;
    let version = u16::from_le_bytes(v);
    if version > max_version {
        return Err(EnvelopeError::FutureVersion(version));
    }
    let end = frame_len(blob)?;
    if blob.len() != end {
        return Err(EnvelopeError::BadLength);
    }
    let body_end = end - 4;
    let crc: [u8; 4] = blob[body_end..]
        .try_into()
        .map_err(|_| EnvelopeError::BadLength)?;
    if crc32(&blob[..body_end]) != u32::from_le_bytes(crc) {
        return Err(EnvelopeError::BadChecksum);
    }
    Ok((version, &blob[HEADER_LEN..body_end]))
}

/// Opens an envelope and decodes its postcard body.
pub fn open_value<'a, T: serde::Deserialize<'a>>(
    magic: &[u8; 4],
    max_version: u16,
    blob: &'a [u8],
) -> Result<T, EnvelopeError> {
    let (_, body) = open(magic, max_version, blob)?;
    postcard::from_bytes(body).map_err(|_| EnvelopeError::BadBody)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn seal_open_round_trip_and_damage() {
        let blob = seal(b"TEST", 2, b"hello");
        assert_eq!(total_len(&blob), Some(blob.len()));
        assert_eq!(open(b"TEST", 2, &blob), Ok((2, &b"hello"[..])));
        assert_eq!(
            open(b"TEST", 1, &blob),
            Err(EnvelopeError::FutureVersion(2))
        );
        assert_eq!(open(b"NOPE", 2, &blob), Err(EnvelopeError::BadMagic));
        let mut bad = blob.clone();
        bad[11] ^= 1;
        assert_eq!(open(b"TEST", 2, &bad), Err(EnvelopeError::BadChecksum));
        assert_eq!(
            open(b"TEST", 2, &blob[..blob.len() - 1]),
            Err(EnvelopeError::BadLength)
        );
        assert_eq!(open(b"TEST", 2, &[]), Err(EnvelopeError::BadMagic));
    }

    #[test]
    fn largest_length_field_is_a_typed_error_not_an_overflow() {
        // A header claiming a body of u32::MAX bytes: on a 32-bit router 10 + u32::MAX + 4 does not fit
        // a usize, and release builds check overflow, so unchecked arithmetic would panic the daemon on
        // one bad control-socket request. `u32` stands in for the 32-bit usize.
        assert_eq!(<u32 as FrameTotal>::total_for(u32::MAX), None);
        assert_eq!(<u32 as FrameTotal>::total_for(u32::MAX - 13), None);
        assert_eq!(
            <u32 as FrameTotal>::total_for(u32::MAX - 14),
            Some(u32::MAX)
        );
        assert_eq!(<u32 as FrameTotal>::total_for(5), Some(19));
        let mut blob = seal(b"TEST", 2, b"hello");
        blob[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(open(b"TEST", 2, &blob), Err(EnvelopeError::BadLength));
        assert_eq!(frame_len(&blob[..9]), Err(EnvelopeError::BadLength));
        let expect = usize::try_from(u64::from(u32::MAX) + 14).ok();
        assert_eq!(total_len(&blob), expect);
    }
}
