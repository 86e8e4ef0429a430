//! The only place the daemon reads the monotonic clock: tokio's `Instant` mapped to the core's
//! milliseconds-since-start.

use lanveil_core::time::Instant as CoreInstant;
use tokio::time::Instant;

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
