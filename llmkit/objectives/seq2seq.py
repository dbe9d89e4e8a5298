"""Sequence to sequence: an encoder reads the source, a decoder is taught the target (teacher forcing)."""

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
    from torch import Tensor, nn

    from llmkit.data.records import Record
    from llmkit.models.traits import ModelTraits

#: Metrics scored on greedy translations (the others are teacher-forced).
GENERATION_METRICS = ("bleu", "chrf", "ter", "exact_match")


class Seq2Seq(Objective):
    """Cross-entropy of each target token given the source and the target's earlier tokens."""

    name: ClassVar[str] = "seq2seq"
    reads = "records"
    record_fields = ("text", "target")
    metrics: ClassVar[dict[str, tuple[str, ...]]] = {
        **LM_METRICS,
        **{name: (name,) for name in GENERATION_METRICS},
    }
    default_metrics = ("perplexity",)

    def check_model(self, traits: ModelTraits) -> str | None:
        """The model must read a source and decode a target."""
        if not traits.is_encoder_decoder:
            return f"a {traits.architecture}, has no encoder and decoder; use model transformer"
        return None

    def _pairs(
        self,
        records: list[Record],
        data: TrainData | None,
        tokenizer: Any,
        batch_size: int,
        max_length: int,
        train: bool,
        bos_id: int | None = None,
    ) -> Any:
        from llmkit.data.batching import Seq2SeqBatches

        return Seq2SeqBatches(
            records,
            tokenizer,
            batch_size,
            max_source_len=max_length,
            max_target_len=max_length,
            bos_id=bos_id,
            shuffle=train,
            seed=data.seed if data is not None else 0,
            epochs=None if train else 1,
            rank=None if train else 0,  # held-out pairs: this process reads them all
            world_size=None if train else 1,
        )

    def batches(self, data: TrainData) -> Prepared:
        """Shuffled pairs to train on, the held-out pairs in order."""
        size, length = data.batch_size, data.max_length
        train = self._pairs(data.train_records, data, data.tokenizer, size, length, True)
        valid = data.valid_records

        def held_out() -> Any:
            return self._pairs(valid, data, data.tokenizer, size, length, False)

        return Prepared(train, held_out if valid else None, {})

    def generation_config(self, prepared: Prepared) -> dict[str, Any] | None:
        """The decoder start id training used, so that `generate` starts where training did."""
        start = getattr(prepared.train, "bos_id", None)
        return {"bos_token_id": start} if start is not None else None

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Decoder inputs are the targets shifted right."""
        logits = model(
            batch["input_ids"],
            batch["decoder_input_ids"],
            src_mask=batch.get("attention_mask"),
            tgt_mask=batch.get("decoder_attention_mask"),
        )
        return logits, batch["labels"]

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """Teacher-forced perplexity and/or BLEU, chrF, TER, exact match of greedy translations,
        decoding from the start token the model was trained with."""
        from llmkit.evaluation import core
        from llmkit.inference.generation import context_length, decoder_start_id
        from llmkit.storage.checkpoint import load_generation_config

        records = data.records or []
        if not records:
            raise UsageError("seq2seq: no held-out pairs to evaluate")
        configured = load_generation_config(settings.model_dir) if settings.model_dir else None
        start = decoder_start_id(tokenizer, configured)
        keys = settings.keys or list(self.default_metrics)
        result: dict[str, Any] = {"task": self.name, "metrics": {}, "details": {}}
        size, length = settings.batch_size, settings.max_length
        if any(k not in GENERATION_METRICS for k in keys):
            pairs = self._pairs(records, None, tokenizer, size, length, False, bos_id=start)
            result = core.evaluate_seq2seq(model, pairs, max_batches=settings.max_batches)
        generated = [k for k in keys if k in GENERATION_METRICS]
        if generated:
            rows = (
                records if settings.max_batches is None else records[: settings.max_batches * size]
            )
            limit = context_length(model)
            hyps = core.generate_texts(
                model,
                tokenizer,
                [str(r.text) for r in rows],
                max_new_tokens=length if limit is None else min(length, limit - 1),
                stop=(),
                batch_size=size,
                bos_token_id=start,
            )
            scored = core.evaluate_generation(hyps, [str(r.target) for r in rows], generated)
            result["metrics"].update(scored["metrics"])
            result["details"].update(scored["details"])
            result["details"]["examples"] = [
                {"source": r.text, "reference": r.target, "hypothesis": h}
                for r, h in zip(rows[:5], hyps[:5], strict=False)
            ]
        return result
