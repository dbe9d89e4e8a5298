"""LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning"), written out in full."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from llmkit.errors import UsageError


class LAMB(torch.optim.Optimizer):
    """LAMB: an Adam step rescaled per parameter tensor by the trust ratio ||w|| / ||update||.

    Args:
        params: Parameters or parameter groups to optimise.
        lr: Learning rate.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator for numerical stability.
        weight_decay: Decoupled weight decay, added to the Adam direction before the trust ratio.
        bias_correction: Correct the moment estimates for their zero initialisation.
        max_trust_ratio: Upper bound on the trust ratio (None leaves it unbounded).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
        max_trust_ratio: float | None = 10.0,
    ) -> None:
        if lr <= 0:
            raise UsageError(f"optimizer 'lamb': lr: must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise UsageError(f"optimizer 'lamb': betas: each must be in [0, 1), got {betas}")
        if eps <= 0:
            raise UsageError(f"optimizer 'lamb': eps: must be positive, got {eps}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            max_trust_ratio=max_trust_ratio,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Take one LAMB step; `closure` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise UsageError("optimizer 'lamb': sparse gradients are not supported")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                if group["bias_correction"]:
                    m_hat = m / (1 - beta1 ** state["step"])
                    v_hat = v / (1 - beta2 ** state["step"])
                else:
                    m_hat, v_hat = m, v
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where(
                    (w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm)
                )
                if group["max_trust_ratio"] is not None:
                    trust = trust.clamp(max=group["max_trust_ratio"])
                state["trust_ratio"] = trust.item()
                p.sub_(update * (group["lr"] * trust))
        return loss
