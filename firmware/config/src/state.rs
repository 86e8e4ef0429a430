//! The daemon's small persisted state (postcard in a versioned, checksummed envelope): what must
//! survive a power cut on a router without a real-time clock.
//!
//! Envelope: `b"LVST"`, schema version (u16 LE), body length (u32 LE), postcard body, CRC-32 (IEEE, LE)
//! of everything before it. Decoding rejects a wrong magic, a future version, a bad length or checksum.

use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"LVST";
/// The schema version this build writes and the newest it reads.
pub const STATE_VERSION: u16 = 1;

/// Persisted state, schema version 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The latest wall-clock time (Unix seconds) lanveil saw while the clock was synchronized: the
    /// time floor after a reboot.
    pub last_good_wall: u64,
}

/// Why a state blob was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Not a lanveil state file.
    BadMagic,
    /// Written by a newer lanveil.
    FutureVersion(u16),
    /// Truncated or the length field is wrong.
    BadLength,
    /// The checksum does not match (corruption).
    BadChecksum,
    /// The body does not decode.
    BadBody,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not a lanveil state file"),
            Self::FutureVersion(v) => {
                write!(f, "state schema version {v} is newer than this lanveil")
            }
            Self::BadLength => f.write_str("state file truncated"),
            Self::BadChecksum => f.write_str("state file checksum mismatch"),
            Self::BadBody => f.write_str("state file body does not decode"),
        }
    }
}

impl core::error::Error for StateError {}

/// CRC-32 (IEEE 802.3, reflected, as zlib), bitwise: tiny and fast enough for a few bytes.
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

impl State {
    /// Encodes the state in its envelope.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(14 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes an envelope.
    pub fn decode(blob: &[u8]) -> Result<Self, StateError> {
        if blob.get(..4) != Some(MAGIC.as_slice()) {
            return Err(StateError::BadMagic);
        }
        let version = u16::from_le_bytes([
            blob.get(4).copied().ok_or(StateError::BadLength)?,
            blob.get(5).copied().ok_or(StateError::BadLength)?,
        ]);
        if version > STATE_VERSION {
            return Err(StateError::FutureVersion(version));
        }
        let len_bytes: [u8; 4] = blob
            .get(6..10)
            .ok_or(StateError::BadLength)?
            .try_into()
            .map_err(|_| StateError::BadLength)?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let end = 10usize.checked_add(len).ok_or(StateError::BadLength)?;
        if blob.len() != end + 4 {
            return Err(StateError::BadLength);
        }
        let crc_bytes: [u8; 4] = blob[end..].try_into().map_err(|_| StateError::BadLength)?;
        if crc32(&blob[..end]) != u32::from_le_bytes(crc_bytes) {
            return Err(StateError::BadChecksum);
        }
        postcard::from_bytes(&blob[10..end]).map_err(|_| StateError::BadBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn state_round_trips_and_rejects_damage() {
        let s = State {
            last_good_wall: 1_795_478_108,
        };
        let blob = s.encode();
        assert_eq!(State::decode(&blob), Ok(s));
        // Golden bytes: the v1 format must stay readable by later versions.
        assert_eq!(&blob[..10], b"LVST\x01\x00\x05\x00\x00\x00");
        let mut bad = blob.clone();
        bad[11] ^= 1;
        assert_eq!(State::decode(&bad), Err(StateError::BadChecksum));
        assert_eq!(
            State::decode(&blob[..blob.len() - 1]),
            Err(StateError::BadLength)
        );
        let mut future = blob.clone();
        future[4] = 9;
        assert_eq!(State::decode(&future), Err(StateError::FutureVersion(9)));
        assert_eq!(State::decode(b"nope"), Err(StateError::BadMagic));
        assert_eq!(State::decode(&[]), Err(StateError::BadMagic));
    }
}
