//! Unit tests of the WordPiece core.

use super::model::PARALLEL_MIN;
use super::pretokenizer::split_at_whitespace;
use super::*;

fn vocab(tokens: &[&str]) -> Vec<String> {
    tokens.iter().map(|t| t.to_string()).collect()
}

fn bert() -> WordPiece {
    let v = vocab(&[
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello", ",",
        "world", "!", "the", "cafe", "中", "##ing", "run", ".", "want", "##want", "##ed", "wa",
        "a",
    ]);
    let cfg = Config {
        special_tokens: vocab(&["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
        ..Config::default()
    };
    WordPiece::new(v, cfg).unwrap()
}

fn toks(wp: &WordPiece, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| wp.id_to_token(i).unwrap().to_string())
        .collect()
}

#[test]
fn normalizes_like_bert() {
    let n = Normalizer::default();
    assert_eq!(n.normalize("Héllo\tWORLD\u{0}\u{200b}!"), "hello world!");
    assert_eq!(n.normalize("中文"), " 中  文 ");
    assert_eq!(n.normalize("a\u{fffd}b\u{7}c"), "abc");
    let cased = Normalizer::bert(false, None);
    assert_eq!(cased.normalize("Héllo"), "Héllo");
    let keep_accents = Normalizer::bert(true, Some(false));
    assert_eq!(keep_accents.normalize("Héllo"), "héllo");
    // NFD reorders combining marks by class even across a dropped control character.
    let keep_case = Normalizer::bert(false, Some(true));
    assert_eq!(
        keep_case.normalize("X\u{1d16d}\x07\u{1d165}é"),
        "X\u{1d165}\u{1d16d}e"
    );
    assert_eq!(n.normalize("ÀB\tÇD"), "ab cd");
    // Canonical singleton: GREEK QUESTION MARK -> ';' only through accent stripping's NFD.
    assert_eq!(n.normalize("a\u{37e}b"), "a;b");
}

#[test]
fn splits_whitespace_and_punctuation() {
    assert_eq!(
        pre_tokenize(" hello,  world!! "),
        ["hello", ",", "world", "!", "!"]
    );
    assert_eq!(pre_tokenize("a¿b—c$d"), ["a", "¿", "b", "—", "c", "$", "d"]);
    assert_eq!(pre_tokenize("x\u{3000}y"), ["x", "y"]);
}

#[test]
fn greedy_longest_match_first() {
    let wp = bert();
    let ids = wp.encode("unaffable Hello, world!", false, true);
    assert_eq!(
        toks(&wp, &ids),
        ["un", "##aff", "##able", "hello", ",", "world", "!"]
    );
    assert_eq!(
        toks(&wp, &wp.encode("wanted", false, true)),
        ["want", "##ed"]
    );
    assert_eq!(
        toks(&wp, &wp.encode("unxyz the", false, true)),
        ["[UNK]", "the"]
    );
    assert_eq!(toks(&wp, &wp.encode("Café中", false, true)), ["cafe", "中"]);
    assert_eq!(
        toks(&wp, &wp.encode("the", true, true)),
        ["[CLS]", "the", "[SEP]"]
    );
}

#[test]
fn long_words_are_unknown() {
    let wp = bert();
    let long = "a".repeat(101);
    assert_eq!(wp.encode(&long, false, false), [wp.unk_id()]);
    let cfg = Config {
        max_input_chars_per_word: 3,
        ..Config::default()
    };
    let wp = WordPiece::new(vocab(&["[UNK]", "run", "##ing"]), cfg).unwrap();
    assert_eq!(
        toks(&wp, &wp.encode("run running", false, false)),
        ["run", "[UNK]"]
    );
}

#[test]
fn special_tokens_in_text() {
    let wp = bert();
    let ids = wp.encode("the [MASK]!", false, true);
    assert_eq!(toks(&wp, &ids), ["the", "[MASK]", "!"]);
    let ids = wp.encode("the [MASK]", false, false);
    assert_eq!(toks(&wp, &ids), ["the", "[UNK]", "[UNK]", "[UNK]"]);
    let only = [wp.token_to_id("[SEP]").unwrap()];
    let ids = wp.encode_with("[SEP][MASK]", false, Specials::Only(&only));
    assert_eq!(toks(&wp, &ids), ["[SEP]", "[UNK]", "[UNK]", "[UNK]"]);
}

#[test]
fn decodes_pieces_and_cleans_up() {
    let wp = bert();
    let ids = wp.encode("[CLS] unaffable hello , world !", false, true);
    assert_eq!(
        wp.decode(&ids, false, true).unwrap(),
        "[CLS] unaffable hello, world!"
    );
    assert_eq!(
        wp.decode(&ids, true, false).unwrap(),
        "unaffable hello , world !"
    );
    assert!(wp.decode(&[999], false, false).is_err());
}

#[test]
fn batch_equals_single() {
    let wp = bert();
    let texts = ["hello world", "", "unaffable", "中 cafe!"];
    let batch = wp.encode_batch(&texts, true, true);
    for (t, ids) in texts.iter().zip(batch) {
        assert_eq!(ids, wp.encode(t, true, true));
    }
}

#[test]
fn bad_vocab_files() {
    let e = parse_vocab(b"a\nb\na\n", "v.txt").unwrap_err();
    assert_eq!(
        e.to_string(),
        "v.txt line 3: duplicate token \"a\" (first on line 1)"
    );
    let e = parse_vocab(b"a\n\nb\n", "v.txt").unwrap_err();
    assert!(e.to_string().starts_with("v.txt line 2: empty line"));
    let e = parse_vocab(b"a\n\xff\n", "v.txt").unwrap_err();
    assert_eq!(e.to_string(), "v.txt line 2: invalid UTF-8");
    assert_eq!(parse_vocab(b"a \r\nb", "v").unwrap(), ["a", "b"]);
    let e = WordPiece::new(vocab(&["a"]), Config::default()).unwrap_err();
    assert!(e.to_string().contains("unk_token"));
}

#[test]
fn vocab_round_trip() {
    let wp = bert();
    let text = wp.to_vocab_txt();
    assert_eq!(parse_vocab(text.as_bytes(), "v").unwrap(), wp.vocab());
}

fn counts_of(texts: &[&str]) -> WordCounts {
    let mut c = WordCounts::new(Normalizer::default());
    c.add_texts(texts);
    c
}

#[test]
fn trains_bpe_over_words() {
    let counts = counts_of(&["hug hug hug pug pun", "bun hugs"]);
    assert_eq!(counts.get("hug"), 3);
    let cfg = TrainConfig {
        vocab_size: 15,
        special_tokens: vocab(&["[UNK]"]),
        ..TrainConfig::default()
    };
    let v = train(&counts, &cfg).unwrap();
    // specials, alphabet in code-point order, ## forms in code-point order, then merges.
    assert_eq!(
        &v[..12],
        vocab(&["[UNK]", "b", "g", "h", "n", "p", "s", "u", "##g", "##n", "##s", "##u"])
    );
    // "##u ##g" (count 5) first, then "h ##ug" (4 with "hugs").
    assert_eq!(&v[12..], vocab(&["##ug", "hug", "##un"]));
    let wp = WordPiece::new(v, Config::default()).unwrap();
    assert_eq!(
        toks(&wp, &wp.encode("hugs pun", false, false)),
        ["hug", "##s", "p", "##un"]
    );
}

#[test]
fn training_stops_and_checks_size() {
    let counts = counts_of(&["aaaa bbb"]);
    let small = TrainConfig {
        vocab_size: 3,
        ..TrainConfig::default()
    };
    assert!(train(&counts, &small)
        .unwrap_err()
        .to_string()
        .contains("at least"));
    let freq = TrainConfig {
        vocab_size: 100,
        min_frequency: 2,
        special_tokens: vec![],
        ..TrainConfig::default()
    };
    // a, b, ##a, ##b, then ##a##a (count 3 in "aaaa" overlapping), ##b##b (2)...
    let v = train(&counts, &freq).unwrap();
    assert_eq!(&v[..4], vocab(&["a", "b", "##a", "##b"]));
    assert!(v.contains(&"##aa".to_string()));
}

#[test]
fn training_is_deterministic_and_order_free() {
    let texts: Vec<String> = (0..2000)
        .map(|i| format!("word{} tok{} the quick brown fox {}", i % 37, i % 11, i % 5))
        .collect();
    let mut a = WordCounts::new(Normalizer::default());
    a.add_texts(&texts);
    let mut rev = texts.clone();
    rev.reverse();
    let mut b = WordCounts::new(Normalizer::default());
    b.add_texts(&rev[..1000]);
    b.add_texts(&rev[1000..]);
    let cfg = TrainConfig {
        vocab_size: 80,
        ..TrainConfig::default()
    };
    assert_eq!(train(&a, &cfg).unwrap(), train(&b, &cfg).unwrap());
}

#[test]
fn big_texts_encode_like_small_pieces() {
    let wp = bert();
    let unit = "Héllo [MASK] unaffable\x0cwanted\t中cafe,  the\r\nrun ";
    let big = unit.repeat((PARALLEL_MIN / unit.len()) * 2);
    let one = wp.encode(unit, false, true);
    let n = big.len() / unit.len();
    for (split, add) in [(true, true), (false, false)] {
        let ids = wp.encode(&big, add, split);
        let mut expected: Vec<u32> = Vec::new();
        let unit_ids = wp.encode(unit, false, split);
        expected.extend(wp.cls_sep_ids().0.filter(|_| add));
        for _ in 0..n {
            expected.extend(&unit_ids);
        }
        expected.extend(wp.cls_sep_ids().1.filter(|_| add));
        assert_eq!(ids, expected);
    }
    assert!(one.contains(&wp.token_to_id("[MASK]").unwrap()));
}

#[test]
fn big_texts_are_cut_only_between_words() {
    let big = "word\x0cword ".repeat(200_000);
    assert!(split_at_whitespace(&big, 4).len() > 1);
    let mut c = WordCounts::new(Normalizer::default());
    c.add_texts(&[big.as_str()]);
    assert_eq!((c.get("wordword"), c.get("word"), c.len()), (200_000, 0, 1));
}

#[test]
fn reads_files_with_invalid_utf8() {
    let dir = std::env::temp_dir().join(format!("llmkit-wp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, b"hello wor\xffld\nhello\n").unwrap();
    let mut c = WordCounts::new(Normalizer::default());
    c.add_file(&path).unwrap();
    assert_eq!(c.get("hello"), 2);
    assert_eq!(c.get("world"), 1);
    assert_eq!(c.invalid_utf8(), 1);
    assert!(c.add_file(&dir.join("missing.txt")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bytes_fed_in_blocks_count_like_the_file() {
    let text = "hello wor\u{e9}ld\nhello caf\u{e9}\n\nthe end";
    let mut whole = WordCounts::new(Normalizer::default());
    whole.add_texts(&[text]);
    let mut blocks = WordCounts::new(Normalizer::default());
    for line in text.split_inclusive('\n') {
        blocks.add_bytes(line.as_bytes());
    }
    blocks.add_bytes(b"bad \xff\n");
    assert_eq!(blocks.get("hello"), whole.get("hello"));
    assert_eq!(blocks.get("cafe"), 1);
    assert_eq!(blocks.len(), whole.len() + 1);
    assert_eq!((whole.invalid_utf8(), blocks.invalid_utf8()), (0, 1));
}
