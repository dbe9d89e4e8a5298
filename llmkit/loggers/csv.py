"""The `csv` logger: `metrics.csv`, one row per training log step, a column per scalar."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from llmkit.atomic import write_text
from llmkit.loggers.base import Logger, Scalars


class CsvLogger(Logger):
    """RUN/metrics.csv with a `step` column and one column per scalar; a scalar first seen later
    (eval_loss at the first evaluation) adds a column, the file rewritten with the wider header."""

    name = "csv"

    def __init__(self, run_dir: Path, filename: str = "metrics.csv") -> None:
        super().__init__(run_dir)
        self.path = self.run_dir / filename
        self.columns: list[str] = []
        if self.path.is_file():  # a resumed run continues the file it wrote
            with open(self.path, newline="", encoding="utf-8") as f:
                self.columns = next(csv.reader(f), [])

    def log(self, step: int, scalars: Scalars) -> None:
        """Append one row; `repr` of each float so the CSV holds exactly the logged value."""
        row = {"step": step, **scalars}
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            self._widen(self.columns + new)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.columns, restval="", lineterminator="\n").writerow(
                {k: repr(v) if isinstance(v, float) else v for k, v in row.items()}
            )

    def _widen(self, columns: list[str]) -> None:
        """Rewrite the file with `columns` as its header (atomically; old rows kept)."""
        rows: list[dict[str, str]] = []
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, out.getvalue())
        self.columns = columns

    def log_eval(self, step: int, metrics: Scalars) -> None:
        """Nothing: the eval stage's metrics are in the run's eval.json, and metrics.csv keeps
        one row per training log step, as metrics.jsonl does."""
