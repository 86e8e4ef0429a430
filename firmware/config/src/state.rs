//! The daemon's small persisted state: what must survive a power cut on a router without a real-time
//! clock. Stored in an [`crate::envelope`] with magic `LVST`.

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::envelope::{self, EnvelopeError};

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

impl State {
    /// Encodes the state in its envelope.
    pub fn encode(&self) -> Vec<u8> {
        envelope::seal_value(MAGIC, STATE_VERSION, self)
    }

    /// Decodes an envelope.
    pub fn decode(blob: &[u8]) -> Result<Self, EnvelopeError> {
        envelope::open_value(MAGIC, STATE_VERSION, blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(State::decode(&bad), Err(EnvelopeError::BadChecksum));
        assert_eq!(
            State::decode(&blob[..blob.len() - 1]),
            Err(EnvelopeError::BadLength)
        );
        let mut future = blob.clone();
        future[4] = 9;
        assert_eq!(State::decode(&future), Err(EnvelopeError::FutureVersion(9)));
        assert_eq!(State::decode(b"nope"), Err(EnvelopeError::BadMagic));
    }
}
