"""Normalisation layers, registered as `norm` components: LayerNorm and RMSNorm.

A norm component is a class (or factory) called as `cls(d_model, eps=eps, bias=bias)` with the
model's width, its `norm_eps` and its `bias` flag (a norm without a bias may ignore it), returning an
`nn.Module` that maps (..., d_model) to the same shape. Models hold norms under the names they
always had (`norm1`, `norm2`, `norm`), so a norm's own parameter names (`weight`, `bias`) are what
appear in the state dict.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llmkit.nn.components import build_part


class LayerNorm(nn.LayerNorm):
    """LayerNorm (Ba et al.), optional bias: (x - mean) / std * weight + bias over the last dim.

    Args:
        d_model: Width of the features normalised.
        eps: Added to the variance before the square root.
        bias: Learn an additive bias as well as the scale.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__(d_model, eps=eps, bias=bias)


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich): x / rms(x) * weight, computed in float32 as Llama does.

    Args:
        d_model: Width of the features normalised.
        eps: Added to the mean square before the square root.
        bias: Ignored: RMSNorm has no bias (every norm is given the model's `bias` flag).
    """

    def __init__(self, d_model: int, eps: float = 1e-6, bias: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def build_norm(name: str, d_model: int, eps: float, bias: bool = True) -> nn.Module:
    """The registered norm `name` over `d_model` features; an unknown name lists the registered ones."""
    return build_part("norm", name, nn.Module, d_model, eps=eps, bias=bias)
