"""Normalisation layers, chosen by name: LayerNorm and RMSNorm."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llmkit.errors import UsageError


class LayerNorm(nn.LayerNorm):
    """LayerNorm (Ba et al.), optional bias: (x - mean) / std * weight + bias over the last dim."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__(d_model, eps=eps, bias=bias)


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich): x / rms(x) * weight, computed in float32 as Llama does."""

    def __init__(self, d_model: int, eps: float = 1e-6, bias: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


NORMS: dict[str, type[nn.Module]] = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


def build_norm(name: str, d_model: int, eps: float, bias: bool = True) -> nn.Module:
    """The norm `name` over `d_model` features; unknown names are a UsageError listing choices."""
    if name not in NORMS:
        raise UsageError(f"norm: unknown norm '{name}'; choose one of {', '.join(NORMS)}")
    return NORMS[name](d_model, eps=eps, bias=bias)
