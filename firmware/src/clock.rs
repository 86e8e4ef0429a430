//! The only place the daemon reads a clock: monotonic time ([`mono_now`], tokio's `Instant`, mapped
//! to the core's milliseconds-since-start by [`Clock`]) and wall time ([`WallClock`], only for
//! certificate validity through the clock rule). Everything else asks this module; clippy's
//! `disallowed-methods` (firmware/clippy.toml) refuses clock reads anywhere else in the daemon.
#![allow(clippy::disallowed_methods)]

use lanveil_core::time::Instant as CoreInstant;
use tokio::time::Instant;

/// Monotonic time now (tokio's clock, so paused-time tests see it too).
pub(crate) fn mono_now() -> Instant {
    Instant::now()
}

/// Maps tokio time to core time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub(crate) fn now(self) -> CoreInstant {
        self.to_core(Instant::now())
    }

    pub(crate) fn to_core(self, t: Instant) -> CoreInstant {
        CoreInstant::from_millis(
            u64::try_from(t.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX),
        )
    }

    pub(crate) fn to_tokio(self, t: CoreInstant) -> Instant {
        self.start + std::time::Duration::from_millis(t.as_millis())
    }
}

/// Wall-clock time, injectable for tests (the router's clock may be anywhere at boot).
pub trait WallClock: Send + Sync {
    /// Unix seconds.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The build time: the lowest possible time floor.
pub const BUILD_UNIX: u64 = match u64::from_str_radix(env!("LANVEIL_BUILD_UNIX"), 10) {
    Ok(v) => v,
    Err(_) => 0,
};

/// How often the floor is persisted while the clock is good (flash wear on routers).
const SAVE_EVERY_SECS: u64 = 3_600;

/// Keeps the time floor (core `clock` rules), persists it, and notices when the clock becomes good.
pub struct TimeKeeper {
    wall: std::sync::Arc<dyn WallClock>,
    floor: crate::sync::Shared64,
    saved: crate::sync::Shared64,
    synced: std::sync::atomic::AtomicBool,
    state_file: Option<std::path::PathBuf>,
    guard: std::sync::Mutex<lanveil_core::clock::FloorGuard>,
    started: std::time::Instant,
}

/// Seconds a wall time must run in step with monotonic time before it may raise the floor.
pub const FLOOR_SETTLE_SECS: u64 = 600;

impl std::fmt::Debug for TimeKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeKeeper")
            .field("floor", &self.floor())
            .finish_non_exhaustive()
    }
}

impl TimeKeeper {
    /// The floor is the later of the build time and the persisted last good time.
    pub fn new(
        wall: std::sync::Arc<dyn WallClock>,
        state_file: Option<std::path::PathBuf>,
        settle_secs: u64,
    ) -> Self {
        use std::sync::atomic::AtomicBool;
        let persisted = state_file.as_deref().and_then(|p| match std::fs::read(p) {
            Ok(blob) => match lanveil_config::state::State::decode(&blob) {
                Ok(s) => Some(s.last_good_wall),
                Err(e) => {
                    log::warn!("ignoring state file {}: {e}", p.display());
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("cannot read state file {}: {e}", p.display());
                None
            }
        });
        let floor = BUILD_UNIX.max(persisted.unwrap_or(0));
        let keeper = Self {
            wall,
            floor: crate::sync::Shared64::new(floor),
            saved: crate::sync::Shared64::new(persisted.unwrap_or(0)),
            synced: AtomicBool::new(false),
            state_file,
            guard: std::sync::Mutex::new(lanveil_core::clock::FloorGuard::new(settle_secs)),
            started: std::time::Instant::now(),
        };
        let synced = keeper.state() == lanveil_core::clock::ClockState::Synchronized;
        keeper
            .synced
            .store(synced, std::sync::atomic::Ordering::SeqCst);
        if !synced {
            log::warn!(
                "wall clock is behind the time floor ({} < {}): certificates are checked against the floor until it is set",
                keeper.wall(),
                floor
            );
        }
        keeper
    }

    /// Wall time, Unix seconds.
    pub fn wall(&self) -> u64 {
        self.wall.now_unix()
    }

    /// The time floor, Unix seconds.
    pub fn floor(&self) -> u64 {
        self.floor.load()
    }

    /// Synchronized or not, now.
    pub fn state(&self) -> lanveil_core::clock::ClockState {
        lanveil_core::clock::state(self.wall(), self.floor())
    }

    /// Advances the floor while synchronized and persists it now and then. Returns `true` on the
    /// transition from unsynchronized to synchronized.
    pub fn tick(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let wall = self.wall();
        let synced = lanveil_core::clock::state(wall, self.floor())
            == lanveil_core::clock::ClockState::Synchronized;
        let was = self.synced.swap(synced, SeqCst);
        // Only a wall time that has run in step with monotonic time may raise the floor.
        let mono = self.started.elapsed().as_secs();
        let trusted = self
            .guard
            .lock()
            .ok()
            .and_then(|mut g| g.observe(wall, mono));
        if synced && let Some(t) = trusted {
            let before = self.floor();
            self.floor
                .store(lanveil_core::clock::advance_floor(before, t));
            if t >= self.saved.load() + SAVE_EVERY_SECS || self.saved.load() < before {
                self.save();
            }
        }
        synced && !was
    }

    /// Writes the floor to the state file atomically (temporary file, fsync, rename).
    pub fn save(&self) {
        use std::io::Write;
        let Some(path) = &self.state_file else { return };
        let floor = self.floor();
        let blob = lanveil_config::state::State {
            last_good_wall: floor,
        }
        .encode();
        let tmp = path.with_extension("tmp");
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&blob)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        })();
        match result {
            Ok(()) => self.saved.store(floor),
            Err(e) => log::warn!("cannot write state file {}: {e}", path.display()),
        }
    }
}
