//! Upstream connections: TLS settings ([`tls`]) and the per-session DoT task ([`dot`]).

pub(crate) mod dot;
pub mod tls;
