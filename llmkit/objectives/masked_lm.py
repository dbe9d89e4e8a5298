"""Masked language modelling (BERT): predict a share of the tokens, masked, from both sides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from llmkit.data.batching import MASK_RATE
from llmkit.errors import UsageError
from llmkit.objectives.base import (
    LM_METRICS,
    Batch,
    EvalData,
    EvalSettings,
    Objective,
    Prepared,
    TrainData,
)
from llmkit.objectives.causal_lm import has_tokens, shards_of

if TYPE_CHECKING:
    from torch import Tensor, nn

    from llmkit.models.traits import ModelTraits


class MaskedLM(Objective):
    """Predict `mask_rate` of the tokens (80% masked, 10% random, 10% kept), as BERT is trained.

    Args:
        mask_rate: The share of non-special tokens to predict, in (0, 1).
    """

    name: ClassVar[str] = "masked_lm"
    reads = "shards"
    metrics: ClassVar[dict[str, tuple[str, ...]]] = {**LM_METRICS, "accuracy": ("accuracy",)}
    default_metrics = ("perplexity", "accuracy")

    def __init__(self, mask_rate: float = MASK_RATE) -> None:
        if not 0.0 < mask_rate < 1.0:
            raise UsageError(
                f"objective 'masked_lm': mask_rate: must be in (0, 1), got {mask_rate}"
            )
        self.mask_rate = mask_rate

    def check_model(self, traits: ModelTraits) -> str | None:
        """The model's forward must give masked-LM logits at every position."""
        if not traits.masked_lm:
            return "has no masked-LM head; objective masked_lm is for encoders with one (bert)"
        return None

    def check_evaluation(self, traits: ModelTraits) -> str | None:
        """Scoring masked tokens needs a masked-LM head."""
        if not traits.masked_lm:
            import llmkit
            from llmkit.models.traits import registered_traits

            heads = [
                c.name for c in llmkit.components("model") if registered_traits(c.name).masked_lm
            ]
            return (
                f"has no masked-LM head; --task masked_lm is for encoders ({', '.join(heads)}); "
                "use --task causal_lm"
            )
        return None

    def batches(self, data: TrainData) -> Prepared:
        """Random masked windows to train on, sequential masked windows to score."""
        from llmkit.data.batching import MaskedLMBatches

        shards = shards_of(data, self.name)

        def windows(split: str, mode: Any, epochs: int | None) -> MaskedLMBatches:
            return MaskedLMBatches(
                shards,
                data.context,
                data.batch_size,
                tokenizer=data.tokenizer,
                probability=self.mask_rate,
                split=split,
                mode=mode,
                seed=data.seed,
                epochs=epochs,
            )

        held_out = (
            (lambda: windows("validation", "sequential", 1))
            if has_tokens(shards, "validation")
            else None
        )
        return Prepared(windows("train", "random", None), held_out)

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Labels are -100 except at masked positions."""
        return model(batch["input_ids"], attention_mask=batch.get("attention_mask")), batch[
            "labels"
        ]

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """Perplexity and accuracy at the masked tokens of seeded, batch-independent masks."""
        from llmkit.data.shards import TokenShards
        from llmkit.evaluation import core
        from llmkit.evaluation.windows import masked_lm_windows, model_context

        context = model_context(model, settings.context)
        shards = TokenShards(shards_of(data, self.name), data.split)
        try:
            masked = masked_lm_windows(
                shards,
                context,
                settings.batch_size,
                tokenizer,
                seed=settings.seed,
                probability=self.mask_rate,
            )
        except UsageError as exc:  # the tokenizer came with the model: name its directory
            where = settings.model_dir
            raise UsageError(f"{where}: {exc}" if where else str(exc)) from None
        result = core.evaluate_masked_lm(model, masked, max_batches=settings.max_batches)
        result["details"].update(
            context=context,
            split=data.split,
            masking=f"{self.mask_rate:.0%}, seed {settings.seed}",
        )
        return result
