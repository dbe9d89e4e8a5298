"""Running cleaners in order over a record stream, and the cleaning report every run produces."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmkit.atomic import write_text
from llmkit.data.cleaners import Cleaner
from llmkit.data.records import ReadStats, Record
from llmkit.errors import UsageError

SNIPPET = 160


def _snippet(text: str, at: int = 0) -> str:
    lo = max(0, at - SNIPPET // 4)
    piece = text[lo : lo + SNIPPET]
    return ("…" if lo else "") + piece + ("…" if lo + SNIPPET < len(text) else "")


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on equal prefixes: O(n log n) in C, not a Python loop per char
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class StepReport:
    """What one cleaning step did: records and characters in and out, and a few examples."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    records_in: int = 0
    records_out: int = 0
    changed: int = 0
    chars_in: int = 0
    chars_out: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        """Records this step removed."""
        return self.records_in - self.records_out


def _length(rec: Record) -> int:
    return len(rec.text or "") + len(rec.target or "")


class CleaningPipeline:
    """Cleaners applied in order to batches of records, keeping a `StepReport` per cleaner."""

    def __init__(
        self, cleaners: list[Cleaner], batch_size: int = 512, max_examples: int = 3
    ) -> None:
        self.cleaners = cleaners
        self.batch_size = batch_size
        self.max_examples = max_examples
        self.steps = [
            StepReport(getattr(c, "name", type(c).__name__), _jsonable(c.config()))
            for c in cleaners
        ]

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        """Yield the cleaned records, in input order, reading `records` a batch at a time."""
        batch: list[Record] = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= self.batch_size:
                yield from self.apply(batch)
                batch = []
        if batch:
            yield from self.apply(batch)

    def apply(self, batch: list[Record]) -> list[Record]:
        """Clean one batch through every step, updating the report."""
        for cleaner, step in zip(self.cleaners, self.steps, strict=True):
            if not batch:
                break
            before = [(r.text, r.target) for r in batch]
            step.records_in += len(batch)
            step.chars_in += sum(_length(r) for r in batch)
            result = cleaner.apply(batch)
            if len(result) != len(batch):
                raise UsageError(
                    f"cleaner '{step.name}' returned {len(result)} records for {len(batch)}"
                )
            notes: dict[int, str] = getattr(cleaner, "notes", {}) or {}
            kept: list[Record] = []
            for i, out in enumerate(result):
                old_text, old_target = before[i]
                if out is None:
                    if len(step.examples) < self.max_examples:
                        ex = {"source": batch[i].source, "dropped": _snippet(old_text or "")}
                        if i in notes:
                            ex["why"] = notes[i]
                        step.examples.append(ex)
                    continue
                kept.append(out)
                if out.text is not old_text or out.target is not old_target:
                    if out.text == old_text and out.target == old_target:
                        continue
                    step.changed += 1
                    if len(step.examples) < self.max_examples:
                        a, b = old_text or "", out.text or ""
                        if a == b:
                            a, b = old_target or "", out.target or ""
                        at = _first_difference(a, b)
                        step.examples.append(
                            {
                                "source": out.source,
                                "before": _snippet(a, at),
                                "after": _snippet(b, at),
                            }
                        )
            step.records_out += len(kept)
            step.chars_out += sum(_length(r) for r in kept)
            batch = kept
        return batch

    def report(self, read: ReadStats | None = None, **extra: Any) -> dict[str, Any]:
        """The cleaning report as plain JSON: reader counts, then each step."""
        first = self.steps[0] if self.steps else None
        last = self.steps[-1] if self.steps else None
        out: dict[str, Any] = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "reader": read.to_json() if read else None,
            "records_in": first.records_in if first else None,
            "records_out": last.records_out if last else None,
            "chars_in": first.chars_in if first else None,
            "chars_out": last.chars_out if last else None,
            "steps": [{**asdict(s), "dropped": s.dropped} for s in self.steps],
        }
        out.update(extra)
        return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_jsonable(v) for v in value]
        return repr(value)


def save_report(report: dict[str, Any], path: str | Path) -> None:
    """Write a cleaning report as JSON, atomically."""
    write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a cleaning report (a file, or an output directory holding ``cleaning_report.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "cleaning_report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such report") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a cleaning report ({exc})") from None
    if not isinstance(data, dict) or "steps" not in data:
        raise UsageError(f"{path}: not a cleaning report (no 'steps')")
    return data


def format_report(report: dict[str, Any], examples: bool = True) -> str:
    """Human-readable text of a cleaning report: a table of steps, then examples of removals."""
    lines: list[str] = []
    read = report.get("reader") or {}
    if read:
        lines.append(
            f"read: {read.get('files', 0)} files, {read.get('records', 0)} records, "
            f"{read.get('bytes', 0) / 1e6:.2f} MB"
        )
        if read.get("invalid_utf8_sequences"):
            lines.append(
                f"invalid UTF-8: {read['invalid_utf8_sequences']} sequences in "
                f"{read['invalid_utf8_records']} records, replaced with U+FFFD"
            )
        if read.get("skipped_lines"):
            where = ", ".join(read.get("skipped_examples", []))
            lines.append(f"skipped lines: {read['skipped_lines']} (e.g. {where})")
    rows = [("step", "in", "out", "dropped", "changed", "chars removed")]
    for s in report.get("steps", []):
        removed = s["chars_in"] - s["chars_out"]
        pct = f" ({100 * removed / s['chars_in']:.1f}%)" if s["chars_in"] else ""
        rows.append(
            (
                s["name"],
                str(s["records_in"]),
                str(s["records_out"]),
                str(s["records_in"] - s["records_out"]),
                str(s["changed"]),
                f"{removed}{pct}",
            )
        )
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    else:
        lines.append("no cleaning steps")
    for key in ("records_in", "records_out"):
        if report.get(key) is not None:
            lines.append(f"{key.replace('_', ' ')}: {report[key]}")
    for key, label in (("tokens", "tokens"), ("documents", "documents")):
        if report.get(key):
            lines.append(f"{label}: {report[key]}")
    lines += [f"warning: {line}" for line in report.get("warnings", [])]
    if examples:
        for s in report.get("steps", []):
            for ex in s.get("examples", []):
                if "dropped" in ex:
                    why = f" ({ex['why']})" if ex.get("why") else ""
                    lines.append(f"  [{s['name']}] dropped {ex['source']}{why}: {ex['dropped']!r}")
                else:
                    lines.append(
                        f"  [{s['name']}] {ex['source']}: {ex['before']!r} -> {ex['after']!r}"
                    )
    return "\n".join(lines)
