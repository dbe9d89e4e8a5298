"""A streaming metric: update with batches, compute at the end, reset to start again."""

from __future__ import annotations

from collections.abc import Sequence


class Jaccard:
    """Mean Jaccard similarity |A & B| / |A | B| between the token sets of predictions and targets.

    Args:
        lowercase: Compare tokens case-insensitively.
    """

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self.total = 0.0
        self.count = 0

    def update(self, predictions: Sequence[str], targets: Sequence[str]) -> None:
        """Add a batch of predicted and reference strings (paired by position)."""
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
        for pred, target in zip(predictions, targets, strict=True):
            a, b = self._tokens(pred), self._tokens(target)
            self.total += len(a & b) / len(a | b) if a | b else 1.0
            self.count += 1

    def compute(self) -> float:
        """The mean similarity over everything seen (0.0 before any update)."""
        return self.total / self.count if self.count else 0.0

    def _tokens(self, text: str) -> set[str]:
        return set((text.lower() if self.lowercase else text).split())
