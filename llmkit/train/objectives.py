"""How each objective turns a batch into logits and targets for the loss.

`Objective` wraps the model in a module whose forward takes the whole batch, so that a DDP or FSDP
wrapper around it sees every call (a model's `classify` head included) and syncs gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from torch import Tensor, nn

from llmkit.errors import UsageError

ObjectiveName = Literal["causal_lm", "masked_lm", "seq2seq", "classification"]
OBJECTIVES: tuple[str, ...] = ("causal_lm", "masked_lm", "seq2seq", "classification")


class Objective(nn.Module):
    """`forward(batch) -> (logits, targets)` for one training objective over `model`."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        if name not in OBJECTIVES:
            raise UsageError(f"unknown objective '{name}'; available: {', '.join(OBJECTIVES)}")
        if name == "classification" and not hasattr(model, "classify"):
            raise UsageError(
                f"objective 'classification' needs a model with a classify head; "
                f"{type(model).__name__} has none (use model 'bert')"
            )
        self.model = model
        self.name = name

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Logits and the targets the loss compares them with."""
        mask = batch.get("attention_mask")
        if self.name == "causal_lm":  # next token: labels are the inputs shifted by one
            return self.model(batch["input_ids"]), batch["labels"]
        if self.name == "masked_lm":  # labels are -100 except at masked positions
            return self.model(batch["input_ids"], attention_mask=mask), batch["labels"]
        if self.name == "seq2seq":  # teacher forcing: decoder inputs are the targets shifted right
            logits = self.model(
                batch["input_ids"],
                batch["decoder_input_ids"],
                src_mask=mask,
                tgt_mask=batch.get("decoder_attention_mask"),
            )
            return logits, batch["labels"]
        classify: Any = self.model.classify
        return classify(batch["input_ids"], attention_mask=mask), batch["labels"]  # (B, n_labels)


class ObjectiveLoss(nn.Module):
    """`forward(batch) -> loss`: the objective's logits scored by `loss`, as one module.

    The trainer wraps and compiles this module rather than the objective alone, so that DDP sees
    the whole forward and `torch.compile` fuses the loss's log-softmax (a few passes over a
    tokens x vocab tensor) with the LM head instead of running it eagerly.
    """

    def __init__(self, objective: Objective, loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.objective = objective
        self.loss = loss

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """The scalar (or per-target) loss of one batch."""
        logits, targets = self.objective(batch)
        return self.loss(logits, targets)
