"""Fixtures of the analysis tests: a decoded-PNG check and a tiny trained-looking checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _assert_drawn(path: Path, min_width: int, min_height: int) -> None:
    from matplotlib.image import imread

    image = np.asarray(imread(path))
    assert image.shape[0] >= min_height and image.shape[1] >= min_width, image.shape
    rgb = image[:, :, :3]
    inked = (rgb < 0.9).any(axis=2).mean()
    assert 0.01 < inked < 0.95, inked
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20


@pytest.fixture
def assert_drawn() -> Callable[[Path, int, int], None]:
    """Check a PNG: decoded, at least the given size, not blank (ink and many colours)."""
    pytest.importorskip("matplotlib")
    return _assert_drawn
