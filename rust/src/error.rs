//! The one error type of the tokenizer core; the binding turns it into `ValueError`/`OSError`.

use std::fmt;

/// What can go wrong in the core: bad input (a pattern, a vocabulary, an id, a special token) or I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad input from the caller; the message says what and where.
    Invalid(String),
    /// A file could not be read; the message names the file.
    Io(String),
}

impl Error {
    /// An `Invalid` error from anything printable.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) | Error::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
