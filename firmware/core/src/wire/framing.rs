//! Two-octet length framing of DNS over TCP and TLS (RFC 1035 §4.2.2, RFC 7766 §8, RFC 7858 §3.3).
//!
//! "Need more bytes" is `Ok(None)`, never an error; only a zero-length frame is malformed (no DNS
//! message is empty).

use super::Error;

/// Splits the first complete frame off `buf`: `Ok(Some((message, consumed)))`, `Ok(None)` if incomplete.
pub fn split(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    let Some(&[hi, lo]) = buf.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len == 0 {
        return Err(Error::Truncated);
    }
    Ok(buf.get(2..2 + len).map(|m| (m, 2 + len)))
}

/// The length prefix for a message of `len` octets.
pub fn prefix(len: usize) -> Result<[u8; 2], Error> {
    u16::try_from(len)
        .map(u16::to_be_bytes)
        .map_err(|_| Error::BufferTooSmall)
}

/// Reassembles frames from a byte stream (alloc).
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct Decoder {
    buf: alloc::vec::Vec<u8>,
    start: usize,
}

#[cfg(feature = "alloc")]
impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, if any.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, Error> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        match split(&self.buf[self.start..])? {
            Some((_, consumed)) => {
                let from = self.start + 2;
                self.start += consumed;
                Ok(Some(&self.buf[from..self.start]))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_incomplete_complete_and_empty() {
        assert_eq!(split(&[]), Ok(None));
        assert_eq!(split(&[0]), Ok(None));
        assert_eq!(split(&[0, 3, 1, 2]), Ok(None));
        assert_eq!(split(&[0, 3, 1, 2, 3, 9]), Ok(Some((&[1u8, 2, 3][..], 5))));
        assert_eq!(split(&[0, 0, 1]), Err(Error::Truncated));
        assert_eq!(prefix(300), Ok([1, 44]));
        assert!(prefix(70_000).is_err());
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn decoder_reassembles_byte_by_byte() {
        let stream = [0u8, 2, 0xaa, 0xbb, 0, 1, 0xcc, 0, 3];
        let mut d = Decoder::new();
        let mut frames = alloc::vec::Vec::new();
        for b in stream {
            d.push(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f.to_vec());
            }
        }
        assert_eq!(frames, [alloc::vec![0xaa, 0xbb], alloc::vec![0xcc]]);
        assert_eq!(d.buffered(), 2);
    }
}
