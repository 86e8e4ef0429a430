//! The local control socket: one `lanveil_config::control` request per connection, answered with a
//! status report, the opt-in query log, the outcome of a reload, or `Done` for the WAN hook's portal
//! report and `lanveil-ctl leak-test`'s probe. Root-only (mode 0600); it never
//! reveals a client address.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanveil_config::control::{
    CaptiveReport, LogLine, Request, Response, StatusReport, UpstreamStatus,
};
use lanveil_config::envelope;
use lanveil_core::engine::{AnswerSource, UpstreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::TimeKeeper;
use crate::events::{ControlRequest, ControlSender, Snapshot};
use crate::upstream::tls::{Target, describe};

/// A reload asked for over the socket; the main loop answers it.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Largest request accepted.
const MAX_REQUEST: usize = 1024;

pub(crate) struct Context {
    pub(crate) driver: ControlSender,
    pub(crate) time: Arc<TimeKeeper>,
    pub(crate) started: tokio::time::Instant,
    pub(crate) config_file: Option<String>,
    pub(crate) targets: Mutex<Vec<(UpstreamId, Arc<Target>)>>,
    pub(crate) reload: mpsc::Sender<ReloadRequest>,
}

/// Binds the socket (replacing a stale one), mode 0600.
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        // A socket someone answers on is a running lanveil's: taking its path would leave that
        // daemon without its control socket (and a start that then fails would remove it).
        if listened_on(path) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "a running lanveil answers on this control socket",
            ));
        }
        // Left by a daemon that is gone.
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        // Not left behind with the umask's mode.
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// Whether something listens on the Unix socket at `path`. Non-blocking: a listener whose
/// backlog is full (a daemon that hangs) counts as one, without waiting for it.
fn listened_on(path: &Path) -> bool {
    let Ok(addr) = socket2::SockAddr::unix(path) else {
        return false;
    };
    let Ok(sock) = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None) else {
        return false;
    };
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    match sock.connect(&addr) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

pub(crate) fn spawn(listener: UnixListener, ctx: Arc<Context>) -> JoinHandle<()> {
    crate::task::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let ctx = ctx.clone();
            crate::task::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), serve(stream, &ctx)).await;
            });
        }
    })
}

async fn read_envelope(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; envelope::HEADER_LEN];
    stream.read_exact(&mut buf).await.ok()?;
    let total = envelope::total_len(&buf)?;
    if total > MAX_REQUEST {
        return None;
    }
    buf.resize(total, 0);
    stream
        .read_exact(&mut buf[envelope::HEADER_LEN..])
        .await
        .ok()?;
    Some(buf)
}

async fn serve(mut stream: UnixStream, ctx: &Context) {
    let response = match read_envelope(&mut stream)
        .await
        .map(|b| Request::decode(&b))
    {
        Some(Ok(Request::Status)) => match status(ctx).await {
            Some(r) => Response::Status(Box::new(r)),
            None => Response::Error("lanveil is stopping".into()),
        },
        Some(Ok(Request::QueryLog)) => query_log(ctx).await,
        Some(Ok(Request::Reload)) => {
            let (tx, rx) = oneshot::channel();
            match ctx.reload.send(tx).await {
                Ok(()) => Response::Reloaded(rx.await.unwrap_or(Err("lanveil is stopping".into()))),
                Err(_) => Response::Error("lanveil is stopping".into()),
            }
        }
        Some(Ok(Request::WanPortal { uri, dns })) => {
            Response::Done(wan_portal(ctx, uri, dns).await)
        }
        Some(Ok(Request::LeakProbe { label, nonce })) => {
            Response::Done(leak_probe(ctx, &label, &nonce).await)
        }
        Some(Err(e)) => Response::Error(format!("bad request: {e}")),
        None => Response::Error("bad request".into()),
    };
    let _ = stream.write_all(&response.encode()).await;
    let _ = stream.shutdown().await;
}

/// The WAN hook's report: validated here (it comes from an untrusted network), then given to the
/// driver.
async fn wan_portal(ctx: &Context, uri: Option<String>, dns: Vec<String>) -> Result<(), String> {
    let uri = match uri {
        Some(u) => Some(Box::new(
            lanveil_core::capport::CaptivePortalUri::parse(u.as_bytes())
                .map_err(|e| format!("captive-portal URI refused: {e}"))?,
        )),
        None => None,
    };
    let dns = crate::captive::parse_dns(&dns)?;
    ctx.driver
        .send(ControlRequest::WanPortal { uri, dns })
        .await
        .map_err(|_| "lanveil is stopping".to_string())
}

/// `lanveil-ctl leak-test`'s probe: checked, then handed to the engine, which answers its name with
/// the nonce for a few minutes. Neither the label nor the nonce is logged.
async fn leak_probe(ctx: &Context, label: &str, nonce: &str) -> Result<(), String> {
    let probe = lanveil_core::leak_probe::Probe::new(label, nonce).map_err(|e| e.to_string())?;
    ctx.driver
        .send(ControlRequest::LeakProbe(probe))
        .await
        .map_err(|_| "lanveil is stopping".to_string())?;
    log::debug!("leak-test probe registered");
    Ok(())
}

async fn snapshot(ctx: &Context) -> Option<Snapshot> {
    let (reply, rx) = oneshot::channel();
    ctx.driver
        .send(ControlRequest::Snapshot { reply })
        .await
        .ok()?;
    rx.await.ok()
}

async fn status(ctx: &Context) -> Option<StatusReport> {
    let snap = snapshot(ctx).await?;
    let targets = ctx.targets.lock().map(|t| t.clone()).unwrap_or_default();
    let upstreams = targets
        .iter()
        .map(|(id, t)| {
            let h = snap.health.iter().find(|h| h.id == *id);
            UpstreamStatus {
                name: t.upstream.name.clone(),
                url: t.upstream.url.to_string(),
                up: h.is_some_and(|h| h.up),
                backing_off: h.is_some_and(|h| h.backing_off),
                srtt_ms: h.and_then(|h| h.srtt_ms),
                last_error: h
                    .and_then(|h| h.last_error)
                    .map(|e| describe(e).to_string()),
                cert_not_after: t.cert_not_after(),
            }
        })
        .collect();
    let s = snap.stats;
    let counters = s
        .counters()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let failures_by_ede = s
        .failures_by_ede
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| (code as u16, *n))
        .collect();
    let (cache_entries, cache_bytes) = snap.cache.unwrap_or((0, 0));
    Some(StatusReport {
        version: format!("lanveil {}", env!("CARGO_PKG_VERSION")),
        uptime_s: crate::clock::mono_now()
            .saturating_duration_since(ctx.started)
            .as_secs(),
        config_file: ctx.config_file.clone(),
        clock_synchronized: ctx.time.state() == lanveil_core::clock::ClockState::Synchronized,
        wall_unix: ctx.time.wall(),
        floor_unix: ctx.time.floor(),
        upstreams,
        counters,
        failures_by_ede,
        inflight: snap.inflight as u64,
        cache_entries: cache_entries as u64,
        cache_bytes: cache_bytes as u64,
        captive: CaptiveReport {
            phase: snap.captive.phase.as_str().into(),
            api_uri: snap.captive.api_uri,
            user_portal_url: snap.captive.user_portal_url,
            seconds_remaining: snap.captive.seconds_remaining,
            plaintext_allowed: snap.captive.plaintext_allowed,
            plaintext_left_s: snap.captive.plaintext_left_s,
            plaintext_names: snap.captive.plaintext_names,
            plaintext_queries: s.plaintext_portal,
            wan_dns: snap.wan_dns.iter().map(ToString::to_string).collect(),
            api_error: snap.captive.api_error,
        },
    })
}

async fn query_log(ctx: &Context) -> Response {
    let Some(snap) = snapshot(ctx).await else {
        return Response::Error("lanveil is stopping".into());
    };
    let lines = snap
        .log
        .into_iter()
        .map(|e| LogLine {
            age_ms: snap.now.saturating_since(e.at).as_millis() as u64,
            name: e.name,
            qtype: e.qtype,
            rcode: e.rcode,
            source: match e.source {
                AnswerSource::Upstream => "upstream",
                AnswerSource::Cache => "cache",
                AnswerSource::Stale => "stale",
                AnswerSource::Local => "local",
                AnswerSource::Failed => "failed",
                AnswerSource::Plaintext => "plaintext",
                AnswerSource::LocalResolver => "local-resolver",
            }
            .to_string(),
        })
        .collect();
    Response::QueryLog(lines)
}

/// Client side (`lanveil --control SOCKET REQUEST`): sends one request and returns the raw response
/// envelope (what `lanveil-ctl` decodes on the other end of ssh).
pub fn request(socket: &Path, req: &Request) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(&req.encode())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// The socket path type used by `main`.
pub type SocketPath = PathBuf;
