"""LoRA (Hu et al. 2021): W x + (alpha / r) * B A x at the targeted projections, W frozen.

Each targeted `nn.Linear` becomes a `LoRALinear` that keeps the very same `weight`/`bias`
parameters (so the base's state-dict names do not change) and adds, per target, `lora_A.<t>`
(r, in) and `lora_B.<t>` (rows, r) for the output rows the target covers: q, k and v of a fused
qkv projection get one pair each, as PEFT's separate q_proj/k_proj/v_proj would. A starts as
PEFT's (Kaiming-uniform), B as zeros, so an applied adapter does not change the model's output.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmkit.adapters.base import ATTRIBUTE, Adapter, LowRankUpdate, resolve_targets, task_heads
from llmkit.errors import UsageError
from llmkit.nn.dropout import dropout_layer


class LoRALinear(nn.Linear):
    """A frozen linear layer plus low-rank updates of some of its output rows."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.r, self.scale = r, alpha / r
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.rows: dict[str, tuple[int, int]] = {}
        self.order: list[str] = []  # targets by their first row
        self.lora_dropout = dropout_layer(dropout)

    def add(self, target: str, start: int, stop: int) -> None:
        """A low-rank update of output rows [start, stop) under the name `target`."""
        device = self.weight.device
        a = torch.empty(self.r, self.in_features, device=device)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.lora_A[target] = nn.Parameter(a)
        self.lora_B[target] = nn.Parameter(torch.zeros(stop - start, self.r, device=device))
        self.rows[target] = (start, stop)
        self.order = sorted(self.rows, key=lambda t: self.rows[t][0])

    def delta(self, target: str, dtype: torch.dtype = torch.float32) -> Tensor:
        """The update of `target`'s rows as a weight: scale * B A, (rows, in), in `dtype`."""
        return (self.lora_B[target].to(dtype) @ self.lora_A[target].to(dtype)) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        """W x + b plus each target's B A (dropout(x)) * scale in its rows.

        One target over every row (o, or PEFT's separate q_proj) takes PEFT's order of operations
        (A, B, then the scale), so an exported adapter computes the very same outputs. Several
        targets of one projection (q, k and v of a fused qkv) share one dropout draw, read x once
        through their A matrices stacked, and add their updates through one GEMM with a
        block-diagonal B spanning every row (zero where no target is): the sum is the same, without
        a zero-padded update per target and their concatenation.

        With a base in another dtype than the adapter (`base_dtype`), x is cast to the adapter's
        dtype before the dropout and the sum is rounded to the base's dtype once, as PEFT does.
        """
        first = self.lora_A[self.order[0]]
        h = self.lora_dropout(x.to(first.dtype))
        if len(self.order) == 1 and self.rows[self.order[0]] == (0, self.out_features):
            y = F.linear(x.to(self.weight.dtype), self.weight, self.bias)
            update = F.linear(F.linear(h, first), self.lora_B[self.order[0]]) * self.scale
            return y.add_(update)  # y is this call's own: autograd keeps W and x, not y
        a = F.linear(h.reshape(-1, h.shape[-1]), torch.cat([self.lora_A[t] for t in self.order]))
        # the base's product taken over 2-D rows is a tensor of its own, not a view: autograd takes
        # the addmm_ into it as it is, where an in-place update of a view costs a copy of the
        # whole output in backward
        rows = F.linear(
            x.reshape(-1, self.in_features).to(self.weight.dtype), self.weight, self.bias
        )
        rows = rows.to(a.dtype)
        rows.addmm_(a, self._spanning_b().t(), alpha=self.scale)
        return rows.view(*x.shape[:-1], self.out_features).to(self.weight.dtype)

    def _spanning_b(self) -> Tensor:
        """Every target's B placed at its rows and at its A's columns of the stacked A: (out, r n)."""
        width = self.r * len(self.order)
        blocks: list[Tensor] = []
        at = 0
        for i, t in enumerate(self.order):
            start, stop = self.rows[t]
            b = self.lora_B[t]
            if start > at:
                blocks.append(b.new_zeros(start - at, width))
            blocks.append(F.pad(b, (self.r * i, width - self.r * (i + 1))))
            at = stop
        if at < self.out_features:
            blocks.append(blocks[-1].new_zeros(self.out_features - at, width))
        return torch.cat(blocks) if len(blocks) > 1 else blocks[0]

    def merged(self) -> nn.Linear:
        """A plain `nn.Linear` whose weight holds W + every update (in the weight's dtype).

        The sum is taken in float64 and rounded once, so the merged weight is the nearest to the
        exact W + scale * B A that the dtype holds.
        """
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        plain.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            weight = self.weight.detach().to(torch.float64, copy=True)
            for t, (start, stop) in self.rows.items():
                weight[start:stop] += self.delta(t, torch.float64)
            plain.weight.copy_(weight.to(self.weight.dtype))
            if self.bias is not None:
                plain.bias.copy_(self.bias)
        plain.weight.requires_grad_(True)
        return plain

    def base(self) -> nn.Linear:
        """A plain `nn.Linear` holding this layer's own (unchanged) weight and bias parameters."""
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        plain.weight = self.weight
        plain.bias = self.bias
        return plain


def _swap(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


class LoRA(Adapter):
    """Low-rank adapters on the targeted projections; the rest of the model is frozen.

    Args:
        r: Rank of each update.
        alpha: Scale numerator: updates are multiplied by alpha / r.
        dropout: Dropout on the adapter's input (training only).
        targets: Projections to adapt, by the model's short names (q, k, v, o, gate, up, down,
            fc1, fc2).
        base_dtype: Hold the frozen base in this dtype (bfloat16 halves its memory); the adapter
            stays fp32.
    """

    name: ClassVar[str] = "lora"

    def __init__(
        self,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        targets: list[str] | None = None,
        base_dtype: Literal["float32", "bfloat16", "float16"] | None = None,
    ) -> None:
        if r < 1:
            raise UsageError(f"adapter lora: r={r} must be at least 1")
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"adapter lora: dropout={dropout} must be in [0, 1)")
        self.r, self.alpha, self.dropout = r, float(alpha), float(dropout)
        self.targets = list(targets if targets is not None else ["q", "v"])
        self.base_dtype = base_dtype

    def spec(self) -> dict[str, Any]:
        """{"name": "lora", r, alpha, dropout, targets, base_dtype}."""
        return {
            "name": self.name,
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets),
            "base_dtype": self.base_dtype,
        }

    def apply(self, model: nn.Module) -> nn.Module:
        """Freeze the model, wrap each targeted projection in a `LoRALinear`, record the adapter."""
        sites = resolve_targets(model, self.targets, self.name)
        heads = task_heads(model)
        for name, param in model.named_parameters():
            param.requires_grad_(any(name.startswith(f"{h}.") for h in heads))
        if self.base_dtype is not None:
            dtype = getattr(torch, self.base_dtype)
            for p in model.parameters():
                if not p.requires_grad and p.is_floating_point():
                    p.data = p.data.to(dtype)
        seen: set[tuple[str, int, int]] = set()
        for target, places in sites.items():
            for path, start, stop in places:
                if (path, start, stop) in seen:
                    continue  # an alias (fc1 = up) of a site already adapted
                seen.add((path, start, stop))
                module = model.get_submodule(path)
                if not isinstance(module, LoRALinear):
                    if not isinstance(module, nn.Linear):
                        raise UsageError(
                            f"adapter lora: target {target!r} is {path}, a "
                            f"{type(module).__name__}, not a linear projection"
                        )
                    module = LoRALinear(module, self.r, self.alpha, self.dropout)
                    _swap(model, path, module)
                module.add(target, start, stop)
        setattr(model, ATTRIBUTE, self)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        """Replace every `LoRALinear` by a plain linear layer holding W + (alpha / r) B A."""
        for path, module in list(model.named_modules()):
            if isinstance(module, LoRALinear):
                _swap(model, path, module.merged())
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def remove(self, model: nn.Module) -> nn.Module:
        """Replace every `LoRALinear` by a plain linear layer holding its base weight alone."""
        for path, module in list(model.named_modules()):
            if isinstance(module, LoRALinear):
                _swap(model, path, module.base())
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def low_rank_updates(self, model: nn.Module) -> list[LowRankUpdate]:
        """Each target's (A, B, alpha / r) at the rows of the projection it adapts."""
        return [
            LowRankUpdate(
                path,
                target,
                start,
                stop,
                module.lora_A[target].detach(),
                module.lora_B[target].detach(),
                module.scale,
            )
            for path, module in model.named_modules()
            if isinstance(module, LoRALinear)
            for target, (start, stop) in module.rows.items()
        ]
