//! Upstream connections: TLS settings ([`tls`]) and one session task ([`run`]) over DoT ([`dot`]),
//! with the `doh` feature DoH ([`doh`]), with the `doq` feature DoQ ([`doq`]).

#[cfg(feature = "doh")]
pub(crate) mod doh;
#[cfg(feature = "doq")]
pub(crate) mod doq;
#[cfg(feature = "doq")]
pub(crate) mod doq_endpoint;
pub(crate) mod dot;
pub mod tls;

use std::sync::Arc;

use lanveil_config::Transport;
use lanveil_core::engine::{CloseReason, SessionId};
use tokio::sync::mpsc;

use crate::events::{UpstreamEvent, UpstreamSender};
use tls::Target;

/// One upstream session's task: dials `target` over its transport and carries the session until
/// either side ends it, then reports the close to the driver (`Eof` for a clean end: the engine let
/// the session go, or the server closed it).
pub(crate) async fn run(
    session: SessionId,
    target: Arc<Target>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    events: UpstreamSender,
) {
    let ended = match target.upstream.url.transport {
        Transport::Tls => dot::session_io(session, &target, &mut rx, &events)
            .await
            .map_err(|e| tls::classify(&e)),
        #[cfg(feature = "doh")]
        Transport::Https => doh::session_io(session, &target, &mut rx, &events).await,
        #[cfg(feature = "doq")]
        Transport::Quic => doq::session_io(session, &target, &mut rx, &events).await,
        // No target of a transport this build lacks exists: such a configuration is refused at
        // start and on reload.
        #[cfg(not(all(feature = "doh", feature = "doq")))]
        _ => Err(CloseReason::Unreachable),
    };
    let reason = ended.err().unwrap_or(CloseReason::Eof);
    let _ = events.send(UpstreamEvent::Closed { session, reason }).await;
}

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

/// The requests in flight on a message session (DoH, DoQ) that the engine may cancel, by tag. Each
/// has a number, so that a request that finishes never removes a later one's entry under the same
/// tag; at most as many as the engine has outstanding on the session.
#[cfg(any(feature = "doh", feature = "doq"))]
#[derive(Default)]
pub(crate) struct Cancels {
    by_tag: std::collections::HashMap<u16, (u64, tokio::sync::oneshot::Sender<()>)>,
    next: u64,
}

#[cfg(any(feature = "doh", feature = "doq"))]
impl Cancels {
    /// A new request under `tag`: its number (for [`Cancels::finished`]) and its cancel signal, of
    /// which only a sent `()` counts (a dropped sender, when the tag is reused, is no cancel).
    pub(crate) fn register(&mut self, tag: u16) -> (u64, tokio::sync::oneshot::Receiver<()>) {
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        self.next += 1;
        self.by_tag.insert(tag, (self.next, cancel));
        (self.next, cancelled)
    }

    /// The engine stopped waiting for `tag`: its request ends (its stream is reset).
    pub(crate) fn cancel(&mut self, tag: u16) {
        if let Some((_, cancel)) = self.by_tag.remove(&tag) {
            let _ = cancel.send(());
        }
    }

    /// Request number `n` under `tag` ended.
    pub(crate) fn finished(&mut self, tag: u16, n: u64) {
        if self.by_tag.get(&tag).is_some_and(|(m, _)| *m == n) {
            self.by_tag.remove(&tag);
        }
    }
}
