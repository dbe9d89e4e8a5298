//! Flat tables keyed by short pieces, for the encoder's hot path.
//!
//! A piece of 2 to `INLINE_MAX` bytes (99% of the pieces of real text) becomes a 16-byte key
//! built in registers. `WholeTable` (open addressing, linear probing) maps the pieces that are
//! whole tokens to their ids; `RecentPieces` (two slots per cache line, the older one evicted)
//! remembers the ids of other pieces. A slot is 32 bytes, so a lookup reads one cache line where
//! a general hash map reads a control group and then a bucket, and compares no boxed slice.

/// The longest piece that has an inline key.
pub const INLINE_MAX: usize = 15;
/// The most ids a `RecentPieces` slot holds.
pub const RECENT_IDS: usize = 3;

/// The key of a piece of 2 to `INLINE_MAX` bytes: its bytes and its length (never 0).
#[inline]
pub fn inline_key(p: &[u8]) -> u128 {
    let n = p.len();
    debug_assert!((2..=INLINE_MAX).contains(&n));
    let word = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(p[at..at + 4].try_into().expect("4 bytes")) as u64;
    // Overlapping loads: given the length, the bytes they read determine the piece.
    let (lo, hi) = if n >= 8 {
        // Bytes 8..n are the top n - 8 bytes of the word that ends the piece.
        (
            word(0),
            word(n - 8).checked_shr(8 * (16 - n) as u32).unwrap_or(0),
        )
    } else if n >= 4 {
        (half(0) | (half(n - 4) >> (8 * (8 - n))) << 32, 0)
    } else {
        (
            p[0] as u64 | (p[1] as u64) << 8 | (p[n - 1] as u64) << 16,
            0,
        )
    };
    ((hi | (n as u64) << 56) as u128) << 64 | lo as u128
}

#[inline]
fn slot_of(key: u128, bits: u32) -> usize {
    let h = (key as u64 ^ ((key >> 64) as u64).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - bits)) as usize
}

/// Ask for the cache line of `r` now, so that a lookup a few pieces later finds it in L1.
#[inline]
fn prefetch<T>(r: &T) {
    // SAFETY: a prefetch is only a hint; it never faults and reads nothing into the program,
    // and `r` is a valid reference anyway.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct WholeSlot {
    key: u128,
    id: u32,
}

/// Inline keys of whole tokens -> ids; filled once, read by every thread.
#[derive(Debug)]
pub struct WholeTable {
    slots: Vec<WholeSlot>,
    bits: u32,
}

impl WholeTable {
    /// A table of `(key, id)` pairs with distinct keys, at most half full.
    pub fn new(entries: &[(u128, u32)]) -> Self {
        let bits = (entries.len().max(1) * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(4);
        let mask = (1usize << bits) - 1;
        let mut slots = vec![WholeSlot::default(); 1 << bits];
        for &(key, id) in entries {
            let mut i = slot_of(key, bits);
            while slots[i].key != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = WholeSlot { key, id };
        }
        Self { slots, bits }
    }

    /// Start loading the slot where `key` would be.
    #[inline]
    pub fn prefetch(&self, key: u128) {
        prefetch(&self.slots[slot_of(key, self.bits)]);
    }

    /// The id of the token whose key is `key`.
    #[inline]
    pub fn get(&self, key: u128) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = slot_of(key, self.bits);
        loop {
            let s = &self.slots[i];
            if s.key == key {
                return Some(s.id);
            }
            if s.key == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct RecentSlot {
    key: u128,
    ids: [u32; RECENT_IDS],
    len: u32,
}

/// One cache line: the newer slot first.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct RecentLine([RecentSlot; 2]);

/// The ids of recently merged pieces (up to `RECENT_IDS` ids each), two per hash value.
pub struct RecentPieces {
    slots: Vec<RecentLine>,
    bits: u32,
}

impl RecentPieces {
    /// An empty table of `2^bits` lines of two slots (allocated on first insert).
    pub fn new(bits: u32) -> Self {
        Self {
            slots: Vec::new(),
            bits,
        }
    }

    /// Forget every piece.
    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// Start loading the slot of `key`.
    #[inline]
    pub fn prefetch(&self, key: u128) {
        if let Some(s) = self.slots.get(slot_of(key, self.bits)) {
            prefetch(s);
        }
    }

    /// The ids of the piece whose key is `key`, if it is remembered.
    #[inline]
    pub fn get(&self, key: u128) -> Option<&[u32]> {
        let line = self.slots.get(slot_of(key, self.bits))?;
        line.0
            .iter()
            .find(|s| s.key == key)
            .map(|s| &s.ids[..s.len as usize])
    }

    /// Remember the ids of a piece (ignored when there are more than `RECENT_IDS`).
    #[inline]
    pub fn insert(&mut self, key: u128, ids: &[u32]) {
        if ids.len() > RECENT_IDS {
            return;
        }
        if self.slots.is_empty() {
            self.slots = vec![RecentLine::default(); 1 << self.bits];
        }
        let line = &mut self.slots[slot_of(key, self.bits)].0;
        line[1] = line[0];
        let s = &mut line[0];
        s.key = key;
        s.len = ids.len() as u32;
        s.ids[..ids.len()].copy_from_slice(ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_pieces_apart() {
        // Every piece of 2..=15 bytes over a small alphabet, and ones that differ only in
        // trailing zeros or in the length, get distinct keys.
        let mut seen = std::collections::HashMap::new();
        let alphabet = [0u8, 1, b'a', 0xff];
        for n in 2..=INLINE_MAX {
            let combos = if n <= 6 { 4usize.pow(n as u32) } else { 4096 };
            for c in 0..combos {
                let mut x = c.wrapping_mul(2_654_435_761) ^ n;
                let p: Vec<u8> = (0..n)
                    .map(|_| {
                        let b = alphabet[x % 4];
                        x /= 4;
                        b
                    })
                    .collect();
                if let Some(other) = seen.insert(inline_key(&p), p.clone()) {
                    assert_eq!(other, p, "two pieces share a key");
                }
            }
        }
        assert_ne!(inline_key(b"ab"), inline_key(b"ab\0"));
        assert_ne!(inline_key(b"\0\0"), inline_key(b"\0\0\0"));
    }

    #[test]
    fn whole_table_finds_exactly_its_keys() {
        let words: Vec<Vec<u8>> = (0..5000u32).map(|i| format!("w{i}").into_bytes()).collect();
        let entries: Vec<(u128, u32)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (inline_key(w), i as u32))
            .collect();
        let table = WholeTable::new(&entries);
        for (i, w) in words.iter().enumerate() {
            assert_eq!(table.get(inline_key(w)), Some(i as u32));
        }
        assert_eq!(table.get(inline_key(b"x1")), None);
        assert_eq!(WholeTable::new(&[]).get(inline_key(b"ab")), None);
    }

    #[test]
    fn recent_pieces_keep_the_newest() {
        let mut recent = RecentPieces::new(1);
        assert_eq!(recent.get(inline_key(b"ab")), None);
        recent.insert(inline_key(b"ab"), &[1, 2]);
        recent.insert(inline_key(b"abcd"), &[1, 2, 3, 4]);
        assert_eq!(recent.get(inline_key(b"ab")), Some(&[1, 2][..]));
        assert_eq!(recent.get(inline_key(b"abcd")), None);
        // Two lines of two slots: the four newest pieces of one line's hash are never all kept,
        // and a remembered piece always gives back its own ids.
        for i in 0..4u32 {
            recent.insert(inline_key(format!("q{i}").as_bytes()), &[i, i]);
        }
        for i in 0..4u32 {
            if let Some(ids) = recent.get(inline_key(format!("q{i}").as_bytes())) {
                assert_eq!(ids, &[i, i][..]);
            }
        }
        for i in 0..50u32 {
            recent.insert(inline_key(format!("p{i}").as_bytes()), &[i]);
        }
        assert_eq!(recent.get(inline_key(b"p49")), Some(&[49][..]));
        recent.clear();
        assert_eq!(recent.get(inline_key(b"p49")), None);
    }
}
