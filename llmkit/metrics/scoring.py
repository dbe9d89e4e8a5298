"""Scoring files: a hypothesis file against reference file(s), one segment (or label) per line.

This is the library behind `llmkit score`; text metrics read lines as sacrebleu's CLI does
(UTF-8, trailing whitespace stripped) so the numbers equal sacrebleu's on the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmkit.errors import UsageError

TEXT_METRICS = ("bleu", "chrf", "ter")
LABEL_METRICS = ("accuracy", "precision", "recall", "f1", "confusion_matrix", "exact_match")
SCORE_METRICS = TEXT_METRICS + LABEL_METRICS


def read_lines(path: str | Path, strip: bool = False) -> list[str]:
    """The lines of a UTF-8 text file without trailing whitespace (fully stripped if `strip`)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p}: not UTF-8 text (byte {exc.start}); convert it to UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() if strip else line.rstrip() for line in lines]


def _labels(lines: list[str]) -> list[int] | list[str]:
    """Integer labels when every line is an integer, else the strings themselves."""
    try:
        return [int(line) for line in lines]
    except ValueError:
        return lines


def score_files(
    metrics: Sequence[str],
    hypothesis: str | Path,
    references: Sequence[str | Path],
    options: dict[str, dict[str, Any]] | None = None,
) -> list[Any]:
    """Score `hypothesis` against `references` with each metric; returns their `compute()` results.

    `options` maps a metric name to keyword parameters for `llmkit.create("metric", name, ...)`.
    """
    import llmkit

    options = options or {}
    if not references:
        raise UsageError("give at least one reference file after the hypothesis file")
    unknown = [m for m in metrics if m not in SCORE_METRICS]
    if unknown:
        raise UsageError(
            f"--metric {unknown[0]}: not a file metric; choose from {', '.join(SCORE_METRICS)}"
        )
    hyps = read_lines(hypothesis)
    refs = [read_lines(r) for r in references]
    if not hyps:
        raise UsageError(f"{hypothesis}: is empty")
    for path, lines in zip(references, refs, strict=True):
        if len(lines) != len(hyps):
            raise UsageError(
                f"{path}: has {len(lines)} lines but {hypothesis} has {len(hyps)}; "
                "files must be line-aligned"
            )
    results = []
    for name in metrics:
        metric = llmkit.create("metric", name, **options.get(name, {}))
        if name in TEXT_METRICS:
            metric.update(hyps, [list(seg) for seg in zip(*refs, strict=True)])
        elif name == "exact_match":
            if len(refs) > 1:
                metric = llmkit.create(
                    "metric", name, **{**options.get(name, {}), "multiple_targets": True}
                )
                metric.update(hyps, [list(seg) for seg in zip(*refs, strict=True)])
            else:
                metric.update(hyps, refs[0])
        else:
            if len(refs) > 1:
                raise UsageError(f"--metric {name}: takes exactly one reference (label) file")
            preds = _labels([h.strip() for h in hyps])
            golds = _labels([r.strip() for r in refs[0]])
            if isinstance(preds[0], int) != isinstance(golds[0], int):
                preds, golds = [str(p) for p in preds], [str(g) for g in golds]
            metric.update(preds, golds)
        results.append(metric.compute())
    return results


def format_result(result: Any, width: int = 1, per_class: bool = False) -> str:
    """Sacrebleu's line for text metrics, `name = value (...)` for the others.

    A confusion matrix prints as a table; `per_class` adds the per-class table of P/R/F1.
    """
    if not hasattr(result, "name"):  # a ConfusionMatrixResult
        return "confusion matrix (rows true, columns predicted):\n" + result.to_text()
    name = result.name
    details = result.details
    if name in TEXT_METRICS:
        from llmkit.metrics.text import format_sacre

        return format_sacre(result, width)
    value = f"{float(result):.{max(width, 4)}f}"
    if name in ("precision", "recall", "f1"):
        extra = f" (average={details['average']}, n={details['num_samples']})"
        if per_class:
            from llmkit.metrics.render import table

            pc = details["per_class"]
            rows = [
                [str(label), p, r, f, n]
                for label, p, r, f, n in zip(
                    pc["labels"],
                    pc["precision"],
                    pc["recall"],
                    pc["f_score"],
                    pc["support"],
                    strict=True,
                )
            ]
            body = table(["label", "precision", "recall", "f1", "support"], rows)
            return f"{name} = {value}{extra}\n{body}"
    else:
        extra = f" ({details.get('correct')}/{details.get('total')})"
    return f"{name} = {value}{extra}"
