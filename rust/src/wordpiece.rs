//! WordPiece: BERT-style basic pre-tokenization and greedy longest-match-first subwords.
//!
//! The pipeline is the one of Hugging Face `tokenizers`' `BertNormalizer` + `BertPreTokenizer` +
//! `WordPiece` model, down to the Unicode tables (`unicode_categories` for control, punctuation
//! and non-spacing marks; `unicode-normalization-alignments` for NFD), so that the same vocabulary
//! gives the very same ids. The trainer follows `tokenizers`' `WordPieceTrainer` (BPE over words
//! with a `##` continuation prefix), made deterministic.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

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

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}

// ---------------------------------------------------------------------------------------------
// Character classes (cached for the BMP: the category tables are binary-searched lists)
// ---------------------------------------------------------------------------------------------

const OTHER: u8 = 1; // Cc, Cf, Co as `unicode_categories` has them (BERT's "control")
const SPACE: u8 = 2; // char::is_whitespace
const PUNCT: u8 = 4; // ASCII punctuation or symbols, or a Unicode P* category
const CJK: u8 = 8; // a CJK Unified Ideograph block (BERT's "Chinese character")
const MARK: u8 = 16; // Mn, dropped by accent stripping

fn is_chinese(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

fn compute_class(c: char) -> u8 {
    let mut k = 0;
    if c.is_other() {
        k |= OTHER;
    }
    if c.is_whitespace() {
        k |= SPACE;
    }
    if c.is_ascii_punctuation() || c.is_punctuation() {
        k |= PUNCT;
    }
    if is_chinese(c) {
        k |= CJK;
    }
    if c.is_mark_nonspacing() {
        k |= MARK;
    }
    k
}

fn bmp_classes() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0u32..0x10000)
            .map(|u| char::from_u32(u).map_or(0, compute_class))
            .collect()
    })
}

#[inline]
fn class(c: char) -> u8 {
    let u = c as u32;
    if u < 0x10000 {
        bmp_classes()[u as usize]
    } else {
        compute_class(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Normalizer and pre-tokenizer
// ---------------------------------------------------------------------------------------------

/// BERT's text normalization, in `tokenizers`' order: clean, pad CJK, strip accents, lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalizer {
    /// Drop NUL, U+FFFD and control/format/private-use characters; map whitespace to a space.
    pub clean_text: bool,
    /// Put spaces around CJK ideographs so that each becomes its own word.
    pub handle_chinese_chars: bool,
    /// NFD, then drop non-spacing marks (é -> e).
    pub strip_accents: bool,
    /// Unicode lowercasing (char by char, as Rust's `char::to_lowercase`).
    pub lowercase: bool,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer::bert(true, None)
    }
}

impl Normalizer {
    /// BERT's settings; accent stripping follows `lowercase` unless given, as in BERT.
    pub fn bert(lowercase: bool, strip_accents: Option<bool>) -> Self {
        Normalizer {
            clean_text: true,
            handle_chinese_chars: true,
            strip_accents: strip_accents.unwrap_or(lowercase),
            lowercase,
        }
    }

    /// Normalize `text` into `out` (cleared first); `tmp` is scratch space.
    pub fn normalize_into(&self, text: &str, out: &mut String, tmp: &mut String) {
        out.clear();
        out.reserve(text.len() + 16);
        // ASCII runs take a fast path; the rest goes through the general one. Runs are cut only
        // before a kept ASCII character (a starter that never decomposes), so NFD's canonical
        // reordering never spans two runs and the result equals normalizing the whole text.
        let bytes = text.as_bytes();
        let n = bytes.len();
        let mut i = 0;
        while i < n {
            let start = i;
            while i < n && bytes[i] < 0x80 && !self.drops_ascii(bytes[i]) {
                i += 1;
            }
            if i > start {
                self.push_ascii(&bytes[start..i], out);
            }
            let start = i;
            while i < n && (bytes[i] >= 0x80 || self.drops_ascii(bytes[i])) {
                i += 1;
            }
            if i > start {
                self.push_general(&text[start..i], out, tmp);
            }
        }
    }

    #[inline]
    fn drops_ascii(&self, b: u8) -> bool {
        self.clean_text && ((b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
    }

    #[inline]
    fn push_ascii(&self, bytes: &[u8], out: &mut String) {
        let (clean, lower) = (self.clean_text, self.lowercase);
        out.extend(bytes.iter().map(|&b| {
            let b = if clean && matches!(b, b'\t' | b'\n' | b'\r') {
                b' '
            } else if lower {
                b.to_ascii_lowercase()
            } else {
                b
            };
            char::from(b)
        }));
    }

    fn push_general(&self, run: &str, out: &mut String, tmp: &mut String) {
        tmp.clear();
        for c in run.chars() {
            let k = class(c);
            if self.clean_text {
                if c == '\0'
                    || c == '\u{fffd}'
                    || (k & OTHER != 0 && !matches!(c, '\t' | '\n' | '\r'))
                {
                    continue;
                }
                if k & SPACE != 0 {
                    tmp.push(' ');
                    continue;
                }
            }
            if self.handle_chinese_chars && k & CJK != 0 {
                tmp.push(' ');
                tmp.push(c);
                tmp.push(' ');
                continue;
            }
            tmp.push(c);
        }
        let lower = self.lowercase;
        let mut emit = |c: char| {
            if lower && !c.is_ascii() {
                out.extend(c.to_lowercase());
            } else if lower {
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        };
        if self.strip_accents && !tmp.is_ascii() {
            tmp.nfd()
                .map(|(c, _)| c)
                .filter(|&c| class(c) & MARK == 0)
                .for_each(&mut emit);
        } else {
            tmp.chars().for_each(&mut emit);
        }
    }

    /// The normalized form of `text`.
    pub fn normalize(&self, text: &str) -> String {
        let mut out = String::new();
        self.normalize_into(text, &mut out, &mut String::new());
        out
    }
}

/// BERT's pre-tokenizer on normalized text: split on whitespace (removed) and isolate each
/// punctuation character. Calls `f` with each word, in order.
#[inline]
pub fn for_each_word<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if b.is_ascii_whitespace() || b == 0x0b {
                if start < i {
                    f(&text[start..i]);
                }
                start = i + 1;
            } else if b.is_ascii_punctuation() {
                if start < i {
                    f(&text[start..i]);
                }
                f(&text[i..i + 1]);
                start = i + 1;
            }
            i += 1;
            continue;
        }
        let c = text[i..].chars().next().unwrap_or('\u{fffd}');
        let n = c.len_utf8();
        let k = class(c);
        if k & SPACE != 0 {
            if start < i {
                f(&text[start..i]);
            }
            start = i + n;
        } else if k & PUNCT != 0 {
            if start < i {
                f(&text[start..i]);
            }
            f(&text[i..i + n]);
            start = i + n;
        }
        i += n;
    }
    if start < bytes.len() {
        f(&text[start..]);
    }
}

/// The words of normalized `text` (see [`for_each_word`]).
pub fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for_each_word(text, |w| words.push(w));
    words
}

// ---------------------------------------------------------------------------------------------
// The WordPiece model
// ---------------------------------------------------------------------------------------------

/// A part of a text: ordinary text, or a special token's id.
#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    Special(u32),
}

/// Texts at least this long are encoded in parallel pieces.
const PARALLEL_MIN: usize = 1 << 20;

/// How special tokens written in a text are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specials<'a> {
    /// As ordinary text.
    Text,
    /// Every special token becomes its id.
    All,
    /// These special-token ids become ids; other special tokens are text.
    Only(&'a [u32]),
}

impl Specials<'_> {
    /// `All` if `split`, else `Text`.
    pub fn split(split: bool) -> Self {
        if split {
            Specials::All
        } else {
            Specials::Text
        }
    }
}

/// Everything about a WordPiece tokenizer but its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Text normalization.
    pub normalizer: Normalizer,
    /// The token for words that cannot be split; must be in the vocabulary.
    pub unk_token: String,
    /// Prefix of pieces that continue a word.
    pub continuing_subword_prefix: String,
    /// Longer words (in characters, after normalization) become `unk_token`.
    pub max_input_chars_per_word: usize,
    /// Tokens matched verbatim in the raw text (before normalization); must be in the vocabulary.
    pub special_tokens: Vec<String>,
    /// Put before a text when special tokens are added (if the vocabulary has it).
    pub cls_token: String,
    /// Put after a text when special tokens are added (if the vocabulary has it).
    pub sep_token: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            normalizer: Normalizer::default(),
            unk_token: "[UNK]".into(),
            continuing_subword_prefix: "##".into(),
            max_input_chars_per_word: 100,
            special_tokens: Vec::new(),
            cls_token: "[CLS]".into(),
            sep_token: "[SEP]".into(),
        }
    }
}

/// A WordPiece tokenizer: vocabulary, lookup tables and settings. Immutable and `Sync`.
#[derive(Debug, Clone)]
pub struct WordPiece {
    config: Config,
    vocab: Vec<String>,
    ids: FxHashMap<Box<str>, u32>,
    continuations: FxHashMap<Box<str>, u32>,
    max_len: usize,
    max_continuation_len: usize,
    unk_id: u32,
    cls_id: Option<u32>,
    sep_id: Option<u32>,
    special_ids: Vec<u32>,
    is_special: Vec<bool>,
    matcher: Option<AhoCorasick>,
}

/// Scratch buffers reused across calls on one thread.
#[derive(Default)]
struct Scratch {
    norm: String,
    tmp: String,
}

fn describe(token: &str) -> String {
    format!("{token:?}")
}

impl WordPiece {
    /// Build from tokens in id order. Tokens must be distinct, non-empty, without line breaks or
    /// trailing whitespace (so that `vocab.txt` round-trips); `unk_token` and every special token
    /// must be among them.
    pub fn new(vocab: Vec<String>, config: Config) -> Result<Self> {
        Self::build(vocab, config, |id| format!("token {id}"))
    }

    fn build(vocab: Vec<String>, config: Config, place: impl Fn(usize) -> String) -> Result<Self> {
        if vocab.len() > u32::MAX as usize {
            return invalid("vocabulary has more than 2^32 tokens");
        }
        if config.continuing_subword_prefix.is_empty() {
            return invalid("continuing_subword_prefix must not be empty");
        }
        if config.max_input_chars_per_word == 0 {
            return invalid("max_input_chars_per_word must be at least 1");
        }
        let prefix = config.continuing_subword_prefix.as_str();
        let mut ids: FxHashMap<Box<str>, u32> = FxHashMap::default();
        ids.reserve(vocab.len());
        let mut continuations: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let (mut max_len, mut max_continuation_len) = (0, 0);
        for (id, token) in vocab.iter().enumerate() {
            if token.is_empty() {
                return invalid(format!("{}: empty token", place(id)));
            }
            if token.contains(['\n', '\r']) {
                return invalid(format!(
                    "{}: {} contains a line break",
                    place(id),
                    describe(token)
                ));
            }
            if token.ends_with(char::is_whitespace) {
                return invalid(format!(
                    "{}: {} ends with whitespace",
                    place(id),
                    describe(token)
                ));
            }
            if let Some(&first) = ids.get(token.as_str()) {
                return invalid(format!(
                    "{}: duplicate token {} (first at {})",
                    place(id),
                    describe(token),
                    place(first as usize)
                ));
            }
            ids.insert(token.as_str().into(), id as u32);
            max_len = max_len.max(token.len());
            if let Some(rest) = token.strip_prefix(prefix) {
                if !rest.is_empty() {
                    continuations.insert(rest.into(), id as u32);
                    max_continuation_len = max_continuation_len.max(rest.len());
                }
            }
        }
        let Some(&unk_id) = ids.get(config.unk_token.as_str()) else {
            return invalid(format!(
                "the vocabulary has no unk_token {}; add it or pass another unk_token",
                describe(&config.unk_token)
            ));
        };
        let mut special_ids = Vec::with_capacity(config.special_tokens.len());
        let mut is_special = vec![false; vocab.len()];
        for s in &config.special_tokens {
            let Some(&id) = ids.get(s.as_str()) else {
                return invalid(format!(
                    "special token {} is not in the vocabulary",
                    describe(s)
                ));
            };
            if !is_special[id as usize] {
                special_ids.push(id);
                is_special[id as usize] = true;
            }
        }
        let cls_id = ids.get(config.cls_token.as_str()).copied();
        let sep_id = ids.get(config.sep_token.as_str()).copied();
        let matcher = if config.special_tokens.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&config.special_tokens)
                    .map_err(|e| Error::Invalid(format!("special tokens: {e}")))?,
            )
        };
        Ok(WordPiece {
            config,
            vocab,
            ids,
            continuations,
            max_len,
            max_continuation_len,
            unk_id,
            cls_id,
            sep_id,
            special_ids,
            is_special,
            matcher,
        })
    }

    /// Read a `vocab.txt` (one token per line, UTF-8, id = line number - 1). A line's trailing
    /// whitespace is dropped, as `tokenizers` does; empty lines, duplicates and invalid UTF-8 are
    /// errors that name the file and line.
    pub fn from_vocab_file(path: &Path, config: Config) -> Result<Self> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
        let vocab = parse_vocab(&bytes, &name)?;
        if vocab.is_empty() {
            return invalid(format!("{name}: the vocabulary file is empty"));
        }
        Self::build(vocab, config, |id| format!("{name} line {}", id + 1)).map_err(|e| match e {
            Error::Invalid(m) if !m.starts_with(&name) => Error::Invalid(format!("{name}: {m}")),
            other => other,
        })
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Tokens in id order.
    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The token of `id`, if it is in range.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.vocab.get(id as usize).map(String::as_str)
    }

    /// Id of the unknown token.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Ids of `cls_token` and `sep_token`, where the vocabulary has them.
    pub fn cls_sep_ids(&self) -> (Option<u32>, Option<u32>) {
        (self.cls_id, self.sep_id)
    }

    /// Ids of the special tokens, in the order given.
    pub fn special_ids(&self) -> &[u32] {
        &self.special_ids
    }

    /// The vocabulary as `vocab.txt` text (one token per line, newline-terminated).
    pub fn to_vocab_txt(&self) -> String {
        let mut s = String::with_capacity(self.vocab.iter().map(|t| t.len() + 1).sum());
        for t in &self.vocab {
            s.push_str(t);
            s.push('\n');
        }
        s
    }

    /// Append the pieces of one pre-tokenized word (greedy longest match first; the whole word
    /// becomes `unk_token` if some part cannot be matched or it is too long).
    #[inline]
    pub fn word_ids(&self, word: &str, out: &mut Vec<u32>) {
        let max_chars = self.config.max_input_chars_per_word;
        if word.len() > max_chars && word.chars().count() > max_chars {
            out.push(self.unk_id);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        while start < word.len() {
            let (map, limit) = if start == 0 {
                (&self.ids, self.max_len)
            } else {
                (&self.continuations, self.max_continuation_len)
            };
            let mut end = word.len().min(start + limit);
            while !word.is_char_boundary(end) {
                end -= 1;
            }
            let mut found = None;
            while end > start {
                if let Some(&id) = map.get(&word[start..end]) {
                    found = Some(id);
                    break;
                }
                end -= 1;
                while !word.is_char_boundary(end) {
                    end -= 1;
                }
            }
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(mark);
                    out.push(self.unk_id);
                    return;
                }
            }
            start = end;
        }
    }

    fn encode_ordinary_into(&self, text: &str, out: &mut Vec<u32>, scratch: &mut Scratch) {
        let Scratch { norm, tmp } = scratch;
        self.config.normalizer.normalize_into(text, norm, tmp);
        for_each_word(norm, |w| self.word_ids(w, out));
    }

    fn encode_into(
        &self,
        text: &str,
        add_special_tokens: bool,
        specials: Specials<'_>,
        out: &mut Vec<u32>,
        scratch: &mut Scratch,
    ) {
        if add_special_tokens {
            out.extend(self.cls_id);
        }
        match (&self.matcher, specials) {
            (Some(matcher), Specials::All | Specials::Only(_)) => {
                let mut last = 0;
                for m in matcher.find_iter(text) {
                    let id = self.special_ids[m.pattern().as_usize()];
                    if let Specials::Only(allowed) = specials {
                        if !allowed.contains(&id) {
                            continue;
                        }
                    }
                    self.encode_ordinary_into(&text[last..m.start()], out, scratch);
                    out.push(id);
                    last = m.end();
                }
                self.encode_ordinary_into(&text[last..], out, scratch);
            }
            _ => self.encode_ordinary_into(text, out, scratch),
        }
        if add_special_tokens {
            out.extend(self.sep_id);
        }
    }

    /// Ids of `text`, with special tokens written in it handled as `specials` says. A text of
    /// 1 MiB or more is cut between words and encoded on all of rayon's threads.
    pub fn encode_with(
        &self,
        text: &str,
        add_special_tokens: bool,
        specials: Specials<'_>,
    ) -> Vec<u32> {
        let threads = rayon::current_num_threads();
        if text.len() >= PARALLEL_MIN && threads > 1 {
            return self.encode_parallel(text, add_special_tokens, specials, threads);
        }
        let mut out = Vec::with_capacity(text.len() / 4 + 2);
        self.encode_into(
            text,
            add_special_tokens,
            specials,
            &mut out,
            &mut Scratch::default(),
        );
        out
    }

    fn encode_parallel(
        &self,
        text: &str,
        add_special_tokens: bool,
        specials: Specials<'_>,
        threads: usize,
    ) -> Vec<u32> {
        // Ordinary text between the special tokens that count, then cut at separators.
        let mut pieces: Vec<Piece<'_>> = Vec::new();
        let mut last = 0;
        if let (Some(matcher), Specials::All | Specials::Only(_)) = (&self.matcher, specials) {
            for m in matcher.find_iter(text) {
                let id = self.special_ids[m.pattern().as_usize()];
                if let Specials::Only(allowed) = specials {
                    if !allowed.contains(&id) {
                        continue;
                    }
                }
                pieces.push(Piece::Text(&text[last..m.start()]));
                pieces.push(Piece::Special(id));
                last = m.end();
            }
        }
        pieces.push(Piece::Text(&text[last..]));
        let pieces: Vec<Piece<'_>> = pieces
            .into_iter()
            .flat_map(|p| match p {
                Piece::Text(t) if t.len() >= PARALLEL_MIN => split_at_whitespace(t, threads * 4)
                    .into_iter()
                    .map(Piece::Text)
                    .collect(),
                other => vec![other],
            })
            .collect();
        let parts: Vec<Vec<u32>> = pieces
            .par_iter()
            .map_init(Scratch::default, |scratch, p| match p {
                Piece::Text(t) => {
                    let mut out = Vec::with_capacity(t.len() / 4 + 1);
                    self.encode_ordinary_into(t, &mut out, scratch);
                    out
                }
                Piece::Special(id) => vec![*id],
            })
            .collect();
        let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + 2);
        if add_special_tokens {
            out.extend(self.cls_id);
        }
        for part in parts {
            out.extend(part);
        }
        if add_special_tokens {
            out.extend(self.sep_id);
        }
        out
    }

    /// Ids of each text (see [`WordPiece::encode_with`]), in parallel on rayon's pool.
    pub fn encode_batch_with<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
        specials: Specials<'_>,
    ) -> Vec<Vec<u32>> {
        texts
            .par_iter()
            .map_init(Scratch::default, |scratch, t| {
                let t = t.as_ref();
                let mut out = Vec::with_capacity(t.len() / 4 + 2);
                self.encode_into(t, add_special_tokens, specials, &mut out, scratch);
                out
            })
            .collect()
    }

    /// Ids of `text`. With `add_special_tokens`, `[CLS] ... [SEP]` around it; with
    /// `split_special_tokens`, special tokens written in the text become their ids (as `tokenizers`
    /// does with its added special tokens), otherwise they are ordinary text.
    pub fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
        split_special_tokens: bool,
    ) -> Vec<u32> {
        self.encode_with(
            text,
            add_special_tokens,
            Specials::split(split_special_tokens),
        )
    }

    /// Ids of each text, in parallel on rayon's pool.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
        split_special_tokens: bool,
    ) -> Vec<Vec<u32>> {
        self.encode_batch_with(
            texts,
            add_special_tokens,
            Specials::split(split_special_tokens),
        )
    }

    /// Text of `ids`: `##` pieces glued to the previous piece, others separated by a space; with
    /// `cleanup`, the spaces before `.`, `?`, `!`, `,` and in contractions are removed per token,
    /// exactly as `tokenizers`' WordPiece decoder does. An id out of range is an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool, cleanup: bool) -> Result<String> {
        let prefix = self.config.continuing_subword_prefix.as_str();
        let mut out = String::new();
        let mut first = true;
        for &id in ids {
            let Some(token) = self.vocab.get(id as usize) else {
                return invalid(format!(
                    "id {id} is out of range for a vocabulary of {} tokens",
                    self.vocab.len()
                ));
            };
            if skip_special_tokens && self.is_special[id as usize] {
                continue;
            }
            let piece: std::borrow::Cow<str> = if first {
                token.as_str().into()
            } else if let Some(rest) = token.strip_prefix(prefix) {
                rest.into()
            } else {
                format!(" {token}").into()
            };
            first = false;
            if cleanup {
                out.push_str(&cleanup_token(&piece));
            } else {
                out.push_str(&piece);
            }
        }
        Ok(out)
    }
}

/// `tokenizers`' `decoders::wordpiece::cleanup`, applied to one decoded token.
pub fn cleanup_token(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" do not", " don't")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

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
            return invalid(format!("{name} line {lineno}: invalid UTF-8"));
        };
        let token = line.trim_end();
        if token.is_empty() {
            return invalid(format!(
                "{name} line {lineno}: empty line (a vocab.txt has one token per line)"
            ));
        }
        if let Some(first) = seen.insert(token, lineno) {
            return invalid(format!(
                "{name} line {lineno}: duplicate token {} (first on line {first})",
                describe(token)
            ));
        }
        vocab.push(token.to_owned());
    }
    Ok(vocab)
}

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

/// Word counts of a corpus, after normalization and pre-tokenization. Counts are sums, so they
/// do not depend on how the corpus is split into texts or over threads.
#[derive(Debug, Clone, Default)]
pub struct WordCounts {
    normalizer: Normalizer,
    counts: FxHashMap<String, u64>,
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

/// Bytes that separate words under every normalizer setting. Not form feed or vertical tab:
/// `clean_text` drops those (as control characters), joining what is around them.
#[inline]
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// Split `text` into about `parts` pieces before a separator byte (words never span one).
fn split_at_whitespace(text: &str, parts: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let step = (bytes.len() / parts.max(1)).max(1 << 16);
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + step).min(bytes.len());
        while end < bytes.len() && !is_separator(bytes[end]) {
            end += 1;
        }
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
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

    fn add_bytes(&mut self, bytes: &[u8]) {
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

/// Settings of [`train`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainConfig {
    /// Stop when the vocabulary has this many tokens.
    pub vocab_size: usize,
    /// Stop at the first pair seen fewer times than this.
    pub min_frequency: u64,
    /// First ids, in this order.
    pub special_tokens: Vec<String>,
    /// Keep only this many characters (the most frequent; ties keep the smaller code point).
    pub limit_alphabet: Option<usize>,
    /// Characters always in the alphabet.
    pub initial_alphabet: Vec<char>,
    /// Prefix of pieces that continue a word.
    pub continuing_subword_prefix: String,
    /// Order of the `##c` tokens (default: code-point order). `tokenizers` uses its hash map's
    /// random order here; passing that order reproduces its vocabulary exactly.
    pub continuation_order: Option<Vec<char>>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            vocab_size: 30_000,
            min_frequency: 0,
            special_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                .map(String::from)
                .to_vec(),
            limit_alphabet: None,
            initial_alphabet: Vec::new(),
            continuing_subword_prefix: "##".into(),
            continuation_order: None,
        }
    }
}

type Pair = (u32, u32);

#[derive(Debug, PartialEq, Eq)]
struct Merge {
    count: u64,
    pair: Pair,
    pos: Vec<usize>,
}

impl Ord for Merge {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.count, Reverse(self.pair)).cmp(&(other.count, Reverse(other.pair)))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Merge `(a, b)` into `rep` left to right in `word`; record pair-count changes as
/// `tokenizers`' `Word::merge` does.
fn merge_word(word: &mut Vec<u32>, a: u32, b: u32, rep: u32, changes: &mut Vec<(Pair, i64)>) {
    let mut i = 0;
    while i < word.len() {
        if word[i] == a && i + 1 < word.len() && word[i + 1] == b {
            if i > 0 {
                changes.push(((word[i - 1], a), -1));
                changes.push(((word[i - 1], rep), 1));
            }
            word[i] = rep;
            word.remove(i + 1);
            if i + 1 < word.len() {
                changes.push(((b, word[i + 1]), -1));
                changes.push(((rep, word[i + 1]), 1));
            }
        }
        i += 1;
    }
}

/// Learn a WordPiece vocabulary (tokens in id order) from word counts, the way `tokenizers`'
/// `WordPieceTrainer` does: special tokens, then the alphabet in code-point order, then the
/// `##`-prefixed characters, then BPE merges (most frequent pair first, ties to the smaller
/// pair of ids) whose right part loses its `##`, until `vocab_size` tokens or no pair is left
/// at `min_frequency`.
pub fn train(counts: &WordCounts, cfg: &TrainConfig) -> Result<Vec<String>> {
    let prefix = cfg.continuing_subword_prefix.as_str();
    let mut words: Vec<(&str, u64)> = counts
        .counts
        .iter()
        .map(|(w, &c)| (w.as_str(), c))
        .collect();
    words.sort_unstable();

    let mut id2w: Vec<String> = Vec::new();
    let mut w2id: FxHashMap<String, u32> = FxHashMap::default();
    let add = |t: String, id2w: &mut Vec<String>, w2id: &mut FxHashMap<String, u32>| -> u32 {
        if let Some(&id) = w2id.get(&t) {
            return id;
        }
        let id = id2w.len() as u32;
        id2w.push(t.clone());
        w2id.insert(t, id);
        id
    };
    for s in &cfg.special_tokens {
        add(s.clone(), &mut id2w, &mut w2id);
    }

    // Alphabet: every character, weighted by word counts, optionally limited.
    let mut alphabet: FxHashMap<char, u64> = FxHashMap::default();
    for &(w, c) in &words {
        for ch in w.chars() {
            let e = alphabet.entry(ch).or_insert(0);
            *e = e.saturating_add(c);
        }
    }
    for &ch in &cfg.initial_alphabet {
        alphabet.insert(ch, u64::MAX);
    }
    let mut kept: Vec<(char, u64)> = alphabet.into_iter().collect();
    if let Some(limit) = cfg.limit_alphabet {
        if kept.len() > limit {
            kept.sort_unstable_by_key(|&(ch, n)| (n, Reverse(ch)));
            kept.drain(..kept.len() - limit);
        }
    }
    kept.sort_unstable();
    let mut char_ids: FxHashMap<char, u32> = FxHashMap::default();
    for &(ch, _) in &kept {
        char_ids.insert(ch, add(ch.to_string(), &mut id2w, &mut w2id));
    }

    // `##c` for every kept character that continues some word.
    let mut needed: FxHashSet<char> = FxHashSet::default();
    for &(w, _) in &words {
        needed.extend(w.chars().skip(1).filter(|c| char_ids.contains_key(c)));
    }
    let mut order: Vec<char> = Vec::with_capacity(needed.len());
    if let Some(given) = &cfg.continuation_order {
        let mut seen = FxHashSet::default();
        order.extend(
            given
                .iter()
                .filter(|c| needed.contains(c) && seen.insert(**c)),
        );
        let mut rest: Vec<char> = needed
            .iter()
            .filter(|c| !seen.contains(c))
            .copied()
            .collect();
        rest.sort_unstable();
        order.extend(rest);
    } else {
        order.extend(needed.iter().copied());
        order.sort_unstable();
    }
    let mut cont_ids: FxHashMap<char, u32> = FxHashMap::default();
    for ch in order {
        cont_ids.insert(ch, add(format!("{prefix}{ch}"), &mut id2w, &mut w2id));
    }
    if cfg.vocab_size < id2w.len() {
        return invalid(format!(
            "vocab_size={} is smaller than the {} special tokens and {} initial characters \
             (with their {prefix} forms) of this corpus; use at least {} or set limit_alphabet",
            cfg.vocab_size,
            cfg.special_tokens.len(),
            id2w.len() - cfg.special_tokens.len(),
            id2w.len()
        ));
    }

    let mut symbols: Vec<Vec<u32>> = words
        .iter()
        .map(|&(w, _)| {
            w.chars()
                .enumerate()
                .filter_map(|(i, ch)| {
                    if i == 0 {
                        char_ids.get(&ch).copied()
                    } else {
                        cont_ids.get(&ch).copied()
                    }
                })
                .collect()
        })
        .collect();
    let weights: Vec<u64> = words.iter().map(|&(_, c)| c).collect();
    drop(words);

    let mut pair_counts: FxHashMap<Pair, i64> = FxHashMap::default();
    let mut where_to_update: FxHashMap<Pair, Vec<usize>> = FxHashMap::default();
    for (i, word) in symbols.iter().enumerate() {
        for w in word.windows(2) {
            let pair = (w[0], w[1]);
            *pair_counts.entry(pair).or_insert(0) += weights[i] as i64;
            let pos = where_to_update.entry(pair).or_default();
            if pos.last() != Some(&i) {
                pos.push(i);
            }
        }
    }
    let mut queue: BinaryHeap<Merge> = BinaryHeap::with_capacity(pair_counts.len());
    let push_all = |where_to_update: &mut FxHashMap<Pair, Vec<usize>>,
                    pair_counts: &FxHashMap<Pair, i64>,
                    queue: &mut BinaryHeap<Merge>| {
        let mut drained: Vec<(Pair, Vec<usize>)> = where_to_update.drain().collect();
        drained.sort_unstable_by_key(|(p, _)| *p);
        for (pair, pos) in drained {
            let count = pair_counts[&pair];
            if count > 0 {
                queue.push(Merge {
                    count: count as u64,
                    pair,
                    pos,
                });
            }
        }
    };
    push_all(&mut where_to_update, &pair_counts, &mut queue);

    let mut changes: Vec<(Pair, i64)> = Vec::new();
    while id2w.len() < cfg.vocab_size {
        let Some(mut top) = queue.pop() else { break };
        let current = pair_counts[&top.pair];
        if top.count as i64 != current {
            top.count = current.max(0) as u64;
            queue.push(top);
            continue;
        }
        if top.count < 1 || cfg.min_frequency > top.count {
            break;
        }
        let left = &id2w[top.pair.0 as usize];
        let right = &id2w[top.pair.1 as usize];
        let right = right.strip_prefix(prefix).unwrap_or(right);
        let new_token = format!("{left}{right}");
        let new_id = add(new_token, &mut id2w, &mut w2id);
        for &iw in &top.pos {
            changes.clear();
            merge_word(
                &mut symbols[iw],
                top.pair.0,
                top.pair.1,
                new_id,
                &mut changes,
            );
            for &(pair, change) in &changes {
                *pair_counts.entry(pair).or_insert(0) += change * weights[iw] as i64;
                if change > 0 {
                    let pos = where_to_update.entry(pair).or_default();
                    if pos.last() != Some(&iw) {
                        pos.push(iw);
                    }
                }
            }
        }
        push_all(&mut where_to_update, &pair_counts, &mut queue);
    }
    Ok(id2w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|t| t.to_string()).collect()
    }

    fn bert() -> WordPiece {
        let v = vocab(&[
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello", ",",
            "world", "!", "the", "cafe", "中", "##ing", "run", ".", "want", "##want", "##ed", "wa",
            "a",
        ]);
        let cfg = Config {
            special_tokens: vocab(&["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
            ..Config::default()
        };
        WordPiece::new(v, cfg).unwrap()
    }

    fn toks(wp: &WordPiece, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| wp.id_to_token(i).unwrap().to_string())
            .collect()
    }

    #[test]
    fn normalizes_like_bert() {
        let n = Normalizer::default();
        assert_eq!(n.normalize("Héllo\tWORLD\u{0}\u{200b}!"), "hello world!");
        assert_eq!(n.normalize("中文"), " 中  文 ");
        assert_eq!(n.normalize("a\u{fffd}b\u{7}c"), "abc");
        let cased = Normalizer::bert(false, None);
        assert_eq!(cased.normalize("Héllo"), "Héllo");
        let keep_accents = Normalizer::bert(true, Some(false));
        assert_eq!(keep_accents.normalize("Héllo"), "héllo");
        // NFD reorders combining marks by class even across a dropped control character.
        let keep_case = Normalizer::bert(false, Some(true));
        assert_eq!(
            keep_case.normalize("X\u{1d16d}\x07\u{1d165}é"),
            "X\u{1d165}\u{1d16d}e"
        );
        assert_eq!(n.normalize("ÀB\tÇD"), "ab cd");
        // Canonical singleton: GREEK QUESTION MARK -> ';' only through accent stripping's NFD.
        assert_eq!(n.normalize("a\u{37e}b"), "a;b");
    }

    #[test]
    fn splits_whitespace_and_punctuation() {
        assert_eq!(
            pre_tokenize(" hello,  world!! "),
            ["hello", ",", "world", "!", "!"]
        );
        assert_eq!(pre_tokenize("a¿b—c$d"), ["a", "¿", "b", "—", "c", "$", "d"]);
        assert_eq!(pre_tokenize("x\u{3000}y"), ["x", "y"]);
    }

    #[test]
    fn greedy_longest_match_first() {
        let wp = bert();
        let ids = wp.encode("unaffable Hello, world!", false, true);
        assert_eq!(
            toks(&wp, &ids),
            ["un", "##aff", "##able", "hello", ",", "world", "!"]
        );
        assert_eq!(
            toks(&wp, &wp.encode("wanted", false, true)),
            ["want", "##ed"]
        );
        assert_eq!(
            toks(&wp, &wp.encode("unxyz the", false, true)),
            ["[UNK]", "the"]
        );
        assert_eq!(toks(&wp, &wp.encode("Café中", false, true)), ["cafe", "中"]);
        assert_eq!(
            toks(&wp, &wp.encode("the", true, true)),
            ["[CLS]", "the", "[SEP]"]
        );
    }

    #[test]
    fn long_words_are_unknown() {
        let wp = bert();
        let long = "a".repeat(101);
        assert_eq!(wp.encode(&long, false, false), [wp.unk_id()]);
        let cfg = Config {
            max_input_chars_per_word: 3,
            ..Config::default()
        };
        let wp = WordPiece::new(vocab(&["[UNK]", "run", "##ing"]), cfg).unwrap();
        assert_eq!(
            toks(&wp, &wp.encode("run running", false, false)),
            ["run", "[UNK]"]
        );
    }

    #[test]
    fn special_tokens_in_text() {
        let wp = bert();
        let ids = wp.encode("the [MASK]!", false, true);
        assert_eq!(toks(&wp, &ids), ["the", "[MASK]", "!"]);
        let ids = wp.encode("the [MASK]", false, false);
        assert_eq!(toks(&wp, &ids), ["the", "[UNK]", "[UNK]", "[UNK]"]);
        let only = [wp.token_to_id("[SEP]").unwrap()];
        let ids = wp.encode_with("[SEP][MASK]", false, Specials::Only(&only));
        assert_eq!(toks(&wp, &ids), ["[SEP]", "[UNK]", "[UNK]", "[UNK]"]);
    }

    #[test]
    fn decodes_pieces_and_cleans_up() {
        let wp = bert();
        let ids = wp.encode("[CLS] unaffable hello , world !", false, true);
        assert_eq!(
            wp.decode(&ids, false, true).unwrap(),
            "[CLS] unaffable hello, world!"
        );
        assert_eq!(
            wp.decode(&ids, true, false).unwrap(),
            "unaffable hello , world !"
        );
        assert!(wp.decode(&[999], false, false).is_err());
    }

    #[test]
    fn batch_equals_single() {
        let wp = bert();
        let texts = ["hello world", "", "unaffable", "中 cafe!"];
        let batch = wp.encode_batch(&texts, true, true);
        for (t, ids) in texts.iter().zip(batch) {
            assert_eq!(ids, wp.encode(t, true, true));
        }
    }

    #[test]
    fn bad_vocab_files() {
        let e = parse_vocab(b"a\nb\na\n", "v.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "v.txt line 3: duplicate token \"a\" (first on line 1)"
        );
        let e = parse_vocab(b"a\n\nb\n", "v.txt").unwrap_err();
        assert!(e.to_string().starts_with("v.txt line 2: empty line"));
        let e = parse_vocab(b"a\n\xff\n", "v.txt").unwrap_err();
        assert_eq!(e.to_string(), "v.txt line 2: invalid UTF-8");
        assert_eq!(parse_vocab(b"a \r\nb", "v").unwrap(), ["a", "b"]);
        let e = WordPiece::new(vocab(&["a"]), Config::default()).unwrap_err();
        assert!(e.to_string().contains("unk_token"));
    }

    #[test]
    fn vocab_round_trip() {
        let wp = bert();
        let text = wp.to_vocab_txt();
        assert_eq!(parse_vocab(text.as_bytes(), "v").unwrap(), wp.vocab());
    }

    fn counts_of(texts: &[&str]) -> WordCounts {
        let mut c = WordCounts::new(Normalizer::default());
        c.add_texts(texts);
        c
    }

    #[test]
    fn trains_bpe_over_words() {
        let counts = counts_of(&["hug hug hug pug pun", "bun hugs"]);
        assert_eq!(counts.get("hug"), 3);
        let cfg = TrainConfig {
            vocab_size: 15,
            special_tokens: vocab(&["[UNK]"]),
            ..TrainConfig::default()
        };
        let v = train(&counts, &cfg).unwrap();
        // specials, alphabet in code-point order, ## forms in code-point order, then merges.
        assert_eq!(
            &v[..12],
            vocab(&["[UNK]", "b", "g", "h", "n", "p", "s", "u", "##g", "##n", "##s", "##u"])
        );
        // "##u ##g" (count 5) first, then "h ##ug" (4 with "hugs").
        assert_eq!(&v[12..], vocab(&["##ug", "hug", "##un"]));
        let wp = WordPiece::new(v, Config::default()).unwrap();
        assert_eq!(
            toks(&wp, &wp.encode("hugs pun", false, false)),
            ["hug", "##s", "p", "##un"]
        );
    }

    #[test]
    fn training_stops_and_checks_size() {
        let counts = counts_of(&["aaaa bbb"]);
        let small = TrainConfig {
            vocab_size: 3,
            ..TrainConfig::default()
        };
        assert!(train(&counts, &small)
            .unwrap_err()
            .to_string()
            .contains("at least"));
        let freq = TrainConfig {
            vocab_size: 100,
            min_frequency: 2,
            special_tokens: vec![],
            ..TrainConfig::default()
        };
        // a, b, ##a, ##b, then ##a##a (count 3 in "aaaa" overlapping), ##b##b (2)...
        let v = train(&counts, &freq).unwrap();
        assert_eq!(&v[..4], vocab(&["a", "b", "##a", "##b"]));
        assert!(v.contains(&"##aa".to_string()));
    }

    #[test]
    fn training_is_deterministic_and_order_free() {
        let texts: Vec<String> = (0..2000)
            .map(|i| format!("word{} tok{} the quick brown fox {}", i % 37, i % 11, i % 5))
            .collect();
        let mut a = WordCounts::new(Normalizer::default());
        a.add_texts(&texts);
        let mut rev = texts.clone();
        rev.reverse();
        let mut b = WordCounts::new(Normalizer::default());
        b.add_texts(&rev[..1000]);
        b.add_texts(&rev[1000..]);
        let cfg = TrainConfig {
            vocab_size: 80,
            ..TrainConfig::default()
        };
        assert_eq!(train(&a, &cfg).unwrap(), train(&b, &cfg).unwrap());
    }

    #[test]
    fn big_texts_encode_like_small_pieces() {
        let wp = bert();
        let unit = "Héllo [MASK] unaffable\x0cwanted\t中cafe,  the\r\nrun ";
        let big = unit.repeat((PARALLEL_MIN / unit.len()) * 2);
        let one = wp.encode(unit, false, true);
        let n = big.len() / unit.len();
        for (split, add) in [(true, true), (false, false)] {
            let ids = wp.encode(&big, add, split);
            let mut expected: Vec<u32> = Vec::new();
            let unit_ids = wp.encode(unit, false, split);
            expected.extend(wp.cls_sep_ids().0.filter(|_| add));
            for _ in 0..n {
                expected.extend(&unit_ids);
            }
            expected.extend(wp.cls_sep_ids().1.filter(|_| add));
            assert_eq!(ids, expected);
        }
        assert!(one.contains(&wp.token_to_id("[MASK]").unwrap()));
    }

    #[test]
    fn big_texts_are_cut_only_between_words() {
        let big = "word\x0cword ".repeat(200_000);
        assert!(split_at_whitespace(&big, 4).len() > 1);
        let mut c = WordCounts::new(Normalizer::default());
        c.add_texts(&[big.as_str()]);
        assert_eq!((c.get("wordword"), c.get("word"), c.len()), (200_000, 0, 1));
    }

    #[test]
    fn reads_files_with_invalid_utf8() {
        let dir = std::env::temp_dir().join(format!("llmkit-wp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corpus.txt");
        std::fs::write(&path, b"hello wor\xffld\nhello\n").unwrap();
        let mut c = WordCounts::new(Normalizer::default());
        c.add_file(&path).unwrap();
        assert_eq!(c.get("hello"), 2);
        assert_eq!(c.get("world"), 1);
        assert_eq!(c.invalid_utf8(), 1);
        assert!(c.add_file(&dir.join("missing.txt")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
