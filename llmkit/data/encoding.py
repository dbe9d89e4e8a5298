"""Tokenizing a chunk of documents at once, and choosing each document's split.

Shared by `prepare`'s own thread and by its worker processes, so a chunk encodes to the same ids
and the same split whichever of them ran it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmkit.data.records import Record
from llmkit.errors import WorkError

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Encoded:
    """One chunk ready for the shards: per split, its documents as `frame` lays them out
    (ids with each document's EOS) and each document's size; and the characters encoded."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    chars: int


@dataclass(frozen=True)
class Framing:
    """What turns ids into shard tokens: the EOS id, the shard dtype, the vocabulary size (ids are
    checked against it), and the split's seed and validation fraction."""

    eos: int
    dtype: str
    vocab: int
    seed: int
    validation: float


def is_validation(text: str, seed: int, fraction: float) -> bool:
    """Deterministic split: a keyed hash of the cleaned text picks validation documents."""
    if fraction <= 0.0:
        return False
    key = seed.to_bytes(8, "little", signed=True)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=key)
    return int.from_bytes(digest.digest(), "little") < fraction * 2**64


def encode_ids(tok: Any, texts: list[str], threads: int | None = None) -> tuple[Any, Any]:
    """(flat ids array, per-text lengths) for a chunk, using the tokenizer's fastest path.

    Text that looks like a special token (``<|endoftext|>`` inside a document) is encoded as
    ordinary text, as nanoGPT's ``encode_ordinary`` does; only the EOS the shards add is special.
    `threads` caps the Rust encoder's threads (a worker process uses one).
    """
    import numpy as np

    batch_array = getattr(tok, "encode_batch_array", None)
    if batch_array is not None:
        try:
            ids, offsets = batch_array(texts, disallowed_special=frozenset(), threads=threads)
        except TypeError:
            ids, offsets = batch_array(texts, disallowed_special=frozenset())
        return ids, np.diff(offsets)
    try:
        batches = tok.encode_batch(texts, disallowed_special=frozenset())
    except TypeError:
        batches = tok.encode_batch(texts)
    lengths = np.fromiter((len(b) for b in batches), dtype=np.int64, count=len(batches))
    total = int(lengths.sum())
    from itertools import chain

    ids = np.fromiter(chain.from_iterable(batches), dtype=np.int64, count=total)
    return ids, lengths


def encode_chunk(
    tok: Any, texts: list[str], framing: Framing, threads: int | None = None
) -> Encoded:
    """Encode a chunk, check its ids, frame them with EOS and split them by `is_validation`."""
    import numpy as np

    from llmkit.data.shards import frame

    ids, lengths = encode_ids(tok, texts, threads)
    vocab = framing.vocab
    if len(ids) and (int(ids.max()) >= vocab or int(ids.min()) < 0):
        raise WorkError(f"tokenizer produced ids outside 0..{vocab - 1}")
    tokens, sizes = frame(ids, lengths, framing.eos, framing.dtype)
    chars = sum(map(len, texts))
    fraction, seed = framing.validation, framing.seed
    if fraction <= 0:
        return Encoded({"train": (tokens, sizes)}, chars)
    flags = np.fromiter(
        (is_validation(t, seed, fraction) for t in texts), dtype=bool, count=len(texts)
    )
    if not flags.any():
        return Encoded({"train": (tokens, sizes)}, chars)
    per_token = np.repeat(flags, sizes)
    return Encoded(
        {
            "train": (tokens[~per_token], sizes[~flags]),
            "validation": (tokens[per_token], sizes[flags]),
        },
        chars,
    )


def text_chunks(
    records: Iterator[Record], chunk_chars: int, batch_docs: int = 100_000
) -> Iterator[list[str]]:
    """The non-empty texts of `records` in lists of about `chunk_chars` characters."""
    texts: list[str] = []
    size = 0
    for rec in records:
        if not rec.text:
            continue
        texts.append(rec.text)
        size += len(rec.text)
        if size >= chunk_chars or len(texts) >= batch_docs:
            yield texts
            texts, size = [], 0
    if texts:
        yield texts


Columns = tuple[list[str | None], list[str | None], list[str | None], list[str]]


def to_columns(records: list[Record]) -> Columns:
    """Records as four lists (texts, labels, targets, sources): what goes to and from a worker
    process, since lists of strings cross a pipe several times faster than record objects."""
    return (
        [r.text for r in records],
        [r.label for r in records],
        [r.target for r in records],
        [r.source for r in records],
    )


def from_columns(columns: Columns) -> list[Record]:
    """The records `to_columns` took apart."""
    return [Record(*fields) for fields in zip(*columns, strict=True)]


def record_chunks(
    records: Iterator[Record], chunk_chars: int, batch_docs: int = 100_000
) -> Iterator[Columns]:
    """`records` (all of them, empty ones too: cleaners decide) in chunks of about `chunk_chars`
    characters, as `to_columns` lays them out."""
    chunk: list[Record] = []
    size = 0
    for rec in records:
        chunk.append(rec)
        size += len(rec.text or "") + len(rec.target or "")
        if size >= chunk_chars or len(chunk) >= batch_docs:
            yield to_columns(chunk)
            chunk, size = [], 0
    if chunk:
        yield to_columns(chunk)
