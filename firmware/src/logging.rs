//! A small stderr logger (procd forwards stderr to syslog). Privacy rule: nothing at info level or
//! above carries a query name or a client address; the engine's events carry neither.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use lanveil_config::LogLevel;

struct StderrLogger;

static LEVEL: AtomicUsize = AtomicUsize::new(3);

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        (metadata.level() as usize) <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || !record.target().starts_with("lanveil") {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "lanveil: {}: {}",
            record.level().as_str().to_ascii_lowercase(),
            record.args()
        );
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger (once) and sets the level (any time, e.g. on reload).
pub fn init(level: LogLevel) {
    let _ = log::set_logger(&LOGGER);
    set_level(level);
}

/// Changes the level.
pub fn set_level(level: LogLevel) {
    let l = match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    };
    LEVEL.store(l as usize, Ordering::Relaxed);
    log::set_max_level(l);
}
