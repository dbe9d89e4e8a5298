"""Language-model metrics: perplexity and bits per byte from summed token negative log-likelihoods.

Both keep three sums: NLL in nats (float64), scored tokens and UTF-8 bytes, so any split of the data
(batches, shards, DDP ranks) gives exactly the corpus-level value: exp(total NLL / total tokens) and
total NLL / (ln 2 * total bytes). Neither is ever an average of per-batch averages.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from llmkit.errors import UsageError
from llmkit.metrics.base import CountingMetric, Score, is_tensor, to_numpy

_LN2 = math.log(2.0)


class _TokenNLL(CountingMetric):
    """Sums of NLL (nats), tokens and bytes; `update` takes logits and targets, `add` raw sums."""

    def __init__(self, ignore_index: int = -100, token_bytes: list[int] | None = None) -> None:
        self.ignore_index = ignore_index
        self.token_bytes = None if token_bytes is None else np.asarray(token_bytes, np.int64)
        if self.token_bytes is not None and (self.token_bytes < 0).any():
            raise UsageError(f"{self.name}: token_bytes: byte lengths must be >= 0")
        self._token_bytes_tensor: Any = None
        super().__init__()

    def _reset(self) -> None:
        self._counts = np.zeros(3, dtype=np.float64)  # nll_sum, tokens, bytes

    def add(self, nll_sum: float, num_tokens: int, num_bytes: int | None = None) -> None:
        """Add a precomputed sum of token NLLs (nats), its token count and optional byte count."""
        self._check_not_synced()
        nll_sum, num_tokens = float(nll_sum), int(num_tokens)
        if num_tokens < 0 or (num_bytes is not None and int(num_bytes) < 0):
            raise UsageError(f"{self.name}: token and byte counts must be >= 0")
        if not math.isfinite(nll_sum) or nll_sum < 0:
            raise UsageError(f"{self.name}: nll_sum must be a finite number >= 0, got {nll_sum}")
        self._counts += (nll_sum, num_tokens, 0 if num_bytes is None else int(num_bytes))

    def update(self, predictions: Any, targets: Any, num_bytes: int | None = None) -> None:
        """Add logits (..., V) and target ids (...); targets equal to `ignore_index` are skipped.

        Bytes come from `num_bytes` (the UTF-8 length of the scored text) or, when the metric
        was built with `token_bytes`, from the byte length of each target token (tokens of length
        0, such as special tokens, are then left out of both sums).
        """
        self._check_not_synced()
        if is_tensor(predictions):
            nll, tokens, nbytes = self._torch_sums(predictions, targets)
        else:
            nll, tokens, nbytes = self._numpy_sums(
                to_numpy(predictions, f"{self.name}: predictions"),
                to_numpy(targets, f"{self.name}: targets"),
            )
        if num_bytes is not None:
            if int(num_bytes) < 0:
                raise UsageError(f"{self.name}: num_bytes must be >= 0, got {num_bytes}")
            nbytes = int(num_bytes)
        self._counts += (nll, tokens, nbytes)

    def _check_shapes(self, logits_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> None:
        if len(logits_shape) != len(target_shape) + 1 or tuple(logits_shape[:-1]) != target_shape:
            raise UsageError(
                f"{self.name}: logits of shape {logits_shape} do not match targets of shape "
                f"{target_shape}; expected logits (..., vocab) and targets (...)"
            )

    def _bad_targets(self, vocab: int) -> UsageError:
        return UsageError(
            f"{self.name}: target ids must be in [0, {vocab}) or equal ignore_index="
            f"{self.ignore_index}"
        )

    def _numpy_sums(self, logits: np.ndarray, targets: np.ndarray) -> tuple[float, int, int]:
        self._check_shapes(logits.shape, targets.shape)
        vocab = logits.shape[-1]
        flat = logits.reshape(-1, vocab).astype(np.float64)
        ids = targets.reshape(-1).astype(np.int64)
        keep = ids != self.ignore_index
        if ((ids < 0) | (ids >= vocab))[keep].any():
            raise self._bad_targets(vocab)
        flat, ids = flat[keep], ids[keep]
        nbytes = 0
        if self.token_bytes is not None:
            lengths = self._lengths(ids, vocab)
            flat, ids, lengths = flat[lengths > 0], ids[lengths > 0], lengths[lengths > 0]
            nbytes = int(lengths.sum())
        peak = flat.max(axis=-1, keepdims=True) if flat.size else np.zeros((0, 1))
        logz = np.log(np.exp(flat - peak).sum(axis=-1)) + peak[:, 0]
        nll = logz - flat[np.arange(ids.size), ids]
        return float(nll.sum()), int(ids.size), nbytes

    def _lengths(self, ids: np.ndarray, vocab: int) -> np.ndarray:
        assert self.token_bytes is not None
        if self.token_bytes.size < vocab:
            raise UsageError(
                f"{self.name}: token_bytes has {self.token_bytes.size} entries but the logits have "
                f"a vocabulary of {vocab}"
            )
        return self.token_bytes[ids]

    def _torch_sums(self, logits: Any, targets: Any) -> tuple[float, int, int]:
        import torch
        import torch.nn.functional as F

        if not is_tensor(targets):
            targets = torch.as_tensor(to_numpy(targets, f"{self.name}: targets"))
        self._check_shapes(tuple(logits.shape), tuple(targets.shape))
        vocab = logits.shape[-1]
        flat = logits.detach().reshape(-1, vocab)
        if flat.dtype != torch.float64:
            flat = flat.float()
        ids = targets.detach().reshape(-1).to(device=flat.device, dtype=torch.long)
        keep = ids != self.ignore_index
        if bool((((ids < 0) | (ids >= vocab)) & keep).any()):
            raise self._bad_targets(vocab)
        nll = F.cross_entropy(flat, ids, ignore_index=self.ignore_index, reduction="none")
        nbytes = 0
        if self.token_bytes is not None:
            if self.token_bytes.size < vocab:
                self._lengths(np.zeros(0, np.int64), vocab)
            if self._token_bytes_tensor is None or self._token_bytes_tensor.device != flat.device:
                self._token_bytes_tensor = torch.as_tensor(self.token_bytes, device=flat.device)
            lengths = self._token_bytes_tensor[ids.clamp(min=0)] * keep
            keep = keep & (lengths > 0)
            nbytes = int(lengths.sum().item())
        total = nll.double()[keep].sum().item()
        return float(total), int(keep.sum().item()), nbytes

    def _sums(self) -> tuple[float, int, int]:
        nll, tokens, nbytes = (float(v) for v in self._counts)
        return nll, int(tokens), int(nbytes)


def _safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return float("inf")


class Perplexity(_TokenNLL):
    """Perplexity exp(total NLL / total tokens) over every scored token.

    Args:
        ignore_index: Target id that is not scored (padding), as in torch cross_entropy.
        token_bytes: Byte length of each token id, to also report bits per byte; tokens of
            length 0 (special tokens) are then not scored.
    """

    name = "perplexity"

    def compute(self) -> Score:
        """The perplexity, with mean NLL, token count and bits per token/byte in `details`."""
        nll, tokens, nbytes = self._sums()
        if tokens == 0:
            raise UsageError("perplexity: no tokens: call update() with data before compute()")
        mean = nll / tokens
        details: dict[str, Any] = {
            "nll": mean,
            "nll_sum": nll,
            "tokens": tokens,
            "bits_per_token": mean / _LN2,
        }
        if nbytes:
            details["bytes"] = nbytes
            details["bits_per_byte"] = nll / (_LN2 * nbytes)
        return Score(_safe_exp(mean), self.name, details)


class BitsPerByte(_TokenNLL):
    """Bits per UTF-8 byte: total NLL / (ln 2 * total bytes), comparable across tokenizers.

    Args:
        ignore_index: Target id that is not scored (padding), as in torch cross_entropy.
        token_bytes: Byte length of each token id, so that `update(logits, targets)` counts bytes
            itself; tokens of length 0 (special tokens) are then not scored. Without it pass
            `num_bytes=` to `update` or use `add(nll_sum, num_tokens, num_bytes)`.
    """

    name = "bits_per_byte"

    def compute(self) -> Score:
        """Bits per byte, with NLL sum, token and byte counts and perplexity in `details`."""
        nll, tokens, nbytes = self._sums()
        if nbytes == 0:
            raise UsageError(
                "bits_per_byte: no bytes counted: pass num_bytes= to update(), build the metric "
                "with token_bytes=, or call add(nll_sum, num_tokens, num_bytes)"
            )
        details: dict[str, Any] = {"nll_sum": nll, "tokens": tokens, "bytes": nbytes}
        if tokens:
            details["perplexity"] = _safe_exp(nll / tokens)
        return Score(nll / (_LN2 * nbytes), self.name, details)
