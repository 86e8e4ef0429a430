//! Serde for socket addresses that keeps what serde's own compact encoding drops: the IPv6 scope ID and
//! flow label (`[fe80::1%2]:53` must come back from a packed configuration as it went in). Human-readable
//! formats (JSON for `lanveil-ctl --json`) keep serde's text form, which already carries the scope.

use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr, SocketAddrV6};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
struct Repr(IpAddr, u16, u32, u32);

fn to_repr(a: &SocketAddr) -> Repr {
    match a {
        SocketAddr::V4(v4) => Repr(IpAddr::V4(*v4.ip()), v4.port(), 0, 0),
        SocketAddr::V6(v6) => Repr(
            IpAddr::V6(*v6.ip()),
            v6.port(),
            v6.scope_id(),
            v6.flowinfo(),
        ),
    }
}

fn from_repr(r: Repr) -> SocketAddr {
    match r.0 {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V4(ip), r.1),
        IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, r.1, r.3, r.2)),
    }
}

/// For `Vec<SocketAddr>` fields.
pub(crate) mod vec {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[SocketAddr], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return v.serialize(s);
        }
        v.iter().map(to_repr).collect::<Vec<_>>().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<SocketAddr>, D::Error> {
        if d.is_human_readable() {
            return Vec::<SocketAddr>::deserialize(d);
        }
        Ok(Vec::<Repr>::deserialize(d)?
            .into_iter()
            .map(from_repr)
            .collect())
    }
}

/// For `Option<SocketAddr>` fields.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return v.serialize(s);
        }
        v.as_ref().map(to_repr).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        if d.is_human_readable() {
            return Option::<SocketAddr>::deserialize(d);
        }
        Ok(Option::<Repr>::deserialize(d)?.map(from_repr))
    }
}
