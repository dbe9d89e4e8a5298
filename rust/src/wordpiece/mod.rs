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

/// A token as it appears in error messages (quoted, escaped).
pub(crate) fn describe(token: &str) -> String {
    format!("{token:?}")
}
