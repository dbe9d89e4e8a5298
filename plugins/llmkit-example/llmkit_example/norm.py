"""A norm: ScaleNorm (Nguyen & Salazar 2019, "Transformers without Tears"): g * x / ||x||.

One learned scalar `g` per layer instead of LayerNorm's per-feature weight and bias; the paper
initialises it to sqrt(d_model), so at the start the output has unit root-mean-square like RMSNorm.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ScaleNorm(nn.Module):
    """ScaleNorm: x scaled to length g over the last dim, g a learned scalar (init sqrt(d_model)).

    Args:
        d_model: Width of the features normalised (sets the initial scale).
        eps: Smallest norm divided by, so an all-zero input stays finite.
        bias: Ignored: ScaleNorm has no bias (llmkit passes the model's `bias` flag to every norm).
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.tensor(math.sqrt(d_model)))

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x.float(), dim=-1, keepdim=True).clamp(min=self.eps)
        return (self.scale * x.float() / norm).to(x.dtype)  # (..., D)
