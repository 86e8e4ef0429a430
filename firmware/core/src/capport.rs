//! Captive-portal (RFC 8910) and IPv6-only-preferred (RFC 8925) signalling: validated values, option
//! encoders for the LAN side and decoders for what an upstream (hotel) network sends on the WAN side.
//!
//! The rules this module enforces:
//!
//! * **RFC 8910 §2**: the captive-portal API URI travels as DHCPv4 option 114 (one-octet length),
//!   DHCPv6 option 103 (two-octet code and length) and RA option 37 (type, length in units of 8 octets,
//!   the URI padded with NUL to a multiple of 8). The URI is not NUL-terminated. The URN
//!   `urn:ietf:params:capport:unrestricted` says "no captive portal here".
//! * **RFC 8908 §2**: the API must be reached over HTTPS, so [`CaptivePortalUri`] accepts only
//!   `https://` URIs with a non-empty host (and no userinfo), or exactly the "unrestricted" URN.
//!   lanveil caps the URI at 255 octets so one value fits all three encodings (DHCPv4's length octet).
//! * **RFC 8925 §3.1**: option 108 carries a 4-octet big-endian V6ONLY_WAIT in seconds.
//! * **RFC 8925 §3.4**: a *client* uses MIN_V6ONLY_WAIT (300 s) when the value is smaller
//!   ([`V6OnlyWait::from_wire`] clamps). As a *server* lanveil refuses to configure anything below
//!   300 s ([`V6OnlyWait::new`] errs) rather than announce a value every client silently raises.
//! * **RFC 8925 §3.3**: option 108 is sent only to clients that list it in their Parameter Request List
//!   ([`Signals::dhcpv4_options`]; 114 follows the same rule, as dnsmasq does).
//! * **RFC 8925 §4**: option 108 must not be enabled on a network without NAT64, so [`Signals::new`]
//!   refuses a V6ONLY_WAIT without a [`Nat64Prefix`] (RFC 6052 §2.2: length 32/40/48/56/64/96, bits
//!   64–71 zero).
//!
//! Decoders never panic on input: truncated options, bad lengths, non-UTF-8 or non-HTTPS URIs are
//! small [`Error`]s. Repeated DHCPv4 options are concatenated (RFC 3396); option overload (option 52,
//! options in `sname`/`file`) is not followed. In DHCPv6 messages and RAs the first option 103/37 wins.

use core::fmt;

/// smoltcp types that appear in this module's API, re-exported so callers need no smoltcp of their own.
pub use smoltcp::wire::{DhcpMessageType, DhcpOption, DhcpPacket, DhcpRepr, EthernetAddress};
use smoltcp::wire::{DhcpOptionWriter, Icmpv6Message, Icmpv6Packet, NdiscOption, NdiscOptionType};

/// DHCPv4 option code of the captive-portal URI (RFC 8910 §2.1).
pub const DHCPV4_CAPTIVE_PORTAL: u8 = 114;
/// DHCPv4 option code of IPv6-Only Preferred (RFC 8925 §3.1).
pub const DHCPV4_V6ONLY_PREFERRED: u8 = 108;
/// DHCPv6 option code of the captive-portal URI (RFC 8910 §2.2).
pub const DHCPV6_CAPTIVE_PORTAL: u16 = 103;
/// IPv6 RA option type of the captive-portal URI (RFC 8910 §2.3).
pub const RA_CAPTIVE_PORTAL: u8 = 37;
/// MIN_V6ONLY_WAIT in seconds (RFC 8925 §3.4).
pub const MIN_V6ONLY_WAIT: u32 = 300;
/// The URN meaning "this network has no captive portal" (RFC 8910 §2).
pub const UNRESTRICTED: &str = "urn:ietf:params:capport:unrestricted";
/// Longest URI lanveil accepts, in octets (fits DHCPv4's one-octet option length).
pub const MAX_URI_LEN: usize = 255;

const DHCP_MAGIC: [u8; 4] = [0x63, 0x82, 0x53, 0x63];
const DHCP_OPTIONS_AT: usize = 240;
const RA_HEADER_LEN: usize = 16;

/// Why a value was refused or bytes were not a usable option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An option or message runs past the end of the input.
    Truncated,
    /// A length field that is wrong for the option (e.g. 108 not 4 octets, an RA option of length 0).
    BadLength,
    /// An option of another code/type than the one asked for.
    WrongOption,
    /// Bytes that are not a DHCPv4/DHCPv6 message or an ICMPv6 Router Advertisement.
    NotAMessage,
    /// The URI is not valid UTF-8.
    NotUtf8,
    /// Not an `https://` URI with a host, nor the "unrestricted" URN.
    BadUri,
    /// The URI is longer than [`MAX_URI_LEN`].
    UriTooLong,
    /// A V6ONLY_WAIT below [`MIN_V6ONLY_WAIT`] was configured.
    WaitTooShort,
    /// A NAT64 prefix with a length RFC 6052 does not allow, host bits set, or bits 64–71 set.
    BadNat64Prefix,
    /// Option 108 was configured without a NAT64 prefix (RFC 8925 §4).
    Nat64Required,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "option truncated",
            Self::BadLength => "bad option length",
            Self::WrongOption => "unexpected option code",
            Self::NotAMessage => "not a DHCP message or router advertisement",
            Self::NotUtf8 => "captive-portal URI is not UTF-8",
            Self::BadUri => {
                "captive-portal URI must be https:// with a host, or the unrestricted URN"
            }
            Self::UriTooLong => "captive-portal URI longer than 255 octets",
            Self::WaitTooShort => "V6ONLY_WAIT below 300 seconds",
            Self::BadNat64Prefix => {
                "NAT64 prefix must be /32, /40, /48, /56, /64 or /96 (RFC 6052)"
            }
            Self::Nat64Required => "IPv6-only preferred (option 108) requires a NAT64 prefix",
            Self::BufferTooSmall => "output buffer too small",
        })
    }
}

impl core::error::Error for Error {}

/// Which of the three RFC 8910 encodings an option uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// DHCPv4 option 114: code, 1-octet length, URI.
    Dhcpv4,
    /// DHCPv6 option 103: 2-octet code, 2-octet length, URI.
    Dhcpv6,
    /// RA option 37: type, length in 8-octet units, URI, NUL padding.
    Ra,
}

/// A validated captive-portal API URI (≤ 255 octets, printable ASCII), stored inline.
#[derive(Clone)]
pub struct CaptivePortalUri {
    buf: [u8; MAX_URI_LEN],
    len: u8,
}

impl CaptivePortalUri {
    /// Validates `uri`: `https://` + a non-empty host (optional `:port`, no userinfo) + RFC 3986
    /// characters only, or exactly [`UNRESTRICTED`] (both compared case-insensitively).
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

    /// Octets the option takes in `enc`, headers and padding included.
    pub fn buffer_len(&self, enc: Encoding) -> usize {
        let n = self.as_bytes().len();
        match enc {
            Encoding::Dhcpv4 => 2 + n,
            Encoding::Dhcpv6 => 4 + n,
            Encoding::Ra => (2 + n).div_ceil(8) * 8,
        }
    }

    /// Writes the option at the start of `buf`; returns the octets written ([`Self::buffer_len`]).
    pub fn emit(&self, enc: Encoding, buf: &mut [u8]) -> Result<usize, Error> {
        let uri = self.as_bytes();
        let total = self.buffer_len(enc);
        let dst = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        match enc {
            Encoding::Dhcpv4 => DhcpOptionWriter::new(dst)
                .emit(DhcpOption {
                    kind: DHCPV4_CAPTIVE_PORTAL,
                    data: uri,
                })
                .map_err(|_| Error::BufferTooSmall)?,
            Encoding::Dhcpv6 => {
                dst[..2].copy_from_slice(&DHCPV6_CAPTIVE_PORTAL.to_be_bytes());
                dst[2..4].copy_from_slice(&(uri.len() as u16).to_be_bytes());
                dst[4..].copy_from_slice(uri);
            }
            Encoding::Ra => {
                let mut opt = NdiscOption::new_unchecked(dst);
                opt.set_option_type(NdiscOptionType::Unknown(RA_CAPTIVE_PORTAL));
                opt.set_data_len((total / 8) as u8);
                let data = opt.data_mut();
                data.fill(0);
                data[..uri.len()].copy_from_slice(uri);
            }
        }
        Ok(total)
    }

    /// Reads one option in `enc` from the start of `option`; returns it and the octets it took.
    pub fn parse_option(enc: Encoding, option: &[u8]) -> Result<(Self, usize), Error> {
        let (code, data, used) = match enc {
            Encoding::Dhcpv4 => dhcpv4_tlv(option).map(|(c, d, u)| (u16::from(c), d, u))?,
            Encoding::Dhcpv6 => dhcpv6_tlv(option)?,
            Encoding::Ra => {
                let used = ra_option_len(option)?;
                let opt =
                    NdiscOption::new_checked(&option[..used]).map_err(|_| Error::Truncated)?;
                let data = opt.data();
                let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                (u16::from(u8::from(opt.option_type())), &data[..end], used)
            }
        };
        let want = match enc {
            Encoding::Dhcpv4 => u16::from(DHCPV4_CAPTIVE_PORTAL),
            Encoding::Dhcpv6 => DHCPV6_CAPTIVE_PORTAL,
            Encoding::Ra => u16::from(RA_CAPTIVE_PORTAL),
        };
        if code != want {
            return Err(Error::WrongOption);
        }
        Ok((Self::parse(data)?, used))
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

fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
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
pub struct V6OnlyWait([u8; 4]);

impl V6OnlyWait {
    /// Octets of the DHCPv4 option 108 TLV.
    pub const BUFFER_LEN: usize = 6;

    /// Server side: the value to announce; below [`MIN_V6ONLY_WAIT`] is refused.
    pub fn new(secs: u32) -> Result<Self, Error> {
        if secs < MIN_V6ONLY_WAIT {
            return Err(Error::WaitTooShort);
        }
        Ok(Self(secs.to_be_bytes()))
    }

    /// Client side (RFC 8925 §3.4): a received value below MIN_V6ONLY_WAIT is used as MIN_V6ONLY_WAIT.
    pub fn from_wire(secs: u32) -> Self {
        Self(secs.max(MIN_V6ONLY_WAIT).to_be_bytes())
    }

    /// The value in seconds (always ≥ 300).
    pub fn secs(&self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// The 4-octet big-endian option value.
    pub fn octets(&self) -> &[u8; 4] {
        &self.0
    }

    /// Writes the option 108 TLV at the start of `buf`; returns 6.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let dst = buf
            .get_mut(..Self::BUFFER_LEN)
            .ok_or(Error::BufferTooSmall)?;
        DhcpOptionWriter::new(dst)
            .emit(DhcpOption {
                kind: DHCPV4_V6ONLY_PREFERRED,
                data: &self.0,
            })
            .map_err(|_| Error::BufferTooSmall)?;
        Ok(Self::BUFFER_LEN)
    }

    /// Reads an option 108 TLV (length must be 4, RFC 8925 §3.1); the value is clamped as a client does.
    pub fn parse_option(option: &[u8]) -> Result<(Self, usize), Error> {
        let (code, data, used) = dhcpv4_tlv(option)?;
        if code != DHCPV4_V6ONLY_PREFERRED {
            return Err(Error::WrongOption);
        }
        Ok((Self::from_value(data)?, used))
    }

    fn from_value(data: &[u8]) -> Result<Self, Error> {
        let v: [u8; 4] = data.try_into().map_err(|_| Error::BadLength)?;
        Ok(Self::from_wire(u32::from_be_bytes(v)))
    }
}

pub use crate::nat64::Nat64Prefix;

impl From<crate::nat64::Nat64Error> for Error {
    fn from(_: crate::nat64::Nat64Error) -> Self {
        Self::BadNat64Prefix
    }
}

/// What the owner wants announced on the LAN. Option 108 only exists together with a NAT64 prefix.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Signals {
    captive_portal: Option<CaptivePortalUri>,
    v6only: Option<(V6OnlyWait, Nat64Prefix)>,
}

impl Signals {
    /// Builds the configuration; a V6ONLY_WAIT without a NAT64 prefix is [`Error::Nat64Required`].
    pub fn new(
        captive_portal: Option<CaptivePortalUri>,
        v6only_wait: Option<V6OnlyWait>,
        nat64: Option<Nat64Prefix>,
    ) -> Result<Self, Error> {
        let v6only = match (v6only_wait, nat64) {
            (Some(_), None) => return Err(Error::Nat64Required),
            (Some(w), Some(p)) => Some((w, p)),
            (None, _) => None,
        };
        Ok(Self {
            captive_portal,
            v6only,
        })
    }

    /// The captive-portal URI to announce, if any.
    pub fn captive_portal(&self) -> Option<&CaptivePortalUri> {
        self.captive_portal.as_ref()
    }

    /// The V6ONLY_WAIT to announce, if any.
    pub fn v6only_wait(&self) -> Option<V6OnlyWait> {
        self.v6only.map(|(w, _)| w)
    }

    /// The NAT64 prefix that justifies option 108.
    pub fn nat64(&self) -> Option<Nat64Prefix> {
        self.v6only.map(|(_, p)| p)
    }

    /// The DHCPv4 options for a reply to a client with this Parameter Request List (empty if it sent
    /// none): 108 and 114 only if listed (RFC 8925 §3.3). For [`DhcpRepr::additional_options`].
    pub fn dhcpv4_options<'a>(&'a self, prl: &[u8]) -> Dhcpv4Options<'a> {
        let none = DhcpOption { kind: 0, data: &[] };
        let mut out = Dhcpv4Options {
            opts: [none; 2],
            n: 0,
        };
        let mut push = |kind, data| {
            if prl.contains(&kind) {
                out.opts[out.n] = DhcpOption { kind, data };
                out.n += 1;
            }
        };
        if let Some(uri) = &self.captive_portal {
            push(DHCPV4_CAPTIVE_PORTAL, uri.as_bytes());
        }
        if let Some((wait, _)) = &self.v6only {
            push(DHCPV4_V6ONLY_PREFERRED, &wait.0[..]);
        }
        out
    }
}

/// At most two DHCPv4 options (114, 108) chosen by [`Signals::dhcpv4_options`].
#[derive(Clone, Copy, Debug)]
pub struct Dhcpv4Options<'a> {
    opts: [DhcpOption<'a>; 2],
    n: usize,
}

impl<'a> Dhcpv4Options<'a> {
    /// The options, for `DhcpRepr { additional_options, .. }`.
    pub fn as_slice(&self) -> &[DhcpOption<'a>] {
        &self.opts[..self.n]
    }
}

/// Signals read from an upstream network's DHCPv4/DHCPv6 reply or Router Advertisement.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WanSignals {
    /// Captive-portal API URI (option 114, 103 or 37).
    pub captive_portal: Option<CaptivePortalUri>,
    /// IPv6-only preferred (option 108), already clamped to ≥ 300 s.
    pub v6only_wait: Option<V6OnlyWait>,
}

impl WanSignals {
    /// Reads options 114 and 108 from a whole DHCPv4 message (BOOTP header + magic cookie + options).
    pub fn from_dhcpv4(msg: &[u8]) -> Result<Self, Error> {
        let packet = DhcpPacket::new_checked(msg).map_err(|_| Error::NotAMessage)?;
        if packet.magic_number().to_be_bytes() != DHCP_MAGIC {
            return Err(Error::NotAMessage);
        }
        let (mut uri, mut uri_len, mut wait, mut wait_len) = ([0u8; MAX_URI_LEN], 0, [0u8; 4], 0);
        let (mut seen_uri, mut seen_wait) = (false, false);
        let mut rest = msg.get(DHCP_OPTIONS_AT..).unwrap_or_default();
        while let Some(&code) = rest.first() {
            match code {
                0 => rest = &rest[1..],
                255 => break,
                _ => {
                    let (code, data, used) = dhcpv4_tlv(rest)?;
                    // RFC 3396: repeated instances are concatenated.
                    if code == DHCPV4_CAPTIVE_PORTAL {
                        seen_uri = true;
                        append(&mut uri, &mut uri_len, data).map_err(|_| Error::UriTooLong)?;
                    } else if code == DHCPV4_V6ONLY_PREFERRED {
                        seen_wait = true;
                        append(&mut wait, &mut wait_len, data).map_err(|_| Error::BadLength)?;
                    }
                    rest = &rest[used..];
                }
            }
        }
        Ok(Self {
            captive_portal: seen_uri
                .then(|| CaptivePortalUri::parse(&uri[..uri_len]))
                .transpose()?,
            v6only_wait: seen_wait
                .then(|| V6OnlyWait::from_value(&wait[..wait_len]))
                .transpose()?,
        })
    }

    /// Reads option 103 from a DHCPv6 client/server message (not relay messages).
    pub fn from_dhcpv6(msg: &[u8]) -> Result<Self, Error> {
        match msg.first() {
            Some(1..=11) if msg.len() >= 4 => {}
            Some(_) if msg.len() >= 4 => return Err(Error::NotAMessage),
            _ => return Err(Error::Truncated),
        }
        let mut rest = &msg[4..];
        let mut out = Self::default();
        while !rest.is_empty() {
            let (code, data, used) = dhcpv6_tlv(rest)?;
            if code == DHCPV6_CAPTIVE_PORTAL && out.captive_portal.is_none() {
                out.captive_portal = Some(CaptivePortalUri::parse(data)?);
            }
            rest = &rest[used..];
        }
        Ok(out)
    }

    /// Reads option 37 from an ICMPv6 Router Advertisement (from the ICMPv6 type octet on).
    pub fn from_ra(icmpv6: &[u8]) -> Result<Self, Error> {
        let packet = Icmpv6Packet::new_checked(icmpv6).map_err(|_| Error::Truncated)?;
        if packet.msg_type() != Icmpv6Message::RouterAdvert || packet.msg_code() != 0 {
            return Err(Error::NotAMessage);
        }
        let mut rest = icmpv6.get(RA_HEADER_LEN..).ok_or(Error::Truncated)?;
        let mut out = Self::default();
        while !rest.is_empty() {
            let used = ra_option_len(rest)?;
            if rest[0] == RA_CAPTIVE_PORTAL && out.captive_portal.is_none() {
                out.captive_portal = Some(CaptivePortalUri::parse_option(Encoding::Ra, rest)?.0);
            }
            rest = &rest[used..];
        }
        Ok(out)
    }
}

fn append<const N: usize>(buf: &mut [u8; N], len: &mut usize, data: &[u8]) -> Result<(), Error> {
    let end = *len + data.len();
    buf.get_mut(*len..end)
        .ok_or(Error::BadLength)?
        .copy_from_slice(data);
    *len = end;
    Ok(())
}

/// (code, data, octets used) of the DHCPv4 TLV at the start of `b`.
fn dhcpv4_tlv(b: &[u8]) -> Result<(u8, &[u8], usize), Error> {
    let (&code, &len) = b.first().zip(b.get(1)).ok_or(Error::Truncated)?;
    let used = 2 + usize::from(len);
    Ok((code, b.get(2..used).ok_or(Error::Truncated)?, used))
}

/// (code, data, octets used) of the DHCPv6 option at the start of `b`.
fn dhcpv6_tlv(b: &[u8]) -> Result<(u16, &[u8], usize), Error> {
    let h = b.get(..4).ok_or(Error::Truncated)?;
    let used = 4 + usize::from(u16::from_be_bytes([h[2], h[3]]));
    Ok((
        u16::from_be_bytes([h[0], h[1]]),
        b.get(4..used).ok_or(Error::Truncated)?,
        used,
    ))
}

/// Octets taken by the NDISC option at the start of `b` (RFC 4861 §4.6: length 0 is invalid).
fn ra_option_len(b: &[u8]) -> Result<usize, Error> {
    let units = *b.get(1).ok_or(Error::Truncated)?;
    if units == 0 {
        return Err(Error::BadLength);
    }
    let used = usize::from(units) * 8;
    if b.len() < used {
        return Err(Error::Truncated);
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, vec, vec::Vec};

    const URI: &str = "https://portal.example/api";

    fn uri() -> CaptivePortalUri {
        CaptivePortalUri::parse(URI.as_bytes()).unwrap()
    }

    fn signals() -> Signals {
        let wait = V6OnlyWait::new(1800).ok();
        Signals::new(Some(uri()), wait, Some(Nat64Prefix::WELL_KNOWN)).unwrap()
    }

    fn dhcp_offer(extra: &[DhcpOption<'_>]) -> Vec<u8> {
        let zero = [0, 0, 0, 0].into();
        let repr = DhcpRepr {
            message_type: DhcpMessageType::Offer,
            transaction_id: 0x1234_5678,
            secs: 0,
            client_hardware_address: EthernetAddress([2, 0, 0, 0, 0, 1]),
            client_ip: zero,
            your_ip: [192, 0, 2, 10].into(),
            server_ip: [192, 0, 2, 1].into(),
            router: None,
            subnet_mask: None,
            relay_agent_ip: zero,
            broadcast: false,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some([192, 0, 2, 1].into()),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: Some(3600),
            renew_duration: None,
            rebind_duration: None,
            additional_options: extra,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        buf
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
                   https://[]/ https://p.example/\"x\" https://a]b/ urn:ietf:params:capport:unrestricted:x \
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
        assert!(CaptivePortalUri::unrestricted().is_unrestricted() && !uri().is_unrestricted());
    }

    #[test]
    fn construct_and_deconstruct_all_encodings() {
        let (u, n) = (uri(), URI.len() as u8);
        let v4 = [&[114, n][..], URI.as_bytes()].concat();
        let v6 = [&[0, 103, 0, n][..], URI.as_bytes()].concat();
        let ra = [&[37, 4][..], URI.as_bytes(), &[0; 4]].concat(); // 2 + 26 = 28 → 32 octets
        for (enc, want) in [
            (Encoding::Dhcpv4, v4),
            (Encoding::Dhcpv6, v6),
            (Encoding::Ra, ra),
        ] {
            assert_eq!(u.buffer_len(enc), want.len());
            let mut buf = [0xa5u8; 300];
            assert_eq!(u.emit(enc, &mut buf), Ok(want.len()));
            assert_eq!(&buf[..want.len()], &want[..], "{enc:?}");
            assert!(buf[want.len()..].iter().all(|&x| x == 0xa5));
            assert_eq!(
                CaptivePortalUri::parse_option(enc, &buf),
                Ok((u.clone(), want.len()))
            );
            let short = &mut buf[..want.len() - 1];
            assert_eq!(u.emit(enc, short), Err(Error::BufferTooSmall));
            for cut in 0..want.len() {
                assert!(CaptivePortalUri::parse_option(enc, &want[..cut]).is_err());
            }
        }
        // 2 + 14 = 16: an exact multiple of 8 needs no NUL.
        let u14 = CaptivePortalUri::parse(b"https://a.exam").unwrap();
        let mut buf = [0xa5u8; 17];
        assert_eq!(u14.emit(Encoding::Ra, &mut buf), Ok(16));
        assert_eq!(
            (&buf[..3], buf[15], buf[16]),
            (&[37, 2, b'h'][..], b'm', 0xa5)
        );
        let other = CaptivePortalUri::parse_option(Encoding::Dhcpv6, &[0, 104, 0, 0]);
        assert_eq!(other, Err(Error::WrongOption));
    }

    #[test]
    fn v6only_wait() {
        assert_eq!(V6OnlyWait::new(299), Err(Error::WaitTooShort));
        let w = V6OnlyWait::new(1800).unwrap();
        assert_eq!(V6OnlyWait::from_wire(0).secs(), MIN_V6ONLY_WAIT);
        let mut buf = [0xa5u8; 8];
        assert_eq!(w.emit(&mut buf), Ok(6));
        assert_eq!(buf, [108, 4, 0, 0, 7, 8, 0xa5, 0xa5]);
        assert_eq!(V6OnlyWait::parse_option(&buf), Ok((w, 6)));
        assert_eq!(
            V6OnlyWait::parse_option(&[108, 4, 0, 0, 0, 60])
                .unwrap()
                .0
                .secs(),
            300
        );
        assert_eq!(
            V6OnlyWait::parse_option(&[108, 3, 0, 7, 8]),
            Err(Error::BadLength)
        );
        assert_eq!(
            V6OnlyWait::parse_option(&[108, 4, 0, 7, 8]),
            Err(Error::Truncated)
        );
        assert_eq!(
            V6OnlyWait::parse_option(&[114, 4, 0, 0, 7, 8]),
            Err(Error::WrongOption)
        );
        assert_eq!(w.emit(&mut [0; 5]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn nat64_prefix_and_signals_rule() {
        assert_eq!(
            Nat64Prefix::parse("64:ff9b::/96"),
            Ok(Nat64Prefix::default())
        );
        for ok in "2001:db8::/32 2001:db8:100::/40 2001:db8:122::/48 2001:db8::/64".split(' ') {
            assert!(Nat64Prefix::parse(ok).is_ok(), "{ok}");
        }
        for bad in "64:ff9b::/95 2001:db8::1/64 2001:db8:0:0:ff00::/96 64:ff9b:: x/96".split(' ') {
            assert_eq!(
                Nat64Prefix::parse(bad).map_err(Error::from),
                Err(Error::BadNat64Prefix),
                "{bad}"
            );
        }
        let wait = V6OnlyWait::new(1800).ok();
        assert_eq!(Signals::new(None, wait, None), Err(Error::Nat64Required));
        let s = signals();
        assert_eq!(s.nat64(), Some(Nat64Prefix::WELL_KNOWN));
        assert!(s.dhcpv4_options(&[1, 3, 6]).as_slice().is_empty());
        let v6only = DhcpOption {
            kind: 108,
            data: &[0, 0, 7, 8],
        };
        assert_eq!(s.dhcpv4_options(&[108]).as_slice(), &[v6only]);
        let portal = DhcpOption {
            kind: 114,
            data: URI.as_bytes(),
        };
        assert_eq!(
            s.dhcpv4_options(&[1, 108, 114]).as_slice(),
            &[portal, v6only]
        );
        let only_portal = Signals::new(Some(uri()), None, None).unwrap();
        assert_eq!(
            only_portal.dhcpv4_options(&[108, 114]).as_slice(),
            &[portal]
        );
    }

    #[test]
    fn dhcpv4_message_round_trip_and_malformed() {
        let msg = dhcp_offer(signals().dhcpv4_options(&[114, 108]).as_slice());
        let got = WanSignals::from_dhcpv4(&msg).unwrap();
        assert_eq!(got.captive_portal, Some(uri()));
        assert_eq!(got.v6only_wait.map(|w| w.secs()), Some(1800));
        assert_eq!(
            WanSignals::from_dhcpv4(&dhcp_offer(&[])),
            Ok(WanSignals::default())
        );
        // RFC 3396: a split option is concatenated.
        let (a, b) = URI.as_bytes().split_at(10);
        let split = [
            DhcpOption { kind: 114, data: a },
            DhcpOption { kind: 114, data: b },
        ];
        let got = WanSignals::from_dhcpv4(&dhcp_offer(&split)).unwrap();
        assert_eq!(got.captive_portal, Some(uri()));
        for (bad, err) in [
            (
                &[DhcpOption {
                    kind: 114,
                    data: b"http://x",
                }][..],
                Error::BadUri,
            ),
            (
                &[DhcpOption {
                    kind: 108,
                    data: &[0, 7, 8],
                }],
                Error::BadLength,
            ),
            (
                &[DhcpOption {
                    kind: 108,
                    data: &[0, 0, 7, 8],
                }; 2],
                Error::BadLength,
            ),
        ] {
            assert_eq!(WanSignals::from_dhcpv4(&dhcp_offer(bad)), Err(err));
        }
        let mut cookie = msg.clone();
        cookie[236] = 0;
        assert_eq!(WanSignals::from_dhcpv4(&cookie), Err(Error::NotAMessage));
        for cut in 0..msg.len() {
            let _ = WanSignals::from_dhcpv4(&msg[..cut]); // never panics
        }
        assert_eq!(
            WanSignals::from_dhcpv4(&msg[..100]),
            Err(Error::NotAMessage)
        );
        assert_eq!(WanSignals::from_dhcpv4(&msg[..250]), Err(Error::Truncated));
    }

    #[test]
    fn dhcpv6_and_ra_messages() {
        let u = uri();
        // DHCPv6 Reply, xid 0xabcdef, Server ID (DUID-LL), option 103.
        let mut v6 = vec![
            7, 0xab, 0xcd, 0xef, 0, 2, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1,
        ];
        let at = v6.len();
        v6.resize(at + u.buffer_len(Encoding::Dhcpv6), 0);
        u.emit(Encoding::Dhcpv6, &mut v6[at..]).unwrap();
        assert_eq!(
            WanSignals::from_dhcpv6(&v6).unwrap().captive_portal,
            Some(u.clone())
        );
        assert_eq!(
            WanSignals::from_dhcpv6(&v6[..at]),
            Ok(WanSignals::default())
        );
        assert_eq!(
            WanSignals::from_dhcpv6(&v6[..v6.len() - 1]),
            Err(Error::Truncated)
        );
        v6[0] = 12; // Relay-forward
        assert_eq!(WanSignals::from_dhcpv6(&v6), Err(Error::NotAMessage));
        // RA: 16-octet header, source link-layer address option, option 37.
        let mut ra = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        ra.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
        let at = ra.len();
        ra.resize(at + u.buffer_len(Encoding::Ra), 0);
        u.emit(Encoding::Ra, &mut ra[at..]).unwrap();
        assert_eq!(WanSignals::from_ra(&ra).unwrap().captive_portal, Some(u));
        for cut in 0..ra.len() {
            let r = WanSignals::from_ra(&ra[..cut]);
            assert!(r.is_err() || cut == 16 || cut == at, "{cut}");
        }
        let mut zero = ra.clone();
        zero[17] = 0; // an option of length 0 must not loop forever
        assert_eq!(WanSignals::from_ra(&zero), Err(Error::BadLength));
        let mut bad = ra.clone();
        bad[at + 12] = 0xff;
        assert_eq!(WanSignals::from_ra(&bad), Err(Error::NotUtf8));
        ra[0] = 133; // Router Solicitation
        assert_eq!(WanSignals::from_ra(&ra), Err(Error::NotAMessage));
    }
}
