//! The owner task: one [`Engine`], fed from one channel, its outputs drained after every input
//! (the quinn `ConnectionDriver` loop). Sockets live in other tasks; this task never blocks on I/O:
//! a UDP answer goes straight onto the listener's socket with a non-blocking send while the socket
//! takes it, else into the listener's bounded queue; TCP answers go into each connection's queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lanveil_config::Transport;
use lanveil_core::engine::{
    Action, ClientAddr, CloseReason, Engine, EngineConfig, Event, QueryLogEntry, SessionId, Stats,
    Transport as CoreTransport, UpstreamId, UpstreamSpec,
};
use lanveil_core::policy::Policy;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::rng::OsRng;
use crate::upstream::{Outgoing, dot, tls::Target, tls::describe};

/// What the control socket reports, taken in one go.
pub(crate) struct Snapshot {
    pub(crate) now: lanveil_core::time::Instant,
    pub(crate) stats: Stats,
    pub(crate) inflight: usize,
    pub(crate) health: Vec<lanveil_core::engine::UpstreamHealth>,
    pub(crate) cache: Option<(usize, usize)>,
    pub(crate) log: Vec<QueryLogEntry>,
}

/// A validated new configuration for the engine.
pub(crate) struct Reconfigure {
    pub(crate) engine: EngineConfig,
    pub(crate) targets: Vec<(UpstreamId, Arc<Target>)>,
    pub(crate) policy: Policy,
}

/// Everything the driver hears about.
pub(crate) enum Input {
    /// Datagrams received on one listener, back to back in `bytes`: (sender, length) each.
    Udp {
        listener: u16,
        bytes: Vec<u8>,
        datagrams: Vec<(SocketAddr, usize)>,
    },
    UdpSocket {
        listener: u16,
        answers: Option<crate::listen::UdpAnswers>,
    },
    TcpOpened {
        conn: u64,
        tx: mpsc::Sender<Vec<u8>>,
    },
    TcpFrame {
        conn: u64,
        peer: SocketAddr,
        bytes: Vec<u8>,
    },
    TcpClosed {
        conn: u64,
    },
    UpstreamConnected {
        session: SessionId,
        relaxed: bool,
    },
    ClockSynchronized,
    UpstreamData {
        session: SessionId,
        bytes: Vec<u8>,
    },
    UpstreamClosed {
        session: SessionId,
        reason: CloseReason,
    },
    #[cfg_attr(not(feature = "doh"), allow(dead_code))]
    UpstreamResponse {
        session: SessionId,
        tag: u16,
        bytes: Vec<u8>,
    },
    #[cfg_attr(not(feature = "doh"), allow(dead_code))]
    UpstreamRequestFailed {
        session: SessionId,
        tag: u16,
    },
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
}

struct SessionHandle {
    tx: mpsc::UnboundedSender<Outgoing>,
    task: JoinHandle<()>,
}

pub(crate) struct Driver {
    engine: Engine<OsRng>,
    clock: Clock,
    rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    targets: HashMap<UpstreamId, Arc<Target>>,
    sessions: HashMap<SessionId, SessionHandle>,
    udp: HashMap<u16, crate::listen::UdpAnswers>,
    tcp: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    drain_until: Option<Instant>,
    udp_send_failures: u64,
    relaxed: std::collections::HashSet<SessionId>,
}

/// Inputs (a UDP message counts once per datagram) handled per wake-up before outputs are flushed
/// (bounded so timers stay timely).
const BATCH: usize = 64;

impl Driver {
    pub(crate) fn new(
        engine_config: EngineConfig,
        targets: Vec<(UpstreamId, Arc<Target>)>,
        policy: Policy,
        rng: OsRng,
        rx: mpsc::Receiver<Input>,
        tx: mpsc::Sender<Input>,
    ) -> Self {
        let specs = specs(&targets);
        let mut engine = Engine::new(engine_config, &specs, rng);
        engine.set_policy(Some(policy));
        Self {
            engine,
            clock: Clock::new(),
            rx,
            tx,
            targets: targets.into_iter().collect(),
            sessions: HashMap::new(),
            udp: HashMap::new(),
            tcp: HashMap::new(),
            drain_until: None,
            udp_send_failures: 0,
            relaxed: std::collections::HashSet::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let wake = self.engine.poll_timeout().map(|t| self.clock.to_tokio(t));
            let wake = match (wake, self.drain_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                biased;
                input = self.rx.recv() => {
                    let Some(input) = input else { break };
                    let mut handled = self.handle(input);
                    while handled <= BATCH {
                        match self.rx.try_recv() {
                            Ok(i) => handled += self.handle(i),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until(wake) => {}
            }
            let now = self.clock.now();
            self.engine.handle_timeout(now);
            self.flush();
            if let Some(until) = self.drain_until
                && (self.engine.inflight() == 0 || Instant::now() >= until)
            {
                if self.engine.inflight() > 0 {
                    log::warn!(
                        "drain time over with {} queries unanswered",
                        self.engine.inflight()
                    );
                }
                break;
            }
        }
        for (_, s) in self.sessions.drain() {
            s.task.abort();
        }
    }

    /// Handles one input; returns how many it counts for in [`BATCH`].
    fn handle(&mut self, input: Input) -> usize {
        let now = self.clock.now();
        match input {
            Input::Udp {
                listener,
                bytes,
                datagrams,
            } => {
                let count = datagrams.len();
                let mut at = 0;
                for (peer, len) in datagrams {
                    let Some(query) = bytes.get(at..at + len) else {
                        break;
                    };
                    at += len;
                    self.engine
                        .handle_query(now, ClientAddr::Udp { listener, peer }, query);
                }
                return count;
            }
            Input::UdpSocket { listener, answers } => match answers {
                Some(s) => {
                    self.udp.insert(listener, s);
                }
                None => {
                    self.udp.remove(&listener);
                }
            },
            Input::TcpOpened { conn, tx } => {
                self.tcp.insert(conn, tx);
            }
            Input::TcpFrame { conn, peer, bytes } => {
                self.engine
                    .handle_query(now, ClientAddr::Tcp { conn, peer }, &bytes);
            }
            Input::TcpClosed { conn } => {
                self.tcp.remove(&conn);
            }
            Input::UpstreamConnected { session, relaxed } => {
                if relaxed {
                    self.relaxed.insert(session);
                }
                self.engine.handle_upstream_connected(now, session);
            }
            Input::ClockSynchronized => {
                // Rule 4: connections authenticated against the floor are closed; their queries go to
                // connections verified at the real time.
                let relaxed: Vec<_> = self.relaxed.drain().collect();
                if !relaxed.is_empty() {
                    log::info!(
                        "clock synchronized: re-verifying {} upstream connection(s)",
                        relaxed.len()
                    );
                }
                for session in relaxed {
                    if let Some(s) = self.sessions.remove(&session) {
                        s.task.abort();
                        self.engine
                            .handle_upstream_closed(now, session, CloseReason::Eof);
                    }
                }
            }
            Input::UpstreamData { session, bytes } => {
                self.engine.handle_upstream_data(now, session, &bytes)
            }
            Input::UpstreamResponse {
                session,
                tag,
                bytes,
            } => {
                self.engine
                    .handle_upstream_response(now, session, tag, &bytes);
            }
            Input::UpstreamRequestFailed { session, tag } => {
                self.engine
                    .handle_upstream_request_failed(now, session, tag);
            }
            Input::UpstreamClosed { session, reason } => {
                self.sessions.remove(&session);
                self.relaxed.remove(&session);
                self.engine.handle_upstream_closed(now, session, reason);
            }
            Input::Snapshot { reply } => {
                let _ = reply.send(Snapshot {
                    now,
                    stats: *self.engine.stats(),
                    inflight: self.engine.inflight(),
                    health: self.engine.upstream_health(now),
                    cache: self.engine.cache_usage(),
                    log: self.engine.query_log().cloned().collect(),
                });
            }
            Input::QueryLog { reply } => {
                let _ = reply.send(self.engine.query_log().cloned().collect());
            }
            Input::Reconfigure(r) => {
                let Reconfigure {
                    engine,
                    targets,
                    policy,
                } = *r;
                self.engine.set_policy(Some(policy));
                let specs = specs(&targets);
                // Tasks of retired sessions hold their own Arc of the old target.
                self.targets = targets.into_iter().collect();
                self.engine.reconfigure(now, engine, &specs);
            }
            Input::Stats { reply } => {
                let _ = reply.send((*self.engine.stats(), self.engine.inflight()));
            }
            Input::Drain { until } => {
                self.drain_until = Some(until);
            }
        }
        1
    }

    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.engine.poll_transmit() {
                progressed = true;
                match t.to {
                    ClientAddr::Udp { listener, peer } => {
                        let sent = self.udp.get(&listener).map(|u| u.send(t.bytes, peer));
                        if sent != Some(true) {
                            self.udp_send_failures += 1;
                            log::debug!("UDP answer not sent ({} so far)", self.udp_send_failures);
                        }
                    }
                    ClientAddr::Tcp { conn, .. } => {
                        if let Some(tx) = self.tcp.get(&conn)
                            && tx.try_send(t.bytes).is_err()
                        {
                            log::debug!("TCP client {conn} not reading its answers; dropped one");
                        }
                    }
                }
            }
            while let Some(a) = self.engine.poll_action() {
                progressed = true;
                self.act(a);
            }
            while let Some(e) = self.engine.poll_event() {
                progressed = true;
                self.log_event(e);
            }
            if !progressed {
                break;
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect { session, upstream } => {
                let Some(target) = self.targets.get(&upstream).cloned() else {
                    let now = self.clock.now();
                    self.engine
                        .handle_upstream_closed(now, session, CloseReason::Unreachable);
                    return;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let events = self.tx.clone();
                let task = match target.upstream.url.transport {
                    Transport::Tls => tokio::spawn(dot::run(session, target, rx, events)),
                    #[cfg(feature = "doh")]
                    Transport::Https => {
                        tokio::spawn(crate::upstream::doh::run(session, target, rx, events))
                    }
                    #[cfg(not(feature = "doh"))]
                    Transport::Https => {
                        // Refused at start-up; unreachable in a DoT-only build.
                        let now = self.clock.now();
                        self.engine
                            .handle_upstream_closed(now, session, CloseReason::Unreachable);
                        return;
                    }
                };
                self.sessions.insert(session, SessionHandle { tx, task });
            }
            Action::Send { session, bytes } => {
                if let Some(s) = self.sessions.get(&session) {
                    let _ = s.tx.send(Outgoing::Bytes(bytes));
                }
            }
            Action::Request {
                session,
                tag,
                message,
            } => {
                if let Some(s) = self.sessions.get(&session) {
                    let _ = s.tx.send(Outgoing::Request { tag, message });
                }
            }
            Action::Close { session } => {
                self.relaxed.remove(&session);
                if let Some(s) = self.sessions.remove(&session) {
                    s.task.abort();
                }
            }
        }
    }

    fn log_event(&self, e: Event) {
        let name = |id: UpstreamId| {
            self.targets
                .get(&id)
                .map_or("(removed)", |t| t.upstream.name.as_str())
        };
        match e {
            Event::UpstreamUp { upstream } => {
                log::info!("upstream {}: authenticated connection up", name(upstream))
            }
            Event::UpstreamDown { upstream, reason } => {
                log::warn!("upstream {}: {}", name(upstream), describe(reason));
            }
        }
    }
}

fn specs(targets: &[(UpstreamId, Arc<Target>)]) -> Vec<UpstreamSpec> {
    targets
        .iter()
        .map(|(id, t)| UpstreamSpec {
            id: *id,
            transport: match t.upstream.url.transport {
                Transport::Tls => CoreTransport::Stream,
                Transport::Https => CoreTransport::Message,
            },
        })
        .collect()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
