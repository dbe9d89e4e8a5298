//! Pre-tokenization: splitting text into the pieces that BPE encodes one by one.
//!
//! Named patterns are the published split regexes of GPT-2, cl100k_base and o200k_base; any other
//! regex (look-around allowed) can be given. Text between matches is kept as its own piece (like
//! `tokenizers`' `Split(behavior="isolated")`), so nothing is ever dropped; the named patterns
//! match every character anyway. For the named patterns a hand-written scanner (`scan`) does the
//! work; it is tested to agree with the regex on every input.

use crate::error::{Error, Result};
use crate::scan::{self, Scanner};
use fancy_regex::Regex;

/// GPT-2's split pattern (also what `tokenizers`' ByteLevel pre-tokenizer uses).
pub const GPT2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// cl100k_base's split pattern, as published in tiktoken.
pub const CL100K: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
/// o200k_base's split pattern, as published in tiktoken.
pub const O200K: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// The regex source of a named pattern.
pub fn named_pattern(name: &str) -> Option<&'static str> {
    match name {
        "gpt2" => Some(GPT2),
        "cl100k" => Some(CL100K),
        "o200k" => Some(O200K),
        _ => None,
    }
}

/// The name of a pattern source if it is one of the named patterns.
pub fn pattern_name(source: &str) -> Option<&'static str> {
    ["gpt2", "cl100k", "o200k"]
        .into_iter()
        .find(|n| named_pattern(n) == Some(source))
}

/// Compile a regex with fancy-regex; an invalid one is an error that says where.
pub fn compile(source: &str) -> Result<Regex> {
    fancy_regex::RegexBuilder::new(source)
        .backtrack_limit(usize::MAX)
        .build()
        .map_err(|e| Error::invalid(format!("invalid pre-tokenizer regex {source:?}: {e}")))
}

/// A compiled split pattern.
#[derive(Clone, Debug)]
pub struct Pretokenizer {
    source: String,
    name: Option<&'static str>,
    regex: Regex,
    scanner: Option<Scanner>,
}

impl Pretokenizer {
    /// A named pattern (`gpt2`, `cl100k`, `o200k`) or, for anything else, a regex.
    pub fn new(spec: &str) -> Result<Self> {
        let source = named_pattern(spec).unwrap_or(spec);
        Self::from_regex(source)
    }

    /// A pattern from its regex source; named sources get the fast scanner.
    pub fn from_regex(source: &str) -> Result<Self> {
        if source.is_empty() {
            return Err(Error::invalid("the pre-tokenizer regex is empty"));
        }
        let regex = compile(source)?;
        let name = pattern_name(source);
        let scanner = name.and_then(Scanner::for_name);
        Ok(Self {
            source: source.to_string(),
            name,
            regex,
            scanner,
        })
    }

    /// The regex source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `gpt2`, `cl100k` or `o200k` for the named patterns.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Call `f` on each piece of `text`, in order; the pieces concatenate to `text`.
    pub fn split<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) {
        if let Some(scanner) = &self.scanner {
            scanner.split(text, f);
            return;
        }
        let mut last = 0;
        for m in self.regex.find_iter(text) {
            let m = match m {
                Ok(m) => m,
                // Unreachable with an unlimited backtrack budget; keep the rest as one piece.
                Err(_) => break,
            };
            if m.start() == m.end() {
                continue;
            }
            if m.start() > last {
                f(&text[last..m.start()]);
            }
            f(m.as_str());
            last = m.end();
        }
        if last < text.len() {
            f(&text[last..]);
        }
    }

    /// Split with the regex engine only (the reference the scanner is tested against).
    pub fn split_regex<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let plain = Self {
            scanner: None,
            ..self.clone()
        };
        let mut out = Vec::new();
        plain.split(text, |p| out.push(p));
        out
    }

    /// All pieces of `text`.
    pub fn pieces<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        self.split(text, |p| out.push(p));
        out
    }
}

/// Whether the scanner exists for a name (used by tests).
pub fn has_scanner(name: &str) -> bool {
    scan::Scanner::for_name(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_splits() {
        let p = Pretokenizer::new("gpt2").unwrap();
        assert_eq!(
            p.pieces("Hello world, it's 2024!  ok\n\n"),
            vec!["Hello", " world", ",", " it", "'s", " 2024", "!", " ", " ok", "\n\n"]
        );
    }

    #[test]
    fn cl100k_splits() {
        let p = Pretokenizer::new("cl100k").unwrap();
        assert_eq!(
            p.pieces("I'LL pay 12345 dollars\n  x"),
            vec!["I", "'LL", " pay", " ", "123", "45", " dollars", "\n", " ", " x"]
        );
    }

    #[test]
    fn invalid_regex_says_where() {
        let err = Pretokenizer::new("ab(c").unwrap_err().to_string();
        assert!(err.contains("ab(c"), "{err}");
    }

    #[test]
    fn gaps_are_kept() {
        let p = Pretokenizer::new(r"\d+").unwrap();
        assert_eq!(p.pieces("ab12cd3"), vec!["ab", "12", "cd", "3"]);
    }
}
