"""The encoder's fast paths give the reference ids: whole-token lookups by inline key (pieces of
2-15 bytes), the per-thread tables of merged pieces (hits, evictions, pieces of more than three
ids), the longer-piece cache and the heap merge; decoding with 16-byte copies; lists built from
shared int objects."""

from __future__ import annotations

import random

import bpe_reference as ref
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmkit import _rust
from llmkit.errors import UsageError
from llmkit.tokenizers import BPETokenizer

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _texts() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)[:40]]


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train(iter(_texts()), vocab_size=900, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def reference(tok: BPETokenizer) -> tuple[dict[int, int], dict[tuple[int, int], tuple[int, int]]]:
    tokens = [tok.token_bytes(i) for i in range(tok.vocab_size)]
    merges = tok.core.merge_list()
    assert merges is not None
    return ref.encoder(tokens, merges)


def _expected(text: str, reference: tuple[dict[int, int], dict]) -> list[int]:
    byte_ids, ranks = reference
    return [
        i
        for p in _rust.pretokenize("gpt2", text, regex_only=True)
        for i in ref.encode_piece(p.encode(), byte_ids, ranks)
    ]


# Words of every length from 1 to 120 bytes, made of the corpus' own letters, so that the pieces
# hit whole tokens, merge into 2-3 ids, merge into many ids, and cross the 15-, 64- and 96-byte
# limits of the fast paths.
_WORD = st.text(alphabet="etaoinshrdlucmfwy_-=.", min_size=1, max_size=120)


@SETTINGS
@given(words=st.lists(_WORD, min_size=1, max_size=20), seps=st.sampled_from([" ", "\n", "  "]))
def test_pieces_of_every_length_match_the_reference(
    tok: BPETokenizer, reference: tuple, words: list[str], seps: str
) -> None:
    text = seps.join(words)
    expected = _expected(text, reference)
    assert tok.encode_ordinary(text) == expected
    # The second time the merged pieces come from the per-thread tables.
    assert tok.encode_ordinary(text) == expected
    assert tok.decode(expected) == text


def test_many_distinct_pieces_survive_evictions(tok: BPETokenizer, reference: tuple) -> None:
    # 30,000 distinct merged pieces share table lines, so some evict others; every encoding
    # of them, first or later, equals the reference.
    rng = random.Random(0)
    letters = "etaoinshrdlucmfwyp"
    words = [
        "".join(rng.choice(letters) for _ in range(rng.randrange(2, 15))) for _ in range(30000)
    ]
    text = " ".join(words)
    expected = _expected(text, reference)
    assert tok.encode_ordinary(text) == expected
    shuffled = words[:]
    rng.shuffle(shuffled)
    again = " ".join(shuffled)
    assert tok.encode_ordinary(again) == _expected(again, reference)
    assert tok.encode_batch([text, again], threads=2) == [expected, _expected(again, reference)]


def test_pieces_with_zero_bytes_and_lengths_that_share_prefixes(
    tok: BPETokenizer, reference: tuple
) -> None:
    # Inline keys tell apart pieces that differ only in trailing zero bytes or in length.
    for n in range(1, 20):
        for fill in ("\0", "e", "\x7f"):
            piece = "t" + fill * n
            assert tok.encode_bytes(piece.encode()) == _expected(piece, reference)
            assert tok.encode_ordinary(" " + piece) == _expected(" " + piece, reference)


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=899), max_size=300))
def test_decode_is_the_concatenation_of_token_bytes(tok: BPETokenizer, ids: list[int]) -> None:
    expected = b"".join(tok.token_bytes(i) for i in ids)
    assert tok.decode_bytes(ids) == expected
    assert tok.decode_bytes(np.array(ids, dtype=np.uint32)) == expected


def test_decode_of_an_unknown_id_names_it(tok: BPETokenizer) -> None:
    with pytest.raises(UsageError, match="token id 900 is not in the vocabulary"):
        tok.decode_bytes([5, 900, 7])
    with pytest.raises(UsageError, match="token id 4000000000"):
        tok.decode_bytes(np.array([4_000_000_000], dtype=np.uint32))


def test_returned_lists_are_plain_ints(tok: BPETokenizer) -> None:
    ids = tok.encode_ordinary("the the the")
    first = list(ids)
    assert all(type(i) is int for i in ids)
    # The int objects are shared between lists but immutable: changing one list changes no other.
    ids[0] += 1
    ids.append(10**9)
    assert tok.encode_ordinary("the the the") == first
