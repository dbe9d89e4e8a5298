"""Knowledge distillation (`distill`): a student learns the next token and a teacher's distribution.

The loss of a batch is `alpha * CE + (1 - alpha) * T^2 * KL(teacher || student)`, both means over
the batch's scored positions: CE is the run's configured loss (`train.loss`, cross_entropy) of the
student's logits against the next tokens, the KL term is the registered `kl_div` loss (which scales
by T^2) between the teacher's and the student's logits at the same positions, both softened by the
temperature T. The teacher is any llmkit checkpoint (`train.teacher`), held in eval mode without
gradients (optionally in bf16) outside the module the optimizer, DDP and checkpoints see. It must
share the student's tokenizer: logits are compared id by id.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from llmkit.errors import UsageError
from llmkit.objectives.base import (
    IGNORE_INDEX,
    LM_METRICS,
    Batch,
    EvalData,
    EvalSettings,
    Prepared,
    TrainData,
)
from llmkit.objectives.causal_lm import CausalLM

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor, nn

#: Texts both tokenizers must encode alike (words, digits, spacing, punctuation, non-ASCII).
PROBES = (
    "The quick brown fox jumps over the lazy dog.",
    "  def f(x):\n\treturn x * 3.14159 # 2024-06-01",
    "Ünïcödé — naïve café, 東京, emoji 🙂!",
)


def describe_tokenizer(tokenizer: Any) -> str:
    """A short description of a tokenizer for an error: its kind and vocabulary size."""
    return f"{type(tokenizer).__name__}, {tokenizer.vocab_size} ids"


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers give the same ids: vocabulary size, special tokens and probes."""
    if a.vocab_size != b.vocab_size:
        return False
    if dict(getattr(a, "special_tokens", {}) or {}) != dict(getattr(b, "special_tokens", {}) or {}):
        return False
    return all(list(a.encode(t)) == list(b.encode(t)) for t in PROBES)


class Distill(CausalLM):
    """Next-token prediction plus the KL divergence to a teacher's softened distribution.

    Args:
        alpha: Weight of the cross-entropy term; 1 - alpha weighs the KL term (0 <= alpha <= 1).
        temperature: Softens both distributions in the KL term (T > 0; the term is scaled by T^2).
        teacher_dtype: The teacher's weights: float32, or bfloat16 to halve its memory.
    """

    name: ClassVar[str] = "distill"
    metrics: ClassVar[dict[str, tuple[str, ...]]] = {
        **LM_METRICS,
        "bits_per_byte": ("bits_per_byte",),
        "teacher_perplexity": ("teacher_perplexity",),
    }
    default_metrics = ("perplexity", "teacher_perplexity")  # type: ignore[assignment]

    def __init__(
        self,
        alpha: float = 0.5,
        temperature: float = 2.0,
        teacher_dtype: Literal["float32", "bfloat16"] = "float32",
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise UsageError(f"alpha: must be in [0, 1], got {alpha}")
        if not temperature > 0:
            raise UsageError(f"temperature: must be positive, got {temperature}")
        import llmkit

        self.alpha = alpha
        self.temperature = temperature
        self.teacher_dtype = teacher_dtype
        self.kl = llmkit.create("loss", "kl_div", temperature=temperature)
        self.teacher: nn.Module | None = None

    def load_teacher(self, directory: Path, tokenizer: Any | None) -> nn.Module:
        """The teacher checkpoint, frozen in eval mode; refused when its tokenizer is not
        `tokenizer` (the student's) or it is not a decoder."""
        import llmkit
        from llmkit.models.traits import traits_of

        where = f"train.teacher: {directory}"
        if not (directory / "config.json").is_file():
            raise UsageError(f"{where}: not an llmkit checkpoint (no config.json)")
        if tokenizer is not None:
            try:
                theirs = llmkit.load_tokenizer(directory)
            except UsageError:
                raise UsageError(f"{where}: the teacher carries no tokenizer to compare") from None
            if not same_tokenizer(theirs, tokenizer):
                raise UsageError(
                    f"{where}: the teacher's tokenizer ({describe_tokenizer(theirs)}) differs from "
                    f"the student's ({describe_tokenizer(tokenizer)}); distillation compares "
                    "logits id by id, so give the student the teacher's tokenizer "
                    f"(tokenizer: {{path: {directory}}}) or init_from a model that has it"
                )
        teacher = llmkit.load_model(directory, dtype=self.teacher_dtype)
        reason = CausalLM.check_model(self, traits_of(teacher))
        if reason is not None:
            raise UsageError(f"{where}: the teacher is {reason}")
        teacher.requires_grad_(False)
        return teacher.eval()

    def batches(self, data: TrainData) -> Prepared:
        """causal_lm's windows; the teacher is loaded (and its tokenizer checked) first."""
        if data.teacher is None:
            raise UsageError(
                "objective distill needs train.teacher: the checkpoint directory of the teacher"
            )
        self.teacher = self.load_teacher(data.teacher, data.tokenizer)
        return super().batches(data)

    def teacher_logits(self, input_ids: Tensor, like: Tensor) -> Tensor:
        """The teacher's logits for the student's inputs, without gradients, on `like`'s device."""
        import torch

        teacher = self.teacher
        if teacher is None:
            raise UsageError("objective distill: no teacher loaded (give train.teacher)")
        if next(teacher.parameters()).device != like.device:
            teacher.to(like.device)
        vocab = getattr(getattr(teacher, "config", None), "vocab_size", None)
        if isinstance(vocab, int):  # byte ids a tokenizer adds past the teacher's vocabulary
            input_ids = input_ids.clamp(max=vocab - 1)
        with torch.no_grad():
            logits: Tensor = teacher(input_ids)
        if logits.shape[:-1] != like.shape[:-1] or logits.shape[-1] > like.shape[-1]:
            raise UsageError(
                f"train.teacher: the teacher's logits have {logits.shape[-1]} ids, the student's "
                f"{like.shape[-1]}; build the student with vocab_size: {logits.shape[-1]}"
            )
        return logits

    def score(
        self,
        loss: Callable[[Tensor, Tensor], Tensor],
        logits: Tensor,
        targets: Tensor,
        batch: Batch,
    ) -> Tensor:
        """alpha * CE + (1 - alpha) * T^2 * KL(teacher || student) over the scored positions."""
        ce = loss(logits, targets)
        if self.alpha == 1.0:
            return ce
        teacher = self.teacher_logits(batch["input_ids"], logits)
        # A student with the tokenizer's extra byte ids past the teacher's vocabulary is compared
        # on the teacher's ids (the extra ones are learned by the CE term alone).
        shared = logits[..., : teacher.shape[-1]]
        kl: Tensor = self.kl(shared, teacher, mask=targets != IGNORE_INDEX)
        return self.alpha * ce + (1.0 - self.alpha) * kl

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """The student's held-out perplexity, and the teacher's on the same windows when the
        teacher is known (the eval stage passes train.teacher)."""
        result = super().evaluate(model, tokenizer, data, settings)
        result["task"] = self.name
        if settings.teacher is not None:
            teacher = self.teacher or self.load_teacher(settings.teacher, tokenizer)
            device = next(model.parameters()).device
            scored = super().evaluate(teacher.to(device), tokenizer, data, settings)
            result["metrics"]["teacher_perplexity"] = scored["metrics"]["perplexity"]
            result["details"]["teacher"] = str(settings.teacher)
        return result
