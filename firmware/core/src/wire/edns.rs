//! EDNS(0) (RFC 6891): option walking, the OPT records lanveil writes, Extended DNS Errors
//! (RFC 8914) and padding (RFC 7830 with the RFC 8467 block-length policy).

use super::{Error, TYPE_OPT, Writer, be16};

/// DNSSEC OK flag in the OPT TTL's flag half (RFC 3225).
pub const FLAG_DO: u16 = 0x8000;
/// RFC 7871 §6: EDNS Client Subnet.
pub const OPTION_ECS: u16 = 0x0008;
/// RFC 7873 §4: DNS Cookie.
pub const OPTION_COOKIE: u16 = 0x000a;
/// RFC 7830 §3: Padding.
pub const OPTION_PADDING: u16 = 0x000c;
/// RFC 8914 §2: Extended DNS Error.
pub const OPTION_EDE: u16 = 0x000f;
/// RFC 8467 §4.1: queries are padded to a multiple of this many octets.
pub const QUERY_PAD_BLOCK: usize = 128;
/// Fixed part of an OPT record: root name, TYPE, CLASS, TTL, RDLENGTH.
pub const OPT_FIXED_LEN: usize = 11;
/// Longest EDE text lanveil writes or passes on.
pub const MAX_EDE_TEXT: usize = 128;

/// Extended DNS Error info codes used by lanveil (RFC 8914 §4).
pub mod ede {
    /// 0: Other.
    pub const OTHER: u16 = 0;
    /// 3: Stale Answer.
    pub const STALE_ANSWER: u16 = 3;
    /// 18: Prohibited.
    pub const PROHIBITED: u16 = 18;
    /// 19: Stale NXDOMAIN Answer.
    pub const STALE_NXDOMAIN_ANSWER: u16 = 19;
    /// 22: No Reachable Authority.
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    /// 23: Network Error.
    pub const NETWORK_ERROR: u16 = 23;
}

/// Iterates over `(code, data)` of the options in an OPT RDATA. Stops at the first malformed option;
/// [`check_options`] tells whether there is one.
pub fn options(rdata: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut pos = 0usize;
    core::iter::from_fn(move || {
        let code = be16(rdata, pos).ok()?;
        let len = usize::from(be16(rdata, pos + 2).ok()?);
        let data = rdata.get(pos + 4..pos + 4 + len)?;
        pos += 4 + len;
        Some((code, data))
    })
}

/// Checks that the option list exactly fills the RDATA.
pub fn check_options(rdata: &[u8]) -> Result<(), Error> {
    let mut pos = 0usize;
    while pos < rdata.len() {
        let len = usize::from(be16(rdata, pos + 2).map_err(|_| Error::BadOpt)?);
        pos += 4 + len;
        if pos > rdata.len() {
            return Err(Error::BadOpt);
        }
    }
    Ok(())
}

/// Writes an OPT record's fixed part; `rdlen` must match the options written after it.
pub fn emit_opt(
    w: &mut Writer<'_>,
    udp_size: u16,
    ext_rcode: u8,
    flags: u16,
    rdlen: u16,
) -> Result<(), Error> {
    w.put(&[0])?;
    w.put_u16(TYPE_OPT)?;
    w.put_u16(udp_size)?;
    w.put(&[ext_rcode, 0])?;
    w.put_u16(flags)?;
    w.put_u16(rdlen)
}

/// An Extended DNS Error: info code and a short text (never a query name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ede<'a> {
    /// INFO-CODE.
    pub code: u16,
    /// EXTRA-TEXT (UTF-8).
    pub text: &'a str,
}

impl Ede<'_> {
    /// Length of the whole option (code, length, data).
    pub fn option_len(&self) -> usize {
        4 + 2 + self.text.len().min(MAX_EDE_TEXT)
    }

    /// Writes the option.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        let text = &self.text.as_bytes()[..self.text.len().min(MAX_EDE_TEXT)];
        w.put_u16(OPTION_EDE)?;
        w.put_u16((2 + text.len()) as u16)?;
        w.put_u16(self.code)?;
        w.put(text)
    }
}

/// Length of the padding option (including its 4-byte header) that brings a message of `len`
/// octets, still without padding, to a multiple of `block`. Always adds the option (RFC 8467 §4.1
/// pads every query), so the result is 4 ..= block + 3.
pub fn padding_option_len(len: usize, block: usize) -> usize {
    let with_header = len + 4;
    let rem = with_header % block;
    4 + if rem == 0 { 0 } else { block - rem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterate_and_check_options() {
        let rdata = [0, 8, 0, 2, 0xaa, 0xbb, 0, 15, 0, 3, 0, 22, b'x'];
        let v: alloc::vec::Vec<_> = options(&rdata).collect();
        assert_eq!(v, [(8u16, &[0xaau8, 0xbb][..]), (15, &[0, 22, b'x'][..])]);
        assert_eq!(check_options(&rdata), Ok(()));
        assert_eq!(check_options(&rdata[..12]), Err(Error::BadOpt));
        assert_eq!(check_options(&rdata[..3]), Err(Error::BadOpt));
        assert_eq!(check_options(&[]), Ok(()));
    }

    #[test]
    fn emit_opt_with_ede_into_a5_buffer() {
        let mut buf = [0xa5u8; 40];
        let mut w = Writer::new(&mut buf);
        let e = Ede {
            code: ede::NETWORK_ERROR,
            text: "tls",
        };
        emit_opt(&mut w, 1232, 0, FLAG_DO, e.option_len() as u16).unwrap();
        e.emit(&mut w).unwrap();
        assert_eq!(
            w.written(),
            &[
                0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 9, 0, 15, 0, 5, 0, 23, b't', b'l', b's'
            ]
        );
    }

    #[test]
    fn rfc8467_padding_reaches_block_multiple() {
        for len in 12..600 {
            let p = padding_option_len(len, QUERY_PAD_BLOCK);
            assert_eq!((len + p) % QUERY_PAD_BLOCK, 0, "len {len}");
            assert!((4..QUERY_PAD_BLOCK + 4).contains(&p));
        }
    }
}
