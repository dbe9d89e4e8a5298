"""Never half-written files: write beside the target, then rename over it in one step."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from llmkit.errors import UsageError


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and `os.replace`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private; a file is not
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` as UTF-8 (newlines as given) atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """Write `data` as JSON (UTF-8, keys in order given) atomically."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def publish_dir(src: Path, dst: Path, ours: Callable[[Path], bool], what: str) -> None:
    """Move the finished directory `src` to `dst` in one rename.

    An existing `dst` is replaced only when it is empty or `ours(dst)` says it is an earlier output
    of the same kind (`what`, for the error), so a user's own folder is never deleted.
    """
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise UsageError(f"{dst}: exists and is not a directory; choose another output path")
    target = dst.absolute()
    if not target.exists():
        os.replace(src, target)
        return
    if any(target.iterdir()) and not ours(target):
        raise UsageError(
            f"{dst}: directory is not empty and is not {what}; refusing to replace it "
            "(choose a new output directory)"
        )
    old = target.with_name(f".{target.name}.old.{os.getpid()}")
    os.replace(target, old)
    os.replace(src, target)
    shutil.rmtree(old, ignore_errors=True)


def holds_only(directory: Path, names: Iterable[str]) -> bool:
    """True if every entry of `directory` is one of `names` (the files an output of ours has)."""
    allowed = set(names)
    return all(entry.name in allowed for entry in directory.iterdir())


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_permissions(directory: Path) -> None:
    """Give the directory and its files the modes the umask allows: mkdtemp makes a directory
    private, and safetensors writes its files 0600."""
    umask = current_umask()
    directory.chmod(0o777 & ~umask)
    for file in directory.iterdir():
        file.chmod(0o666 & ~umask)
