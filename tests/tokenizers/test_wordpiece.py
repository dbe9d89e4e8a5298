"""WordPiece: ids, training and decoding against Hugging Face `tokenizers`; files and errors."""

from __future__ import annotations

import json
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import pytest
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from llmkit import _rust
from llmkit.errors import UsageError
from llmkit.tokenizers.wordpiece import DEFAULT_SPECIAL_TOKENS, WordPieceTokenizer

SPECIALS = list(DEFAULT_SPECIAL_TOKENS)
TEXTS = list(topics.values())  # ~460 KB of real English prose and code (Python's docs)

MIXED = [
    "Héllo, Wörld! Ça va? Crème brûlée à la façon de l'été.",
    "Ångström naïve coöperate résumé — “quoted” ‘text’ «guillemets» …",
    "中文字符测试，日本語のテキスト、한국어 텍스트。",
    "ＦＵＬＬ-width ＡＢＣ and ﬁ ligature, Ⅻ roman, ℌ letterlike, ½ fractions",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em space\u200bzero width\u0000nul\ufeffbom",
    "Emoji 🙂👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math, Ελληνικά ΣΊΣΥΦΟΣ, кириллица ЁЖИК",
    "URLs https://example.com/a_b?c=d&e=f#frag and e-mail foo.bar@baz.org",
    "Numbers 3.14159, 1,000,000 and 10^6; code: x[i] += f(a, *args, **kw)",
    "İstanbul ǅemal ﬀ ß ẞ ǈ ΐ",
    "a\u037eb a\u0387b a\u1fefb \u212a \u2126 \u00c5",
    "x" * 150 + " " + "é" * 101 + " ok",
    "Arabic العربية and Hebrew עִבְרִית with marks, Devanagari हिन्दी",
    "[CLS] the [MASK] sat [SEP] on [PAD][UNK] mat [mask]",
    "",
    "   ",
]


def hf_tokenizer(
    vocab: dict[str, int], lowercase: bool = True, strip_accents: bool | None = None
) -> Tokenizer:
    """`tokenizers`' BERT pipeline on `vocab`, with the special tokens added."""
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=strip_accents)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens([s for s in SPECIALS if s in vocab])
    return tok


def hf_train(
    texts: list[str],
    vocab_size: int,
    lowercase: bool,
    min_frequency: int = 0,
    limit_alphabet: int | None = None,
) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    options: dict[str, Any] = {} if limit_alphabet is None else {"limit_alphabet": limit_alphabet}
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        show_progress=False,
        min_frequency=min_frequency,
        **options,
    )
    tok.train_from_iterator(TEXTS, trainer)
    return tok


def in_id_order(vocab: dict[str, int]) -> list[str]:
    return sorted(vocab, key=vocab.__getitem__)


def continuation_order(tokens: list[str]) -> list[str]:
    """The order `tokenizers` gave its `##c` tokens (random per process: a hash-map order)."""
    first = next(i for i, t in enumerate(tokens) if t.startswith("##"))
    order = []
    for t in tokens[first:]:
        if not (t.startswith("##") and len(t) == 3):
            break
        order.append(t[2:])
    return order


@pytest.fixture(scope="module")
def uncased() -> tuple[Tokenizer, WordPieceTokenizer]:
    hf = hf_train(TEXTS, 4000, lowercase=True)
    vocab = hf.get_vocab()
    return hf_tokenizer(vocab), WordPieceTokenizer(in_id_order(vocab))


@pytest.fixture(scope="module")
def cased() -> tuple[Tokenizer, WordPieceTokenizer]:
    hf = hf_train(TEXTS, 3000, lowercase=False, min_frequency=2)
    vocab = hf.get_vocab()
    return (
        hf_tokenizer(vocab, lowercase=False),
        WordPieceTokenizer(in_id_order(vocab), lowercase=False),
    )


# ---------------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    ("vocab_size", "min_frequency", "limit_alphabet"),
    [(1200, 0, None), (5000, 2, None), (2000, 0, 60)],
)
def test_trainer_reproduces_tokenizers_vocabulary(
    vocab_size: int, min_frequency: int, limit_alphabet: int | None
) -> None:
    hf = hf_train(
        TEXTS,
        vocab_size,
        lowercase=True,
        min_frequency=min_frequency,
        limit_alphabet=limit_alphabet,
    )
    expected = in_id_order(hf.get_vocab())
    counts = _rust.WordPieceTrainer()
    counts.feed_texts(TEXTS)
    ours = counts.train(
        vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIALS,
        limit_alphabet=limit_alphabet,
        continuation_order=continuation_order(expected),
    )
    assert ours == expected  # every token at the same id


def test_train_default_order_is_deterministic_and_close_to_tokenizers(
    uncased: tuple[Tokenizer, WordPieceTokenizer],
) -> None:
    hf, _ = uncased
    a = WordPieceTokenizer.train(iter(TEXTS), vocab_size=4000)
    b = WordPieceTokenizer.train(iter(reversed(TEXTS)), vocab_size=4000)
    assert a.get_vocab() == b.get_vocab()
    assert a.vocab_size == 4000
    ours, theirs = set(a.get_vocab()), set(hf.get_vocab())
    # Only ties broken by the `##c` ids differ; `tokenizers` itself varies that much per run.
    assert len(ours ^ theirs) < 0.01 * len(theirs)
    assert list(a.special_tokens) == SPECIALS
    assert a.get_vocab()["[UNK]"] == 1


def test_train_from_files_globs_and_iterators_agree(tmp_path: Path) -> None:
    half = len(TEXTS) // 2
    (tmp_path / "a.txt").write_text("\n".join(TEXTS[:half]), encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n".join(TEXTS[half:]), encoding="utf-8")
    from_glob = WordPieceTokenizer.train(str(tmp_path / "*.txt"), vocab_size=1500)
    from_list = WordPieceTokenizer.train(
        [tmp_path / "a.txt", str(tmp_path / "b.txt")], vocab_size=1500
    )
    from_iter = WordPieceTokenizer.train(iter(TEXTS), vocab_size=1500)
    assert from_glob.get_vocab() == from_list.get_vocab() == from_iter.get_vocab()


def test_train_options() -> None:
    tok = WordPieceTokenizer.train(
        iter(["Hello hello HELLO world"] * 3),
        vocab_size=40,
        special_tokens=["[UNK]", "[SEP]", "[CLS]"],
        lowercase=False,
        initial_alphabet=["z"],
        limit_alphabet=5,
    )
    vocab = tok.get_vocab()
    assert list(vocab)[:8] == ["[UNK]", "[SEP]", "[CLS]", "H", "L", "l", "o", "z"]
    assert tok.config["lowercase"] is False and tok.config["strip_accents"] is False
    assert tok.tokenize("Hello", add_special_tokens=True) == ["[CLS]", "[UNK]", "[SEP]"]
    assert "[UNK]" not in tok.tokenize("HLL lol z")  # ties keep the smaller code point


def test_train_invalid_utf8_is_replaced_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"caf\xe9 latte caf\xc3\xa9\nlatte \xff\xfe latte\n")
    with pytest.warns(UserWarning, match="3 invalid UTF-8"):
        tok = WordPieceTokenizer.train(path, vocab_size=30)
    assert tok.tokenize("latte") == ["latte"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 8}, "vocab_size=8 is smaller than"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"vocab_size": 100, "special_tokens": ["[PAD]"]}, "must include unk_token"),
        ({"vocab_size": 100, "initial_alphabet": ["ab"]}, "not a single character"),
    ],
)
def test_train_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        WordPieceTokenizer.train(iter(["some words here"]), **kwargs)


def test_train_missing_file_says_how_to_pass_texts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"not found .*iterator"):
        WordPieceTokenizer.train(["the quick brown fox"], vocab_size=100)
    with pytest.raises(UsageError, match="is a directory; pass a glob"):
        WordPieceTokenizer.train(tmp_path, vocab_size=100)
    with pytest.raises(UsageError, match="matches no file"):
        WordPieceTokenizer.train(str(tmp_path / "*.txt"), vocab_size=100)
    with pytest.raises(UsageError, match="not str"):
        bad: list[Any] = ["ok", b"bytes"]
        WordPieceTokenizer.train(iter(bad), vocab_size=100)


# ---------------------------------------------------------------------------------- encoding


def test_ids_match_tokenizers_on_real_text(uncased: tuple[Tokenizer, WordPieceTokenizer]) -> None:
    hf, ours = uncased
    expected = [e.ids for e in hf.encode_batch(TEXTS, add_special_tokens=False)]
    assert ours.encode_batch(TEXTS) == expected
    assert ours.encode(TEXTS[0]) == expected[0]
    assert sum(map(len, expected)) > 50_000
    big = "\f".join(TEXTS * 3)  # > 1 MiB: encoded in parallel pieces; form feeds join words
    assert len(big) > 1 << 20
    assert ours.encode(big) == hf.encode(big, add_special_tokens=False).ids


@pytest.mark.parametrize("fixture", ["uncased", "cased"])
def test_ids_match_tokenizers_on_mixed_unicode(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    hf, ours = request.getfixturevalue(fixture)
    for text in MIXED:
        assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids, text


@pytest.mark.parametrize(("lowercase", "strip_accents"), [(True, False), (False, True)])
def test_ids_match_tokenizers_with_accent_options(
    uncased: tuple[Tokenizer, WordPieceTokenizer], lowercase: bool, strip_accents: bool
) -> None:
    vocab = uncased[0].get_vocab()
    hf = hf_tokenizer(vocab, lowercase=lowercase, strip_accents=strip_accents)
    ours = WordPieceTokenizer(in_id_order(vocab), lowercase=lowercase, strip_accents=strip_accents)
    texts = MIXED + TEXTS[:50]
    assert ours.encode_batch(texts) == [e.ids for e in hf.encode_batch(texts, False)]
    assert ours.normalize("Crème") == hf.normalizer.normalize_str("Crème")


def test_special_tokens_template_and_splitting(
    uncased: tuple[Tokenizer, WordPieceTokenizer],
) -> None:
    hf, ours = uncased
    vocab = hf.get_vocab()
    hf.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    text = "the [MASK] of a [CLS]function[SEP] call [mask]"
    assert ours.encode(text, add_special_tokens=True) == hf.encode(text).ids
    assert ours.tokenize(text)[1] == "[MASK]"
    as_text = ours.tokenize(text, add_special_tokens=False)
    assert as_text == [hf.id_to_token(i) for i in hf.encode(text, add_special_tokens=False).ids]
    plain = ours.encode(text, split_special_tokens=False)
    assert vocab["[MASK]"] not in plain and plain[1] == vocab["["]


def test_long_and_unknown_words(uncased: tuple[Tokenizer, WordPieceTokenizer]) -> None:
    hf, ours = uncased
    unk = ours.unk_token_id
    assert ours.encode("a" * 101) == [unk]
    assert ours.encode("a" * 100) == hf.encode("a" * 100, add_special_tokens=False).ids != [unk]
    short = WordPieceTokenizer(in_id_order(hf.get_vocab()), max_input_chars_per_word=4)
    assert short.encode("the function") == [ours.token_to_id("the"), unk]
    assert ours.encode("☃") == [unk]


def test_encode_batch_equals_encode(uncased: tuple[Tokenizer, WordPieceTokenizer]) -> None:
    _, ours = uncased
    texts = MIXED * 3 + TEXTS[:20]
    assert ours.encode_batch(texts, add_special_tokens=True) == [
        ours.encode(t, add_special_tokens=True) for t in texts
    ]
    assert ours.encode_batch([]) == []
    with pytest.raises(UsageError, match="not one string"):
        ours.encode_batch("text")


# ---------------------------------------------------------------------------------- decoding


def test_decode_matches_tokenizers_wordpiece_decoder(
    uncased: tuple[Tokenizer, WordPieceTokenizer],
) -> None:
    hf, ours = uncased
    for text in [*MIXED, *TEXTS[:30], "I don't think it's 'quoted' , ok ? yes !"]:
        ids = ours.encode(text, add_special_tokens=True)
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids), text
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False), text


def test_decode_rejoins_pieces_without_cleanup(
    uncased: tuple[Tokenizer, WordPieceTokenizer],
) -> None:
    _, ours = uncased
    text = "Hello , unbelievably long-winded sentence ."
    assert ours.decode(ours.encode(text), cleanup=False) == " ".join(ours.pre_tokenize(text))
    assert ours.decode(ours.encode(text)) == "hello, unbelievably long - winded sentence."
    with pytest.raises(UsageError, match="out of range"):
        ours.decode([ours.vocab_size])
    with pytest.raises(UsageError, match="out of range"):
        ours.decode([-1])


# ---------------------------------------------------------------------------------- files


def test_vocab_txt_round_trip_matches_tokenizers(
    uncased: tuple[Tokenizer, WordPieceTokenizer], tmp_path: Path
) -> None:
    hf, ours = uncased
    path = tmp_path / "vocab.txt"
    ours.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == in_id_order(hf.get_vocab())
    # `tokenizers` reads our file to the same vocabulary, and we read it back.
    assert models.WordPiece.read_file(str(path)) == hf.get_vocab()
    again = WordPieceTokenizer.from_vocab(path)
    assert again.get_vocab() == ours.get_vocab()
    assert again.special_tokens == ours.special_tokens
    assert again.encode(MIXED[0]) == ours.encode(MIXED[0])


def test_json_round_trip_keeps_settings(tmp_path: Path) -> None:
    tok = WordPieceTokenizer.train(
        iter(TEXTS[:40]), vocab_size=600, lowercase=False, max_input_chars_per_word=20
    )
    path = tmp_path / "sub" / "wp.json"
    tok.save(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "llmkit-tokenizer" and doc["type"] == "wordpiece"
    back = WordPieceTokenizer.load(path)
    assert back.config == tok.config and back.get_vocab() == tok.get_vocab()
    assert back.encode("Éclair " + "x" * 30) == tok.encode("Éclair " + "x" * 30)
    assert [p.name for p in path.parent.iterdir()] == ["wp.json"]  # no temporary left over


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"[UNK]\nthe\n##s\nthe\n",
            r"vocab\.txt line 4: duplicate token 'the' \(first on line 2\)",
        ),
        (b"[UNK]\nthe\n\n##s\n", r"vocab\.txt line 3: empty line"),
        (b"[UNK]\nthe\n\xff\xfe\n", r"vocab\.txt line 3: invalid UTF-8"),
        (b"[PAD]\nthe\n", r"vocab\.txt: the vocabulary has no unk_token '\[UNK\]'"),
        (b"", r"vocab\.txt: the vocabulary file is empty"),
    ],
)
def test_bad_vocab_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message.replace("'", '"')):
        WordPieceTokenizer.from_vocab(path)


def test_vocab_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.txt"):
        WordPieceTokenizer.from_vocab(tmp_path / "missing.txt")
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\nthe \r\n##s\n", encoding="utf-8")  # trailing blanks dropped, as HF
    tok = WordPieceTokenizer.from_vocab(path, special_tokens=["[UNK]"])
    assert tok.tokenize("the thes") == ["the", "the", "##s"]
    with pytest.raises(UsageError, match=r"special token \"\[MASK\]\" is not in the vocabulary"):
        WordPieceTokenizer.from_vocab(path, special_tokens=["[UNK]", "[MASK]"])
    with pytest.raises(UsageError, match="add_special_tokens needs cls_token"):
        tok.encode("the", add_special_tokens=True)
    with pytest.raises(UsageError, match="duplicate token"):
        WordPieceTokenizer(["[UNK]", "a", "a"])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{", "not a llmkit tokenizer JSON file"),
        ('{"format": "other"}', "not a llmkit tokenizer file"),
        ('{"format": "llmkit-tokenizer", "type": "bpe", "version": 1}', "not 'wordpiece'"),
        ('{"format": "llmkit-tokenizer", "type": "wordpiece", "version": 9}', "version 9"),
        (
            '{"format": "llmkit-tokenizer", "type": "wordpiece", "version": 1, "vocab": [1],'
            ' "config": {}}',
            "'vocab' must be a list of strings",
        ),
        (
            '{"format": "llmkit-tokenizer", "type": "wordpiece", "version": 1, '
            '"vocab": ["[UNK]"], "config": {"colour": 1}}',
            r"unknown config field\(s\) \['colour'\]",
        ),
    ],
)
def test_bad_json_files(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "wp.json"
    path.write_text(doc, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        WordPieceTokenizer.load(path)


def test_protocol_and_vocabulary_accessors(uncased: tuple[Tokenizer, WordPieceTokenizer]) -> None:
    from llmkit.tokenizers.base import Tokenizer as TokenizerProtocol

    hf, ours = uncased
    assert isinstance(ours, TokenizerProtocol)
    assert ours.vocab_size == len(ours) == hf.get_vocab_size()
    assert ours.special_tokens == {s: hf.token_to_id(s) for s in SPECIALS}
    assert ours.token_to_id("the") == hf.token_to_id("the")
    assert ours.id_to_token(ours.vocab_size) is None and ours.token_to_id("no such") is None
    s_id = hf.token_to_id("##s")
    assert s_id is not None and ours.id_to_token(s_id) == "##s"


# ---------------------------------------------------------------------------------- HF files


def test_to_hf_loads_in_tokenizers_with_the_same_ids(
    uncased: tuple[Tokenizer, WordPieceTokenizer], tmp_path: Path
) -> None:
    _, ours = uncased
    path = tmp_path / "tokenizer.json"
    ours.to_hf(path)
    hf = Tokenizer.from_file(str(path))
    texts = MIXED + TEXTS[:100]
    assert [e.ids for e in hf.encode_batch(texts)] == ours.encode_batch(
        texts, add_special_tokens=True
    )
    ids = ours.encode(MIXED[0], add_special_tokens=True)
    assert hf.decode(ids) == ours.decode(ids, skip_special_tokens=True)


def test_from_hf_reads_tokenizers_files(
    cased: tuple[Tokenizer, WordPieceTokenizer], tmp_path: Path
) -> None:
    hf, _ = cased
    vocab = hf.get_vocab()
    hf.post_processor = processors.BertProcessing(
        ("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"])
    )
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    ours = WordPieceTokenizer.from_hf(path)
    assert WordPieceTokenizer.load(path).get_vocab() == vocab
    assert ours.config["lowercase"] is False and ours.special_tokens == {
        s: vocab[s] for s in SPECIALS
    }
    for text in MIXED:
        assert ours.encode(text, add_special_tokens=True) == hf.encode(text).ids, text
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["pre_tokenizer"] = {"type": "Whitespace"}
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(UsageError, match="pre_tokenizer 'Whitespace' is not supported"):
        WordPieceTokenizer.from_hf(path)
    doc["model"]["type"] = "BPE"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(UsageError, match="model type 'BPE', not a WordPiece"):
        WordPieceTokenizer.from_hf(path)


def test_allowed_special_and_encode_ordinary(
    uncased: tuple[Tokenizer, WordPieceTokenizer],
) -> None:
    _, ours = uncased
    sp = ours.special_tokens
    text = "a [MASK] b [SEP]"
    assert ours.encode(text, allowed_special="all") == ours.encode(text)
    assert ours.encode_ordinary(text) == ours.encode(text, split_special_tokens=False)
    only_sep = ours.encode(text, allowed_special={"[SEP]"})
    assert sp["[SEP]"] in only_sep and sp["[MASK]"] not in only_sep
    assert ours.encode(text, allowed_special=set()) == ours.encode_ordinary(text)
    assert ours.encode_batch([text], allowed_special={"[SEP]"}) == [only_sep]
    with pytest.raises(UsageError, match=r"allowed_special \['<s>'\] are not special tokens"):
        ours.encode(text, allowed_special={"<s>"})
    with pytest.raises(UsageError, match="not valid Unicode"):
        ours.encode("lone \ud800 surrogate")


def test_encode_pair_matches_bert_processing(
    uncased: tuple[Tokenizer, WordPieceTokenizer],
) -> None:
    hf, ours = uncased
    vocab = hf.get_vocab()
    hf.post_processor = processors.BertProcessing(
        ("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"])
    )
    for a, b in [(MIXED[0], MIXED[1]), ("", "x"), (TEXTS[3][:300], "[MASK] it")]:
        expected = hf.encode(a, b)
        assert ours.encode_pair(a, b) == (expected.ids, expected.type_ids)


def test_copy_and_pickle_for_worker_processes(
    cased: tuple[Tokenizer, WordPieceTokenizer],
) -> None:
    import copy
    import pickle

    _, ours = cased
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone.config == ours.config and clone.get_vocab() == ours.get_vocab()
        assert clone.encode(MIXED[0]) == ours.encode(MIXED[0])
