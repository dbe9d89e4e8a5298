"""Stage a directory, then publish it in one rename: an output directory is complete or absent.

A user's own folder is never replaced: only an empty one, or an earlier output of the same kind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from llmkit.atomic import current_umask
from llmkit.errors import UsageError


@contextlib.contextmanager
def staged_dir(target: str | Path, ours: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """A fresh hidden directory beside `target` to write an output into, published on success.

    When the block ends, the directory gets the modes the umask allows and replaces `target` in one
    rename (`publish_dir`: only an empty `target` or one `ours` recognises); if the block raises,
    the staged directory is removed and `target` is left as it was.
    """
    where = Path(target).absolute()
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.", dir=where.parent))
    try:
        yield tmp
        default_permissions(tmp)
        publish_dir(tmp, Path(target), ours, what)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def default_permissions(directory: Path) -> None:
    """Give the directory and its files the modes the umask allows: mkdtemp makes a directory
    private, and safetensors writes its files 0600."""
    umask = current_umask()
    directory.chmod(0o777 & ~umask)
    for file in directory.iterdir():
        file.chmod((0o777 if file.is_dir() else 0o666) & ~umask)  # a sharded checkpoint's DCP dir
