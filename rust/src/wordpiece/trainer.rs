//! The WordPiece trainer (`tokenizers`' `WordPieceTrainer`): BPE over words with a continuation
//! prefix, made deterministic.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rustc_hash::{FxHashMap, FxHashSet};

use super::counter::WordCounts;
use crate::error::{Error, Result};

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
    if cfg.vocab_size > crate::trainer::MAX_VOCAB_SIZE {
        return Err(Error::invalid(format!(
            "vocab_size={} is larger than the bound {}; use a smaller one",
            cfg.vocab_size,
            crate::trainer::MAX_VOCAB_SIZE
        )));
    }
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
        return Err(Error::invalid(format!(
            "vocab_size={} is smaller than the {} special tokens and {} initial characters \
             (with their {prefix} forms) of this corpus; use at least {} or set limit_alphabet",
            cfg.vocab_size,
            cfg.special_tokens.len(),
            id2w.len() - cfg.special_tokens.len(),
            id2w.len()
        )));
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
