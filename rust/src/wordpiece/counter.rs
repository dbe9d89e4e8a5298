//! Word counts of a training corpus (texts, files or bytes), after normalization and
//! pre-tokenization, counted in parallel.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::normalizer::{Normalizer, Scratch};
use super::pretokenizer::{for_each_word, is_separator, split_at_whitespace};
use crate::error::{Error, Result};

/// Word counts of a corpus, after normalization and pre-tokenization. Counts are sums, so they
/// do not depend on how the corpus is split into texts or over threads.
#[derive(Debug, Clone, Default)]
pub struct WordCounts {
    normalizer: Normalizer,
    pub(super) counts: FxHashMap<String, u64>,
    invalid_utf8: u64,
}

fn count_text(
    normalizer: &Normalizer,
    text: &str,
    counts: &mut FxHashMap<String, u64>,
    scratch: &mut Scratch,
) {
    let Scratch { norm, tmp } = scratch;
    normalizer.normalize_into(text, norm, tmp);
    for_each_word(norm, |w| {
        if let Some(c) = counts.get_mut(w) {
            *c += 1;
        } else {
            counts.insert(w.to_owned(), 1);
        }
    });
}

fn merge_counts(a: FxHashMap<String, u64>, b: FxHashMap<String, u64>) -> FxHashMap<String, u64> {
    let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for (w, c) in small {
        *big.entry(w).or_insert(0) += c;
    }
    big
}

impl WordCounts {
    /// Empty counts for text normalized by `normalizer`.
    pub fn new(normalizer: Normalizer) -> Self {
        WordCounts {
            normalizer,
            counts: FxHashMap::default(),
            invalid_utf8: 0,
        }
    }

    /// Count the words of each text, in parallel.
    pub fn add_texts<S: AsRef<str> + Sync>(&mut self, texts: &[S]) {
        let normalizer = self.normalizer;
        let local = texts
            .par_iter()
            .fold(
                || (FxHashMap::default(), Scratch::default()),
                |(mut counts, mut scratch), t| {
                    let t = t.as_ref();
                    if t.len() > 1 << 20 {
                        let big = split_at_whitespace(t, rayon::current_num_threads())
                            .into_par_iter()
                            .fold(
                                || (FxHashMap::default(), Scratch::default()),
                                |(mut c, mut s), piece| {
                                    count_text(&normalizer, piece, &mut c, &mut s);
                                    (c, s)
                                },
                            )
                            .map(|(c, _)| c)
                            .reduce(FxHashMap::default, merge_counts);
                        counts = merge_counts(counts, big);
                    } else {
                        count_text(&normalizer, t, &mut counts, &mut scratch);
                    }
                    (counts, scratch)
                },
            )
            .map(|(c, _)| c)
            .reduce(FxHashMap::default, merge_counts);
        let counts = std::mem::take(&mut self.counts);
        self.counts = merge_counts(counts, local);
    }

    /// Count the words of a file, streamed in blocks (memory bounded by the distinct words).
    /// Invalid UTF-8 is replaced by U+FFFD (which the normalizer drops) and counted.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let name = path.display().to_string();
        let mut file = File::open(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
        const BLOCK: usize = 16 << 20;
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + (1 << 16));
        let mut eof = false;
        while !eof {
            let filled = buf.len();
            buf.resize(filled + BLOCK, 0);
            let mut n = filled;
            while n < buf.len() {
                let r = file
                    .read(&mut buf[n..])
                    .map_err(|e| Error::Io(format!("{name}: {e}")))?;
                if r == 0 {
                    eof = true;
                    break;
                }
                n += r;
            }
            buf.truncate(n);
            // Cut after the last ASCII whitespace so no word (or UTF-8 sequence) is split.
            let cut = if eof {
                buf.len()
            } else {
                match buf.iter().rposition(|&b| is_separator(b)) {
                    Some(p) => p + 1,
                    None => continue,
                }
            };
            let rest = buf.split_off(cut);
            self.add_bytes(&buf);
            buf = rest;
        }
        Ok(())
    }

    /// Count the words of UTF-8 bytes (a file's block, or decompressed data) that end between
    /// words; invalid UTF-8 is replaced by U+FFFD (which the normalizer drops) and counted.
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.add_texts(&split_at_whitespace(text, rayon::current_num_threads())),
            Err(_) => {
                let mut text = String::with_capacity(bytes.len());
                for chunk in bytes.utf8_chunks() {
                    text.push_str(chunk.valid());
                    if !chunk.invalid().is_empty() {
                        text.push('\u{fffd}');
                        self.invalid_utf8 += 1;
                    }
                }
                self.add_texts(&split_at_whitespace(&text, rayon::current_num_threads()));
            }
        }
    }

    /// How many invalid UTF-8 sequences were replaced while reading files.
    pub fn invalid_utf8(&self) -> u64 {
        self.invalid_utf8
    }

    /// Number of distinct words.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no word was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The count of `word`.
    pub fn get(&self, word: &str) -> u64 {
        self.counts.get(word).copied().unwrap_or(0)
    }

    /// The normalizer the words went through.
    pub fn normalizer(&self) -> Normalizer {
        self.normalizer
    }
}
