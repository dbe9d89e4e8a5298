"""Causal language modelling: predict every next token of windows cut from token shards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

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

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor, nn

    from llmkit.models.traits import ModelTraits


def shards_of(data: TrainData | EvalData, objective: str) -> str:
    """The shard directory an objective reads, or an error saying the data section is missing."""
    if data.shards is None:
        raise UsageError(f"objective {objective} needs a data section to read token shards")
    return str(data.shards)


def lm_head_of(model: nn.Module) -> nn.Linear | None:
    """The linear LM head applied to `model.hidden_states`, when the model has both and is not
    sharded by FSDP (whose hooks run on `forward` alone); None otherwise."""
    from torch import nn
    from torch.distributed.fsdp import FSDPModule

    from llmkit.nn.head import LMHead

    head = getattr(model, "head", None)
    if type(head) not in (nn.Linear, LMHead) or isinstance(model, FSDPModule):
        return None
    if not callable(getattr(model, "hidden_states", None)):
        return None
    assert isinstance(head, nn.Linear)
    return head


def lm_outputs(model: nn.Module, fused: bool, input_ids: Tensor, **kwargs: Any) -> Tensor:
    """The model's logits for `input_ids`, or with `fused` and a linear LM head (`lm_head_of`) its
    hidden states and head as `ProjectedLogits`, for the loss to score chunk by chunk."""
    head = lm_head_of(model) if fused else None
    if head is None:
        logits: Tensor = model(input_ids, **kwargs)
        return logits
    from llmkit.losses.projected import ProjectedLogits

    hidden = model.hidden_states(input_ids, **kwargs)  # type: ignore[operator]
    return ProjectedLogits(hidden, head.weight, head.bias)  # type: ignore[return-value]


def score_outputs(
    loss: Callable[[Tensor, Tensor], Tensor], logits: Tensor, targets: Tensor
) -> Tensor:
    """`loss(logits, targets)`, projected logits computed first for a loss that cannot take them."""
    from llmkit.losses.projected import ProjectedLogits

    if isinstance(logits, ProjectedLogits) and not getattr(loss, "takes_projection", False):
        logits = logits.materialize()
    return loss(logits, targets)


def has_tokens(shards: str, split: str) -> bool:
    """Whether a shard directory's `split` holds any token (an empty validation split gives no
    held-out batches rather than an error at the first evaluation)."""
    from llmkit.data.shards import read_manifest

    return bool(read_manifest(shards)["splits"].get(split, {}).get("tokens"))


class CausalLM(Objective):
    """Next-token prediction over windows of token shards (GPT-style pretraining)."""

    name: ClassVar[str] = "causal_lm"
    reads = "shards"
    metrics: ClassVar[dict[str, tuple[str, ...]]] = {
        **LM_METRICS,
        "bits_per_byte": ("bits_per_byte",),
    }
    default_metrics = ("perplexity",)
    needs_tokenizer = False

    def check_model(self, traits: ModelTraits) -> str | None:
        """Only a decoder predicts the next token without seeing it."""
        if traits.is_encoder:
            return (
                "a bidirectional encoder, has no next-token perplexity to evaluate; use objective "
                "masked_lm (or classification)"
            )
        if traits.is_encoder_decoder:
            return "an encoder-decoder, reads a source and a target; use objective seq2seq"
        return None

    def check_evaluation(self, traits: ModelTraits) -> str | None:
        """Perplexity needs next-token predictions: an encoder has none."""
        if traits.is_encoder:
            return (
                "is an encoder and has no next-token perplexity; evaluate its masked-LM head "
                "with --task masked_lm"
            )
        return self.check_model(traits)

    def batches(self, data: TrainData) -> Prepared:
        """Random windows to train on, sequential validation windows to score."""
        from llmkit.data.batching import CausalLMBatches

        shards = shards_of(data, self.name)

        def windows(split: str, mode: Any, epochs: int | None) -> CausalLMBatches:
            return CausalLMBatches(
                shards, data.context, data.batch_size, split, mode, data.seed, epochs=epochs
            )

        held_out = (
            (lambda: windows("validation", "sequential", 1))
            if has_tokens(shards, "validation")
            else None
        )
        return Prepared(windows("train", "random", None), held_out)

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Labels are the inputs shifted by one. The logits of a model with a linear LM head are
        left to the loss (`ProjectedLogits`), which scores them chunk by chunk; an objective that
        overrides `score` gets plain logits."""
        fused = type(self).score is CausalLM.score
        return lm_outputs(model, fused, batch["input_ids"]), batch["labels"]

    def score(
        self,
        loss: Callable[[Tensor, Tensor], Tensor],
        logits: Tensor,
        targets: Tensor,
        batch: Batch,
    ) -> Tensor:
        """The configured loss; a loss that cannot score projected logits gets them computed."""
        return score_outputs(loss, logits, targets)

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """Perplexity (and bits per byte) over windows that score every token once (`lm_windows`)."""
        from llmkit.data.shards import TokenShards
        from llmkit.evaluation import core
        from llmkit.evaluation.windows import lm_windows, model_context

        context = model_context(model, settings.context)
        shards = TokenShards(shards_of(data, self.name), data.split)
        batches = lm_windows(shards, context, settings.batch_size, stride=settings.stride)
        token_bytes = core.token_byte_lengths(tokenizer) if tokenizer is not None else None
        result = core.evaluate_lm(
            model, batches, token_bytes=token_bytes, max_batches=settings.max_batches
        )
        result["task"] = self.name
        result["details"].update(
            context=context, stride=settings.stride or context, split=data.split
        )
        return result
