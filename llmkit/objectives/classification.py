"""Sequence classification: a label per text, from a model's classification head."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from llmkit.errors import UsageError
from llmkit.objectives.base import (
    Batch,
    EvalData,
    EvalSettings,
    Objective,
    Prepared,
    TrainData,
    averaged,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

    from llmkit.data.records import Record
    from llmkit.models.traits import ModelTraits


class Classification(Objective):
    """Cross-entropy over the labels of labelled records, through the model's `classify` head."""

    name: ClassVar[str] = "classification"
    length_field: ClassVar[str | None] = None  # records are as long as they are (max_length cuts)
    reads = "records"
    record_fields = ("text", "label")
    metrics: ClassVar[dict[str, tuple[str, ...]]] = (
        {"accuracy": ("accuracy",)}
        | averaged("precision")
        | averaged("recall")
        | averaged("f1")
        | {"confusion_matrix": ()}
    )
    default_metrics = ("accuracy", "precision", "recall", "f1")

    def check_model(self, traits: ModelTraits) -> str | None:
        """Training needs a classification head (`classify`), or a decoder that grows one."""
        if not traits.classifier and not traits.grows_classifier:
            return "has no classify head; use a model with one (bert, gpt, llama)"
        return None

    def check_evaluation(self, traits: ModelTraits) -> str | None:
        """A decoder without a head is scored zero-shot; an encoder-decoder cannot be."""
        if traits.is_encoder_decoder and not traits.classifier:
            return "is an encoder-decoder, which classification cannot score"
        return None

    def model_params(self, facts: Mapping[str, Any]) -> dict[str, Any]:
        """A new classifier gets one output per label of the training data."""
        return {"n_labels": len(facts["labels"])} if facts.get("labels") else {}

    def _batches(
        self, records: list[Record], data: TrainData, labels: list[str] | None, train: bool
    ) -> Any:
        from llmkit.data.batching import ClassificationBatches

        return ClassificationBatches(
            records,
            data.tokenizer,
            data.batch_size,
            max_length=data.max_length,
            labels=labels,
            shuffle=train,
            seed=data.seed,
            epochs=None if train else 1,
        )

    def batches(self, data: TrainData) -> Prepared:
        """Shuffled batches of the training records; the label vocabulary is read from them."""
        train = self._batches(data.train_records, data, None, True)
        labels = list(train.label_vocab)
        valid = data.valid_records

        def held_out() -> Iterator[Batch]:
            return self._batches(valid, data, labels, False)

        return Prepared(train, held_out if valid else None, {"labels": labels})

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Logits (B, n_labels) of the classification head."""
        classify: Any = model.classify
        return classify(batch["input_ids"], attention_mask=batch.get("attention_mask")), batch[
            "labels"
        ]

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """Accuracy, precision/recall/F1 and the confusion matrix of the held-out records.

        A model with a classification head classifies the records as training batches them; any
        other decoder picks the most likely label text after a prompt (zero-shot).
        """
        from llmkit.data.batching import ClassificationBatches
        from llmkit.evaluation import core

        records = data.records or []
        if not records:
            raise UsageError("classification: no held-out records to evaluate")
        gold = [str(r.label) for r in records]
        names = list(settings.labels or sorted(set(gold)))
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(set(gold) - set(index))
        if unknown:
            raise UsageError(
                f"labels {', '.join(unknown[:5])} are not among the label names "
                f"{', '.join(names)}; pass the model's labels"
            )
        from llmkit.models.traits import traits_of

        predictions: list[int] = []
        if traits_of(model).classifier:
            batches = ClassificationBatches(
                records,
                tokenizer,
                settings.batch_size,
                max_length=settings.max_length,
                labels=names,
                shuffle=False,
                epochs=1,
                rank=0,
                world_size=1,
            )
            device = core.model_device(model)
            with core.evaluating(model):
                for batch in batches:
                    logits = self.forward(model, {k: v.to(device) for k, v in batch.items()})[0]
                    predictions += [int(i) for i in logits.argmax(-1).tolist()]
        else:
            predictions = core.classify(
                model,
                tokenizer,
                [str(r.text) for r in records],
                names,
                batch_size=settings.batch_size,
                max_length=settings.max_length,
                template=settings.template,
            )
        result = core.evaluate_classification(predictions, [index[g] for g in gold], names)
        result["predictions"] = [names[p] for p in predictions]
        return result
