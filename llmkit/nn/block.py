"""The Transformer block: attention (+ optional cross-attention) and an MLP, each with a residual.

`pre_norm=True` normalises each sub-layer's input (GPT-2, Llama); `pre_norm=False` normalises after
the residual addition, as in the original Transformer and BERT.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from llmkit.nn.cache import LayerCache
from llmkit.nn.positions import Positions


class Block(nn.Module):
    """One layer: x + attn(x) [+ cross_attn(x, memory)] + mlp(x), with norms before or after."""

    def __init__(
        self,
        attn: nn.Module,
        mlp: nn.Module,
        norm1: nn.Module,
        norm2: nn.Module,
        *,
        pre_norm: bool,
        cross_attn: nn.Module | None = None,
        norm_cross: nn.Module | None = None,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.checkpoint = checkpoint  # recompute activations in backward: less memory, more time
        self.norm1, self.attn = norm1, attn
        self.norm_cross, self.cross_attn = norm_cross, cross_attn
        self.norm2, self.mlp = norm2, mlp

    def forward(
        self,
        x: Tensor,
        *,
        attention_mask: Tensor | None = None,
        cache: LayerCache | None = None,
        positions: Positions | None = None,
        position_ids: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cross_cache: LayerCache | None = None,
    ) -> Tensor:
        """x (B, T, D) -> (B, T, D); `memory` (B, S, D) feeds the cross-attention if there is one."""
        kwargs: dict[str, Any] = dict(
            attention_mask=attention_mask,
            cache=cache,
            positions=positions,
            position_ids=position_ids,
            memory=memory,
            memory_mask=memory_mask,
            cross_cache=cross_cache,
        )
        if self.checkpoint and self.training and torch.is_grad_enabled() and cache is None:
            out: Tensor = torch.utils.checkpoint.checkpoint(
                self._forward, x, use_reentrant=False, **kwargs
            )
            return out
        return self._forward(x, **kwargs)

    def _forward(
        self,
        x: Tensor,
        *,
        attention_mask: Tensor | None,
        cache: LayerCache | None,
        positions: Positions | None,
        position_ids: Tensor | None,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        cross_cache: LayerCache | None,
    ) -> Tensor:
        # position_ids only when given, so attention plugins without the argument keep working
        extra = {} if position_ids is None else {"position_ids": position_ids}

        def self_attn(h: Tensor) -> Tensor:
            return self.attn(
                h, attention_mask=attention_mask, cache=cache, positions=positions, **extra
            )

        def cross_attn(h: Tensor) -> Tensor:
            assert self.cross_attn is not None
            return self.cross_attn(h, memory, attention_mask=memory_mask, cache=cross_cache)

        if self.pre_norm:
            x = x + self_attn(self.norm1(x))
            if self.cross_attn is not None and self.norm_cross is not None:
                x = x + cross_attn(self.norm_cross(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self_attn(x))
        if self.cross_attn is not None and self.norm_cross is not None:
            x = self.norm_cross(x + cross_attn(x))
        return self.norm2(x + self.mlp(x))
