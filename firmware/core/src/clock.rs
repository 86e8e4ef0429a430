//! The router-boots-in-the-past rule: at what time a certificate is checked when the wall clock may be
//! wrong. Pure arithmetic on Unix seconds; the shell reads the clocks and enforces the verdict.
//!
//! Routers without a real-time clock boot at their firmware's build date or at 1970; NTP needs DNS, and
//! lanveil's DNS needs TLS, whose certificates need the right time. lanveil keeps a **time floor**
//! `F` = the later of its build time and the last wall-clock time it saw while the clock was good
//! (persisted in the state file). The rule:
//!
//! 1. The clock is **synchronized** when the wall time `W ≥ F`, and **unsynchronized** when `W < F`
//!    (time never really goes backwards past a moment lanveil has already seen).
//! 2. Synchronized: certificates are checked at `W`, as usual.
//! 3. Unsynchronized: a certificate is checked at `max(F, notBefore)` — real time is at least `F`,
//!    so a certificate issued after `F` may well be valid — but one that expired before `F`
//!    (`notAfter < F`) is rejected, because it is expired whatever the real time is.
//!    If the upstream has SPKI pins, pinned certificates are accepted regardless of time: they are
//!    checked at `F` clamped into their validity (`notBefore ≤ t ≤ notAfter`), so the time check
//!    passes, and the pin must still match.
//! 4. Connections authenticated under rule 3 are **relaxed**. The moment the clock becomes
//!    synchronized, every relaxed connection is closed and its queries are retried on connections
//!    verified under rule 2.
//!
//! While synchronized, the shell advances `F` to `W` (and persists it now and then), so a power cut
//! leaves a floor no older than the last save.

use crate::spki::Validity;

/// The clock as lanveil judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockState {
    /// `W ≥ F`.
    Synchronized,
    /// `W < F`: the wall clock is known to be wrong.
    Unsynchronized,
}

/// Rule 1.
pub fn state(wall: u64, floor: u64) -> ClockState {
    if wall >= floor {
        ClockState::Synchronized
    } else {
        ClockState::Unsynchronized
    }
}

/// When to check a certificate, per rules 2 and 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckAt {
    /// Check at this time; `relaxed` if rule 3 applied.
    Time {
        /// Unix seconds to verify at.
        at: u64,
        /// The connection is relaxed (rule 4).
        relaxed: bool,
    },
    /// Reject: expired before the floor and not pinned.
    ExpiredBeforeFloor,
}

/// Rules 2 and 3 for a leaf certificate with `validity`.
pub fn check_at(wall: u64, floor: u64, validity: Validity, pinned: bool) -> CheckAt {
    match state(wall, floor) {
        ClockState::Synchronized => CheckAt::Time {
            at: wall,
            relaxed: false,
        },
        ClockState::Unsynchronized if pinned => CheckAt::Time {
            at: floor.clamp(
                validity.not_before,
                validity.not_after.max(validity.not_before),
            ),
            relaxed: true,
        },
        ClockState::Unsynchronized if validity.not_after < floor => CheckAt::ExpiredBeforeFloor,
        ClockState::Unsynchronized => CheckAt::Time {
            at: floor.max(validity.not_before),
            relaxed: true,
        },
    }
}

/// The new floor after observing wall time `wall`: it only moves forward, and only while synchronized.
pub fn advance_floor(floor: u64, wall: u64) -> u64 {
    floor.max(wall)
}

/// Largest disagreement (s) between wall-clock and monotonic progress between two observations that still
/// counts as the wall clock running normally.
pub const DRIFT_TOLERANCE: u64 = 5;

/// Guards the floor against a bogus step of the wall clock (a misbehaving time source, a typo with
/// `date -s`): a wall time is trusted for the floor only after it has advanced in step with monotonic
/// time for `settle` seconds. Without this, one step into the future would make every later, correct
/// time look "unsynchronized" and certificates would be checked at that future time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloorGuard {
    settle: u64,
    /// (wall, monotonic) when the current run of consistent observations began.
    since: Option<(u64, u64)>,
    /// The previous observation.
    last: Option<(u64, u64)>,
}

impl FloorGuard {
    /// A guard that trusts a wall time after `settle` seconds of consistent progress.
    pub fn new(settle: u64) -> Self {
        Self {
            settle,
            since: None,
            last: None,
        }
    }

    /// Observes wall time `wall` at monotonic time `mono` (both seconds); returns the wall time the
    /// floor may advance to, if any.
    pub fn observe(&mut self, wall: u64, mono: u64) -> Option<u64> {
        let consistent = self.last.is_some_and(|(w0, m0)| {
            let dw = wall.checked_sub(w0);
            let dm = mono.saturating_sub(m0);
            dw.is_some_and(|dw| dw.abs_diff(dm) <= DRIFT_TOLERANCE)
        });
        if !consistent {
            self.since = Some((wall, mono));
        }
        self.last = Some((wall, mono));
        let (_, m_start) = self.since?;
        (mono.saturating_sub(m_start) >= self.settle).then_some(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const FLOOR: u64 = 1_790_000_000; // the last good time lanveil saw
    const V: Validity = Validity {
        not_before: FLOOR - 30 * DAY,
        not_after: FLOOR + 60 * DAY,
    };

    #[test]
    fn synchronized_clock_checks_at_wall_time() {
        assert_eq!(state(FLOOR + 5, FLOOR), ClockState::Synchronized);
        assert_eq!(
            check_at(FLOOR + 5, FLOOR, V, false),
            CheckAt::Time {
                at: FLOOR + 5,
                relaxed: false
            }
        );
    }

    #[test]
    fn boot_in_1970_checks_at_the_floor() {
        assert_eq!(state(0, FLOOR), ClockState::Unsynchronized);
        assert_eq!(
            check_at(0, FLOOR, V, false),
            CheckAt::Time {
                at: FLOOR,
                relaxed: true
            }
        );
    }

    #[test]
    fn certificate_newer_than_the_floor_is_checked_at_its_start() {
        let renewed = Validity {
            not_before: FLOOR + 10 * DAY,
            not_after: FLOOR + 100 * DAY,
        };
        assert_eq!(
            check_at(0, FLOOR, renewed, false),
            CheckAt::Time {
                at: FLOOR + 10 * DAY,
                relaxed: true
            }
        );
    }

    #[test]
    fn expired_before_the_floor_is_rejected_unless_pinned() {
        let old = Validity {
            not_before: FLOOR - 100 * DAY,
            not_after: FLOOR - DAY,
        };
        assert_eq!(check_at(0, FLOOR, old, false), CheckAt::ExpiredBeforeFloor);
        assert_eq!(
            check_at(0, FLOOR, old, true),
            CheckAt::Time {
                at: FLOOR - DAY,
                relaxed: true
            }
        );
        // Once synchronized the pin no longer excuses it: checked at wall time, where it is expired.
        assert_eq!(
            check_at(FLOOR + 1, FLOOR, old, true),
            CheckAt::Time {
                at: FLOOR + 1,
                relaxed: false
            }
        );
    }

    #[test]
    fn a_bogus_step_into_the_future_never_reaches_the_floor() {
        let mut g = FloorGuard::new(600);
        // Normal running: trusted after 10 minutes of consistent progress.
        assert_eq!(g.observe(FLOOR, 0), None);
        assert_eq!(g.observe(FLOOR + 300, 300), None);
        assert_eq!(g.observe(FLOOR + 600, 600), Some(FLOOR + 600));
        // A step to 2038 restarts the clock on trust...
        assert_eq!(g.observe(2_145_916_800, 610), None);
        assert_eq!(g.observe(2_145_916_800 + 60, 670), None);
        // ...and correcting it back is again a step: nothing is trusted until it has settled.
        assert_eq!(g.observe(FLOOR + 700, 700), None);
        assert_eq!(g.observe(FLOOR + 1_300, 1_300), Some(FLOOR + 1_300));
        // A wall clock running backwards is never consistent.
        assert_eq!(g.observe(FLOOR + 1_200, 1_400), None);
        // settle 0 trusts at once (tests, or an owner who wants it).
        assert_eq!(FloorGuard::new(0).observe(FLOOR, 5), Some(FLOOR));
    }

    #[test]
    fn floor_only_moves_forward() {
        assert_eq!(advance_floor(FLOOR, FLOOR + 60), FLOOR + 60);
        assert_eq!(advance_floor(FLOOR, 10), FLOOR);
    }
}
