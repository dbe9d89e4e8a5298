"""Progress of long tasks: a live tqdm bar on a terminal, today's plain log lines elsewhere.

One rule for every task (training, tokenizer training, data preparation, evaluation, batched
generation, imports): when standard error is a terminal a bar shows the count, rate and time left;
when it is not (CI, a log file) no bar is drawn and the task's plain lines are printed as before;
`llmkit --quiet` (or LLMKIT_QUIET=1) shows neither. Under torchrun only rank 0 draws.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

ENV_QUIET = "LLMKIT_QUIET"
T = TypeVar("T")

_quiet: bool | None = None


def set_quiet(quiet: bool | None) -> None:
    """True: no bars and no progress lines (the CLI's `--quiet`; results still print); None:
    follow LLMKIT_QUIET."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """True under `--quiet` or LLMKIT_QUIET=1."""
    if _quiet is not None:
        return _quiet
    return os.environ.get(ENV_QUIET, "") not in ("", "0")


def is_rank_zero() -> bool:
    """True unless this is a torchrun worker other than rank 0."""
    return os.environ.get("RANK", "0") in ("", "0")


def draws_bars() -> bool:
    """A live bar is drawn: not quiet, rank 0, and standard error is a terminal."""
    stream = sys.stderr
    return not is_quiet() and is_rank_zero() and hasattr(stream, "isatty") and stream.isatty()


class Progress:
    """One task's progress: `update(n)` as work is done, `show(**values)` for figures in the bar
    (loss, lr, tokens/s), `line(text, log)` for the plain line a log step prints off a terminal."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        unit_scale: bool = False,
    ) -> None:
        self.live = draws_bars()
        self.quiet = is_quiet() or not is_rank_zero()
        self._bar: Any = None
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                initial=initial,
                unit_scale=unit_scale,
                leave=True,
                file=sys.stderr,
            )

    def update(self, n: int | float = 1) -> None:
        """Count `n` more units of work done."""
        if self._bar is not None:
            self._bar.update(n)

    def reach(self, done: int | float) -> None:
        """Set the count of work done to `done` (for tasks that report a running total)."""
        if self._bar is not None and done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def show(self, **values: Any) -> None:
        """Show `values` after the bar's counts (floats to 4 significant digits)."""
        if self._bar is not None:
            shown = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in values.items()}
            self._bar.set_postfix(shown, refresh=False)

    def line(self, text: str, log: Callable[[str], None]) -> None:
        """Print `text` through `log` when no bar is drawn and not quiet (the plain log line)."""
        if not self.live and not self.quiet:
            log(text)

    def write(self, text: str, log: Callable[[str], None]) -> None:
        """Print `text` (not quiet): above the bar on a terminal, through `log` elsewhere."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        elif not self.quiet:
            log(text)

    def close(self) -> None:
        """Finish the bar (it stays on screen with its final counts and time)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress(
    total: int | None, desc: str, unit: str = "it", initial: int = 0, unit_scale: bool = False
) -> Progress:
    """A progress bar for a task of `total` units (None: unknown, the bar shows count and rate)."""
    return Progress(total, desc, unit, initial=initial, unit_scale=unit_scale)


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Yield `items`, counting each in a bar (its length as total when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.update(1)
