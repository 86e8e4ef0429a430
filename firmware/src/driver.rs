//! The owner task: one [`Engine`], fed from one channel, its outputs drained after every input
//! (the quinn `ConnectionDriver` loop). Sockets live in other tasks; this task never blocks on I/O:
//! a UDP answer goes straight onto the listener's socket with a non-blocking send while the socket
//! takes it, else into the listener's bounded queue; TCP answers go into each connection's queue.
//! Each task reports on the channel through a sender of its own narrow event type (`events.rs`); this
//! task dispatches them to the engine, the session table and [`Wan`] (the captive-WAN side).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lanveil_config::Transport;
use lanveil_core::engine::{
    Action, ClientAddr, CloseReason, Engine, EngineConfig, Event, PlainTarget, SessionId,
    Transport as CoreTransport, UpstreamId, UpstreamSpec,
};
use lanveil_core::policy::Policy;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::captive::{LocalResolver, Wan};
use crate::clock::{Clock, TimeKeeper};
use crate::events::{
    ControlRequest, Input, ListenerEvent, Reconfigure, Sender, Snapshot, TcpOut, UdpAnswers,
    UpstreamEvent, UpstreamSender, WanEvent,
};
use crate::rng::OsRng;
use crate::upstream::{self, Outgoing, tls::Target, tls::describe};

/// The driver's configuration types, for the composition root.
pub(crate) use crate::events::WanSettings;

struct SessionHandle {
    tx: mpsc::UnboundedSender<Outgoing>,
    task: JoinHandle<()>,
}

/// One UDP answer and where it goes.
type UdpAnswer = (Vec<u8>, SocketAddr);

pub(crate) struct Driver {
    engine: Engine<OsRng>,
    clock: Clock,
    time: Arc<TimeKeeper>,
    rx: mpsc::Receiver<Input>,
    /// Handed to each upstream session task.
    upstream_events: UpstreamSender,
    targets: HashMap<UpstreamId, Arc<Target>>,
    sessions: HashMap<SessionId, SessionHandle>,
    udp: HashMap<u16, UdpAnswers>,
    tcp: HashMap<u64, mpsc::Sender<TcpOut>>,
    drain_until: Option<Instant>,
    udp_send_failures: u64,
    relaxed: std::collections::HashSet<SessionId>,
    wan: Wan,
    /// The socket to `local_resolver` (the policy sends local names there only when it is set).
    local: LocalResolver,
    /// UDP answers of the current flush pass, per listener (reused).
    udp_out: Vec<(u16, Vec<UdpAnswer>)>,
}

/// Inputs (a UDP message counts once per datagram) handled per wake-up before outputs are flushed
/// (bounded so timers stay timely).
const BATCH: usize = 64;

impl Driver {
    /// A driver reading the channel; from its sending side it hands the tasks it starts (sessions,
    /// plaintext sockets, API requests) their own narrow senders.
    pub(crate) fn new(
        engine_config: EngineConfig,
        targets: Vec<(UpstreamId, Arc<Target>)>,
        policy: Policy,
        rng: OsRng,
        channel: (mpsc::Receiver<Input>, Sender<Input>),
        wan: WanSettings,
        time: Arc<TimeKeeper>,
    ) -> Self {
        let (rx, events) = channel;
        let specs = specs(&targets);
        let mut engine = Engine::new(engine_config, &specs, rng);
        engine.set_policy(Some(policy));
        Self {
            engine,
            local: LocalResolver::new(events.narrow()),
            clock: Clock::new(),
            rx,
            upstream_events: events.narrow(),
            targets: targets.into_iter().collect(),
            sessions: HashMap::new(),
            udp: HashMap::new(),
            tcp: HashMap::new(),
            drain_until: None,
            udp_send_failures: 0,
            relaxed: std::collections::HashSet::new(),
            udp_out: Vec::new(),
            wan: Wan::new(wan, time.clone(), events.narrow()),
            time,
        }
    }

    /// Opens (or closes, or keeps) the plaintext socket to `local_resolver`; the policy sends local
    /// names there only when it is set. Queries in flight to a replaced one get their deadline's
    /// SERVFAIL.
    pub(crate) fn set_local_resolver(&mut self, resolver: Option<SocketAddr>) {
        self.local.set(resolver);
    }

    pub(crate) async fn run(mut self) {
        loop {
            let wake = self
                .wan
                .wake(self.engine.poll_timeout())
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
            self.wan.tick(now, &mut self.engine);
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
        self.wan.stop();
    }

    /// Handles one input; returns how many it counts for in [`BATCH`].
    fn handle(&mut self, input: Input) -> usize {
        let now = self.clock.now();
        match input {
            Input::Listener(e) => return self.listener_event(now, e),
            Input::Upstream(e) => self.upstream_event(now, e),
            Input::Control(r) => self.control_request(now, r),
            Input::Wan(e) => self.wan_event(now, e),
            Input::ClockSynchronized => self.clock_synchronized(now),
        }
        1
    }

    /// Returns how many inputs the event counts for (one per datagram).
    fn listener_event(&mut self, now: lanveil_core::time::Instant, e: ListenerEvent) -> usize {
        match e {
            ListenerEvent::Udp {
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
            ListenerEvent::UdpSocket { listener, answers } => match answers {
                Some(s) => {
                    self.udp.insert(listener, s);
                }
                None => {
                    self.udp.remove(&listener);
                }
            },
            ListenerEvent::TcpOpened { conn, tx } => {
                self.tcp.insert(conn, tx);
            }
            ListenerEvent::TcpFrame { conn, peer, bytes } => {
                self.engine
                    .handle_query(now, ClientAddr::Tcp { conn, peer }, &bytes);
            }
            ListenerEvent::TcpClosed { conn } => {
                self.tcp.remove(&conn);
            }
        }
        1
    }

    fn upstream_event(&mut self, now: lanveil_core::time::Instant, e: UpstreamEvent) {
        match e {
            UpstreamEvent::Connected { session, relaxed } => {
                if relaxed && self.time.state() == lanveil_core::clock::ClockState::Synchronized {
                    // Authenticated against the floor, but the clock synchronized meanwhile (the
                    // ClockSynchronized pass may already be over): re-verify at the real time now.
                    log::info!("clock synchronized: re-verifying a new upstream connection");
                    self.forget_tickets();
                    if let Some(s) = self.sessions.remove(&session) {
                        s.task.abort();
                    }
                    // Up, then closed like any re-verified session: its queries go to a new one at once.
                    self.engine.handle_upstream_connected(now, session);
                    self.engine.handle_upstream_dropped(now, session);
                    return;
                }
                // A session the engine already closed (its `Connected` was queued behind the close)
                // is not remembered: nothing would ever remove it.
                if relaxed && self.sessions.contains_key(&session) {
                    self.relaxed.insert(session);
                }
                self.engine.handle_upstream_connected(now, session);
            }
            UpstreamEvent::Data { session, bytes } => {
                self.engine.handle_upstream_data(now, session, &bytes)
            }
            UpstreamEvent::Response {
                session,
                tag,
                bytes,
            } => {
                self.engine
                    .handle_upstream_response(now, session, tag, &bytes);
            }
            UpstreamEvent::RequestFailed { session, tag } => {
                self.engine
                    .handle_upstream_request_failed(now, session, tag);
            }
            UpstreamEvent::Closed { session, reason } => {
                log::debug!(
                    "upstream session {}: closed ({})",
                    session.0,
                    describe(reason)
                );
                self.sessions.remove(&session);
                self.relaxed.remove(&session);
                self.engine.handle_upstream_closed(now, session, reason);
            }
        }
    }

    /// Rule 4: connections authenticated against the floor are closed; their queries go to
    /// connections verified at the real time.
    fn clock_synchronized(&mut self, now: lanveil_core::time::Instant) {
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
                self.engine.handle_upstream_dropped(now, session);
            }
        }
    }

    /// A relaxed session that came up after the clock synchronized may leave tickets the stores take
    /// for ones kept at the real time; a session resumed from one would skip the certificate check
    /// and keep the relaxed verdict. They go with it (resumption is off by default; which upstream a
    /// ticket came from is not tracked, so every upstream's go).
    fn forget_tickets(&self) {
        for target in self.targets.values() {
            target.forget_tickets();
        }
    }

    fn control_request(&mut self, now: lanveil_core::time::Instant, r: ControlRequest) {
        match r {
            ControlRequest::Snapshot { reply } => {
                let _ = reply.send(Snapshot {
                    now,
                    stats: *self.engine.stats(),
                    inflight: self.engine.inflight(),
                    health: self.engine.upstream_health(now),
                    cache: self.engine.cache_usage(),
                    log: self.engine.query_log().cloned().collect(),
                    captive: self.wan.status(now),
                    wan_dns: self.wan.dns().to_vec(),
                });
            }
            ControlRequest::QueryLog { reply } => {
                let _ = reply.send(self.engine.query_log().cloned().collect());
            }
            ControlRequest::Reconfigure(r) => {
                let Reconfigure {
                    engine,
                    targets,
                    policy,
                    wan,
                    local_resolver,
                } = *r;
                self.set_local_resolver(local_resolver);
                self.wan.set_settings(now, wan);
                self.engine.set_policy(Some(policy));
                let specs = specs(&targets);
                // Tasks of retired sessions hold their own Arc of the old target.
                self.targets = targets.into_iter().collect();
                self.engine.reconfigure(now, engine, &specs);
            }
            ControlRequest::Stats { reply } => {
                let _ = reply.send((*self.engine.stats(), self.engine.inflight()));
            }
            ControlRequest::Drain { until } => {
                self.drain_until = Some(until);
            }
            ControlRequest::WanPortal { uri, dns } => self.wan.portal(now, uri, dns),
            ControlRequest::LeakProbe(probe) => self.engine.add_leak_probe(now, probe),
        }
    }

    fn wan_event(&mut self, now: lanveil_core::time::Instant, e: WanEvent) {
        match e {
            WanEvent::ApiResult { uri, result } => self.wan.api_result(now, &uri, result),
            WanEvent::PlainAnswer { from, tag, bytes } => match from {
                PlainTarget::Wan => self.engine.handle_plain_answer(now, tag, &bytes),
                PlainTarget::Local => self.engine.handle_local_answer(now, tag, &bytes),
            },
        }
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
                        self.send_tcp(conn, TcpOut::Answer(t.bytes));
                    }
                }
            }
            // This pass's UDP answers: one sendmmsg per listener (usually one).
            for (listener, answers) in &mut self.udp_out {
                let engine = &mut self.engine;
                let dropped = match self.udp.get(listener) {
                    Some(u) => u.send_all(answers, |buf| engine.recycle(buf)),
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
                    Event::NoAnswer { conn } => self.send_tcp(conn, TcpOut::NoAnswer),
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
    fn send_tcp(&mut self, conn: u64, out: TcpOut) {
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
                log::debug!("upstream session {}: dialling", session.0);
                let Some(target) = self.targets.get(&upstream).cloned() else {
                    let now = self.clock.now();
                    self.engine
                        .handle_upstream_closed(now, session, CloseReason::Unreachable);
                    return;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let events = self.upstream_events.clone();
                let task = crate::task::spawn(upstream::run(session, target, rx, events));
                self.sessions.insert(session, SessionHandle { tx, task });
            }
            Action::Send { session, bytes } => {
                log::trace!("upstream session {}: {} octets", session.0, bytes.len());
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
            Action::Cancel { session, tag } => {
                if let Some(s) = self.sessions.get(&session) {
                    let _ = s.tx.send(Outgoing::Cancel { tag });
                }
            }
            Action::Close { session } => {
                log::debug!("upstream session {}: closing", session.0);
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
                    PlainTarget::Wan => self.wan.plain(),
                    PlainTarget::Local => self.local.plain(),
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
                // DoQ is one stream per query with ID 0: the engine's message transport.
                Transport::Https | Transport::Quic => CoreTransport::Message,
            },
            // DoH runs on HTTP/2 over TCP; QUIC has its own loss detection.
            tcp: !matches!(t.upstream.url.transport, Transport::Quic),
        })
        .collect()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallClock;

    /// A wall clock far behind the time floor: the clock is not synchronized.
    struct Behind;

    impl WallClock for Behind {
        fn now_unix(&self) -> u64 {
            0
        }
    }

    fn driver() -> Driver {
        let config = lanveil_config::Config::default();
        let time = Arc::new(TimeKeeper::new(Arc::new(Behind), None, 0));
        assert_eq!(
            time.state(),
            lanveil_core::clock::ClockState::Unsynchronized
        );
        let (tx, rx) = crate::events::channel(16);
        // No upstream: nothing is dialled; the sessions below are the test's own.
        Driver::new(
            config.engine(),
            Vec::new(),
            Policy::new(&config.policy_config()).unwrap(),
            OsRng::new().unwrap(),
            (rx, tx),
            WanSettings {
                tracker: config.captive.settings(),
                ca_file: None,
            },
            time,
        )
    }

    fn handle() -> SessionHandle {
        let (tx, _) = mpsc::unbounded_channel();
        SessionHandle {
            tx,
            task: tokio::spawn(async {}),
        }
    }

    /// A session connected against the time floor is remembered for re-verification only while
    /// the driver still has it: one closed before its `Connected` arrived would stay in the set for
    /// ever (nothing removes it again).
    #[tokio::test]
    async fn a_session_closed_before_its_connected_event_is_not_remembered() {
        let mut d = driver();
        let now = d.clock.now();
        let (live, closed) = (SessionId(1), SessionId(2));
        d.sessions.insert(live, handle());
        d.sessions.insert(closed, handle());
        d.act(Action::Close { session: closed });
        d.upstream_event(
            now,
            UpstreamEvent::Connected {
                session: closed,
                relaxed: true,
            },
        );
        assert!(
            !d.relaxed.contains(&closed),
            "a closed session is remembered"
        );
        d.upstream_event(
            now,
            UpstreamEvent::Connected {
                session: live,
                relaxed: true,
            },
        );
        assert_eq!(d.relaxed.iter().copied().collect::<Vec<_>>(), [live]);
        d.upstream_event(
            now,
            UpstreamEvent::Closed {
                session: live,
                reason: CloseReason::Unreachable,
            },
        );
        assert!(d.relaxed.is_empty());
    }
}
