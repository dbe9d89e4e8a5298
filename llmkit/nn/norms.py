"""Normalisation layers, registered as `norm` components: LayerNorm and RMSNorm.

A norm component is a class (or factory) called as `cls(d_model, eps=eps, bias=bias)` with the
model's width, its `norm_eps` and its `bias` flag (a norm without a bias may ignore it), returning an
`nn.Module` that maps (..., d_model) to the same shape. Models hold norms under the names they
always had (`norm1`, `norm2`, `norm`), so a norm's own parameter names (`weight`, `bias`) are what
appear in the state dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

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
    """RMSNorm (Zhang & Sennrich): x / rms(x) * weight, computed in float32 as Llama does (float64
    inputs in float64).

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
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            out: Tensor = _RMSNorm.apply(x, self.weight, self.eps)
            return out
        return _rms_normed(x, self.weight, _inverse_rms(x, self.eps))


def _wide(x: Tensor) -> Tensor:
    """x in float32, or as it is when it is wider (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _inverse_rms(x: Tensor, eps: float) -> Tensor:
    """1 / sqrt(mean(x^2) + eps) over the last dim, in float32 at least, keeping that dim."""
    return torch.rsqrt(_wide(x).pow(2).mean(-1, keepdim=True) + eps)


def _rms_normed(x: Tensor, weight: Tensor, r: Tensor) -> Tensor:
    """weight * (x * r rounded to x's dtype), HF Llama's order and rounding."""
    normed = (_wide(x) * r).to(x.dtype)
    return normed.mul_(weight) if weight.dtype == normed.dtype else weight * normed


class _RMSNorm(torch.autograd.Function):
    """RMSNorm with its backward in closed form: dx = r * (gy - x * r^2 * mean(gy * x)), gy = g * w.

    Autograd of the plain formula keeps x, 1/rms and the normalised x, and walks ten nodes back
    through pow, mean, rsqrt and two products; this keeps x and 1/rms alone (a (B, T, D) tensor
    less a norm) and takes four passes over x. The forward is the plain formula's own ops, so the
    values are the same bits; the gradients agree to rounding (tested against autograd in fp64).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        r = _inverse_rms(x, eps)
        ctx.save_for_backward(x, weight, r)
        return _rms_normed(x, weight, r)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, weight, r = ctx.saved_tensors
        grad_x = grad_w = None
        x32 = _wide(x)
        if ctx.needs_input_grad[0]:
            gy = _wide(grad * weight)
            c = (gy * x32).sum(-1, keepdim=True).mul_(r.pow(3)).div_(-x.shape[-1])
            grad_x = gy.mul_(r).addcmul_(x32, c).to(x.dtype)
        if ctx.needs_input_grad[1]:
            normed = (x32 * r).to(x.dtype)
            grad_w = (grad * normed).sum(dim=tuple(range(grad.dim() - 1))).to(weight.dtype)
        return grad_x, grad_w, None


def build_norm(name: str, d_model: int, eps: float, bias: bool = True) -> nn.Module:
    """The registered norm `name` over `d_model` features; an unknown name lists the registered ones."""
    return build_part("norm", name, nn.Module, d_model, eps=eps, bias=bias)
