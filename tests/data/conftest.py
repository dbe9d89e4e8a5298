"""Fixtures for the data tests: a tiny byte tokenizer (registered as 'testbytes') and sample corpora."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

import llmkit


class TinyBytes:
    """Bytes 0..255 as ids, plus <|endoftext|> (256) and <mask> (257); stands in for the BPE."""

    def __init__(self) -> None:
        self._special = {"<|endoftext|>": 256, "<mask>": 257}

    @property
    def vocab_size(self) -> int:
        return 258

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "tinybytes", "special": self._special}))


@pytest.fixture
def tiny_tokenizer() -> TinyBytes:
    """The tiny tokenizer, registered as tokenizer 'testbytes' for the CLI and `prepare`."""
    llmkit.register("tokenizer", "testbytes", TinyBytes, summary="test byte tokenizer")
    return TinyBytes()


DOCS = [
    "The kernel's memory manager keeps track of pages.\nEach page has a struct page.",
    "Python lists are dynamic arrays; appending is amortised O(1).",
    "<p>Caf\u00e9 &amp; cr\u00e8me</p><script>alert(1)</script> served daily.",
    "Contact admin@example.org or visit https://example.org/help for details.",
    "Scheduling classes decide which task runs next on each CPU.",
]


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A directory of small text files (one plain, one gzipped) with real-looking prose."""
    import gzip

    d = tmp_path / "corpus"
    d.mkdir()
    for i, doc in enumerate(DOCS[:3]):
        (d / f"doc{i}.txt").write_text(doc + "\n", encoding="utf-8")
    with gzip.open(d / "doc3.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write(DOCS[3] + "\n")
    (d / "sub").mkdir()
    (d / "sub" / "doc4.txt").write_text(DOCS[4] + "\n", encoding="utf-8")
    return d


@pytest.fixture
def docs() -> list[str]:
    """The texts in `corpus_dir`."""
    return list(DOCS)
