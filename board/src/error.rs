//! The board tool's error type: every failure names what was being done and with which file.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the board tool.
#[derive(Debug)]
pub enum Error {
    /// Bad command line.
    Usage(String),
    /// A profile file is malformed (`line` 0 = the file as a whole).
    Profile {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// A packaging input (Makefile, layout, files) is malformed.
    Package { path: PathBuf, msg: String },
    /// Reading or writing a file failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A child process could not be started or failed.
    Command { what: String, detail: String },
    /// The cross toolchain is missing or inconsistent.
    Toolchain(String),
    /// A build exceeds its budget.
    Budget(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub fn package(path: &Path, msg: impl Into<String>) -> Self {
        Self::Package {
            path: path.to_owned(),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) => write!(f, "{m}"),
            Self::Profile { path, line: 0, msg } => write!(f, "{}: {msg}", path.display()),
            Self::Profile { path, line, msg } => write!(f, "{}:{line}: {msg}", path.display()),
            Self::Package { path, msg } => write!(f, "{}: {msg}", path.display()),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Command { what, detail } => write!(f, "{what}: {detail}"),
            Self::Toolchain(m) => write!(f, "toolchain: {m}"),
            Self::Budget(m) => write!(f, "budget exceeded: {m}"),
        }
    }
}

impl std::error::Error for Error {}
