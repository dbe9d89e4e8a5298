"""An attention variant: "softmax-plus-one" (quiet) attention, which lets a head attend to nothing.

Built on llmkit's reference `Attention`, so masks, caches, RoPE/ALiBi and grouped key/value heads
all carry over; only the kernel changes: weights = exp(s) / (1 + sum(exp(s))).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from llmkit.nn.attention import Attention, repeat_kv


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

    def kernel(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        k, v = repeat_kv(k, self.n_heads), repeat_kv(v, self.n_heads)  # (B, nh, Tk, hs)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, nh, Tq, Tk)
        if is_causal:
            tq, tk = scores.shape[-2:]
            allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        if mask is not None:
            scores = scores + mask
        zero = scores.new_zeros((*scores.shape[:-1], 1))  # the "attend to nothing" logit
        weights = torch.softmax(torch.cat([scores, zero], dim=-1).float(), dim=-1)[..., :-1]
        weights = torch.nn.functional.dropout(weights.to(q.dtype), self.dropout, self.training)
        return weights @ v  # (B, nh, Tq, hs)
