"""The bulk parse of tiktoken rank files (`_quick_ranks`) against a line-by-line reading."""

from __future__ import annotations

import base64
import binascii
import builtins
import gzip
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.tokenizers.bpe import _quick_ranks

#: tiktoken's own layout: `<token> <rank>` lines, one space, no blank lines, no tabs or CR, `=`
#: only at a token's end (two at most), the last newline optional.
_TIKTOKEN_LAYOUT = re.compile(r"(?:[A-Za-z0-9+/]+={0,2} [0-9]+\n)*[A-Za-z0-9+/]+={0,2} [0-9]+\n?")


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
    from llmkit import _rust

    text = _canonical(tokens, last_newline)
    parsed = _rust.RankFile.parse(text.encode("ascii"))  # read in bulk, in Rust
    assert parsed is not None and len(parsed) == len(tokens)
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


def _rank_file_text(extra: list[bytes], order: list[int], last_newline: bool, crlf: bool) -> str:
    """All 256 single bytes plus `extra`, ranked by `order` (a permutation), in tiktoken's layout
    or with CRLF line ends."""
    tokens = [bytes([b]) for b in range(256)] + [t for t in extra if len(t) > 1]
    ranked = sorted(zip(order[: len(tokens)], tokens, strict=False))
    end = "\r\n" if crlf else "\n"
    text = end.join(f"{base64.b64encode(t).decode()} {r}" for r, t in ranked)
    return text + (end if last_newline else "")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=2, max_size=6), max_size=30, unique=True),
    st.randoms(use_true_random=False),
    st.booleans(),
    st.booleans(),
)
def test_the_rust_parse_builds_the_tokenizer_the_line_reader_builds(
    tmp_path_factory: Any, extra: list[bytes], rnd: Any, last_newline: bool, crlf: bool
) -> None:
    from llmkit import _rust
    from llmkit.tokenizers.bpe import BPETokenizer

    order = list(range(256 + len(extra)))
    rnd.shuffle(order)
    text = _rank_file_text(extra, order, last_newline, crlf)
    parsed = _rust.RankFile.parse(text.encode("ascii"))
    assert (parsed is None) == crlf  # CRLF is not tiktoken's layout: the line reader takes it
    expected = _line_parse(text)
    assert expected is not None and (parsed is None or len(parsed) == len(expected))
    path = tmp_path_factory.mktemp("ranks") / "r.tiktoken"
    path.write_text(text, newline="")
    fast = BPETokenizer.tiktoken_builder(path, "gpt2")()
    slow = BPETokenizer._line_builder(path, path.read_bytes(), "gpt2", None)()
    for token, rank in expected:
        assert fast.token_bytes(rank) == slow.token_bytes(rank) == token
    sample = b"".join(expected[i % len(expected)][0] for i in range(0, 400, 7))
    assert fast.encode_bytes(sample) == slow.encode_bytes(sample)


@settings(max_examples=300)
@given(st.lists(_PIECES, max_size=12))
def test_the_rust_parse_takes_only_what_the_line_reader_reads_the_same(pieces: list[str]) -> None:
    from llmkit import _rust

    text = "".join(pieces)
    parsed = _rust.RankFile.parse(text.encode("utf-8"))
    if parsed is not None:
        expected = _line_parse(text)
        assert expected is not None and len(parsed) == len(expected)
        assert _TIKTOKEN_LAYOUT.fullmatch(text) is not None  # only tiktoken's own layout


def test_a_rank_file_builds_one_model() -> None:
    from llmkit import _rust

    parsed = _rust.RankFile.parse(
        b"".join(b"%s %d\n" % (base64.b64encode(bytes([b])), b) for b in range(256))
    )
    assert parsed is not None and len(parsed) == 256
    _rust.Bpe.from_rank_file(parsed, [], "gpt2")
    with pytest.raises(ValueError, match="already built"):
        _rust.Bpe.from_rank_file(parsed, [], "gpt2")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("layout", "error"),
    [
        ("crlf", None),
        ("blank line", None),
        ("rank twice", r"r\.tiktoken(\.gz)?:4: rank 1 was already given on line 2"),
        ("not utf-8", r"r\.tiktoken(\.gz)?: cannot read rank file \('utf-8' codec"),
    ],
)
def test_a_file_the_rust_parse_refuses_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool, layout: str, error: str | None
) -> None:
    from llmkit import _rust
    from llmkit.errors import UsageError
    from llmkit.tokenizers.bpe import BPETokenizer

    tokens = [bytes([b]) for b in range(256)] + [b"ab", b"abc"]
    lines = [f"{base64.b64encode(t).decode()} {r}" for r, t in enumerate(tokens)]
    end = "\r\n" if layout == "crlf" else "\n"
    if layout == "blank line":
        lines.insert(7, "")
    if layout == "rank twice":
        lines[3] = f"{base64.b64encode(b'xyz').decode()} 1"
    raw = (end.join(lines) + end).encode("ascii")
    if layout == "not utf-8":
        raw = b"\xff" + raw[1:]
    assert _rust.RankFile.parse(raw) is None  # the Python line reader's path
    path = tmp_path / ("r.tiktoken.gz" if gz else "r.tiktoken")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)  # gzip.open opens through it too
    if error is not None:
        with pytest.raises(UsageError, match=error):
            BPETokenizer.tiktoken_builder(path, "gpt2")
    else:
        tok = BPETokenizer.tiktoken_builder(path, "gpt2")()
        assert tok.vocab_size == len(tokens)
        for rank, token in enumerate(tokens):
            assert tok.token_bytes(rank) == token
        assert tok.encode_bytes(b"abcab") == [257, 256]
    assert opened.count(str(path)) == 1
