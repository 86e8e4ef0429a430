//! DNS wire-format views and edits, written for a forwarder.
//!
//! Contract (smoltcp style): every function here takes untrusted bytes and either returns a value or a
//! small [`Error`]; none panics, allocates, or reads past the input. Outputs are written into
//! caller-provided `&mut [u8]` buffers through [`Writer`], and a too-small buffer is an error, never a
//! partial write that looks complete.
//!
//! What lanveil does with a message is decided by [`message::scan`], one linear walk that records the
//! offsets a forwarder needs (question, section ends, the OPT record) while checking every name
//! (label lengths, compression pointers strictly backwards, 255-octet limit) and every record length.
//! [`name`] is the one name codec (walk, expand, encode) and [`record`] walks the records of a
//! scanned message; every other part of lanveil that reads or writes DNS names uses them.

pub mod doq;
pub mod edns;
pub mod framing;
pub mod header;
pub mod message;
pub mod name;
pub mod record;
pub mod respond;
pub mod rewrite;

use core::fmt;

/// Why bytes were not a usable DNS message (or why an output did not fit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the 12-byte header: nothing can be answered.
    ShortHeader,
    /// A section or record runs past the end of the message.
    Truncated,
    /// A label with a reserved type, or a label longer than 63 octets.
    BadLabel,
    /// A compression pointer that does not point strictly backwards, or too many hops.
    BadPointer,
    /// A name longer than 255 octets.
    NameTooLong,
    /// More than one OPT record, an OPT not owned by the root, or malformed EDNS options.
    BadOpt,
    /// Bytes left after the last record the counts announce.
    TrailingData,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl Error {
    /// What went wrong, in words (the [`fmt::Display`] text).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ShortHeader => "message shorter than a DNS header",
            Self::Truncated => "message truncated",
            Self::BadLabel => "bad label",
            Self::BadPointer => "bad compression pointer",
            Self::NameTooLong => "name longer than 255 octets",
            Self::BadOpt => "malformed or duplicate OPT record",
            Self::TrailingData => "trailing data after the last record",
            Self::BufferTooSmall => "output buffer too small",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for Error {}

/// Record type A (RFC 1035 §3.2.2).
pub const TYPE_A: u16 = 1;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
/// Record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Record type TXT.
pub const TYPE_TXT: u16 = 16;
/// Record type AAAA (RFC 3596).
pub const TYPE_AAAA: u16 = 28;
/// Record type OPT (RFC 6891 §6.1.1).
pub const TYPE_OPT: u16 = 0x0029;
/// QTYPE `*` (ANY, RFC 1035 §3.2.3).
pub const TYPE_ANY: u16 = 255;
/// Class IN (RFC 1035 §3.2.4).
pub const CLASS_IN: u16 = 1;
/// QCLASS `*` (ANY, RFC 1035 §3.2.5).
pub const CLASS_ANY: u16 = 255;
/// The UDP payload size lanveil advertises and never exceeds on UDP (RFC 8900, DNS Flag Day 2020).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Largest UDP answer for a client without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: u16 = 512;

/// A cursor over a caller-provided output buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// `true` if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(Error::BufferTooSmall)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Appends a big-endian u16.
    pub fn put_u16(&mut self, v: u16) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }

    /// Appends a big-endian u32.
    pub fn put_u32(&mut self, v: u32) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }

    /// Appends `n` zero bytes.
    pub fn put_zeros(&mut self, n: usize) -> Result<(), Error> {
        let end = self.pos.checked_add(n).ok_or(Error::BufferTooSmall)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?;
        dst.fill(0);
        self.pos = end;
        Ok(())
    }

    /// Overwrites a big-endian u16 at an earlier position.
    pub fn patch_u16(&mut self, at: usize, v: u16) -> Result<(), Error> {
        if at + 2 > self.pos {
            return Err(Error::BufferTooSmall);
        }
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    pub(crate) fn buf_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.pos]
    }
}

pub(crate) fn be16(b: &[u8], at: usize) -> Result<u16, Error> {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(Error::Truncated),
    }
}
