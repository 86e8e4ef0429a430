//! Finds the SubjectPublicKeyInfo inside a DER X.509 certificate (RFC 5280 §4.1), for SPKI pinning
//! (RFC 7858 §4.2, RFC 7469). A minimal DER walker: it reads tags and lengths only, never interprets
//! keys, and rejects anything it cannot walk.

/// The certificate could not be walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadCertificate;

impl core::fmt::Display for BadCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("certificate is not well-formed DER")
    }
}

impl core::error::Error for BadCertificate {}

/// Reads one TLV at the start of `b`: (tag, whole element incl. header, content).
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), BadCertificate> {
    let tag = *b.first().ok_or(BadCertificate)?;
    let first = *b.get(1).ok_or(BadCertificate)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(BadCertificate);
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i).ok_or(BadCertificate)?);
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len).ok_or(BadCertificate)?;
    let whole = b.get(..end).ok_or(BadCertificate)?;
    Ok((tag, whole, &whole[hdr..]))
}

/// Returns the DER bytes of the certificate's SubjectPublicKeyInfo (the input of an SPKI pin hash).
pub fn subject_public_key_info(cert: &[u8]) -> Result<&[u8], BadCertificate> {
    const SEQUENCE: u8 = 0x30;
    let (tag, _, cert_body) = tlv(cert)?;
    if tag != SEQUENCE {
        return Err(BadCertificate);
    }
    let (tag, _, mut tbs) = tlv(cert_body)?;
    if tag != SEQUENCE {
        return Err(BadCertificate);
    }
    // [0] EXPLICIT version, optional.
    if tbs.first() == Some(&0xa0) {
        let (_, whole, _) = tlv(tbs)?;
        tbs = &tbs[whole.len()..];
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        let (_, whole, _) = tlv(tbs)?;
        tbs = &tbs[whole.len()..];
    }
    let (tag, spki, _) = tlv(tbs)?;
    if tag != SEQUENCE {
        return Err(BadCertificate);
    }
    Ok(spki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_garbage() {
        assert_eq!(subject_public_key_info(&[]), Err(BadCertificate));
        assert_eq!(
            subject_public_key_info(&[0x30, 0x82, 0xff]),
            Err(BadCertificate)
        );
        assert_eq!(
            subject_public_key_info(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(BadCertificate)
        );
        assert_eq!(subject_public_key_info(&[0x04, 0x00]), Err(BadCertificate));
    }
}
