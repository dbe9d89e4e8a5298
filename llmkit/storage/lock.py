"""One run per output directory: `OUT/.lock`, held with flock for as long as the run lasts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from llmkit.errors import UsageError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def output_lock(directory: Path) -> Iterator[Path]:
    """Hold `directory/.lock` exclusively; a UsageError at once if another process holds it.

    The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
    stale lock file never blocks a rerun. The file holds the holder's pid, for the error.
    """
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise UsageError(
                f"{directory}: another llmkit run (pid {holder}) is using this output directory "
                f"({path} is locked); wait for it to finish or choose another output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)
