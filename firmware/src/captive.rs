//! The I/O half of the captive-WAN support (`lanveil_core::captive` holds the state): [`Wan`], the
//! driver's bookkeeping around that state (the "suspected" heuristic, API requests when due, the
//! plaintext exception handed to the engine); the RFC 8908 API request over HTTPS; and
//! [`PlainSocket`], the plaintext UDP socket behind the engine's two typed plaintext paths: the
//! owner-enabled portal-name exception to the WAN's DNS servers, and (a second socket,
//! [`LocalResolver`]) local names to the owner's `local_resolver` on the LAN. Nothing else uses these
//! paths.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lanveil_config::{TlsVersion, Transport, Upstream, UpstreamUrl};
use lanveil_core::capport::{CaptivePortalUri, HttpsParts, https_parts};
use lanveil_core::captive::{ApiState, MAX_API_BODY};
use lanveil_core::engine::PlainTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::TimeKeeper;
use crate::events::{WanEvent, WanSender, WanSettings};
use crate::upstream::tls::Target;

/// The oldest TLS the portal API may speak: 1.2 (portal gear is often old) where the build has it,
/// else 1.3 (the DoT-only small-flash build compiles TLS 1.2 out).
pub(crate) const API_TLS_MIN: TlsVersion = if cfg!(feature = "tls12") {
    TlsVersion::V1_2
} else {
    TlsVersion::V1_3
};

/// The whole API request (lookup, connect, TLS, HTTP) gets this long.
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest HTTP response read (headers + body).
const MAX_RESPONSE: usize = 16 * 1024;
/// Most WAN DNS servers used.
pub(crate) const MAX_WAN_DNS: usize = 4;

/// Parses the WAN DNS servers handed over by the hook: `IP` (port 53) or `IP:PORT` / `[IPv6]:PORT`.
pub(crate) fn parse_dns(list: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for s in list.iter().take(MAX_WAN_DNS) {
        let sa = s
            .parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| format!("{s}: not an IP address or IP:PORT"))?;
        if sa.ip().is_unspecified() || sa.ip().is_multicast() {
            return Err(format!("{s}: not a usable DNS server address"));
        }
        // A loopback server on port 53 (a lease from an untrusted WAN may say 127.0.0.1; the hook
        // passes bare addresses) is the router's own dnsmasq, which forwards to lanveil: the
        // portal's lookups would go round in a circle.
        if sa.ip().is_loopback() && sa.port() == 53 {
            return Err(format!(
                "{s}: the router's own DNS (it forwards to lanveil), not the WAN's"
            ));
        }
        out.push(sa);
    }
    Ok(out)
}

/// A WAN captive portal as the hook reports it: its URI and the WAN's DNS servers.
pub(crate) type WanPortal = (Box<CaptivePortalUri>, Vec<SocketAddr>);

/// Largest record read (the hook writes one URI and at most a few addresses).
const MAX_RECORD: u64 = 4096;

/// The WAN portal the init script's udhcpc hook recorded (one line `INTERFACE URI [DNS...]`, at
/// `--wan-portal-record`). Read at every start, so a daemon that procd respawns after a crash (no
/// init script runs then) knows the portal its predecessor was told. `Ok(None)`: no record, i.e. no
/// portal. The record comes from an untrusted network through the hook: the URI and the servers are
/// checked as the control socket's `wan-portal set` checks them.
pub(crate) fn read_portal_record(path: &std::path::Path) -> Result<Option<WanPortal>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_RECORD + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_RECORD {
        return Err(format!(
            "{}: longer than {MAX_RECORD} bytes",
            path.display()
        ));
    }
    parse_portal_record(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The record's line: interface (not used: the hook keeps it for itself), URI, DNS servers.
fn parse_portal_record(text: &str) -> Result<Option<WanPortal>, String> {
    let line = text.lines().next().unwrap_or("");
    let mut words = line.split_ascii_whitespace();
    let (Some(_iface), Some(uri)) = (words.next(), words.next()) else {
        return if line.trim().is_empty() {
            Ok(None)
        } else {
            Err("not INTERFACE URI [DNS...]".into())
        };
    };
    let uri = CaptivePortalUri::parse(uri.as_bytes())
        .map_err(|e| format!("captive-portal URI refused: {e}"))?;
    let dns: Vec<String> = words.map(str::to_owned).collect();
    Ok(Some((Box::new(uri), parse_dns(&dns)?)))
}

/// How often the upstreams' health feeds the "suspected captive" heuristic.
const WAN_CHECK: Duration = Duration::from_secs(2);

/// The captive-WAN side of the driver: the portal state, the WAN's DNS servers and plaintext socket,
/// and the API request in flight. The driver calls [`Wan::tick`] after every batch of inputs.
pub(crate) struct Wan {
    tracker: lanveil_core::captive::Tracker,
    settings: WanSettings,
    time: Arc<TimeKeeper>,
    events: WanSender,
    dns: Vec<SocketAddr>,
    plain: Option<PlainSocket>,
    api: Option<JoinHandle<()>>,
    check_at: lanveil_core::time::Instant,
    phase: lanveil_core::captive::Phase,
    dirty: bool,
}

impl Wan {
    pub(crate) fn new(settings: WanSettings, time: Arc<TimeKeeper>, events: WanSender) -> Self {
        Self {
            tracker: lanveil_core::captive::Tracker::new(settings.tracker),
            settings,
            time,
            events,
            dns: Vec::new(),
            plain: None,
            api: None,
            check_at: lanveil_core::time::Instant::default(),
            phase: lanveil_core::captive::Phase::Open,
            dirty: false,
        }
    }

    /// When the driver must wake next, given the engine's next timeout: the earlier of that and the
    /// tracker's, and no later than the next health check (none while neither has a timeout).
    pub(crate) fn wake(
        &self,
        engine: Option<lanveil_core::time::Instant>,
    ) -> Option<lanveil_core::time::Instant> {
        match (engine, self.tracker.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|t| t.min(self.check_at))
    }

    /// The captive-WAN bookkeeping after every batch of inputs: the "suspected" heuristic, API
    /// requests when due, and the plaintext exception handed to the engine when it changed.
    pub(crate) fn tick<R: lanveil_core::rng::Rng>(
        &mut self,
        now: lanveil_core::time::Instant,
        engine: &mut lanveil_core::engine::Engine<R>,
    ) {
        if now >= self.check_at {
            self.check_at = now + WAN_CHECK;
            let health = engine.upstream_health(now);
            let down = !health.is_empty() && health.iter().all(|h| !h.up && h.last_error.is_some());
            self.tracker.upstreams_down(now, down);
        }
        let phase = self.tracker.phase(now);
        if phase != self.phase {
            self.phase = phase;
            self.dirty = true;
            let st = self.tracker.status(now);
            let uri = st.api_uri.as_deref().unwrap_or("-");
            match phase {
                lanveil_core::captive::Phase::Open => log::info!("WAN: no captive portal"),
                lanveil_core::captive::Phase::Suspected => log::warn!(
                    "WAN: every upstream has failed for 30 s and no portal was announced: perhaps a captive portal"
                ),
                p => log::warn!("WAN captive portal {}: {uri}", p.as_str()),
            }
        }
        if self.api.as_ref().is_none_or(JoinHandle::is_finished)
            && let Some(uri) = self.tracker.poll_due(now)
        {
            let ctx = ApiContext {
                ca_file: self.settings.ca_file.clone(),
                time: self.time.clone(),
                dns: self.dns.clone(),
                may_lookup: self.tracker.exception(now).is_some(),
            };
            self.api = Some(spawn_api_request(uri, ctx, self.events.clone()));
        }
        if self.dirty {
            self.dirty = false;
            let ex = self.tracker.exception(now).filter(|_| self.plain.is_some());
            if let Some(e) = &ex {
                log::warn!(
                    "captive portal exception open for {} name(s), {} s left: those names are resolved in plaintext",
                    e.names.len(),
                    e.until.saturating_since(now).as_secs()
                );
            }
            engine.set_plain_exception(ex);
        }
    }

    /// The WAN hook's report: the announced portal (`None`: withdrawn) and the WAN's DNS servers.
    pub(crate) fn portal(
        &mut self,
        now: lanveil_core::time::Instant,
        uri: Option<Box<CaptivePortalUri>>,
        dns: Vec<SocketAddr>,
    ) {
        if dns != self.dns {
            self.plain = (!dns.is_empty())
                .then(|| PlainSocket::spawn(dns.clone(), PlainTarget::Wan, self.events.clone()));
            self.dns = dns;
        }
        if self.tracker.signal(now, uri.map(|u| *u))
            && let Some(old) = self.api.take()
        {
            // A request for the previous portal: its answer would be ignored, and while it is out
            // the new portal's request (due now) could not start.
            old.abort();
        }
        self.dirty = true;
    }

    /// The outcome of an API request.
    pub(crate) fn api_result(
        &mut self,
        now: lanveil_core::time::Instant,
        uri: &CaptivePortalUri,
        result: Result<ApiState, String>,
    ) {
        if let Err(e) = &result {
            log::info!("captive portal API {uri}: {e}");
        }
        self.tracker.api_result(now, uri, result);
        self.dirty = true;
    }

    /// New settings from a reload.
    pub(crate) fn set_settings(&mut self, now: lanveil_core::time::Instant, settings: WanSettings) {
        self.tracker.set_settings(now, settings.tracker);
        self.settings = settings;
        self.dirty = true;
    }

    pub(crate) fn status(&self, now: lanveil_core::time::Instant) -> lanveil_core::captive::Status {
        self.tracker.status(now)
    }

    /// The WAN's DNS servers the hook reported.
    pub(crate) fn dns(&self) -> &[SocketAddr] {
        &self.dns
    }

    /// The plaintext socket to the WAN's DNS servers (none while the hook reported none).
    pub(crate) fn plain(&self) -> Option<&PlainSocket> {
        self.plain.as_ref()
    }

    /// Stops the API request in flight (the driver is stopping).
    pub(crate) fn stop(&mut self) {
        if let Some(t) = self.api.take() {
            t.abort();
        }
    }
}

/// The plaintext socket to the owner's `local_resolver` (the policy sends local names there only
/// when it is set).
pub(crate) struct LocalResolver {
    socket: Option<(SocketAddr, PlainSocket)>,
    events: WanSender,
}

impl LocalResolver {
    pub(crate) fn new(events: WanSender) -> Self {
        Self {
            socket: None,
            events,
        }
    }

    /// Opens (or closes, or keeps) the socket. Queries in flight to a replaced one get their
    /// deadline's SERVFAIL.
    pub(crate) fn set(&mut self, resolver: Option<SocketAddr>) {
        if self.socket.as_ref().map(|(r, _)| *r) != resolver {
            self.socket = resolver.map(|r| {
                let socket = PlainSocket::spawn(vec![r], PlainTarget::Local, self.events.clone());
                (r, socket)
            });
        }
    }

    pub(crate) fn plain(&self) -> Option<&PlainSocket> {
        self.socket.as_ref().map(|(_, s)| s)
    }
}

/// The task that owns the plaintext socket(s) of one [`PlainTarget`]: queries from the driver go to
/// every server of that target (the WAN's DNS servers, or the one local resolver), answers from
/// those servers (and no one else) go back to the driver tagged with the target.
pub(crate) struct PlainSocket {
    pub(crate) tx: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Drop for PlainSocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PlainSocket {
    pub(crate) fn spawn(servers: Vec<SocketAddr>, target: PlainTarget, events: WanSender) -> Self {
        let (tx, rx) = mpsc::channel(lanveil_core::engine::MAX_PLAIN_INFLIGHT);
        let task = crate::task::spawn(plain_io(servers, target, rx, events));
        Self { tx, task }
    }
}

async fn plain_io(
    servers: Vec<SocketAddr>,
    target: PlainTarget,
    mut rx: mpsc::Receiver<Vec<u8>>,
    events: WanSender,
) {
    let bind = |v6: bool| async move {
        if v6 {
            UdpSocket::bind(any_port(true)).await.ok()
        } else {
            UdpSocket::bind(any_port(false)).await.ok()
        }
    };
    let v4 = match servers.iter().any(SocketAddr::is_ipv4) {
        true => bind(false).await,
        false => None,
    };
    let v6 = match servers.iter().any(SocketAddr::is_ipv6) {
        true => bind(true).await,
        false => None,
    };
    let mut buf4 = vec![0u8; 4096];
    let mut buf6 = vec![0u8; 4096];
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                for s in &servers {
                    let sock = if s.is_ipv4() { v4.as_ref() } else { v6.as_ref() };
                    if let Some(sock) = sock {
                        let _ = sock.send_to(&msg, s).await;
                    }
                }
            }
            r = recv(v4.as_ref(), &mut buf4) => {
                if let Some(event) = answer(r, &servers, target, &buf4) {
                    let _ = events.send(event).await;
                }
            }
            r = recv(v6.as_ref(), &mut buf6) => {
                if let Some(event) = answer(r, &servers, target, &buf6) {
                    let _ = events.send(event).await;
                }
            }
        }
    }
}

/// The wildcard address with an ephemeral port, as a `SocketAddr` (a string would pull in tokio's
/// blocking name-resolution path and the libc resolver: ~140 KiB on a router for nothing).
fn any_port(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}

async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

fn answer(
    r: std::io::Result<(usize, SocketAddr)>,
    servers: &[SocketAddr],
    target: PlainTarget,
    buf: &[u8],
) -> Option<WanEvent> {
    let (n, from) = r.ok()?;
    if !servers.contains(&from) || n < 12 {
        return None;
    }
    Some(WanEvent::PlainAnswer {
        from: target,
        tag: u16::from_be_bytes([buf[0], buf[1]]),
        bytes: buf[..n].to_vec(),
    })
}

/// What the API request needs besides the URI.
#[derive(Clone)]
struct ApiContext {
    pub(crate) ca_file: Option<String>,
    pub(crate) time: Arc<TimeKeeper>,
    pub(crate) dns: Vec<SocketAddr>,
    /// The plaintext exception is open: the API host may be looked up through the WAN's DNS.
    pub(crate) may_lookup: bool,
}

/// Requests the RFC 8908 API and reports the outcome to the driver.
fn spawn_api_request(uri: CaptivePortalUri, ctx: ApiContext, events: WanSender) -> JoinHandle<()> {
    crate::task::spawn(async move {
        let result = match tokio::time::timeout(API_TIMEOUT, api_request(uri.as_str(), &ctx)).await
        {
            Ok(r) => r,
            Err(_) => Err("no answer within 5 s".to_string()),
        };
        let uri = Box::new(uri);
        let _ = events.send(WanEvent::ApiResult { uri, result }).await;
    })
}

async fn api_request(uri: &str, ctx: &ApiContext) -> Result<ApiState, String> {
    let HttpsParts {
        authority,
        host,
        port,
        path_and_query,
    } = https_parts(uri).ok_or("not an https:// URI")?;
    let path = match path_and_query {
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) if !ctx.may_lookup => {
            return Err(format!(
                "{host} would need a plaintext lookup (captive_plaintext is off or its time is over)"
            ));
        }
        Err(_) => lookup(host, &ctx.dns)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
    };
    let upstream = Upstream {
        name: "captive-portal-api".into(),
        url: UpstreamUrl {
            transport: Transport::Https,
            addr: None,
            port,
            auth_name: host.to_ascii_lowercase(),
            path: path.clone(),
        },
        pins: Vec::new(),
        ca_file: None,
        tls_min_version: API_TLS_MIN,
        bootstrap: addrs.iter().map(SocketAddr::ip).collect(),
        http_get: true,
        sni: true,
        tls_resumption: false,
    };
    let target = Target::new(&upstream, ctx.ca_file.as_deref(), ctx.time.clone())
        .map_err(|e| e.to_string())?;
    let (mut tls, _relaxed) = target
        .handshake(Some(vec![b"http/1.1".to_vec()]))
        .await
        .map_err(|e| format!("connect/TLS: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/captive+json\r\nUser-Agent: lanveil/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&chunk[..n]);
                if response.len() > MAX_RESPONSE {
                    return Err("response too large".into());
                }
            }
            // A server that closes without close_notify after a complete response is common.
            Err(_) if !response.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let body = http_body(&response)?;
    ApiState::parse(&body).map_err(|e| format!("API document: {e}"))
}

/// The body of an HTTP/1.1 200 response with `application/captive+json` (Content-Length, chunked,
/// or read to the end).
pub(crate) fn http_body(resp: &[u8]) -> Result<Vec<u8>, String> {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|_| "bad HTTP header")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("HTTP status {code}"));
    }
    let mut length = None;
    let mut chunked = false;
    let mut json = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "content-type" => {
                json = v
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/captive+json"))
            }
            _ => {}
        }
    }
    if !json {
        return Err("not application/captive+json (RFC 8908 §5)".into());
    }
    let body = &resp[end + 4..];
    if chunked {
        return dechunk(body);
    }
    Ok(match length {
        Some(n) => body
            .get(..n)
            .ok_or("body shorter than Content-Length")?
            .to_vec(),
        None => body.to_vec(),
    })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&body[..eol]).map_err(|_| "bad chunk")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size > MAX_API_BODY || body.len() < size + 2 {
            return Err("bad chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Looks `host` up (A, then AAAA) through the WAN's DNS in plaintext; only called while the
/// exception for the portal's names is open.
async fn lookup(host: &str, dns: &[SocketAddr]) -> Result<Vec<IpAddr>, String> {
    let server = *dns.first().ok_or("no WAN DNS server known")?;
    let sock = UdpSocket::bind(any_port(server.is_ipv6()))
        .await
        .map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for qtype in [1u16, 28] {
        let mut id = [0u8; 2];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| "the OS random generator failed")?;
        let q = query(u16::from_be_bytes(id), host, qtype).ok_or("bad host name")?;
        sock.send(&q).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let deadline = crate::clock::mono_now() + Duration::from_secs(2);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            if n >= 12 && buf[..2] == q[..2] && buf[12..n].starts_with(&q[12..]) {
                out.extend(addresses(&buf[..n], qtype));
                break;
            }
        }
    }
    if out.is_empty() {
        return Err(format!("{host}: no address from the WAN's DNS"));
    }
    Ok(out)
}

/// The query for `host` (lower-cased, wire form from `lanveil_core::wire::name`): RD, one question.
fn query(id: u16, host: &str, qtype: u16) -> Option<Vec<u8>> {
    let name = lanveil_core::captive::host_wire(host)?;
    let mut q = Vec::with_capacity(name.len() + 16);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Some(q)
}

/// The A/AAAA addresses in the answer section (`scan` and the core's record iterator: the rules the
/// engine applies to every answer).
fn addresses(msg: &[u8], qtype: u16) -> Vec<IpAddr> {
    let Ok(scan) = lanveil_core::wire::message::scan(msg) else {
        return Vec::new();
    };
    scan.answers(msg)
        .filter(|r| r.rtype == qtype)
        .filter_map(|r| match msg.get(r.rdata)? {
            &[a, b, c, d] if qtype == 1 => Some(IpAddr::from([a, b, c, d])),
            v6 if qtype == 28 => <[u8; 16]>::try_from(v6).ok().map(IpAddr::from),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hooks_portal_record_is_checked_like_the_socket_request() {
        let (uri, dns) =
            parse_portal_record("wan https://portal.test/api 192.0.2.53 198.51.100.1\n")
                .unwrap()
                .unwrap();
        assert_eq!(uri.as_str(), "https://portal.test/api");
        assert_eq!(
            dns,
            ["192.0.2.53:53", "198.51.100.1:53"].map(|s| s.parse::<SocketAddr>().unwrap())
        );
        // No servers: the portal alone (the lease named none).
        let (_, dns) = parse_portal_record("wwan https://portal.test/")
            .unwrap()
            .unwrap();
        assert!(dns.is_empty());
        // No record line: no portal.
        assert!(parse_portal_record("").unwrap().is_none());
        assert!(parse_portal_record("  \n").unwrap().is_none());
        // Only the first line counts (the hook writes one).
        let (uri, _) = parse_portal_record("wan https://a.test/\nwan https://b.test/\n")
            .unwrap()
            .unwrap();
        assert_eq!(uri.as_str(), "https://a.test/");
        for (bad, why) in [
            ("wan", "not INTERFACE URI"),
            ("wan http://portal.test/", "captive-portal URI refused"),
            ("wan https://portal.test/ dns.hotel", "not an IP address"),
            (
                "wan https://portal.test/ 0.0.0.0",
                "not a usable DNS server",
            ),
        ] {
            let e = parse_portal_record(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_record_is_no_portal_and_a_huge_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("lanveil-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wan_portal");
        let _ = std::fs::remove_file(&path);
        assert!(read_portal_record(&path).unwrap().is_none());
        std::fs::write(
            &path,
            format!("wan https://portal.test/ {}", "1.2.3.4 ".repeat(600)),
        )
        .unwrap();
        let e = read_portal_record(&path).unwrap_err();
        assert!(
            e.contains("longer than 4096 bytes") && e.contains("wan_portal"),
            "{e}"
        );
        std::fs::write(&path, "wan https://portal.test/ 192.0.2.1\n").unwrap();
        assert!(read_portal_record(&path).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 15, defect 4: the API's TLS settings are accepted by this build (the DoT-only build
    /// compiles TLS 1.2 out and refused the old hard-coded 1.2 minimum with `NoTls12`). `tests/all.sh`
    /// runs this with and without default features.
    #[test]
    fn api_tls_settings_build_in_this_build() {
        assert!(
            crate::upstream::tls::protocol_versions(API_TLS_MIN).is_ok(),
            "the portal API would fail every poll in this build"
        );
        assert_eq!(
            API_TLS_MIN == TlsVersion::V1_2,
            cfg!(feature = "tls12"),
            "TLS 1.2 (old portal gear) wherever the build has it"
        );
    }

    #[test]
    fn http_bodies() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/captive+json; charset=utf-8\r\nContent-Length: 17\r\n\r\n{\"captive\":true}\nxx";
        assert_eq!(http_body(ok).unwrap(), b"{\"captive\":true}\n");
        let chunked = b"HTTP/1.1 200 OK\r\ncontent-type: application/captive+json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"cap\r\nb\r\ntive\":true}\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"captive\":true}");
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>";
        assert!(http_body(html).unwrap_err().contains("captive+json"));
        let redirect = b"HTTP/1.1 302 Found\r\nLocation: http://x/\r\n\r\n";
        assert_eq!(http_body(redirect).unwrap_err(), "HTTP status 302");
        assert!(http_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn wan_dns_list() {
        let l = |v: &[&str]| parse_dns(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            l(&["192.0.2.53", "[2001:db8::53]:5353"]).unwrap(),
            [
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:5353".parse().unwrap()
            ]
        );
        assert!(l(&["dns.example"]).is_err());
        assert!(l(&["0.0.0.0"]).is_err());
        // The router's own port 53, from a lease: refused, not a loop through dnsmasq.
        for own in ["127.0.0.1", "::1", "127.0.0.53"] {
            let e = l(&[own]).unwrap_err();
            assert!(e.contains("the router's own DNS"), "{own}: {e}");
        }
        // Another loopback port (a local test resolver, given with its port) stays usable.
        assert!(l(&["127.0.0.1:5300"]).is_ok());
    }

    #[test]
    fn lookup_query_and_answer_parsing() {
        let q = query(0x1234, "Portal.Example", 1).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x06portal\x07example\x00\x00\x01\x00\x01");
        let mut a = q.clone();
        a[2] = 0x81;
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        assert_eq!(addresses(&a, 1), [IpAddr::from([192, 0, 2, 7])]);
        assert!(addresses(&a, 28).is_empty());
        assert!(query(1, "a..b", 1).is_none());
    }
}
