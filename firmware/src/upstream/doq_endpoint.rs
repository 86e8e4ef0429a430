//! DoQ: the QUIC endpoint an upstream's sessions share (kept in its `Target`; apart from the session
//! task in `doq.rs`, which reports through the driver's events, so the upstream's settings do not
//! depend on the events they are reported with).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use quinn::Endpoint;

/// The QUIC endpoint an upstream's sessions share: one UDP socket (per address family) and one
/// receive buffer (quinn sizes it for a batch of GRO-coalesced datagrams, ~3 MiB of address space,
/// touched as used) however many sessions come and go; made on first use, inside the runtime.
/// Sessions to one upstream share its source port; they come from the router's one address anyway.
#[derive(Debug, Default)]
pub(crate) struct SharedEndpoint(std::sync::Mutex<[Option<Endpoint>; 2]>);

impl SharedEndpoint {
    /// The endpoint for one address family, made on first use (inside the runtime).
    pub(crate) fn get(&self, v6: bool) -> std::io::Result<Endpoint> {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut slots[usize::from(v6)];
        if let Some(e) = slot {
            return Ok(e.clone());
        }
        let bind = if v6 {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        };
        let e = Endpoint::client(bind)?;
        *slot = Some(e.clone());
        Ok(e)
    }
}
