//! The owner task: one [`Engine`], fed from one channel, its outputs drained after every input
//! (the quinn `ConnectionDriver` loop). Sockets live in other tasks; this task never blocks on I/O:
//! a UDP answer goes straight onto the listener's socket with a non-blocking send while the socket
//! takes it, else into the listener's bounded queue; TCP answers go into each connection's queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lanveil_config::Transport;
use lanveil_core::engine::{
    Action, ClientAddr, CloseReason, Engine, EngineConfig, Event, PlainTarget, QueryLogEntry,
    SessionId, Stats, Transport as CoreTransport, UpstreamId, UpstreamSpec,
};
use lanveil_core::policy::Policy;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::captive::{ApiContext, PlainSocket, spawn_api_request};
use crate::clock::{Clock, TimeKeeper};
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
        tx: mpsc::Sender<crate::listen::TcpOut>,
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
    /// The WAN's DHCP/RA announced a captive portal (`None`: withdrawn), with the WAN's DNS servers.
    WanPortal {
        uri: Option<lanveil_core::capport::CaptivePortalUri>,
        dns: Vec<SocketAddr>,
    },
    /// The outcome of a captive-portal API request.
    ApiResult {
        uri: lanveil_core::capport::CaptivePortalUri,
        result: Result<lanveil_core::captive::ApiState, String>,
    },
    /// An answer to a plaintext query: from the WAN's DNS (portal names) or the local resolver.
    PlainAnswer {
        from: PlainTarget,
        tag: u16,
        bytes: Vec<u8>,
    },
    /// A `lanveil-ctl leak-test` probe from the control socket.
    LeakProbe(lanveil_core::leak_probe::Probe),
}

/// How often the upstreams' health feeds the "suspected captive" heuristic.
const WAN_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The captive-WAN side of the driver.
struct Wan {
    tracker: lanveil_core::captive::Tracker,
    settings: WanSettings,
    time: Arc<TimeKeeper>,
    dns: Vec<SocketAddr>,
    plain: Option<PlainSocket>,
    api: Option<JoinHandle<()>>,
    check_at: lanveil_core::time::Instant,
    phase: lanveil_core::captive::Phase,
    dirty: bool,
}

struct SessionHandle {
    tx: mpsc::UnboundedSender<Outgoing>,
    task: JoinHandle<()>,
}

/// One UDP answer and where it goes.
type UdpAnswer = (Vec<u8>, SocketAddr);

pub(crate) struct Driver {
    engine: Engine<OsRng>,
    clock: Clock,
    rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    targets: HashMap<UpstreamId, Arc<Target>>,
    sessions: HashMap<SessionId, SessionHandle>,
    udp: HashMap<u16, crate::listen::UdpAnswers>,
    tcp: HashMap<u64, mpsc::Sender<crate::listen::TcpOut>>,
    drain_until: Option<Instant>,
    udp_send_failures: u64,
    relaxed: std::collections::HashSet<SessionId>,
    wan: Wan,
    /// The socket to `local_resolver` (the policy sends local names there only when it is set).
    local: Option<(SocketAddr, PlainSocket)>,
    /// UDP answers of the current flush pass, per listener (reused).
    udp_out: Vec<(u16, Vec<UdpAnswer>)>,
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
        channel: (mpsc::Receiver<Input>, mpsc::Sender<Input>),
        wan: WanSettings,
        time: Arc<TimeKeeper>,
    ) -> Self {
        let (rx, tx) = channel;
        let specs = specs(&targets);
        let mut engine = Engine::new(engine_config, &specs, rng);
        engine.set_policy(Some(policy));
        Self {
            engine,
            local: None,
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
            udp_out: Vec::new(),
            wan: Wan {
                tracker: lanveil_core::captive::Tracker::new(wan.tracker),
                settings: wan,
                time,
                dns: Vec::new(),
                plain: None,
                api: None,
                check_at: lanveil_core::time::Instant::default(),
                phase: lanveil_core::captive::Phase::Open,
                dirty: false,
            },
        }
    }

    /// Opens (or closes, or keeps) the plaintext socket to `local_resolver`; the policy sends local
    /// names there only when it is set. Queries in flight to a replaced one get their deadline's
    /// SERVFAIL.
    pub(crate) fn set_local_resolver(&mut self, resolver: Option<SocketAddr>) {
        if self.local.as_ref().map(|(r, _)| *r) != resolver {
            self.local = resolver.map(|r| {
                let socket = PlainSocket::spawn(vec![r], PlainTarget::Local, self.tx.clone());
                (r, socket)
            });
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let wake = match (self.engine.poll_timeout(), self.wan.tracker.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(|t| t.min(self.wan.check_at))
            .map(|t| self.clock.to_tokio(t));
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
            self.wan_tick(now);
            self.flush();
            if let Some(until) = self.drain_until
                && (self.engine.inflight() + self.engine.plain_inflight() == 0
                    || crate::clock::mono_now() >= until)
            {
                let unanswered = self.engine.inflight() + self.engine.plain_inflight();
                if unanswered > 0 {
                    log::warn!("drain time over with {unanswered} queries unanswered");
                }
                break;
            }
        }
        for (_, s) in self.sessions.drain() {
            s.task.abort();
        }
        if let Some(t) = self.wan.api.take() {
            t.abort();
        }
    }

    /// The captive-WAN bookkeeping after every batch of inputs: the "suspected" heuristic, API
    /// requests when due, and the plaintext exception handed to the engine when it changed.
    fn wan_tick(&mut self, now: lanveil_core::time::Instant) {
        let wan = &mut self.wan;
        if now >= wan.check_at {
            wan.check_at = now + WAN_CHECK;
            let health = self.engine.upstream_health(now);
            let down = !health.is_empty() && health.iter().all(|h| !h.up && h.last_error.is_some());
            wan.tracker.upstreams_down(now, down);
        }
        let phase = wan.tracker.phase(now);
        if phase != wan.phase {
            wan.phase = phase;
            wan.dirty = true;
            let st = wan.tracker.status(now);
            let uri = st.api_uri.as_deref().unwrap_or("-");
            match phase {
                lanveil_core::captive::Phase::Open => log::info!("WAN: no captive portal"),
                lanveil_core::captive::Phase::Suspected => log::warn!(
                    "WAN: every upstream has failed for 30 s and no portal was announced: perhaps a captive portal"
                ),
                p => log::warn!("WAN captive portal {}: {uri}", p.as_str()),
            }
        }
        if wan.api.as_ref().is_none_or(JoinHandle::is_finished)
            && let Some(uri) = wan.tracker.poll_due(now)
        {
            let ctx = ApiContext {
                ca_file: wan.settings.ca_file.clone(),
                time: wan.time.clone(),
                dns: wan.dns.clone(),
                may_lookup: wan.tracker.exception(now).is_some(),
            };
            wan.api = Some(spawn_api_request(uri, ctx, self.tx.clone()));
        }
        if wan.dirty {
            wan.dirty = false;
            let ex = wan.tracker.exception(now).filter(|_| wan.plain.is_some());
            if let Some(e) = &ex {
                log::warn!(
                    "captive portal exception open for {} name(s), {} s left: those names are resolved in plaintext",
                    e.names.len(),
                    e.until.saturating_since(now).as_secs()
                );
            }
            self.engine.set_plain_exception(ex);
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
                if relaxed && self.wan.time.state() == lanveil_core::clock::ClockState::Synchronized
                {
                    // Authenticated against the floor, but the clock synchronized meanwhile (the
                    // ClockSynchronized pass may already be over): re-verify at the real time now.
                    log::info!("clock synchronized: re-verifying a new upstream connection");
                    if let Some(s) = self.sessions.remove(&session) {
                        s.task.abort();
                    }
                    // Up, then closed like any re-verified session: its queries go to a new one at once.
                    self.engine.handle_upstream_connected(now, session);
                    self.engine
                        .handle_upstream_closed(now, session, CloseReason::Eof);
                    return 1;
                }
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
                    captive: self.wan.tracker.status(now),
                    wan_dns: self.wan.dns.clone(),
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
                    wan,
                    local_resolver,
                } = *r;
                self.set_local_resolver(local_resolver);
                self.wan.tracker.set_settings(wan.tracker);
                self.wan.settings = wan;
                self.wan.dirty = true;
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
            Input::WanPortal { uri, dns } => {
                if dns != self.wan.dns {
                    self.wan.plain = (!dns.is_empty()).then(|| {
                        PlainSocket::spawn(dns.clone(), PlainTarget::Wan, self.tx.clone())
                    });
                    self.wan.dns = dns;
                }
                if self.wan.tracker.signal(now, uri)
                    && let Some(old) = self.wan.api.take()
                {
                    // A request for the previous portal: its answer would be ignored, and while it
                    // is out the new portal's request (due now) could not start.
                    old.abort();
                }
                self.wan.dirty = true;
            }
            Input::ApiResult { uri, result } => {
                if let Err(e) = &result {
                    log::info!("captive portal API {uri}: {e}");
                }
                self.wan.tracker.api_result(now, &uri, result);
                self.wan.dirty = true;
            }
            Input::PlainAnswer { from, tag, bytes } => match from {
                PlainTarget::Wan => self.engine.handle_plain_answer(now, tag, &bytes),
                PlainTarget::Local => self.engine.handle_local_answer(now, tag, &bytes),
            },
            Input::LeakProbe(probe) => self.engine.add_leak_probe(now, probe),
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
                        match self.udp_out.iter_mut().find(|(l, _)| *l == listener) {
                            Some((_, v)) => v.push((t.bytes, peer)),
                            None => self.udp_out.push((listener, vec![(t.bytes, peer)])),
                        }
                    }
                    ClientAddr::Tcp { conn, .. } => {
                        self.send_tcp(conn, crate::listen::TcpOut::Answer(t.bytes));
                    }
                }
            }
            // This pass's UDP answers: one sendmmsg per listener (usually one).
            for (listener, answers) in &mut self.udp_out {
                let dropped = match self.udp.get(listener) {
                    Some(u) => u.send_all(answers),
                    None => std::mem::take(answers).len(),
                };
                if dropped > 0 {
                    self.udp_send_failures += dropped as u64;
                    log::debug!("UDP answers not sent ({} so far)", self.udp_send_failures);
                }
            }
            while let Some(a) = self.engine.poll_action() {
                progressed = true;
                self.act(a);
            }
            while let Some(e) = self.engine.poll_event() {
                progressed = true;
                match e {
                    Event::NoAnswer { conn } => {
                        self.send_tcp(conn, crate::listen::TcpOut::NoAnswer)
                    }
                    e => self.log_event(e),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Hands a TCP client its answer (or the news that there is none). The connection's queue holds
    /// one item per outstanding frame, so it cannot be full; if it ever is, the connection is closed
    /// (its writer ends when the driver's sender goes) rather than left waiting for a lost slot.
    fn send_tcp(&mut self, conn: u64, out: crate::listen::TcpOut) {
        if let Some(tx) = self.tcp.get(&conn)
            && tx.try_send(out).is_err()
        {
            log::debug!("TCP client {conn}: answer queue full or closed; closing the connection");
            self.tcp.remove(&conn);
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
            Action::PlainQuery { message, to, .. } => {
                // Only two kinds of query reach this point: names under the owner-enabled
                // captive-portal exception (to the WAN's DNS), and with `local_resolver` the names the
                // policy keeps on the LAN (to that resolver). No socket: the deadline answers.
                let socket = match to {
                    PlainTarget::Wan => self.wan.plain.as_ref(),
                    PlainTarget::Local => self.local.as_ref().map(|(_, s)| s),
                };
                if let Some(p) = socket {
                    let _ = p.tx.try_send(message);
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
            Event::NoAnswer { .. } => {}
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
