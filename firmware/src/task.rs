//! Spawning the daemon's tasks.
//!
//! Every task is spawned as one boxed future type, so the router binary carries one copy of the
//! runtime's per-task code (its harness, poll, cancel and drop paths) instead of one per future type,
//! about 2–3 KB each on mipsel. The cost is one allocation per spawn and an indirect call per poll.

use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinHandle;

/// The one future type the daemon spawns.
type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Spawns `fut` on the current runtime (as `tokio::spawn`).
pub(crate) fn spawn(fut: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
    let task: Task = Box::pin(fut);
    tokio::spawn(task)
}
