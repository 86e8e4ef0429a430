//! The engine's inputs and outputs.

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use crate::cache::CacheConfig;

/// Where a client query came from, and so where its answer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    /// A UDP datagram from `peer`, received on listener number `listener`.
    Udp {
        /// Index of the listening socket in the shell.
        listener: u16,
        /// The client's address.
        peer: SocketAddr,
    },
    /// A frame on LAN TCP connection `conn` (shell-assigned, never reused) from `peer`.
    Tcp {
        /// The connection.
        conn: u64,
        /// The client's address.
        peer: SocketAddr,
    },
}

impl ClientAddr {
    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        match *self {
            Self::Udp { peer, .. } | Self::Tcp { peer, .. } => peer,
        }
    }
}

/// How a logged query was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerSource {
    /// By an upstream.
    Upstream,
    /// From the cache.
    Cache,
    /// From the cache, expired (RFC 8767).
    Stale,
    /// Locally (local zones, canaries, DDR, REFUSED).
    Local,
    /// In plaintext by the WAN's DNS, under the captive-portal exception.
    Plaintext,
    /// In plaintext by the LAN resolver configured with `local_resolver`, for a local name.
    LocalResolver,
    /// SERVFAIL made by lanveil.
    Failed,
}

/// One entry of the opt-in, in-memory query log. It holds no client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryLogEntry {
    /// When it was answered.
    pub at: crate::time::Instant,
    /// The query name, dotted, as asked.
    pub name: alloc::string::String,
    /// QTYPE.
    pub qtype: u16,
    /// The RCODE returned.
    pub rcode: u16,
    /// Where the answer came from.
    pub source: AnswerSource,
}

/// An upstream resolver, as numbered by the shell (stable across reloads while its settings are
/// unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub u32);

/// How DNS messages travel on an upstream's sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A byte stream with 2-octet length framing (DNS over TLS): [`Action::Send`], answers through
    /// `handle_upstream_data`.
    Stream,
    /// One request per message (DNS over HTTPS, and DNS over QUIC: one stream per query):
    /// [`Action::Request`] with ID 0 on the wire, answers through `handle_upstream_response`.
    Message,
}

/// An upstream as the engine knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamSpec {
    /// The shell's id.
    pub id: UpstreamId,
    /// Its transport.
    pub transport: Transport,
    /// Its sessions are TCP connections (DNS over TLS, DNS over HTTPS on HTTP/2): a lone lost segment
    /// waits for TCP's tail-loss probe or retransmission timeout, so the engine's loss probe
    /// ([`EngineConfig::loss_probes`]) applies. False for QUIC, which has its own loss detection.
    pub tcp: bool,
}

/// How a query's upstream is chosen among those not backing off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SelectPolicy {
    /// The first in configuration order (default).
    #[default]
    Failover,
    /// Each in turn.
    RoundRobin,
    /// The lowest smoothed round-trip time (with occasional re-measurement of the others).
    Fastest,
}

/// What the engine knows of an upstream's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// Which upstream.
    pub id: UpstreamId,
    /// An authenticated connection succeeded since the last failure.
    pub up: bool,
    /// Currently backing off after failures.
    pub backing_off: bool,
    /// Smoothed round-trip time of answers, in ms.
    pub srtt_ms: Option<u32>,
    /// The last failure.
    pub last_error: Option<CloseReason>,
}

/// One upstream connection attempt; never reused, so late events of a closed session are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// An answer for a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The client.
    pub to: ClientAddr,
    /// One DNS message (the shell adds TCP framing).
    pub bytes: Vec<u8>,
}

/// What the shell must do to upstream connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open TCP + TLS to `upstream` for `session`; report with `handle_upstream_connected` or
    /// `handle_upstream_closed`.
    Connect {
        /// The new session.
        session: SessionId,
        /// Which upstream.
        upstream: UpstreamId,
    },
    /// Write these bytes (already framed) to the session's TLS stream.
    Send {
        /// The session.
        session: SessionId,
        /// Framed DNS message(s).
        bytes: Vec<u8>,
    },
    /// Send one DNS message as a request on a message-transport session; report the answer with
    /// `handle_upstream_response(session, tag, …)` or the failure with `handle_upstream_request_failed`.
    Request {
        /// The session.
        session: SessionId,
        /// Identifies the answer.
        tag: u16,
        /// The DNS message (ID 0).
        message: Vec<u8>,
    },
    /// The engine no longer waits for request `tag` on message-transport session `session` (the
    /// query was answered elsewhere, or given up): the driver may cancel it on the wire (an HTTP/2
    /// RST_STREAM with CANCEL; a QUIC STOP_SENDING with DOQ_REQUEST_CANCELLED, RFC 9250 §4.5), so
    /// the stream does not stay open until the server answers. Reporting its answer or failure
    /// afterwards is harmless: the tag is retired, and a late answer is ignored.
    Cancel {
        /// The session.
        session: SessionId,
        /// The request's tag.
        tag: u16,
    },
    /// Close the session's connection; the engine has already forgotten it.
    Close {
        /// The session.
        session: SessionId,
    },
    /// Send this query in plaintext over UDP to `to` and report the answer with
    /// `handle_plain_answer(tag, …)` ([`PlainTarget::Wan`]) or `handle_local_answer(tag, …)`
    /// ([`PlainTarget::Local`]). Emitted only for the two owner-enabled cases [`PlainTarget`] names.
    PlainQuery {
        /// Matches the answer (also the message ID).
        tag: u16,
        /// The DNS message.
        message: Vec<u8>,
        /// Where it goes.
        to: PlainTarget,
    },
}

/// Where an [`Action::PlainQuery`] goes: the only two ways a query leaves lanveil unencrypted, each
/// switched on by the owner, each for its own names only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlainTarget {
    /// The WAN's DNS servers (from the WAN's DHCP), for a name covered by the captive-portal
    /// exception the shell set with `set_plain_exception`, before its end.
    Wan,
    /// The resolver on the LAN configured with `local_resolver` (a loopback, RFC 1918, link-local or
    /// ULA address), for a name the policy keeps on the LAN ([`crate::policy::Verdict::ForwardLocal`]:
    /// `local_domain`, `home.arpa`, the RFC 6303 zones, single-label names). Never an upstream.
    Local,
}

/// Why TLS authentication or the handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The chain does not lead to a trusted CA.
    UntrustedCertificate,
    /// The certificate is not valid for the authentication name.
    NameMismatch,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// No configured SPKI pin matches the chain.
    PinMismatch,
    /// Another certificate problem.
    BadCertificate,
    /// Handshake failure not about the certificate (alert, version, cipher).
    Handshake,
}

/// Why an upstream session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The upstream closed the connection cleanly.
    Eof,
    /// Reset, broken pipe or another I/O error.
    Reset,
    /// TCP connection refused.
    Refused,
    /// No route / network unreachable.
    Unreachable,
    /// Connect or handshake took too long, or queries timed out.
    Timeout,
    /// Queries outstanding and nothing received for a whole query timeout.
    Stalled,
    /// The upstream sent bytes that are not a DNS answer to our question.
    Protocol,
    /// TLS authentication or handshake failure.
    Tls(TlsFailure),
}

/// State changes worth a log line. Never carries a query name or a client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first authenticated connection to an upstream succeeded (after start or after failures).
    UpstreamUp {
        /// Which upstream.
        upstream: UpstreamId,
    },
    /// An upstream connection attempt failed.
    UpstreamDown {
        /// Which upstream.
        upstream: UpstreamId,
        /// Why.
        reason: CloseReason,
    },
    /// A query that arrived on stream connection `conn` ([`ClientAddr::Tcp`]) will never be answered:
    /// it was dropped (a response sent as a query, a runt, a rate-limit drop, an answer that could
    /// not be built). The shell gives back whatever the frame held (its pipeline slot); every frame
    /// handed to [`super::Engine::handle_query`] ends in exactly one answer or one of these.
    NoAnswer {
        /// The connection number from [`ClientAddr::Tcp`].
        conn: u64,
    },
}

/// Engine limits and timers (validated by the configuration layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// A client query is answered (SERVFAIL at worst) within this time.
    pub query_timeout: Duration,
    /// Most client queries in flight.
    pub max_inflight: usize,
    /// Queries per upstream session before another session is opened.
    pub pipeline: usize,
    /// Most sessions per upstream.
    pub max_connections: usize,
    /// Idle upstream sessions close after this.
    pub idle_timeout: Duration,
    /// After a query, an upstream is kept warm this long: a connection that ends cleanly is dialled
    /// again in the background (zero: never).
    pub standby: Duration,
    /// Send loss probes on quiet DoT sessions (see the engine's `probe` module).
    pub loss_probes: bool,
    /// Connect + handshake limit.
    pub connect_timeout: Duration,
    /// Upper bound of the reconnect backoff.
    pub backoff_max: Duration,
    /// How an upstream is chosen.
    pub policy: SelectPolicy,
    /// The response cache, or `None` for no cache.
    pub cache: Option<CacheConfig>,
    /// Entries kept in the in-memory query log; 0 (default) keeps none and records nothing.
    pub query_log: usize,
    /// DNS64 (RFC 6147) with this NAT64 prefix, or `None` (default).
    pub dns64: Option<crate::dns64::Nat64Prefix>,
    /// Fair per-client limits.
    pub clients: ClientLimits,
}

/// What happens to a query over a client's rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RateAction {
    /// Answer REFUSED (with EDE 0 "rate limited").
    #[default]
    Refuse,
    /// Drop silently (nothing to reflect).
    Drop,
}

/// Per-source limits, so one client (or a spoofed flood) cannot starve the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientLimits {
    /// Sustained queries per second per source address (0 = no rate limit).
    pub rate_qps: u32,
    /// Burst allowance above the rate.
    pub burst: u32,
    /// What happens over the rate.
    pub action: RateAction,
    /// Queries in flight per source address (0 = only the global limit).
    pub max_inflight: usize,
    /// Apply the limits to loopback sources too (off by default: on OpenWrt dnsmasq, on 127.0.0.1,
    /// carries every LAN client's queries).
    pub limit_loopback: bool,
    /// Source addresses tracked at once (older idle ones are forgotten).
    pub table_size: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            rate_qps: 300,
            burst: 600,
            action: RateAction::Refuse,
            max_inflight: 256,
            limit_loopback: false,
            table_size: 4096,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_millis(2500),
            max_inflight: 2048,
            pipeline: 100,
            max_connections: 4,
            idle_timeout: Duration::from_secs(20),
            standby: Duration::from_secs(600),
            loss_probes: true,
            connect_timeout: Duration::from_secs(5),
            backoff_max: Duration::from_secs(4),
            policy: SelectPolicy::Failover,
            cache: Some(CacheConfig::default()),
            query_log: 0,
            dns64: None,
            clients: ClientLimits::default(),
        }
    }
}

/// Aggregate counters (no names, no addresses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client messages received.
    pub queries: u64,
    /// Answered from an upstream.
    pub answered: u64,
    /// Forwarded upstream (including retries).
    pub forwarded: u64,
    /// Retried after a session died.
    pub retries: u64,
    /// Answered SERVFAIL (lanveil's own, or an upstream's passed on), each answer counted once.
    pub servfail: u64,
    /// Of those, because the deadline passed.
    pub timeouts: u64,
    /// Answered FORMERR.
    pub formerr: u64,
    /// Answered NOTIMP.
    pub notimp: u64,
    /// Answered BADVERS.
    pub badvers: u64,
    /// Answered SERVFAIL because the in-flight table was full.
    pub overloaded: u64,
    /// Dropped (unreadable header, or a response sent to us).
    pub dropped: u64,
    /// Answers shortened for a UDP client.
    pub truncated: u64,
    /// Upstream answers that arrived after their query had been answered or timed out.
    pub late_answers: u64,
    /// Answered from the cache.
    pub cache_hits: u64,
    /// Answered with a stale cached answer because no upstream answered (RFC 8767).
    pub stale_answers: u64,
    /// Queries also placed on another upstream after an attempt timeout.
    pub hedged: u64,
    /// Connections dialled in the background to keep an upstream warm (issue 17).
    pub standby_dials: u64,
    /// Loss probes: a query sent again on a connection that went quiet (issue 17).
    pub loss_probes: u64,
    /// SERVFAIL answers received from upstreams, and error answers without the question (a
    /// FORMERR, NOTIMP, REFUSED... that RFC 1035 lets leave it out), which fail the query there too.
    pub upstream_servfail: u64,
    /// Answered locally by policy (local zones, canaries, DDR), or for a local name by the LAN
    /// resolver (`local_resolver`).
    pub local_answers: u64,
    /// Refused: the source is not in an allowed prefix.
    pub refused: u64,
    /// AAAA answers synthesized by DNS64.
    pub dns64_synthesized: u64,
    /// Queries sent in plaintext under the captive-portal exception.
    pub plaintext_portal: u64,
    /// Queries over their source's rate (refused or dropped).
    pub rate_limited: u64,
    /// Queries refused because their source had too many in flight.
    pub client_overloaded: u64,
    /// SERVFAILs lanveil made, by Extended DNS Error code (index = code, codes ≥ 31 in the last slot).
    pub failures_by_ede: [u64; 32],
    /// Authenticated upstream connections established.
    pub upstream_connects: u64,
    /// Upstream connections that failed or broke.
    pub upstream_failures: u64,
}

impl Stats {
    /// Every counter with its name in status reports (`failures_by_ede` is reported on its own). The
    /// destructuring is exhaustive: a counter added to [`Stats`] does not compile until it is listed
    /// here, so none is counted without being reported.
    pub fn counters(&self) -> [(&'static str, u64); 27] {
        let Self {
            queries,
            answered,
            forwarded,
            retries,
            servfail,
            timeouts,
            formerr,
            notimp,
            badvers,
            overloaded,
            dropped,
            truncated,
            late_answers,
            cache_hits,
            stale_answers,
            hedged,
            upstream_servfail,
            local_answers,
            refused,
            dns64_synthesized,
            plaintext_portal,
            rate_limited,
            client_overloaded,
            failures_by_ede: _,
            upstream_connects,
            upstream_failures,
            standby_dials,
            loss_probes,
        } = *self;
        [
            ("queries", queries),
            ("answered", answered),
            ("cache_hits", cache_hits),
            ("stale_answers", stale_answers),
            ("local_answers", local_answers),
            ("refused", refused),
            ("servfail", servfail),
            ("timeouts", timeouts),
            ("formerr", formerr),
            ("notimp", notimp),
            ("badvers", badvers),
            ("dropped", dropped),
            ("rate_limited", rate_limited),
            ("client_overloaded", client_overloaded),
            ("forwarded", forwarded),
            ("retries", retries),
            ("hedged", hedged),
            ("late_answers", late_answers),
            ("upstream_servfail", upstream_servfail),
            ("upstream_connects", upstream_connects),
            ("upstream_failures", upstream_failures),
            ("standby_dials", standby_dials),
            ("loss_probes", loss_probes),
            ("truncated", truncated),
            ("overloaded", overloaded),
            ("dns64_synthesized", dns64_synthesized),
            ("plaintext_portal", plaintext_portal),
        ]
    }
}
