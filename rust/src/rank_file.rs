//! tiktoken rank files (`<base64 token> <rank>` lines) read in bulk, without the GIL.
//!
//! Only the layout tiktoken writes is taken here: one space, a newline after every line but
//! perhaps the last, strict padded base64, decimal ranks, no token or rank twice. Anything else
//! gives `None`, and the caller's line-by-line reader names the first bad line.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustc_hash::FxHashSet;

/// A rank file's (token bytes, rank) pairs, in file order.
pub type Ranks = Vec<(Vec<u8>, u32)>;

/// The (token, rank) pairs of a rank file in tiktoken's own layout, in file order; `None` for
/// any other layout or a bad, empty or repeated token or rank.
pub fn parse_canonical(data: &[u8]) -> Option<Ranks> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if body.is_empty() {
        return None;
    }
    let mut pairs = Vec::with_capacity(body.len() / 12);
    let mut tokens = FxHashSet::default();
    let mut ranks = FxHashSet::default();
    for line in body.split(|&b| b == b'\n') {
        let space = line.iter().position(|&b| b == b' ')?;
        let (token, digits) = (&line[..space], &line[space + 1..]);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let rank: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let bytes = STANDARD.decode(token).ok()?;
        if bytes.is_empty() || !ranks.insert(rank) || !tokens.insert(bytes.clone()) {
            return None;
        }
        pairs.push((bytes, rank));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::parse_canonical;

    #[test]
    fn reads_tiktoken_layout() {
        let got = parse_canonical(b"IQ== 0\nIg== 1\naGk= 7").unwrap();
        assert_eq!(
            got,
            vec![(b"!".to_vec(), 0), (b"\"".to_vec(), 1), (b"hi".to_vec(), 7)]
        );
    }

    #[test]
    fn refuses_other_layouts_and_bad_entries() {
        for bad in [
            &b""[..],
            b"IQ== 0\n\nIg== 1\n",
            b"IQ==  0\n",
            b"IQ== 0\r\n",
            b"IQ 0\n",
            b"IQ== -1\n",
            b"IQ== 0\nIQ== 1\n",
            b"IQ== 0\nIg== 0\n",
            b"IQ== 99999999999\n",
            b"IQ==\t0\n",
        ] {
            assert!(
                parse_canonical(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
