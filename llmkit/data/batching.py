"""Batches for each training objective, distributed-aware and resumable.

- `CausalLMBatches`: windows of `context` tokens from prepared shards (documents packed, EOS between).
- `MaskedLMBatches`: the same windows, 15% of tokens masked 80/10/10; special tokens never masked.
- `Seq2SeqBatches`: source/target pairs, padded; decoder inputs are the targets shifted right.
- `ClassificationBatches`: text + label, the label vocabulary taken from the data.

Each is an iterator of dicts of torch tensors. Rank `r` of `world_size` sees its own part of the
data (a contiguous token range for shards; every `world_size`-th example for records). Each batch is
a pure function of (seed, rank, position), so `state_dict()` is the position and
`load_state_dict()` resumes with exactly the batches that would have come next.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmkit.data.records import Record
from llmkit.errors import UsageError
from llmkit.tokenizers.base import (
    BOS_TOKENS,
    MASK_TOKENS,
    PAD_TOKENS,
    SEPARATOR_TOKENS,
    find_special,
)

if TYPE_CHECKING:
    import numpy as np

IGNORE_INDEX = -100
MASK_RATE = 0.15  # BERT's share of tokens a masked-LM step predicts: the one default


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size): the arguments if given, else torch.distributed's if initialised, else (0, 1)."""
    if rank is None or world_size is None:
        r, w = 0, 1
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                r, w = dist.get_rank(), dist.get_world_size()
        except ImportError:
            pass
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"rank {rank} is not in 0..{world_size - 1}")
    return rank, world_size


def _rng(*key: int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


class _Resumable:
    """Position bookkeeping shared by the iterators: `step` counts batches served."""

    step: int

    def _identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The position (and what it is valid for): store it in a checkpoint."""
        return {"step": self.step, "identity": self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a position saved by `state_dict` (same data, seed, shapes and rank)."""
        mine = self._identity()
        theirs = state.get("identity", mine)
        if theirs != mine:
            diff = sorted(k for k in mine if mine.get(k) != theirs.get(k))
            raise UsageError(
                f"cannot resume: the iterator was saved with different {', '.join(diff)}"
            )
        self.step = int(state["step"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self  # type: ignore[return-value]


# -- token windows from shards ------------------------------------------------------------------


class _WindowBatches(_Resumable):
    def __init__(
        self,
        path: str | Path,
        context: int,
        batch_size: int,
        split: str,
        mode: Literal["random", "sequential"],
        seed: int,
        rank: int | None,
        world_size: int | None,
        epochs: int | None,
        extra: int,
    ) -> None:
        from llmkit.data.shards import TokenShards

        if context < 1 or batch_size < 1:
            raise UsageError("context and batch_size must be positive")
        self.shards = TokenShards(path, split)
        self.context = context
        self.batch_size = batch_size
        self.mode = mode
        self.seed = seed
        self.epochs = epochs
        self.rank, self.world_size = dist_info(rank, world_size)
        self.step = 0
        span = context + extra
        n = len(self.shards)
        part = n // self.world_size
        self.lo = self.rank * part
        self.hi = self.lo + part
        if part < span:
            raise UsageError(
                f"{path} ({split}): {n} tokens, {part} per rank, fewer than one window of {span}"
            )
        self.span = span
        self.windows = (part - extra) // context
        self.batches_per_epoch = self.windows // batch_size
        if mode == "sequential" and self.batches_per_epoch == 0:
            raise UsageError(
                f"{path} ({split}): {self.windows} windows per rank, fewer than batch_size "
                f"{batch_size}"
            )

    def _identity(self) -> dict[str, Any]:
        return {
            "data": self.shards.manifest["fingerprint"],
            "split": self.shards.split,
            "context": self.context,
            "batch_size": self.batch_size,
            "mode": self.mode,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def __len__(self) -> int:
        if self.mode == "random" or self.epochs is None:
            raise TypeError("an endless iterator has no length")
        return self.batches_per_epoch * self.epochs

    def _starts(self, step: int) -> np.ndarray:
        import numpy as np

        if self.mode == "random":
            rng = _rng(self.seed, self.rank, step, 0)
            return self.lo + rng.integers(0, self.hi - self.lo - self.span + 1, self.batch_size)
        if self.epochs is not None and step >= self.batches_per_epoch * self.epochs:
            raise StopIteration
        first = (step % self.batches_per_epoch) * self.batch_size
        return self.lo + (first + np.arange(self.batch_size)) * self.context

    def _tokens(self, step: int) -> np.ndarray:
        import numpy as np

        starts = self._starts(step)
        return np.stack([self.shards.window(int(s), self.span) for s in starts])


class CausalLMBatches(_WindowBatches):
    """Next-token batches: ``input_ids`` and ``labels`` (shifted by one), shape (batch, context).

    Args:
        path: A directory written by `llmkit data prepare`.
        context: Tokens per example.
        batch_size: Examples per batch.
        split: ``train`` or ``validation``.
        mode: ``random`` windows (endless) or ``sequential`` windows in order.
        seed: Seed of the random windows.
        rank: This process's rank (default: torch.distributed's, else 0).
        world_size: Number of processes (default: torch.distributed's, else 1).
        epochs: Sequential mode: passes over the data (None: endless).
    """

    def __init__(
        self,
        path: str,
        context: int,
        batch_size: int,
        split: str = "train",
        mode: Literal["random", "sequential"] = "random",
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        epochs: int | None = 1,
    ) -> None:
        super().__init__(
            path, context, batch_size, split, mode, seed, rank, world_size, epochs, extra=1
        )

    def __next__(self) -> dict[str, Any]:
        import torch

        tokens = torch.from_numpy(self._tokens(self.step))
        self.step += 1
        return {"input_ids": tokens[:, :-1].contiguous(), "labels": tokens[:, 1:].contiguous()}


@functools.lru_cache(maxsize=8)
def _allowed_ids(vocab_size: int, special: tuple[int, ...]) -> np.ndarray:
    """Ids a masked token may be replaced with: every id that is not special."""
    import numpy as np

    return np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(special, np.int64))


def mask_tokens(
    ids: np.ndarray,
    rng: np.random.Generator,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    probability: float = MASK_RATE,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking: pick `probability` of non-special tokens; 80% -> mask, 10% random, 10% kept.

    Returns (inputs, labels), labels being -100 where nothing is predicted.
    """
    import numpy as np

    special = np.asarray(sorted(set(special_ids) | {mask_id}), dtype=np.int64)
    can = ~np.isin(ids, special)
    chosen = (rng.random(ids.shape) < probability) & can
    labels = np.where(chosen, ids, IGNORE_INDEX)
    inputs = ids.copy()
    roll = rng.random(ids.shape)
    inputs[chosen & (roll < 0.8)] = mask_id
    rand = chosen & (roll >= 0.8) & (roll < 0.9)
    allowed = _allowed_ids(vocab_size, tuple(special.tolist()))
    inputs[rand] = allowed[rng.integers(0, len(allowed), int(rand.sum()))]
    return inputs, labels


class MaskedLMBatches(_WindowBatches):
    """Masked-LM batches: ``input_ids`` (masked), ``labels`` (-100 where not masked), ``attention_mask``.

    Args:
        path: A directory written by `llmkit data prepare`.
        context: Tokens per example.
        batch_size: Examples per batch.
        mask_id: Id of the mask token (default: the tokenizer's ``<mask>``/``[MASK]``).
        special_ids: Ids never masked (the EOS id and the tokenizer's special tokens are added).
        tokenizer: Used to find the mask and special ids.
        probability: Fraction of tokens to predict.
        split: ``train`` or ``validation``.
        mode: ``random`` windows (endless) or ``sequential`` windows in order.
        seed: Seed of the windows and the masking.
        rank: This process's rank (default: torch.distributed's, else 0).
        world_size: Number of processes (default: torch.distributed's, else 1).
        epochs: Sequential mode: passes over the data (None: endless).
    """

    def __init__(
        self,
        path: str,
        context: int,
        batch_size: int,
        mask_id: int | None = None,
        special_ids: list[int] | None = None,
        tokenizer: Any = None,
        probability: float = MASK_RATE,
        split: str = "train",
        mode: Literal["random", "sequential"] = "random",
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        epochs: int | None = 1,
    ) -> None:
        super().__init__(
            path, context, batch_size, split, mode, seed, rank, world_size, epochs, extra=0
        )
        specials = set(special_ids or []) | {self.shards.eos_id}
        if tokenizer is not None:
            specials |= set((getattr(tokenizer, "special_tokens", {}) or {}).values())
            if mask_id is None:
                mask_id = find_special(tokenizer, MASK_TOKENS)
        if mask_id is None:
            raise UsageError("masked LM needs a mask token: pass mask_id or a tokenizer with one")
        if not 0.0 < probability < 1.0:
            raise UsageError(f"probability must be in (0, 1), got {probability}")
        self.mask_id = mask_id
        self.special_ids = sorted(specials)
        self.probability = probability

    def _identity(self) -> dict[str, Any]:
        return {**super()._identity(), "mask_id": self.mask_id, "probability": self.probability}

    def __next__(self) -> dict[str, Any]:
        import torch

        ids = self._tokens(self.step)
        inputs, labels = mask_tokens(
            ids,
            _rng(self.seed, self.rank, self.step, 1),
            self.mask_id,
            self.shards.vocab_size,
            self.special_ids,
            self.probability,
        )
        self.step += 1
        return {
            "input_ids": torch.from_numpy(inputs),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.ones(ids.shape, dtype=torch.long),
        }


# -- examples held in memory (pairs, labelled texts) --------------------------------------------


class _EpochBatches(_Resumable):
    """Batches over a list of examples: shuffled per epoch, split across ranks, resumable."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int | None,
        world_size: int | None,
        epochs: int | None,
        drop_last: bool,
    ) -> None:
        if batch_size < 1:
            raise UsageError("batch_size must be positive")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epochs = epochs
        self.drop_last = drop_last
        self.rank, self.world_size = dist_info(rank, world_size)
        self.per_rank = n // self.world_size
        if self.per_rank == 0:
            raise UsageError(f"{n} examples cannot be split over {self.world_size} ranks")
        full, rest = divmod(self.per_rank, batch_size)
        self.batches_per_epoch = full + (1 if rest and not drop_last else 0)
        if self.batches_per_epoch == 0:
            raise UsageError(f"{self.per_rank} examples per rank, fewer than batch_size")
        self.step = 0
        self._order_epoch = -1
        self._order: np.ndarray | None = None

    def __len__(self) -> int:
        if self.epochs is None:
            raise TypeError("an endless iterator has no length")
        return self.batches_per_epoch * self.epochs

    def _fingerprint(self) -> str:
        raise NotImplementedError

    def _identity(self) -> dict[str, Any]:
        return {
            "data": self._fingerprint(),
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
        }

    def _indices(self, step: int) -> np.ndarray:
        import numpy as np

        if self.epochs is not None and step >= self.batches_per_epoch * self.epochs:
            raise StopIteration
        epoch, b = divmod(step, self.batches_per_epoch)
        if epoch != self._order_epoch:
            perm = (
                _rng(self.seed, epoch, 2).permutation(self.n) if self.shuffle else np.arange(self.n)
            )
            self._order = perm[self.rank :: self.world_size][: self.per_rank]
            self._order_epoch = epoch
        assert self._order is not None
        return self._order[b * self.batch_size : (b + 1) * self.batch_size]


def _pad(rows: list[list[int]], pad: int) -> tuple[Any, Any]:
    import torch

    width = max((len(r) for r in rows), default=0) or 1
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
    return ids, mask


def _hash_texts(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


class Seq2SeqBatches(_EpochBatches):
    """Source/target batches: ``input_ids``, ``attention_mask``, ``decoder_input_ids``, ``labels``.

    Decoder inputs are ``[bos] + target`` and labels ``target + [eos]`` (padding -100), so position
    t predicts target token t from the tokens before it.

    Args:
        pairs: Records with text (source) and target, or (source, target) tuples.
        tokenizer: Encodes both sides (``encode_batch``).
        batch_size: Pairs per batch.
        max_source_len: Source tokens kept (longer sources are truncated).
        max_target_len: Target tokens kept, before the BOS/EOS are added.
        pad_id: Padding id (default: the tokenizer's pad token, else EOS).
        bos_id: Decoder start id (default: the tokenizer's BOS, else pad).
        eos_id: End id appended to labels (default: the tokenizer's EOS).
        shuffle: Shuffle pairs every epoch.
        seed: Seed of the shuffling.
        rank: This process's rank (default: torch.distributed's, else 0).
        world_size: Number of processes (default: torch.distributed's, else 1).
        epochs: Passes over the data (None: endless).
        drop_last: Leave out a last, smaller batch.
    """

    def __init__(
        self,
        pairs: Iterable[Any],
        tokenizer: Any,
        batch_size: int = 32,
        max_source_len: int = 512,
        max_target_len: int = 512,
        pad_id: int | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        epochs: int | None = 1,
        drop_last: bool = False,
    ) -> None:
        sources: list[str] = []
        targets: list[str] = []
        for i, p in enumerate(pairs):
            src, tgt = (p.text, p.target) if isinstance(p, Record) else p
            if src is None or tgt is None:
                raise UsageError(f"pair {i} has no source or target; drop it with 'missing'")
            sources.append(src)
            targets.append(tgt)
        eos = eos_id if eos_id is not None else find_special(tokenizer, SEPARATOR_TOKENS)
        if eos is None:
            raise UsageError("seq2seq needs an end token: pass eos_id")
        pad = pad_id if pad_id is not None else find_special(tokenizer, PAD_TOKENS)
        pad = eos if pad is None else pad
        bos = bos_id if bos_id is not None else find_special(tokenizer, BOS_TOKENS)
        self.pad_id, self.bos_id, self.eos_id = pad, (pad if bos is None else bos), eos
        self.max_source_len = max_source_len
        self.max_target_len = max_target_len
        self._fp = _hash_texts(s + "\x01" + t for s, t in zip(sources, targets, strict=True))
        self.sources = [ids[:max_source_len] for ids in tokenizer.encode_batch(sources)]
        self.targets = [ids[:max_target_len] for ids in tokenizer.encode_batch(targets)]
        super().__init__(
            len(sources), batch_size, shuffle, seed, rank, world_size, epochs, drop_last
        )

    def _fingerprint(self) -> str:
        return self._fp

    def __next__(self) -> dict[str, Any]:
        idx = self._indices(self.step)
        self.step += 1
        src = [self.sources[i] for i in idx]
        tgt = [self.targets[i] for i in idx]
        input_ids, attention_mask = _pad(src, self.pad_id)
        dec, dec_mask = _pad([[self.bos_id, *t] for t in tgt], self.pad_id)
        labels, _ = _pad([[*t, self.eos_id] for t in tgt], IGNORE_INDEX)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": dec,
            "decoder_attention_mask": dec_mask,
            "labels": labels,
        }


class ClassificationBatches(_EpochBatches):
    """Text classification batches: ``input_ids``, ``attention_mask``, ``labels`` (class indices).

    The label vocabulary is the sorted set of labels in the data unless `labels` names it; it is
    in `label_vocab` (save it with the model).

    Args:
        records: Records with text and label, or (text, label) tuples.
        tokenizer: Encodes the texts (``encode_batch``).
        batch_size: Examples per batch.
        max_length: Tokens kept per text (longer texts are truncated).
        labels: The label vocabulary, in class-index order (default: sorted labels of the data).
        pad_id: Padding id (default: the tokenizer's pad token, else EOS, else 0).
        shuffle: Shuffle every epoch.
        seed: Seed of the shuffling.
        rank: This process's rank (default: torch.distributed's, else 0).
        world_size: Number of processes (default: torch.distributed's, else 1).
        epochs: Passes over the data (None: endless).
        drop_last: Leave out a last, smaller batch.
    """

    def __init__(
        self,
        records: Iterable[Any],
        tokenizer: Any,
        batch_size: int = 32,
        max_length: int = 512,
        labels: list[str] | None = None,
        pad_id: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        epochs: int | None = 1,
        drop_last: bool = False,
    ) -> None:
        texts: list[str] = []
        names: list[str] = []
        for i, r in enumerate(records):
            text, label = (r.text, r.label) if isinstance(r, Record) else r
            if text is None or label is None or str(label).strip() == "":
                where = r.source if isinstance(r, Record) and r.source else f"record {i}"
                raise UsageError(
                    f"{where}: no text or label; drop such records with the 'missing' cleaner "
                    "(fields: [text, label])"
                )
            texts.append(text)
            names.append(str(label))
        self.label_vocab = list(labels) if labels is not None else sorted(set(names))
        self.label_to_id = {name: i for i, name in enumerate(self.label_vocab)}
        unknown = sorted(set(names) - set(self.label_to_id))
        if unknown:
            raise UsageError(
                f"labels not in the label vocabulary: {', '.join(unknown[:5])}; "
                f"vocabulary: {', '.join(self.label_vocab)}"
            )
        self.label_ids = [self.label_to_id[n] for n in names]
        pad = pad_id if pad_id is not None else find_special(tokenizer, PAD_TOKENS)
        if pad is None:
            pad = find_special(tokenizer, SEPARATOR_TOKENS)
        self.pad_id = 0 if pad is None else pad
        self.max_length = max_length
        self._fp = _hash_texts(t + "\x01" + n for t, n in zip(texts, names, strict=True))
        self.ids = [ids[:max_length] for ids in tokenizer.encode_batch(texts)]
        super().__init__(len(texts), batch_size, shuffle, seed, rank, world_size, epochs, drop_last)

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_vocab)

    def _fingerprint(self) -> str:
        return self._fp + json.dumps(self.label_vocab)

    def __next__(self) -> dict[str, Any]:
        import torch

        idx = self._indices(self.step)
        self.step += 1
        input_ids, attention_mask = _pad([self.ids[i] for i in idx], self.pad_id)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": torch.tensor([self.label_ids[i] for i in idx], dtype=torch.long),
        }
