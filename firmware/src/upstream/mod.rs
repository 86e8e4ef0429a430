//! Upstream connections: TLS settings ([`tls`]), the DoT session task ([`dot`]) and, with the `doh`
//! feature, the DoH session task ([`doh`]); with the `doq` feature, the DoQ session task ([`doq`]).

#[cfg(feature = "doh")]
pub(crate) mod doh;
#[cfg(feature = "doq")]
pub(crate) mod doq;
#[cfg(feature = "doq")]
pub(crate) mod doq_endpoint;
pub(crate) mod dot;
pub mod tls;

/// What the driver hands a session task.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Framed bytes for a stream session (DoT).
    Bytes(Vec<u8>),
    /// One DNS message for a message session (DoH, DoQ), answered under `tag`.
    #[cfg_attr(not(any(feature = "doh", feature = "doq")), allow(dead_code))]
    Request { tag: u16, message: Vec<u8> },
    /// The engine stopped waiting for request `tag` of a message session: reset its stream.
    #[cfg_attr(not(any(feature = "doh", feature = "doq")), allow(dead_code))]
    Cancel { tag: u16 },
}
