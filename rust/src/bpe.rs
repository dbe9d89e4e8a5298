//! Byte-level BPE encoding and decoding.
//!
//! A model is a vocabulary (id -> bytes), merge rules `(left id, right id) -> (rank, new id)` and
//! special tokens. Encoding splits the text with the pre-tokenizer and merges the bytes of each
//! piece, always the adjacent pair of lowest rank first (leftmost on ties), as `tokenizers`' BPE
//! does. A tiktoken rank file is turned into merge rules (every split of a token into two tokens,
//! ranked by the token), which gives tiktoken's `byte_pair_merge` exactly; with `ignore_merges` a
//! piece that is itself a token is that token, as in tiktoken and `tokenizers`' `ignore_merges`.

use crate::error::{Error, Result};
use crate::piece_table::{inline_key, RecentPieces, WholeTable, INLINE_MAX};
use crate::pretok::Pretokenizer;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicU64, Ordering};

const HOLE: u8 = 0;
const ORDINARY: u8 = 1;
const SPECIAL: u8 = 2;
const NO_MERGE: u64 = u64::MAX;
/// Pieces with more symbols than this are merged with a heap (n log n) instead of a scan (n^2).
const HEAP_THRESHOLD: usize = 96;
/// Pieces up to this many bytes are cached per thread.
const CACHE_MAX_PIECE: usize = 64;
const CACHE_MAX_ENTRIES: usize = 1 << 16;
/// Pieces whose table slots are requested together before any of them is encoded.
const BATCH: usize = 16;
/// Lines (log 2) of two slots in the per-thread table of short merged pieces: 4 MB, about as
/// many slots as real text has distinct pieces that are not whole tokens in 20 MB.
const RECENT_BITS: u32 = 16;
/// Bytes of zeros after the last token in the arena, so that decoding can copy 16 bytes at once.
const ARENA_SLACK: usize = 16;

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// Which special tokens a call recognises in the text.
#[derive(Clone, Debug)]
pub enum SpecialSet {
    None,
    All,
    Ids(FxHashSet<u32>),
}

impl SpecialSet {
    fn contains(&self, id: u32) -> bool {
        match self {
            SpecialSet::None => false,
            SpecialSet::All => true,
            SpecialSet::Ids(ids) => ids.contains(&id),
        }
    }
    fn is_empty(&self) -> bool {
        match self {
            SpecialSet::None => true,
            SpecialSet::All => false,
            SpecialSet::Ids(ids) => ids.is_empty(),
        }
    }
}

#[inline]
fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline]
fn merge_value(rank: u32, new_id: u32) -> u64 {
    ((rank as u64) << 32) | new_id as u64
}

/// The ids of pieces that are not whole tokens, for the model whose uid is `uid`.
struct PieceCache {
    uid: u64,
    short: RecentPieces,
    long: FxHashMap<Box<[u8]>, Box<[u32]>>,
}

impl PieceCache {
    fn reset(&mut self, uid: u64) {
        self.uid = uid;
        self.short.clear();
        self.long.clear();
    }
}

thread_local! {
    static CACHE: RefCell<PieceCache> = RefCell::new(PieceCache {
        uid: 0,
        short: RecentPieces::new(RECENT_BITS),
        long: FxHashMap::default(),
    });
}

/// A byte-level BPE model ready to encode and decode.
#[derive(Debug)]
pub struct Bpe {
    offsets: Vec<u32>,
    arena: Vec<u8>,
    kinds: Vec<u8>,
    encoder: FxHashMap<Box<[u8]>, u32>,
    merges: FxHashMap<u64, u64>,
    merge_list: Option<Vec<(u32, u32)>>,
    ignore_merges: bool,
    shortcut: Vec<bool>,
    /// Inline key -> id of the tokens of up to `INLINE_MAX` bytes that a piece may map to whole.
    whole: WholeTable,
    byte_ids: [u32; 256],
    specials: Vec<(String, u32)>,
    special_ids: FxHashMap<String, u32>,
    special_re: Option<regex::Regex>,
    pretok: Pretokenizer,
    uid: u64,
}

impl Bpe {
    /// A model from its ordinary tokens (bytes, id), merge rules in rank order, and special tokens.
    pub fn from_merges(
        tokens: Vec<(Vec<u8>, u32)>,
        merges: Vec<(u32, u32)>,
        specials: Vec<(String, u32)>,
        pretok: Pretokenizer,
        ignore_merges: bool,
    ) -> Result<Self> {
        let mut bpe = Self::base(tokens, specials, pretok)?;
        let mut map = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        for (rank, &(a, b)) in merges.iter().enumerate() {
            let (ta, tb) = match (bpe.ordinary_bytes(a), bpe.ordinary_bytes(b)) {
                (Some(ta), Some(tb)) => (ta, tb),
                _ => {
                    return Err(Error::invalid(format!(
                        "merge #{} ({a}, {b}) refers to an id that is not an ordinary token",
                        rank + 1
                    )))
                }
            };
            let joined: Vec<u8> = [ta, tb].concat();
            let Some(&new_id) = bpe.encoder.get(joined.as_slice()) else {
                return Err(Error::invalid(format!(
                    "merge #{} ({a}, {b}): the merged token {:?} is not in the vocabulary",
                    rank + 1,
                    String::from_utf8_lossy(&joined)
                )));
            };
            // As in `tokenizers`, a pair listed twice keeps its last rank.
            map.insert(pair_key(a, b), merge_value(rank as u32, new_id));
        }
        bpe.merges = map;
        bpe.merge_list = Some(merges);
        bpe.ignore_merges = ignore_merges;
        bpe.compute_shortcuts();
        Ok(bpe)
    }

    /// A model from tiktoken-style ranks (the id of a token is its rank) and special tokens.
    pub fn from_ranks(
        tokens: Vec<(Vec<u8>, u32)>,
        specials: Vec<(String, u32)>,
        pretok: Pretokenizer,
    ) -> Result<Self> {
        let mut bpe = Self::base(tokens, specials, pretok)?;
        let mut map = FxHashMap::default();
        for (bytes, &id) in bpe.encoder.iter() {
            for k in 1..bytes.len() {
                if let (Some(&l), Some(&r)) =
                    (bpe.encoder.get(&bytes[..k]), bpe.encoder.get(&bytes[k..]))
                {
                    map.insert(pair_key(l, r), merge_value(id, id));
                }
            }
        }
        bpe.merges = map;
        bpe.ignore_merges = true;
        bpe.compute_shortcuts();
        Ok(bpe)
    }

    fn base(
        tokens: Vec<(Vec<u8>, u32)>,
        specials: Vec<(String, u32)>,
        pretok: Pretokenizer,
    ) -> Result<Self> {
        let max_id = tokens
            .iter()
            .map(|t| t.1)
            .chain(specials.iter().map(|s| s.1))
            .max()
            .ok_or_else(|| Error::invalid("the vocabulary is empty"))?;
        if max_id >= u32::MAX - 1 {
            return Err(Error::invalid(format!("token id {max_id} is too large")));
        }
        let n = max_id as usize + 1;
        let mut entries: Vec<Option<(&[u8], u8)>> = vec![None; n];
        let mut encoder = FxHashMap::with_capacity_and_hasher(tokens.len(), Default::default());
        for (bytes, id) in &tokens {
            if bytes.is_empty() {
                return Err(Error::invalid(format!("token id {id} is empty")));
            }
            if entries[*id as usize].is_some() {
                return Err(Error::invalid(format!("token id {id} is given twice")));
            }
            if encoder
                .insert(bytes.clone().into_boxed_slice(), *id)
                .is_some()
            {
                return Err(Error::invalid(format!(
                    "token {:?} appears twice in the vocabulary",
                    String::from_utf8_lossy(bytes)
                )));
            }
            entries[*id as usize] = Some((bytes.as_slice(), ORDINARY));
        }
        let mut special_ids = FxHashMap::default();
        for (text, id) in &specials {
            if text.is_empty() {
                return Err(Error::invalid("a special token is empty"));
            }
            if entries[*id as usize].is_some() {
                return Err(Error::invalid(format!(
                    "special token {text:?} has id {id}, which is already taken"
                )));
            }
            if special_ids.insert(text.clone(), *id).is_some() {
                return Err(Error::invalid(format!(
                    "special token {text:?} is given twice"
                )));
            }
            entries[*id as usize] = Some((text.as_bytes(), SPECIAL));
        }
        let mut byte_ids = [0u32; 256];
        for b in 0..=255u8 {
            match encoder.get(&[b][..]) {
                Some(&id) => byte_ids[b as usize] = id,
                None => {
                    return Err(Error::invalid(format!(
                        "the vocabulary lacks the single-byte token for byte 0x{b:02x}; \
                         byte-level BPE needs all 256"
                    )))
                }
            }
        }
        let mut offsets = Vec::with_capacity(n + 1);
        let mut arena = Vec::new();
        let mut kinds = Vec::with_capacity(n);
        offsets.push(0u32);
        for e in &entries {
            match e {
                Some((bytes, kind)) => {
                    arena.extend_from_slice(bytes);
                    kinds.push(*kind);
                }
                None => kinds.push(HOLE),
            }
            offsets.push(arena.len() as u32);
        }
        arena.resize(arena.len() + ARENA_SLACK, 0);
        let special_re = build_special_regex(&specials)?;
        Ok(Self {
            offsets,
            arena,
            kinds,
            encoder,
            merges: FxHashMap::default(),
            merge_list: None,
            ignore_merges: false,
            shortcut: Vec::new(),
            whole: WholeTable::new(&[]),
            byte_ids,
            specials,
            special_ids,
            special_re,
            pretok,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Which tokens may be returned whole when a piece equals them (always true with
    /// `ignore_merges`; otherwise only where merging the token's bytes gives the token itself).
    fn compute_shortcuts(&mut self) {
        let n = self.kinds.len();
        let shortcut: Vec<bool> = (0..n)
            .into_par_iter()
            .map(|id| {
                if self.kinds[id] != ORDINARY {
                    return false;
                }
                if self.ignore_merges {
                    return true;
                }
                let mut out = Vec::new();
                self.merge_bytes(self.bytes_of(id as u32), &mut out);
                out.len() == 1 && out[0] == id as u32
            })
            .collect();
        let whole: Vec<(u128, u32)> = shortcut
            .iter()
            .enumerate()
            .filter(|&(id, &ok)| ok && (2..=INLINE_MAX).contains(&self.bytes_of(id as u32).len()))
            .map(|(id, _)| (inline_key(self.bytes_of(id as u32)), id as u32))
            .collect();
        self.whole = WholeTable::new(&whole);
        self.shortcut = shortcut;
    }

    #[inline]
    fn bytes_of(&self, id: u32) -> &[u8] {
        let i = id as usize;
        &self.arena[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn ordinary_bytes(&self, id: u32) -> Option<&[u8]> {
        match self.kinds.get(id as usize) {
            Some(&ORDINARY) => Some(self.bytes_of(id)),
            _ => None,
        }
    }

    /// One past the largest id (the size an embedding table needs).
    pub fn vocab_size(&self) -> usize {
        self.kinds.len()
    }

    /// The pre-tokenizer.
    pub fn pretokenizer(&self) -> &Pretokenizer {
        &self.pretok
    }

    /// Special tokens (text, id) in the order given.
    pub fn specials(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// Whether a piece that is itself a token always encodes to it.
    pub fn ignore_merges(&self) -> bool {
        self.ignore_merges
    }

    /// The merge rules in rank order when the model was built from merges (None for ranks).
    pub fn merge_list(&self) -> Option<&[(u32, u32)]> {
        self.merge_list.as_deref()
    }

    /// All merge rules `(left, right, rank, new id)` sorted by rank, then by the pair's ranks.
    pub fn all_merges(&self) -> Vec<(u32, u32, u32, u32)> {
        let mut v: Vec<(u32, u32, u32, u32)> = self
            .merges
            .iter()
            .map(|(&k, &v)| ((k >> 32) as u32, k as u32, (v >> 32) as u32, v as u32))
            .collect();
        v.sort_unstable_by_key(|&(a, b, rank, _)| (rank, a, b));
        v
    }

    /// Ordinary tokens (bytes, id) in id order.
    pub fn tokens(&self) -> Vec<(&[u8], u32)> {
        (0..self.kinds.len() as u32)
            .filter(|&id| self.kinds[id as usize] == ORDINARY)
            .map(|id| (self.bytes_of(id), id))
            .collect()
    }

    /// The id of an ordinary token, if it exists.
    pub fn token_id(&self, bytes: &[u8]) -> Option<u32> {
        self.encoder.get(bytes).copied()
    }

    /// The id of a special token.
    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.special_ids.get(text).copied()
    }

    /// The bytes of one id (a special token gives its text), or an error for an unknown id.
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        match self.kinds.get(id as usize) {
            Some(&ORDINARY) | Some(&SPECIAL) => Ok(self.bytes_of(id)),
            _ => Err(Error::invalid(format!(
                "token id {id} is not in the vocabulary (size {})",
                self.kinds.len()
            ))),
        }
    }

    /// Whether `id` is a special token.
    pub fn is_special(&self, id: u32) -> bool {
        self.kinds.get(id as usize) == Some(&SPECIAL)
    }

    /// The number of bytes `ids` decode to, or an error naming the first unknown id.
    pub fn decoded_len(&self, ids: &[u32]) -> Result<usize> {
        let mut total = 0usize;
        let mut bad = false;
        for &id in ids {
            // A hole has no bytes (tokens are never empty); one past the end reads as a hole.
            let i = (id as usize).min(self.kinds.len());
            let (a, b) = (
                self.offsets[i],
                *self.offsets.get(i + 1).unwrap_or(&self.offsets[i]),
            );
            bad |= a == b;
            total += (b - a) as usize;
        }
        if bad {
            let id = ids
                .iter()
                .find(|&&id| self.kinds.get(id as usize).is_none_or(|&k| k == HOLE))
                .expect("an unknown id");
            return Err(Error::invalid(format!(
                "token id {id} is not in the vocabulary (size {})",
                self.kinds.len()
            )));
        }
        Ok(total)
    }

    /// Write the bytes of `ids` into `out`, which must be `decoded_len(ids)` long.
    pub fn decode_into(&self, ids: &[u32], out: &mut [u8]) {
        let mut at = 0usize;
        for &id in ids {
            let i = id as usize;
            let a = self.offsets[i] as usize;
            let n = self.offsets[i + 1] as usize - a;
            if n <= ARENA_SLACK && at + ARENA_SLACK <= out.len() {
                // One fixed 16-byte copy (the arena has 16 bytes of slack); the next token
                // overwrites what went past this one.
                out[at..at + ARENA_SLACK].copy_from_slice(&self.arena[a..a + ARENA_SLACK]);
            } else {
                out[at..at + n].copy_from_slice(&self.arena[a..a + n]);
            }
            at += n;
        }
        debug_assert_eq!(at, out.len());
    }

    /// Bytes of a sequence of ids.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.decoded_len(ids)?];
        self.decode_into(ids, &mut out);
        Ok(out)
    }

    /// Ids of `text` with special tokens treated as ordinary text.
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_ordinary_into(text, &mut out);
        out
    }

    fn encode_ordinary_into(&self, text: &str, out: &mut Vec<u32>) {
        CACHE.with(|cell| {
            let mut cache = cell.borrow_mut();
            if cache.uid != self.uid {
                cache.reset(self.uid);
            }
            let cache = &mut *cache;
            // Pieces go through in batches: the table slots of a whole batch are requested
            // first, so that their cache misses overlap instead of stalling one piece at a time.
            let mut batch: [(&[u8], u128); BATCH] = [(&[], 0); BATCH];
            let mut n = 0;
            self.pretok.split(text, |piece| {
                let p = piece.as_bytes();
                let key = if (2..=INLINE_MAX).contains(&p.len()) {
                    let key = inline_key(p);
                    self.whole.prefetch(key);
                    cache.short.prefetch(key);
                    key
                } else {
                    0
                };
                batch[n] = (p, key);
                n += 1;
                if n == BATCH {
                    for &(p, key) in &batch {
                        self.encode_piece(p, key, out, cache);
                    }
                    n = 0;
                }
            });
            for &(p, key) in &batch[..n] {
                self.encode_piece(p, key, out, cache);
            }
        });
    }

    /// Ids of any byte string: valid UTF-8 runs are encoded as text, each invalid sequence as
    /// its own piece of raw bytes, so that `decode_bytes` gives `data` back.
    pub fn encode_bytes(&self, data: &[u8]) -> Vec<u32> {
        let mut out = Vec::with_capacity(data.len() / 3 + 1);
        let mut rest = data;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.encode_ordinary_into(s, &mut out);
                    return out;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    self.encode_ordinary_into(
                        std::str::from_utf8(valid).unwrap_or_default(),
                        &mut out,
                    );
                    let bad = e.error_len().unwrap_or(after.len());
                    self.merge_bytes(&after[..bad], &mut out);
                    rest = &after[bad..];
                }
            }
        }
    }

    /// Ids of `text`: `allowed` special tokens become their ids, a `disallowed` one is an error,
    /// any other special token text is encoded as ordinary text.
    pub fn encode(
        &self,
        text: &str,
        allowed: &SpecialSet,
        disallowed: &SpecialSet,
    ) -> Result<Vec<u32>> {
        let Some(re) = &self.special_re else {
            return Ok(self.encode_ordinary(text));
        };
        if allowed.is_empty() && disallowed.is_empty() {
            return Ok(self.encode_ordinary(text));
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut start = 0; // start of the text not yet encoded
        let mut search = 0;
        while let Some(m) = re.find_at(text, search) {
            let id = self.special_ids[m.as_str()];
            if allowed.contains(id) {
                self.encode_ordinary_into(&text[start..m.start()], &mut out);
                out.push(id);
                start = m.end();
                search = m.end();
            } else if disallowed.contains(id) {
                return Err(Error::invalid(format!(
                    "the text contains the special token {:?}, which is disallowed; pass it in \
                     allowed_special to encode it as a special token, or exclude it from \
                     disallowed_special to encode it as text",
                    m.as_str()
                )));
            } else {
                let first = m.as_str().chars().next().map_or(1, char::len_utf8);
                search = m.start() + first;
            }
        }
        self.encode_ordinary_into(&text[start..], &mut out);
        Ok(out)
    }

    /// `encode` of each text, in parallel across the rayon pool; the order is kept.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        allowed: &SpecialSet,
        disallowed: &SpecialSet,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| self.encode(t, allowed, disallowed))
            .collect()
    }

    /// The ids of one piece; `key` is its `inline_key` when it has one.
    #[inline]
    fn encode_piece(&self, piece: &[u8], key: u128, out: &mut Vec<u32>, cache: &mut PieceCache) {
        if piece.len() == 1 {
            out.push(self.byte_ids[piece[0] as usize]);
            return;
        }
        if piece.len() <= INLINE_MAX {
            if let Some(id) = self.whole.get(key) {
                out.push(id);
                return;
            }
            if let Some(ids) = cache.short.get(key) {
                out.extend_from_slice(ids);
                return;
            }
            let start = out.len();
            self.merge_bytes(piece, out);
            cache.short.insert(key, &out[start..]);
            return;
        }
        if let Some(&id) = self.encoder.get(piece) {
            if self.shortcut[id as usize] {
                out.push(id);
                return;
            }
        }
        if piece.len() > CACHE_MAX_PIECE {
            self.merge_bytes(piece, out);
            return;
        }
        if let Some(ids) = cache.long.get(piece) {
            out.extend_from_slice(ids);
            return;
        }
        let start = out.len();
        self.merge_bytes(piece, out);
        if cache.long.len() >= CACHE_MAX_ENTRIES {
            cache.long.clear();
        }
        cache.long.insert(piece.into(), out[start..].into());
    }

    #[inline]
    fn merge_of(&self, a: u32, b: u32) -> u64 {
        self.merges
            .get(&pair_key(a, b))
            .copied()
            .unwrap_or(NO_MERGE)
    }

    /// BPE of one piece: merge the adjacent pair of lowest rank (leftmost on ties) until none is left.
    pub fn merge_bytes(&self, piece: &[u8], out: &mut Vec<u32>) {
        match piece.len() {
            0..=16 => self.merge_scan::<16>(piece, out),
            17..=HEAP_THRESHOLD => self.merge_scan::<HEAP_THRESHOLD>(piece, out),
            _ => self.merge_bytes_heap(piece, out),
        }
    }

    /// `merge_bytes` of a piece of at most `CAP` bytes: the symbols and the rank of each one
    /// with the next live on the stack (no allocation), and the lowest rank is found by a scan.
    #[inline]
    fn merge_scan<const CAP: usize>(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut ids = [0u32; CAP];
        let mut ranks = [NO_MERGE; CAP];
        let mut len = piece.len();
        for (slot, &b) in ids.iter_mut().zip(piece) {
            *slot = self.byte_ids[b as usize];
        }
        for i in 1..len {
            ranks[i - 1] = self.merge_of(ids[i - 1], ids[i]);
        }
        loop {
            let mut best = NO_MERGE;
            let mut at = 0;
            for (i, &r) in ranks[..len].iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NO_MERGE {
                break;
            }
            ids[at] = best as u32;
            ids.copy_within(at + 2..len, at + 1);
            ranks.copy_within(at + 2..len, at + 1);
            len -= 1;
            ranks[len] = NO_MERGE;
            ranks[at] = if at + 1 < len {
                self.merge_of(ids[at], ids[at + 1])
            } else {
                NO_MERGE
            };
            if at > 0 {
                ranks[at - 1] = self.merge_of(ids[at - 1], ids[at]);
            }
        }
        out.extend_from_slice(&ids[..len]);
    }

    /// The same merges for long pieces: a heap of candidate pairs keyed (rank, position), 8 bytes
    /// each (the new id is looked up again when an entry is popped, which also drops stale ones),
    /// and a linked list of symbols.
    fn merge_bytes_heap(&self, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len();
        let mut ids: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let none = u32::MAX;
        let dead = u32::MAX - 1;
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next[n - 1] = none;
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let key = |m: u64, pos: usize| (m >> 32) << 32 | pos as u64;
        let initial: Vec<Reverse<u64>> = (0..n - 1)
            .filter_map(|i| {
                let m = self.merge_of(ids[i], ids[i + 1]);
                (m != NO_MERGE).then(|| Reverse(key(m, i)))
            })
            .collect();
        // An 8-ary heap: fewer levels, each a cache line, for pieces of megabytes.
        let mut heap = dary_heap::OctonaryHeap::from(initial);
        while let Some(Reverse(k)) = heap.pop() {
            let pos = (k & 0xffff_ffff) as usize;
            let nx = next[pos];
            if nx == none || nx == dead {
                continue;
            }
            let cur = self.merge_of(ids[pos], ids[nx as usize]);
            if cur == NO_MERGE || cur >> 32 != k >> 32 {
                continue;
            }
            ids[pos] = cur as u32;
            let after = next[nx as usize];
            next[nx as usize] = dead;
            next[pos] = after;
            if after != none {
                prev[after as usize] = pos as u32;
                let m = self.merge_of(ids[pos], ids[after as usize]);
                if m != NO_MERGE {
                    heap.push(Reverse(key(m, pos)));
                }
            }
            let p = prev[pos];
            if p != u32::MAX {
                let m = self.merge_of(ids[p as usize], ids[pos]);
                if m != NO_MERGE {
                    heap.push(Reverse(key(m, p as usize)));
                }
            }
        }
        let mut i = 0u32;
        while i != none {
            out.push(ids[i as usize]);
            i = next[i as usize];
        }
    }
}

fn build_special_regex(specials: &[(String, u32)]) -> Result<Option<regex::Regex>> {
    if specials.is_empty() {
        return Ok(None);
    }
    let mut texts: Vec<&str> = specials.iter().map(|s| s.0.as_str()).collect();
    // Longest first, so that a special token that is a prefix of another never hides it.
    texts.sort_by_key(|t| Reverse(t.len()));
    let alternation = texts
        .iter()
        .map(|t| regex::escape(t))
        .collect::<Vec<_>>()
        .join("|");
    regex::Regex::new(&alternation)
        .map(Some)
        .map_err(|e| Error::invalid(format!("cannot match the special tokens: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_tokens() -> Vec<(Vec<u8>, u32)> {
        (0..=255u8).map(|b| (vec![b], b as u32)).collect()
    }

    fn toy() -> Bpe {
        // Merges: (a,b)->ab, (ab,c)->abc, (b,c)->bc
        let mut tokens = byte_tokens();
        tokens.push((b"ab".to_vec(), 256));
        tokens.push((b"abc".to_vec(), 257));
        tokens.push((b"bc".to_vec(), 258));
        let merges = vec![(97, 98), (256, 99), (98, 99)];
        Bpe::from_merges(
            tokens,
            merges,
            vec![("<|end|>".into(), 300)],
            Pretokenizer::new("gpt2").unwrap(),
            false,
        )
        .unwrap()
    }

    #[test]
    fn merges_by_rank() {
        let bpe = toy();
        assert_eq!(bpe.encode_ordinary("abc"), vec![257]);
        assert_eq!(bpe.encode_ordinary("bcab"), vec![258, 256]);
        assert_eq!(bpe.encode_ordinary("xbc abc"), vec![120, 258, 32, 257]);
        assert_eq!(bpe.vocab_size(), 301);
    }

    #[test]
    fn heap_agrees_with_scan() {
        let bpe = toy();
        let text: Vec<u8> = b"abcbcabababcccab"
            .iter()
            .cycle()
            .take(5000)
            .copied()
            .collect();
        let mut a = Vec::new();
        bpe.merge_bytes_heap(&text, &mut a);
        let b = bpe.merge_bytes_scan_for_test(&text);
        assert_eq!(a, b);
        assert_eq!(bpe.decode_bytes(&a).unwrap(), text);
    }

    impl Bpe {
        fn merge_bytes_scan_for_test(&self, piece: &[u8]) -> Vec<u32> {
            let mut ids: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
            loop {
                let mut best = NO_MERGE;
                let mut at = 0;
                for i in 0..ids.len().saturating_sub(1) {
                    let r = self.merge_of(ids[i], ids[i + 1]);
                    if r < best {
                        best = r;
                        at = i;
                    }
                }
                if best == NO_MERGE {
                    return ids;
                }
                ids[at] = best as u32;
                ids.remove(at + 1);
            }
        }
    }

    #[test]
    fn specials() {
        let bpe = toy();
        let text = "ab<|end|>c";
        let all = SpecialSet::All;
        let none = SpecialSet::None;
        assert_eq!(bpe.encode(text, &all, &none).unwrap(), vec![256, 300, 99]);
        assert!(bpe.encode(text, &none, &all).is_err());
        let as_text = bpe.encode(text, &none, &none).unwrap();
        assert_eq!(bpe.decode_bytes(&as_text).unwrap(), text.as_bytes());
        assert!(as_text.len() > 3);
        assert_eq!(bpe.decode_bytes(&[300]).unwrap(), b"<|end|>");
        assert!(bpe.decode_bytes(&[299]).is_err());
    }

    #[test]
    fn ranks_like_tiktoken() {
        let mut tokens = byte_tokens();
        tokens.push((b"ab".to_vec(), 256));
        tokens.push((b"bc".to_vec(), 257));
        tokens.push((b"abc".to_vec(), 258));
        let bpe = Bpe::from_ranks(tokens, vec![], Pretokenizer::new("gpt2").unwrap()).unwrap();
        // abc is a token: whole piece; "abcd": ab (256) first, then ab+c = abc (258).
        assert_eq!(bpe.encode_ordinary("abc"), vec![258]);
        assert_eq!(bpe.encode_ordinary("abcd"), vec![258, 100]);
    }

    #[test]
    fn missing_byte_is_an_error() {
        let tokens: Vec<(Vec<u8>, u32)> = (0..=200u8).map(|b| (vec![b], b as u32)).collect();
        let err = Bpe::from_ranks(tokens, vec![], Pretokenizer::new("gpt2").unwrap()).unwrap_err();
        assert!(err.to_string().contains("0xc9"), "{err}");
    }

    #[test]
    fn invalid_utf8_round_trips() {
        let bpe = toy();
        let data = b"ab\xffc\xe2\x82 abc\xf0";
        let ids = bpe.encode_bytes(data);
        assert_eq!(bpe.decode_bytes(&ids).unwrap(), data);
    }

    #[test]
    fn long_piece_round_trips() {
        let bpe = toy();
        let text = "abc".repeat(100_000);
        let ids = bpe.encode_ordinary(&text);
        assert_eq!(ids, vec![257; 100_000]);
    }
}
