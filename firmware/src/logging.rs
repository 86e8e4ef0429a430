//! A small logger: errors and warnings to stderr, everything else to stdout. procd forwards both to
//! syslog, stderr at `daemon.err` and stdout at `daemon.info`, so `logread` shows a normal event
//! (an upstream session up, a reload) as information, not as an error; systemd's journal takes both.
//! Privacy rule: nothing at info level or above carries a query name or a client address; the
//! engine's events carry neither.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use lanveil_config::LogLevel;

struct Logger;

static LEVEL: AtomicUsize = AtomicUsize::new(3);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        (metadata.level() as usize) <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || !record.target().starts_with("lanveil") {
            return;
        }
        let level = record.level();
        let line = format!(
            "lanveil: {}: {}\n",
            level.as_str().to_ascii_lowercase(),
            record.args()
        );
        // One write per line, so a reader (procd) never sees half of one.
        let _ = if level <= log::Level::Warn {
            std::io::stderr().lock().write_all(line.as_bytes())
        } else {
            std::io::stdout().lock().write_all(line.as_bytes())
        };
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

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
