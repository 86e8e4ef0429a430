//! Captive-portal (RFC 8910) and IPv6-only-preferred (RFC 8925) signalling: the validated values
//! and the option encodings the OpenWrt package hands to dnsmasq and odhcpd (through
//! `lanveil --check-config FILE --print-signals`, the only encoder of these options in the product).
//!
//! The rules this module enforces:
//!
//! * **RFC 8910 §2**: the captive-portal API URI travels as DHCPv4 option 114 (one-octet length) and
//!   DHCPv6 option 103 (two-octet code and length). The URI is not NUL-terminated. The URN
//!   `urn:ietf:params:capport:unrestricted` says "no captive portal here". (RA option 37 is left to
//!   odhcpd, which builds it from the same URI.)
//! * **RFC 8908 §2**: the API must be reached over HTTPS, so [`CaptivePortalUri`] accepts only
//!   `https://` URIs with a non-empty host (and no userinfo), or exactly the "unrestricted" URN.
//!   lanveil caps the URI at 255 octets so one value fits every encoding (DHCPv4's length octet).
//! * **RFC 8925 §3.1**: option 108 carries a 4-octet big-endian V6ONLY_WAIT in seconds.
//! * **RFC 8925 §3.4**: as a *server* lanveil refuses to configure anything below MIN_V6ONLY_WAIT
//!   (300 s, [`V6OnlyWait::new`] errs) rather than announce a value every client silently raises.
//!
//! Parsers never panic on input: a non-UTF-8, non-HTTPS, too long or badly hex-encoded value is a
//! small [`Error`].

use core::fmt;

/// DHCPv4 option code of the captive-portal URI (RFC 8910 §2.1).
pub const DHCPV4_CAPTIVE_PORTAL: u8 = 114;
/// DHCPv4 option code of IPv6-Only Preferred (RFC 8925 §3.1).
pub const DHCPV4_V6ONLY_PREFERRED: u8 = 108;
/// DHCPv6 option code of the captive-portal URI (RFC 8910 §2.2).
pub const DHCPV6_CAPTIVE_PORTAL: u16 = 103;
/// MIN_V6ONLY_WAIT in seconds (RFC 8925 §3.4).
pub const MIN_V6ONLY_WAIT: u32 = 300;
/// The URN meaning "this network has no captive portal" (RFC 8910 §2).
pub const UNRESTRICTED: &str = "urn:ietf:params:capport:unrestricted";
/// Longest URI lanveil accepts, in octets (fits DHCPv4's one-octet option length).
pub const MAX_URI_LEN: usize = 255;

/// Why a value was refused or bytes were not a usable option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A hex-encoded option value with an odd number of digits.
    BadHex,
    /// The URI is not valid UTF-8.
    NotUtf8,
    /// Not an `https://` URI with a host, nor the "unrestricted" URN.
    BadUri,
    /// The URI is longer than [`MAX_URI_LEN`].
    UriTooLong,
    /// A V6ONLY_WAIT below [`MIN_V6ONLY_WAIT`] was configured.
    WaitTooShort,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadHex => "odd number of hex digits",
            Self::NotUtf8 => "captive-portal URI is not UTF-8",
            Self::BadUri => {
                "captive-portal URI must be https:// with a host, or the unrestricted URN"
            }
            Self::UriTooLong => "captive-portal URI longer than 255 octets",
            Self::WaitTooShort => "V6ONLY_WAIT below 300 seconds",
            Self::BufferTooSmall => "output buffer too small",
        })
    }
}

impl core::error::Error for Error {}

/// Which of the RFC 8910 encodings an option uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// DHCPv4 option 114: code, 1-octet length, URI.
    Dhcpv4,
    /// DHCPv6 option 103: 2-octet code, 2-octet length, URI.
    Dhcpv6,
}

/// A validated captive-portal API URI (≤ 255 octets, printable ASCII), stored inline.
#[derive(Clone)]
pub struct CaptivePortalUri {
    buf: [u8; MAX_URI_LEN],
    len: u8,
}

impl CaptivePortalUri {
    /// Validates `uri`: `https://` + a non-empty host (optional `:port`, no userinfo) + RFC 3986
    /// characters except `'` and `$` only, or exactly [`UNRESTRICTED`] (both compared
    /// case-insensitively).
    pub fn parse(uri: &[u8]) -> Result<Self, Error> {
        let s = core::str::from_utf8(uri).map_err(|_| Error::NotUtf8)?;
        if s.len() > MAX_URI_LEN {
            return Err(Error::UriTooLong);
        }
        if !s.bytes().all(is_uri_char) {
            return Err(Error::BadUri);
        }
        if !s.eq_ignore_ascii_case(UNRESTRICTED) {
            check_https(s)?;
        }
        Ok(Self::store(s.as_bytes()))
    }

    /// The "no captive portal" URN.
    pub fn unrestricted() -> Self {
        Self::store(UNRESTRICTED.as_bytes())
    }

    /// Reads option 114 as busybox udhcpc exports it to its script (`opt114`): the option's octets
    /// in hex (udhcpc has no name for 114), or, from a client that knows the option, the text
    /// itself. A value of hex digits only is hex (a URI always holds `:`); then [`Self::parse`].
    pub fn from_dhcp_value(value: &[u8]) -> Result<Self, Error> {
        if value.is_empty() || !value.iter().all(u8::is_ascii_hexdigit) {
            return Self::parse(value);
        }
        if !value.len().is_multiple_of(2) {
            return Err(Error::BadHex);
        }
        if value.len() > 2 * MAX_URI_LEN {
            return Err(Error::UriTooLong);
        }
        let mut buf = [0u8; MAX_URI_LEN];
        let nibble = |b: u8| match b {
            b'0'..=b'9' => b - b'0',
            _ => (b | 0x20) - b'a' + 10,
        };
        for (out, pair) in buf.iter_mut().zip(value.chunks_exact(2)) {
            *out = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        Self::parse(&buf[..value.len() / 2])
    }

    fn store(s: &[u8]) -> Self {
        let (mut buf, len) = ([0; MAX_URI_LEN], s.len().min(MAX_URI_LEN));
        buf[..len].copy_from_slice(&s[..len]);
        Self {
            buf,
            len: len as u8,
        }
    }

    /// The URI octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The URI (always ASCII).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// `true` for the "unrestricted" URN: the network says it has no captive portal.
    pub fn is_unrestricted(&self) -> bool {
        self.as_str().eq_ignore_ascii_case(UNRESTRICTED)
    }

    /// Octets the option takes in `enc`, headers included.
    pub fn buffer_len(&self, enc: Encoding) -> usize {
        let n = self.as_bytes().len();
        match enc {
            Encoding::Dhcpv4 => 2 + n,
            Encoding::Dhcpv6 => 4 + n,
        }
    }

    /// Writes the option at the start of `buf`; returns the octets written ([`Self::buffer_len`]).
    pub fn emit(&self, enc: Encoding, buf: &mut [u8]) -> Result<usize, Error> {
        let uri = self.as_bytes();
        let total = self.buffer_len(enc);
        let dst = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        // `parse` caps the URI at 255 octets, so both length fields hold it.
        let header = match enc {
            Encoding::Dhcpv4 => 2,
            Encoding::Dhcpv6 => 4,
        };
        let (head, body) = dst.split_at_mut(header);
        match enc {
            Encoding::Dhcpv4 => head.copy_from_slice(&[DHCPV4_CAPTIVE_PORTAL, uri.len() as u8]),
            Encoding::Dhcpv6 => {
                head[..2].copy_from_slice(&DHCPV6_CAPTIVE_PORTAL.to_be_bytes());
                head[2..].copy_from_slice(&(uri.len() as u16).to_be_bytes());
            }
        }
        body.copy_from_slice(uri);
        Ok(total)
    }
}

impl PartialEq for CaptivePortalUri {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for CaptivePortalUri {}

impl fmt::Debug for CaptivePortalUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for CaptivePortalUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3986 URI characters minus `'` and `$`: a URI that passed is printable ASCII with no space,
/// quote, backslash, backtick or `$`, so the OpenWrt scripts and config files it passes through (and
/// a script that forgot to quote it) never interpret it.
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!&()*+,;=%".contains(&b)
}

fn check_https(s: &str) -> Result<(), Error> {
    https_parts(s).map(|_| ()).ok_or(Error::BadUri)
}

/// The parts of an `https://` URI that passed [`CaptivePortalUri::parse`]'s rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpsParts<'a> {
    /// `host[:port]` as written (the HTTP `Host`).
    pub authority: &'a str,
    /// The host, without brackets for an IPv6 literal.
    pub host: &'a str,
    /// The port, 443 if none is written.
    pub port: u16,
    /// Path and query as written (empty, or starting with `/` or `?`), without the fragment.
    pub path_and_query: &'a str,
}

/// Splits and checks an `https://` URI: a non-empty host (bracketed IPv6 literal allowed), no
/// userinfo, an optional decimal port. `None` if it is not one.
pub fn https_parts(s: &str) -> Option<HttpsParts<'_>> {
    let rest = match s.get(..8) {
        Some(scheme) if scheme.eq_ignore_ascii_case("https://") => &s[8..],
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = if authority.starts_with('[') {
        host.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.contains(['[', ']'])
    };
    let port = match port {
        None => 443,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && (1..=5).contains(&p.len()) => {
            p.parse::<u16>().ok()?
        }
        Some(_) => return None,
    };
    if host.is_empty() || !host_ok {
        return None;
    }
    let path_and_query = rest[authority.len()..]
        .split('#')
        .next()
        .unwrap_or_default();
    Some(HttpsParts {
        authority,
        host,
        port,
        path_and_query,
    })
}

/// V6ONLY_WAIT: how long a client that accepted option 108 stays off IPv4 (RFC 8925), in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6OnlyWait(u32);

impl V6OnlyWait {
    /// Octets of the DHCPv4 option 108 TLV.
    pub const BUFFER_LEN: usize = 6;

    /// Server side: the value to announce; below [`MIN_V6ONLY_WAIT`] is refused.
    pub fn new(secs: u32) -> Result<Self, Error> {
        if secs < MIN_V6ONLY_WAIT {
            return Err(Error::WaitTooShort);
        }
        Ok(Self(secs))
    }

    /// The value in seconds (always ≥ 300).
    pub fn secs(&self) -> u32 {
        self.0
    }

    /// Writes the option 108 TLV (code, length 4, big-endian seconds) at the start of `buf`; returns 6.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let dst = buf
            .get_mut(..Self::BUFFER_LEN)
            .ok_or(Error::BufferTooSmall)?;
        dst[..2].copy_from_slice(&[DHCPV4_V6ONLY_PREFERRED, 4]);
        dst[2..].copy_from_slice(&self.0.to_be_bytes());
        Ok(Self::BUFFER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::String};

    const URI: &str = "https://portal.example/api";

    fn uri() -> CaptivePortalUri {
        CaptivePortalUri::parse(URI.as_bytes()).unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn https_parts_split_what_the_api_client_needs() {
        let p = https_parts("https://Portal.example:8443/api/v1?x=1#frag").unwrap();
        assert_eq!(
            (p.authority, p.host, p.port, p.path_and_query),
            ("Portal.example:8443", "Portal.example", 8443, "/api/v1?x=1")
        );
        let p = https_parts("https://[2001:db8::1]?q").unwrap();
        assert_eq!(
            (p.host, p.port, p.path_and_query),
            ("2001:db8::1", 443, "?q")
        );
        assert_eq!(https_parts("https://192.0.2.1").unwrap().path_and_query, "");
        for bad in [
            "http://x/",
            "https://",
            "https://u@x/",
            "https://x:/",
            "https://x:99999/",
            "https://[::1/",
        ] {
            assert_eq!(https_parts(bad), None, "{bad}");
        }
    }

    #[test]
    fn uri_validation() {
        let ok = "https://portal.example/api HTTPS://portal.example https://p.example:8443/a?x=1#f \
                  https://[2001:db8::1]:443/ https://192.0.2.1/ urn:ietf:params:capport:unrestricted \
                  URN:IETF:PARAMS:CAPPORT:UNRESTRICTED";
        for u in ok.split(' ') {
            assert!(CaptivePortalUri::parse(u.as_bytes()).is_ok(), "{u}");
        }
        let bad = "http://portal.example/api https:// https:///api https://:443/ https://u@p.example/ \
                   https://p.example:99999/ https://p.example:+80/ https://p.example:/ https://[2001:db8::1/ \
                   https://[]/ https://p.example/\"x\" https://p.example/a'b https://p.example/$(reboot) https://a]b/ urn:ietf:params:capport:unrestricted:x \
                   ftp://portal.example https://p.example/\t";
        for u in bad.split(' ').chain([""]) {
            assert_eq!(
                CaptivePortalUri::parse(u.as_bytes()).err(),
                Some(Error::BadUri),
                "{u}"
            );
        }
        let not_utf8 = CaptivePortalUri::parse(b"https://\xff.example");
        assert_eq!(not_utf8.err(), Some(Error::NotUtf8));
        let long = format!("https://a.example/{}", "x".repeat(MAX_URI_LEN - 18));
        assert_eq!(
            CaptivePortalUri::parse(long.as_bytes()).unwrap().as_str(),
            long
        );
        let long = long + "x";
        assert_eq!(
            CaptivePortalUri::parse(long.as_bytes()).err(),
            Some(Error::UriTooLong)
        );
        let urn = CaptivePortalUri::parse(UNRESTRICTED.to_ascii_uppercase().as_bytes()).unwrap();
        assert!(urn.is_unrestricted() && !uri().is_unrestricted());
    }

    #[test]
    fn dhcpv4_and_dhcpv6_encodings() {
        let (u, n) = (uri(), URI.len() as u8);
        let v4 = [&[114, n][..], URI.as_bytes()].concat();
        let v6 = [&[0, 103, 0, n][..], URI.as_bytes()].concat();
        for (enc, want) in [(Encoding::Dhcpv4, v4), (Encoding::Dhcpv6, v6)] {
            assert_eq!(u.buffer_len(enc), want.len());
            let mut buf = [0xa5u8; 300];
            assert_eq!(u.emit(enc, &mut buf), Ok(want.len()));
            assert_eq!(&buf[..want.len()], &want[..], "{enc:?}");
            assert!(buf[want.len()..].iter().all(|&x| x == 0xa5));
            let short = &mut buf[..want.len() - 1];
            assert_eq!(u.emit(enc, short), Err(Error::BufferTooSmall));
        }
        // The longest URI still fits both length fields.
        let long = format!("https://a.example/{}", "x".repeat(MAX_URI_LEN - 18));
        let u = CaptivePortalUri::parse(long.as_bytes()).unwrap();
        let mut buf = [0u8; 300];
        assert_eq!(u.emit(Encoding::Dhcpv4, &mut buf), Ok(257));
        assert_eq!(buf[1], 255);
        assert_eq!(u.emit(Encoding::Dhcpv6, &mut buf), Ok(259));
        assert_eq!(&buf[..4], &[0, 103, 0, 255]);
    }

    #[test]
    fn dhcp_value_as_udhcpc_exports_it() {
        for v in [
            hex(URI.as_bytes()),
            hex(URI.as_bytes()).to_ascii_uppercase(),
            URI.into(),
        ] {
            assert_eq!(
                CaptivePortalUri::from_dhcp_value(v.as_bytes()),
                Ok(uri()),
                "{v}"
            );
        }
        let urn = hex(UNRESTRICTED.as_bytes());
        assert!(
            CaptivePortalUri::from_dhcp_value(urn.as_bytes())
                .unwrap()
                .is_unrestricted()
        );
        let odd = &hex(URI.as_bytes())[1..];
        assert_eq!(
            CaptivePortalUri::from_dhcp_value(odd.as_bytes()),
            Err(Error::BadHex)
        );
        let control = format!("{}0a", hex(b"https://ok.example/"));
        assert_eq!(
            CaptivePortalUri::from_dhcp_value(control.as_bytes()),
            Err(Error::BadUri)
        );
        let long = hex(format!("https://{}", "a".repeat(248)).as_bytes());
        assert_eq!(
            CaptivePortalUri::from_dhcp_value(long.as_bytes()),
            Err(Error::UriTooLong)
        );
        for bad in ["", "00", "http://x/", "https://x/a b"] {
            assert!(
                CaptivePortalUri::from_dhcp_value(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn v6only_wait() {
        assert_eq!(V6OnlyWait::new(299), Err(Error::WaitTooShort));
        let w = V6OnlyWait::new(1800).unwrap();
        assert_eq!(w.secs(), 1800);
        let mut buf = [0xa5u8; 8];
        assert_eq!(w.emit(&mut buf), Ok(6));
        assert_eq!(buf, [108, 4, 0, 0, 7, 8, 0xa5, 0xa5]);
        assert_eq!(w.emit(&mut [0; 5]), Err(Error::BufferTooSmall));
    }
}
