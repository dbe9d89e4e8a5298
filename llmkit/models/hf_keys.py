"""What the models' Hugging Face key maps share (a leaf: it imports no model and no storage code)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmkit.errors import UsageError


def reject_unexpected(
    arch: str, hf: Mapping[str, Any], used: set[str], ignored: tuple[str, ...] = ()
) -> None:
    """A UsageError listing checkpoint tensors the config has no place for (never drop weights)."""
    extra = [k for k in hf if k not in used and not k.endswith(ignored)]
    if extra:
        raise UsageError(
            f"{arch} weights hold {len(extra)} tensor(s) the config has no place for, first: "
            f"{', '.join(extra[:3])}; does config.json describe these weights (layers, sizes)?"
        )
