//! BERT's pre-tokenizer (`tokenizers`' `BertPreTokenizer`): words split at whitespace and
//! punctuation, and cutting long texts only between words.

use super::normalizer::{class, PUNCT, SPACE};

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

/// Bytes that separate words under every normalizer setting. Not form feed or vertical tab:
/// `clean_text` drops those (as control characters), joining what is around them.
#[inline]
pub(super) fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// Split `text` into about `parts` pieces before a separator byte (words never span one).
pub(super) fn split_at_whitespace(text: &str, parts: usize) -> Vec<&str> {
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
