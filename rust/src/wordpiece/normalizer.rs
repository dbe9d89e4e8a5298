//! BERT's text normalization (`tokenizers`' `BertNormalizer`) and the character classes it and
//! the pre-tokenizer share.

use std::sync::OnceLock;

use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

// ---------------------------------------------------------------------------------------------
// Character classes (cached for the BMP: the category tables are binary-searched lists)
// ---------------------------------------------------------------------------------------------

pub(super) const OTHER: u8 = 1; // Cc, Cf, Co as `unicode_categories` has them (BERT's "control")
pub(super) const SPACE: u8 = 2; // char::is_whitespace
pub(super) const PUNCT: u8 = 4; // ASCII punctuation or symbols, or a Unicode P* category
pub(super) const CJK: u8 = 8; // a CJK Unified Ideograph block (BERT's "Chinese character")
pub(super) const MARK: u8 = 16; // Mn, dropped by accent stripping

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
pub(super) fn class(c: char) -> u8 {
    let u = c as u32;
    if u < 0x10000 {
        bmp_classes()[u as usize]
    } else {
        compute_class(c)
    }
}

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

/// Scratch buffers reused across calls on one thread.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) norm: String,
    pub(super) tmp: String,
}
