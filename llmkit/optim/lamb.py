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

    The step is multi-tensor and reads nothing back to the host. For logging, each stepped
    parameter's trust ratio is kept as a 0-d tensor in `state[p]["trust_ratio"]`, and
    `last_trust_ratios` holds the last step's ratios, one 1-d tensor per parameter group (and per
    device and dtype within a group), in parameter order, skipping parameters without gradients.
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
        self.last_trust_ratios: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Take one LAMB step; `closure` re-evaluates the loss if given.

        Multi-tensor (`torch._foreach_*`) over each group's parameters, per device and dtype, with
        no host read: the trust ratios stay tensors (see `last_trust_ratios`).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.last_trust_ratios = []
        for group in self.param_groups:
            buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise UsageError("optimizer 'lamb': sparse gradients are not supported")
                buckets.setdefault((p.device, p.dtype), []).append(p)
            for params in buckets.values():
                self.last_trust_ratios.append(self._step_tensors(group, params))
        return loss

    def _step_tensors(self, group: dict[str, Any], params: list[torch.Tensor]) -> torch.Tensor:
        """Step `params` (one device and dtype, all with gradients); returns their trust ratios."""
        beta1, beta2 = group["betas"]
        grads: list[torch.Tensor] = []
        exp_avgs: list[torch.Tensor] = []
        exp_avg_sqs: list[torch.Tensor] = []
        steps: list[int] = []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            assert p.grad is not None  # the caller passes only parameters with gradients
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        # update = m_hat / (sqrt(v_hat) + eps) (+ weight_decay * p), as the per-tensor formula
        denom: list[torch.Tensor] | tuple[torch.Tensor, ...]
        updates: list[torch.Tensor] | tuple[torch.Tensor, ...]
        if group["bias_correction"]:
            denom = torch._foreach_div(exp_avg_sqs, [1 - beta2**s for s in steps])
            for d in denom:  # a loop: `_foreach_sqrt_` is several times slower on the CPU
                d.sqrt_()
            updates = torch._foreach_div(exp_avgs, [1 - beta1**s for s in steps])
        else:
            denom = [v.sqrt() for v in exp_avg_sqs]
            updates = [m.clone() for m in exp_avgs]
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_div_(updates, denom)
        del denom
        if group["weight_decay"]:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
        # Trust ratio ||w|| / ||update|| per tensor, 1 where either norm is zero, as one tensor.
        w_norms = torch.stack(torch._foreach_norm(params))
        u_norms = torch.stack(torch._foreach_norm(updates))
        trust = torch.where(
            (w_norms > 0) & (u_norms > 0), w_norms / u_norms, torch.ones_like(w_norms)
        )
        if group["max_trust_ratio"] is not None:
            trust = trust.clamp(max=group["max_trust_ratio"])
        for p, t in zip(params, trust.unbind(), strict=True):
            self.state[p]["trust_ratio"] = t
        torch._foreach_mul_(updates, list((trust * group["lr"]).unbind()))
        torch._foreach_sub_(params, updates)
        return trust
