"""Cleaning and tokenizing chunks of records in worker processes, the results in reading order.

The parent writes the shards; each worker reads the files it is given as paths (the parent reads
the rest: see `llmkit.data.reading`), cleans a chunk with the cleaners that look at one document
at a time (those before the first cross-document one, dedup) and, when no cleaner is left for the
parent, tokenizes it with the Rust encoder on one thread and picks each document's split. At most
two chunks per worker are in flight, so memory stays flat, and results are taken in the order the
chunks were read, so the output is the same for any number of workers. Workers are forked, so they
share the parent's reader, cleaners, tokenizer and registered plugins without loading them again.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from llmkit.data.cleaners import Cleaner
from llmkit.data.encoding import Columns, Encoded, Framing, encode_chunk, from_columns, to_columns
from llmkit.data.pipeline import CleaningPipeline, StepReport
from llmkit.data.reading import Files, read_files
from llmkit.data.records import ReadStats, Record
from llmkit.errors import WorkError

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def can_fork() -> bool:
    """Whether worker processes can be forked here (not on Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


def ahead(cleaners: list[Cleaner]) -> list[Cleaner]:
    """The cleaners, from the start of `cleaners`, that only keep or drop records and judge them by
    `features` of each record alone: workers compute those features for them."""
    out: list[Cleaner] = []
    for cleaner in cleaners:
        if (
            cleaner.changes_text
            or not hasattr(cleaner, "features")
            or not hasattr(cleaner, "given")
        ):
            break
        out.append(cleaner)
    return out


class Given:
    """The features workers computed for one main-process cleaner, found again by record: chunk
    by chunk, in reading order, each chunk forgotten once the cleaner has passed it."""

    def __init__(self) -> None:
        self._chunks: deque[dict[int, tuple[Record, int, Any]]] = deque()

    def add(self, records: list[Record], features: Any) -> None:
        """Remember one chunk's records and their features."""
        self._chunks.append({id(r): (r, i, features) for i, r in enumerate(records)})

    def __call__(self, batch: list[Record]) -> list[Any] | None:
        """Each record's features, or None if one of them is not known (the cleaner computes)."""
        out: list[Any] = []
        first = -1
        for rec in batch:
            for k, table in enumerate(self._chunks):
                hit = table.get(id(rec))
                if hit is not None and hit[0] is rec:
                    out.append(hit[2][hit[1]])
                    first = k if first < 0 else first
                    break
            else:
                return None
        for _ in range(max(first, 0)):  # chunks before this batch's: passed
            self._chunks.popleft()
        return out


def local_head(cleaners: list[Cleaner]) -> int:
    """How many leading cleaners judge each document alone (a worker may run them)."""
    for i, cleaner in enumerate(cleaners):
        if getattr(cleaner, "cross_document", False):
            return i
    return len(cleaners)


@dataclass
class Work:
    """What each worker does to a chunk: its cleaners, then (if `tokenizer`) encoding and split."""

    cleaners: list[Cleaner]
    batch_size: int
    max_examples: int
    tokenizer: Any
    framing: Framing
    ahead: list[Cleaner]  # main-process cleaners whose `features` the workers compute
    reader: Any = None  # what reads the `Files` units (a copy per unit)


_WORK: Work | None = None


def _ignore_interrupt() -> None:
    """Workers leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


Done = tuple[
    list[StepReport], Encoded | Columns, list[Any], ReadStats | None, dict[str, str]
]  # what `run_chunk` returns


def run_chunk(unit: Columns | Files) -> Done:
    """In a worker: read (a `Files` unit) and clean one chunk; its step reports and its ids, or
    the kept records and the `features` of the main process's first cleaners (dedup hashes and
    signatures); and for a `Files` unit, the reader's counts and the files' SHA-256."""
    work = _WORK
    if work is None:
        raise RuntimeError("run_chunk runs in a worker started by `pool`")
    stats: ReadStats | None = None
    hashes: dict[str, str] = {}
    if isinstance(unit, Files):
        records, stats, hashes = read_files(work.reader, unit)
    else:
        records = from_columns(unit)
    pipeline = CleaningPipeline(work.cleaners, work.batch_size, work.max_examples)
    kept = list(pipeline.run(records))
    if work.tokenizer is None:
        features = [cleaner.features(kept) for cleaner in work.ahead]  # type: ignore[attr-defined]
        return pipeline.steps, to_columns(kept), features, stats, hashes
    texts = [r.text for r in kept if r.text]
    encoded = encode_chunk(work.tokenizer, texts, work.framing, 1)
    return pipeline.steps, encoded, [], stats, hashes


def pool(work: Work, workers: int) -> ProcessPoolExecutor:
    """`workers` forked processes that run `run_chunk` with `work`."""
    global _WORK
    _WORK = work  # inherited by the forked workers
    executor = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_interrupt
    )
    executor.submit(int)  # forks every worker now, before the caller starts any thread
    return executor


def release() -> None:
    """Forget the parent's copy of the work once the workers are started."""
    global _WORK
    _WORK = None


def ordered(
    executor: Executor, fn: Callable[[T], R], items: Iterable[tuple[Any, T]], depth: int
) -> Iterator[tuple[Any, R]]:
    """(tag, fn(item)) for each (tag, item), in order, with at most `depth` items in flight."""
    pending: deque[tuple[Any, Future[R]]] = deque()
    try:
        for tag, item in items:
            pending.append((tag, executor.submit(fn, item)))
            if len(pending) >= depth:
                done_tag, fut = pending.popleft()
                yield done_tag, fut.result()
        while pending:
            done_tag, fut = pending.popleft()
            yield done_tag, fut.result()
    except BrokenProcessPool:
        raise WorkError(
            "a worker process died (out of memory, or killed); run again with fewer --workers"
        ) from None
    finally:
        for _, fut in pending:
            fut.cancel()


def merge_steps(into: list[StepReport], parts: list[StepReport], max_examples: int) -> None:
    """Add a chunk's step reports to the run's, keeping the run's first examples in order."""
    for total, part in zip(into, parts, strict=True):
        total.records_in += part.records_in
        total.records_out += part.records_out
        total.changed += part.changed
        total.chars_in += part.chars_in
        total.chars_out += part.chars_out
        room = max_examples - len(total.examples)
        if room > 0:
            total.examples.extend(part.examples[:room])
