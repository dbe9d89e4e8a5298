"""A sweep's report: `sweep.csv` and `sweep.md` (one row per run) and `sweep.png` (the curves).

Each row: the run's name and varied values, its final train loss and eval loss (`summary.json`),
the eval stage's metrics, tokens/s, parameters (from the saved model's config, counted on the meta
device), wall time, and status (done, skipped, failed).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from llmkit.atomic import write_text
from llmkit.sweep.grid import Axis, value_text
from llmkit.sweep.runner import SUMMARY, SweepRun


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def count_parameters(model_dir: Path) -> int | None:
    """sum(p.numel()) of a saved model, built on the meta device from its config (no weights)."""
    from llmkit.analysis.summary import meta_model
    from llmkit.storage.checkpoint import is_checkpoint, model_fields, read_config

    if not is_checkpoint(model_dir):
        return None
    model = meta_model(model_fields(read_config(model_dir)))
    return sum(p.numel() for p in model.parameters())


def _from_metrics(run_dir: Path) -> dict[str, Any]:
    """The last logged train loss, eval loss and tokens/s of a run's metrics.jsonl ({} if none)."""
    from llmkit.errors import UsageError
    from llmkit.plots.curves import read_metrics

    try:
        history = read_metrics(run_dir)
    except UsageError:
        return {}
    found: dict[str, Any] = {}
    for key, name in (
        ("loss", "train_loss"),
        ("eval_loss", "eval_loss"),
        ("tokens_per_second", "tokens_per_second"),
    ):
        values = [r[key] for r in history if isinstance(r.get(key), int | float)]
        if values:
            found[name] = values[-1]
    return found


def rows(runs: list[SweepRun], axes: list[Axis]) -> tuple[list[str], list[dict[str, Any]]]:
    """The report's columns and one dict of values per run (None where a run has no value)."""
    table: list[dict[str, Any]] = []
    metric_names: list[str] = []
    for run in runs:
        summary = _summary(run.out_dir)
        train = summary.get("train") or {}
        evals = summary.get("eval") or {}
        row: dict[str, Any] = {"run": run.combination.name}
        row.update({key: value_text(value) for key, value in run.combination.values})
        if train.get("train_loss") is None:  # resumed at max_steps: the stage logged no result
            train = {
                **_from_metrics(run.out_dir),
                **{k: v for k, v in train.items() if v is not None},
            }
        row["train_loss"] = train.get("train_loss")
        row["eval_loss"] = train.get("eval_loss")
        for name, value in evals.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[f"eval_{name}"] = value
                if f"eval_{name}" not in metric_names:
                    metric_names.append(f"eval_{name}")
        row["tokens_per_s"] = train.get("tokens_per_second")
        row["params"] = count_parameters(run.out_dir / "model")
        row["wall_s"] = run.wall_seconds
        row["status"] = run.status if run.error is None else f"failed: {run.error}"
        table.append(row)
    columns = [
        "run",
        *(a.key for a in axes),
        "train_loss",
        "eval_loss",
        *metric_names,
        "tokens_per_s",
        "params",
        "wall_s",
        "status",
    ]
    return columns, table


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value).replace("|", "\\|")
    if column == "params":
        return f"{int(value):,}"
    if column == "tokens_per_s":
        return f"{value:,.0f}"
    if column == "wall_s":
        return f"{value:.1f}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:,.2f}"


def write_csv(path: Path, columns: list[str], table: list[dict[str, Any]]) -> Path:
    """The table as CSV (numbers unrounded, empty where a run has no value)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    return write_text(path, buffer.getvalue())


def markdown(columns: list[str], table: list[dict[str, Any]]) -> str:
    """The table as GitHub markdown, numbers rounded for reading."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in table:
        lines.append("| " + " | ".join(_cell(c, row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, runs: list[SweepRun], axes: list[Axis]) -> list[Path]:
    """Write sweep.csv, sweep.md and (when some run has metrics) sweep.png; returns the paths."""
    columns, table = rows(runs, axes)
    written = [
        write_csv(out_dir / "sweep.csv", columns, table),
        write_text(out_dir / "sweep.md", markdown(columns, table)),
    ]
    plotted = [r for r in runs if (r.out_dir / "metrics.jsonl").is_file()]
    if plotted:
        from llmkit.plots.curves import plot_runs

        written.append(
            plot_runs(
                [r.out_dir for r in plotted],
                out_dir / "sweep.png",
                labels=[r.combination.name for r in plotted],
                title=f"sweep: {len(plotted)} runs",
            )
        )
    return written
