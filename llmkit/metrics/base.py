"""The streaming-metric protocol: `update` per batch, `compute` at the end, `sync` across ranks.

Every metric keeps *counts* (never running averages), so merging the states of disjoint shards of
the data, or summing them across torch.distributed ranks, gives exactly the result on all the data.
torch is never imported here at module level; tensors are recognised by duck typing.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmkit.errors import UsageError


class UndefinedMetricWarning(UserWarning):
    """A score was ill-defined (0/0) and set to 0, as `zero_division="warn"` says."""


class Score(float):
    """A metric value: a plain float (compare, format, `float()` it) that also carries details.

    `name` is the metric's name and `details` a JSON-ready dict (counts, per-class values, the
    sacrebleu `signature`, ...). `to_dict()` gives ``{"metric": name, "score": value, **details}``.
    """

    name: str
    details: dict[str, Any]

    def __new__(cls, value: float, name: str, details: Mapping[str, Any] | None = None) -> Score:
        self = super().__new__(cls, value)
        self.name = name
        self.details = dict(details or {})
        return self

    @property
    def signature(self) -> str | None:
        """The sacrebleu signature for text metrics (None for the others)."""
        value = self.details.get("signature")
        return None if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        """``{"metric": name, "score": value, **details}``, ready for `json.dumps`."""
        return {"metric": self.name, "score": _json_float(float(self)), **self.details}

    def __repr__(self) -> str:
        return f"Score({self.name}={float(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Score, (float(self), self.name, self.details))


def _json_float(value: float) -> float | None:
    """NaN/inf are not JSON; they become null."""
    return value if math.isfinite(value) else None


class Metric(abc.ABC):
    """Base of the streaming metrics: `update(predictions, targets)`, `compute()`, `reset()`.

    `state()` returns the accumulated counts as plain Python data; `merge(state_or_metric)` adds
    another shard's counts; `sync(process_group)` sums the counts of every torch.distributed rank
    into each rank (a no-op when torch.distributed is not initialised).
    """

    #: Registry name, used in results and error messages.
    name: str = "metric"

    def __init__(self) -> None:
        self.reset()

    @abc.abstractmethod
    def update(self, predictions: Any, targets: Any) -> None:
        """Add one batch of predictions and targets to the counts."""

    @abc.abstractmethod
    def compute(self) -> Any:
        """The metric over everything seen since the last `reset()`."""

    def reset(self) -> None:
        """Forget every count."""
        self._synced = False
        self._reset()

    @abc.abstractmethod
    def _reset(self) -> None:
        """Set the counts to their empty values."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """The accumulated counts as plain Python data (picklable, JSON-ready)."""

    @abc.abstractmethod
    def _merge_state(self, state: Mapping[str, Any]) -> None:
        """Add the counts of `state` (from `state()` of a metric with the same settings)."""

    def merge(self, other: Metric | Mapping[str, Any]) -> None:
        """Add the counts of another metric of the same kind (or of its `state()`)."""
        if isinstance(other, Metric):
            if type(other) is not type(self):
                raise UsageError(
                    f"{self.name}: cannot merge a {type(other).__name__} into a "
                    f"{type(self).__name__}"
                )
            other = other.state()
        self._merge_state(other)

    def _check_not_synced(self) -> None:
        if self._synced:
            raise UsageError(
                f"{self.name}: update() after sync() would count other ranks' data twice; "
                "call reset() first"
            )

    def sync(self, process_group: Any = None) -> None:
        """Sum the counts of all ranks of `process_group` into this metric (once, before compute).

        A no-op unless torch.distributed is available and initialised. Calling it twice without an
        `update` in between does nothing the second time.
        """
        dist = _distributed()
        if dist is None or self._synced:
            return
        world = dist.get_world_size(group=process_group)
        states: list[Any] = [None] * world
        dist.all_gather_object(states, self.state(), group=process_group)
        self.reset()
        for state in states:
            self._merge_state(state)
        self._synced = True


class CountingMetric(Metric):
    """A metric whose state is a fixed-length vector of sums; `sync` uses one `all_reduce`."""

    _counts: np.ndarray

    def state(self) -> dict[str, Any]:
        return {"counts": self._counts.tolist()}

    def _merge_state(self, state: Mapping[str, Any]) -> None:
        counts = np.asarray(state["counts"], dtype=self._counts.dtype)
        if counts.shape != self._counts.shape:
            raise UsageError(
                f"{self.name}: state has {counts.shape} counts, expected {self._counts.shape}"
            )
        self._counts = self._counts + counts

    def sync(self, process_group: Any = None) -> None:
        """Sum the count vector across ranks with one `all_reduce` (no-op without DDP)."""
        dist = _distributed()
        if dist is None or self._synced:
            return
        import torch

        device = torch.device("cpu")
        if dist.get_backend(process_group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        tensor = torch.as_tensor(self._counts, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=process_group)
        self._counts = tensor.cpu().numpy().astype(self._counts.dtype)
        self._synced = True


def _distributed() -> Any:
    """`torch.distributed` when it is initialised (torch already imported), else None."""
    import sys

    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist
    return None


def is_tensor(value: Any) -> bool:
    """True for a torch.Tensor, recognised without importing torch."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_numpy(value: Any, what: str) -> np.ndarray:
    """A torch tensor, numpy array, list or scalar as a numpy array (tensors moved to CPU)."""
    if is_tensor(value):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return np.asarray(tensor.numpy())
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, str):
        return np.asarray([value])
    if isinstance(value, Sequence) and len(value) > 0:
        kinds = {_label_family(v) for v in value}
        if len(kinds) > 1:
            raise UsageError(f"{what}: mixes strings and numbers; use one type of label")
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise UsageError(f"{what}: cannot be read as an array: {exc}") from None


def _label_family(value: Any) -> str:
    return "str" if isinstance(value, str | bytes | np.str_) else "num"


def as_strings(value: Any, what: str) -> list[str]:
    """A string or a sequence of strings as a list of strings (clear error otherwise)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence):
        raise UsageError(f"{what}: expected a list of strings, got {type(value).__name__}")
    out = list(value)
    for i, item in enumerate(out):
        if not isinstance(item, str):
            raise UsageError(f"{what}[{i}]: expected a string, got {type(item).__name__}")
    return out
