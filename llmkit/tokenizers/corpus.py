"""Training corpora of the tokenizers: one rule for naming files and one feeder for the trainers.

A corpus is an iterator of texts, or file names, glob patterns (`**` recursive) and directories
(every file under them whose name does not start with a dot), each expanded in sorted order.
`.gz`, `.bz2` and `.xz` files are decompressed. The BPE, WordPiece and char trainers all read
their corpus through this module, so the same corpus gives each of them the same text.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from llmkit.errors import UsageError

#: What a trainer accepts: file names, globs and directories, or an iterator of texts.
Corpus = str | Path | Iterable[str | Path] | Iterator[str]

_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_TEXTS_HINT = "to train on texts, pass an iterator of strings, e.g. iter(texts)"
_BATCH_CHARS = 8 << 20
_BATCH_TEXTS = 20_000
_BLOCK = 8 << 20


class CorpusTrainer(Protocol):
    """The feeding side of a Rust trainer (`_rust.BpeTrainer`, `_rust.WordPieceTrainer`)."""

    def feed_texts(self, texts: list[str]) -> object:
        """Count the words of these texts."""
        ...

    def feed_file(self, path: str) -> object:
        """Count the words of a plain UTF-8 file, streamed by the core."""
        ...

    def feed_bytes(self, data: bytes) -> object:
        """Count the words of UTF-8 bytes that end at a line end."""
        ...


def is_texts(corpus: object) -> bool:
    """Whether `corpus` is texts (an iterator or other non-sequence iterable), not file names."""
    return isinstance(corpus, Iterator) or (
        not isinstance(corpus, str | Path | Sequence) and isinstance(corpus, Iterable)
    )


def _files_under(directory: str) -> list[Path]:
    """Every file below `directory` whose name does not start with a dot, sorted."""
    return sorted(
        Path(root) / name
        for root, _, names in os.walk(directory)
        for name in names
        if not name.startswith(".")
    )


def expand_corpus(
    files: str | Path | Iterable[str | Path], *, texts_hint: bool = True
) -> list[Path]:
    """The files a corpus names: files as given, globs and directories expanded and sorted.

    A name that matches nothing is a `UsageError` naming it; with `texts_hint` (the Python API)
    it also says how to pass texts instead of file names.
    """
    items = [files] if isinstance(files, str | Path) else list(files)
    out: list[Path] = []
    for item in items:
        if not isinstance(item, str | Path):
            raise UsageError(
                f"corpus item {item!r} is not a file name; pass paths or an iterator of texts"
            )
        name = os.path.expanduser(str(item))
        if os.path.isfile(name):
            out.append(Path(name))
        elif os.path.isdir(name):
            found = _files_under(name)
            if not found:
                raise UsageError(
                    f"corpus {name!r} is a directory; pass a glob or a directory that holds "
                    "files (this one has none)"
                )
            out.extend(found)
        elif glob.has_magic(name):
            found = sorted(Path(m) for m in glob.glob(name, recursive=True) if os.path.isfile(m))
            if not found:
                raise UsageError(f"corpus glob {name!r} matches no file")
            out.extend(found)
        elif texts_hint:
            looks_like_text = len(name) > 200 or "\n" in name
            shown = name[:57] + "..." if looks_like_text else name
            raise UsageError(f"corpus file {shown!r} not found (no such file; {_TEXTS_HINT})")
        else:
            raise UsageError(f"{name}: no such file or directory")
    return out


def open_text(path: str | Path) -> IO[str]:
    """A corpus file as text (decompressed by its suffix); invalid UTF-8 becomes U+FFFD."""
    p = Path(path)
    opener = _OPENERS.get(p.suffix.lower())
    if opener is None:
        return open(p, encoding="utf-8", errors="replace")
    stream: IO[str] = opener(p, "rt", encoding="utf-8", errors="replace")
    return stream


def feed_texts(
    trainer: CorpusTrainer, texts: Iterable[str], progress: Callable[[str], None] | None = None
) -> None:
    """Feed texts in batches (memory bounded by one batch plus the distinct words)."""
    batch: list[str] = []
    size = 0
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise UsageError(f"training text #{i} is {type(text).__name__}, not str")
        batch.append(text)
        size += len(text)
        if size >= _BATCH_CHARS or len(batch) >= _BATCH_TEXTS:
            _call(trainer.feed_texts, batch)
            batch, size = [], 0
            if progress is not None:
                progress(f"counted {i + 1} texts")
    if batch:
        _call(trainer.feed_texts, batch)


def feed_file(trainer: CorpusTrainer, path: Path) -> None:
    """Feed one file: plain files are streamed by the core, compressed ones decompressed here."""
    opener = _OPENERS.get(path.suffix.lower())
    if opener is None:
        _call(trainer.feed_file, str(path))
        return
    try:
        with opener(path, "rb") as f:
            rest = b""
            while chunk := f.read(_BLOCK):
                data = rest + chunk
                cut = data.rfind(b"\n") + 1
                if cut:
                    _call(trainer.feed_bytes, data[:cut])
                rest = data[cut:]
            if rest:
                _call(trainer.feed_bytes, rest)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None


def feed_corpus(
    trainer: CorpusTrainer, corpus: Corpus, progress: Callable[[str], None] | None = None
) -> None:
    """Feed a whole corpus (texts, or the files `expand_corpus` names) to a trainer."""
    if is_texts(corpus):
        feed_texts(trainer, corpus, progress)  # type: ignore[arg-type]
        return
    from llmkit.progress import progress as progress_bar

    paths = expand_corpus(corpus)
    size = sum(path.stat().st_size for path in paths)
    with progress_bar(size, "tokenizer: counting", unit="B", unit_scale=True) as bar:
        for i, path in enumerate(paths, 1):
            if progress is not None:
                bar.line(f"counting {path} ({i}/{len(paths)})", progress)
            feed_file(trainer, path)
            bar.update(path.stat().st_size)


def _call(feed: Callable[[Any], object], arg: Any) -> None:
    """Run one feed call, turning the core's ValueError/OSError into a one-line UsageError."""
    try:
        feed(arg)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None


__all__ = ["Corpus", "expand_corpus", "feed_corpus", "feed_file", "feed_texts", "open_text"]
