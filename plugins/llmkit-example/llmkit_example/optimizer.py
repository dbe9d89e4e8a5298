"""Signum (Bernstein et al., 2018): step by the sign of a momentum of the gradient."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Signum(torch.optim.Optimizer):
    """Sign SGD with momentum: p -= lr * sign(m), m = beta * m + (1 - beta) * grad.

    Args:
        params: Parameters or parameter groups to optimise.
        lr: Step size of every coordinate.
        momentum: Decay of the gradient's running mean (0 gives plain signSGD).
        weight_decay: Decoupled weight decay.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("momentum", torch.zeros_like(p))
                m.lerp_(p.grad, 1 - group["momentum"])
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(m.sign(), alpha=-group["lr"])
        return loss
