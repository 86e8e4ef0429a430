//! The daemon's side of upstream authentication (the verifier itself is `lanveil-tls`, shared with
//! `lanveil-ctl`): rustls settings for one upstream, WebPKI validation of the authentication name
//! against a CA bundle plus (when configured) an SPKI pin set that must match a certificate of the
//! chain (RFC 7858 §4.2), checked at the time the clock rule gives ([`ClockRule`]). TLS 1.3 unless
//! the owner allowed 1.2; no session resumption unless asked (resumption links connections to each
//! other); SNI is the authentication name.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lanveil_config::{TlsVersion, Transport, Upstream};
use lanveil_core::clock;
use lanveil_tls::{CheckTime, Checks, NoObserver, VerifyTime};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig};
use tokio_rustls::TlsConnector;

use crate::clock::TimeKeeper;

pub use lanveil_tls::{SetupError as TlsSetupError, classify_io as classify, describe};

/// The clock rule (`lanveil_core::clock`) as the verifier's time: the wall clock when synchronized,
/// the floor (relaxed) otherwise; it also remembers the accepted leaf's notAfter for status.
#[derive(Debug)]
struct ClockRule {
    time: Arc<TimeKeeper>,
    not_after: Arc<crate::sync::Shared64>,
}

impl VerifyTime for ClockRule {
    fn check_time(
        &self,
        _now: UnixTime,
        validity: lanveil_core::spki::Validity,
        pinned: bool,
    ) -> Result<CheckTime, CertificateError> {
        match clock::check_at(self.time.wall(), self.time.floor(), validity, pinned) {
            clock::CheckAt::Time { at, relaxed } => Ok(CheckTime { at, relaxed }),
            clock::CheckAt::ExpiredBeforeFloor => Err(CertificateError::Expired),
        }
    }

    fn accepted(&self, validity: lanveil_core::spki::Validity) {
        self.not_after.store(validity.not_after);
    }
}

/// Everything needed to dial one upstream.
#[derive(Debug)]
pub struct Target {
    pub(crate) upstream: Upstream,
    pub(crate) addrs: Vec<std::net::SocketAddr>,
    pub(crate) server_name: ServerName<'static>,
    /// The shared settings (and resumption store); each connection gets a copy with its own verifier,
    /// except with `tls_resumption` (see [`Target::connector`]).
    tls: Arc<ClientConfig>,
    checks: Arc<Checks<ClockRule>>,
    /// With `tls_resumption '1'`: the one verifier every connection shares, and its latest decision.
    shared: Option<lanveil_tls::Decision>,
    /// With `tls_resumption '1'`: the sessions kept for resumption ([`Target::forget_tickets`]).
    tickets: Option<Arc<lanveil_tls::Tickets>>,
    time: Arc<TimeKeeper>,
    cert_not_after: Arc<crate::sync::Shared64>,
    /// How long the last TCP connect to this upstream took (ms; 0 before the first), for the delay
    /// between connection attempts ([`connect_any`]).
    connect_ms: AtomicU32,
    /// DoQ: the one QUIC endpoint (UDP socket) this upstream's sessions share.
    #[cfg(feature = "doq")]
    pub(crate) quic: super::doq_endpoint::SharedEndpoint,
}

impl Target {
    /// notAfter of the last leaf certificate accepted from this upstream (Unix seconds).
    pub fn cert_not_after(&self) -> Option<u64> {
        match self.cert_not_after.load() {
            0 => None,
            t => Some(t),
        }
    }
}

/// The CA bundle path for an upstream: its own, the global one, or the first system bundle present.
pub fn ca_path(upstream: &Upstream, global: Option<&str>) -> Result<String, TlsSetupError> {
    lanveil_tls::ca_path(upstream.ca_file.as_deref().or(global))
}

impl Target {
    /// Builds the TLS settings for `upstream`.
    pub fn new(
        upstream: &Upstream,
        global_ca: Option<&str>,
        time: Arc<TimeKeeper>,
    ) -> Result<Self, TlsSetupError> {
        let roots = lanveil_tls::load_roots(&ca_path(upstream, global_ca)?)?;
        let cert_not_after = Arc::new(crate::sync::Shared64::new(0));
        let checks = Arc::new(Checks::new(
            roots,
            upstream.pins.clone(),
            ClockRule {
                time: time.clone(),
                not_after: cert_not_after.clone(),
            },
        )?);
        let versions = match upstream.url.transport {
            // QUIC is TLS 1.3 only (RFC 9001 §4.2).
            Transport::Quic => lanveil_tls::protocol_versions(TlsVersion::V1_3)?,
            _ => lanveil_tls::protocol_versions(upstream.tls_min_version)?,
        };
        let alpn = match upstream.url.transport {
            Transport::Tls => vec![b"dot".to_vec()],
            Transport::Https => vec![b"h2".to_vec()],
            Transport::Quic => vec![b"doq".to_vec()],
        };
        // Replaced per connection by `Target::connector`, unless resumption is on.
        let (verifier, decision) = checks.verifier(NoObserver);
        let tickets = upstream.tls_resumption.then(|| {
            let time = time.clone();
            Arc::new(lanveil_tls::Tickets::new(Box::new(move || {
                time.state() == clock::ClockState::Synchronized
            })))
        });
        let config =
            checks.client_config(versions, verifier, tickets.clone(), upstream.sni, alpn)?;
        Ok(Self {
            upstream: upstream.clone(),
            addrs: upstream.addrs(),
            server_name: lanveil_tls::server_name(&upstream.url.auth_name)?,
            tls: Arc::new(config),
            checks,
            shared: upstream.tls_resumption.then_some(decision),
            tickets,
            time,
            cert_not_after,
            connect_ms: AtomicU32::new(0),
            #[cfg(feature = "doq")]
            quic: super::doq_endpoint::SharedEndpoint::default(),
        })
    }

    /// The upstream's TLS settings with a verifier of this connection's own (the shared one with
    /// `tls_resumption '1'`), and its decision.
    fn verified_config(&self) -> (ClientConfig, lanveil_tls::Decision) {
        let mut config = (*self.tls).clone();
        let decision = match &self.shared {
            Some(shared) => shared.clone(),
            None => {
                let (verifier, decision) = self.checks.verifier(NoObserver);
                config.dangerous().set_certificate_verifier(verifier);
                decision
            }
        };
        (config, decision)
    }

    /// TLS settings for one new connection: the shared settings with a verifier of its own, which
    /// records what it decided. `alpn` replaces the upstream's ALPN list.
    ///
    /// With `tls_resumption '1'` every connection keeps the one shared verifier instead: rustls
    /// resumes a session only under the verifier that authenticated it. Its decision is then the
    /// latest full handshake's, which can be another connection's if two handshakes to this upstream
    /// straddle the moment the clock synchronizes (resumption is off by default).
    fn connector(&self, alpn: Option<Vec<Vec<u8>>>) -> (TlsConnector, lanveil_tls::Decision) {
        let (mut config, decision) = self.verified_config();
        if let Some(alpn) = alpn {
            config.alpn_protocols = alpn;
        }
        (TlsConnector::from(Arc::new(config)), decision)
    }

    /// TLS settings for one QUIC connection (ALPN `doq` from [`Target::new`], TLS 1.3, never early
    /// data) with a verifier of its own, and its decision (which also says why it rejected a
    /// certificate). With `tls_resumption '1'` the shared verifier stays, as in [`Target::connector`].
    #[cfg(feature = "doq")]
    pub(crate) fn quic_client_config(&self) -> (ClientConfig, lanveil_tls::Decision) {
        let (mut config, decision) = self.verified_config();
        config.enable_early_data = false;
        (config, decision)
    }

    /// TCP connect ([`connect_any`]: staggered attempts, the first connection made wins), then the
    /// TLS handshake. Returns the stream
    /// and whether the session is *relaxed* (authenticated against the time floor, clock rule 3): the
    /// verifier's own decision, not a second look at the clock, which may have synchronized since.
    pub async fn handshake(
        &self,
        alpn: Option<Vec<Vec<u8>>>,
    ) -> io::Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, bool)> {
        let delay = attempt_delay(self.connect_ms.load(Ordering::Relaxed));
        let (tcp, took) = connect_any(&self.addrs, delay).await?;
        let took = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        self.connect_ms.store(took.max(1), Ordering::Relaxed);
        let (connector, decision) = self.connector(alpn);
        let tls = connector.connect(self.server_name.clone(), tcp).await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let relaxed = self.relaxed(decision.relaxed().filter(|_| !resumed));
        Ok((tls, relaxed))
    }

    /// Forgets the sessions kept for resumption (with `tls_resumption '1'`): the driver does when it
    /// closes a session authenticated against the time floor that came up after the clock
    /// synchronized, whose tickets the store may take as kept at the real time. A resumed session
    /// skips the certificate check, and would otherwise carry that relaxed verdict past the real
    /// time being known ([`lanveil_tls::Tickets`] forgets those kept before by itself).
    pub(crate) fn forget_tickets(&self) {
        if let Some(tickets) = &self.tickets {
            tickets.forget();
        }
    }

    /// Whether a session is *relaxed*, given the verifier's verdict on its handshake
    /// ([`lanveil_tls::Decision::relaxed`]; `None` when the verifier did not run). A resumed session
    /// (only with `tls_resumption '1'`) skips the verifier: it is judged by the clock now, as the
    /// full handshake it resumes would have been.
    pub(crate) fn relaxed(&self, verdict: Option<bool>) -> bool {
        verdict.unwrap_or_else(|| self.time.state() == clock::ClockState::Unsynchronized)
    }
}

/// The TLS versions offered for a configured minimum; TLS 1.2 only where it is compiled in.
pub fn protocol_versions(
    min: TlsVersion,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsSetupError> {
    lanveil_tls::protocol_versions(min)
}

/// `upstream_tcp_rto_min_ms` in microseconds (0: the kernel's 200 ms).
static RTO_MIN_US: AtomicU32 = AtomicU32::new(50_000);

/// Takes `upstream_tcp_rto_min_ms` (at start and on reload).
pub(crate) fn set_rto_min_ms(ms: u32) {
    RTO_MIN_US.store(ms.saturating_mul(1000), Ordering::Relaxed);
}

/// The `upstream_tcp_rto_min_ms` in force (it is process-wide).
#[cfg(test)]
pub(crate) fn rto_min_ms() -> u32 {
    RTO_MIN_US.load(Ordering::Relaxed) / 1000
}

/// Lowers the retransmission timeout floor of an upstream connection (issue 17): Linux waits at
/// least 200 ms (plus twice the RTT for a lone segment's tail-loss probe) before resending a lost
/// query; with the floor at 50 ms a loss costs about the RTT + 50 ms. The timeout stays
/// RTT-based above the floor, and 50 ms is above the 40 ms a Linux server may delay its ACK. Older
/// kernels refuse the option; the connection then keeps the default.
fn tune(tcp: &impl AsRawFd) {
    let us = RTO_MIN_US.load(Ordering::Relaxed);
    if us == 0 {
        return;
    }
    if let Err(e) = crate::sys::set_tcp_rto_min_us(tcp.as_raw_fd(), us) {
        log::debug!("TCP_RTO_MIN_US: {e}");
    }
}

/// RFC 8305's Connection Attempt Delay before anything is known of the upstream (its §5 default).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Linux resends a lost SYN after this long: an extra attempt to the same address later than this
/// gains nothing.
const SYN_RETRY: Duration = Duration::from_secs(1);

/// The delay between connection attempts given the last connect time (ms, 0 = none yet): twice
/// that (a connect that takes longer than two of its usual round trips has lost a packet), at least
/// [`ATTEMPT_DELAY`] (RFC 8305 §5 allows history-based delays down to 100 ms; 250 ms keeps the
/// extra attempts rare on a quick link).
fn attempt_delay(last_connect_ms: u32) -> Duration {
    ATTEMPT_DELAY.max(Duration::from_millis(2 * u64::from(last_connect_ms)))
}

/// Connects RFC 8305-style: attempts start in the addresses' order, each `delay` after the one
/// before (at once when that one failed), and the first connection made wins; the other attempts
/// are dropped (a connection they made is closed unused). An upstream with one address gets a
/// second attempt to it when `delay` is under [`SYN_RETRY`]: Linux resends a lost SYN only after a
/// second, and on a lossy line a lost SYN would otherwise cost the first query that second.
/// Returns the connection and how long its own attempt took. The attempts are polled here, not
/// spawned (a task type of their own would add ~19 KiB to a mipsel build).
pub(crate) async fn connect_any(
    addrs: &[std::net::SocketAddr],
    delay: Duration,
) -> io::Result<(tokio::net::TcpStream, Duration)> {
    let mut plan = addrs.to_vec();
    if let [only] = addrs
        && delay < SYN_RETRY
    {
        plan.push(*only);
    }
    let mut pending = plan.into_iter();
    let mut running = Vec::new();
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to connect to");
    // Each turn starts the next attempt: at first, after `delay`, or after a failure.
    loop {
        if let Some(a) = pending.next() {
            running.push(Box::pin(connect_one(a)));
        }
        if running.is_empty() {
            return Err(last);
        }
        let more = pending.len() > 0;
        let timer = tokio::time::sleep(delay);
        tokio::pin!(timer);
        // `None`: time for the next attempt.
        let done = std::future::poll_fn(|cx| {
            let mut ready = None;
            for (i, attempt) in running.iter_mut().enumerate() {
                if let std::task::Poll::Ready(r) = Future::poll(attempt.as_mut(), cx) {
                    ready = Some((i, r));
                    break;
                }
            }
            if let Some((i, r)) = ready {
                drop(running.swap_remove(i));
                return std::task::Poll::Ready(Some(r));
            }
            if more && timer.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(None);
            }
            std::task::Poll::Pending
        })
        .await;
        match done {
            // Dropping `running` closes the other attempts.
            Some(Ok(s)) => return Ok(s),
            Some(Err(e)) => last = e,
            None => {}
        }
    }
}

/// One TCP connection attempt, and how long it took.
async fn connect_one(a: std::net::SocketAddr) -> io::Result<(tokio::net::TcpStream, Duration)> {
    let started = crate::clock::mono_now();
    let socket = match a {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }?;
    // Before the SYN, so that the handshake's round-trip samples already use the floor.
    tune(&socket);
    let s = socket.connect(a).await?;
    let _ = s.set_nodelay(true);
    Ok((
        s,
        crate::clock::mono_now().saturating_duration_since(started),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address that refuses connections (a port just given back).
    fn refused() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    /// An address that drops SYNs: a listener whose accept queue (backlog 0) is already full, so
    /// Linux drops every further SYN, as a dead or filtered address would. The first item keeps it.
    fn silent() -> (socket2::Socket, std::net::TcpStream, std::net::SocketAddr) {
        use socket2::{Domain, Socket, Type};
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        l.listen(0).unwrap();
        let at = l.local_addr().unwrap().as_socket().unwrap();
        let filler = std::net::TcpStream::connect(at).unwrap();
        (l, filler, at)
    }

    // The delays below are far longer than the bound each test waits: what starts the next
    // attempt is the failure (or the delay), never the test's patience.
    const NEVER: Duration = Duration::from_secs(60);
    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_refused_address_is_passed_over_for_the_next_at_once() {
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = good.local_addr().unwrap();
        let (s, _) = tokio::time::timeout(BOUND, connect_any(&[refused(), to], NEVER))
            .await
            .expect("the next attempt starts when one fails, not after the delay")
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), to);
        assert!(s.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_silent_address_is_raced_after_the_delay() {
        let (_keep, _filler, dead) = silent();
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = good.local_addr().unwrap();
        // Attempts one at a time would wait out the kernel's SYN retries (minutes) on `dead`.
        let (s, _) = tokio::time::timeout(BOUND, connect_any(&[dead, to], ATTEMPT_DELAY))
            .await
            .expect("the second address is tried after the delay")
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), to);
        // The address list alone, silent: nothing connects, and the wait is the caller's (the
        // engine's connect timeout), not a quick error.
        assert!(
            tokio::time::timeout(
                Duration::from_millis(600),
                connect_any(&[dead], ATTEMPT_DELAY)
            )
            .await
            .is_err()
        );
    }

    #[tokio::test]
    async fn the_last_error_is_returned_when_every_attempt_fails() {
        let e = connect_any(&[refused(), refused()], ATTEMPT_DELAY)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        // One address (which gets a second attempt): refused.
        let e = connect_any(&[refused()], ATTEMPT_DELAY).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let e = connect_any(&[], ATTEMPT_DELAY).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
    }

    #[test]
    fn the_attempt_delay_follows_the_last_connect_time() {
        assert_eq!(attempt_delay(0), ATTEMPT_DELAY);
        assert_eq!(attempt_delay(30), ATTEMPT_DELAY);
        assert_eq!(attempt_delay(400), Duration::from_millis(800));
        // A link this slow gets no second attempt to the same address (the kernel resends sooner).
        assert!(attempt_delay(600) >= SYN_RETRY);
    }
}
