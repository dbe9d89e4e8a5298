"""Fixtures for the inference tests."""

from __future__ import annotations

import pytest
from inference_helpers import TinyGGUF, write_tiny_gguf


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> TinyGGUF:
    """A quantised (Q8_0 / Q4_1) tiny Llama with tied embeddings."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-q.gguf", quantize=True)


@pytest.fixture(scope="session")
def tiny_gguf_f32(tmp_path_factory: pytest.TempPathFactory) -> TinyGGUF:
    """An F32 tiny Llama with a separate output matrix."""
    return write_tiny_gguf(
        tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", quantize=False, tie=False, seed=1
    )
