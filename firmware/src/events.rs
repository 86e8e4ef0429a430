//! The driver's one channel and what travels on it. Every task that talks to the driver produces its
//! own narrow event type ([`ListenerEvent`], [`UpstreamEvent`], [`ControlRequest`], [`WanEvent`]) and
//! holds only a [`Sender`] of that type; all of them share the one bounded channel the driver reads,
//! so the driver keeps one `select!` and batches inputs from every source in arrival order. This module
//! sits below the driver and the tasks (it imports neither), so no task depends on the driver.
//!
//! It also holds the handles the driver answers listeners through ([`UdpAnswers`], [`TcpOut`]) and
//! the payloads of the composition root's requests ([`Reconfigure`], [`Snapshot`]).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use lanveil_core::engine::{
    CloseReason, EngineConfig, PlainTarget, QueryLogEntry, SessionId, Stats, UpstreamId,
};
use lanveil_core::policy::Policy;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::upstream::tls::Target;

/// Everything the driver hears about: one variant per producer.
pub(crate) enum Input {
    Listener(ListenerEvent),
    Upstream(UpstreamEvent),
    Control(ControlRequest),
    Wan(WanEvent),
    /// The clock ticker saw the wall clock pass the time floor.
    ClockSynchronized,
}

/// What the LAN listeners (`listen.rs`) report.
pub(crate) enum ListenerEvent {
    /// Datagrams received on one listener, back to back in `bytes`: (sender, length) each.
    Udp {
        listener: u16,
        bytes: Vec<u8>,
        datagrams: Vec<(SocketAddr, usize)>,
    },
    /// A listener's UDP answer path (`None`: the listener is gone).
    UdpSocket {
        listener: u16,
        answers: Option<UdpAnswers>,
    },
    TcpOpened {
        conn: u64,
        tx: mpsc::Sender<TcpOut>,
    },
    TcpFrame {
        conn: u64,
        peer: SocketAddr,
        bytes: Vec<u8>,
    },
    TcpClosed {
        conn: u64,
    },
}

/// What an upstream session task (`upstream/dot.rs`, `upstream/doh.rs`) reports about its session.
pub(crate) enum UpstreamEvent {
    Connected {
        session: SessionId,
        relaxed: bool,
    },
    Data {
        session: SessionId,
        bytes: Vec<u8>,
    },
    Closed {
        session: SessionId,
        reason: CloseReason,
    },
    #[cfg_attr(not(any(feature = "doh", feature = "doq")), allow(dead_code))]
    Response {
        session: SessionId,
        tag: u16,
        bytes: Vec<u8>,
    },
    #[cfg_attr(not(any(feature = "doh", feature = "doq")), allow(dead_code))]
    RequestFailed {
        session: SessionId,
        tag: u16,
    },
}

/// What the daemon's owner asks of the driver: the control socket (`control.rs`: status, the WAN
/// hook's report, leak-test probes) and the [`crate::Running`] handle (reload, counters, query log,
/// drain).
pub(crate) enum ControlRequest {
    Reconfigure(Box<Reconfigure>),
    QueryLog {
        reply: oneshot::Sender<Vec<QueryLogEntry>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    Stats {
        reply: oneshot::Sender<(Stats, usize)>,
    },
    Drain {
        until: Instant,
    },
    /// The WAN's DHCP/RA announced a captive portal (`None`: withdrawn), with the WAN's DNS servers.
    /// (The URI is boxed, as in [`WanEvent::ApiResult`], so that every message on the channel, a
    /// batch of queries included, is not sized for this rare one.)
    WanPortal {
        uri: Option<Box<lanveil_core::capport::CaptivePortalUri>>,
        dns: Vec<SocketAddr>,
    },
    /// A `lanveil-ctl leak-test` probe from the control socket.
    LeakProbe(lanveil_core::leak_probe::Probe),
}

/// What the tasks of `captive.rs` report: the portal API request's outcome, and the answers of the
/// plaintext sockets (`captive::PlainSocket`, which also serves `local_resolver`).
pub(crate) enum WanEvent {
    /// The outcome of a captive-portal API request.
    ApiResult {
        uri: Box<lanveil_core::capport::CaptivePortalUri>,
        result: Result<lanveil_core::captive::ApiState, String>,
    },
    /// An answer to a plaintext query: from the WAN's DNS (portal names) or the local resolver.
    PlainAnswer {
        from: PlainTarget,
        tag: u16,
        bytes: Vec<u8>,
    },
}

impl From<ListenerEvent> for Input {
    fn from(e: ListenerEvent) -> Self {
        Self::Listener(e)
    }
}

impl From<UpstreamEvent> for Input {
    fn from(e: UpstreamEvent) -> Self {
        Self::Upstream(e)
    }
}

impl From<ControlRequest> for Input {
    fn from(r: ControlRequest) -> Self {
        Self::Control(r)
    }
}

impl From<WanEvent> for Input {
    fn from(e: WanEvent) -> Self {
        Self::Wan(e)
    }
}

/// One producer's end of the driver's channel: it sends only `E`.
pub(crate) struct Sender<E> {
    tx: mpsc::Sender<Input>,
    event: PhantomData<fn(E)>,
}

impl<E> Clone for Sender<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            event: PhantomData,
        }
    }
}

impl<E: Into<Input>> Sender<E> {
    /// Waits for room in the channel, then sends; fails only once the driver has stopped. (The
    /// channel's own future, not a wrapper: one future type for every producer.)
    pub(crate) fn send(
        &self,
        event: E,
    ) -> impl Future<Output = Result<(), mpsc::error::SendError<Input>>> + '_ {
        self.tx.send(event.into())
    }
}

impl Sender<Input> {
    /// A sender of one producer's events only: what the composition root, and the driver for the
    /// tasks it starts, hand each task.
    pub(crate) fn narrow<E>(&self) -> Sender<E> {
        Sender {
            tx: self.tx.clone(),
            event: PhantomData,
        }
    }
}

pub(crate) type ListenerSender = Sender<ListenerEvent>;
pub(crate) type UpstreamSender = Sender<UpstreamEvent>;
pub(crate) type ControlSender = Sender<ControlRequest>;
pub(crate) type WanSender = Sender<WanEvent>;

/// The driver's channel: the full sender (for the composition root) and the driver's receiver.
pub(crate) fn channel(capacity: usize) -> (Sender<Input>, mpsc::Receiver<Input>) {
    let (tx, rx) = mpsc::channel(capacity);
    let tx = Sender {
        tx,
        event: PhantomData,
    };
    (tx, rx)
}

/// What the driver sends back for one frame of a TCP client: exactly one per frame.
#[derive(Debug)]
pub(crate) enum TcpOut {
    /// The answer, to be framed and written.
    Answer(Vec<u8>),
    /// The engine dropped the frame (see `Event::NoAnswer`): nothing to write, but the frame's
    /// pipeline slot comes back.
    NoAnswer,
}

/// Where the driver puts one listener's UDP answers: straight onto the socket while it takes them
/// (no queue, no task switch), else into the listener's writer task's queue, which waits for buffer
/// space.
pub(crate) struct UdpAnswers {
    pub(crate) sock: Arc<UdpSocket>,
    pub(crate) queue: mpsc::Sender<(Vec<u8>, SocketAddr)>,
}

impl UdpAnswers {
    /// Sends (in as few system calls as the socket allows) or queues a turn's answers, in order;
    /// returns how many had to be dropped. `answers` is left empty; the buffers of the answers sent
    /// or dropped go to `done` (the engine writes later answers into them).
    pub(crate) fn send_all(
        &self,
        answers: &mut Vec<(Vec<u8>, SocketAddr)>,
        mut done: impl FnMut(Vec<u8>),
    ) -> usize {
        // Only while nothing is queued, so a burst that filled the socket buffer drains first.
        let sent = if self.queue.capacity() == self.queue.max_capacity() {
            crate::mmsg::send_batch(&self.sock, answers)
        } else {
            0
        };
        let mut dropped = 0;
        for (i, a) in answers.drain(..).enumerate() {
            if i < sent {
                done(a.0);
            } else if let Err(e) = self.queue.try_send(a) {
                dropped += 1;
                done(e.into_inner().0);
            }
        }
        dropped
    }
}

/// What the control socket reports, taken in one go.
pub(crate) struct Snapshot {
    pub(crate) now: lanveil_core::time::Instant,
    pub(crate) stats: Stats,
    pub(crate) inflight: usize,
    pub(crate) health: Vec<lanveil_core::engine::UpstreamHealth>,
    pub(crate) cache: Option<(usize, usize)>,
    pub(crate) log: Vec<QueryLogEntry>,
    pub(crate) captive: lanveil_core::captive::Status,
    pub(crate) wan_dns: Vec<SocketAddr>,
}

/// The captive-WAN settings from the configuration.
#[derive(Clone)]
pub(crate) struct WanSettings {
    pub(crate) tracker: lanveil_core::captive::Settings,
    pub(crate) ca_file: Option<String>,
}

/// A validated new configuration for the engine.
pub(crate) struct Reconfigure {
    pub(crate) engine: EngineConfig,
    pub(crate) targets: Vec<(UpstreamId, Arc<Target>)>,
    pub(crate) policy: Policy,
    pub(crate) wan: WanSettings,
    pub(crate) local_resolver: Option<SocketAddr>,
}
