"""torch.distributed set-up for runs started by torchrun: process group, device, DDP wrapping."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from llmkit.errors import UsageError


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cuda` under torchrun picks the local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device '{name}' asked for, but CUDA is not available here; use cpu")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single rank."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        dist.init_process_group(backend=backend)
    return Dist(rank, world_size, local_rank, torch_device)


def teardown() -> None:
    """Leave the process group if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, dist_info: Dist) -> nn.Module:
    """DistributedDataParallel around `module` when there is more than one rank."""
    if dist_info.world_size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def mean_across_ranks(value: float, dist_info: Dist) -> float:
    """The mean of a scalar over all ranks (itself on a single rank)."""
    if dist_info.world_size == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=dist_info.device)
    dist.all_reduce(t)
    return float(t.item()) / dist_info.world_size
