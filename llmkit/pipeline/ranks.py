"""Multi-process glue of a pipeline: which process is rank 0, running work on it alone, and
reporting a failure of work that every rank shares as one line on each."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from llmkit.errors import LlmkitError, UsageError

if TYPE_CHECKING:
    from llmkit.train.distributed import Dist

T = TypeVar("T")


def is_main_process() -> bool:
    """False on every rank of a torchrun job but rank 0 (which alone logs and writes results)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def several_ranks() -> bool:
    """Whether this process is one of several ranks: started by torchrun (WORLD_SIZE > 1) or in a
    process group its caller has joined. Imports no torch on a single process."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return True
    torch_dist = sys.modules.get("torch.distributed")
    return bool(
        torch_dist is not None
        and torch_dist.is_available()
        and torch_dist.is_initialized()
        and torch_dist.get_world_size() > 1
    )


def quiet(line: str) -> None:
    """The log of every rank but rank 0."""


def on_main(dist: Dist | None, work: Callable[[], T], what: str) -> T:
    """`work()` here in a single process; under torchrun on rank 0 alone, the others waiting."""
    if dist is None:
        return work()
    from llmkit.train import distributed

    return distributed.on_main(dist, work, what)


def on_every_rank(dist: Dist, work: Callable[[], T], what: str) -> T:
    """`work()` on every rank, whose own collectives join the ranks. A rank that fails in it
    raises its own error and leaves; the ranks waiting on it at a collective see their connection
    close and raise one line naming `what`, instead of the backend's message (or a hang)."""
    try:
        return work()
    except LlmkitError:
        raise
    except Exception as exc:
        if not _peer_gone(exc):
            raise
        raise UsageError(
            f"rank {dist.rank}: another rank failed in {what}; its error says why"
        ) from None


def _peer_gone(exc: BaseException) -> bool:
    """Whether `exc` is a collective that failed because another rank's process went away."""
    torch_dist = sys.modules.get("torch.distributed")
    dist_error = getattr(torch_dist, "DistError", None)
    if isinstance(dist_error, type) and isinstance(exc, dist_error):
        return True
    text = str(exc)
    return "closed by peer" in text or "reset by peer" in text
