"""The one way llmkit makes and saves a matplotlib figure: Agg canvas, atomic PNG write."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkit.atomic import write_bytes
from llmkit.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "drawing pictures needs matplotlib: pip install 'llmkit[plot]'"


def new_figure(width: float, height: float, **kwargs: Any) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global backend, no display needed)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Render `fig` as PNG and write it atomically (a reader never sees half a picture)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_bytes(path, buffer.getvalue())
