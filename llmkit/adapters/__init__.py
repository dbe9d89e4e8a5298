"""Adapters (kind `adapter`): trainable modules put into a frozen model; built-in `lora`."""

from __future__ import annotations

from llmkit.adapters.base import (
    Adapter,
    LowRankUpdate,
    adapter_of,
    adapter_spec,
    apply_adapter,
    build_adapter,
    merge_adapter,
    remove_adapter,
    trainable_state_dict,
)

__all__ = [
    "Adapter",
    "LowRankUpdate",
    "adapter_of",
    "adapter_spec",
    "apply_adapter",
    "build_adapter",
    "merge_adapter",
    "remove_adapter",
    "trainable_state_dict",
]
