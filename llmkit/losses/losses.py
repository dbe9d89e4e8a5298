"""Loss modules that take logits as models produce them, of any leading shape."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from llmkit.errors import UsageError
from llmkit.losses.projected import ProjectedLogits, linear_cross_entropy


class CrossEntropy(nn.Module):
    """Mean cross-entropy of integer targets under logits (B, ..., V), skipping `ignore_index`.

    Args:
        ignore_index: Target value that contributes nothing (padding, unmasked MLM positions).
        label_smoothing: Mass spread uniformly over all classes, in [0, 1).
        reduction: 'mean' over counted targets, 'sum', or 'none' (per target).
    """

    #: It scores a `ProjectedLogits` (hidden states and the LM head) chunk by chunk.
    takes_projection = True

    def __init__(
        self,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: Literal["mean", "sum", "none"] = "mean",
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise UsageError(
                f"loss 'cross_entropy': label_smoothing: must be in [0, 1), got {label_smoothing}"
            )
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(
        self, logits: torch.Tensor | ProjectedLogits, targets: torch.Tensor
    ) -> torch.Tensor:
        """Loss of `logits` (..., V) against `targets` (...); logits still to be projected by the LM
        head are scored a chunk of positions at a time (`linear_cross_entropy`)."""
        if logits.shape[:-1] != targets.shape:
            raise UsageError(
                f"loss 'cross_entropy': logits {tuple(logits.shape)} and targets "
                f"{tuple(targets.shape)} disagree; logits must be targets' shape plus a class axis"
            )
        if isinstance(logits, ProjectedLogits):
            if self.reduction != "none":
                return linear_cross_entropy(
                    logits, targets, self.ignore_index, self.label_smoothing, self.reduction
                )
            logits = logits.materialize()
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            targets.reshape(-1),
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )
        return loss.view(targets.shape) if self.reduction == "none" else loss


class KLDivergence(nn.Module):
    """KL(teacher || student) between the softmax of two logit tensors, scaled by T^2 (Hinton et al.).

    Args:
        temperature: Softens both distributions; the loss is multiplied by temperature**2 so that
            gradient magnitudes stay comparable across temperatures.
        reduction: 'batchmean' (sum over classes, mean over positions), 'sum', or 'none'.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        reduction: Literal["batchmean", "sum", "none"] = "batchmean",
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise UsageError(f"loss 'kl_div': temperature: must be positive, got {temperature}")
        self.temperature = temperature
        self.reduction = reduction

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """KL divergence per position (summed over the class axis), reduced; `mask` keeps positions."""
        if student_logits.shape != teacher_logits.shape:
            raise UsageError(
                f"loss 'kl_div': student {tuple(student_logits.shape)} and teacher "
                f"{tuple(teacher_logits.shape)} logits must have the same shape"
            )
        t = self.temperature
        log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
        per_position = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1) * t * t
        if mask is not None:
            per_position = per_position * mask.to(per_position.dtype)
        if self.reduction == "none":
            return per_position
        if self.reduction == "sum":
            return per_position.sum()
        count = mask.sum().clamp(min=1) if mask is not None else per_position.numel()
        return per_position.sum() / count
