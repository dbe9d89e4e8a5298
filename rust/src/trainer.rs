//! BPE training, exactly like `tokenizers`' BpeTrainer with the full byte alphabet.
//!
//! 1. Counting: text is split into pre-tokens (files line by line, each line with its newline;
//!    other texts whole) on all cores; each worker counts into its own map, so memory grows with
//!    the number of distinct pre-tokens, not with the corpus.
//! 2. Merging: ids are the special tokens, then the 256 bytes in the code-point order of their
//!    byte-level characters. Pair counts over unique words weighted by their counts; a max-heap of
//!    (count, smallest pair) with lazy updates; after each merge only the words that held the
//!    pair are touched and the pairs they gain are pushed again. Stops at the vocabulary size or
//!    at the first pair below `min_frequency`. The same steps as `tokenizers`, so the same merges.

use crate::bytelevel::bytes_in_char_order;
use crate::error::{Error, Result};
use crate::pretok::Pretokenizer;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::Read;
use std::sync::Mutex;

type Counts = FxHashMap<Box<[u8]>, u64>;

/// Counts of pre-tokens, fed from texts and files on all cores.
pub struct WordCounter {
    pretok: Pretokenizer,
    shards: Vec<Mutex<Counts>>,
    /// Bytes of text read so far.
    pub bytes: u64,
    /// Lines (file input) or texts (iterator input) read so far.
    pub lines: u64,
    /// Lines that held invalid UTF-8 (each bad sequence was replaced by U+FFFD).
    pub invalid_lines: u64,
}

/// Bytes a file is read in at a time.
const CHUNK: usize = 8 << 20;

fn count_into(pretok: &Pretokenizer, text: &str, map: &mut Counts) {
    pretok.split(text, |piece| {
        if let Some(c) = map.get_mut(piece.as_bytes()) {
            *c += 1;
        } else {
            map.insert(piece.as_bytes().into(), 1);
        }
    });
}

impl WordCounter {
    /// An empty counter that splits with `pretok`.
    pub fn new(pretok: Pretokenizer) -> Self {
        let n = rayon::current_num_threads().max(1);
        Self {
            pretok,
            shards: (0..n).map(|_| Mutex::new(Counts::default())).collect(),
            bytes: 0,
            lines: 0,
            invalid_lines: 0,
        }
    }

    fn shard(&self) -> std::sync::MutexGuard<'_, Counts> {
        let i = rayon::current_thread_index().unwrap_or(0) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count the pre-tokens of each text (each text is one sequence, not split into lines).
    pub fn feed_texts(&mut self, texts: &[String]) {
        self.bytes += texts.iter().map(|t| t.len() as u64).sum::<u64>();
        self.lines += texts.len() as u64;
        let this = &*self;
        texts
            .par_chunks(64.max(texts.len() / (4 * this.shards.len()).max(1)))
            .for_each(|chunk| {
                let mut map = this.shard();
                for t in chunk {
                    count_into(&this.pretok, t, &mut map);
                }
            });
    }

    /// Count the pre-tokens of each line (with its newline) of a file, reading it in chunks.
    pub fn feed_file(&mut self, path: &str) -> Result<()> {
        let io = |e: std::io::Error| Error::Io(format!("cannot read {path}: {e}"));
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
        let mut eof = false;
        while !eof {
            let start = buf.len();
            buf.resize(start + CHUNK, 0);
            let mut filled = start;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..]).map_err(io)?;
                if n == 0 {
                    eof = true;
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            let cut = if eof {
                buf.len()
            } else {
                match memchr_last(b'\n', &buf) {
                    Some(i) => i + 1,
                    None => continue, // a line longer than the buffer: read more
                }
            };
            self.feed_lines(&buf[..cut]);
            buf.drain(..cut);
        }
        Ok(())
    }

    /// Count lines (each ending with its newline, the last maybe without) of a byte buffer.
    pub fn feed_lines(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // Split into about 4 parts per worker at line ends.
        let parts = 4 * self.shards.len();
        let mut bounds = vec![0usize];
        for k in 1..parts {
            let target = data.len() * k / parts;
            let last = *bounds.last().unwrap();
            if target <= last {
                continue;
            }
            if let Some(i) = data[target..].iter().position(|&b| b == b'\n') {
                let end = target + i + 1;
                if end < data.len() && end > last {
                    bounds.push(end);
                }
            }
        }
        bounds.push(data.len());
        let this = &*self;
        let stats: Vec<(u64, u64)> = bounds
            .par_windows(2)
            .map(|w| {
                let mut map = this.shard();
                let mut lines = 0u64;
                let mut invalid = 0u64;
                for line in data[w[0]..w[1]].split_inclusive(|&b| b == b'\n') {
                    lines += 1;
                    match std::str::from_utf8(line) {
                        Ok(s) => count_into(&this.pretok, s, &mut map),
                        Err(_) => {
                            invalid += 1;
                            let s = String::from_utf8_lossy(line);
                            count_into(&this.pretok, &s, &mut map);
                        }
                    }
                }
                (lines, invalid)
            })
            .collect();
        self.bytes += data.len() as u64;
        for (l, i) in stats {
            self.lines += l;
            self.invalid_lines += i;
        }
    }

    /// The merged counts, sorted by the word's bytes (so that training is deterministic).
    pub fn into_words(self) -> Vec<(Box<[u8]>, u64)> {
        let mut shards: Vec<Counts> = self
            .shards
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect();
        shards.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let mut it = shards.into_iter();
        let mut all = it.next().unwrap_or_default();
        for m in it {
            for (k, v) in m {
                *all.entry(k).or_insert(0) += v;
            }
        }
        let mut words: Vec<(Box<[u8]>, u64)> = all.into_iter().collect();
        words.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        words
    }

    /// The pre-tokenizer.
    pub fn pretokenizer(&self) -> &Pretokenizer {
        &self.pretok
    }
}

fn memchr_last(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().rposition(|&b| b == needle)
}

/// A trained vocabulary: tokens by id (specials first, as their UTF-8 bytes) and merges in order.
#[derive(Debug, Clone)]
pub struct Trained {
    /// Bytes of each id; ids `0..n_special` are the special tokens.
    pub tokens: Vec<Vec<u8>>,
    /// Number of special tokens at the start of `tokens`.
    pub n_special: usize,
    /// Merges `(left, right)` in rank order; each makes the token of the concatenated bytes.
    pub merges: Vec<(u32, u32)>,
}

struct Entry {
    count: u64,
    pair: u64,
    pos: Vec<u32>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.count == o.count && self.pair == o.pair
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        // Max-heap: higher count first, then the smaller (left, right) pair.
        self.count
            .cmp(&o.count)
            .then_with(|| o.pair.cmp(&self.pair))
    }
}

#[inline]
fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Merge `(a, b) -> new` everywhere in `word` (left to right), reporting pair count changes the
/// way `tokenizers`' `Word::merge` does.
fn merge_word(word: &mut Vec<u32>, a: u32, b: u32, new: u32, changes: &mut Vec<(u64, i64)>) {
    let n = word.len();
    let mut r = 0;
    let mut w = 0;
    while r < n {
        if r + 1 < n && word[r] == a && word[r + 1] == b {
            if w > 0 {
                let p = word[w - 1];
                changes.push((key(p, a), -1));
                changes.push((key(p, new), 1));
            }
            if r + 2 < n {
                let nx = word[r + 2];
                changes.push((key(b, nx), -1));
                changes.push((key(new, nx), 1));
            }
            word[w] = new;
            r += 2;
        } else {
            word[w] = word[r];
            r += 1;
        }
        w += 1;
    }
    word.truncate(w);
}

/// The largest vocabulary the trainer builds (llmkit/limits.py holds the same bound): a user's
/// number sizes buffers here, so a typo such as 10^12 is an error, not an abort.
pub const MAX_VOCAB_SIZE: usize = 1 << 22;

/// An empty vector with room for `n` items, or an error (not an abort) when that memory is refused.
fn reserved<T>(n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|e| Error::invalid(format!("cannot allocate room for {n} tokens ({e})")))?;
    Ok(v)
}

/// Train merges from word counts (see the module docs); `progress` is called now and then with
/// (merges done, merges wanted).
pub fn train(
    words: Vec<(Box<[u8]>, u64)>,
    vocab_size: usize,
    min_frequency: u64,
    specials: &[String],
    mut progress: impl FnMut(usize, usize),
) -> Result<Trained> {
    if vocab_size > MAX_VOCAB_SIZE {
        return Err(Error::invalid(format!(
            "vocab_size {vocab_size} is larger than the bound {MAX_VOCAB_SIZE}; use a smaller one"
        )));
    }
    let mut tokens: Vec<Vec<u8>> = reserved(vocab_size)?;
    let mut ids: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
    // Special tokens take the first ids but never stand for bytes or merged tokens (`tokenizers`
    // would reuse a special token's id if a merge spelled it; here merges stay ordinary tokens).
    let mut seen = rustc_hash::FxHashSet::default();
    for s in specials {
        if seen.insert(s.as_bytes()) {
            tokens.push(s.as_bytes().to_vec());
        }
    }
    let n_special = tokens.len();
    if vocab_size < 256 + n_special {
        return Err(Error::invalid(format!(
            "vocab_size {vocab_size} is smaller than the 256-byte alphabet plus {n_special} \
             special token(s); use at least {}",
            256 + n_special
        )));
    }
    let mut byte_id = [0u32; 256];
    for b in bytes_in_char_order() {
        let id = tokens.len() as u32;
        ids.insert(vec![b], id);
        tokens.push(vec![b]);
        byte_id[b as usize] = id;
    }
    let (mut word_syms, counts): (Vec<Vec<u32>>, Vec<u64>) = words
        .into_par_iter()
        .map(|(w, c)| (w.iter().map(|&b| byte_id[b as usize]).collect(), c))
        .unzip();

    // Initial pair counts and where each pair occurs.
    let mut pair_counts: FxHashMap<u64, i64> = FxHashMap::default();
    let mut where_: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for (i, w) in word_syms.iter().enumerate() {
        for p in w.windows(2) {
            let k = key(p[0], p[1]);
            *pair_counts.entry(k).or_insert(0) += counts[i] as i64;
            let v = where_.entry(k).or_default();
            if v.last() != Some(&(i as u32)) {
                v.push(i as u32);
            }
        }
    }
    let mut queue: BinaryHeap<Entry> = BinaryHeap::with_capacity(pair_counts.len());
    for (pair, pos) in where_.drain() {
        let c = pair_counts[&pair];
        if c > 0 {
            queue.push(Entry {
                count: c as u64,
                pair,
                pos,
            });
        }
    }
    drop(where_);

    let wanted = vocab_size.saturating_sub(tokens.len());
    let mut merges: Vec<(u32, u32)> = reserved(wanted)?;
    let mut changes: Vec<(u64, i64)> = Vec::new();
    let mut touched: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    while tokens.len() < vocab_size {
        let Some(mut top) = queue.pop() else { break };
        let current = pair_counts[&top.pair] as u64;
        if top.count != current {
            top.count = current;
            queue.push(top);
            continue;
        }
        if top.count < 1 || min_frequency > top.count {
            break;
        }
        let (a, b) = ((top.pair >> 32) as u32, top.pair as u32);
        let mut new_token = tokens[a as usize].clone();
        new_token.extend_from_slice(&tokens[b as usize]);
        let new_id = match ids.get(&new_token) {
            Some(&id) => id,
            None => {
                let id = tokens.len() as u32;
                ids.insert(new_token.clone(), id);
                tokens.push(new_token);
                id
            }
        };
        merges.push((a, b));
        for &iw in &top.pos {
            changes.clear();
            merge_word(&mut word_syms[iw as usize], a, b, new_id, &mut changes);
            let c = counts[iw as usize] as i64;
            for &(pair, delta) in &changes {
                *pair_counts.entry(pair).or_insert(0) += delta * c;
                if delta > 0 {
                    let v = touched.entry(pair).or_default();
                    if v.last() != Some(&iw) {
                        v.push(iw);
                    }
                }
            }
        }
        for (pair, mut pos) in touched.drain() {
            let c = pair_counts[&pair];
            if c > 0 {
                pos.sort_unstable();
                pos.dedup();
                queue.push(Entry {
                    count: c as u64,
                    pair,
                    pos,
                });
            }
        }
        if merges.len().is_multiple_of(256) {
            progress(merges.len(), wanted);
        }
    }
    progress(merges.len(), wanted);
    Ok(Trained {
        tokens,
        n_special,
        merges,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_vocab_size_is_an_error_not_an_abort() {
        let words = vec![(b"ab".to_vec().into_boxed_slice(), 3u64)];
        let err = train(words, 1_000_000_000_000, 1, &[], |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("larger than the bound"), "{err}");
        assert!(reserved::<u64>(usize::MAX / 2).is_err());
    }

    use super::*;

    fn words(list: &[(&str, u64)]) -> Vec<(Box<[u8]>, u64)> {
        let mut v: Vec<(Box<[u8]>, u64)> = list
            .iter()
            .map(|(w, c)| (w.as_bytes().into(), *c))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn merge_word_like_tokenizers() {
        let mut w = vec![1, 1, 1, 1];
        let mut ch = Vec::new();
        merge_word(&mut w, 1, 1, 9, &mut ch);
        assert_eq!(w, vec![9, 9]);
        assert_eq!(
            ch,
            vec![
                (key(1, 1), -1),
                (key(9, 1), 1),
                (key(9, 1), -1),
                (key(9, 9), 1)
            ]
        );
    }

    #[test]
    fn trains_most_frequent_pairs() {
        let w = words(&[("are", 2), ("red", 1), ("is", 2), ("roses", 1)]);
        let t = train(w, 256 + 3, 2, &[], |_, _| {}).unwrap();
        let names: Vec<String> = t
            .merges
            .iter()
            .map(|&(a, b)| {
                let mut s = t.tokens[a as usize].clone();
                s.extend(&t.tokens[b as usize]);
                String::from_utf8(s).unwrap()
            })
            .collect();
        // "re" (3), then "are" (2) vs "is" (2): ties go to the smaller pair of ids.
        assert_eq!(names[0], "re");
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"is".to_string()) && names.contains(&"are".to_string()));
    }

    #[test]
    fn vocab_too_small_is_an_error() {
        let err = train(words(&[("a", 1)]), 256, 0, &["<s>".into()], |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("257"), "{err}");
    }

    #[test]
    fn min_frequency_stops() {
        let t = train(words(&[("ab", 1), ("cd", 5)]), 1000, 2, &[], |_, _| {}).unwrap();
        assert_eq!(t.merges.len(), 1);
    }

    #[test]
    fn counting_is_the_same_on_lines_and_texts() {
        let p = Pretokenizer::new("gpt2").unwrap();
        let text = "Hello world\nhello  there\n\nend";
        let mut a = WordCounter::new(p.clone());
        a.feed_lines(text.as_bytes());
        let mut b = WordCounter::new(p);
        let lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
        b.feed_texts(&lines);
        assert_eq!(a.lines, 4);
        assert_eq!(a.into_words(), b.into_words());
    }
}
