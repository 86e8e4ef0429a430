//! HPACK (RFC 7541) for the DoH probe's HTTP/2 client ([`crate::http2`]): the ecosystem's codec
//! (`loona-hpack`, the maintained fork of the `hpack` crate) behind the two calls the client makes,
//! with the daemon's bound on a response's decoded header list and the HTTP/2 default table size.

use std::fmt;

/// SETTINGS_HEADER_TABLE_SIZE: the HTTP/2 default, which the client never changes.
pub const TABLE_SIZE: usize = 4096;

/// Why a header block could not be decoded (a connection error in HTTP/2 terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HpackError {
    /// Not a valid header block (the codec's reason).
    Invalid(String),
    /// The decoded header list (RFC 7541 §4.1: name + value + 32 per field) exceeds the limit.
    TooLarge,
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) => write!(f, "HPACK: {why}"),
            Self::TooLarge => f.write_str("response header list too large"),
        }
    }
}

impl std::error::Error for HpackError {}

/// One header field: name and value, as octets.
pub type Field = (Vec<u8>, Vec<u8>);

/// The decoding side of one HTTP/2 connection (its dynamic table).
pub struct Decoder(loona_hpack::Decoder<'static>);

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hpack::Decoder")
    }
}

impl Default for Decoder {
    fn default() -> Self {
        let mut d = loona_hpack::Decoder::new();
        // A size update above the table size we advertise (the default) is an error.
        d.set_max_allowed_table_size(TABLE_SIZE);
        Self(d)
    }
}

impl Decoder {
    /// Decodes one complete header block; fails once the fields' size would exceed `max_list`.
    pub fn decode(&mut self, block: &[u8], max_list: usize) -> Result<Vec<Field>, HpackError> {
        let mut fields = Vec::new();
        let mut list = 0usize;
        self.0
            .decode_with_cb(block, |name, value| {
                list = list.saturating_add(name.len() + value.len() + 32);
                if list <= max_list {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| HpackError::Invalid(e.to_string()))?;
        if list > max_list {
            return Err(HpackError::TooLarge);
        }
        Ok(fields)
    }
}

/// The encoding side of one HTTP/2 connection (its dynamic table mirrors the server's decoder).
pub struct Encoder(loona_hpack::Encoder<'static>);

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hpack::Encoder")
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self(loona_hpack::Encoder::new())
    }
}

impl Encoder {
    /// One header block holding `fields`, in order.
    pub fn encode(&mut self, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        self.0.encode(fields.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one side encodes the other decodes, across blocks (the dynamic table is shared).
    #[test]
    fn blocks_round_trip_between_encoder_and_decoder() {
        let (mut enc, mut dec) = (Encoder::default(), Decoder::default());
        for status in [&b"200"[..], b"404", b"200"] {
            let fields: [(&[u8], &[u8]); 2] = [
                (b":status", status),
                (b"content-type", b"application/dns-message"),
            ];
            let block = enc.encode(&fields);
            let got = dec.decode(&block, 16 * 1024).unwrap();
            let want: Vec<Field> = fields
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(got, want);
        }
    }

    /// RFC 7541 C.4.1 (Huffman-coded request); the bound on the decoded list; malformed blocks are
    /// errors, never panics.
    #[test]
    fn bounds_and_malformed_blocks() {
        let c41 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let got = Decoder::default().decode(&c41, 16 * 1024).unwrap();
        assert_eq!(
            got[3],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
        // 4 fields of (7 + 3 + 32), (7 + 4 + 32), (5 + 1 + 32), (10 + 15 + 32) octets.
        assert_eq!(
            Decoder::default().decode(&c41, 100),
            Err(HpackError::TooLarge)
        );
        for bad in [
            &[0x80][..],                     // index 0
            &[0xff, 0xff, 0xff, 0xff, 0x7f], // index far outside both tables
            &[0x41, 0x85, 0xff],             // string longer than the block
            &[0x3f, 0xe1, 0x1f],             // table size update above 4,096
            &[0x41, 0x81, 0xff],             // Huffman string with EOS
        ] {
            assert!(
                matches!(
                    Decoder::default().decode(bad, 16 * 1024),
                    Err(HpackError::Invalid(_))
                ),
                "{bad:02x?}"
            );
        }
    }
}
