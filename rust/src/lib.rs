//! llmkit's tokenizer core: byte-level BPE and WordPiece in plain Rust.
//!
//! Everything here is usable and testable without Python (`cargo test`); the PyO3 binding lives
//! in `py` and is compiled only with the `python` feature (which maturin turns on).

pub mod bpe;
pub mod bytelevel;
pub mod error;
pub mod piece_table;
pub mod pretok;
pub mod rank_file;
pub mod scan;
pub mod trainer;
pub mod wordpiece;

#[cfg(feature = "python")]
mod py;
#[cfg(feature = "python")]
mod py_bpe;
#[cfg(feature = "python")]
mod py_wordpiece;
