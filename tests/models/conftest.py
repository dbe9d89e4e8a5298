"""Tiny-tensor tests run faster on one thread: on a busy 2-core machine, two OpenMP threads
contending with other processes make each small op up to 10x slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
