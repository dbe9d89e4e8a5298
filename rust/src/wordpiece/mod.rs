//! WordPiece: BERT-style basic pre-tokenization and greedy longest-match-first subwords.
//!
//! The pipeline is the one of Hugging Face `tokenizers`' `BertNormalizer` + `BertPreTokenizer` +
//! `WordPiece` model, down to the Unicode tables (`unicode_categories` for control, punctuation
//! and non-spacing marks; `unicode-normalization-alignments` for NFD), so that the same vocabulary
//! gives the very same ids. The trainer follows `tokenizers`' `WordPieceTrainer` (BPE over words
//! with a `##` continuation prefix), made deterministic.
//!
//! By concern: `normalizer` (BERT's text normalization and character classes), `pretokenizer`
//! (splitting into words), `model` (the tokenizer: encode/decode), `vocab` (`vocab.txt`),
//! `counter` (word counts of a corpus) and `trainer` (learning a vocabulary from the counts).

use std::fmt;

mod counter;
mod model;
mod normalizer;
mod pretokenizer;
mod trainer;
mod vocab;

#[cfg(test)]
mod tests;

pub use counter::WordCounts;
pub use model::{cleanup_token, Config, Specials, WordPiece};
pub use normalizer::Normalizer;
pub use pretokenizer::{for_each_word, pre_tokenize};
pub use trainer::{train, TrainConfig};
pub use vocab::parse_vocab;

/// A WordPiece error: bad input (a vocabulary, a token, an id, a setting) or a file that cannot be
/// read. The message is one line and names the file/line or value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad input from the caller.
    Invalid(String),
    /// A file could not be read or written.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) | Error::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Result of the WordPiece core.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}

/// A token as it appears in error messages (quoted, escaped).
pub(crate) fn describe(token: &str) -> String {
    format!("{token:?}")
}
