"""The objective component: everything that differs between ways of training one model.

An objective says what data it reads (token shards or labelled records), how it batches them, how
a batch becomes logits and targets for the loss, how many targets a batch holds (so that gradient
accumulation weighs every target equally), which models it can train, and how a trained model is
evaluated. The trainer, the pipeline and `llmkit eval` ask the objective; none branches on its name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from llmkit.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from llmkit.data.records import Record
    from llmkit.models.traits import ModelTraits

IGNORE_INDEX = -100  # a target that is not scored (padding, unmasked positions)
Batch = dict[str, Any]


@dataclass
class TrainData:
    """What an objective batches from: the run's tokenizer and sizes, and its shards or records."""

    tokenizer: Any
    context: int
    batch_size: int
    max_length: int
    seed: int
    shards: Path | None = None
    train_records: list[Record] = field(default_factory=list)
    valid_records: list[Record] = field(default_factory=list)
    init_from: Path | None = None  # the checkpoint fine-tuned (its chat template, say)
    teacher: Path | None = None  # train.teacher: a checkpoint to distill from


@dataclass
class Prepared:
    """An objective's batches for one run: endless training batches, a maker of held-out batches,
    and facts the model and its checkpoint need (a classifier's `labels`, a decoder start id)."""

    train: Iterator[Batch]
    held_out: Callable[[], Iterator[Batch]] | None
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalData:
    """Held-out data for an evaluation: a shard directory and split, or records."""

    shards: Path | None = None
    split: str = "validation"
    records: list[Record] | None = None


@dataclass
class EvalSettings:
    """How to evaluate: window sizes, batches, the metric keys asked for, and the model's files."""

    context: int | None = None
    stride: int | None = None
    batch_size: int = 8
    max_batches: int | None = None
    max_length: int = 128
    seed: int = 0
    keys: list[str] = field(default_factory=list)
    model_dir: Path | None = None
    labels: list[str] | None = None
    template: str = "{text}\nLabel:"  # a zero-shot classifier's prompt
    teacher: Path | None = None  # a distilled model's teacher, scored beside it


class Objective:
    """Base of every objective component; subclasses set the class attributes and override the
    methods that differ. Objects are built by the registry: `llmkit.create("objective", name, ...)`."""

    name: ClassVar[str] = ""
    #: The train section's field that bounds the length of the sequences it trains on (checked
    #: against the model's position table before any stage), or None when nothing does.
    length_field: ClassVar[str | None] = "context"
    reads: ClassVar[Literal["shards", "records"]] = "shards"
    #: The record fields it reads (`reads == "records"`): text, and label or target.
    record_fields: ClassVar[tuple[str, ...]] = ("text",)
    #: Whether evaluating needs the model's tokenizer (a causal LM's perplexity does not).
    needs_tokenizer: ClassVar[bool] = True
    #: Each metric name its evaluation takes, and the result keys it reports.
    metrics: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: What the eval stage reports when the pipeline names no metrics.
    default_metrics: ClassVar[tuple[str, ...]] = ()

    def check_model(self, traits: ModelTraits) -> str | None:
        """Why this objective cannot train a model with `traits` (None when it can)."""
        return None

    def check_evaluation(self, traits: ModelTraits) -> str | None:
        """Why this objective's evaluation cannot score a model with `traits` (None when it can)."""
        return self.check_model(traits)

    def model_params(self, facts: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters a new model of this objective needs from the data (a classifier's labels)."""
        return {}

    def batches(self, data: TrainData) -> Prepared:
        """Training batches, held-out batches and facts for one run."""
        raise NotImplementedError(f"objective '{self.name}' does not batch data")

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Logits and the targets the loss compares them with."""
        raise NotImplementedError(f"objective '{self.name}' has no forward")

    def score(
        self,
        loss: Callable[[Tensor, Tensor], Tensor],
        logits: Tensor,
        targets: Tensor,
        batch: Batch,
    ) -> Tensor:
        """The mean loss per target of one batch: the configured `loss` of logits and targets
        (an objective with a teacher adds its term here)."""
        return loss(logits, targets)

    def count_targets(self, batch: Batch) -> Tensor:
        """The number of scored targets in `batch`, as a tensor (read on the host only to log)."""
        return (batch["labels"] != IGNORE_INDEX).sum()

    def generation_config(self, prepared: Prepared) -> dict[str, Any] | None:
        """Decoding settings saved with the trained model (None: the model's defaults)."""
        return None

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """`{"task", "metrics", "details"}` of `model` on held-out `data`."""
        raise NotImplementedError(f"objective '{self.name}' has no evaluation")

    def metric_keys(self, requested: Sequence[str] | None) -> dict[str, list[str]]:
        """Each requested metric mapped to the result keys it reports, in order.

        None means the defaults, an empty list every metric the objective has. A metric it cannot
        report is a UsageError that names it, the objectives that do report it, and the choices.
        """
        known = self.metrics
        names = list(self.default_metrics if requested is None else requested or known)
        for name in names:
            if name not in known:
                raise UsageError(self._unknown_metric(name))
        return {name: list(known[name]) for name in dict.fromkeys(names)}

    def _unknown_metric(self, name: str) -> str:
        import llmkit

        choices = f"objective {self.name} reports: {metric_listing(self.metrics)}"
        elsewhere = []
        for component in llmkit.components("objective"):
            if component.name != self.name and name in getattr(component.factory, "metrics", {}):
                elsewhere.append(component.name)
        if elsewhere:
            return (
                f"'{name}' is not reported for objective {self.name} (only for "
                f"{', '.join(elsewhere)}); {choices}"
            )
        if any(c.name == name for c in llmkit.components("metric")):
            return (
                f"metric '{name}' is not computed by the eval stage (score saved predictions "
                f"with `llmkit score`); {choices}"
            )
        close = difflib.get_close_matches(name, list(self.metrics), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown metric '{name}'; {hint}{choices}"


AVERAGES = ("macro", "micro", "weighted")
LM_METRICS: dict[str, tuple[str, ...]] = {
    "perplexity": ("perplexity",),
    "nll": ("nll",),
    "bits_per_token": ("bits_per_token",),
}


def averaged(name: str) -> dict[str, tuple[str, ...]]:
    """`name` -> its macro, micro and weighted keys, and each of those keys -> itself."""
    keys = tuple(f"{name}_{average}" for average in AVERAGES)
    return {name: keys, **{key: (key,) for key in keys}}


def metric_listing(known: Mapping[str, tuple[str, ...]]) -> str:
    """The metric names, their averaged variants folded into one note."""
    plain = [n for n in known if not any(n.endswith(f"_{a}") for a in AVERAGES)]
    folded = [n for n in plain if f"{n}_macro" in known]
    note = f" ({'/'.join(folded)} also as _macro, _micro or _weighted)" if folded else ""
    return ", ".join(plain) + note
