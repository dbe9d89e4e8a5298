"""Device and dtype names resolved to torch objects, for training, inference and evaluation alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkit.errors import UsageError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cuda` under torchrun picks the local GPU."""
    import torch

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


def as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name (float32, bfloat16, fp16, ...) or itself."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float64": torch.float64,
    }
    if dtype not in names:
        raise UsageError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    return names[dtype]
