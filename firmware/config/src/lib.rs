//! lanveil's configuration schema, shared by the daemon (`lanveil`) and the owner's tool
//! (`lanveil-ctl`) without pulling in tokio.
//!
//! The human form is UCI (`/etc/config/lanveil`), the format OpenWrt owners already know; the same file
//! works on any Linux. [`uci::parse`] turns text into a [`uci::Document`] (syntax only), and
//! [`Config::from_uci`] validates it into a [`Config`] (types, ranges, cross-field rules). Every error
//! names the line, the key and the reason; the caller adds the file name.
//!
//! Every key is written once, in [`keys`]: its section, default, range or form, meaning, and how its
//! text is read into the model and written back. Parsing, [`Config::to_uci`], [`Config::default`],
//! the range checks of [`Config::validate`], the README's key reference and `lanveil-ctl config` read
//! that table. The model is grouped ([`Listen`], [`Upstreams`], [`Cache`], [`Limits`], [`Daemon`],
//! [`Signals`], [`Captive`], [`Policy`]) and holds the core's validated types ([`Prefix`],
//! [`Nat64Prefix`], [`RateAction`], [`SelectPolicy`]), so the daemon hands them on as they are
//! ([`Config::engine`], [`Config::policy_config`], [`Captive::settings`]).
//!
//! Invariants of a [`Config`]: at least one listener and one upstream, every upstream is an IP literal
//! with an authentication name (so no plaintext lookup of the upstream's name is ever needed), every
//! numeric knob is inside its documented range.
#![no_std]
#![deny(unsafe_code)] // one exception, `field` (offsets for the key table)
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod control;
pub mod envelope;
mod error;
mod field;
pub mod keys;
mod model;
mod scoped;
mod serde_core;
pub mod state;
pub mod uci;
mod upstream;

pub use error::{Error, Reason};
pub use lanveil_core::engine::{RateAction, SelectPolicy};
pub use lanveil_core::nat64::Nat64Prefix;
pub use lanveil_core::policy::{DEFAULT_ALLOW, Prefix};
pub use model::{
    Cache, Captive, Config, Daemon, INIT_ONLY_KEYS, INIT_ONLY_SECTION, Limits, Listen, LogLevel,
    PACK_VERSION, Policy, Signals, TlsVersion, Upstream, Upstreams, check_local_resolver,
    parse_allow, parse_captive_uri, parse_local_resolver, parse_nat64_prefix, parse_prefix,
    parse_v6only_wait,
};
pub use upstream::{
    DOQ_PORT, DOT_PORT, HTTPS_PORT, SpkiPin, Transport, UpstreamUrl, parse_auth_name,
};
