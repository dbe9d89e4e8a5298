"""LAMB (You et al., 2020, "Large Batch Optimization for Deep Learning"), written out in full."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from llmkit.errors import UsageError

# On the CPU a tensor of at least this many elements is stepped on its own, its update built in one
# buffer kept between steps, so that each pass finds the tensor still in cache; smaller tensors are
# stepped together in chunks of at most CHUNK_ELEMENTS. Other devices step a group in one chunk.
LARGE_ELEMENTS = 1 << 14
CHUNK_ELEMENTS = 1 << 17
# Tensors the fused kernel and the reused buffer take as they are (not, say, FSDP's DTensor shards).
_PLAIN = (torch.Tensor, torch.nn.Parameter)
# A step far past any real one: its bias corrections are 1, which turns them off.
_NO_BIAS_CORRECTION = float(2**62)


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

    The Adam direction comes from torch's fused Adam kernel, run on a buffer holding
    weight_decay * w with a learning rate of -1, so that one pass updates both moments and
    leaves the whole LAMB update in the buffer (multi-tensor `torch._foreach_*` where the kernel
    is missing or a tensor is not contiguous). The step reads nothing back to the host. For
    logging, each stepped parameter's trust ratio is kept as a 0-d tensor in
    `state[p]["trust_ratio"]`, and `last_trust_ratios` holds the last step's ratios, one 1-d tensor
    per parameter group (and per device and dtype within a group), in parameter order, skipping
    parameters without gradients.
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
        self._buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._unfused: set[tuple[str, torch.dtype]] = set()  # no fused Adam kernel for these
        self._steps: dict[tuple[torch.device, float], torch.Tensor] = {}  # this step's counters

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Take one LAMB step; `closure` re-evaluates the loss if given.

        No host read: the trust ratios stay tensors (see `last_trust_ratios`).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.last_trust_ratios = []
        self._steps = {}
        for group in self.param_groups:
            buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise UsageError("optimizer 'lamb': sparse gradients are not supported")
                buckets.setdefault((p.device, p.dtype), []).append(p)
            for params in buckets.values():
                self.last_trust_ratios.append(self._step_bucket(group, params))
        return loss

    def _step_bucket(self, group: dict[str, Any], params: list[torch.Tensor]) -> torch.Tensor:
        """Step `params` (one device and dtype, all with gradients); returns their trust ratios."""
        cpu = params[0].device.type == "cpu"
        chunks: dict[int, list[list[torch.Tensor]]] = {}  # by step, runs of small tensors
        sizes: dict[int, int] = {}  # elements in the last run of each step
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            if cpu and p.numel() >= LARGE_ELEMENTS and type(p) in _PLAIN:
                self._step_large(group, p, state)
                continue
            runs = chunks.setdefault(state["step"], [])
            size = sizes.get(state["step"], 0) + p.numel()
            if not runs or (cpu and size > CHUNK_ELEMENTS):
                runs.append([])
                size = p.numel()
            runs[-1].append(p)
            sizes[state["step"]] = size
        for step, runs in chunks.items():
            for run in runs:
                self._step_chunk(group, run, step)
        return torch.stack([self.state[p]["trust_ratio"] for p in params])

    def _buffer(self, like: torch.Tensor) -> torch.Tensor:
        """A buffer shaped like `like`, shared by its device and dtype and kept between steps."""
        key = (like.device, like.dtype)
        flat = self._buffers.get(key)
        if flat is None or flat.numel() < like.numel():
            flat = self._buffers[key] = torch.empty(
                like.numel(), device=like.device, dtype=like.dtype
            )
        return flat[: like.numel()].view_as(like)

    def _step_large(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        """Step one CPU tensor, its update built in the reused buffer, every pass while in cache."""
        update = self._buffer(p)
        torch.mul(p, group["weight_decay"], out=update)
        self._add_adam_direction(group, [p], state["step"], [update])
        trust = _trust_ratio(group, torch.linalg.vector_norm(p), torch.linalg.vector_norm(update))
        p.addcmul_(update, trust, value=-group["lr"])
        state["trust_ratio"] = trust

    def _step_chunk(self, group: dict[str, Any], params: list[torch.Tensor], step: int) -> None:
        """Step `params` (all at `step`) multi-tensor."""
        updates = list(torch._foreach_mul(params, group["weight_decay"]))
        self._add_adam_direction(group, params, step, updates)
        trust = _trust_ratio(
            group,
            torch.stack(torch._foreach_norm(params)),
            torch.stack(torch._foreach_norm(updates)),
        )
        each = trust.unbind()
        torch._foreach_addcmul_(params, updates, list(each), value=-group["lr"])
        for p, t in zip(params, each, strict=True):
            self.state[p]["trust_ratio"] = t

    def _add_adam_direction(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        step: int,
        updates: list[torch.Tensor],
    ) -> None:
        """Update the moments of `params` and add m_hat / (sqrt(v_hat) + eps) to `updates`."""
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params if p.grad is not None]  # all of them: see step()
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        device = params[0].device
        tensors = (params, grads, exp_avgs, exp_avg_sqs)
        if (device.type, params[0].dtype) not in self._unfused and all(
            type(t) in _PLAIN and t.is_contiguous() and t.dtype == params[0].dtype
            for ts in tensors
            for t in ts
        ):
            at = float(step) if group["bias_correction"] else _NO_BIAS_CORRECTION
            counter = self._steps.get((device, at))
            if counter is None:
                counter = self._steps[(device, at)] = torch.full((), at, device=device)
            steps = [counter] * len(params)
            try:  # the Adam step of a "parameter" holding the update with lr -1 adds the direction
                torch._fused_adam_(
                    updates,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    lr=-1.0,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=0.0,
                    eps=group["eps"],
                    amsgrad=False,
                    maximize=False,
                )
                return
            except (AttributeError, NotImplementedError, RuntimeError):  # no kernel (torch < 2.4)
                self._unfused.add((device.type, params[0].dtype))
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        bc1, bc2 = (1 - beta1**step, 1 - beta2**step) if group["bias_correction"] else (1.0, 1.0)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, bc2**0.5)
        torch._foreach_add_(denoms, group["eps"])
        torch._foreach_addcdiv_(updates, exp_avgs, denoms, value=1 / bc1)


def _trust_ratio(group: dict[str, Any], w_norm: torch.Tensor, u_norm: torch.Tensor) -> torch.Tensor:
    """||w|| / ||update||, at most max_trust_ratio, and 1 where either norm is zero."""
    ratio = w_norm / u_norm
    if group["max_trust_ratio"] is not None:
        ratio.clamp_(max=group["max_trust_ratio"])
    return torch.where(torch.minimum(w_norm, u_norm) > 0, ratio, 1.0)
