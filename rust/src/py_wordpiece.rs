//! PyO3 binding of the WordPiece core: `WordPiece` (encode/decode) and `WordPieceTrainer`.
//! Byte work runs with the GIL released; core errors become `ValueError` (bad input) or
//! `OSError` (a file).

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::Error;
use crate::py::py_err;
use crate::wordpiece::{self, Config, Normalizer, Specials, TrainConfig, WordCounts, WordPiece};

/// A WordPiece tokenizer (vocabulary + BERT normalizer/pre-tokenizer settings). Immutable.
#[pyclass(module = "llmkit._rust", name = "WordPiece", frozen)]
pub struct PyWordPiece {
    inner: WordPiece,
}

#[allow(clippy::too_many_arguments)]
fn make_config(
    lowercase: bool,
    strip_accents: Option<bool>,
    clean_text: bool,
    handle_chinese_chars: bool,
    unk_token: String,
    continuing_subword_prefix: String,
    max_input_chars_per_word: usize,
    special_tokens: Option<Vec<String>>,
    cls_token: String,
    sep_token: String,
) -> Config {
    let mut normalizer = Normalizer::bert(lowercase, strip_accents);
    normalizer.clean_text = clean_text;
    normalizer.handle_chinese_chars = handle_chinese_chars;
    Config {
        normalizer,
        unk_token,
        continuing_subword_prefix,
        max_input_chars_per_word,
        special_tokens: special_tokens.unwrap_or_default(),
        cls_token,
        sep_token,
    }
}

#[pymethods]
impl PyWordPiece {
    /// Build from tokens in id order (`path` set: read them from that `vocab.txt` instead).
    #[new]
    #[pyo3(signature = (
        tokens = None, *, path = None, lowercase = true, strip_accents = None, clean_text = true,
        handle_chinese_chars = true, unk_token = "[UNK]",
        continuing_subword_prefix = "##", max_input_chars_per_word = 100,
        special_tokens = None, cls_token = "[CLS]", sep_token = "[SEP]"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tokens: Option<Vec<String>>,
        path: Option<PathBuf>,
        lowercase: bool,
        strip_accents: Option<bool>,
        clean_text: bool,
        handle_chinese_chars: bool,
        unk_token: &str,
        continuing_subword_prefix: &str,
        max_input_chars_per_word: usize,
        special_tokens: Option<Vec<String>>,
        cls_token: &str,
        sep_token: &str,
    ) -> PyResult<Self> {
        let config = make_config(
            lowercase,
            strip_accents,
            clean_text,
            handle_chinese_chars,
            unk_token.to_owned(),
            continuing_subword_prefix.to_owned(),
            max_input_chars_per_word,
            special_tokens,
            cls_token.to_owned(),
            sep_token.to_owned(),
        );
        let inner = py
            .allow_threads(|| match (tokens, path) {
                (Some(tokens), None) => WordPiece::new(tokens, config),
                (None, Some(path)) => WordPiece::from_vocab_file(&path, config),
                _ => Err(Error::Invalid("pass exactly one of tokens and path".into())),
            })
            .map_err(py_err)?;
        Ok(PyWordPiece { inner })
    }

    /// Ids of `text` (see the facade `llmkit.tokenizers.WordPieceTokenizer.encode`); `allowed`
    /// (special-token ids) overrides `split_special_tokens`.
    #[pyo3(signature = (text, add_special_tokens = false, split_special_tokens = true, allowed = None))]
    fn encode(
        &self,
        py: Python<'_>,
        text: &str,
        add_special_tokens: bool,
        split_special_tokens: bool,
        allowed: Option<Vec<u32>>,
    ) -> Vec<u32> {
        let run = || {
            let specials = match &allowed {
                Some(ids) => Specials::Only(ids),
                None => Specials::split(split_special_tokens),
            };
            self.inner.encode_with(text, add_special_tokens, specials)
        };
        if text.len() < 256 {
            run()
        } else {
            py.allow_threads(run)
        }
    }

    /// Ids of each text, encoded in parallel with the GIL released.
    #[pyo3(signature = (texts, add_special_tokens = false, split_special_tokens = true, allowed = None))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        add_special_tokens: bool,
        split_special_tokens: bool,
        allowed: Option<Vec<u32>>,
    ) -> Vec<Vec<u32>> {
        py.allow_threads(|| {
            let specials = match &allowed {
                Some(ids) => Specials::Only(ids),
                None => Specials::split(split_special_tokens),
            };
            self.inner
                .encode_batch_with(&texts, add_special_tokens, specials)
        })
    }

    /// Token strings of `text`.
    #[pyo3(signature = (text, add_special_tokens = false, split_special_tokens = true))]
    fn tokenize(
        &self,
        py: Python<'_>,
        text: &str,
        add_special_tokens: bool,
        split_special_tokens: bool,
    ) -> Vec<String> {
        let ids = py.allow_threads(|| {
            self.inner
                .encode(text, add_special_tokens, split_special_tokens)
        });
        ids.iter()
            .map(|&i| self.inner.id_to_token(i).unwrap_or_default().to_owned())
            .collect()
    }

    /// Text of `ids`; an id out of range is a `ValueError`.
    #[pyo3(signature = (ids, skip_special_tokens = false, cleanup = true))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: Vec<i64>,
        skip_special_tokens: bool,
        cleanup: bool,
    ) -> PyResult<String> {
        let n = self.inner.vocab_size();
        let mut checked = Vec::with_capacity(ids.len());
        for id in ids {
            if id < 0 || id as u64 >= n as u64 {
                return Err(PyValueError::new_err(format!(
                    "id {id} is out of range for a vocabulary of {n} tokens"
                )));
            }
            checked.push(id as u32);
        }
        py.allow_threads(|| self.inner.decode(&checked, skip_special_tokens, cleanup))
            .map_err(py_err)
    }

    /// `text` after BERT normalization.
    fn normalize(&self, text: &str) -> String {
        self.inner.config().normalizer.normalize(text)
    }

    /// The words of `text` after normalization and pre-tokenization.
    fn pre_tokenize(&self, text: &str) -> Vec<String> {
        let norm = self.inner.config().normalizer.normalize(text);
        wordpiece::pre_tokenize(&norm)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// The id of `token`, or None.
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of `id`, or None.
    fn id_to_token(&self, id: i64) -> Option<String> {
        u32::try_from(id)
            .ok()
            .and_then(|i| self.inner.id_to_token(i))
            .map(str::to_owned)
    }

    /// Tokens in id order.
    fn vocab(&self) -> Vec<String> {
        self.inner.vocab().to_vec()
    }

    /// The vocabulary as `vocab.txt` text.
    fn to_vocab_txt(&self) -> String {
        self.inner.to_vocab_txt()
    }

    /// Number of ids.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// Special token -> id, in the order given.
    #[getter]
    fn special_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for &id in self.inner.special_ids() {
            d.set_item(self.inner.id_to_token(id).unwrap_or_default(), id)?;
        }
        Ok(d)
    }

    /// Id of the unknown token.
    #[getter]
    fn unk_id(&self) -> u32 {
        self.inner.unk_id()
    }

    /// Ids of cls_token and sep_token (None where the vocabulary lacks one).
    #[getter]
    fn cls_sep_ids(&self) -> (Option<u32>, Option<u32>) {
        self.inner.cls_sep_ids()
    }

    /// The settings as a dict (the keyword arguments of the constructor).
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.config();
        let d = PyDict::new(py);
        d.set_item("lowercase", c.normalizer.lowercase)?;
        d.set_item("strip_accents", c.normalizer.strip_accents)?;
        d.set_item("clean_text", c.normalizer.clean_text)?;
        d.set_item("handle_chinese_chars", c.normalizer.handle_chinese_chars)?;
        d.set_item("unk_token", &c.unk_token)?;
        d.set_item("continuing_subword_prefix", &c.continuing_subword_prefix)?;
        d.set_item("max_input_chars_per_word", c.max_input_chars_per_word)?;
        d.set_item("special_tokens", &c.special_tokens)?;
        d.set_item("cls_token", &c.cls_token)?;
        d.set_item("sep_token", &c.sep_token)?;
        Ok(d)
    }

    fn __len__(&self) -> usize {
        self.inner.vocab_size()
    }
}

/// Word counts for WordPiece training: feed texts or files, then `train`.
#[pyclass(module = "llmkit._rust", name = "WordPieceTrainer")]
pub struct PyWordPieceTrainer {
    counts: WordCounts,
}

#[pymethods]
impl PyWordPieceTrainer {
    /// Empty counts; the normalizer settings are those of the tokenizer to train.
    #[new]
    #[pyo3(signature = (*, lowercase = true, strip_accents = None, clean_text = true, handle_chinese_chars = true))]
    fn new(
        lowercase: bool,
        strip_accents: Option<bool>,
        clean_text: bool,
        handle_chinese_chars: bool,
    ) -> Self {
        let mut normalizer = Normalizer::bert(lowercase, strip_accents);
        normalizer.clean_text = clean_text;
        normalizer.handle_chinese_chars = handle_chinese_chars;
        PyWordPieceTrainer {
            counts: WordCounts::new(normalizer),
        }
    }

    /// Count the words of `texts`, in parallel with the GIL released.
    fn feed_texts(&mut self, py: Python<'_>, texts: Vec<String>) {
        let counts = &mut self.counts;
        py.allow_threads(|| counts.add_texts(&texts));
    }

    /// Count the words of a file (streamed; invalid UTF-8 replaced and counted).
    fn feed_file(&mut self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let counts = &mut self.counts;
        py.allow_threads(|| counts.add_file(&path)).map_err(py_err)
    }

    /// Count the words of UTF-8 bytes that end at a line end (e.g. a block of a gzipped file).
    fn feed_bytes(&mut self, py: Python<'_>, data: &[u8]) {
        let counts = &mut self.counts;
        py.allow_threads(|| counts.add_bytes(data));
    }

    /// Invalid UTF-8 sequences replaced so far.
    #[getter]
    fn invalid_utf8(&self) -> u64 {
        self.counts.invalid_utf8()
    }

    /// Distinct words counted so far.
    #[getter]
    fn num_words(&self) -> usize {
        self.counts.len()
    }

    /// How often `word` (normalized) was seen.
    fn word_count(&self, word: &str) -> u64 {
        self.counts.get(word)
    }

    /// Learn the vocabulary (tokens in id order) from the counts so far.
    #[pyo3(signature = (
        vocab_size, *, min_frequency = 0, special_tokens = None, limit_alphabet = None,
        initial_alphabet = None, continuing_subword_prefix = "##",
        continuation_order = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn train(
        &self,
        py: Python<'_>,
        vocab_size: usize,
        min_frequency: u64,
        special_tokens: Option<Vec<String>>,
        limit_alphabet: Option<usize>,
        initial_alphabet: Option<Vec<char>>,
        continuing_subword_prefix: &str,
        continuation_order: Option<Vec<char>>,
    ) -> PyResult<Vec<String>> {
        let cfg = TrainConfig {
            vocab_size,
            min_frequency,
            special_tokens: special_tokens.unwrap_or_default(),
            limit_alphabet,
            initial_alphabet: initial_alphabet.unwrap_or_default(),
            continuing_subword_prefix: continuing_subword_prefix.to_owned(),
            continuation_order,
        };
        let counts = &self.counts;
        py.allow_threads(|| wordpiece::train(counts, &cfg))
            .map_err(py_err)
    }
}

/// Add the WordPiece classes to `llmkit._rust`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWordPiece>()?;
    m.add_class::<PyWordPieceTrainer>()?;
    Ok(())
}
