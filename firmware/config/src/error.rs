//! Configuration errors: where (line, key) and why.

use alloc::string::String;
use core::fmt;

/// Why a value or a file was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// UCI syntax error (unterminated quote, unknown statement, …).
    Syntax(&'static str),
    /// `option`/`list` outside any `config` section.
    OutsideSection,
    /// A key this section type does not know.
    UnknownKey,
    /// A section type lanveil does not know.
    UnknownSection,
    /// A value given twice where that makes no sense (the same `listen` address).
    Duplicate,
    /// A key that takes one value given as `list` (libuci would hand out the list's values joined
    /// by spaces).
    NotAList,
    /// A required key is missing.
    Missing,
    /// Not a number, or a number out of range.
    Range {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Not one of the accepted words.
    OneOf(&'static str),
    /// A socket address was expected (`IP:PORT`, `[IPv6]:PORT`).
    SocketAddr,
    /// An upstream URL was malformed; the text says how.
    Url(&'static str),
    /// An SPKI pin was malformed.
    Pin(&'static str),
    /// An authentication name was malformed.
    AuthName(&'static str),
    /// A cross-field rule was broken; the text says which.
    Rule(&'static str),
    /// A packed configuration could not be opened.
    Packed(crate::envelope::EnvelopeError),
    /// The file is larger than lanveil reads ([`crate::uci::MAX_FILE_BYTES`]).
    TooLarge {
        /// The file's size in bytes.
        size: u64,
        /// The most bytes read.
        max: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(s) => write!(f, "syntax error: {s}"),
            Self::OutsideSection => f.write_str("option outside of a 'config' section"),
            Self::UnknownKey => f.write_str("unknown option"),
            Self::UnknownSection => f.write_str("unknown section type"),
            Self::Duplicate => f.write_str("given more than once"),
            Self::NotAList => {
                f.write_str("takes one value: write it as 'option KEY VALUE', not 'list'")
            }
            Self::Missing => f.write_str("required but missing"),
            Self::Range { min, max } => write!(f, "must be a whole number from {min} to {max}"),
            Self::OneOf(s) => write!(f, "must be one of: {s}"),
            Self::SocketAddr => {
                f.write_str("must be IP:PORT (IPv6 as [ADDR]:PORT); host names are not allowed")
            }
            Self::Url(s) => write!(f, "bad upstream URL: {s}"),
            Self::Pin(s) => write!(f, "bad SPKI pin: {s}"),
            Self::AuthName(s) => write!(f, "bad authentication name: {s}"),
            Self::Rule(s) => f.write_str(s),
            Self::Packed(e) => write!(f, "{e}"),
            Self::TooLarge { size, max } => write!(
                f,
                "the file is {size} bytes, more than the {max} bytes lanveil reads (a configuration is a few KiB)"
            ),
        }
    }
}

/// A rejected configuration: line (1-based, 0 when not from a file), key and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Line in the source text, 0 for values that did not come from a file (command line).
    pub line: u32,
    /// `section.key` (e.g. `upstream[quad9].url`), or the flag name for command-line values.
    pub key: String,
    /// What is wrong.
    pub reason: Reason,
}

impl Error {
    pub(crate) fn new(line: u32, key: impl Into<String>, reason: Reason) -> Self {
        Self {
            line,
            key: key.into(),
            reason,
        }
    }

    /// Formats the error with the file name in front: `FILE:LINE: KEY: REASON`.
    pub fn display_with_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        WithFile { err: self, file }
    }
}

struct WithFile<'a> {
    err: &'a Error,
    file: &'a str,
}

impl fmt::Display for WithFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.err.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.err.line, self.err)
        } else {
            write!(f, "{}: {}", self.file, self.err)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

impl core::error::Error for Error {}
