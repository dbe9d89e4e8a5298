"""Which inputs `prepare`'s workers read themselves, and the reading of one part of the inputs.

With a reader whose files are read independently (`per_file`), runs of small plain files go to
the workers as paths: each worker reads and hashes them with its own copy of the reader, so
reading runs on every core instead of in the main process. A compressed file or one larger than a
chunk is read in the main process, in chunks of records, as before. The reader's counts of every
part are added to the run's in reading order, so the report is the same for any worker count.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.data.encoding import Columns, record_chunks
from llmkit.data.readers import _plain, file_sha256
from llmkit.data.records import ReadStats, Record

MAX_SKIPPED_EXAMPLES = 5  # as ReadStats.skip keeps them


@dataclass(frozen=True)
class Files:
    """A run of input files (paths as text) that a worker reads, and hashes when `hashing`."""

    paths: list[str]
    hashing: bool


def reads_apart(reader: Any) -> bool:
    """Whether `reader`'s files can be read apart from one another (each file's records depend
    on that file alone), by copies of the reader in other processes."""
    return bool(getattr(reader, "per_file", False) and getattr(reader, "files", None))


def _part(reader: Any, paths: list[Path], digests: dict[str, str] | None) -> Any:
    """A copy of `reader` over `paths` alone, with counts of its own."""
    part = copy.copy(reader)
    part.files = paths
    part.stats = ReadStats()
    if hasattr(part, "digests"):
        part.digests = digests
    return part


def read_files(reader: Any, files: Files) -> tuple[list[Record], ReadStats, dict[str, str]]:
    """In a worker: the records of `files` read by a copy of `reader`, its counts, and each
    file's SHA-256 (when hashing; a plain file's from the bytes the reader read)."""
    digests: dict[str, str] | None = {} if files.hashing else None
    paths = [Path(p) for p in files.paths]
    part = _part(reader, paths, digests)
    records = list(part)
    if digests is None:
        return records, part.stats, {}
    for path, text in zip(paths, files.paths, strict=True):
        if text not in digests:
            digests[text] = file_sha256(path)
    return records, part.stats, digests


def merge_stats(into: ReadStats, part: ReadStats) -> None:
    """Add one part's reader counts to the run's, keeping the run's first skipped lines."""
    into.files += part.files
    into.records += part.records
    into.bytes += part.bytes
    into.invalid_utf8 += part.invalid_utf8
    into.invalid_utf8_records += part.invalid_utf8_records
    into.skipped_lines += part.skipped_lines
    room = MAX_SKIPPED_EXAMPLES - len(into.skipped_examples)
    if room > 0:
        into.skipped_examples.extend(part.skipped_examples[:room])


class ReadPlan:
    """The inputs in reading order as work units: `Files` runs of small plain files (about
    `limit` bytes each) for a worker to read, and chunks of records (`Columns`) of the other
    files, read here. Each unit is tagged with the counts of the files read here since the unit
    before it; `pending` holds those after the last unit. `hashes` collects the SHA-256 of the
    files read here (when `hashing`); a worker returns those of the files it read."""

    def __init__(self, reader: Any, sizes: list[int], limit: int, hashing: bool) -> None:
        self.reader = reader
        self.sizes = sizes
        self.limit = limit
        self.hashing = hashing
        self.pending = ReadStats()
        self.hashes: dict[str, str] = {}

    def _take_pending(self) -> ReadStats:
        pending, self.pending = self.pending, ReadStats()
        return pending

    def __iter__(self) -> Iterator[tuple[ReadStats, Columns | Files]]:
        run: list[str] = []
        run_bytes = 0
        for path, size in zip(self.reader.files, self.sizes, strict=True):
            if size <= self.limit and _plain(path):
                run.append(str(path))
                run_bytes += size
                if run_bytes >= self.limit:
                    yield self._take_pending(), Files(run, self.hashing)
                    run, run_bytes = [], 0
                continue
            if run:
                yield self._take_pending(), Files(run, self.hashing)
                run, run_bytes = [], 0
            part = _part(self.reader, [path], self.hashes if self.hashing else None)
            for columns in record_chunks(iter(part), self.limit):
                yield self._take_pending(), columns
            merge_stats(self.pending, part.stats)
            if self.hashing and str(path) not in self.hashes:
                self.hashes[str(path)] = file_sha256(path)
        if run:
            yield self._take_pending(), Files(run, self.hashing)
