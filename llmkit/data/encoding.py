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

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Encoded:
    """One chunk tokenized: all ids end to end, each document's length, which go to validation."""

    ids: np.ndarray
    lengths: np.ndarray
    validation: np.ndarray
    chars: int


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
    tok: Any, texts: list[str], seed: int, fraction: float, threads: int | None = None
) -> Encoded:
    """The chunk's ids and lengths, and a validation flag per document (`is_validation`)."""
    import numpy as np

    ids, lengths = encode_ids(tok, texts, threads)
    if fraction > 0:
        flags = np.fromiter(
            (is_validation(t, seed, fraction) for t in texts), dtype=bool, count=len(texts)
        )
    else:
        flags = np.zeros(len(texts), dtype=bool)
    return Encoded(ids, np.asarray(lengths, dtype=np.int64), flags, sum(map(len, texts)))


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


def record_chunks(
    records: Iterator[Record], chunk_chars: int, batch_docs: int = 100_000
) -> Iterator[list[Record]]:
    """`records` (all of them, empty ones too: cleaners decide) in lists of about `chunk_chars`."""
    chunk: list[Record] = []
    size = 0
    for rec in records:
        chunk.append(rec)
        size += len(rec.text or "") + len(rec.target or "")
        if size >= chunk_chars or len(chunk) >= batch_docs:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
