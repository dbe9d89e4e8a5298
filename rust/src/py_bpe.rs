//! PyO3 binding of the byte-level BPE core: argument conversion, the GIL released for all byte
//! work, Rust errors as `ValueError`/`OSError`.

use crate::bpe::{Bpe as CoreBpe, SpecialSet};
use crate::pretok::Pretokenizer;
use crate::py::py_err;
use crate::rank_file::{parse_canonical, Ranks};
use crate::trainer::{train, WordCounter};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList};
use rustc_hash::FxHashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// What `BpeTrainer.train` returns: token bytes by id, number of special tokens, merges.
type TrainResult<'py> = (Vec<Bound<'py, PyBytes>>, usize, Vec<(u32, u32)>);

fn pool(threads: Option<usize>) -> PyResult<Option<Arc<rayon::ThreadPool>>> {
    match threads {
        None | Some(0) => Ok(None),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(|p| Some(Arc::new(p)))
            .map_err(|e| PyValueError::new_err(format!("cannot start {n} threads: {e}"))),
    }
}

fn run<T: Send>(pool: &Option<Arc<rayon::ThreadPool>>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// A byte-level BPE model (the Rust core of `llmkit.tokenizers.BPETokenizer`).
#[pyclass(frozen, module = "llmkit._rust", name = "Bpe")]
pub struct PyBpe {
    inner: CoreBpe,
    /// One Python int per id, made on the first encode: a returned list then holds new
    /// references to them instead of one freshly allocated int per id.
    ints: OnceLock<Vec<Py<PyInt>>>,
}

impl PyBpe {
    /// The bytes of `ids` as a `bytes` object, filled in place without the GIL.
    fn decode_to_bytes<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyBytes>> {
        let len = self.inner.decoded_len(ids).map_err(py_err)?;
        PyBytes::new_with(py, len, |buf| {
            py.allow_threads(|| self.inner.decode_into(ids, buf));
            Ok(())
        })
    }

    fn new(inner: CoreBpe) -> Self {
        Self {
            inner,
            ints: OnceLock::new(),
        }
    }

    /// `ids` as a Python list of ints.
    fn ids_list<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyList>> {
        let ints = self.ints.get_or_init(|| {
            (0..self.inner.vocab_size() as u32)
                .map(|i| i.into_pyobject(py).expect("an int").unbind())
                .collect()
        });
        PyList::new(
            py,
            ids.iter().map(|&i| match ints.get(i as usize) {
                Some(int) => int.bind(py).clone(),
                None => i.into_pyobject(py).expect("an int"),
            }),
        )
    }

    /// `None`/`False` -> no special token, `True` -> all, a list of texts -> those.
    fn special_set(&self, spec: Option<&Bound<'_, PyAny>>) -> PyResult<SpecialSet> {
        let Some(obj) = spec else {
            return Ok(SpecialSet::None);
        };
        if obj.is_none() {
            return Ok(SpecialSet::None);
        }
        if let Ok(b) = obj.downcast::<PyBool>() {
            return Ok(if b.is_true() {
                SpecialSet::All
            } else {
                SpecialSet::None
            });
        }
        let names: Vec<PyBackedStr> = obj.extract()?;
        let mut ids = FxHashSet::default();
        for n in names {
            match self.inner.special_id(&n) {
                Some(id) => {
                    ids.insert(id);
                }
                None => {
                    return Err(PyValueError::new_err(format!(
                        "{:?} is not a special token of this tokenizer",
                        &*n
                    )))
                }
            }
        }
        Ok(SpecialSet::Ids(ids))
    }
}

/// Ids from a list (read directly when its items are ints) or any sequence of ints.
fn extract_ids(ids: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    if let Ok(list) = ids.downcast::<PyList>() {
        if let Some(v) = list_of_ints(list)? {
            return Ok(v);
        }
    }
    ids.extract()
}

/// The ids in a list whose items are all ints, read with one C call per item (no iterator, no
/// reference counting); `None` if an item is not an int (the caller then converts it the usual
/// way, which may run Python code).
fn list_of_ints(list: &Bound<'_, PyList>) -> PyResult<Option<Vec<u32>>> {
    let py = list.py();
    let n = list.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: the GIL is held and no Python code runs in this loop (only ints are read, and
        // reading an int calls nothing), so the list keeps its length and its items; a NULL
        // item (impossible then) is still refused.
        let v = unsafe {
            let item = pyo3::ffi::PyList_GetItem(list.as_ptr(), i as pyo3::ffi::Py_ssize_t);
            let exact_int = !item.is_null()
                && std::ptr::eq(pyo3::ffi::Py_TYPE(item), &raw mut pyo3::ffi::PyLong_Type);
            if !exact_int && (item.is_null() || pyo3::ffi::PyLong_Check(item) == 0) {
                PyErr::take(py);
                return Ok(None);
            }
            pyo3::ffi::PyLong_AsLong(item)
        };
        if v == -1 {
            if let Some(e) = PyErr::take(py) {
                return Err(e);
            }
        }
        match u32::try_from(v) {
            Ok(id) => out.push(id),
            Err(_) => {
                return Err(pyo3::exceptions::PyOverflowError::new_err(format!(
                    "token id {v} is out of range for an unsigned 32-bit int"
                )))
            }
        }
    }
    Ok(Some(out))
}

fn ids_to_bytes(ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 4);
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

#[pymethods]
impl PyBpe {
    /// A model from ordinary tokens `(bytes, id)`, merges `(left id, right id)` in rank order,
    /// special tokens `(text, id)` and a pattern (name or regex).
    #[staticmethod]
    #[pyo3(signature = (tokens, merges, specials, pattern, ignore_merges=false))]
    fn from_merges(
        py: Python<'_>,
        tokens: Vec<(Vec<u8>, u32)>,
        merges: Vec<(u32, u32)>,
        specials: Vec<(String, u32)>,
        pattern: &str,
        ignore_merges: bool,
    ) -> PyResult<Self> {
        let pretok = Pretokenizer::new(pattern).map_err(py_err)?;
        let inner = py
            .allow_threads(|| CoreBpe::from_merges(tokens, merges, specials, pretok, ignore_merges))
            .map_err(py_err)?;
        Ok(Self::new(inner))
    }

    /// A model from tiktoken ranks `(bytes, rank)` (rank = id), special tokens and a pattern.
    #[staticmethod]
    fn from_ranks(
        py: Python<'_>,
        tokens: Vec<(Vec<u8>, u32)>,
        specials: Vec<(String, u32)>,
        pattern: &str,
    ) -> PyResult<Self> {
        let pretok = Pretokenizer::new(pattern).map_err(py_err)?;
        let inner = py
            .allow_threads(|| CoreBpe::from_ranks(tokens, specials, pretok))
            .map_err(py_err)?;
        Ok(Self::new(inner))
    }

    /// A model from a parsed rank file (which it takes: a `RankFile` builds one model), special
    /// tokens and a pattern, built without the GIL.
    #[staticmethod]
    fn from_rank_file(
        py: Python<'_>,
        ranks: &PyRankFile,
        specials: Vec<(String, u32)>,
        pattern: &str,
    ) -> PyResult<Self> {
        let pretok = Pretokenizer::new(pattern).map_err(py_err)?;
        let tokens = ranks
            .pairs
            .lock()
            .map_err(|_| PyValueError::new_err("rank file lock poisoned"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("this rank file has already built a model"))?;
        let inner = py
            .allow_threads(|| CoreBpe::from_ranks(tokens, specials, pretok))
            .map_err(py_err)?;
        Ok(Self::new(inner))
    }

    /// Ids of `text`; `allowed`/`disallowed` are None, True (all) or a list of special tokens.
    #[pyo3(signature = (text, allowed=None, disallowed=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        allowed: Option<&Bound<'_, PyAny>>,
        disallowed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let allowed = self.special_set(allowed)?;
        let disallowed = self.special_set(disallowed)?;
        let ids = py
            .allow_threads(|| self.inner.encode(text, &allowed, &disallowed))
            .map_err(py_err)?;
        self.ids_list(py, &ids)
    }

    /// Ids of any byte string (invalid UTF-8 kept as raw bytes), so `decode_bytes` round-trips.
    fn encode_bytes<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let ids = py.allow_threads(|| self.inner.encode_bytes(data));
        self.ids_list(py, &ids)
    }

    /// Ids of `text` as little-endian uint32 bytes (for `numpy.frombuffer`, no list built).
    #[pyo3(signature = (text, allowed=None, disallowed=None))]
    fn encode_u32<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        allowed: Option<&Bound<'_, PyAny>>,
        disallowed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let allowed = self.special_set(allowed)?;
        let disallowed = self.special_set(disallowed)?;
        let bytes = py
            .allow_threads(|| {
                self.inner
                    .encode(text, &allowed, &disallowed)
                    .map(|ids| ids_to_bytes(&ids))
            })
            .map_err(py_err)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Ids of each text, encoded in parallel on `threads` threads (0 or None: all cores).
    #[pyo3(signature = (texts, allowed=None, disallowed=None, threads=None))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        allowed: Option<&Bound<'_, PyAny>>,
        disallowed: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let allowed = self.special_set(allowed)?;
        let disallowed = self.special_set(disallowed)?;
        let pool = pool(threads)?;
        let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
        let out = py
            .allow_threads(|| {
                run(&pool, || {
                    self.inner.encode_batch(&refs, &allowed, &disallowed)
                })
            })
            .map_err(py_err)?;
        let lists = out
            .iter()
            .map(|ids| self.ids_list(py, ids))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, lists)
    }

    /// All texts encoded in parallel, as (uint32 LE ids of all texts, uint64 LE end offsets).
    #[pyo3(signature = (texts, allowed=None, disallowed=None, threads=None))]
    fn encode_batch_u32<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        allowed: Option<&Bound<'_, PyAny>>,
        disallowed: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let allowed = self.special_set(allowed)?;
        let disallowed = self.special_set(disallowed)?;
        let pool = pool(threads)?;
        let refs: Vec<&str> = texts.iter().map(|t| &**t).collect();
        let (flat, ends) = py
            .allow_threads(|| {
                run(&pool, || {
                    self.inner.encode_batch(&refs, &allowed, &disallowed)
                })
                .map(|all| {
                    let total: usize = all.iter().map(Vec::len).sum();
                    let mut flat = Vec::with_capacity(total * 4);
                    let mut ends = Vec::with_capacity(all.len() * 8);
                    let mut n = 0u64;
                    for ids in &all {
                        for id in ids {
                            flat.extend_from_slice(&id.to_le_bytes());
                        }
                        n += ids.len() as u64;
                        ends.extend_from_slice(&n.to_le_bytes());
                    }
                    (flat, ends)
                })
            })
            .map_err(py_err)?;
        Ok((PyBytes::new(py, &flat), PyBytes::new(py, &ends)))
    }

    /// Bytes of a sequence of ids, written straight into the new `bytes` object.
    fn decode_bytes<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.decode_to_bytes(py, &extract_ids(ids)?)
    }

    /// Bytes of ids given as little-endian uint32 bytes (a NumPy array's `tobytes()`).
    fn decode_bytes_u32<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        if !data.len().is_multiple_of(4) {
            return Err(PyValueError::new_err(
                "uint32 id data must be a multiple of 4 bytes",
            ));
        }
        let ids: Vec<u32> = py.allow_threads(|| {
            data.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        });
        self.decode_to_bytes(py, &ids)
    }

    /// The bytes of one token (a special token gives its text).
    fn token_bytes<'py>(&self, py: Python<'py>, id: u32) -> PyResult<Bound<'py, PyBytes>> {
        let b = self.inner.token_bytes(id).map_err(py_err)?;
        Ok(PyBytes::new(py, b))
    }

    /// The id of an ordinary token given by its bytes, or None.
    fn token_id(&self, token: &[u8]) -> Option<u32> {
        self.inner.token_id(token)
    }

    /// Whether `id` is a special token.
    fn is_special(&self, id: u32) -> bool {
        self.inner.is_special(id)
    }

    /// One past the largest id.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The pre-tokenizer regex source.
    #[getter]
    fn pattern(&self) -> &str {
        self.inner.pretokenizer().source()
    }

    /// `gpt2`, `cl100k`, `o200k`, or None for a custom regex.
    #[getter]
    fn pattern_name(&self) -> Option<&'static str> {
        self.inner.pretokenizer().name()
    }

    /// Whether a piece that is a token always encodes to it (tiktoken's rule).
    #[getter]
    fn ignore_merges(&self) -> bool {
        self.inner.ignore_merges()
    }

    /// Special tokens `(text, id)`.
    fn specials(&self) -> Vec<(String, u32)> {
        self.inner.specials().to_vec()
    }

    /// Ordinary tokens `(bytes, id)` in id order.
    fn tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<(Bound<'py, PyBytes>, u32)> = self
            .inner
            .tokens()
            .into_iter()
            .map(|(b, id)| (PyBytes::new(py, b), id))
            .collect();
        PyList::new(py, items)
    }

    /// The merges in rank order if the model was built from merges, else None.
    fn merge_list(&self) -> Option<Vec<(u32, u32)>> {
        self.inner.merge_list().map(<[_]>::to_vec)
    }

    /// Every merge rule `(left, right, rank, new id)`, by rank (for export to merge-based formats).
    fn all_merges(&self) -> Vec<(u32, u32, u32, u32)> {
        self.inner.all_merges()
    }

    /// Pieces of `text` under this model's pre-tokenizer.
    fn pretokenize(&self, text: &str) -> Vec<String> {
        self.inner
            .pretokenizer()
            .pieces(text)
            .into_iter()
            .map(String::from)
            .collect()
    }
}

/// Pieces of `text` under a pattern (name or regex); `regex_only` bypasses the fast scanner.
#[pyfunction]
#[pyo3(signature = (pattern, text, regex_only=false))]
fn pretokenize(pattern: &str, text: &str, regex_only: bool) -> PyResult<Vec<String>> {
    let p = Pretokenizer::new(pattern).map_err(py_err)?;
    let pieces = if regex_only {
        p.split_regex(text)
    } else {
        p.pieces(text)
    };
    Ok(pieces.into_iter().map(String::from).collect())
}

/// The regex source of a named pattern, or None.
#[pyfunction]
fn named_pattern(name: &str) -> Option<&'static str> {
    crate::pretok::named_pattern(name)
}

/// A tiktoken rank file's (token, rank) pairs, parsed in Rust and held until a model takes them.
#[pyclass(frozen, module = "llmkit._rust", name = "RankFile")]
pub struct PyRankFile {
    pairs: Mutex<Option<Ranks>>,
    len: usize,
}

#[pymethods]
impl PyRankFile {
    /// The file's bytes parsed without the GIL when laid out as tiktoken writes it; None for any
    /// other layout (the caller's line reader then names the first bad line).
    #[staticmethod]
    fn parse(py: Python<'_>, data: &[u8]) -> Option<Self> {
        let pairs = py.allow_threads(|| parse_canonical(data))?;
        Some(Self {
            len: pairs.len(),
            pairs: Mutex::new(Some(pairs)),
        })
    }

    fn __len__(&self) -> usize {
        self.len
    }
}

/// Streaming BPE trainer: feed texts and files, then `train`.
#[pyclass(module = "llmkit._rust", name = "BpeTrainer")]
pub struct PyBpeTrainer {
    counter: Option<WordCounter>,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl PyBpeTrainer {
    fn counter(&mut self) -> PyResult<&mut WordCounter> {
        self.counter
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("this trainer has already trained"))
    }
}

#[pymethods]
impl PyBpeTrainer {
    #[new]
    #[pyo3(signature = (pattern, threads=None))]
    fn new(pattern: &str, threads: Option<usize>) -> PyResult<Self> {
        let pretok = Pretokenizer::new(pattern).map_err(py_err)?;
        let pool = pool(threads)?;
        let counter = run(&pool, || WordCounter::new(pretok));
        Ok(Self {
            counter: Some(counter),
            pool,
        })
    }

    /// Count the pre-tokens of each text (a text is one sequence).
    fn feed_texts(&mut self, py: Python<'_>, texts: Vec<String>) -> PyResult<()> {
        let pool = self.pool.clone();
        let counter = self.counter()?;
        py.allow_threads(|| run(&pool, || counter.feed_texts(&texts)));
        Ok(())
    }

    /// Count the pre-tokens of each line (with its newline) of a file.
    fn feed_file(&mut self, py: Python<'_>, path: &str) -> PyResult<()> {
        let pool = self.pool.clone();
        let counter = self.counter()?;
        py.allow_threads(|| run(&pool, || counter.feed_file(path)))
            .map_err(py_err)
    }

    /// Count the lines of a chunk of a file (cut at a line end), e.g. from a decompressor.
    fn feed_bytes(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let pool = self.pool.clone();
        let counter = self.counter()?;
        py.allow_threads(|| run(&pool, || counter.feed_lines(data)));
        Ok(())
    }

    /// (bytes, lines or texts, lines with invalid UTF-8) read so far.
    fn stats(&self) -> (u64, u64, u64) {
        match &self.counter {
            Some(c) => (c.bytes, c.lines, c.invalid_lines),
            None => (0, 0, 0),
        }
    }

    /// Train: (token bytes by id, number of special tokens first, merges in rank order).
    #[pyo3(signature = (vocab_size, min_frequency, specials, progress=None))]
    fn train<'py>(
        &mut self,
        py: Python<'py>,
        vocab_size: usize,
        min_frequency: u64,
        specials: Vec<String>,
        progress: Option<PyObject>,
    ) -> PyResult<TrainResult<'py>> {
        let counter = self
            .counter
            .take()
            .ok_or_else(|| PyValueError::new_err("this trainer has already trained"))?;
        let pool = self.pool.clone();
        let trained = py
            .allow_threads(|| {
                run(&pool, || {
                    let words = counter.into_words();
                    train(
                        words,
                        vocab_size,
                        min_frequency,
                        &specials,
                        |done, wanted| {
                            if let Some(cb) = &progress {
                                Python::with_gil(|py| {
                                    // A failing progress callback must not stop training.
                                    let _ = cb.call1(py, (done, wanted));
                                });
                            }
                        },
                    )
                })
            })
            .map_err(py_err)?;
        let tokens = trained.tokens.iter().map(|t| PyBytes::new(py, t)).collect();
        Ok((tokens, trained.n_special, trained.merges))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBpe>()?;
    m.add_class::<PyBpeTrainer>()?;
    m.add_class::<PyRankFile>()?;
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    m.add_function(wrap_pyfunction!(named_pattern, m)?)?;
    Ok(())
}
