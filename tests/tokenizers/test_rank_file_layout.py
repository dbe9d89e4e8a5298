"""The bulk parse of tiktoken rank files (`_quick_ranks`) against a line-by-line reading."""

from __future__ import annotations

import base64
import binascii

from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.tokenizers.bpe import _canonical_fields, _quick_ranks


def _line_parse(text: str) -> list[tuple[bytes, int]] | None:
    """What `BPETokenizer.from_tiktoken`'s line parser reads, or None where it refuses a line."""
    out: list[tuple[bytes, int]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            return None
        try:
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        except (binascii.Error, ValueError):
            return None
        if rank < 0 or not token:
            return None
        out.append((token, rank))
    if len({t for t, _ in out}) != len(out) or len({r for _, r in out}) != len(out):
        return None
    return out


_PIECES = st.sampled_from(
    ["", " ", "  ", "\t", "\n", "\r\n", "=", "==", "===", "A", "QQ", "QUJD", "QUI=", "QQ==", "7",
     "12", "-1", "+3", "\u0663", "x=y", "A=B="]
)  # fmt: skip


def _canonical(tokens: list[bytes], last_newline: bool) -> str:
    text = "\n".join(f"{base64.b64encode(t).decode()} {i}" for i, t in enumerate(tokens))
    return text + ("\n" if last_newline else "")


@given(
    st.lists(st.binary(min_size=1, max_size=9), min_size=1, max_size=40, unique=True),
    st.booleans(),
)
def test_a_file_as_tiktoken_writes_it_takes_the_quick_layout(
    tokens: list[bytes], last_newline: bool
) -> None:
    text = _canonical(tokens, last_newline)
    assert _canonical_fields(text) is not None
    assert _quick_ranks(text) == list(zip(tokens, range(len(tokens)), strict=True))


@settings(max_examples=400)
@given(
    st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=12, unique=True),
    st.booleans(),
    st.lists(
        st.tuples(st.integers(0, 400), st.lists(_PIECES, max_size=4).map("".join)), max_size=4
    ),
)
def test_whatever_the_bulk_parse_accepts_the_line_parser_reads_the_same(
    tokens: list[bytes], last_newline: bool, edits: list[tuple[int, str]]
) -> None:
    text = _canonical(tokens, last_newline)
    for at, piece in edits:  # damage the layout or the fields at a few places
        at %= len(text) + 1
        text = text[:at] + piece + text[at:]
    quick = _quick_ranks(text)
    if quick is not None:
        assert quick == _line_parse(text)
    if _line_parse(text) is not None and "\r" not in text and "\t" not in text:
        reference = _line_parse(text)
        assert reference is not None
        if text == _canonical([t for t, _ in reference], text.endswith("\n")) and all(
            r == i for i, (_, r) in enumerate(reference)
        ):
            assert quick == reference  # the tiktoken layout is always read in bulk
