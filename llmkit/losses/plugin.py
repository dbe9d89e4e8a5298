"""Built-in losses, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from llmkit.hookspecs import Register, hookimpl


@hookimpl
def register_losses(register: Register) -> None:
    """Cross-entropy over tokens or classes, and KL divergence between two distributions."""
    register(
        "cross_entropy",
        "llmkit.losses.losses:CrossEntropy",
        summary="Cross-entropy over (B, T, V) or (B, C) logits, ignore_index, label smoothing",
    )
    register(
        "kl_div",
        "llmkit.losses.losses:KLDivergence",
        summary="KL(teacher || student) between logits, with temperature (distillation)",
    )
