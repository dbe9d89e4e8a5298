"""Built-in model architectures, registered through the hooks."""

from __future__ import annotations

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
