//! A router without the right time (the daemon's clock rule): a wall clock the test sets, a state
//! file holding the time floor, and the daemon started on both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lanveil::clock::WallClock;
use lanveil::config::state::State;

use crate::TempDir;

/// A wall clock the test sets (Unix seconds).
pub struct FakeWall(pub AtomicU64);

impl FakeWall {
    /// A clock that reads `unix`.
    pub fn at(unix: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(unix)))
    }

    /// NTP answers: the clock reads the real time from now on.
    pub fn set_to_real_time(&self) {
        self.0.store(real_now(), Ordering::SeqCst);
    }
}

impl WallClock for FakeWall {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// This machine's time (Unix seconds).
pub fn real_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A state file in `dir` whose floor is an hour ago (the last good time before a power cut).
pub fn state_file(dir: &TempDir) -> PathBuf {
    dir.write(
        "state",
        State {
            last_good_wall: real_now() - 3_600,
        }
        .encode(),
    )
}

/// lanveil on `cfg` with `wall` as its wall clock (no settling delay), and its first UDP address.
pub async fn start_at(
    cfg: lanveil::config::Config,
    wall: &Arc<impl WallClock + 'static>,
) -> (lanveil::Running, SocketAddr) {
    let options = lanveil::Options {
        wall_clock: Some(wall.clone() as Arc<dyn WallClock>),
        clock_settle_secs: Some(0),
        ..Default::default()
    };
    let running = lanveil::start_with(cfg, options).await.unwrap();
    let addr = running.udp_addrs()[0];
    (running, addr)
}
