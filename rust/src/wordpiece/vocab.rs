//! BERT's `vocab.txt`: one token per line, the id is the line number - 1.

use std::path::Path;

use rustc_hash::FxHashMap;

use super::describe;
use super::model::{Config, WordPiece};
use crate::error::{Error, Result};

/// Parse `vocab.txt` bytes; `name` is used in error messages.
pub fn parse_vocab(bytes: &[u8], name: &str) -> Result<Vec<String>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut vocab = Vec::new();
    let mut seen: FxHashMap<&str, usize> = FxHashMap::default();
    if bytes.is_empty() {
        return Ok(vocab);
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(Error::invalid(format!(
                "{name} line {lineno}: invalid UTF-8"
            )));
        };
        let token = line.trim_end();
        if token.is_empty() {
            return Err(Error::invalid(format!(
                "{name} line {lineno}: empty line (a vocab.txt has one token per line)"
            )));
        }
        if let Some(first) = seen.insert(token, lineno) {
            return Err(Error::invalid(format!(
                "{name} line {lineno}: duplicate token {} (first on line {first})",
                describe(token)
            )));
        }
        vocab.push(token.to_owned());
    }
    Ok(vocab)
}

impl WordPiece {
    /// Read a `vocab.txt` (one token per line, UTF-8, id = line number - 1). A line's trailing
    /// whitespace is dropped, as `tokenizers` does; empty lines, duplicates and invalid UTF-8 are
    /// errors that name the file and line.
    pub fn from_vocab_file(path: &Path, config: Config) -> Result<Self> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
        let vocab = parse_vocab(&bytes, &name)?;
        if vocab.is_empty() {
            return Err(Error::invalid(format!(
                "{name}: the vocabulary file is empty"
            )));
        }
        Self::build(vocab, config, |id| format!("{name} line {}", id + 1)).map_err(|e| match e {
            Error::Invalid(m) if !m.starts_with(&name) => Error::Invalid(format!("{name}: {m}")),
            other => other,
        })
    }

    /// The vocabulary as `vocab.txt` text (one token per line, newline-terminated).
    pub fn to_vocab_txt(&self) -> String {
        let mut s = String::with_capacity(self.vocab().iter().map(|t| t.len() + 1).sum());
        for t in self.vocab() {
            s.push_str(t);
            s.push('\n');
        }
        s
    }
}
