"""Evaluation windows over token shards: strided causal-LM windows and seeded masked-LM windows.

Both `llmkit eval` and a pipeline's eval stage score these same windows (through the objective's
`evaluate`), so the two report the same numbers for the same checkpoint, split and settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llmkit.data.batching import MASK_RATE
from llmkit.errors import UsageError


def _ranks(rank: int | None, world: int | None) -> tuple[int, int]:
    """This process's share of the windows: all of them inside `core.this_process_only` (the
    pipeline's eval stage on rank 0), else torch.distributed's rank and world unless given."""
    from llmkit.data.batching import dist_info
    from llmkit.evaluation.core import is_this_process_only

    if rank is None and world is None and is_this_process_only():
        return 0, 1
    return dist_info(rank, world)


def model_context(model: Any, requested: int | None) -> int:
    """The window length: `requested` (at most the model's context), else the model's context."""
    from llmkit.inference.generation import context_length

    limit = context_length(model)
    if requested is None:
        return limit or 1024
    if limit is not None and requested > limit:
        raise UsageError(f"--context {requested} exceeds the model's context of {limit} tokens")
    return requested


def lm_windows(
    shards: Any,
    context: int,
    batch_size: int,
    stride: int | None = None,
    rank: int | None = None,
    world: int | None = None,
) -> Iterator[tuple[Any, Any]]:
    """(inputs, targets) batches over the split that score every token but the first exactly once.

    A window holds up to `context` input tokens and starts every `stride` tokens (default
    `context`: no overlap). With a smaller stride each window re-reads `context - stride` tokens as
    context only (their targets are -100), so every scored token sees at least that much context:
    the strided perplexity evaluation of Hugging Face's guide. The last, shorter window gets a
    batch of its own. With torch.distributed, rank r takes windows r, r + world, ...
    """
    import numpy as np
    import torch

    stride = context if stride is None else stride
    if not 0 < stride <= context:
        raise UsageError(f"--stride {stride}: must be between 1 and the context ({context})")
    rank, world = _ranks(rank, world)
    n = len(shards)
    if n < 2:
        raise UsageError(f"{shards.path} ({shards.split}): fewer than 2 tokens to evaluate")
    windows: list[tuple[int, int, int]] = []  # start, end, targets to mask
    start, last = 0, 0
    while True:
        end = min(start + context + 1, n)
        windows.append((start, end, max(0, last - start)))
        last = end - 1
        if end == n:
            break
        start += stride
    mine = windows[rank::world]

    def pair(rows: list[tuple[int, int, int]]) -> tuple[Any, Any]:
        block = np.stack([shards.window(s, e - s) for s, e, _ in rows])
        targets = block[:, 1:].copy()
        for i, (_, _, masked) in enumerate(rows):
            targets[i, :masked] = -100
        return torch.from_numpy(block[:, :-1].copy()), torch.from_numpy(targets)

    full = [w for w in mine if w[1] - w[0] == context + 1]
    for lo in range(0, len(full), batch_size):
        yield pair(full[lo : lo + batch_size])
    for w in mine:
        if w[1] - w[0] != context + 1:
            yield pair([w])


def masked_lm_windows(
    shards: Any,
    context: int,
    batch_size: int,
    tokenizer: Any,
    seed: int = 0,
    rank: int | None = None,
    world: int | None = None,
    probability: float = MASK_RATE,
) -> Iterator[dict[str, Any]]:
    """Masked-LM batches over the whole split: consecutive windows of `context` tokens.

    Each window is masked as `MaskedLMBatches` trains (`probability` of the non-special
    tokens: 80% the mask token, 10% a random token, 10% kept; labels -100 elsewhere) by a generator
    seeded with (seed, window index), so the masks, and the scores, do not depend on the batch
    size or the number of ranks. The last, shorter window gets a batch of its own. With
    torch.distributed, rank r takes windows r, r + world, ...
    """
    import numpy as np
    import torch

    from llmkit.data.batching import mask_tokens
    from llmkit.tokenizers.base import MASK_TOKENS, find_special

    if context < 1 or batch_size < 1:
        raise UsageError(f"context ({context}) and batch size ({batch_size}) must be positive")
    mask_id = find_special(tokenizer, MASK_TOKENS)
    if mask_id is None:
        raise UsageError(
            "the tokenizer has no mask token (" + ", ".join(MASK_TOKENS) + "), which masked-LM "
            "training and evaluation need"
        )
    named = (getattr(tokenizer, "special_tokens", {}) or {}).values()
    specials = {int(shards.eos_id), *(int(i) for i in named)}
    rank, world = _ranks(rank, world)
    n = len(shards)
    if n < 1:
        raise UsageError(f"{shards.path} ({shards.split}): no tokens to evaluate")
    starts = list(range(0, n, context))[rank::world]

    def masked(start: int) -> tuple[Any, Any]:
        ids = shards.window(start, min(context, n - start)).astype(np.int64)[None]
        rng = np.random.default_rng([seed % (1 << 63), start // context])
        return mask_tokens(ids, rng, mask_id, shards.vocab_size, specials, probability)

    def batch(group: list[int]) -> dict[str, Any]:
        pairs = [masked(s) for s in group]
        inputs = torch.from_numpy(np.concatenate([p[0] for p in pairs]))
        return {
            "input_ids": inputs,
            "labels": torch.from_numpy(np.concatenate([p[1] for p in pairs])),
            "attention_mask": torch.ones(inputs.shape, dtype=torch.long),
        }

    def batches() -> Iterator[dict[str, Any]]:
        full = [s for s in starts if s + context <= n]
        for lo in range(0, len(full), batch_size):
            yield batch(full[lo : lo + batch_size])
        for s in starts:
            if s + context > n:
                yield batch([s])

    return batches()  # the checks above run now, the masking as batches are drawn
