"""torch.distributed set-up for runs started by torchrun: process group, device, DDP wrapping."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

from llmkit.devices import resolve_device
from llmkit.errors import UsageError

T = TypeVar("T")

# How long the other ranks wait for rank 0's stage (tokenizer training and data preparation can take
# hours on a large corpus); a collective on the default group would give up after its 10 or 30 min.
MAIN_STAGE_TIMEOUT = timedelta(hours=24)
_control_group: Any = None  # a gloo group with that timeout, made on first use


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank among `world_size` and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and reports."""
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single rank."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if dist.is_available() and dist.is_initialized():  # joined already, by its caller or `run`
        rank, world_size = dist.get_rank(), dist.get_world_size()
    elif world_size > 1:
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group(backend=backend)
    return Dist(rank, world_size, local_rank, torch_device)


def teardown() -> None:
    """Leave the process group if this process joined one."""
    global _control_group
    import torch.distributed as dist

    _control_group = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Dist]:
    """`setup` for the length of a `with` block; leaves the group afterwards if it joined it here
    (a group its caller had already joined is left alone)."""
    import torch.distributed as dist

    joined_before = dist.is_available() and dist.is_initialized()
    info = setup(device)
    try:
        yield info
    finally:
        if not joined_before:
            teardown()


@contextlib.contextmanager
def patient(dist_info: Dist) -> Iterator[None]:
    """Collectives on the default group wait up to MAIN_STAGE_TIMEOUT inside the block (ranks
    whose share of the data is done waiting for the others' and for rank 0's join), torch's
    default timeout again after it."""
    import torch.distributed as dist

    if dist_info.world_size == 1 or not hasattr(dist, "set_timeout"):
        yield
        return
    from torch.distributed import constants

    nccl = dist.get_backend() == "nccl"
    usual = (constants.default_pg_nccl_timeout if nccl else None) or constants.default_pg_timeout
    dist.set_timeout(MAIN_STAGE_TIMEOUT)
    try:
        yield
    finally:
        dist.set_timeout(usual)


def _control() -> Any:
    global _control_group
    if _control_group is None:
        import torch.distributed as dist

        _control_group = dist.new_group(backend="gloo", timeout=MAIN_STAGE_TIMEOUT)
    return _control_group


def on_main(dist_info: Dist, work: Callable[[], T], what: str) -> T:
    """Run `work()` on rank 0 alone while the other ranks wait; every rank gets its result.

    Every rank must call this at the same point. Rank 0 sends its result (which must pickle) or
    its failure to the others: when `work` raises there, rank 0 re-raises it and every other rank
    raises a one-line UsageError naming `what`, instead of waiting at a collective that never comes.
    """
    if dist_info.world_size == 1:
        return work()
    import torch.distributed as dist

    group = _control()
    if dist_info.is_main:
        try:
            value = work()
        except BaseException:
            # The error being raised says more than a broken group would.
            with contextlib.suppress(Exception):
                dist.broadcast_object_list([(False, None)], src=0, group=group)
            raise
        dist.broadcast_object_list([(True, value)], src=0, group=group)
        return value
    message: list[Any] = [None]
    dist.broadcast_object_list(message, src=0, group=group)
    ok, value = message[0]
    if not ok:
        raise UsageError(f"rank {dist_info.rank}: rank 0 failed in {what}; rank 0's error says why")
    return value


def from_main(dist_info: Dist, value: T) -> T:
    """Rank 0's `value` (which must pickle) on every rank; every rank calls it at the same point."""
    if dist_info.world_size == 1:
        return value
    import torch.distributed as dist

    box: list[Any] = [value if dist_info.is_main else None]
    dist.broadcast_object_list(box, src=0, group=_control())
    result: T = box[0]
    return result


def wrap(module: nn.Module, dist_info: Dist, several_heads: bool = False) -> nn.Module:
    """DistributedDataParallel around `module` when there is more than one rank.

    `several_heads`: the model has heads an objective may leave unused (a BERT's classifier under
    masked LM), which DDP must then look for on every step.
    """
    if dist_info.world_size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=several_heads)


def sum_across_ranks(value: torch.Tensor, dist_info: Dist) -> torch.Tensor:
    """The elementwise sum of a tensor over all ranks (itself on a single rank), on the device."""
    if dist_info.world_size == 1:
        return value
    import torch.distributed as dist

    summed = value.clone()
    dist.all_reduce(summed)
    return summed
