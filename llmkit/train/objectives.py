"""The module the trainer differentiates: an objective's logits scored by the loss, in one forward.

DDP or FSDP wraps this module, so that every call into the model (a `classify` head included) goes
through the wrapper and syncs gradients, and `torch.compile` compiles it whole, so that the loss's
log-softmax over a tokens x vocab tensor fuses with the LM head instead of running eagerly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from llmkit.objectives.base import Objective


class ObjectiveLoss(nn.Module):
    """`forward(batch) -> (summed loss, target count)` of `objective` on `model`, scored by `loss`.

    The loss is the mean over the batch's targets times their count: the sum of per-target losses,
    so that the trainer can divide the sum over a whole optimizer step (every micro-batch, every
    rank) by the step's total target count and weigh every target equally.
    """

    def __init__(
        self, model: nn.Module, objective: Objective, loss: Callable[[Tensor, Tensor], Tensor]
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.loss = loss

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The batch's summed loss and its number of targets (both 0-d tensors)."""
        logits, targets = self.objective.forward(self.model, batch)
        count = self.objective.count_targets(batch)
        mean = self.objective.score(self.loss, logits, targets, batch)
        return torch.where(count > 0, mean * count, mean.new_zeros(())), count
