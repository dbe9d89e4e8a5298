//! GPT-2's byte-level alphabet: each byte is shown as a printable character, so that byte strings
//! can be stored as text in `vocab.json`, `merges.txt` and `tokenizer.json`.

/// The character GPT-2 uses for each byte (`bytes_to_unicode` in GPT-2's encoder.py).
pub fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(c).expect("valid code point");
    }
    table
}

/// The bytes in the code-point order of their byte-level characters: the id order of the byte
/// alphabet that `tokenizers`' BpeTrainer produces.
pub fn bytes_in_char_order() -> Vec<u8> {
    let table = byte_to_char();
    let mut order: Vec<u8> = (0..=255u8).collect();
    order.sort_by_key(|&b| table[b as usize] as u32);
    order
}

/// Byte-level text of a byte string.
pub fn encode_str(bytes: &[u8]) -> String {
    let table = byte_to_char();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

/// Bytes of a byte-level text, or `None` if it holds a character outside the byte-level alphabet.
pub fn decode_str(text: &str) -> Option<Vec<u8>> {
    let table = byte_to_char();
    let mut inverse = std::collections::HashMap::with_capacity(256);
    for (b, &c) in table.iter().enumerate() {
        inverse.insert(c, b as u8);
    }
    text.chars().map(|c| inverse.get(&c).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_characters() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0], 'Ā');
    }

    #[test]
    fn round_trip_all_bytes() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(decode_str(&encode_str(&all)).unwrap(), all);
        assert_eq!(decode_str("a\u{1F600}"), None);
    }

    #[test]
    fn char_order_starts_with_printables() {
        let order = bytes_in_char_order();
        assert_eq!(order[0], b'!');
        assert_eq!(order[93], b'~');
        assert_eq!(order[188], 0);
        assert_eq!(order.len(), 256);
    }
}
