"""WordPiece property tests: any Unicode input, parity with `tokenizers`, decode of covered text."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from llmkit.tokenizers.wordpiece import WordPieceTokenizer

# A small alphabet (with accents, CJK, punctuation, controls and odd spaces) that the vocabulary
# covers completely, so that no word of text drawn from it becomes [UNK].
LETTERS = "abcdeéñ中文"
OTHERS = " ,.!?-'\t\n\u00a0\u3000\u200b\x00"
PIECES = ["ab", "abc", "##bc", "##de", "cab", "##ab", "dé", "ba", "##a", "##ba"]


def _vocab() -> list[str]:
    chars = sorted(set(LETTERS.lower()) | {"e", "n"})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += chars + [f"##{c}" for c in chars] + PIECES + [",", ".", "!", "?", "-", "'"]
    return list(dict.fromkeys(tokens))


VOCAB = _vocab()


def _hf(lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(cleanup=False)
    return tok


OURS = {lc: WordPieceTokenizer(VOCAB, lowercase=lc) for lc in (True, False)}
HF = {lc: _hf(lc) for lc in (True, False)}

any_text = st.text(st.characters(codec="utf-8"), max_size=200)
covered_text = st.text(st.sampled_from(LETTERS + LETTERS.upper() + OTHERS), max_size=120)
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(text=any_text, lowercase=st.booleans())
def test_any_text_encodes_like_tokenizers(text: str, lowercase: bool) -> None:
    ours = OURS[lowercase]
    ids = ours.encode(text, split_special_tokens=False)
    assert ids == HF[lowercase].encode(text, add_special_tokens=False).ids
    assert all(0 <= i < ours.vocab_size for i in ids)
    assert ours.normalize(text) == HF[lowercase].normalizer.normalize_str(text)


@PROPS
@given(text=st.text(max_size=300))
def test_encode_never_fails_and_ids_are_in_range(text: str) -> None:
    ours = OURS[True]
    ids = ours.encode(text, add_special_tokens=True)
    assert ids[0] == ours.special_tokens["[CLS]"] and ids[-1] == ours.special_tokens["[SEP]"]
    assert all(0 <= i < ours.vocab_size for i in ids)
    assert isinstance(ours.decode(ids), str)


@PROPS
@given(text=covered_text, lowercase=st.booleans())
def test_decode_of_covered_text_is_the_normalized_words(text: str, lowercase: bool) -> None:
    ours = OURS[lowercase]
    ids = ours.encode(text)
    words = ours.pre_tokenize(text)
    if lowercase:
        assert ours.unk_token_id not in ids
    if ours.unk_token_id not in ids:
        assert ours.decode(ids, cleanup=False) == " ".join(words)
    assert ours.decode(ids, cleanup=False) == HF[lowercase].decode(ids)


@PROPS
@given(texts=st.lists(any_text, max_size=12))
def test_batch_is_the_same_as_one_by_one(texts: list[str]) -> None:
    ours = OURS[True]
    assert ours.encode_batch(texts) == [ours.encode(t) for t in texts]


@settings(max_examples=40, deadline=None)
@given(
    words=st.lists(st.text(st.sampled_from("abcdéñ中"), min_size=1, max_size=8), max_size=40),
    vocab_size=st.integers(40, 80),
)
def test_trained_vocab_covers_its_corpus(words: list[str], vocab_size: int) -> None:
    text = " ".join(words)
    try:
        tok = WordPieceTokenizer.train(iter([text]), vocab_size=vocab_size)
    except Exception as e:  # only a too-small vocab_size may be refused
        assert "is smaller than" in str(e)
        return
    assert len(set(tok.get_vocab())) == tok.vocab_size <= vocab_size
    ids = tok.encode(text)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, cleanup=False) == " ".join(tok.pre_tokenize(text))
    again = WordPieceTokenizer.train(iter(reversed(words)), vocab_size=vocab_size)
    assert again.get_vocab() == tok.get_vocab()


@pytest.mark.parametrize("lowercase", [True, False])
def test_property_vocabulary_is_usable(lowercase: bool) -> None:
    assert OURS[lowercase].encode("abc dé") == HF[lowercase].encode("abc dé").ids


@PROPS
@given(
    text=any_text,
    clean_text=st.booleans(),
    handle_chinese_chars=st.booleans(),
    strip_accents=st.sampled_from([None, True, False]),
    lowercase=st.booleans(),
)
def test_every_normalizer_option_matches_tokenizers(
    text: str,
    clean_text: bool,
    handle_chinese_chars: bool,
    strip_accents: bool | None,
    lowercase: bool,
) -> None:
    options: dict[str, Any] = {
        "clean_text": clean_text,
        "handle_chinese_chars": handle_chinese_chars,
        "strip_accents": strip_accents,
        "lowercase": lowercase,
    }
    ours = WordPieceTokenizer(VOCAB, **options)
    hf = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    hf.normalizer = normalizers.BertNormalizer(**options)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    assert ours.normalize(text) == hf.normalizer.normalize_str(text)
    assert ours.encode_ordinary(text) == hf.encode(text, add_special_tokens=False).ids
