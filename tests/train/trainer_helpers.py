"""A tiny model and deterministic batches shared by the trainer tests and the torchrun worker."""

from __future__ import annotations

from typing import Any

import torch

import llmkit

VOCAB = 32


def tiny_gpt() -> Any:
    """A one-layer GPT small enough to train in milliseconds."""
    return llmkit.create(
        "model", "gpt", vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, max_positions=16
    )


class FixedBatches:
    """Batch `step` is a fixed random block of 8 sequences; rank r of w takes rows r::w."""

    def __init__(self, rank: int = 0, world_size: int = 1, rows: int = 8) -> None:
        self.rank, self.world_size, self.rows, self.step = rank, world_size, rows, 0

    def __iter__(self) -> FixedBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 + self.step)
        block = torch.randint(0, VOCAB, (self.rows, 9), generator=g)
        self.step += 1
        mine = block[self.rank :: self.world_size]
        return {"input_ids": mine[:, :-1], "labels": mine[:, 1:]}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
