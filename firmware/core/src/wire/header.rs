//! The 12-byte DNS header (RFC 1035 §4.1.1): read as a [`Header`], edited in place with the setters.

use super::{Error, be16};

/// Header length in octets.
pub const LEN: usize = 12;

/// Opcode QUERY.
pub const OPCODE_QUERY: u8 = 0;

/// RCODEs lanveil emits or inspects (RFC 1035 §4.1.1, RFC 6891 §9 for BADVERS).
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused.
    pub const REFUSED: u16 = 5;
    /// Bad EDNS version (extended RCODE 16).
    pub const BADVERS: u16 = 16;
}

const QR: u16 = 0x8000;
/// The AA (Authoritative Answer) flag.
pub const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
/// The AD (Authentic Data) flag (RFC 4035 §3.2.3).
pub const AD: u16 = 0x0020;
const CD: u16 = 0x0010;

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message ID.
    pub id: u16,
    /// The 16 flag bits as on the wire (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
    pub flags: u16,
    /// Questions.
    pub qdcount: u16,
    /// Answer records.
    pub ancount: u16,
    /// Authority records.
    pub nscount: u16,
    /// Additional records.
    pub arcount: u16,
}

impl Header {
    /// Reads the header; fails only if fewer than 12 bytes are present.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        if b.len() < LEN {
            return Err(Error::ShortHeader);
        }
        Ok(Self {
            id: be16(b, 0)?,
            flags: be16(b, 2)?,
            qdcount: be16(b, 4)?,
            ancount: be16(b, 6)?,
            nscount: be16(b, 8)?,
            arcount: be16(b, 10)?,
        })
    }

    /// Writes the header into the first 12 bytes of `b`.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), Error> {
        let dst = b.get_mut(..LEN).ok_or(Error::BufferTooSmall)?;
        dst[0..2].copy_from_slice(&self.id.to_be_bytes());
        dst[2..4].copy_from_slice(&self.flags.to_be_bytes());
        dst[4..6].copy_from_slice(&self.qdcount.to_be_bytes());
        dst[6..8].copy_from_slice(&self.ancount.to_be_bytes());
        dst[8..10].copy_from_slice(&self.nscount.to_be_bytes());
        dst[10..12].copy_from_slice(&self.arcount.to_be_bytes());
        Ok(())
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & QR != 0
    }
    /// The 4-bit opcode.
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
    /// The low 4 bits of the RCODE.
    pub fn rcode_low(&self) -> u16 {
        self.flags & 0x000f
    }
    /// TC: truncated.
    pub fn tc(&self) -> bool {
        self.flags & TC != 0
    }
    /// RD: recursion desired.
    pub fn rd(&self) -> bool {
        self.flags & RD != 0
    }
    /// AA: authoritative answer.
    pub fn aa(&self) -> bool {
        self.flags & AA != 0
    }
    /// Flags for a locally made response to a query with these flags: QR, the query's opcode, RD and
    /// CD, RA set, the low 4 bits of `rcode`.
    pub fn response_flags(query_flags: u16, rcode: u16) -> u16 {
        QR | (query_flags & (0x7800 | RD | CD)) | RA | (rcode & 0x000f)
    }
    /// Sets or clears TC in a flags word.
    pub fn with_tc(flags: u16, tc: bool) -> u16 {
        if tc { flags | TC } else { flags & !TC }
    }
    /// Flags of a query as forwarded upstream: the client's opcode, RD, AD and CD; QR, AA, TC, RA, Z and
    /// RCODE cleared.
    pub fn forwarded_query_flags(flags: u16) -> u16 {
        flags & (0x7800 | RD | AD | CD)
    }
}

/// Sets the message ID of a message in place.
pub fn set_id(b: &mut [u8], id: u16) -> Result<(), Error> {
    let dst = b.get_mut(0..2).ok_or(Error::ShortHeader)?;
    dst.copy_from_slice(&id.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // dig +noedns example.com A, id 0xbeef, RD set.
    const QUERY: [u8; 12] = [0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];

    #[test]
    fn deconstruct_header() {
        let h = Header::parse(&QUERY).unwrap();
        assert_eq!(h.id, 0xbeef);
        assert!(h.rd());
        assert!(!h.is_response());
        assert_eq!(h.opcode(), OPCODE_QUERY);
        assert_eq!((h.qdcount, h.ancount, h.nscount, h.arcount), (1, 0, 0, 0));
        assert_eq!(Header::parse(&QUERY[..11]), Err(Error::ShortHeader));
    }

    #[test]
    fn construct_header_into_a5_buffer() {
        let h = Header::parse(&QUERY).unwrap();
        let mut buf = [0xa5u8; 14];
        h.emit(&mut buf).unwrap();
        assert_eq!(&buf[..12], &QUERY);
        assert_eq!(&buf[12..], &[0xa5, 0xa5]);
        set_id(&mut buf, 0x1234).unwrap();
        assert_eq!(&buf[..2], &[0x12, 0x34]);
    }

    #[test]
    fn response_flags_keep_opcode_rd_cd() {
        // opcode 2 (STATUS), RD, CD, AD, AA, TC set in the query.
        let q = 0x1000 | RD | CD | AD | AA | TC;
        let r = Header::response_flags(q, rcode::NOTIMP);
        assert_eq!(r, QR | 0x1000 | RD | CD | RA | 4);
        assert_eq!(
            Header::forwarded_query_flags(q | QR | 0x5),
            0x1000 | RD | CD | AD
        );
    }
}
