//! The one NAT64 prefix type (RFC 6052 §2.2), used by DNS64 ([`crate::dns64`]), the LAN signals
//! ([`crate::capport`]: option 108 needs NAT64) and the configuration.
//!
//! The rule, checked in this order: the length is 32, 40, 48, 56, 64 or 96; bits 64–71 (the "u"
//! octet) are zero (RFC 6052 §2.2 MUST); no bit past the length is set (a prefix written with host
//! bits is a typo, not a prefix, and is refused rather than silently cut).

use core::fmt;
use core::net::Ipv6Addr;
use core::str::FromStr;

/// A NAT64 prefix (RFC 6052 §2.2): length 32, 40, 48, 56, 64 or 96, bits 64–71 zero, no bits set past
/// the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nat64Prefix {
    addr: Ipv6Addr,
    len: u8,
}

/// Why a NAT64 prefix was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat64Error {
    /// Not `IPV6ADDR/LEN`.
    Syntax,
    /// A length RFC 6052 does not allow.
    Length,
    /// Bits 64–71 (the "u" octet) are not zero.
    UOctet,
    /// A bit past the prefix length is set.
    HostBits,
}

impl fmt::Display for Nat64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "not an IPv6 prefix ADDR/LEN",
            Self::Length => "NAT64 prefix length must be 32, 40, 48, 56, 64 or 96 (RFC 6052)",
            Self::UOctet => "bits 64-71 of a NAT64 prefix must be zero (RFC 6052)",
            Self::HostBits => "a NAT64 prefix must have no bits set past its length",
        })
    }
}

impl core::error::Error for Nat64Error {}

impl Nat64Prefix {
    /// The Well-Known Prefix 64:ff9b::/96 (RFC 6052 §2.1).
    pub const WELL_KNOWN: Self = Self {
        addr: Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        len: 96,
    };

    /// `addr/len`, checked by the rule in the module documentation.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, Nat64Error> {
        if ![32, 40, 48, 56, 64, 96].contains(&len) {
            return Err(Nat64Error::Length);
        }
        let bits = addr.to_bits();
        if bits & (0xffu128 << 56) != 0 {
            return Err(Nat64Error::UOctet);
        }
        if bits & (u128::MAX >> len) != 0 {
            return Err(Nat64Error::HostBits);
        }
        Ok(Self { addr, len })
    }

    /// Parses `addr/len`, e.g. `64:ff9b::/96`.
    pub fn parse(s: &str) -> Result<Self, Nat64Error> {
        let (addr, len) = s.split_once('/').ok_or(Nat64Error::Syntax)?;
        let addr = addr.parse().map_err(|_| Nat64Error::Syntax)?;
        Self::new(addr, len.parse().map_err(|_| Nat64Error::Syntax)?)
    }

    /// The prefix address (no bits set past the length).
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The IPv4-embedded IPv6 address for `v4` (RFC 6052 §2.2).
    pub fn embed(&self, v4: [u8; 4]) -> [u8; 16] {
        let mut out = self.addr.octets();
        let mut pos = usize::from(self.len / 8);
        for b in v4 {
            if pos == 8 {
                pos += 1; // the u octet stays zero
            }
            out[pos] = b;
            pos += 1;
        }
        out
    }
}

impl Default for Nat64Prefix {
    fn default() -> Self {
        Self::WELL_KNOWN
    }
}

impl FromStr for Nat64Prefix {
    type Err = Nat64Error;
    fn from_str(s: &str) -> Result<Self, Nat64Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Nat64Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn the_rfc_6052_rule_in_order() {
        for ok in [
            "64:ff9b::/96",
            "2001:db8::/32",
            "2001:db8:100::/40",
            "2001:db8:122::/48",
            "2001:db8:122:300::/56",
            "2001:db8:122:344::/64",
            "2001:db8:122:344::/96",
        ] {
            let p = Nat64Prefix::parse(ok).unwrap();
            assert_eq!(p.to_string(), ok);
            assert_eq!(Nat64Prefix::new(p.addr(), p.prefix_len()), Ok(p));
        }
        for (bad, why) in [
            ("64:ff9b::/95", Nat64Error::Length),
            ("2001:db8::/80", Nat64Error::Length),
            ("192.0.2.0/24", Nat64Error::Syntax),
            ("64:ff9b::", Nat64Error::Syntax),
            ("x/96", Nat64Error::Syntax),
            ("2001:db8:0:0:ff00::/96", Nat64Error::UOctet),
            // Both the u octet and host bits: the u octet is named (it is the RFC's MUST).
            ("2001:db8:0:0:ff00::/64", Nat64Error::UOctet),
            ("2001:db8::1/64", Nat64Error::HostBits),
            ("64:ff9b::1/96", Nat64Error::HostBits),
            ("2001:db8:1::/32", Nat64Error::HostBits),
        ] {
            assert_eq!(Nat64Prefix::parse(bad), Err(why), "{bad}");
        }
    }
}
