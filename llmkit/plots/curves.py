"""Training curves of one or more runs, overlaid: loss, eval loss, learning rate, tokens/s.

A run is a directory with the `metrics.jsonl` the trainer writes (one JSON object per log step:
`step`, `tokens`, `loss`, `lr`, `tokens_per_second`, `grad_norm`, `mfu` on a GPU of known peak,
and `eval_loss` at evaluation steps). Each metric gets a panel; every run is one colour in every
panel, so runs compare at a glance. The x axis is the optimizer step or the tokens seen. The eval
stage's metrics (`eval/<name>`, on the last step's line) are one number each, not a curve: they are
not drawn (`llmkit sweep` tables them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmkit.errors import UsageError
from llmkit.plots.figure import new_figure, save_png

METRICS_FILE = "metrics.jsonl"
XAxis = Literal["step", "tokens"]
X_KEYS = ("step", "tokens")
EVAL_STAGE_PREFIX = "eval/"  # the eval stage's final metrics: a value at the last step, no curve

#: Panels drawn first and their titles; any other numeric key (grad_norm, eval metrics) follows.
PANELS: dict[str, str] = {
    "loss": "training loss",
    "eval_loss": "eval loss",
    "lr": "learning rate",
    "tokens_per_second": "tokens/s",
    "grad_norm": "gradient norm",
}
_X_LABELS = {"step": "optimizer step", "tokens": "tokens seen"}


def metrics_path(run: str | Path) -> Path:
    """The metrics file of `run`: `RUN/metrics.jsonl`, or `run` itself when it names a file."""
    path = Path(run)
    return path if path.is_file() else path / METRICS_FILE


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's `metrics.jsonl`, in file order (what the trainer logged).

    A half-written last line (a run still writing, or killed mid-write) is skipped; any other
    line that is not a JSON object is an error naming the file and line.
    """
    path = metrics_path(run_dir)
    if not path.is_file():
        raise UsageError(
            f"{run_dir}: no {METRICS_FILE} here; give a run's output directory "
            "(the pipeline's `output`), written by `llmkit run`"
        )
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    rows: list[dict[str, float]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not text.endswith("\n"):
                break  # the last line is still being written
            raise UsageError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    if not rows:
        raise UsageError(f"{path}: has no metrics rows; train the run for at least one log step")
    return rows


@dataclass
class Series:
    """One metric of one run: x values and y values, sorted by x, one point per x."""

    x: list[float]
    y: list[float]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def run_series(rows: Sequence[dict[str, float]], x: XAxis = "step") -> dict[str, Series]:
    """Each numeric training metric of `rows` against `x` (not the eval stage's `eval/<name>`);
    a step logged twice (a resumed run) keeps its last value."""
    by_key: dict[str, dict[float, float]] = {}
    for row in rows:
        xv = _number(row.get(x))
        if xv is None:
            continue
        for key, value in row.items():
            yv = _number(value)
            if key in X_KEYS or key.startswith(EVAL_STAGE_PREFIX) or yv is None:
                continue
            by_key.setdefault(key, {})[xv] = yv
    return {
        key: Series(sorted(points), [points[k] for k in sorted(points)])
        for key, points in by_key.items()
    }


def _panel_order(keys: set[str]) -> list[str]:
    return [k for k in PANELS if k in keys] + sorted(keys - set(PANELS))


def _default_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Each run's directory name; when names repeat, enough parent parts to tell them apart."""
    parts = [Path(p).resolve().parts for p in run_dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{label} ({i + 1})" for i, label in enumerate(labels)]


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    labels: Sequence[str] | None = None,
    x: XAxis = "step",
    title: str | None = None,
) -> Path:
    """Draw the runs' curves, one panel per metric and one colour per run, into the PNG `out`.

    Panels: training loss, eval loss, learning rate, tokens/s, then any other logged number
    (gradient norm, eval metrics). `x` is `step` or `tokens` (tokens seen). Raises UsageError
    for a run without metrics, a run without the x axis, or runs that share no metric.
    """
    if not run_dirs:
        raise UsageError("plot: give at least one run directory")
    if x not in X_KEYS:
        raise UsageError(f"plot: x axis must be one of {', '.join(X_KEYS)}, got {x!r}")
    runs = [Path(r) for r in run_dirs]
    if labels is None:
        labels = _default_labels(runs)
    elif len(labels) != len(runs):
        raise UsageError(f"plot: {len(labels)} labels for {len(runs)} runs; give one per run")
    series = []
    for run in runs:
        found = run_series(read_metrics(run), x)
        if not found:
            raise UsageError(
                f"{metrics_path(run)}: no row has `{x}` with a metric to plot"
                + (
                    "; plot against --x step (this run predates tokens logging)"
                    if x != "step"
                    else ""
                )
            )
        series.append(found)
    common = set.intersection(*(set(s) for s in series))
    if not common:
        listing = "; ".join(
            f"{label}: {', '.join(sorted(s))}" for label, s in zip(labels, series, strict=True)
        )
        raise UsageError(f"plot: the runs share no metric to compare ({listing})")
    keys = _panel_order(set().union(*(set(s) for s in series)))
    return _draw(keys, series, list(labels), x, title, Path(out))


def _draw(
    keys: list[str],
    series: list[dict[str, Series]],
    labels: list[str],
    x: XAxis,
    title: str | None,
    out: Path,
) -> Path:
    columns = 1 if len(keys) == 1 else 2
    rows = math.ceil(len(keys) / columns)
    fig = new_figure(6.0 * columns, 3.4 * rows + 0.8, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(series))]
    for ax, key in zip(axes, keys, strict=False):
        for run, label, colour in zip(series, labels, colours, strict=True):
            if key not in run:
                continue
            s = run[key]
            marker = "o" if len(s.x) <= 25 else None
            ax.plot(s.x, s.y, color=colour, label=label, marker=marker, markersize=3, linewidth=1.4)
        ax.set_title(PANELS.get(key, key.replace("_", " ")))
        ax.set_xlabel(_X_LABELS[x])
        ax.grid(True, alpha=0.3)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 5), useOffset=False)
        if x == "tokens":
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4), useOffset=False)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    handles, names = [], []
    for ax in axes[: len(keys)]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 4), frameon=False)
    fig.suptitle(title or f"{len(labels)} run{'s' if len(labels) != 1 else ''} against {x}")
    return save_png(fig, out)
