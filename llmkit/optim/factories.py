"""Typed factories for torch's optimizers, so the registry can validate their parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def _fused_default(params: list[Any]) -> bool | None:
    """Use the fused kernel when every tensor lives on a device that has one (CUDA or CPU)."""
    tensors = [p for p in params if isinstance(p, torch.Tensor)]
    if tensors and all(p.device.type in ("cuda", "cpu") and p.is_floating_point() for p in tensors):
        return True
    return None


def adam(
    params: Iterable[Any],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    fused: bool | None = None,
) -> torch.optim.Adam:
    """Adam (Kingma & Ba, 2015).

    Args:
        params: Parameters or parameter groups to optimise.
        lr: Learning rate.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient (coupled, unlike AdamW).
        fused: Use the fused kernel; None picks it when every parameter supports it.
    """
    params = list(params)
    return torch.optim.Adam(
        params,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        fused=_fused_default(params) if fused is None else fused,
    )


def adamw(
    params: Iterable[Any],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    Args:
        params: Parameters or parameter groups to optimise.
        lr: Learning rate.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator for numerical stability.
        weight_decay: Decoupled weight decay, applied as p -= lr * weight_decay * p.
        fused: Use the fused kernel; None picks it when every parameter supports it.
    """
    params = list(params)
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        fused=_fused_default(params) if fused is None else fused,
    )


def sgd(
    params: Iterable[Any],
    lr: float = 1e-2,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Args:
        params: Parameters or parameter groups to optimise.
        lr: Learning rate.
        momentum: Momentum factor (0 disables momentum).
        nesterov: Use Nesterov momentum (needs momentum > 0).
        weight_decay: L2 penalty added to the gradient.
    """
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
