"""llmkit.models: GPT, BERT, encoder-decoder Transformer and Llama, built from config dicts."""

from __future__ import annotations

from typing import Any


def build_model(config: dict[str, Any]) -> Any:
    """Build any registered architecture from a config dict with a `"model"` key (as `to_dict` gives)."""
    from llmkit.api import create
    from llmkit.errors import RegistryError, UsageError

    if "model" not in config:
        raise UsageError("model config: missing the 'model' field (e.g. 'gpt', 'bert', 'llama')")
    rest = {k: v for k, v in config.items() if k != "model"}
    try:
        return create("model", config["model"], **rest)
    except RegistryError as exc:
        raise UsageError(f"model config: {exc}") from None


__all__ = ["build_model"]
