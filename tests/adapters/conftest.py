"""Fixtures for the adapter tests: a tiny pretrained-looking Llama checkpoint with a byte tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import llmkit


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (GQA, SwiGLU) with random weights and a byte tokenizer, saved as a checkpoint."""
    torch.manual_seed(0)
    tokenizer = llmkit.create("tokenizer", "byte", special_tokens=["<|endoftext|>"])
    model = llmkit.create(
        "model",
        "llama",
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        d_ff=64,
        max_positions=64,
    )
    out = tmp_path_factory.mktemp("base") / "llama"
    llmkit.save_model(model, out, tokenizer=tokenizer)
    return out
