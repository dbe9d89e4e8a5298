"""Classification metrics with scikit-learn's exact semantics, accumulated as confusion counts.

Labels may be integers or strings. Predictions are labels, or scores of shape (..., C) whose
argmax is the label. Precision, recall and F-scores follow scikit-learn's
`precision_recall_fscore_support` to the bit: the same label set (sorted labels present in
targets or predictions, unless `labels` is given), `average` modes and `zero_division` policy.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llmkit.errors import UsageError
from llmkit.metrics.base import (
    CountingMetric,
    Metric,
    Score,
    UndefinedMetricWarning,
    _json_float,
    to_numpy,
)

Label = int | str


def _labels_from(
    predictions: Any, targets: Any, name: str, ignore_index: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels as equal-length 1-D arrays (argmax of scores, ignored dropped)."""
    pred = to_numpy(predictions, f"{name}: predictions")
    true = to_numpy(targets, f"{name}: targets")
    if pred.ndim == true.ndim + 1 and pred.dtype.kind == "f":
        pred = pred.argmax(axis=-1)
    if pred.shape != true.shape:
        raise UsageError(
            f"{name}: predictions have shape {pred.shape} but targets {true.shape}; "
            "give one label per target (or scores of shape (..., num_classes))"
        )
    pred, true = pred.reshape(-1), true.reshape(-1)
    if ignore_index is not None and true.dtype.kind in "iu":
        keep = true != ignore_index
        pred, true = pred[keep], true[keep]
    return _check_labels(pred, f"{name}: predictions"), _check_labels(true, f"{name}: targets")


def _check_labels(values: np.ndarray, what: str) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "b":
        return values.astype(np.int64)
    if kind == "f":
        if values.size and not np.all(np.isfinite(values) & (values == np.round(values))):
            raise UsageError(
                f"{what}: labels must be integers or strings, got non-integral floats; "
                "pass class labels, or scores of shape (..., num_classes) to take the argmax"
            )
        return values.astype(np.int64)
    if kind in "iu":
        return values.astype(np.int64)
    if kind == "U":
        return values
    if kind == "S":
        return values.astype(str)
    if kind == "O":
        items = values.tolist()
        if all(isinstance(v, str) for v in items):
            return np.asarray(items, dtype=str)
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in items):
            return np.asarray(items, dtype=np.int64)
    raise UsageError(f"{what}: labels must be integers or strings, got dtype {values.dtype}")


class _ConfusionCounts(Metric):
    """Shared state: a confusion matrix over every label seen (rows true, columns predicted)."""

    def __init__(self, labels: Sequence[Label] | None, ignore_index: int | None) -> None:
        self.labels = None if labels is None else list(labels)
        self.ignore_index = ignore_index
        if self.labels is not None:
            if len(set(self.labels)) != len(self.labels):
                raise UsageError(f"{self.name}: labels: contains duplicates: {self.labels}")
            if not self.labels:
                raise UsageError(f"{self.name}: labels: must not be empty (or leave it unset)")
        super().__init__()

    def _reset(self) -> None:
        self._index: dict[Label, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.int64)
        self._family: str | None = None

    def update(self, predictions: Any, targets: Any) -> None:
        """Add a batch: predicted labels (or (..., C) scores) and true labels of the same shape."""
        self._check_not_synced()
        pred, true = _labels_from(predictions, targets, self.name, self.ignore_index)
        if true.size == 0:
            return
        both = np.concatenate([true, pred]) if true.dtype.kind == pred.dtype.kind else None
        if both is None:
            raise UsageError(
                f"{self.name}: predictions are {_family(pred)} but targets are {_family(true)}; "
                "use the same kind of label for both"
            )
        uniq, inverse = np.unique(both, return_inverse=True)
        self._add_labels([u.item() for u in uniq], _family(pred))
        ids = np.asarray([self._index[u.item()] for u in uniq], dtype=np.int64)[inverse]
        k = len(self._index)
        flat = ids[: true.size] * k + ids[true.size :]
        self._matrix += np.bincount(flat, minlength=k * k).reshape(k, k)

    def _add_labels(self, labels: list[Label], family: str) -> None:
        if self._family is None:
            self._family = family
        elif family != self._family:
            raise UsageError(
                f"{self.name}: this batch has {family} labels but earlier batches had "
                f"{self._family} labels"
            )
        new = [label for label in labels if label not in self._index]
        if not new:
            return
        for label in new:
            self._index[label] = len(self._index)
        k = len(self._index)
        grown = np.zeros((k, k), dtype=np.int64)
        old = self._matrix.shape[0]
        grown[:old, :old] = self._matrix
        self._matrix = grown

    def state(self) -> dict[str, Any]:
        return {"labels": list(self._index), "matrix": self._matrix.tolist()}

    def _merge_state(self, state: Mapping[str, Any]) -> None:
        labels = list(state["labels"])
        matrix = np.asarray(state["matrix"], dtype=np.int64).reshape(len(labels), len(labels))
        if not labels:
            return
        self._add_labels(labels, "strings" if isinstance(labels[0], str) else "integers")
        ids = np.asarray([self._index[label] for label in labels], dtype=np.int64)
        self._matrix[np.ix_(ids, ids)] += matrix

    @property
    def num_samples(self) -> int:
        """How many (prediction, target) pairs have been counted."""
        return int(self._matrix.sum())

    def _sorted(self) -> tuple[list[Label], np.ndarray]:
        """Present labels in sorted order and the confusion matrix in that order."""
        labels = sorted(self._index)
        ids = [self._index[label] for label in labels]
        return labels, self._matrix[np.ix_(ids, ids)]

    def _matrix_for(self, labels: list[Label]) -> np.ndarray:
        """The confusion matrix restricted to `labels` (absent labels count zero)."""
        m = np.zeros((len(labels), len(labels)), dtype=np.int64)
        present = [
            (i, self._index[label]) for i, label in enumerate(labels) if label in self._index
        ]
        if present:
            out, src = zip(*present, strict=True)
            m[np.ix_(out, out)] = self._matrix[np.ix_(src, src)]
        return m

    def _require_data(self) -> None:
        if self.num_samples == 0:
            raise UsageError(f"{self.name}: no samples: call update() with data before compute()")


def _family(values: np.ndarray) -> str:
    return "strings" if values.dtype.kind in "US" else "integers"


class _PRF(_ConfusionCounts):
    """Precision, recall and F-beta from confusion counts (scikit-learn semantics)."""

    _which: str = "f1"

    def __init__(
        self,
        average: Literal["binary", "micro", "macro", "weighted"] = "binary",
        pos_label: int | str = 1,
        labels: list[int] | list[str] | None = None,
        zero_division: Literal["warn", 0, 1, "nan"] = "warn",
        beta: float = 1.0,
        ignore_index: int | None = None,
    ) -> None:
        if beta < 0:
            raise UsageError(f"{self.name}: beta: must be >= 0, got {beta}")
        self.average = average
        self.pos_label = pos_label
        self.zero_division = zero_division
        self.beta = beta
        super().__init__(labels, ignore_index)

    def _selected_labels(self) -> list[Label]:
        present, _ = self._sorted()
        if self.average == "binary":
            if len(present) > 2:
                raise UsageError(
                    f"{self.name}: average='binary' but the data has {len(present)} classes "
                    f"({_show(present)}); use average='micro', 'macro' or 'weighted'"
                )
            if self.pos_label not in present and len(present) >= 2:
                raise UsageError(
                    f"{self.name}: pos_label={self.pos_label!r} is not one of the labels "
                    f"{_show(present)}; set pos_label"
                )
            return [self.pos_label]
        return list(self.labels) if self.labels is not None else present

    def _divide(self, num: np.ndarray, den: np.ndarray, what: str, warn: bool) -> np.ndarray:
        zero = den == 0
        out = num / np.where(zero, 1, den)
        if zero.any():
            value = {"warn": 0.0, 0: 0.0, 1: 1.0, "nan": np.nan}[self.zero_division]
            out = np.where(zero, value, out)
            if warn and self.zero_division == "warn":
                warnings.warn(
                    f"{self.name}: {what} is ill-defined (no {_reason(what)}) for "
                    f"{int(zero.sum())} label(s) and set to 0.0; set zero_division to silence",
                    UndefinedMetricWarning,
                    stacklevel=3,
                )
        return out

    def _scores(self) -> tuple[list[Label], dict[str, np.ndarray]]:
        """Per-label precision, recall, f-score and support for the selected labels."""
        self._require_data()
        labels = self._selected_labels()
        m = self._matrix_for(labels)
        cols = np.zeros(len(labels), dtype=np.int64)
        rows = np.zeros(len(labels), dtype=np.int64)
        for i, label in enumerate(labels):
            if label in self._index:
                j = self._index[label]
                cols[i] = self._matrix[:, j].sum()
                rows[i] = self._matrix[j, :].sum()
        tp = np.diag(m).astype(np.float64)
        return labels, {"tp": tp, "pred": cols.astype(np.float64), "true": rows.astype(np.float64)}

    def _prf(self, tp: np.ndarray, pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
        warn_p = self._which == "precision"
        warn_r = self._which == "recall"
        warn_f = self._which in ("f1", "fbeta")
        precision = self._divide(tp, pred, "precision", warn_p)
        recall = self._divide(tp, true, "recall", warn_r)
        b2 = self.beta**2
        if np.isposinf(self.beta):
            f = recall
        elif self.beta == 0:
            f = precision
        else:
            f = self._divide((1 + b2) * tp, b2 * true + pred, "f-score", warn_f)
        return {"precision": precision, "recall": recall, "f": f}

    def _average(self, values: np.ndarray, weights: np.ndarray | None) -> float:
        if values.size == 0:
            return float("nan")
        keep = ~np.isnan(values)
        if not keep.any():
            return float("nan")
        if weights is None or weights[keep].sum() == 0:
            return float(np.mean(values[keep]))
        return float(np.average(values[keep], weights=weights[keep]))

    def compute(self) -> Score:
        """The averaged score, with per-class precision/recall/F and support in `details`."""
        labels, c = self._scores()
        with warnings.catch_warnings():
            if self.average == "micro":  # per-class values are only details: warn for the total
                warnings.simplefilter("ignore", UndefinedMetricWarning)
            per_class = self._prf(c["tp"], c["pred"], c["true"])
        if self.average == "micro":
            totals = self._prf(
                c["tp"].sum(keepdims=True),
                c["pred"].sum(keepdims=True),
                c["true"].sum(keepdims=True),
            )
            averaged = {k: float(v[0]) for k, v in totals.items()}
        else:
            weights = c["true"] if self.average == "weighted" else None
            averaged = {k: self._average(v, weights) for k, v in per_class.items()}
        key = {"precision": "precision", "recall": "recall"}.get(self._which, "f")
        details: dict[str, Any] = {
            "average": self.average,
            "precision": _json_float(averaged["precision"]),
            "recall": _json_float(averaged["recall"]),
            "f_score": _json_float(averaged["f"]),
            "beta": self.beta,
            "num_samples": self.num_samples,
            "per_class": {
                "labels": labels,
                "precision": [_json_float(float(v)) for v in per_class["precision"]],
                "recall": [_json_float(float(v)) for v in per_class["recall"]],
                "f_score": [_json_float(float(v)) for v in per_class["f"]],
                "support": [int(v) for v in c["true"]],
            },
        }
        if self.average == "binary":
            details["pos_label"] = self.pos_label
        return Score(averaged[key], self.name, details)


def _reason(what: str) -> str:
    return {"precision": "predicted samples", "recall": "true samples"}.get(
        what, "true nor predicted samples"
    )


def _show(labels: list[Label]) -> str:
    return (
        "["
        + ", ".join(repr(label) for label in labels[:10])
        + (", ...]" if len(labels) > 10 else "]")
    )


_PRF_ARGS = """
    Args:
        average: 'binary' scores only `pos_label` (two classes at most); 'micro' pools the counts of
            every label; 'macro' is the unweighted mean over labels; 'weighted' weights each label
            by its support (number of true samples).
        pos_label: The positive class when average='binary'.
        labels: The labels to score and average over (default: every label present in the
            targets or predictions, sorted), e.g. to include a class absent from this data.
        zero_division: Value for an ill-defined ratio (0/0): 0, 1, 'nan' (left out of averages),
            or 'warn' (0 with an UndefinedMetricWarning), as in scikit-learn.
        beta: Weight of recall in the F-score (F1 when 1).
        ignore_index: Targets equal to this integer are skipped (e.g. -100 padding).
"""


class Precision(_PRF):
    """Precision tp / (tp + fp): binary, micro, macro or weighted; per class in details."""

    name = "precision"
    _which = "precision"
    __doc__ = (__doc__ or "") + _PRF_ARGS


class Recall(_PRF):
    """Recall tp / (tp + fn): binary, micro, macro or weighted; per class in details."""

    name = "recall"
    _which = "recall"
    __doc__ = (__doc__ or "") + _PRF_ARGS


class F1(_PRF):
    """F-score (F1 by default): binary, micro, macro or weighted; per class in details."""

    name = "f1"
    _which = "f1"
    __doc__ = (__doc__ or "") + _PRF_ARGS


@dataclass(frozen=True)
class ConfusionMatrixResult:
    """A confusion matrix: `matrix[i][j]` counts true `labels[i]` predicted as `labels[j]`."""

    labels: list[Label]
    matrix: list[list[float]]
    normalize: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "metric": "confusion_matrix",
            "labels": list(self.labels),
            "matrix": [list(row) for row in self.matrix],
            "normalize": self.normalize,
        }

    def to_numpy(self) -> np.ndarray:
        """The matrix as a numpy array."""
        return np.asarray(self.matrix)

    def to_text(self) -> str:
        """The matrix as an aligned text table (rows true, columns predicted)."""
        from llmkit.metrics.render import confusion_table

        return confusion_table(self.labels, self.matrix)

    def __str__(self) -> str:
        return self.to_text()


class ConfusionMatrix(_ConfusionCounts):
    """Confusion matrix (rows true, columns predicted), equal to sklearn's confusion_matrix.

    Args:
        labels: The labels, in order, for rows and columns (default: every label seen, sorted).
        normalize: Divide counts by row sums ('true'), column sums ('pred') or the total ('all').
        ignore_index: Targets equal to this integer are skipped (e.g. -100 padding).
    """

    name = "confusion_matrix"

    def __init__(
        self,
        labels: list[int] | list[str] | None = None,
        normalize: Literal["true", "pred", "all"] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        self.normalize = normalize
        super().__init__(labels, ignore_index)

    def compute(self) -> ConfusionMatrixResult:
        """The matrix over every sample seen (an empty matrix before any update)."""
        if self.labels is not None:
            labels: list[Label] = list(self.labels)
            m = self._matrix_for(labels)
        else:
            labels, m = self._sorted()
        values: np.ndarray = m
        if self.normalize is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                if self.normalize == "true":
                    values = m / m.sum(axis=1, keepdims=True)
                elif self.normalize == "pred":
                    values = m / m.sum(axis=0, keepdims=True)
                else:
                    values = m / m.sum()
            values = np.nan_to_num(values)
        return ConfusionMatrixResult(labels, values.tolist(), self.normalize)


class Accuracy(CountingMetric):
    """Fraction of correct predictions (top-k when predictions are (..., C) scores).

    Args:
        top_k: With score predictions, a sample is correct when its target is among the k
            highest scores.
        ignore_index: Targets equal to this integer are skipped (e.g. -100 padding).
    """

    name = "accuracy"

    def __init__(self, top_k: int = 1, ignore_index: int | None = None) -> None:
        if top_k < 1:
            raise UsageError(f"accuracy: top_k: must be >= 1, got {top_k}")
        self.top_k = top_k
        self.ignore_index = ignore_index
        super().__init__()

    def _reset(self) -> None:
        self._counts = np.zeros(2, dtype=np.int64)  # correct, total

    def update(self, predictions: Any, targets: Any) -> None:
        """Add a batch of predicted labels (or (..., C) scores) and true labels."""
        self._check_not_synced()
        if self.top_k > 1:
            scores = to_numpy(predictions, "accuracy: predictions")
            true = to_numpy(targets, "accuracy: targets")
            if scores.ndim != true.ndim + 1:
                raise UsageError(
                    f"accuracy: top_k={self.top_k} needs predictions of shape (..., num_classes), "
                    f"got {scores.shape} for targets {true.shape}"
                )
            scores = scores.reshape(-1, scores.shape[-1])
            true = _check_labels(true.reshape(-1), "accuracy: targets")
            if self.ignore_index is not None:
                keep = true != self.ignore_index
                scores, true = scores[keep], true[keep]
            k = min(self.top_k, scores.shape[-1])
            top = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
            correct = int((top == true[:, None]).any(axis=1).sum())
            self._counts += (correct, true.size)
            return
        pred, true = _labels_from(predictions, targets, self.name, self.ignore_index)
        if pred.size and pred.dtype.kind != true.dtype.kind:
            raise UsageError(
                f"accuracy: predictions are {_family(pred)} but targets are {_family(true)}"
            )
        self._counts += (int((pred == true).sum()), true.size)

    def compute(self) -> Score:
        """Correct / total; a UsageError when nothing was counted."""
        correct, total = (int(v) for v in self._counts)
        if total == 0:
            raise UsageError("accuracy: no samples: call update() with data before compute()")
        return Score(correct / total, self.name, {"correct": correct, "total": total})


class ExactMatch(CountingMetric):
    """Fraction of predictions equal to their target (or to any of several targets).

    Predictions are strings or sequences (e.g. token lists); a target is one such item or a list
    of alternatives when `multiple_targets` is set.

    Args:
        ignore_case: Compare strings case-insensitively.
        ignore_punctuation: Drop ASCII punctuation from strings before comparing.
        normalize_whitespace: Strip and collapse runs of whitespace in strings before comparing.
        multiple_targets: Each target is a list of acceptable answers.
    """

    name = "exact_match"

    def __init__(
        self,
        ignore_case: bool = False,
        ignore_punctuation: bool = False,
        normalize_whitespace: bool = True,
        multiple_targets: bool = False,
    ) -> None:
        self.ignore_case = ignore_case
        self.ignore_punctuation = ignore_punctuation
        self.normalize_whitespace = normalize_whitespace
        self.multiple_targets = multiple_targets
        super().__init__()

    def _reset(self) -> None:
        self._counts = np.zeros(2, dtype=np.int64)

    def _norm(self, item: Any) -> Any:
        if is_tensor_like(item):
            item = to_numpy(item, "exact_match").tolist()
        if not isinstance(item, str):
            return tuple(item) if isinstance(item, Sequence | np.ndarray) else item
        if self.ignore_case:
            item = item.lower()
        if self.ignore_punctuation:
            import string

            item = item.translate(str.maketrans("", "", string.punctuation))
        if self.normalize_whitespace:
            item = " ".join(item.split())
        return item

    def update(self, predictions: Any, targets: Any) -> None:
        """Add a batch: a list of predictions and a list of targets (or of lists of targets)."""
        self._check_not_synced()
        if isinstance(predictions, str):
            predictions, targets = [predictions], [targets]
        preds = list(predictions)
        golds = list(targets)
        if len(preds) != len(golds):
            raise UsageError(f"exact_match: {len(preds)} predictions but {len(golds)} targets")
        correct = 0
        for pred, gold in zip(preds, golds, strict=True):
            alternatives = (
                [gold] if not self.multiple_targets or isinstance(gold, str) else list(gold)
            )
            p = self._norm(pred)
            correct += any(p == self._norm(g) for g in alternatives)
        self._counts += (correct, len(preds))

    def compute(self) -> Score:
        """Matches / total; a UsageError when nothing was counted."""
        correct, total = (int(v) for v in self._counts)
        if total == 0:
            raise UsageError("exact_match: no samples: call update() with data before compute()")
        return Score(correct / total, self.name, {"correct": correct, "total": total})


def is_tensor_like(value: Any) -> bool:
    """A torch tensor or numpy array (compared by value, not identity)."""
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("torch")
