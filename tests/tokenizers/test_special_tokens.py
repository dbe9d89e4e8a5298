"""The one rule for special tokens written in a text, held by BPE and WordPiece alike.

`encode(text, allowed_special=A, disallowed_special=D)`: a special token in A becomes its id, one
in D (not in A) is a UsageError, any other is ordinary text; "all" is every special token (for D,
every one not in A). Only the defaults differ: tiktoken's for BPE (A = {}, D = "all"), Hugging
Face `tokenizers`' for WordPiece (A = "all", D = {}).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.errors import UsageError
from llmkit.tokenizers.bpe import BPETokenizer
from llmkit.tokenizers.wordpiece import WordPieceTokenizer

CORPUS = [
    "the quick brown fox jumps over the lazy dog [x] <y> |z| " * 3,
    "Hello, world! <|endoftext|> [MASK] naïve café 東京 12345",
]
BPE_SPECIALS = ["<|endoftext|>", "<pad>", "<|im_end|>"]
WP_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@functools.cache
def tokenizer(kind: str) -> Any:
    if kind == "bpe":
        return BPETokenizer.train(iter(CORPUS), vocab_size=300, special_tokens=BPE_SPECIALS)
    return WordPieceTokenizer.train(iter(CORPUS), vocab_size=120, special_tokens=WP_SPECIALS)


def pieces(text: str, specials: list[str]) -> list[tuple[bool, str]]:
    """(is special, text) parts of `text`, special tokens matched leftmost-longest."""
    out: list[tuple[bool, str]] = []
    i = last = 0
    while i < len(text):
        match = max((s for s in specials if text.startswith(s, i)), key=len, default=None)
        if match is None:
            i += 1
            continue
        out += [(False, text[last:i]), (True, match)]
        i = last = i + len(match)
    return [*out, (False, text[last:])]


def expected(tok: Any, text: str, allowed: set[str]) -> list[int]:
    """Ordinary text between the allowed special tokens, each encoded alone, and their ids."""
    ids: list[int] = []
    plain = ""
    for special, part in pieces(text, list(tok.special_tokens)):
        if special and part in allowed:
            ids += [*tok.encode_ordinary(plain), tok.special_tokens[part]]
            plain = ""
        else:
            plain += part
    return ids + tok.encode_ordinary(plain)


def texts(specials: list[str]) -> st.SearchStrategy[str]:
    tricky = [*specials, "[", "]", "<", ">", "|", "<|", "|>", "[MAS", "K]", "<|endof", " ", "\n"]
    return st.lists(st.one_of(st.text(max_size=6), st.sampled_from(tricky)), max_size=10).map(
        "".join
    )


def subsets(specials: list[str]) -> st.SearchStrategy[set[str]]:
    return st.sets(st.sampled_from(specials))


KINDS = [("bpe", BPE_SPECIALS), ("wordpiece", WP_SPECIALS)]


@pytest.mark.parametrize(("kind", "specials"), KINDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_allowed_become_ids_others_are_text(kind: str, specials: list[str], data: Any) -> None:
    tok = tokenizer(kind)
    text = data.draw(texts(specials))
    allowed = data.draw(subsets(specials))
    ids = tok.encode(text, allowed_special=allowed, disallowed_special=())
    assert ids == expected(tok, text, allowed)
    assert tok.encode_batch([text, text], allowed_special=allowed, disallowed_special=()) == [
        ids,
        ids,
    ]
    assert tok.encode(text, allowed_special="all", disallowed_special=()) == expected(
        tok, text, set(specials)
    )
    assert tok.encode_ordinary(text) == expected(tok, text, set())
    assert tok.encode(text, allowed_special=set(), disallowed_special=()) == tok.encode_ordinary(
        text
    )


@pytest.mark.parametrize(("kind", "specials"), KINDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_disallowed_are_errors(kind: str, specials: list[str], data: Any) -> None:
    tok = tokenizer(kind)
    text = data.draw(texts(specials))
    allowed = data.draw(subsets(specials))
    disallowed = data.draw(st.one_of(st.just("all"), subsets(specials)))
    banned = (set(specials) if disallowed == "all" else set(disallowed)) - allowed
    found = {part for special, part in pieces(text, specials) if special}
    if found & banned:
        with pytest.raises(UsageError, match="disallowed"):
            tok.encode(text, allowed_special=allowed, disallowed_special=disallowed)
        with pytest.raises(UsageError, match="disallowed"):
            tok.encode_batch(["", text], allowed_special=allowed, disallowed_special=disallowed)
    else:
        ids = tok.encode(text, allowed_special=allowed, disallowed_special=disallowed)
        assert ids == expected(tok, text, allowed)


@settings(max_examples=100, deadline=None)
@given(text=texts(BPE_SPECIALS))
def test_bpe_default_is_tiktoken(text: str) -> None:
    tok = tokenizer("bpe")
    found = any(special for special, _ in pieces(text, BPE_SPECIALS))
    if found:
        with pytest.raises(UsageError, match="disallowed"):
            tok.encode(text)
    else:
        assert tok.encode(text) == tok.encode_ordinary(text)
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


@settings(max_examples=100, deadline=None)
@given(text=texts(WP_SPECIALS))
def test_wordpiece_default_is_tokenizers(text: str) -> None:
    tok = tokenizer("wordpiece")
    assert tok.encode(text) == expected(tok, text, set(WP_SPECIALS))
    assert tok.encode(text) == tok.encode(text, allowed_special="all", disallowed_special=())
    assert tok.encode(text, split_special_tokens=False) == tok.encode_ordinary(text)


@pytest.mark.parametrize(("kind", "specials"), KINDS)
def test_unknown_names_are_errors(kind: str, specials: list[str]) -> None:
    tok = tokenizer(kind)
    for key in ("allowed_special", "disallowed_special"):
        with pytest.raises(UsageError, match="not special tokens"):
            tok.encode("x", **{key: {"<nope>"}})
        with pytest.raises(UsageError, match="all"):
            tok.encode("x", **{key: "<nope>"})
