//! Hand-written scanners for the named split patterns: the same pieces as the regexes, without a
//! regex engine. Each `next_*` function returns where the piece starting at `i` ends, following
//! the alternatives of the pattern in order, with the same greedy/backtracking outcome. The
//! character classes come from `regex-syntax` (the tables the regex engines use), built from the
//! very class expressions of the patterns. `tests` checks every scanner against the regex.

use std::sync::OnceLock;

const L: u8 = 1; // \p{L}
const N: u8 = 2; // \p{N}
const S: u8 = 4; // \s
const U: u8 = 8; // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
const W: u8 = 16; // [\p{Ll}\p{Lm}\p{Lo}\p{M}]

struct Classes {
    /// The classes of the ASCII characters (the common case, read without a bounds check).
    ascii: [u8; 128],
    bmp: Vec<u8>,
    /// Ranges above the BMP for each bit: (bit, sorted (start, end) inclusive).
    high: Vec<(u8, Vec<(u32, u32)>)>,
}

fn ranges(expr: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::parse(expr).expect("valid class expression");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        _ => panic!("{expr} is not a Unicode class"),
    }
}

fn classes() -> &'static Classes {
    static CLASSES: OnceLock<Classes> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let sets = [
            (L, r"\p{L}"),
            (N, r"\p{N}"),
            (S, r"\s"),
            (U, r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"),
            (W, r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"),
        ];
        let mut bmp = vec![0u8; 0x10000];
        let mut high = Vec::new();
        for (bit, expr) in sets {
            let rs = ranges(expr);
            let mut above = Vec::new();
            for &(a, b) in &rs {
                for c in a..=b.min(0xFFFF) {
                    bmp[c as usize] |= bit;
                }
                if b > 0xFFFF {
                    above.push((a.max(0x10000), b));
                }
            }
            high.push((bit, above));
        }
        let mut ascii = [0u8; 128];
        ascii.copy_from_slice(&bmp[..128]);
        Classes { ascii, bmp, high }
    })
}

impl Classes {
    #[inline]
    fn of(&self, c: char) -> u8 {
        let c = c as u32;
        if c < 0x10000 {
            return self.bmp[c as usize];
        }
        let mut bits = 0;
        for (bit, rs) in &self.high {
            let i = rs.partition_point(|&(_, end)| end < c);
            if i < rs.len() && rs[i].0 <= c {
                bits |= bit;
            }
        }
        bits
    }
}

/// Which pattern a scanner implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gpt2,
    Cl100k,
    O200k,
}

/// A scanner for one of the named patterns.
#[derive(Clone, Debug)]
pub struct Scanner {
    kind: Kind,
}

/// A cursor over the text: the char at a byte offset, with its class bits and length.
struct Text<'a> {
    s: &'a str,
    b: &'a [u8],
    cls: &'static Classes,
}

impl<'a> Text<'a> {
    #[inline(always)]
    fn at(&self, i: usize) -> Option<(char, u8, usize)> {
        let b0 = *self.b.get(i)?;
        if b0 < 0x80 {
            return Some((b0 as char, self.cls.ascii[b0 as usize], 1));
        }
        self.at_wide(i)
    }

    /// `at` for a char outside ASCII.
    #[inline(never)]
    fn at_wide(&self, i: usize) -> Option<(char, u8, usize)> {
        let c = self.s[i..].chars().next()?;
        Some((c, self.cls.of(c), c.len_utf8()))
    }

    /// End of the run of chars starting at `i` that `want` accepts (ASCII bytes are tested
    /// straight from the table).
    #[inline(always)]
    fn run(&self, mut i: usize, want: impl Fn(char, u8) -> bool) -> usize {
        while let Some(&b) = self.b.get(i) {
            if b < 0x80 {
                if !want(b as char, self.cls.ascii[b as usize]) {
                    break;
                }
                i += 1;
                continue;
            }
            match self.at_wide(i) {
                Some((c, k, n)) if want(c, k) => i += n,
                _ => break,
            }
        }
        i
    }
}

#[inline]
fn is_other(k: u8) -> bool {
    k & (L | N | S) == 0
}

/// Length of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at `i`, if any.
#[inline]
fn contraction(t: &Text<'_>, i: usize, ignore_case: bool) -> Option<usize> {
    if t.b.get(i) != Some(&b'\'') {
        return None;
    }
    let fold = |c: char| -> char {
        if !ignore_case {
            return c;
        }
        match c {
            'S' | '\u{17F}' => 's',
            'K' | '\u{212A}' => 'k',
            c if c.is_ascii_uppercase() => c.to_ascii_lowercase(),
            c => c,
        }
    };
    let (c1, _, n1) = t.at(i + 1)?;
    match fold(c1) {
        's' | 't' | 'm' | 'd' => Some(1 + n1),
        c @ ('r' | 'v' | 'l') => {
            let (c2, _, n2) = t.at(i + 1 + n1)?;
            let want = if c == 'l' { 'l' } else { 'e' };
            (fold(c2) == want).then_some(1 + n1 + n2)
        }
        _ => None,
    }
}

/// End of the whitespace run at `i`.
#[inline]
fn space_run(t: &Text<'_>, i: usize) -> usize {
    t.run(i, |_, k| k & S != 0)
}

/// Start of the last char of the whitespace run `[i, j)` (it is at least one char long).
#[inline]
fn last_char_start(t: &Text<'_>, j: usize) -> usize {
    let mut k = j - 1;
    while !t.s.is_char_boundary(k) {
        k -= 1;
    }
    k
}

/// `\s+(?!\S)` then `\s+` at a whitespace char `i` (end of the text counts as not `\S`).
#[inline]
fn trailing_space(t: &Text<'_>, i: usize) -> usize {
    let j = space_run(t, i);
    if j == t.b.len() {
        return j;
    }
    let k = last_char_start(t, j);
    if k > i {
        k
    } else {
        j
    }
}

/// End of the last `\r`/`\n` in the whitespace run `[i, j)`, if any.
#[inline]
fn last_newline_end(t: &Text<'_>, i: usize, j: usize) -> Option<usize> {
    t.b[i..j]
        .iter()
        .rposition(|&b| b == b'\r' || b == b'\n')
        .map(|p| i + p + 1)
}

fn next_gpt2(t: &Text<'_>, i: usize) -> usize {
    if let Some(n) = contraction(t, i, false) {
        return i + n;
    }
    let (c, k, n) = t.at(i).expect("i < len");
    // ` ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+` (the optional space first)
    let (start, k1) = if c == ' ' {
        match t.at(i + n) {
            Some((_, k2, _)) if k2 & S == 0 => (i + n, k2),
            _ => (i, k),
        }
    } else {
        (i, k)
    };
    if k1 & L != 0 {
        return t.run(start, |_, k| k & L != 0);
    }
    if k1 & N != 0 {
        return t.run(start, |_, k| k & N != 0);
    }
    if is_other(k1) {
        return t.run(start, |_, k| is_other(k));
    }
    trailing_space(t, i)
}

fn next_cl100k(t: &Text<'_>, i: usize) -> usize {
    if let Some(n) = contraction(t, i, true) {
        return i + n;
    }
    let (c, k, n) = t.at(i).expect("i < len");
    // `[^\r\n\p{L}\p{N}]?+\p{L}++`
    let prefix = k & (L | N) == 0 && c != '\r' && c != '\n';
    if prefix {
        if let Some((_, k2, _)) = t.at(i + n) {
            if k2 & L != 0 {
                return t.run(i + n, |_, k| k & L != 0);
            }
        }
    } else if k & L != 0 {
        return t.run(i, |_, k| k & L != 0);
    }
    // `\p{N}{1,3}+`
    if k & N != 0 {
        let mut j = i + n;
        for _ in 0..2 {
            match t.at(j) {
                Some((_, k2, n2)) if k2 & N != 0 => j += n2,
                _ => break,
            }
        }
        return j;
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    let start = if c == ' ' {
        match t.at(i + n) {
            Some((_, k2, _)) if is_other(k2) => Some(i + n),
            _ => None,
        }
    } else if is_other(k) {
        Some(i)
    } else {
        None
    };
    if let Some(s) = start {
        let j = t.run(s, |_, k| is_other(k));
        return j + t.b[j..]
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
    }
    // `\s++$ | \s*[\r\n] | \s+(?!\S) | \s`
    let j = space_run(t, i);
    if j == t.b.len() {
        return j;
    }
    if let Some(e) = last_newline_end(t, i, j) {
        return e;
    }
    let last = last_char_start(t, j);
    if last > i {
        last
    } else {
        i + n
    }
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` at `s`: where it ends, if it matches.
#[inline]
fn upper_lower(t: &Text<'_>, s: usize) -> Option<usize> {
    let u = t.run(s, |_, k| k & U != 0);
    if let Some((_, k, _)) = t.at(u) {
        if k & W != 0 {
            return Some(t.run(u, |_, k| k & W != 0));
        }
    }
    // Backtrack: the last char of the U-run that is also in W ends the match.
    let mut j = u;
    while j > s {
        let mut p = j - 1;
        while !t.s.is_char_boundary(p) {
            p -= 1;
        }
        let (_, k, n) = t.at(p).expect("inside the text");
        if k & W != 0 {
            return Some(p + n);
        }
        j = p;
    }
    None
}

/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` at `s`.
#[inline]
fn upper_then_lower(t: &Text<'_>, s: usize) -> Option<usize> {
    let u = t.run(s, |_, k| k & U != 0);
    (u > s).then(|| t.run(u, |_, k| k & W != 0))
}

fn next_o200k(t: &Text<'_>, i: usize) -> usize {
    let (c, k, n) = t.at(i).expect("i < len");
    let prefix = k & (L | N) == 0 && c != '\r' && c != '\n';
    let with_contraction = |e: usize| e + contraction(t, e, true).unwrap_or(0);
    // Word with lower-case tail, then word of capitals; each with the optional prefix first.
    for word in [
        upper_lower as fn(&Text<'_>, usize) -> Option<usize>,
        upper_then_lower,
    ] {
        if prefix {
            if let Some(e) = word(t, i + n) {
                return with_contraction(e);
            }
        }
        if let Some(e) = word(t, i) {
            return with_contraction(e);
        }
    }
    // `\p{N}{1,3}`
    if k & N != 0 {
        let mut j = i + n;
        for _ in 0..2 {
            match t.at(j) {
                Some((_, k2, n2)) if k2 & N != 0 => j += n2,
                _ => break,
            }
        }
        return j;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let start = if c == ' ' {
        match t.at(i + n) {
            Some((_, k2, _)) if is_other(k2) => Some(i + n),
            _ => None,
        }
    } else if is_other(k) {
        Some(i)
    } else {
        None
    };
    if let Some(s) = start {
        let j = t.run(s, |_, k| is_other(k));
        return j + t.b[j..]
            .iter()
            .take_while(|&&b| matches!(b, b'\r' | b'\n' | b'/'))
            .count();
    }
    // `\s*[\r\n]+ | \s+(?!\S) | \s+`
    let j = space_run(t, i);
    if let Some(e) = last_newline_end(t, i, j) {
        return e;
    }
    trailing_space(t, i)
}

impl Scanner {
    /// The scanner for `gpt2`, `cl100k` or `o200k`.
    pub fn for_name(name: &str) -> Option<Self> {
        let kind = match name {
            "gpt2" => Kind::Gpt2,
            "cl100k" => Kind::Cl100k,
            "o200k" => Kind::O200k,
            _ => return None,
        };
        classes();
        Some(Self { kind })
    }

    /// Call `f` on each piece of `text`.
    pub fn split<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) {
        let t = Text {
            s: text,
            b: text.as_bytes(),
            cls: classes(),
        };
        let next = match self.kind {
            Kind::Gpt2 => next_gpt2,
            Kind::Cl100k => next_cl100k,
            Kind::O200k => next_o200k,
        };
        let mut i = 0;
        while i < text.len() {
            let e = next(&t, i);
            debug_assert!(e > i && text.is_char_boundary(e));
            f(&text[i..e]);
            i = e;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::pretok::Pretokenizer;

    /// A small xorshift generator, so the property tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    const POOL: &[&str] = &[
        "a",
        "b",
        "Z",
        "é",
        "ß",
        "Σ",
        "ǅ",
        "ʰ",
        "中",
        "\u{301}",
        "\u{903}",
        "1",
        "٣",
        "Ⅻ",
        "½",
        " ",
        " ",
        "  ",
        "\t",
        "\n",
        "\r",
        "\r\n",
        "\u{a0}",
        "\u{2028}",
        "\u{3000}",
        "'",
        "'s",
        "'S",
        "'ll",
        "'LL",
        "'Re",
        "'ve",
        "'d",
        "'m",
        "'t",
        "'\u{17F}",
        "'K",
        "!",
        ".",
        "/",
        "-",
        "😀",
        "𝐀",
        "𝑎",
        "\u{1F3FB}",
        "_",
        "$",
        "\u{200d}",
        "\u{feff}",
        "x'",
        "don't",
        "HELLO",
        "World",
    ];

    fn check(name: &str, seed: u64, cases: usize) {
        let p = Pretokenizer::new(name).unwrap();
        let mut rng = Rng(seed);
        for _ in 0..cases {
            let len = (rng.next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| POOL[(rng.next() % POOL.len() as u64) as usize])
                .collect();
            assert_eq!(p.pieces(&text), p.split_regex(&text), "{name}: {text:?}");
        }
    }

    #[test]
    fn gpt2_agrees_with_regex() {
        check("gpt2", 0x9E37_79B9_7F4A_7C15, 4000);
    }

    #[test]
    fn cl100k_agrees_with_regex() {
        check("cl100k", 0xD1B5_4A32_D192_ED03, 4000);
    }

    #[test]
    fn o200k_agrees_with_regex() {
        check("o200k", 0x8CB9_2BA7_2F3D_8DD7, 4000);
    }

    #[test]
    fn every_char_class_agrees() {
        // Every BMP code point (and a sample above), alone and between letters and spaces.
        for name in ["gpt2", "cl100k", "o200k"] {
            let p = Pretokenizer::new(name).unwrap();
            let mut text = String::new();
            for c in (0u32..0x30000).step_by(7).filter_map(char::from_u32) {
                text.push(c);
                if (c as u32).is_multiple_of(3) {
                    text.push(' ');
                }
                if text.len() > 2000 {
                    assert_eq!(p.pieces(&text), p.split_regex(&text), "{name}");
                    text.clear();
                }
            }
        }
    }
}
