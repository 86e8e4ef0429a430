//! lanveil's sans-IO core.
//!
//! ```text
//!   LAN client bytes ──handle_query(now, client, bytes)──▶ ┌────────┐ ──poll_action()──▶ Connect/Send/Close
//!                                                         │ Engine │                     (shell: TCP+TLS)
//!   upstream events ──handle_upstream_*(now, session, …)─▶ │        │ ──poll_transmit()─▶ answers to clients
//!   timers ──────────handle_timeout(now)─────────────────▶ └────────┘ ──poll_timeout()──▶ next deadline
//! ```
//!
//! No sockets, no clock, no randomness of its own: bytes and `now` go in, bytes and deadlines come out,
//! and an [`rng::Rng`] is passed in at construction. The [`wire`] codecs need neither `std` nor `alloc`;
//! the [`engine`] needs `alloc` (its tables are sized from the configuration at run time and bounded by
//! it).
//!
//! Privacy: nothing here logs. State changes worth reporting come out of
//! [`engine::Engine::poll_event`] and never carry query names or client addresses.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(feature = "alloc")]
pub mod cache;
pub mod capport;
#[cfg(feature = "alloc")]
pub mod captive;
pub mod clock;
#[cfg(feature = "alloc")]
pub mod dns64;
#[cfg(feature = "alloc")]
pub mod engine;
#[cfg(feature = "alloc")]
pub mod leak_probe;
pub mod nat64;
#[cfg(feature = "alloc")]
pub mod policy;
pub mod rng;
pub mod spki;
pub mod time;
pub mod wire;
