"""An attention variant: "softmax-plus-one" (quiet) attention, which lets a head attend to nothing.

Built on llmkit's reference `Attention`, so masks, caches, RoPE/ALiBi and grouped key/value heads
all carry over; only the normalisation of the scores changes: weights = exp(s) / (1 + sum(exp(s))).
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmkit.nn.attention import Attention


class QuietAttention(Attention):
    """Multi-head attention whose softmax has an extra zero logit, so weights may sum below one.

    Args:
        d_model: Width of the queries' input (and of the output).
        n_heads: Number of query heads.
        n_kv_heads: Number of key/value heads; default n_heads.
        causal: Each position attends only to itself and earlier positions.
        cross: Keys and values come from a separate `context` (encoder-decoder attention).
        d_context: Width of `context` for cross-attention; default d_model.
        dropout: Dropout on the attention weights and on the output projection (training only).
        bias: Use biases in the q/k/v and output projections.
    """

    def normalize(self, scores: Tensor) -> Tensor:
        zero = scores.new_zeros((*scores.shape[:-1], 1))  # the "attend to nothing" logit
        return torch.softmax(torch.cat([scores, zero], dim=-1).float(), dim=-1)[..., :-1]
