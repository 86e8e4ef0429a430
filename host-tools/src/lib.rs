//! `lanveil-ctl`, the owner's tool for lanveil: pick a resolver from the maintained presets, probe
//! candidates exactly as the daemon would dial them, write and validate the router's UCI file with the
//! daemon's own schema (`lanveil-config`), push it over ssh with a confirmed switch and automatic
//! rollback, read the daemon's status, and check from a LAN machine that nothing leaks.
//!
//! Blocking I/O only (std sockets + rustls `StreamOwned`): this crate never links tokio.

pub mod cli;
pub mod config_cmd;
pub mod dns;
pub mod doq;
pub mod edit;
pub mod error;
pub mod hpack;
pub mod http2;
pub mod leak;
pub mod presets;
pub mod probe;
pub mod push;
pub mod remote;
pub mod status;
#[cfg(test)]
mod test_util;
pub mod time_fmt;
pub mod tls;

pub use error::{Error, Result};
/// The JSON library the `--json` output is made with (for consumers such as the integration tests).
pub use serde_json as json;
