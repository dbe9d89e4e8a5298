"""An objective: prefix language modelling on a decoder-only model, loss on the continuation only.

Each window of token-shard tokens is split at a random point into a prefix and a continuation
(the "prefix LM" split of Raffel et al. 2020, §3.2.2 and §3.3.1; Dong et al. 2019, UniLM); the
labels are -100 on the prefix, so only the continuation is scored and the number of targets
varies per batch (the trainer weighs every target equally across micro-batches).

This is the causal-mask variant, a prefix-conditioned LM: the prefix is read left to right like
the rest of the window. A true prefix LM lets the prefix attend to itself both ways, but llmkit's
GPT builds its attention with `causal=True` and `Attention.keep_mask` ANDs any `attention_mask`
with the causal mask, so a mask can hide keys but never show a later one; a bidirectional prefix
would need a change to llmkit's attention, which a plugin objective should not make.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from llmkit.errors import UsageError
from llmkit.objectives.base import (
    IGNORE_INDEX,
    LM_METRICS,
    Batch,
    EvalData,
    EvalSettings,
    Objective,
    Prepared,
    TrainData,
)

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

    from llmkit.data.batching import CausalLMBatches
    from llmkit.models.traits import ModelTraits

#: Mixed into every split generator's seed, so split points never repeat the window draws' stream.
SPLIT_STREAM = 0x5052_4546  # "PREF"


class PrefixSplit:
    """Where windows split: a prefix of `low..high` of the context (at least `min_prefix` tokens).

    A window of `context + 1` tokens t_0..t_context splits at p: the prefix is t_0..t_{p-1} and the
    continuation t_p..t_context, at least one token, so p is in [min_prefix, context].
    """

    def __init__(self, low: float, high: float, min_prefix: int) -> None:
        self.low, self.high, self.min_prefix = low, high, min_prefix

    def points(self, rng: np.random.Generator, rows: int, context: int) -> np.ndarray:
        """`rows` split points for windows of `context + 1` tokens, drawn from `rng`."""
        import numpy as np

        first = max(min(self.min_prefix, context), round(self.low * context))
        last = max(first, min(context, round(self.high * context)))
        return rng.integers(first, last + 1, rows, dtype=np.int64)

    def labels(self, tokens: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Next-token labels (rows, T) of token rows (rows, T + 1), -100 before each split point.

        Input position j predicts token j + 1, so positions 0..p-2 (their targets are the prefix's
        own tokens t_1..t_{p-1}) are not scored and position p - 1 predicts the first continuation
        token.
        """
        import numpy as np

        labels = tokens[:, 1:].copy()
        scored = np.arange(labels.shape[1])[None, :] >= points[:, None] - 1
        labels[~scored] = IGNORE_INDEX
        return labels

    def identity(self) -> dict[str, Any]:
        """What a resumed iterator must split by the same way."""
        return {"prefix": [self.low, self.high], "min_prefix": self.min_prefix}


#: How held-out windows split in `PrefixLM.evaluate`: at any point, each equally likely.
EVAL_SPLIT = PrefixSplit(0.0, 1.0, 1)


class PrefixLMBatches:
    """Causal-LM windows with their prefixes unscored: ``input_ids`` and ``labels`` (B, context).

    Wraps a `CausalLMBatches`; each batch's split points are drawn from a generator seeded by
    (seed, rank, batch position), so `state_dict`/`load_state_dict` (the wrapped iterator's
    position, and the split settings) resume with exactly the batches that would have come next.
    """

    def __init__(self, windows: CausalLMBatches, split: PrefixSplit) -> None:
        self.windows = windows
        self.split = split

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __len__(self) -> int:
        return len(self.windows)

    def __next__(self) -> Batch:
        import numpy as np
        import torch

        step = self.windows.step
        batch = next(self.windows)
        ids = batch["input_ids"].numpy()
        tokens = np.concatenate([ids, batch["labels"].numpy()[:, -1:]], axis=1)  # (B, T + 1)
        key = [SPLIT_STREAM, self.windows.seed & 0xFFFFFFFF, self.windows.rank, step]
        points = self.split.points(np.random.default_rng(key), len(ids), ids.shape[1])
        return {
            "input_ids": batch["input_ids"],
            "labels": torch.from_numpy(self.split.labels(tokens, points)),
        }

    def state_dict(self) -> dict[str, Any]:
        """The wrapped iterator's position, its identity extended by the split settings."""
        state = self.windows.state_dict()
        return {**state, "identity": {**state["identity"], **self.split.identity()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict`; refuses a position saved with other split settings."""
        mine = self.split.identity()
        saved = dict(state.get("identity", {}))
        theirs = {key: saved.pop(key, None) for key in mine}
        if theirs != mine:
            changed = ", ".join(key for key in mine if theirs[key] != mine[key])
            raise UsageError(f"cannot resume: the iterator was saved with different {changed}")
        self.windows.load_state_dict({**state, "identity": saved})


class PrefixLM(Objective):
    """Prefix LM on a decoder: score only the continuation after a random split of each window.

    The causal-mask variant (the prefix is read left to right, llmkit's GPT attention cannot take
    a bidirectional prefix mask); see the module docstring.

    Args:
        prefix_fraction: The prefix's share of each window: a number fixes it, a pair [low, high]
            draws it uniformly from that range per window (default [0, 1], any split point).
        min_prefix: The fewest prefix tokens (a continuation keeps at least one token).
    """

    name: ClassVar[str] = "prefix_lm"
    reads = "shards"
    needs_tokenizer = False
    metrics: ClassVar[dict[str, tuple[str, ...]]] = {
        **LM_METRICS,
        "bits_per_byte": ("bits_per_byte",),
    }
    default_metrics = ("perplexity",)

    def __init__(
        self, prefix_fraction: float | tuple[float, float] = (0.0, 1.0), min_prefix: int = 1
    ) -> None:
        low, high = (
            (prefix_fraction, prefix_fraction)
            if isinstance(prefix_fraction, int | float)
            else prefix_fraction
        )
        if not 0.0 <= low <= high <= 1.0:
            raise UsageError(
                f"objective 'prefix_lm': prefix_fraction: needs 0 <= low <= high <= 1, got "
                f"{prefix_fraction}"
            )
        if min_prefix < 1:
            raise UsageError(
                f"objective 'prefix_lm': min_prefix: must be at least 1, got {min_prefix}"
            )
        self.split = PrefixSplit(float(low), float(high), min_prefix)

    def check_model(self, traits: ModelTraits) -> str | None:
        """A decoder only: an encoder sees the continuation it would predict."""
        if traits.is_encoder:
            return (
                "a bidirectional encoder, sees the continuation it would predict; prefix_lm "
                "trains decoder-only models (use objective masked_lm for an encoder)"
            )
        if traits.is_encoder_decoder:
            return (
                "an encoder-decoder, reads the prefix in its encoder; prefix_lm trains "
                "decoder-only models (use objective seq2seq)"
            )
        return None

    def batches(self, data: TrainData) -> Prepared:
        """Random split windows to train on, sequential split windows for the held-out loss."""
        from llmkit.data.batching import CausalLMBatches

        shards = _shards(data)
        if self.split.min_prefix > data.context:
            raise UsageError(
                f"objective 'prefix_lm': min_prefix: {self.split.min_prefix} is more than the "
                f"context ({data.context}); lower it"
            )

        def windows(split: str, mode: Any, epochs: int | None) -> PrefixLMBatches:
            inner = CausalLMBatches(
                shards, data.context, data.batch_size, split, mode, data.seed, epochs=epochs
            )
            return PrefixLMBatches(inner, self.split)

        return Prepared(
            windows("train", "random", None), lambda: windows("validation", "sequential", 1)
        )

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Logits at every position; labels are the next tokens, -100 on the prefix."""
        return model(batch["input_ids"]), batch["labels"]

    def evaluate(
        self, model: nn.Module, tokenizer: Any, data: EvalData, settings: EvalSettings
    ) -> dict[str, Any]:
        """Perplexity over the continuations of consecutive held-out windows (`prefix_windows`).

        Every split point is equally likely (`EVAL_SPLIT`), whatever `prefix_fraction` training
        used: `llmkit eval --task prefix_lm` builds the objective with its defaults, so only a
        split that ignores the parameters gives it the pipeline's eval.json numbers (and models
        trained with different fractions are scored on one task).
        """
        from llmkit.data.shards import TokenShards
        from llmkit.evaluation import core
        from llmkit.evaluation.windows import model_context

        context = model_context(model, settings.context)
        shards = TokenShards(_shards(data), data.split)
        batches = prefix_windows(shards, context, settings.batch_size, EVAL_SPLIT)
        token_bytes = core.token_byte_lengths(tokenizer) if tokenizer is not None else None
        result = core.evaluate_lm(
            model, batches, token_bytes=token_bytes, max_batches=settings.max_batches
        )
        result["task"] = self.name
        result["details"].update(
            context=context,
            split=data.split,
            prefix="a uniform split point per window, drawn from its index",
        )
        return result


def prefix_windows(
    shards: Any, context: int, batch_size: int, split: PrefixSplit
) -> Iterator[tuple[Tensor, Tensor]]:
    """(inputs, labels) over consecutive windows of `context + 1` tokens (window i at i*context).

    Window i splits at a point drawn by a generator seeded with i alone, so the scores depend
    neither on the batch size nor on the run's seed: `llmkit eval --task prefix_lm` and a
    pipeline's eval stage agree. A last, shorter window gets a batch of its own.
    """
    import numpy as np
    import torch

    n = len(shards)
    if n < 2:
        raise UsageError(f"{shards.path} ({shards.split}): fewer than 2 tokens to evaluate")
    starts = list(range(0, n - 1, context))

    def rows(indices: list[int]) -> tuple[Tensor, Tensor]:
        width = min(context, n - 1 - starts[indices[0]])  # one shorter window is alone
        block = np.stack([shards.window(starts[i], width + 1) for i in indices]).astype(np.int64)
        points = np.concatenate(
            [split.points(np.random.default_rng([SPLIT_STREAM, i]), 1, width) for i in indices]
        )
        return torch.from_numpy(block[:, :-1].copy()), torch.from_numpy(split.labels(block, points))

    full = [i for i, s in enumerate(starts) if s + context + 1 <= n]
    for lo in range(0, len(full), batch_size):
        yield rows(full[lo : lo + batch_size])
    for i in range(len(full), len(starts)):
        yield rows([i])


def _shards(data: TrainData | EvalData) -> str:
    if data.shards is None:
        raise UsageError("objective prefix_lm needs a data section to read token shards")
    return str(data.shards)
