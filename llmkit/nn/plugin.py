"""Built-in attention variants, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from llmkit.hookspecs import Register, hookimpl

ATTENTIONS = {
    "mha": ("Attention", "Multi-head attention in plain tensor math (the reference)"),
    "sdpa": ("SDPAttention", "Multi-head attention via F.scaled_dot_product_attention"),
    "mqa": ("MultiQueryAttention", "Multi-query attention: one shared key/value head"),
    "gqa": ("GroupedQueryAttention", "Grouped-query attention with n_kv_heads key/value heads"),
    "sliding_window": ("SlidingWindowAttention", "Local attention within a window, O(T*window)"),
    "linear": ("LinearAttention", "Kernelised linear attention (elu+1 features), O(T)"),
}


@hookimpl
def register_attentions(register: Register) -> None:
    """Register every attention variant of llmkit.nn.attention."""
    for name, (cls, summary) in ATTENTIONS.items():
        register(name, f"llmkit.nn.attention:{cls}", summary=summary)
