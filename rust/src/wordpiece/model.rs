//! The WordPiece model (`tokenizers`' `WordPiece`): greedy longest-match-first subwords, special
//! tokens matched in the raw text, and the WordPiece decoder.

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::describe;
use super::normalizer::{Normalizer, Scratch};
use super::pretokenizer::{for_each_word, split_at_whitespace};
use crate::error::{Error, Result};

/// A part of a text: ordinary text, or a special token's id.
#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    Special(u32),
}

/// Texts at least this long are encoded in parallel pieces.
pub(super) const PARALLEL_MIN: usize = 1 << 20;

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

impl WordPiece {
    /// Build from tokens in id order. Tokens must be distinct, non-empty, without line breaks or
    /// trailing whitespace (so that `vocab.txt` round-trips); `unk_token` and every special token
    /// must be among them.
    pub fn new(vocab: Vec<String>, config: Config) -> Result<Self> {
        Self::build(vocab, config, |id| format!("token {id}"))
    }

    pub(super) fn build(
        vocab: Vec<String>,
        config: Config,
        place: impl Fn(usize) -> String,
    ) -> Result<Self> {
        if vocab.len() > u32::MAX as usize {
            return Err(Error::invalid("vocabulary has more than 2^32 tokens"));
        }
        if config.continuing_subword_prefix.is_empty() {
            return Err(Error::invalid(
                "continuing_subword_prefix must not be empty",
            ));
        }
        if config.max_input_chars_per_word == 0 {
            return Err(Error::invalid(
                "max_input_chars_per_word must be at least 1",
            ));
        }
        let prefix = config.continuing_subword_prefix.as_str();
        let mut ids: FxHashMap<Box<str>, u32> = FxHashMap::default();
        ids.reserve(vocab.len());
        let mut continuations: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let (mut max_len, mut max_continuation_len) = (0, 0);
        for (id, token) in vocab.iter().enumerate() {
            if token.is_empty() {
                return Err(Error::invalid(format!("{}: empty token", place(id))));
            }
            if token.contains(['\n', '\r']) {
                return Err(Error::invalid(format!(
                    "{}: {} contains a line break",
                    place(id),
                    describe(token)
                )));
            }
            if token.ends_with(char::is_whitespace) {
                return Err(Error::invalid(format!(
                    "{}: {} ends with whitespace",
                    place(id),
                    describe(token)
                )));
            }
            if let Some(&first) = ids.get(token.as_str()) {
                return Err(Error::invalid(format!(
                    "{}: duplicate token {} (first at {})",
                    place(id),
                    describe(token),
                    place(first as usize)
                )));
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
            return Err(Error::invalid(format!(
                "the vocabulary has no unk_token {}; add it or pass another unk_token",
                describe(&config.unk_token)
            )));
        };
        let mut special_ids = Vec::with_capacity(config.special_tokens.len());
        let mut is_special = vec![false; vocab.len()];
        for s in &config.special_tokens {
            let Some(&id) = ids.get(s.as_str()) else {
                return Err(Error::invalid(format!(
                    "special token {} is not in the vocabulary",
                    describe(s)
                )));
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
                return Err(Error::invalid(format!(
                    "id {id} is out of range for a vocabulary of {} tokens",
                    self.vocab.len()
                )));
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
