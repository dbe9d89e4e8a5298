"""Plain-text rendering of metric results: aligned tables and confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as aligned columns under a header (numbers right-aligned, text left-aligned)."""
    cells = [[_cell(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [
        all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        and bool(rows)
        for i in range(len(header))
    ]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def confusion_table(labels: Sequence[Any], matrix: Sequence[Sequence[Any]]) -> str:
    """A confusion matrix as text: one row per true label, one column per predicted label."""
    header = ["true \\ pred", *[str(label) for label in labels]]
    rows = [[str(label), *row] for label, row in zip(labels, matrix, strict=True)]
    return table(header, rows)
