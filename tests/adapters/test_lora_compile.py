"""LoRA on a Llama with `train.compile: true`: llmkit's own autograd Functions (RMSNorm, RoPE,
SwiGLU, dropout) trace into the compiled step, which trains the adapter as the eager one does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import lora_pipeline

import llmkit
from llmkit.cli import cli


def lora_run(
    tmp_path: Path, base: Path, name: str, dropout: float, compile: bool
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Three LoRA steps from a pipeline file: the adapter's trained weights and the step losses."""
    out = tmp_path / name
    adapter = f"r: 4, alpha: 8, dropout: {dropout}, targets: [q, v, o]"
    train = (
        "optimizer: {name: adamw, lr: 1.0e-2}, max_steps: 3, log_every: 1, "
        f"compile: {str(compile).lower()}"
    )
    pipeline = tmp_path / f"{name}.yaml"
    pipeline.write_text(lora_pipeline(out, base, adapter, train))
    result = CliRunner().invoke(cli, ["run", str(pipeline)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    weights = {
        k: v for k, v in llmkit.load_model(out / "model").state_dict().items() if "lora_" in k
    }
    lines = (out / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines if '"loss"' in line]
    return weights, losses


def test_compiled_lora_run_trains_like_the_eager_one(tmp_path: Path, tiny_llama: Path) -> None:
    eager, eager_losses = lora_run(tmp_path, tiny_llama, "eager", 0.0, compile=False)
    compiled, compiled_losses = lora_run(tmp_path, tiny_llama, "compiled", 0.0, compile=True)
    assert eager.keys() == compiled.keys() and any("lora_B" in k for k in eager)
    assert any(v.abs().max() > 0 for k, v in eager.items() if "lora_B" in k)  # B left zero
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, atol=1e-5, rtol=1e-4, msg=name)
    assert len(eager_losses) == 3
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)


def test_compiled_lora_dropout_drops(tmp_path: Path, tiny_llama: Path) -> None:
    _, plain = lora_run(tmp_path, tiny_llama, "plain", 0.0, compile=True)
    _, dropped = lora_run(tmp_path, tiny_llama, "dropped", 0.3, compile=True)
    assert len(dropped) == 3 and all(math.isfinite(x) for x in dropped)
    # B starts at zero, so the first step's loss is the base's either way; the updates differ
    assert dropped[0] == pytest.approx(plain[0], rel=1e-6)
    assert dropped[1:] != pytest.approx(plain[1:], rel=1e-4)
