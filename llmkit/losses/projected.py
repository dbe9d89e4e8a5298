"""Cross-entropy through the LM head, chunked over positions: no (tokens, vocab) logits tensor.

A causal LM's head maps N positions to V logits; scoring them the plain way holds the fp32 logits,
their log-softmax and two gradients of that size (4 x N x V x 4 bytes: 400 MB for 512 positions of
SmolLM2's 49,152 ids). Here the head's product, the loss and its gradient are taken a few hundred
rows at a time, and the gradients of the hidden states and the head (the softmax minus the one-hot
target, times W or h) are accumulated during the forward, so nothing vocabulary-sized outlives a
chunk and no product is recomputed: the FLOPs are the plain path's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: Logit elements per chunk (8M fp32 values: 32 MiB), which sets the rows taken at a time.
CHUNK_ELEMENTS = 1 << 23


@dataclass
class ProjectedLogits:
    """Logits not yet computed: `hidden` (..., D) through a linear head `weight` (V, D), `bias`.

    An objective returns this instead of logits so that a loss that knows it (cross_entropy) can
    score the head chunk by chunk; `materialize()` gives the plain logits to any other loss.
    """

    hidden: Tensor
    weight: Tensor
    bias: Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        """The logits' shape (..., V)."""
        return torch.Size((*self.hidden.shape[:-1], self.weight.shape[0]))

    def materialize(self) -> Tensor:
        """The logits (..., V)."""
        return F.linear(self.hidden, self.weight, self.bias)


def _softmax_(z: Tensor) -> tuple[Tensor, Tensor]:
    """The softmax of rows `z` (n, V), computed in place of z, and their logsumexp (n,).

    One buffer and one exp per element, where `logsumexp` and then `exp(z - lse)` take a second
    vocabulary-sized temporary and a second exp; a row of -inf gives lse -inf, as logsumexp does.
    """
    top = z.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = z.sub_(top).exp_().sum(-1, keepdim=True)
    lse = (total.log() + top).squeeze(1)
    return z.mul_(total.reciprocal()), lse


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T + bias` against `targets`, chunk by chunk; the
    gradients are computed in the forward (the softmax is at hand there) and scaled in backward."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        ignore_index: int,
        smoothing: float,
        rows: int,
    ) -> Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        vocab = weight.shape[0]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b and bias is not None else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], rows):
            h = hidden[start : start + rows]
            t = targets[start : start + rows]
            keep = t != ignore_index
            safe = torch.where(keep, t, 0)
            z = F.linear(h, weight, bias).float()  # (n, V)
            picked = z.gather(1, safe[:, None]).squeeze(1)
            mean = z.mean(-1) if smoothing else None
            p, lse = _softmax_(z)
            loss = lse - picked
            if mean is not None:
                loss = (1.0 - smoothing) * loss + smoothing * (lse - mean)
            total += (loss * keep).sum()
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            if smoothing:
                p.sub_(smoothing / vocab)
            p[torch.arange(p.shape[0], device=p.device), safe] -= 1.0 - smoothing
            p.mul_(keep[:, None])
            g = p.to(weight.dtype)
            if grad_h is not None:
                grad_h[start : start + rows] = g @ weight
            if grad_w is not None:
                grad_w.addmm_(g.t(), h.to(weight.dtype))
            if grad_b is not None:
                grad_b += p.sum(0).to(grad_b.dtype)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad_out.float()

        def scaled(g: Tensor | None) -> Tensor | None:
            return None if g is None else g * scale.to(g.dtype)

        return scaled(grad_h), scaled(grad_w), scaled(grad_b), None, None, None, None


def linear_cross_entropy(
    projected: ProjectedLogits,
    targets: Tensor,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy of the head's logits against `targets` (...), 'mean' over counted targets or
    'sum', equal to `F.cross_entropy(projected.materialize(), targets)` without its memory."""
    hidden = projected.hidden.reshape(-1, projected.hidden.shape[-1])
    flat = targets.reshape(-1)
    most = max(1, CHUNK_ELEMENTS // projected.weight.shape[0])
    chunks = -(-hidden.shape[0] // most)
    rows = max(1, -(-hidden.shape[0] // max(1, chunks)))  # equal chunks: a last sliver is slow
    total = _LinearCrossEntropy.apply(
        hidden, projected.weight, projected.bias, flat, ignore_index, label_smoothing, rows
    )
    if reduction == "sum":
        return total
    return total / (flat != ignore_index).sum().clamp(min=1)
