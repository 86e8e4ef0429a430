//! Serde for the core's validated types the model holds (the core has no serde): the enums by remote
//! derive, prefixes through their checked constructors, so a packed configuration can never carry a
//! value the file could not.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv6Addr;

use lanveil_core::engine::{RateAction, SelectPolicy};
use lanveil_core::nat64::Nat64Prefix;
use lanveil_core::policy::Prefix;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// [`SelectPolicy`], variant for variant.
#[derive(Serialize, Deserialize)]
#[serde(remote = "SelectPolicy")]
pub(crate) enum SelectPolicyDef {
    Failover,
    RoundRobin,
    Fastest,
}

/// [`RateAction`], variant for variant.
#[derive(Serialize, Deserialize)]
#[serde(remote = "RateAction")]
pub(crate) enum RateActionDef {
    Refuse,
    Drop,
}

/// `Vec<Prefix>` as its text form (`192.168.0.0/16`), parsed back by [`Prefix`]'s own rule.
pub(crate) mod prefixes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[Prefix], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Prefix>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| {
                t.parse::<Prefix>()
                    .map_err(|_| D::Error::custom("not an address prefix"))
            })
            .collect()
    }
}

/// `Option<Nat64Prefix>` as `(address, length)`, checked by [`Nat64Prefix::new`].
pub(crate) mod nat64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &Option<Nat64Prefix>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.map(|p| (p.addr(), p.prefix_len())).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Nat64Prefix>, D::Error> {
        match Option::<(Ipv6Addr, u8)>::deserialize(d)? {
            None => Ok(None),
            Some((a, l)) => Nat64Prefix::new(a, l)
                .map(Some)
                .map_err(|_| D::Error::custom("not a NAT64 prefix")),
        }
    }
}
