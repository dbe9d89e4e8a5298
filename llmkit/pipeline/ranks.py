"""Multi-process glue of a pipeline: which process is rank 0, and running work on it alone."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

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
