"""The `csv` logger: `metrics.csv`, one row per training log step, a column per scalar."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from llmkit.atomic import write_text
from llmkit.loggers.base import Logger, Scalars


class CsvLogger(Logger):
    """RUN/metrics.csv with a `step` column and one column per scalar; a scalar first seen later
    (eval_loss at the first evaluation, the eval stage's metrics) adds a column, the file
    rewritten atomically with the wider header, so every row has every column."""

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
        row = _cells(step, scalars)
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            self._write(self._rows(), self.columns + new)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.columns, restval="", lineterminator="\n").writerow(row)

    def log_eval(self, step: int, metrics: Scalars) -> None:
        """Add the `eval/<name>` metrics to the row of `step` (the run's last log step), so the
        file keeps one row per log step; a row of their own when the file does not end at
        `step`. A rerun of the eval stage replaces its earlier values."""
        rows = self._rows()
        cells = _cells(step, metrics)
        if rows and rows[-1].get("step") == cells["step"]:
            rows[-1].update(cells)
        else:
            rows.append(cells)
        self._write(rows, self.columns + [k for k in cells if k not in self.columns])

    def _rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict[str, str]], columns: list[str]) -> None:
        """Rewrite the file with `columns` as its header and `rows` below it (atomically)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, out.getvalue())
        self.columns = columns


def _cells(step: int, scalars: Scalars) -> dict[str, str]:
    """A row's cells: the step, and `repr` of each float (exactly the logged value)."""
    row = {"step": str(step)}
    row.update({k: repr(v) if isinstance(v, float) else str(v) for k, v in scalars.items()})
    return row
