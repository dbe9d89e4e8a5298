"""Running a sweep: every combination checked up front, then run one by one, each resumable.

Each run is the pipeline with the combination's overrides and `output=DIR/<run name>`. A run is
finished when its `summary.json` and its `sweep-run.json` record (`finished: true`) are there; it is
skipped then. A killed run is run again and the trainer resumes from its step checkpoints. When no
grid key touches the tokenizer section, later runs start from a copy of the first run's trained
tokenizer (the stage sees it up to date and skips the training).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmkit.atomic import write_json
from llmkit.errors import LlmkitError, UsageError
from llmkit.sweep.grid import Axis, Combination, combinations

RUN_RECORD = "sweep-run.json"
SUMMARY = "summary.json"
SHARED_SECTIONS = ("tokenizer",)  # what the copied tokenizer depends on
Log = Callable[[str], None]


@dataclass
class SweepRun:
    """One run of a sweep: its combination, directory, status and timing."""

    combination: Combination
    out_dir: Path
    overrides: list[str]
    status: str = "pending"  # pending, done, skipped, failed
    wall_seconds: float = 0.0
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def plan(pipeline: Path, overrides: list[str], axes: list[Axis], out_dir: Path) -> list[SweepRun]:
    """Every combination as a run, each validated (schema, names, parameters) before any runs."""
    from llmkit.pipeline import config, runner

    runs = []
    for combo in combinations(axes):
        run_dir = out_dir / combo.name
        run_overrides = [*overrides, *combo.overrides, f"output={run_dir}"]
        shown = " ".join(combo.overrides)
        try:
            runner.check(config.load(pipeline, run_overrides))
        except UsageError as exc:
            raise UsageError(f"--grid run {combo.name} ({shown}): {exc}") from None
        runs.append(SweepRun(combo, run_dir, run_overrides))
    return runs


def read_record(run_dir: Path) -> dict[str, Any]:
    """A run's `sweep-run.json` ({} when absent or unreadable: the run starts or resumes)."""
    import json

    try:
        data = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_finished(run: SweepRun) -> bool:
    """A finished run: its summary is written and its record says so, with these overrides."""
    record = read_record(run.out_dir)
    if not record.get("finished") or not (run.out_dir / SUMMARY).is_file():
        return False
    if record.get("overrides") != run.overrides:
        raise UsageError(
            f"{run.out_dir}: finished with other settings ({' '.join(record.get('overrides', []))}); "
            "remove it or choose another -o DIR"
        )
    return True


def _share_tokenizer(source: Path, target: Path) -> None:
    """Copy `source`'s trained tokenizer and its fingerprint into `target` (the stage skips)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer.fingerprint"):
        if (source / name).is_file() and not (target / name).exists():
            shutil.copy2(source / name, target / name)


def run_all(pipeline: Path, runs: list[SweepRun], shared: bool, log: Log = print) -> list[SweepRun]:
    """Run (or skip) every planned run in order; a failed run is recorded and the next one runs."""
    from llmkit.pipeline import config, runner

    base = pipeline.resolve().parent
    first_prepared: Path | None = None
    for i, run in enumerate(runs, start=1):
        head = f"[{i}/{len(runs)}] {run.combination.name}"
        record = read_record(run.out_dir)
        if is_finished(run):
            run.status, run.wall_seconds = "skipped", float(record.get("wall_seconds", 0.0))
            log(f"{head}: finished earlier, skipped")
            first_prepared = first_prepared or run.out_dir
            continue
        if shared and first_prepared is not None:
            _share_tokenizer(first_prepared, run.out_dir)
        log(f"{head}: {' '.join(run.combination.overrides)}")
        earlier = (
            float(record.get("wall_seconds", 0.0))
            if record.get("overrides") == run.overrides
            else 0.0
        )
        start = time.perf_counter()

        def save(
            finished: bool, run: SweepRun = run, start: float = start, earlier: float = earlier
        ) -> None:
            run.wall_seconds = earlier + time.perf_counter() - start
            record = {
                "name": run.combination.name,
                "values": {k: v for k, v in run.combination.values},
                "overrides": run.overrides,
                "wall_seconds": run.wall_seconds,
                "finished": finished,
            }
            write_json(run.out_dir / RUN_RECORD, record)

        try:
            cfg = config.load(pipeline, run.overrides)
            run.out_dir.mkdir(parents=True, exist_ok=True)
            runner.run(cfg, base, log=_prefixed(log, head))
        except LlmkitError as exc:
            save(False)
            run.status, run.error = "failed", str(exc).splitlines()[0]
            log(f"{head}: failed: {run.error}")
            continue
        except BaseException:
            save(False)  # killed or interrupted: the time spent so far counts on resume
            raise
        save(True)
        run.status = "done"
        first_prepared = first_prepared or run.out_dir
    return runs


def _prefixed(log: Log, head: str) -> Log:
    """`log` with every line prefixed by the run's position and name."""

    def prefixed(line: str) -> None:
        log(f"{head}: {line}")

    return prefixed


def shares_preparation(axes: list[Axis]) -> bool:
    """True when no grid key changes what the tokenizer stage produces."""
    return not any(a.key.split(".")[0] in SHARED_SECTIONS for a in axes)
