"""Built-in adapters, registered through the same hook as a third party's."""

from __future__ import annotations

from llmkit.hookspecs import Register, hookimpl


@hookimpl
def register_adapters(register: Register) -> None:
    """Register lora."""
    register(
        "lora",
        "llmkit.adapters.lora:LoRA",
        summary="Low-rank adapters on the named projections (q, k, v, o, ...), base frozen",
    )
