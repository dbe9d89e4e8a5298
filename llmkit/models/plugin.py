"""Built-in model architectures, and the inference CLI commands, registered through the hooks."""

from __future__ import annotations

from typing import Any

from llmkit.hookspecs import Register, hookimpl

MODELS = {
    "gpt": ("llmkit.models.gpt:gpt", "Decoder-only causal LM in the GPT-2 layout, tied LM head"),
    "bert": ("llmkit.models.bert:bert", "BERT encoder with masked-LM and classification heads"),
    "transformer": (
        "llmkit.models.transformer:transformer",
        "Encoder-decoder Transformer (Vaswani et al.) with cross-attention",
    ),
    "llama": ("llmkit.models.llama:llama", "Llama decoder: RMSNorm, RoPE, SwiGLU, GQA"),
}


@hookimpl
def register_models(register: Register) -> None:
    """Register gpt, bert, transformer and llama."""
    for name, (target, summary) in MODELS.items():
        register(name, target, summary=summary)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add the inference/IO commands (import, export, generate) when that package is present."""
    import importlib.util

    if importlib.util.find_spec("llmkit.inference") is None:
        return
    if importlib.util.find_spec("llmkit.inference.cli") is None:
        return
    from llmkit.inference.cli import add_commands

    add_commands(cli)
