"""The `jsonl` logger: `metrics.jsonl`, one JSON object per training log step (what `llmkit plot`
and the trainer's resume read)."""

from __future__ import annotations

import json
from pathlib import Path

from llmkit.loggers.base import Logger, Scalars


class JsonlLogger(Logger):
    """One JSON line per log step in RUN/metrics.jsonl, appended (a resumed run continues it)."""

    name = "jsonl"

    def __init__(self, run_dir: Path, filename: str = "metrics.jsonl") -> None:
        super().__init__(run_dir)
        self.path = self.run_dir / filename

    def log(self, step: int, scalars: Scalars) -> None:
        """Append `{"step": step, **scalars}` as one line, flushed at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")

    def log_eval(self, step: int, metrics: Scalars) -> None:
        """Nothing: the eval stage's metrics are in the run's eval.json, and metrics.jsonl keeps
        one line per training log step."""
