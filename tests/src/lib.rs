//! Integration-test harness for lanveil.
//!
//! Everything a test needs to exercise the daemon end to end against real
//! peers, all on loopback and without the internet:
//!
//! * [`pki`]: a throwaway CA per run and server certificates signed by it,
//!   with RFC 7858 SPKI pins and PEM files on disk.
//! * [`upstream`]: an in-process DNS-over-TLS server with deterministic
//!   answers, pipelining, out-of-order replies and switchable faults.
//! * [`decoy`]: a plaintext DNS listener that only counts hits, to prove that
//!   nothing ever falls back to clear-text DNS.
//! * [`client`]: plain UDP/TCP and DoT client helpers with timeouts, plus EDE
//!   (RFC 8914) extraction.
//! * [`clock`]: a router without the right time: a wall clock the test sets, a state file
//!   holding the time floor.
//! * [`proxy`]: a TCP relay that can hold back the server's end of a TLS 1.2
//!   handshake (the client's certificate check done, its handshake not).
//! * [`mod@dig`]: runs the real `dig` / `kdig` binaries and parses their output.
//! * [`unbound`]: a real Unbound instance serving DoT from a local zone.
//! * [`util`]: free ports, temporary directories, timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Host-only test code: 64-bit atomics are fine here (the rule is for router builds).
#![allow(clippy::disallowed_types)]

pub mod client;
pub mod clock;
pub mod decoy;
pub mod dig;
pub mod dnsdist;
pub mod doh;
pub mod doq;
pub mod gateway;
pub mod netns;
pub mod pki;
pub mod portal;
pub mod proxy;
pub mod ssh;
pub mod unbound;
pub mod upstream;
pub mod util;

pub use client::{ClientError, DotClient};
pub use decoy::Decoy;
pub use dig::{DigEde, DigOutput, dig, kdig};
pub use pki::{Leaf, Pki};
pub use unbound::Unbound;
pub use upstream::{
    ConnInfo, DotUpstream, UpstreamHandle, UpstreamOpts, expected_a, expected_aaaa,
};
pub use util::{TempDir, free_port, free_tcp_udp_port};
