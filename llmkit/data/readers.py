"""Streaming readers (`dataset` components): plain text, JSONL, CSV/TSV, parallel text, HF datasets.

Every reader is an iterable of `Record`s that reads one line or one file at a time, so memory does not
grow with the corpus. Compressed files (.gz, .xz, .bz2) open transparently. Invalid UTF-8 is replaced
with U+FFFD and counted in the reader's `stats`; a problem the user must fix is a `UsageError` naming
the file and line.
"""

from __future__ import annotations

import bz2
import csv
import fnmatch
import glob
import gzip
import hashlib
import json
import lzma
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from llmkit.data.records import ReadStats, Record, decode_utf8
from llmkit.errors import UsageError

_OPENERS: dict[str, Callable[..., Any]] = {
    ".gz": gzip.open,
    ".xz": lzma.open,
    ".bz2": bz2.open,
}
_MISSING_FIELD_PROBE = 100
LINE_BLOCK = 1 << 20  # bytes read and decoded at a time by the one-record-per-line reader


def _open_error(path: str | Path, exc: OSError) -> Exception:
    """The one-line error for a file that cannot be opened, or `exc` itself if it is another
    kind of failure."""
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return UsageError(f"{path}: is a directory, expected a file")
    if isinstance(exc, PermissionError):
        return UsageError(f"{path}: permission denied")
    return exc


def open_binary(path: str | Path) -> IO[bytes]:
    """Open `path` for reading bytes, decompressing .gz/.xz/.bz2; a clear error when unreadable."""
    if not isinstance(path, Path):
        path = Path(path)
    opener = _OPENERS.get(path.suffix.lower())
    try:
        if opener is not None:
            return opener(path, "rb")
        return open(path, "rb")
    except OSError as exc:
        raise _open_error(path, exc) from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (as on disk, compressed or not), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _plain(path: Path) -> bool:
    """Whether `path` is read as it is on disk (not decompressed)."""
    return path.suffix.lower() not in _OPENERS


def _read_plain(path: Path) -> bytes:
    """A plain file's bytes by the OS calls alone (open, fstat, read, close): a third cheaper
    than through a Python file object, which counts over thousands of small files."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        parts = [os.read(fd, os.fstat(fd).st_size + 1)]
        while parts[-1]:  # to the end, should the file have grown
            parts.append(os.read(fd, 1 << 16))
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    finally:
        os.close(fd)
    return parts[0] if len(parts) <= 2 else b"".join(parts)


def _read_all(path: Path, digests: dict[str, str] | None = None) -> bytes:
    """The file's bytes; with `digests`, the SHA-256 of a plain file's bytes goes there too (by
    path), taken from what was read instead of reading the file again."""
    if _plain(path):
        raw = _read_plain(path)
        if digests is not None:
            digests[str(path)] = hashlib.sha256(raw).hexdigest()
        return raw
    with open_binary(path) as fh:
        try:
            data: bytes = fh.read()
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise UsageError(f"{path}: cannot read ({exc})") from None
    return data


def _blocks(path: Path, size: int, digests: dict[str, str] | None = None) -> Iterator[bytes]:
    """The file's bytes in blocks of `size`, then one empty block at the end (the SHA-256 of a
    plain file's bytes to `digests`, as `_read_all`)."""
    h = hashlib.sha256() if digests is not None and _plain(path) else None
    with open_binary(path) as fh:
        try:
            while block := fh.read(size):
                if h is not None:
                    h.update(block)
                yield block
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise UsageError(f"{path}: cannot read ({exc})") from None
    if h is not None and digests is not None:
        digests[str(path)] = h.hexdigest()
    yield b""


def _iter_lines(path: Path) -> Iterator[bytes]:
    with open_binary(path) as fh:
        try:
            yield from fh
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise UsageError(f"{path}: cannot read ({exc})") from None


def expand_paths(
    paths: Iterable[str | Path],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> list[Path]:
    """Files named by `paths` (files, glob patterns, directories searched recursively), sorted.

    `include`/`exclude` are glob patterns matched against the file name and the full path; a path
    or pattern that matches nothing is an error naming it.
    """
    include = list(include)
    exclude = list(exclude)
    excluded = _matcher(exclude)
    included = _matcher(include)

    def wanted(p: Path, from_dir: bool) -> bool:
        text = p.as_posix()
        if excluded(p.name, text):
            return False
        if include and from_dir:
            return included(p.name, text)
        return True

    out: list[Path] = []
    if isinstance(paths, str | Path):
        paths = [paths]
    for raw in paths:
        spec = os.path.expanduser(str(raw))
        if os.path.isdir(spec):
            top = str(Path(spec))
            found = [
                Path(path)
                for path, name in _walk(top)
                if not excluded(name, path) and (not include or included(name, path))
            ]
        elif os.path.exists(spec):
            if not os.path.isfile(spec):  # a device or a FIFO would be read for ever
                raise UsageError(
                    f"{spec}: not a regular file (a device, FIFO or socket); give files"
                )
            found = [Path(spec)] if wanted(Path(spec), False) else []
            if not found:
                continue
        elif glob.has_magic(spec):
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            found = [p for p in found if wanted(p, True)]
        else:
            raise UsageError(f"{spec}: no such file or directory")
        if not found:
            raise UsageError(f"{spec}: matches no files")
        out.extend(found)
    if not out:
        raise UsageError("no input files given")
    return out


def _matcher(patterns: list[str]) -> Callable[[str, str], bool]:
    """Whether a file name or its full path matches one of the glob `patterns` (as `fnmatch`
    matches them on POSIX, each pattern compiled once)."""
    tests = [re.compile(fnmatch.translate(os.path.normcase(pat))).match for pat in patterns]
    if os.path.normcase("A") != "A":  # Windows: names compared without case, as fnmatch does
        return lambda name, path: any(
            t(os.path.normcase(name)) or t(os.path.normcase(path)) for t in tests
        )
    return lambda name, path: any(t(name) or t(path) for t in tests)


def _walk(top: str) -> Iterator[tuple[str, str]]:
    """(path, name) of every regular file under directory `top` whose name does not start with a
    dot (symbolic links to files too; linked directories are not entered), in the order of
    sorting the paths as `Path`s (part by part); unreadable directories are skipped. The paths
    are spelt as `Path(top) / ...` spells them (``.`` as the top adds no prefix)."""
    try:
        with os.scandir(top) as it:
            entries = sorted((e.name, e) for e in it)
    except OSError:
        return
    for name, entry in entries:
        path = name if top == "." else os.path.join(top, name)
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(path)
            elif not name.startswith(".") and entry.is_file():
                yield path, name
        except OSError:
            continue


def _none_if_missing(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):  # chat messages: kept as JSON text, not Python's repr
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value != value:  # NaN from pandas-made files
        return None
    return str(value)


class TextReader:
    """Plain-text files: a document per file, per blank-line-separated paragraph, or per line.

    Args:
        paths: Files, glob patterns (``**`` allowed) or directories (searched recursively).
        unit: What one record is: a whole ``file``, a ``paragraph`` (blank-line separated) or a ``line``.
        include: Glob patterns a file found in a directory or glob must match (e.g. ``*.rst.gz``).
        exclude: Glob patterns of files to skip (e.g. ``*/translations/*``).
        skip_empty: Leave out records that are empty or only whitespace.
    """

    per_file = True  # a file's records depend on that file alone: files may be read apart
    digests: dict[str, str] | None = None  # set: plain files' SHA-256 by path, as they are read

    def __init__(
        self,
        paths: list[str],
        unit: Literal["file", "paragraph", "line"] = "file",
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        skip_empty: bool = True,
    ) -> None:
        self.files = expand_paths(paths, include or (), exclude or ())
        self.unit = unit
        self.skip_empty = skip_empty
        self.stats = ReadStats()

    def __iter__(self) -> Iterator[Record]:
        stats = self.stats
        for path in self.files:
            stats.files += 1
            name = str(path)
            if self.unit == "file":
                raw = _read_all(path, self.digests)
                stats.bytes += len(raw)
                yield from self._emit(decode_utf8(raw, stats), name)
            elif self.unit == "line":
                yield from self._lines(path, name)
            else:
                para: list[str] = []
                start = 1
                for i, raw in enumerate(_iter_lines(path), 1):
                    stats.bytes += len(raw)
                    line = decode_utf8(raw, stats)
                    if line.strip():
                        if not para:
                            start = i
                        para.append(line)
                    elif para:
                        yield from self._emit("".join(para).rstrip("\r\n"), f"{name}:{start}")
                        para = []
                if para:
                    yield from self._emit("".join(para).rstrip("\r\n"), f"{name}:{start}")

    def _lines(self, path: Path, name: str) -> Iterator[Record]:
        """A record per line, the file read and decoded in blocks (a block with invalid UTF-8 is
        decoded line by line, so the counts are those of reading line by line)."""
        stats = self.stats
        skip_empty = self.skip_empty
        lineno = 0
        parts: list[bytes] = []  # the start of a line that the next blocks continue
        for block in _blocks(path, LINE_BLOCK, self.digests):
            stats.bytes += len(block)
            if block:
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    parts.append(block)
                    continue
                data = b"".join([*parts, block[:cut]]) if parts else block[:cut]
                parts = [block[cut:]] if cut < len(block) else []
            else:  # the end: a last line without a newline, if any
                data = b"".join(parts)
                if not data:
                    return
            try:
                lines = data.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                lines = [decode_utf8(raw, stats) for raw in data.split(b"\n")]
            if block:
                lines.pop()  # the empty string after the block's last newline
            for line in lines:
                lineno += 1
                text = line.rstrip("\r")
                if skip_empty and (not text or text.isspace()):
                    continue
                stats.records += 1
                yield Record(text, source=f"{name}:{lineno}")

    def _emit(self, text: str, source: str) -> Iterator[Record]:
        if self.skip_empty and (not text or text.isspace()):
            return
        self.stats.records += 1
        yield Record(text, source=source)


class JsonlReader:
    """JSON Lines: one object per line, with a text field and optional label/target fields.

    Args:
        paths: Files, glob patterns or directories of ``.jsonl`` files (compressed allowed).
        field: The field holding the text.
        label_field: The field holding a class label (sequence classification).
        target_field: The field holding a target text (seq2seq).
        on_error: A line that is not a JSON object: ``error`` stops naming file and line; ``skip``
            skips it and counts it in the report.
        include: Glob patterns a file found in a directory or glob must match.
        exclude: Glob patterns of files to skip.
    """

    per_file = True  # a file's records depend on that file alone: files may be read apart

    def __init__(
        self,
        paths: list[str],
        field: str = "text",
        label_field: str | None = None,
        target_field: str | None = None,
        on_error: Literal["error", "skip"] = "error",
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> None:
        self.files = expand_paths(paths, include or (), exclude or ())
        self.field = field
        self.label_field = label_field
        self.target_field = target_field
        self.on_error = on_error
        self.stats = ReadStats()

    def __iter__(self) -> Iterator[Record]:
        stats = self.stats
        for path in self.files:
            stats.files += 1
            seen_field = False
            seen_keys: set[str] = set()
            objects = 0
            for i, raw in enumerate(_iter_lines(path), 1):
                stats.bytes += len(raw)
                line = decode_utf8(raw, stats)
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
                except ValueError as exc:
                    where = f"{path}:{i}"
                    if self.on_error == "skip":
                        stats.skip(where)
                        continue
                    msg = str(exc).splitlines()[0]
                    raise UsageError(
                        f"{where}: not a JSON object ({msg}); fix the line or skip bad lines (--on-error skip)"
                    ) from None
                objects += 1
                if self.field in obj:
                    seen_field = True
                elif not seen_field and objects <= _MISSING_FIELD_PROBE:
                    seen_keys.update(obj)
                    if objects == _MISSING_FIELD_PROBE:
                        self._missing_field(path, seen_keys)
                stats.records += 1
                yield Record(
                    _none_if_missing(obj.get(self.field)),
                    label=_none_if_missing(obj.get(self.label_field)) if self.label_field else None,
                    target=_none_if_missing(obj.get(self.target_field))
                    if self.target_field
                    else None,
                    source=f"{path}:{i}",
                )
            if objects and not seen_field:
                self._missing_field(path, seen_keys)

    def _missing_field(self, path: Path, keys: set[str]) -> None:
        listing = ", ".join(sorted(keys)) or "(none)"
        raise UsageError(f"{path}: no field '{self.field}' in its objects; fields: {listing}")


class CsvReader:
    """CSV or TSV with a header row; records take the named text (and label/target) columns.

    Args:
        paths: Files, glob patterns or directories (compressed allowed).
        text_column: Column holding the text.
        label_column: Column holding a class label.
        target_column: Column holding a target text (seq2seq).
        delimiter: Field separator; default a tab for ``.tsv``/``.tab`` files, else a comma.
        include: Glob patterns a file found in a directory or glob must match.
        exclude: Glob patterns of files to skip.
    """

    per_file = True  # a file's records depend on that file alone: files may be read apart

    def __init__(
        self,
        paths: list[str],
        text_column: str = "text",
        label_column: str | None = None,
        target_column: str | None = None,
        delimiter: str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> None:
        self.files = expand_paths(paths, include or (), exclude or ())
        self.text_column = text_column
        self.label_column = label_column
        self.target_column = target_column
        self.delimiter = delimiter
        self.stats = ReadStats()

    def _delimiter(self, path: Path) -> str:
        if self.delimiter:
            return self.delimiter
        suffixes = [s.lower() for s in path.suffixes]
        return "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","

    def __iter__(self) -> Iterator[Record]:
        stats = self.stats
        csv.field_size_limit(2**31 - 1)
        for path in self.files:
            stats.files += 1

            def lines(path: Path = path) -> Iterator[str]:
                for raw in _iter_lines(path):
                    stats.bytes += len(raw)
                    yield decode_utf8(raw, stats)

            reader = csv.reader(lines(), delimiter=self._delimiter(path))
            try:
                header = next(reader)
            except StopIteration:
                raise UsageError(f"{path}: empty file, expected a header row") from None
            except csv.Error as exc:
                raise UsageError(f"{path}:1: bad CSV ({exc})") from None
            cols = {name.strip().lstrip("\ufeff"): i for i, name in enumerate(header)}
            wanted = [self.text_column, self.label_column, self.target_column]
            for name in wanted:
                if name is not None and name not in cols:
                    listing = ", ".join(cols) or "(none)"
                    raise UsageError(f"{path}: no column '{name}'; columns: {listing}")
            ti = cols[self.text_column]
            li = cols[self.label_column] if self.label_column else None
            gi = cols[self.target_column] if self.target_column else None
            try:
                for row in reader:
                    if not row:
                        continue

                    def cell(i: int | None, row: list[str] = row) -> str | None:
                        return row[i] if i is not None and i < len(row) else None

                    stats.records += 1
                    yield Record(
                        cell(ti),
                        label=cell(li),
                        target=cell(gi),
                        source=f"{path}:{reader.line_num}",
                    )
            except csv.Error as exc:
                raise UsageError(f"{path}:{reader.line_num}: bad CSV ({exc})") from None


class ParallelReader:
    """Parallel text: aligned source and target files, or one file with both sides per line.

    Args:
        source: Source-side files (one sentence per line), aligned line by line with `target`.
        target: Target-side files, as many lines as `source`.
        paths: Instead of source/target: files holding both sides on each line, split at `separator`.
        separator: Splits a line of `paths` into source and target (e.g. ``" :: "`` or a tab).
        swap: Read the sides the other way round (target first on each line).
        comment: Lines of `paths` starting with this are skipped (e.g. ``#``).
        subentries: Both sides hold aligned sub-entries split by this (e.g. ``" | "``): each
            aligned pair becomes a record; entries whose sides differ in count are skipped.
    """

    def __init__(
        self,
        source: list[str] | None = None,
        target: list[str] | None = None,
        paths: list[str] | None = None,
        separator: str = "\t",
        swap: bool = False,
        comment: str | None = None,
        subentries: str | None = None,
    ) -> None:
        if paths:
            if source or target:
                raise UsageError("parallel reader: give either paths or source+target, not both")
            self.files = expand_paths(paths)
            self.pairs: list[tuple[Path, Path]] = []
        else:
            if not source or not target:
                raise UsageError("parallel reader: give source and target files (or paths)")
            src, tgt = expand_paths(source), expand_paths(target)
            if len(src) != len(tgt):
                raise UsageError(
                    f"parallel reader: {len(src)} source files but {len(tgt)} target files"
                )
            self.files = src + tgt
            self.pairs = list(zip(src, tgt, strict=True))
        self.separator = separator
        self.swap = swap
        self.comment = comment
        self.subentries = subentries
        self.stats = ReadStats()

    def __iter__(self) -> Iterator[Record]:
        stats = self.stats
        if self.pairs:
            for spath, tpath in self.pairs:
                stats.files += 2
                slines, tlines = _iter_lines(spath), _iter_lines(tpath)
                i = 0
                while True:
                    s, t = next(slines, None), next(tlines, None)
                    if s is None or t is None:
                        break
                    i += 1
                    stats.bytes += len(s) + len(t)
                    stats.records += 1
                    src = decode_utf8(s, stats).rstrip("\r\n")
                    tgt = decode_utf8(t, stats).rstrip("\r\n")
                    if self.swap:
                        src, tgt = tgt, src
                    yield Record(src, target=tgt, source=f"{spath}:{i}")
                if s is not None or t is not None:
                    ns = i + (s is not None) + sum(1 for _ in slines)
                    nt = i + (t is not None) + sum(1 for _ in tlines)
                    raise UsageError(
                        f"parallel reader: {spath} has {ns} lines but {tpath} has "
                        f"{nt}; the files must be aligned line by line"
                    )
            return
        for path in self.files:
            stats.files += 1
            for i, raw in enumerate(_iter_lines(path), 1):
                stats.bytes += len(raw)
                line = decode_utf8(raw, stats).rstrip("\r\n")
                if not line.strip() or (self.comment and line.startswith(self.comment)):
                    continue
                src, sep, tgt = line.partition(self.separator)
                if not sep:
                    stats.skip(f"{path}:{i}")
                    continue
                if self.swap:
                    src, tgt = tgt, src
                if self.subentries is None:
                    stats.records += 1
                    yield Record(src.strip(), target=tgt.strip(), source=f"{path}:{i}")
                    continue
                srcs, tgts = src.split(self.subentries), tgt.split(self.subentries)
                if len(srcs) != len(tgts):
                    stats.skip(f"{path}:{i}")
                    continue
                for k, (a, b) in enumerate(zip(srcs, tgts, strict=True)):
                    stats.records += 1
                    yield Record(a.strip(), target=b.strip(), source=f"{path}:{i}.{k + 1}")


class HFReader:
    """A Hugging Face `datasets` dataset (optional: needs ``pip install datasets``).

    Args:
        path: A dataset name or script for ``datasets.load_dataset``, or a directory saved with
            ``save_to_disk``.
        split: Which split to read.
        field: Column holding the text.
        label_field: Column holding a class label.
        target_field: Column holding a target text.
        streaming: Stream rows instead of loading the split (when loading by name).
        dataset: An already-built ``datasets.Dataset`` (Python use), instead of `path`.
    """

    def __init__(
        self,
        path: str | None = None,
        split: str = "train",
        field: str = "text",
        label_field: str | None = None,
        target_field: str | None = None,
        streaming: bool = True,
        dataset: Any = None,
    ) -> None:
        if dataset is None and path is None:
            raise UsageError("hf reader: give a dataset path/name or a dataset object")
        self.path = path
        self.split = split
        self.field = field
        self.label_field = label_field
        self.target_field = target_field
        self.streaming = streaming
        self.dataset = dataset
        self.files: list[Path] = []
        self.stats = ReadStats()

    def _load(self) -> Any:
        if self.dataset is not None:
            return self.dataset
        try:
            import datasets
        except ImportError:
            raise UsageError(
                "the 'hf' reader needs the datasets library: pip install 'llmkit[hf]'"
            ) from None
        assert self.path is not None
        if os.path.isdir(self.path) and os.path.exists(
            os.path.join(self.path, "dataset_info.json")
        ):
            ds = datasets.load_from_disk(self.path)
            return ds[self.split] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(self.path, split=self.split, streaming=self.streaming)

    def __iter__(self) -> Iterator[Record]:
        ds = self._load()
        names = getattr(ds, "column_names", None)
        if names:
            for name in (self.field, self.label_field, self.target_field):
                if name is not None and name not in names:
                    raise UsageError(
                        f"{self.path or 'dataset'}: no column '{name}'; columns: {', '.join(names)}"
                    )
        for i, row in enumerate(ds):
            self.stats.records += 1
            yield Record(
                _none_if_missing(row.get(self.field)),
                label=_none_if_missing(row.get(self.label_field)) if self.label_field else None,
                target=_none_if_missing(row.get(self.target_field)) if self.target_field else None,
                source=f"{self.path or 'dataset'}[{i}]",
            )


Reader = TextReader | JsonlReader | CsvReader | ParallelReader | HFReader

FORMATS = {"text": "text", "jsonl": "jsonl", "csv": "csv", "tsv": "csv", "parallel": "parallel"}
