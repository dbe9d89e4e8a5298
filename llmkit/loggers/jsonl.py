"""The `jsonl` logger: `metrics.jsonl`, one JSON object per training log step (what `llmkit plot`
and `llmkit sweep` read); the eval stage's metrics join the line of the run's last step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmkit.atomic import write_text
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
        """Add the `eval/<name>` metrics to the line of `step` (the run's last log step), so the
        file keeps one line per log step; a line of their own when the file does not end at
        `step`. Rewritten atomically; a rerun of the eval stage replaces its earlier values."""
        text = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        lines = text.splitlines()
        last = _object(lines[-1]) if lines and text.endswith("\n") else None
        if last is not None and last.get("step") == step:
            lines[-1] = json.dumps({**last, **metrics})
        else:
            lines.append(json.dumps({"step": step, **metrics}))
        write_text(self.path, "\n".join(lines) + "\n")


def _object(line: str) -> dict[str, Any] | None:
    """`line` as a JSON object, or None when it is not one."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
