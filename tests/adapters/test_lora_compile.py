"""LoRA on a Llama under torch.compile: llmkit's own autograd Functions (RMSNorm, RoPE, SwiGLU,
dropout) trace into the compiled step, which trains the adapter as the eager one does."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import llmkit
from llmkit.train.distributed import setup
from llmkit.train.trainer import Trainer, TrainSettings


def lora_run(
    checkpoint: Path, out: Path, dropout: float, compile: bool
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Three LoRA steps on fixed batches: the adapter's weights and the step losses."""
    torch.manual_seed(0)
    model = llmkit.load_model(checkpoint)
    model.train()
    adapter = llmkit.create(
        "adapter", "lora", r=4, alpha=8, dropout=dropout, targets=["q", "v", "o"]
    )
    model = adapter.apply(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = llmkit.create("optimizer", "adamw", trainable, lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    rows = torch.randint(0, 256, (3, 2, 17), generator=g)
    batches = iter([{"input_ids": r[:, :-1], "labels": r[:, 1:]} for r in rows])
    trainer = Trainer(
        model,
        "causal_lm",
        optimizer,
        None,
        llmkit.create("loss", "cross_entropy"),
        batches,
        TrainSettings(max_steps=3, grad_clip=1.0, log_every=10**9, compile=compile),
        out,
        setup("cpu"),
        loggers=[],
        log=lambda line: None,
    )
    losses = []
    for _ in range(3):
        loss_sum, total, _ = trainer._step()
        losses.append(float(loss_sum / total))
    state = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    return state, losses


def test_compiled_lora_step_trains_like_the_eager_one(tmp_path: Path, tiny_llama: Path) -> None:
    eager, eager_losses = lora_run(tiny_llama, tmp_path / "eager", 0.0, compile=False)
    compiled, compiled_losses = lora_run(tiny_llama, tmp_path / "compiled", 0.0, compile=True)
    assert eager.keys() == compiled.keys() and any("lora_B" in k for k in eager)
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, atol=1e-5, rtol=1e-4, msg=name)
    assert any(v.abs().max() > 0 for k, v in eager.items() if "lora_B" in k)  # B left zero
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)


def test_compiled_lora_dropout_drops(tmp_path: Path, tiny_llama: Path) -> None:
    _, plain = lora_run(tiny_llama, tmp_path / "plain", 0.0, compile=True)
    _, dropped = lora_run(tiny_llama, tmp_path / "dropped", 0.3, compile=True)
    assert all(math.isfinite(x) for x in dropped)
    # B starts at zero, so the first step's loss is the base's either way; the updates differ
    assert dropped[0] == pytest.approx(plain[0], rel=1e-6)
    assert dropped[1:] != pytest.approx(plain[1:], rel=1e-4)
