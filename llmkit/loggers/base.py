"""The logger contract and how a pipeline's `train.loggers` list becomes logger objects."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

Scalars = Mapping[str, float]


class Logger:
    """Receives a run's scalars: `log` at each training log step, `log_eval` once after the eval
    stage, `close` at the end of each stage. Built as `cls(run_dir, **params)`."""

    name = "logger"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def log(self, step: int, scalars: Scalars) -> None:
        """Record one training log step: loss, lr, tokens/s, tokens, grad_norm, eval_loss, ..."""
        raise NotImplementedError

    def log_eval(self, step: int, metrics: Scalars) -> None:
        """Record the eval stage's metrics (keys `eval/<metric>`) at the run's last step."""
        self.log(step, metrics)

    def close(self) -> None:
        """Flush and release files; called when the stage ends, also after an error."""


def spec_of(entry: Any) -> tuple[str, dict[str, Any]]:
    """A `train.loggers` entry (a name, or a mapping with `name` and the logger's parameters) as
    (name, parameters)."""
    if isinstance(entry, str):
        return entry, {}
    name = getattr(entry, "name", None)
    params = getattr(entry, "params", None)
    if isinstance(name, str) and isinstance(params, dict):
        return name, dict(params)
    if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
        return entry["name"], {k: v for k, v in entry.items() if k != "name"}
    raise TypeError(f"a logger is a name or {{name: ..., ...parameters}}, got {entry!r}")


def build_loggers(entries: Sequence[Any], run_dir: Path) -> list[Logger]:
    """The loggers named by `entries`, each built from the registry with `run_dir`."""
    import llmkit

    loggers: list[Logger] = []
    try:
        for entry in entries:
            name, params = spec_of(entry)
            loggers.append(llmkit.create("logger", name, Path(run_dir), **params))
    except BaseException:
        close_all(loggers)
        raise
    return loggers


def close_all(loggers: Sequence[Logger]) -> None:
    """Close every logger, even when one of them fails (the first error is raised after)."""
    error: BaseException | None = None
    for logger in loggers:
        try:
            logger.close()
        except Exception as exc:  # the other loggers still get to flush
            error = error or exc
    if error is not None:
        raise error


@contextlib.contextmanager
def open_loggers(
    entries: Sequence[Any], run_dir: Path, main: bool = True
) -> Iterator[list[Logger]]:
    """The run's loggers for one stage, closed when it ends (none off rank 0: one writer)."""
    loggers = build_loggers(entries, run_dir) if main else []
    try:
        yield loggers
    finally:
        close_all(loggers)


def log_eval_metrics(
    entries: Sequence[Any], run_dir: Path, step: int, metrics: Mapping[str, Any]
) -> dict[str, float]:
    """Hand the eval stage's numeric metrics, as `eval/<name>`, to every logger at `step`."""
    scalars = {
        f"eval/{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    if scalars:
        with open_loggers(entries, run_dir) as loggers:
            for logger in loggers:
                logger.log_eval(step, scalars)
    return scalars
