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

/// A certificate's validity period in seconds since the Unix epoch (RFC 5280 §4.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: u64,
    /// notAfter.
    pub not_after: u64,
}

/// Reads the validity period of a DER certificate.
pub fn validity(cert: &[u8]) -> Result<Validity, BadCertificate> {
    const SEQUENCE: u8 = 0x30;
    let (_, _, cert_body) = tlv(cert)?;
    let (_, _, mut tbs) = tlv(cert_body)?;
    if tbs.first() == Some(&0xa0) {
        let (_, whole, _) = tlv(tbs)?;
        tbs = &tbs[whole.len()..];
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        let (_, whole, _) = tlv(tbs)?;
        tbs = &tbs[whole.len()..];
    }
    let (tag, _, validity) = tlv(tbs)?;
    if tag != SEQUENCE {
        return Err(BadCertificate);
    }
    let (t1, first, nb) = tlv(validity)?;
    let (t2, _, na) = tlv(&validity[first.len()..])?;
    Ok(Validity {
        not_before: der_time(t1, nb)?,
        not_after: der_time(t2, na)?,
    })
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ) to Unix seconds.
fn der_time(tag: u8, b: &[u8]) -> Result<u64, BadCertificate> {
    let digits = |r: core::ops::Range<usize>| -> Result<u64, BadCertificate> {
        let s = b.get(r).ok_or(BadCertificate)?;
        s.iter().try_fold(0u64, |acc, &c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + u64::from(c - b'0'))
            } else {
                Err(BadCertificate)
            }
        })
    };
    let (year, rest) = match (tag, b.len()) {
        (0x17, 13) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 15) => (digits(0..4)?, 4),
        _ => return Err(BadCertificate),
    };
    if b.last() != Some(&b'Z') {
        return Err(BadCertificate);
    }
    let month = digits(rest..rest + 2)?;
    let day = digits(rest + 2..rest + 4)?;
    let hour = digits(rest + 4..rest + 6)?;
    let min = digits(rest + 6..rest + 8)?;
    let sec = digits(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || min > 59
        || sec > 60
        || year < 1970
    {
        return Err(BadCertificate);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn der_times_to_unix() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Ok(0));
        assert_eq!(der_time(0x17, b"261123235508Z"), Ok(1_795_478_108));
        assert_eq!(der_time(0x18, b"20500101000000Z"), Ok(2_524_608_000));
        assert_eq!(der_time(0x17, b"2611232355Z"), Err(BadCertificate));
        assert_eq!(der_time(0x17, b"261323235508Z"), Err(BadCertificate));
    }

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
