"""Learning-rate schedules with linear warm-up, as multipliers of the optimizer's base rate."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from llmkit.errors import UsageError


def _check(name: str, warmup_steps: int, total_steps: int | None, min_lr_ratio: float) -> None:
    if warmup_steps < 0:
        raise UsageError(f"scheduler '{name}': warmup_steps: must be >= 0, got {warmup_steps}")
    if total_steps is not None and total_steps <= warmup_steps:
        raise UsageError(
            f"scheduler '{name}': total_steps ({total_steps}) must exceed warmup_steps "
            f"({warmup_steps})"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise UsageError(f"scheduler '{name}': min_lr_ratio: must be in [0, 1], got {min_lr_ratio}")


def _warmup(step: int, warmup_steps: int) -> float:
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.1,
) -> LambdaLR:
    """Linear warm-up to the base rate, then cosine decay to `min_lr_ratio` of it.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        total_steps: Steps in the whole run (the decay ends there).
        warmup_steps: Steps of linear warm-up from near zero.
        min_lr_ratio: Final learning rate as a fraction of the base rate.
    """
    _check("cosine", warmup_steps, total_steps, min_lr_ratio)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def linear(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up to the base rate, then linear decay to `min_lr_ratio` of it.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        total_steps: Steps in the whole run (the decay ends there).
        warmup_steps: Steps of linear warm-up from near zero.
        min_lr_ratio: Final learning rate as a fraction of the base rate.
    """
    _check("linear", warmup_steps, total_steps, min_lr_ratio)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return 1.0 - (1.0 - min_lr_ratio) * progress

    return LambdaLR(optimizer, factor)


def constant(optimizer: torch.optim.Optimizer, warmup_steps: int = 0) -> LambdaLR:
    """Linear warm-up to the base rate, then constant.

    Args:
        optimizer: The optimizer whose learning rate is scheduled.
        warmup_steps: Steps of linear warm-up from near zero.
    """
    _check("constant", warmup_steps, None, 0.0)
    return LambdaLR(optimizer, lambda step: _warmup(step, warmup_steps))
