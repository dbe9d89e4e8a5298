"""A confusion matrix as an annotated heat-map: rows the true labels, columns the predicted ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmkit.plots.figure import new_figure, save_png


def save_confusion_png(
    path: str | Path, labels: Sequence[Any], matrix: Sequence[Sequence[float]]
) -> Path:
    """Write the heat-map of `matrix` to the PNG `path` (atomically): cells shaded by the row's
    share (each true class's recall) and annotated with their count, labels on both axes."""
    import numpy as np

    k = len(labels)
    m = np.asarray(matrix, dtype=np.float64).reshape(k, k)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    names = [str(label) for label in labels]
    side = min(14.0, max(4.5, 2.5 + 0.6 * k))
    fig = new_figure(side + 1.2, side, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names), default=0) > 3 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("confusion matrix")
    size = 10 if k <= 10 else max(5, 10 - (k - 10) // 3)
    for i in range(k):
        for j in range(k):
            count = f"{m[i, j]:.0f}" if float(m[i, j]).is_integer() else f"{m[i, j]:.2f}"
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, count, ha="center", va="center", color=colour, fontsize=size)
    return save_png(fig, path)
