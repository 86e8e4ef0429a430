//! The tool's error: a message for the owner and the exit status it maps to.

use std::fmt;

/// Exit status for "the operation ran and found a problem" (probe failed, push rolled back, leak).
pub const EXIT_FAILED: u8 = 1;
/// Exit status for bad usage or an invalid configuration.
pub const EXIT_USAGE: u8 = 2;

/// What went wrong, in words meant for the person at the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The message (already names file, line, key, host… where they matter).
    pub message: String,
    /// The process exit status.
    pub exit: u8,
}

impl Error {
    /// An operation failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: EXIT_FAILED,
        }
    }

    /// Bad usage or bad configuration (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: EXIT_USAGE,
        }
    }

    /// Prefixes the message with context (`context: message`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::failed(e.to_string())
    }
}

/// Result with the tool's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to I/O results: `io(res, "reading /x")`.
pub fn io_ctx<T>(r: std::io::Result<T>, what: impl fmt::Display) -> Result<T> {
    r.map_err(|e| Error::failed(format!("{what}: {e}")))
}
